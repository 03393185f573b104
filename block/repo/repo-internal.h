/* What the repository's .c files share and nobody else sees: the VsRepo
 * structure, the small POSIX helpers every durable write goes through (write
 * all, fsync a directory, rename without replacing, temp names that two hosts
 * cannot collide on), chunk checking as verify needs it (a verdict rather than a
 * GError), and manifest validation, which commit and parse apply alike. */
#pragma once

#include "vs-repo.h"

#include <sys/stat.h>
#include <sys/types.h>

#define REPO_MARKER "virtsnap-repo.json"
#define REPO_MARKER_FORMAT "virtsnap-repository"
#define MANIFEST_FORMAT "virtsnap-manifest"
/* Chunk sizes are powers of two in this range: small enough to dedup well, and
 * at most what a single NBD request carries. */
#define REPO_MIN_CHUNK_SIZE (4u * 1024)
#define REPO_MAX_CHUNK_SIZE (16u * 1024 * 1024)
#define REPO_ZSTD_LEVEL 1
/* Chunks are written to REPO/tmp unsynced and made durable together by a flush
 * (one syncfs, then the renames). The put that takes the unflushed compressed
 * bytes to this many, or their count to REPO_FLUSH_CHUNKS, starts a flush on the
 * repository's flusher thread and goes on; a put that finds twice as much
 * pending (the flusher has not caught up) flushes itself, so the pending table
 * and the unsynced page cache stay bounded. */
#define REPO_FLUSH_BYTES (64u * 1024 * 1024)
#define REPO_FLUSH_CHUNKS 16384u

/* Who may read what virtsnap creates in a repository (repo-perms.c): the
 * owner alone (0700 directories, 0600 files), or, in a repository made with
 * `init --group`, its group too (0750/0640, that group's gid). Set explicitly
 * on each new entry, whatever the umask; nothing is ever open to "other". */
typedef struct {
    mode_t dir_mode;
    mode_t file_mode;
    gid_t gid;                 /* (gid_t)-1: private */
} RepoPerms;

/* A chunk written in full to a temp file and not yet renamed into place. */
typedef struct {
    VsDigest digest;           /* the key of the pending and flushing tables */
    char *tmp_path;            /* REPO/tmp/chunk-PID-RANDOM.tmp */
    uint64_t size;             /* compressed bytes */
} RepoPending;

struct _VsRepo {
    char *path;
    RepoPerms perms;           /* what new entries get (from the marker) */
    char *group;               /* the marker's group name, NULL: private */
    int64_t created;           /* the marker's, unix microseconds */
    char *chunks_dir;
    char *backups_dir;
    char *tmp_dir;
    uint32_t chunk_size;
    bool writable;
    bool store_raw;            /* vs_repo_set_compression(false): every chunk in raw blocks */
    VsDigest zero_digest;      /* of chunk_size zero bytes */

    GMutex lock;               /* guards everything below */
    GPtrArray *cctx_pool;      /* ZSTD_CCtx*, reused across put_chunk calls */
    GPtrArray *dctx_pool;      /* ZSTD_DCtx* */
    uint8_t dir_known[256];    /* fan-out dir exists (we made or saw it) */
    uint8_t dir_dirty[256];    /* a chunk this repo relies on was put there since the last commit */
    int lock_fd;               /* REPO/lock while vs_repo_lock_shared holds it, else -1 */

    /* The write path (vs_repo_put_chunk, vs_repo_flush); the tables and counters
     * are under lock, like everything above. */
    GHashTable *pending;       /* VsDigest* -> RepoPending*: written, not yet flushed */
    uint64_t pending_bytes;    /* their compressed size */
    GHashTable *flushing;      /* the table a running flush is placing, else NULL */
    uint64_t sync_epoch;       /* bumped by every failed sync (see vs_repo_flush) */
    int sync_err;              /* the errno of the last failed sync */
    GMutex flush_lock;         /* one flush at a time */
    GThreadPool *flusher;      /* one thread: the flushes puts start; made on first use */
    bool flush_queued;         /* a flush is pushed to the flusher and has not begun */
    bool flush_running;        /* the flusher is flushing */
    GCond flusher_cond;        /* signalled when neither is true any more */
    GError *flusher_error;     /* the first error of a background flush, until a
                                * vs_repo_flush reports it; puts fail meanwhile */
    int tmp_fd;                /* REPO/tmp, open from vs_repo_open (writable only): the
                                * syncfs target, opened early so that it sees every
                                * write-back error since */
    uint64_t flush_bytes;      /* REPO_FLUSH_BYTES; tests lower it */
    guint flush_chunks;        /* REPO_FLUSH_CHUNKS; tests lower it */
    int test_sync_errno;       /* tests: the errno syncfs "fails" with, 0: none */
};

typedef enum {
    CHUNK_OK,
    CHUNK_MISSING,
    CHUNK_CORRUPT,
    CHUNK_UNREADABLE,          /* an I/O error: neither proven good nor bad */
    CHUNK_NOT_REGULAR,         /* a FIFO, directory, symlink or device under the chunk's name */
} ChunkVerdict;

/* Reads and checks one chunk. On CHUNK_OK returns the plain data in *DATA (when
 * DATA is not NULL) and its length in *LEN; otherwise *DETAIL says why. */
ChunkVerdict repo_check_chunk(VsRepo *repo, const VsDigest *digest, void **data, size_t *len,
                              char **detail);
/* The same into the caller's buffers, for a reader that checks chunk after
 * chunk without fresh (page-faulting) memory for each: *ZBUF (*ZCAP bytes,
 * grown when a file needs more) takes the compressed file, OUT (chunk_size
 * bytes) the plain data, *LEN its length. Without HASH a chunk whose zstd frame
 * carries a content checksum (every chunk virtsnap writes) is checked by that
 * XXH64, verified as it is inflated, and its size, not re-hashed with SHA-256:
 * that finds any damage to the file, not a file replaced by another chunk's. */
ChunkVerdict repo_check_chunk_into(VsRepo *repo, const VsDigest *digest, void **zbuf, size_t *zcap,
                                   void *out, size_t *len, bool hash, char **detail);

/* What verify and export say of a chunk: "missing", "corrupt: DETAIL", "not a
 * regular file", ...; for CHUNK_OK a length that is not WANT bytes is
 * corruption too, and a chunk that is fine NULL. */
char *repo_chunk_problem(ChunkVerdict v, const char *detail, uint32_t want, size_t got);
char *repo_chunk_path(const VsRepo *repo, const VsDigest *digest);
bool repo_chunk_size_valid(uint64_t n);

/* errno-returning helpers: 0 on success. */
int repo_write_all(int fd, const void *buf, size_t len);
int repo_pwrite_all(int fd, const void *buf, size_t len, off_t offset);
int repo_fsync_dir(const char *dir);
/* Renames OLD to NEW unless NEW exists (EEXIST); falls back to link+unlink on
 * filesystems without RENAME_NOREPLACE. */
int repo_rename_noreplace(const char *oldpath, const char *newpath);
/* The same relative to directory descriptors (AT_FDCWD: the working directory). */
int repo_renameat_noreplace(int olddir, const char *oldpath, int newdir, const char *newpath);
/* Writes DATA to a fresh temp file in DIR (mode and group as PERMS say),
 * fsyncs it and returns its name; on failure nothing is left behind and the
 * errno is returned. */
int repo_write_temp(const RepoPerms *perms, const char *dir, const char *kind, const void *data,
                    size_t len, char **tmp_path);
void repo_random_hex(char *out, size_t nhex);   /* NHEX chars + NUL */
/* XXH64 with seed 0: the content checksum of a zstd frame. */
uint64_t repo_xxh64(const void *data, size_t len);

/* Asks the kernel to read DIGEST's chunk file ahead of its reader (only a hint:
 * a file that cannot be opened is left for the reader to report). */
void repo_prefetch_chunk(VsRepo *repo, const VsDigest *digest);

/* Ids in backups/ as sorted, or NULL with an error. */
char **repo_list_ids(VsRepo *repo, GError **error);
/* A full id, unique prefix or "latest" to one existing id. */
char *repo_resolve_id(VsRepo *repo, const char *id, GError **error);
/* Loads backups/ID.json exactly (no prefix matching). */
VsManifest *repo_load_manifest_exact(VsRepo *repo, const char *id, GError **error);

/* Files and directories of a repository someone else may have written
 * (repo-fs.c). REPO_ERR_NOT_REGULAR is not an errno (those are positive and
 * small); repo_strerror names it and every errno. */
#define REPO_ERR_NOT_REGULAR 0x10001   /* a symlink, FIFO, directory, device where a file must be */
const char *repo_strerror(int err);
/* Opens PATH (relative to DIRFD) for reading without following a symlink at its
 * end nor waiting on a FIFO: 0 with *FD (and *ST when not NULL) only for a
 * regular file, else an errno or REPO_ERR_NOT_REGULAR. */
int repo_open_regular(int dirfd, const char *path, int *fd, struct stat *st);
/* Reads such a file whole into *TEXT (NUL-terminated, *LEN bytes; LEN may be NULL). */
int repo_read_regular(int dirfd, const char *path, char **text, size_t *len);
/* Opens directory NAME of PARENT (an fd; PARENT_PATH names it in errors)
 * without following a symlink. True with *FD, or with *FD -1 when there is no
 * NAME; false with an error when NAME is not a real directory ("must be a real
 * directory") or cannot be opened. */
bool repo_open_subdir(int parent, const char *parent_path, const char *name, int *fd, GError **error);
/* Opens the fixed directory REL of REPO ("chunks", "tmp", "backups") and, when
 * NAME is not NULL, its child NAME, from the repository's own directory and
 * following no symlink on the way: what is walked or deleted through *FD is
 * really inside the repository. As repo_open_subdir (*FD -1: absent). */
bool repo_open_dir(VsRepo *repo, const char *rel, const char *name, int *fd, GError **error);
/* Refuses the repository at PATH when one of its fixed directories (chunks,
 * chunks/XX, backups, tmp, checkpoints, checkpoints/TAG) is not a real
 * directory, or its marker or lock is not a regular file. Absent ones are fine. */
bool repo_check_layout(const char *path, GError **error);

/* Names and paths from a manifest (repo-names.c): a name is one file-name
 * component restore may build file names from (NAME-TARGET.FORMAT plus a temp
 * suffix stays under 255 bytes), a path may not climb. */
#define REPO_MAX_DOMAIN_NAME 128
#define REPO_MAX_TARGET 32
#define REPO_MAX_FORMAT 16
#define REPO_MAX_PATH 4096
typedef enum {
    REPO_NAME_DOMAIN,          /* one component, no "/", not "." or ".." */
    REPO_NAME_TARGET,          /* letters, digits, "_-." */
    REPO_NAME_FORMAT,          /* letters, digits, "_-" */
    REPO_NAME_UUID,            /* 32 hex digits and dashes */
    REPO_NAME_PATH,            /* a disk's source or chain path: no ".." component */
} RepoNameKind;

/* Why S is not a valid name of KIND (a phrase: "contains \"/\""), NULL when it is. */
const char *repo_name_problem(RepoNameKind kind, const char *s);

/* ------------------------------------------------------------------------- */
/* Permissions (repo-perms.c)                                                */

/* The permissions of a private repository, or of one shared with GID. */
RepoPerms repo_perms(gid_t gid);
/* Gives the file or directory open as FD exactly the mode PERMS says for it
 * (and its group); 0 or an errno. umask cannot loosen a mode, but it can take
 * the group's bits away from a shared repository, so they are set here. */
int repo_perms_apply_fd(int fd, bool dir, const RepoPerms *perms);
/* mkdir DIR with the mode PERMS says; an existing directory (another writer
 * made it) is fine and left as it is. 0 or an errno. */
int repo_mkdir(const char *dir, const RepoPerms *perms);
/* Like repo_perms_apply_fd on the directory DIR (a symlink to one only when
 * FOLLOW: the repository's own path may be one), when it needs it; *WAS (may
 * be NULL) its mode before. */
int repo_perms_apply_dir(const char *dir, bool follow, const RepoPerms *perms, mode_t *was);
/* Hands a notice about REPO to the function vs_repo_set_notice_func set, if any. */
void repo_notice(VsRepoNotice kind, const char *repo, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* The gid of GROUP, or an error naming it. */
bool repo_group_gid(const char *group, gid_t *gid, GError **error);
/* Records in the marker that REPO is shared with GROUP (GID); new entries get
 * that group from then on. */
bool repo_set_group(VsRepo *repo, const char *group, gid_t gid, GError **error);

/* The marker's text: chunk size, creation time, and the group when shared. */
char *repo_marker_json(uint32_t chunk_size, int64_t created, const char *group, gid_t gid);

/* Structural checks of a manifest, the same after parsing and before commit;
 * errors start with WHERE ("manifest: FILE"). */
bool manifest_validate(const VsManifest *m, const char *where, GError **error);
bool repo_id_valid(const char *id);
/* What commit and replace do before writing M (the repository writable): flush,
 * the repository's chunk size and "crash" for a domain without consistency,
 * manifest_validate, references to zero chunks dropped, every chunk checked
 * durably under its final name; errors start with WHERE. */
bool manifest_prepare(VsRepo *repo, VsManifest *m, const char *where, GError **error);

/* Holds the repository lock of FD in MODE (LOCK_SH, LOCK_EX) without blocking. */
int repo_open_lock_file(VsRepo *repo, GError **error);

/* Makes durable the renames into the fan-out directories since the last call:
 * this repository's flushes and chunks it deduplicated against (files another
 * writer renamed into place), so that a manifest is never more durable than the
 * chunks it names. One syncfs; an fsync per directory where that is missing. */
bool repo_sync_dirty_dirs(VsRepo *repo, GError **error);
/* True when the chunk is under its final name (not merely pending): what commit
 * checks after flushing. */
bool repo_chunk_placed(VsRepo *repo, const VsDigest *digest);

/* Test hooks: flush once FLUSH_BYTES of compressed chunks or FLUSH_CHUNKS
 * chunks are pending (0: the defaults), and make the syncfs of a flush fail
 * with SYNC_ERRNO (0: never; ENOSYS exercises the per-file fdatasync
 * fallback). */
void repo_test_set_flush(VsRepo *repo, uint64_t flush_bytes, guint flush_chunks, int sync_errno);
/* Test hook: waits until no background flush is queued or running. */
void repo_test_wait_flusher(VsRepo *repo);

/* ------------------------------------------------------------------------- */
/* Strict JSON reading (repo-json.c), for the marker and manifests: every field
 * present with its exact type, no unknown members, errors naming WHERE (the
 * operation and file) and the field's path ("domains[0].disks[1].format"). */

#include <json-glib/json-glib.h>

typedef struct {
    const char *where;
    GError **error;
} JsonCheck;

void jc_fail(JsonCheck *c, VsErrorCode code, const char *path, const char *name,
             const char *fmt, ...) G_GNUC_PRINTF(5, 6);
JsonObject *jc_root_object(JsonCheck *c, JsonParser *parser);
bool jc_members(JsonCheck *c, JsonObject *o, const char *path, const char *const *allowed);
bool jc_string(JsonCheck *c, JsonObject *o, const char *path, const char *name, bool nullable,
               char **out);
bool jc_uint(JsonCheck *c, JsonObject *o, const char *path, const char *name, uint64_t *out);
/* null is -1 (not frozen), else a non-negative integer */
bool jc_ms(JsonCheck *c, JsonObject *o, const char *path, const char *name, int64_t *out);
/* an ISO 8601 string with a time zone, to unix microseconds */
bool jc_time(JsonCheck *c, JsonObject *o, const char *path, const char *name, int64_t *out);
/* a format version: refuses (VS_ERROR_UNSUPPORTED) one newer than ours */
bool jc_version(JsonCheck *c, JsonObject *o, const char *path, const char *name, uint64_t *out);
JsonArray *jc_array(JsonCheck *c, JsonObject *o, const char *path, const char *name);
JsonObject *jc_element_object(JsonCheck *c, JsonArray *a, const char *path, guint i);

/* V as a JSON string (null for NULL), control bytes escaped. */
void repo_json_put_str(GString *s, const char *v);

/* ------------------------------------------------------------------------- */
/* A manifest's storage records (manifest-storage.c): each disk's snapshot and
 * in_repo, each domain's pools and overlay_ms; optional members both ways. */
void manifest_pool_free(VsManifestPool *p);
bool manifest_storage_validate_disk(JsonCheck *c, const char *path, const VsManifestDisk *disk);
bool manifest_storage_validate_domain(JsonCheck *c, const char *path, const VsManifestDomain *d);
void manifest_storage_put_disk(GString *s, const VsManifestDisk *disk);
void manifest_storage_put_domain(GString *s, const VsManifestDomain *d);
bool manifest_storage_parse_disk(JsonCheck *c, JsonObject *o, const char *path, VsManifestDisk *disk);
bool manifest_storage_parse_domain(JsonCheck *c, JsonObject *o, const char *path, VsManifestDomain *d);

/* unix microseconds as 2026-11-23T14:16:00.123456Z */
char *repo_time_to_iso(int64_t us);

/* ------------------------------------------------------------------------- */
/* A set of distinct digests (repo-digest-set.c): memory by distinct chunks,
 * however many references are added. Indices are dense, in order of first
 * insertion, for the caller's parallel arrays. */

typedef struct _RepoDigestSet RepoDigestSet;

RepoDigestSet *repo_digest_set_new(void);
void repo_digest_set_free(RepoDigestSet *s);
/* Adds D unless present; *INDEX (may be NULL) receives its index either way.
 * True when D was new. */
bool repo_digest_set_add(RepoDigestSet *s, const VsDigest *d, guint *index);
/* True when D is in S, its index in *INDEX (may be NULL). */
bool repo_digest_set_find(const RepoDigestSet *s, const VsDigest *d, guint *index);
/* Adds every chunk M references. */
void repo_digest_set_add_manifest(RepoDigestSet *s, const VsManifest *m);
guint repo_digest_set_size(const RepoDigestSet *s);
const VsDigest *repo_digest_set_get(const RepoDigestSet *s, guint index);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(RepoDigestSet, repo_digest_set_free)

/* ------------------------------------------------------------------------- */
/* Backup summaries (repo-summary.c): backups/ID.summary, a cache of what list
 * and prune need, bound to its manifest by id and size. */

VsBackupSummary *repo_summary_of_manifest(const VsManifest *m);
/* The summary file's JSON, for a manifest of MANIFEST_BYTES bytes. */
char *repo_summary_to_json(const VsBackupSummary *s, uint64_t manifest_bytes);
/* Strict parse of a summary file (errors start "summary: WHAT"); the manifest
 * size it claims in *MANIFEST_BYTES, for the caller to compare. */
VsBackupSummary *repo_summary_from_json(const char *json, const char *what, uint64_t *manifest_bytes,
                                        GError **error);
/* The summary of backup ID (a full id): its file when that matches the
 * manifest there, else made from the manifest (whose errors are returned). */
VsBackupSummary *repo_load_summary(VsRepo *repo, const char *id, GError **error);
/* At commit, after the manifest's rename: best effort, never an error. */
void repo_write_summary(VsRepo *repo, const VsManifest *m, uint64_t manifest_bytes);
/* Writes M's summary unless a valid one matching its manifest is there (gc,
 * for backups committed before summaries). Best effort. */
void repo_summary_repair(VsRepo *repo, const VsManifest *m);
/* At delete, after the manifest's unlink, through BACKUPS_FD (backups/ itself). */
void repo_delete_summary(VsRepo *repo, int backups_fd, const char *id);
