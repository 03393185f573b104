/* The backup repository: a directory anyone can read without virtsnap (see
 * docs/repository-format.md). Data is cut into fixed-size chunks of the
 * guest-visible disk content, named by the SHA-256 of their plain bytes, stored
 * zstd-compressed once however many disks, domains and backups hold them; chunks
 * that are all zero are not stored at all. A backup becomes visible only when its
 * manifest is written, last and atomically, so an interrupted backup never looks
 * complete. Several processes may write into one repository at once: chunk files
 * are created by temp file + rename (idempotent), the temp files made durable in
 * batches (vs_repo_flush) before any is renamed, manifests have unique ids, and
 * garbage collection takes the repository lock exclusively.
 *
 * Thread safety: vs_repo_put_chunk, vs_repo_get_chunk, vs_repo_has_chunk and
 * vs_repo_flush may be called from many threads on one VsRepo; everything else
 * from one thread at a time. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"

G_BEGIN_DECLS

#define VS_REPO_FORMAT_VERSION 1
#define VS_REPO_DEFAULT_CHUNK_SIZE (1024 * 1024)

typedef struct _VsRepo VsRepo;

typedef struct {
    uint8_t bytes[32];
} VsDigest;

/* 64 lowercase hex characters + NUL */
#define VS_DIGEST_HEX_LEN 65
void vs_digest_to_hex(const VsDigest *d, char out[VS_DIGEST_HEX_LEN]);
bool vs_digest_from_hex(const char *hex, VsDigest *out);
void vs_digest_compute(const void *data, size_t len, VsDigest *out);
/* True when all LEN bytes are zero (at memory speed). Zero chunks are never
 * stored nor listed in a manifest, so a caller may skip hashing them. */
bool vs_buffer_is_zero(const void *data, size_t len);

/* Opens the repository at PATH. With CREATE, a missing (mkdir -p, mode 0700) or
 * empty directory is initialised (chunk size CHUNK_SIZE: a power of two from
 * 4 KiB to 16 MiB, 0 for the default) as a private repository: the directory
 * is made 0700 whatever its mode was (an existing one open to others is
 * noticed, VS_REPO_NOTICE_MADE_PRIVATE), and everything created in it, then
 * and later, is 0700 (directories) or 0600 (files) whatever the umask; see
 * vs_repo_init for a group-shared one. An existing repository is opened as
 * it is, with its own chunk size; one open to others is noticed
 * (VS_REPO_NOTICE_OPEN, see vs_repo_check_permissions; vs_repo_fix_permissions
 * fixes it). Errors name the path, then what to do: missing, or empty
 * without CREATE (VS_ERROR_NOT_FOUND; the message ends with the command that
 * creates one, to which a caller may add its own --init), not a repository (a
 * non-empty directory without the
 * marker: VS_ERROR_INVALID_ARG, never taken over, even with CREATE), newer format
 * (VS_ERROR_UNSUPPORTED), read-only or full (VS_ERROR_IO, checked by a probe write
 * when WRITABLE is true). Without WRITABLE, put, commit, delete and gc fail. */
VsRepo *vs_repo_open(const char *path, bool create, bool writable, uint32_t chunk_size,
                     GError **error);
/* What vs_repo_open and vs_repo_init tell besides their result, through the
 * function vs_repo_set_notice_func set (process-wide; none by default). */
typedef enum {
    VS_REPO_NOTICE_MADE_PRIVATE,   /* an existing directory was opened up: made private */
    VS_REPO_NOTICE_OPEN,           /* the repository is open to other users */
} VsRepoNotice;
typedef void (*VsRepoNoticeFunc)(VsRepoNotice kind, const char *repo_path, const char *message);
void vs_repo_set_notice_func(VsRepoNoticeFunc func);

/* `virtsnap init`: vs_repo_open(PATH, true, true, CHUNK_SIZE) without the
 * check for a repository open to others (the caller fixes or checks), and
 * with GROUP (a group name, or NULL) a group-shared repository: directories
 * 0750, files 0640, all of that group, recorded in the marker so that every
 * later writer keeps to it; nothing is ever open to "other". An existing
 * repository given a GROUP it does not have records it (*REGROUPED true): its
 * entries then need vs_repo_fix_permissions. */
VsRepo *vs_repo_init(const char *path, uint32_t chunk_size, const char *group, bool *regrouped,
                     GError **error);
/* The group a repository is shared with, NULL when it is private. */
const char *vs_repo_group(const VsRepo *repo);
/* Notices (VS_REPO_NOTICE_OPEN) when REPO is open to other users: when the
 * repository directory, anything directly in it, or a chunk fan-out directory
 * has a bit for "other" (or for the group, unless REPO is shared with one);
 * so does a directory in checkpoints/. What lies below those directories
 * nobody else can reach while they are closed, so the check costs a few
 * hundred stats, not a walk of every chunk.
 * vs_repo_open makes it. */
void vs_repo_check_permissions(VsRepo *repo);
/* Gives every directory and regular file in REPO the mode (and group) it
 * should have, 0700/0600 or 0750/0640 and the group: a walk that never
 * follows a symlink nor changes one or what it points to, and leaves alone
 * what is no file of virtsnap's (FIFOs, sockets, devices). *FIXED: how many
 * entries it changed. */
bool vs_repo_fix_permissions(VsRepo *repo, uint64_t *fixed, GError **error);
/* Writes DATA as the file RELPATH ("dir/file", no "." or ".." parts) in REPO,
 * whole and durably (temp file, fsync, rename over an older one), directories
 * made as needed; with the repository's modes. Needs REPO opened WRITABLE. */
bool vs_repo_write_file(VsRepo *repo, const char *relpath, const void *data, size_t len,
                        GError **error);

/* Closes REPO. Chunks put but never flushed (no vs_repo_flush or commit since)
 * are discarded, their temp files deleted: they belong to a backup that did not
 * commit. A writer that wants to keep its chunks flushes or commits first. */
void vs_repo_close(VsRepo *repo);
const char *vs_repo_path(const VsRepo *repo);
/* Whether new chunks are compressed (zstd level 1, the default) or stored in
 * raw blocks, the same zstd frame without the compressor's CPU time: for a
 * repository on a file system that compresses itself, or a host short of CPU.
 * Chunks already there stay as they are; readers see no difference. */
void vs_repo_set_compression(VsRepo *repo, bool compress);
uint32_t vs_repo_chunk_size(const VsRepo *repo);

/* Stores LEN bytes (1 to the chunk size) unless a chunk with that digest is
 * already there, or already put through this VsRepo and not yet flushed.
 * *DIGEST receives the digest; *STORED (may be NULL) the bytes written to disk
 * (compressed size; 0 when it was already present or pending). A write that
 * fails (ENOSPC, EIO, ...) leaves no partial chunk behind. All-zero data is not
 * stored (*STORED = 0) and commit drops references to it, so callers need not
 * special-case zeros (but may skip them with vs_buffer_is_zero). Writers hold
 * vs_repo_lock_shared from their first put to the commit. Needs a repository
 * opened WRITABLE.
 *
 * The chunk is written to a temp file without fsync and is pending: get, has
 * and verify find it, but it is durable and under its final name only after
 * the next flush. The put that takes the pending data past 64 MiB (compressed)
 * flushes, and may then fail with the flush's error. */
bool vs_repo_put_chunk(VsRepo *repo, const void *data, size_t len, VsDigest *digest,
                       uint64_t *stored, GError **error);

/* Makes every chunk put so far through REPO durable and puts it under its final
 * name: one syncfs(2) of the repository's file system (an fdatasync per temp
 * file where syncfs is missing), then the renames, then an fsync of each
 * chunks/XX directory touched. Puts from other threads go on meanwhile (into
 * the next batch); one flush runs at a time. On failure the first error is
 * returned and the chunks that could not be placed are gone (their temp files
 * deleted; commit then reports them missing); no file under a final name is
 * ever less durable than its name. True at once when nothing is pending or
 * REPO is read-only. */
bool vs_repo_flush(VsRepo *repo, GError **error);

/* Reads, decompresses and re-hashes a chunk (a pending one from its temp file);
 * a chunk whose content does not match its digest is an error (VS_ERROR_IO,
 * "corrupt"), a missing one VS_ERROR_NOT_FOUND. Returns a newly allocated buffer
 * of *LEN bytes (free with g_free). */
void *vs_repo_get_chunk(VsRepo *repo, const VsDigest *digest, size_t *len, GError **error);
/* True when the chunk is under its final name or pending in REPO. */
bool vs_repo_has_chunk(VsRepo *repo, const VsDigest *digest);

/* ------------------------------------------------------------------------- */
/* Manifests                                                                 */

typedef struct {
    uint64_t offset;       /* guest-visible byte offset, a multiple of the chunk size */
    uint32_t length;       /* bytes: the chunk size, less for the last chunk */
    VsDigest digest;
} VsChunkRef;

typedef struct {
    char *path;            /* where the image was, at backup time */
    char *format;          /* raw, qcow2, ... */
} VsManifestImage;

/* A storage snapshot a backup made of a disk (issue 15; docs/snapshots.md):
 * the provider that made it, its handle, and where the disk lived, as the
 * provider needs it back (VsSnapLocation's fields). Read from a repository,
 * every field has passed the manifest's checks (a handle by
 * vs_snap_handle_check's rule; reflink, btrfs and rbd handles start with
 * "virtsnap-", so a hostile manifest cannot name a snapshot virtsnap did not
 * make); that is not yet a reason to trust the location: see
 * vs_snap_location_from_record. Strings may be NULL where unknown. */
typedef struct {
    char *provider;        /* "reflink", "btrfs", "rbd", "hook" */
    char *handle;
    char *kind;            /* vs_snap_loc_kind_name: "file", "block", "nfs", "iscsi", "rbd" */
    char *path;            /* the disk's file or device */
    char *snapshot_dir;    /* reflink, btrfs: the directory holding virtsnap-snapshots/ */
    char *pool, *volume;   /* libvirt's */
    char *nfs_server, *nfs_export, *nfs_path;
    char *iscsi_portal, *iscsi_iqn;
    int64_t iscsi_lun;     /* -1: unknown */
    char *wwid;
    char *rbd_pool, *rbd_image, *rbd_user;
    uint64_t size;         /* the disk's bytes the snapshot holds; 0: unknown */
} VsManifestSnapshot;

/* A libvirt storage pool a backed-up disk lived in, as libvirt defined it. */
typedef struct {
    char *name;
    char *xml;
} VsManifestPool;

typedef struct {
    char *target;          /* vda */
    char *format;          /* format of the disk's own image (export default) */
    uint64_t virtual_size; /* bytes */
    char *source;          /* path or URL the disk had (top of the chain) */
    GPtrArray *chain;      /* of VsManifestImage*: the stable images copied, top first */
    GArray *chunks;        /* of VsChunkRef, ascending offsets; gaps are zeros */
    uint64_t bytes_read;   /* data read from the source (zero extents not counted) */
    uint64_t bytes_stored; /* new compressed bytes this backup added to the repository */
    /* false: the data is not in the repository, only in SNAPSHOT (a
     * `backup --no-copy` not vaulted yet): CHUNKS is empty and means nothing,
     * and export, restore from the repository and verify of chunks refuse it. */
    bool in_repo;
    VsManifestSnapshot *snapshot;  /* NULL: none kept */
} VsManifestDisk;

typedef struct {
    char *name;
    char *uuid;
    char *consistency;     /* "quiesced" or "crash" */
    int64_t freeze_ms;     /* -1 when not frozen */
    char *xml;             /* the domain XML at backup time (inactive XML when defined) */
    GPtrArray *disks;      /* of VsManifestDisk* */
    GPtrArray *pools;      /* of VsManifestPool*: the pools its disks lived in */
    int64_t overlay_ms;    /* -1: unknown; the guest's time on overlays */
} VsManifestDomain;

typedef struct {
    int format_version;    /* VS_REPO_FORMAT_VERSION */
    uint32_t chunk_size;   /* the repository's; set by commit, checked by load */
    char *id;              /* unique, sortable by time: 20261123T141600Z-3f9a2c */
    int64_t started;       /* unix time, microseconds */
    int64_t completed;
    int64_t group_freeze_ms; /* -1 when nothing was frozen */
    char *hostname;
    GPtrArray *domains;    /* of VsManifestDomain* */
} VsManifest;

/* The constructors set what is listed here and leave every other field zero or
 * NULL, for the caller to assign (commit requires a disk's format, and records a
 * domain without consistency as "crash"). vs_manifest_free frees every field with g_free, arrays with
 * g_ptr_array_unref/g_array_unref. */
VsManifest *vs_manifest_new(void);             /* fresh id, started = now, hostname, group_freeze_ms = -1 */
VsManifestDomain *vs_manifest_add_domain(VsManifest *m, const char *name);   /* freeze_ms = -1 */
VsManifestDisk *vs_manifest_domain_add_disk(VsManifestDomain *d, const char *target); /* empty chain, chunks; in_repo */
/* A disk of no domain yet (the copy fills it, then it moves into one). */
VsManifestDisk *vs_manifest_disk_new(const char *target);        /* empty chain, chunks; in_repo */
void vs_manifest_disk_free(VsManifestDisk *disk);
VsManifestSnapshot *vs_manifest_snapshot_new(void);   /* iscsi_lun = -1 */
void vs_manifest_snapshot_free(VsManifestSnapshot *s);
VsManifestSnapshot *vs_manifest_snapshot_copy(const VsManifestSnapshot *s);
/* One record as the JSON object a manifest holds, and back (with the
 * manifest's checks; WHAT names it in errors): how a journal keeps it. */
char *vs_manifest_snapshot_to_json(const VsManifestSnapshot *s);
VsManifestSnapshot *vs_manifest_snapshot_from_json(const char *json, const char *what, GError **error);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsManifestSnapshot, vs_manifest_snapshot_free)
void vs_manifest_domain_add_pool(VsManifestDomain *d, const char *name, const char *xml);
const VsManifestPool *vs_manifest_domain_find_pool(const VsManifestDomain *d, const char *name);
void vs_manifest_free(VsManifest *m);
VsManifestDomain *vs_manifest_find_domain(const VsManifest *m, const char *name);
VsManifestDisk *vs_manifest_find_disk(const VsManifestDomain *d, const char *target);
/* Calls FN on every chunk reference of M, domain by domain, disk by disk, in
 * ascending offsets; stops at the first FN that returns false and returns false
 * then (true when every call did). */
typedef bool (*VsManifestChunkFunc)(const VsManifestDomain *d, const VsManifestDisk *disk,
                                    const VsChunkRef *ref, void *opaque);
bool vs_manifest_foreach_chunk(const VsManifest *m, VsManifestChunkFunc fn, void *opaque);
/* Why a repository cannot hold a domain called NAME (a phrase: "contains
 * \"/\"", "is longer than 128 bytes"; docs/repository-format.md, Names and
 * paths), or NULL: a backup checks before it copies anything. */
const char *vs_manifest_domain_name_problem(const char *name);
/* The domain named NAME_OR_UUID in M: by name, else by UUID (any case); NULL if none. */
VsManifestDomain *vs_manifest_lookup_domain(const VsManifest *m, const char *name_or_uuid);

/* True when DISK's data is in the repository. Otherwise (in_repo false: only
 * in its storage snapshot) false with ERROR (VS_ERROR_UNSUPPORTED) starting
 * "OP: " and naming backup BACKUP_ID, DOMAIN and the disk, the snapshot, and
 * what to do: `virtsnap restore --from-snapshot`, or `virtsnap vault --repo
 * REPO_PATH BACKUP_ID` (REPO_PATH NULL: "R"). Export, restore and mount from
 * the repository check before they write anything. */
bool vs_manifest_disk_check_in_repo(const char *op, const char *repo_path, const char *backup_id,
                                    const char *domain, const VsManifestDisk *disk, GError **error);

char *vs_manifest_to_json(const VsManifest *m);
VsManifest *vs_manifest_from_json(const char *json, const char *what, GError **error);

/* Writes the manifest (completed = now, chunk_size = the repository's)
 * atomically: temp file, fsync, rename, fsync of the directory. Only after this
 * does the backup exist. Before writing it flushes (vs_repo_flush), drops
 * references to all-zero chunks, validates the manifest (as parsing would) and
 * checks that every chunk it names is durably in the repository under its final
 * name. Should the id be taken (two backups in the same second
 * drawing the same random suffix), a new suffix is drawn: read M->id after. */
bool vs_repo_commit_manifest(VsRepo *repo, VsManifest *m, GError **error);

/* Puts M in place of the manifest of backup M->id (a full id), which must
 * exist: what `vault` does when a snapshot-only backup's data has been copied
 * in. M is prepared and checked as commit does (flushed, validated, every
 * chunk durably present) and parsed back as a loader would, then exchanged
 * with the old manifest in one rename: a reader, or a process killed at any
 * point, sees the old manifest or the new one. M's started and completed stay
 * as they are (retention goes by them). A backup removed meanwhile stays
 * removed (VS_ERROR_NOT_FOUND). Two writers replacing one backup at once:
 * the last one's manifest stands, each of them a whole one. */
bool vs_repo_replace_manifest(VsRepo *repo, VsManifest *m, GError **error);

/* Ids of complete backups, oldest first. */
char **vs_repo_list(VsRepo *repo, GError **error);
/* ID may be a full id, a unique prefix, or "latest". */
VsManifest *vs_repo_load_manifest(VsRepo *repo, const char *id, GError **error);
/* What `list` and `prune` need of a backup, without its chunk list: from the
 * summary commit writes beside the manifest (docs/repository-format.md), or
 * from the manifest when there is no summary that matches it. */
typedef struct {
    char *name;
    char *consistency;     /* "quiesced" or "crash" */
    char **disks;          /* the disks' targets, NULL-terminated */
    char **snapshot_only;  /* those whose data is only in a storage snapshot (in_repo false), NULL-terminated */
} VsSummaryDomain;

typedef struct {
    char *id;
    int64_t started;       /* unix microseconds */
    int64_t completed;
    int64_t group_freeze_ms; /* -1 when nothing was frozen */
    uint64_t virtual_bytes;  /* the disks' virtual sizes, summed */
    uint64_t data_bytes;     /* the chunks' lengths, summed: the data the backup holds */
    uint64_t stored_bytes;   /* the disks' bytes_stored, summed */
    GPtrArray *domains;      /* of VsSummaryDomain* */
    char *problem;           /* non-NULL: the backup could not be read (why); the rest is empty */
} VsBackupSummary;

void vs_backup_summary_free(VsBackupSummary *s);
/* Every complete backup, in the order of vs_repo_list (oldest first), each
 * read once: its summary when that is valid and matches the manifest there,
 * else its manifest. A backup whose manifest cannot be read is in the list
 * too, with PROBLEM set. NULL (and ERROR) only when backups/ cannot be read. */
GPtrArray *vs_repo_list_summaries(VsRepo *repo, GError **error);

/* As vs_repo_load_manifest, but "latest" with a DOMAIN (name or UUID) is the
 * newest backup that holds DOMAIN (manifests that cannot be read are passed
 * over); none: VS_ERROR_NOT_FOUND. The backup a user means by "latest DOMAIN". */
VsManifest *vs_repo_load_manifest_of(VsRepo *repo, const char *id, const char *domain,
                                     GError **error);
/* Removes a backup's manifest (its chunks stay until vs_repo_gc). ID must be
 * the full id: no prefixes, no "latest", for a deletion. */
bool vs_repo_delete(VsRepo *repo, const char *id, GError **error);
/* Removes the backups IDS (NULL-terminated full ids) in that order, with one
 * sync of backups/ at the end; stops at the first that fails. *REMOVED (may be
 * NULL): how many went, also on failure. */
bool vs_repo_delete_many(VsRepo *repo, const char *const *ids, guint *removed, GError **error);

/* ------------------------------------------------------------------------- */
/* Verify, export, GC                                                        */

typedef struct {
    char *backup_id;
    char *domain;
    char *disk;
    uint64_t offset;
    char *digest_hex;
    char *problem;         /* "missing", "corrupt: ..." or "unreadable: ..." */
} VsVerifyProblem;

/* Re-reads and re-hashes every chunk of backup ID (NULL: all backups; else as
 * for vs_repo_load_manifest). Each chunk is read once however many disks share
 * it. Problems are appended to *PROBLEMS (VsVerifyProblem*, one per missing/
 * corrupt chunk and disk that needs it, in backup, domain, disk, offset order;
 * *PROBLEMS is created when NULL). A manifest that cannot be read is a problem
 * too: domain, disk and digest_hex NULL, problem "corrupt manifest: ...".
 * *CHUNKS_CHECKED (may be NULL): distinct chunks read. Returns false with *error
 * only when verification itself could not run. */
bool vs_repo_verify(VsRepo *repo, const char *id, GPtrArray **problems,
                    uint64_t *chunks_checked, GError **error);
void vs_verify_problem_free(VsVerifyProblem *p);

/* Writes a disk of a backup to OUT ("raw" or "qcow2"; NULL: the disk's own
 * format), sparse: zero chunks, and zero 4 KiB blocks within chunks, are never
 * written. OUT must not exist (it is written to a temp name in OUT's directory,
 * mode 0600, and renamed at the end). qcow2 is a standalone v3 image with 64 KiB
 * clusters, built in-process (VIRTSNAP_QCOW2_WRITER=qemu-nbd: through qemu-img
 * and qemu-nbd instead). An interrupt (vs-interrupt.h) stops it at the next
 * chunk (VS_ERROR_INTERRUPTED), the temp file removed. */
bool vs_repo_export_disk(VsRepo *repo, const VsManifest *m, const char *domain,
                         const char *disk, const char *out, const char *format,
                         GError **error);

/* For a caller exporting several disks at once (restore). */
typedef struct {
    /* In: when another thread sets *CANCEL non-zero, the export stops soon
     * (VS_ERROR_FAILED, "cancelled") and leaves nothing behind. May be NULL. */
    const gint *cancel;
    /* Out: when the export failed because a chunk the disk needs is missing,
     * corrupt or unreadable, that chunk as vs_repo_verify would list it (free
     * with vs_verify_problem_free); NULL for any other failure. */
    VsVerifyProblem *bad_chunk;
    /* In: re-hash every chunk with SHA-256 as `virtsnap verify` does. Otherwise
     * each chunk is checked by its zstd frame's XXH64 content checksum and its
     * size, which finds any damage to a chunk file at a fraction of the CPU. */
    bool verify_hash;
    /* In: the temp name the image is built under, chosen (vs_temp_path) and
     * journaled by the caller so that `virtsnap recover` finds it after a kill
     * -9; it must not exist. NULL: a vs_temp_path name beside OUT. */
    const char *tmp;
    /* In, with TMP: the finished image stays at TMP for the caller to install
     * (restore renames it over a disk that exists); OUT is only named in
     * errors, and may exist. */
    bool keep_tmp;
} VsExportControl;

/* vs_repo_export_disk with CTL (may be NULL). Every chunk is checked as it is
 * written (the write is the verification; see verify_hash), on a few reader threads, while the
 * calling thread writes them in order; memory stays bounded by a few chunks
 * whatever the disk's size. */
bool vs_repo_export_disk_ctl(VsRepo *repo, const VsManifest *m, const char *domain,
                             const char *disk, const char *out, const char *format,
                             VsExportControl *ctl, GError **error);

/* Deletes chunks no manifest references and temp files older than an hour or
 * whose maker (a process of this host, as their names say) is gone;
 * takes the repository lock exclusively (fails with VS_ERROR_BUSY if a backup holds it shared).
 * Deletes nothing when any manifest cannot be read. */
bool vs_repo_gc(VsRepo *repo, uint64_t *chunks_removed, uint64_t *bytes_freed, GError **error);

/* ------------------------------------------------------------------------- */
/* Retention                                                                 */

typedef struct {
    unsigned keep_last;      /* the N newest backups of each domain */
    unsigned keep_daily;     /* the newest of each of the N latest days with a backup (local time) */
    unsigned keep_weekly;    /* ... ISO weeks */
    unsigned keep_monthly;   /* ... months */
} VsPrunePolicy;

typedef struct {
    char *id;
    int64_t completed;       /* unix microseconds */
    char **domains;
    bool keep;
    char *reasons;           /* why kept: "web1: last; web1: daily 2026-11-23", or NULL */
} VsPruneDecision;

void vs_prune_decision_free(VsPruneDecision *d);
/* Marks each of DECISIONS (id, completed, domains filled in) keep or not under
 * POLICY, per domain: a backup is kept if any of its domains keeps it. Sorts
 * DECISIONS newest first. Fails (VS_ERROR_INVALID_ARG) when the policy keeps
 * nothing at all. */
bool vs_prune_select(GPtrArray *decisions, const VsPrunePolicy *policy, GError **error);
/* The decision for every backup in REPO (newest first), each from its summary
 * (vs_repo_list_summaries), or NULL when any backup can be described neither by
 * a summary matching its manifest nor by the manifest (then nothing may be
 * removed; every error's message starts with "prune: "). The caller removes
 * with vs_repo_delete_many and then runs vs_repo_gc. */
GPtrArray *vs_repo_prune_plan(VsRepo *repo, const VsPrunePolicy *policy, GError **error);

/* ------------------------------------------------------------------------- */
/* Vault: a snapshot-only backup's data copied into the repository (issue 15) */

typedef struct _VsSnapConfig VsSnapConfig;   /* vs-snapshot.h */

typedef enum {
    VS_VAULT_DISK_IN_REPO,   /* its data was in the repository already: nothing done */
    VS_VAULT_DISK_VAULTED,   /* copied now */
    VS_VAULT_DISK_FAILED,    /* ERROR says why; the disk stays snapshot-only */
    VS_VAULT_DISK_SKIPPED,   /* not tried: an interrupt, or a failure that ends the vault */
} VsVaultDiskState;

typedef struct {
    char *domain;
    char *disk;              /* target */
    VsVaultDiskState state;
    char *provider, *handle; /* the snapshot read (NULL for IN_REPO without one) */
    /* Incremental: only what the storage's diff reported changed since the
     * snapshot of backup BASE_ID's same disk was read; the rest is that
     * backup's chunks. Otherwise FULL_WHY, when the provider has a diff, says
     * why not (no earlier vaulted snapshot of the disk, it is gone, ...). */
    bool incremental;
    char *base_id;
    char *full_why;
    uint64_t virtual_size;
    uint64_t bytes_changed;  /* incremental: what the diff reported (data and discards); full: the size */
    uint64_t bytes_read;     /* data read from the snapshot (holes and zeros not counted) */
    uint64_t bytes_stored;   /* new compressed bytes in the repository */
    char *error;             /* FAILED: the message (it names backup, domain and disk) */
} VsVaultDisk;

typedef struct {
    char *id;                /* the backup's full id */
    GPtrArray *disks;        /* of VsVaultDisk*, every disk of the backup, in manifest order */
    guint vaulted;           /* disks copied now (and committed) */
} VsVaultResult;

void vs_vault_result_free(VsVaultResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsVaultResult, vs_vault_result_free)

/* `virtsnap vault`: for every disk of backup ID (a full id, a unique prefix or
 * "latest") whose data is only in its storage snapshot (in_repo false), opens
 * the snapshot through the provider that made it (vs_snap_provider_for_record:
 * CONFIG names the hooks; NULL: none) and copies it in with the copy engine;
 * then replaces the backup's manifest with one that holds those disks' chunks
 * (in_repo true), atomically (vs_repo_replace_manifest): killed at any point
 * before, the backup is still snapshot-only and valid, and the chunks written
 * meanwhile are unreferenced ones gc removes. The snapshot records stay (the
 * snapshots are kept until prune). Incremental where the provider has a diff
 * (rbd) and the disk is raw: against the newest earlier backup of the same
 * domain and disk whose data is in the repository and whose recorded snapshot
 * of the same image still exists, only the ranges the diff reports are read
 * (vs_source_open_changed), the rest taken from that backup's chunks; else a
 * full copy (deduplication still saves the space). A disk that fails does not
 * stop the others: those copied are committed, and false is returned with the
 * first disk's error; an interrupt (vs-interrupt.h) stops at the next chunk and
 * commits what was done. *RESULT (free with vs_vault_result_free) is set
 * whenever the backup could be read, also on failure, for the caller's
 * report. Needs REPO opened writable; holds its shared lock while copying.
 * Test hook: $VIRTSNAP_FAULT=vault-copy kills the process (SIGKILL) once a
 * disk's copy is half done, vault-commit just before the manifest's
 * replacement. Errors start "vault: backup ID, domain D, disk T: " and say what
 * to do. */
bool vs_repo_vault(VsRepo *repo, const char *id, const VsSnapConfig *config, VsVaultResult **result,
                   GError **error);

/* Shared lock held by a writer for the duration of a backup so that GC never
 * deletes chunks a not-yet-committed manifest is about to reference. Waits up to
 * 10 s for a running gc (then VS_ERROR_TIMEOUT). Idempotent; released by
 * vs_repo_unlock or vs_repo_close. */
bool vs_repo_lock_shared(VsRepo *repo, GError **error);
void vs_repo_unlock(VsRepo *repo);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsRepo, vs_repo_close)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsManifest, vs_manifest_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsBackupSummary, vs_backup_summary_free)

G_END_DECLS
