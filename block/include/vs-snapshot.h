/* Storage snapshots: the point in time made by the storage a disk lives on (an
 * XFS/btrfs reflink, a Ceph RBD snapshot, an array through an administrator's
 * hook) instead of by copying, behind one small ops table per kind of storage
 * in the manner of VsSourceOps. A provider is chosen per disk from where its
 * data lives (VsSnapLocation, filled by discovery); it makes a snapshot and
 * names it by a handle string of its own making, which the driver records in
 * the repository. A handle read back from a repository is hostile until
 * vs_snap_handle_check accepts it; the wrappers below check it again before any
 * provider sees it. What a snapshot is exposed as (a path or URL) is read with
 * the sources of vs-source.h. The hook's contract (environment, output, exit
 * codes) is documented here and in docs/snapshots.md. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"
#include "vs-source.h"
#include "vs-repo.h"

G_BEGIN_DECLS

/* Where a disk's data lives, as far as discovery knows. Strings may be NULL
 * where unknown; they are borrowed, never freed by the providers. Providers
 * trust it (rollback writes into PATH, clone creates beside it): fill it from
 * discovery of the live system, never from what a repository recorded without
 * checking it against the live domain or pool first. */
typedef enum {
    VS_SNAP_LOC_FILE,      /* a file on a local file system (dir/fs pool, a plain path) */
    VS_SNAP_LOC_BLOCK,     /* a local block device (mpath, a kernel iSCSI LUN): hook only */
    VS_SNAP_LOC_NFS,       /* a file on an NFS export (netfs pool, protocol='nfs') */
    VS_SNAP_LOC_ISCSI,     /* an iSCSI LUN reached by QEMU (iscsi-direct, protocol='iscsi') */
    VS_SNAP_LOC_RBD,       /* a Ceph RBD image (rbd pool, protocol='rbd') */
} VsSnapLocKind;

typedef struct {
    VsSnapLocKind kind;
    const char *disk;          /* for messages: "web1/vda" or "vda"; required */
    const char *path;          /* FILE, BLOCK: the file or device; NFS: the local mount if any */
    const char *pool;          /* libvirt storage pool, if the disk is a volume of one */
    const char *volume;        /* libvirt volume name in that pool */
    const char *nfs_server;    /* NFS */
    const char *nfs_export;
    const char *nfs_path;      /* the file below the export */
    const char *iscsi_portal;  /* ISCSI: host[:port] */
    const char *iscsi_iqn;
    int iscsi_lun;             /* -1: unknown */
    const char *wwid;          /* SCSI WWID where known (BLOCK, ISCSI) */
    const char *rbd_pool;      /* RBD */
    const char *rbd_image;
    const char *rbd_conf;      /* ceph.conf naming the monitors and the keyring; NULL: Ceph's default */
    const char *rbd_user;      /* Ceph client id without "client."; NULL: admin */
} VsSnapLocation;

/* "file", "block", ... as the hook's VIRTSNAP_DISK_KIND reads it. */
const char *vs_snap_loc_kind_name(VsSnapLocKind kind);

typedef struct _VsSnapProvider VsSnapProvider;

/* The ops table every provider fills in. LOC is the disk the snapshot is of;
 * HANDLE has passed vs_snap_handle_check before any entry sees it. Entries
 * report errors starting with "snapshot: DISK: " and naming the fix;
 * VS_ERROR_NOT_FOUND for a snapshot that does not exist, VS_ERROR_UNSUPPORTED
 * for what the storage cannot do. */
typedef struct {
    const char *name;                                   /* "reflink", "btrfs", "hook", "rbd" */
    /* Makes a snapshot of LOC now; LABEL ([A-Za-z0-9._-], unique per disk, e.g.
     * the backup's id and the disk) goes into the handle where the storage lets
     * it. Returns the new handle. */
    char *(*create)(VsSnapProvider *p, const VsSnapLocation *loc, const char *label, GError **error);
    bool (*delete)(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error);
    /* The disk's content becomes the snapshot's, in place (the same file,
     * image or LUN: owner, labels, pool volume kept). Nothing may use the disk. */
    bool (*rollback)(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error);
    /* A new, writable disk NAME (a file name, an image name: no '/') beside
     * LOC's, sharing the snapshot's data (thin). Returns its path or URL. */
    char *(*clone)(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, const char *name,
                   GError **error);
    /* A path or URL vs_source_open_url (a path or nfs://, iscsi://, nbd://) or
     * vs_source_open_image (FORMAT raw: "rbd:pool/image@snap:...") reads the
     * snapshot's bytes from. *IMAGE_ONLY: only vs_source_open_image can. */
    char *(*expose)(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *image_only,
                    GError **error);
    /* Optional (NULL: the storage cannot say): the ranges that differ between
     * snapshot FROM (NULL: an empty disk) and snapshot TO, appended to OUT in
     * order; `zero` set where TO reads as zeros (discarded). */
    bool (*diff)(VsSnapProvider *p, const VsSnapLocation *loc, const char *from, const char *to,
                 GArray *out /* VsExtent */, GError **error);
    /* Whether the snapshot still exists (verify, `snapshots`): *EXISTS set, true
     * returned; false only when the storage could not be asked. */
    bool (*exists)(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *exists,
                   GError **error);
    /* Optional (NULL: the provider cannot say): the storage controller and the
     * volume (or LUN, file path) LOC lives on in the storage's own words, as a
     * Snap Creator KVM_VM_MAPPING names them ("array1", "/vol/vol1/lun1"). */
    bool (*locate)(VsSnapProvider *p, const VsSnapLocation *loc, char **controller, char **volume,
                   GError **error);
    void (*free)(VsSnapProvider *p);
} VsSnapOps;

struct _VsSnapProvider {
    const VsSnapOps *ops;
    void *priv;
};

/* A handle as every provider makes it and as a repository may hand it back:
 * 1..200 bytes of [A-Za-z0-9._:+@=-], not starting with '.' or '-' (so never
 * "..", an option, or a hidden file). The error names the first bad byte,
 * escaped. */
bool vs_snap_handle_check(const char *handle, GError **error);
/* The same rule for a label or a clone's name: [A-Za-z0-9._-], 1..128 bytes,
 * not starting with '.' or '-'. WHAT names it in the error ("label"). */
bool vs_snap_name_check(const char *what, const char *name, GError **error);

/* reflink: FICLONE of a file disk into BASE_DIR/virtsnap-snapshots/ (created
 * 0700; BASE_DIR and it reached without following a symlink), which must be on
 * the disk's file system (XFS with reflink=1, btrfs). The handle is the
 * snapshot's file name (the label). Rollback and clone are FICLONEs too; a file
 * system that cannot reflink is a VS_ERROR_UNSUPPORTED naming the disk. No diff. */
VsSnapProvider *vs_snap_reflink_new(const char *base_dir, GError **error);

/* btrfs: where the disk's directory (a pool's) is a btrfs subvolume, a
 * read-only subvolume snapshot of it as BASE_DIR/virtsnap-snapshots/LABEL
 * (the same private directory as reflink's, on the same btrfs). The handle is
 * the label; the disk is its file inside. Rollback, clone, expose: FICLONE of
 * that file, as reflink. A directory that is not a subvolume: UNSUPPORTED. */
VsSnapProvider *vs_snap_btrfs_new(const char *base_dir, GError **error);

/* hook: an executable the administrator names, run once per operation as
 *   HOOK OP     (OP: create, delete, rollback, clone, expose, exists, locate)
 * with stdin /dev/null, in its own process group, with an environment built
 * from nothing but PATH=/usr/sbin:/usr/bin:/sbin:/bin and (unset when unknown):
 *   VIRTSNAP_SNAP_OP        the operation (as argv[1])
 *   VIRTSNAP_SNAP_LABEL     create: the label
 *   VIRTSNAP_SNAP_HANDLE    every other operation: the handle create printed
 *   VIRTSNAP_CLONE_NAME     clone: the new disk's name
 *   VIRTSNAP_SNAP_ATTEMPT   1, 2, ... (retries)
 *   VIRTSNAP_DISK           the disk, for messages
 *   VIRTSNAP_DISK_KIND      file, block, nfs, iscsi, rbd
 *   VIRTSNAP_DISK_PATH      VIRTSNAP_POOL  VIRTSNAP_VOLUME
 *   VIRTSNAP_NFS_SERVER     VIRTSNAP_NFS_EXPORT  VIRTSNAP_NFS_PATH
 *   VIRTSNAP_ISCSI_PORTAL   VIRTSNAP_ISCSI_IQN   VIRTSNAP_ISCSI_LUN   VIRTSNAP_WWID
 *   VIRTSNAP_RBD_POOL       VIRTSNAP_RBD_IMAGE   VIRTSNAP_RBD_CONF    VIRTSNAP_RBD_USER
 *   VIRTSNAP_HOOK_CONFIG    VsSnapHookConfig.config_file: where the hook finds its
 *                           own settings and credentials (never passed by value)
 * It prints `key=value` lines on stdout (at most 64 KiB; other keys ignored):
 *   create: handle=H (vs_snap_handle_check's rule)
 *   clone, expose: url=U or path=P (absolute; no control characters)
 *   expose: image_only=1 if only vs_source_open_image can read it
 *   exists: exists=yes|no
 *   locate (optional, no handle): controller=C and volume=V, the storage's
 *     names for where the disk lives (1..255 bytes each, no ';', no control
 *     characters); exit 3 where the hook cannot say
 * Exit 0: done. Exit 3: the operation is not supported (not retried,
 * VS_ERROR_UNSUPPORTED). Other exits, a signal, garbage on stdout: failed,
 * retried up to `retries` more times after `retry_delay_ms` (none once an
 * interrupt, vs-interrupt.h, arrived: a running hook is let finish). Past `timeout_ms`
 * the hook's whole process group is killed (VS_ERROR_TIMEOUT). Errors name the
 * hook, the operation, the disk, the exit code or signal and the first 512
 * bytes of its stderr with control characters escaped. Secrets: none are
 * passed; the hook reads its own from config_file. */
typedef struct {
    const char *path;           /* absolute path of the executable */
    const char *config_file;    /* NULL: VIRTSNAP_HOOK_CONFIG unset */
    unsigned timeout_ms;        /* per attempt; 0: 60000 */
    unsigned retries;           /* further attempts after a failure */
    unsigned retry_delay_ms;    /* between attempts */
} VsSnapHookConfig;
VsSnapProvider *vs_snap_hook_new(const VsSnapHookConfig *config, GError **error);

/* rbd: RBD snapshots through librbd (VS_ERROR_UNSUPPORTED when virtsnap was
 * built without it). Handle = the snapshot's name (the label). Clone protects
 * the snapshot first (a protected snapshot with clones cannot be deleted:
 * delete then fails, naming them). Expose gives "rbd:POOL/IMAGE@SNAP:conf=..."
 * for vs_source_open_image (raw). Diff: rbd_diff_iterate2, objects' extents. */
VsSnapProvider *vs_snap_rbd_new(GError **error);

void vs_snap_provider_free(VsSnapProvider *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsSnapProvider, vs_snap_provider_free)

/* The ops through these wrappers, which check handles and names first. diff
 * without the entry: VS_ERROR_UNSUPPORTED. */
const char *vs_snap_provider_name(const VsSnapProvider *p);
char *vs_snap_create(VsSnapProvider *p, const VsSnapLocation *loc, const char *label, GError **error);
bool vs_snap_delete(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error);
bool vs_snap_rollback(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error);
char *vs_snap_clone(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, const char *name,
                    GError **error);
char *vs_snap_expose(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *image_only,
                     GError **error);
bool vs_snap_has_diff(const VsSnapProvider *p);
bool vs_snap_diff(VsSnapProvider *p, const VsSnapLocation *loc, const char *from, const char *to,
                  GArray *out /* VsExtent */, GError **error);
bool vs_snap_exists(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *exists,
                    GError **error);
/* The locate entry: *CONTROLLER and *VOLUME (to free) set, true; without the
 * entry, or when the provider cannot say, VS_ERROR_UNSUPPORTED. */
bool vs_snap_locate(VsSnapProvider *p, const VsSnapLocation *loc, char **controller, char **volume,
                    GError **error);
/* The snapshot's bytes as a source: expose, then the right opener for the
 * disk's FORMAT (NULL: raw; a qcow2 is read as the guest sees it, its
 * backing chain included). */
VsSource *vs_snap_open(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, const char *format,
                       GError **error);

/* The provider `auto` picks for LOC: a hook when one is configured (it
 * overrides, per pool), rbd for RBD, for a file when REFLINK_BASE is set
 * btrfs if its directory is a btrfs subvolume, else reflink; NULL with VS_ERROR_UNSUPPORTED and the reason otherwise (what discover
 * reports). HOOK and REFLINK_BASE may be NULL. */
VsSnapProvider *vs_snap_choose(const VsSnapLocation *loc, const VsSnapHookConfig *hook, const char *reflink_base,
                               GError **error);

/* Which provider vs_snap_choose would pick for LOC, in the same order, and
 * whether it could work there, found out without side effects (nothing
 * created, no hook run, no cluster contacted, nothing opened for writing):
 * what `discover` reports. Looks further than vs_snap_choose: a file disk's
 * file system must be btrfs or an XFS made with reflink (asked of XFS by its
 * read-only geometry ioctl), REFLINK_BASE an absolute directory on the same
 * file system whose virtsnap-snapshots, if there, is private; rbd needs a
 * build with librbd and the image's pool and name. Returns the provider's
 * name ("hook", "rbd", "btrfs", "reflink"), or NULL with *WHY (to free) saying
 * why none, without the disk's name and without advice about hooks: when a
 * hook for the disk's storage would be the way (the storage snapshots itself,
 * or the file system cannot reflink), *NEEDS_HOOK is set, so a caller that
 * has no hook to offer can say so in its own words. Not a failure: no GError. */
const char *vs_snap_which(const VsSnapLocation *loc, const VsSnapHookConfig *hook, const char *reflink_base,
                          char **why, bool *needs_hook);

/* ------------------------------------------------------------------------- */
/* Configuration: which provider and hook each pool's disks get
 * (snapshot-config.c; docs/snapshots.md). A GKeyFile, by default
 * VS_SNAP_CONFIG_DEFAULT, refused unless it is a regular file owned by root
 * (or the caller) that group and others cannot write:
 *
 *   [defaults]                 # every disk that no [pool:NAME] names
 *   provider=auto              # auto, reflink, btrfs, rbd, hook, none
 *   hook=/usr/local/lib/virtsnap/array-hook   # absolute; makes auto pick it
 *   hook-config=/etc/virtsnap/array.conf       # VIRTSNAP_HOOK_CONFIG
 *   timeout=60                 # seconds per attempt
 *   retries=2
 *   retry-delay=5              # seconds
 *   snapshot-dir=/srv/vm       # reflink, btrfs: holds virtsnap-snapshots/
 *                              # (default: the disk's own directory)
 *   [pool:NAME]                # the same keys, for the disks of libvirt pool NAME
 *
 * Unknown groups or keys, a relative path, a bad number: an error naming the
 * file, the group and the key. */
#define VS_SNAP_CONFIG_DEFAULT "/etc/virtsnap/snapshots.conf"

typedef struct _VsSnapConfig VsSnapConfig;

/* PATH NULL: VS_SNAP_CONFIG_DEFAULT, whose absence is an empty configuration;
 * a PATH named and missing is an error. */
VsSnapConfig *vs_snap_config_load(const char *path, GError **error);
void vs_snap_config_free(VsSnapConfig *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsSnapConfig, vs_snap_config_free)

/* What the configuration says for LOC (its pool's group, else [defaults]):
 * the hook (NULL: none configured; owned by C), the provider it asks for
 * ("auto" when silent, "none" to never snapshot those disks), and the
 * snapshot directory for reflink/btrfs (NULL: the disk's own directory). */
typedef struct {
    const VsSnapHookConfig *hook;
    const char *provider;
    const char *snapshot_dir;
} VsSnapSettings;
void vs_snap_config_for(const VsSnapConfig *c, const VsSnapLocation *loc, VsSnapSettings *out);

/* The provider for LOC: WANT ("auto" or NULL: the configuration's choice, else
 * vs_snap_choose's; a provider name: that one, failing with
 * VS_ERROR_UNSUPPORTED where it cannot work) with C's settings; C may be NULL.
 * *SNAPSHOT_DIR (to free) is the reflink/btrfs directory used, NULL for
 * others: the backup records it. Errors start "snapshot: DISK: ". */
VsSnapProvider *vs_snap_config_choose(const VsSnapConfig *c, const VsSnapLocation *loc, const char *want,
                                      char **snapshot_dir, GError **error);

/* ------------------------------------------------------------------------- */
/* Snapshots a repository recorded (VsManifestSnapshot, vs-repo.h)           */

/* LOC's fields borrowed from REC (which, and DISK, must outlive LOC); DISK
 * names it in messages ("web1/vda"). False when REC's kind is not one of
 * vs_snap_loc_kind_name's (a record that passed the manifest's checks has
 * one). */
bool vs_snap_location_from_record(const VsManifestSnapshot *rec, const char *disk, VsSnapLocation *loc);
/* Its inverse: a new record of LOC (no handle yet) made by PROVIDER, with the
 * reflink/btrfs SNAPSHOT_DIR (NULL for others). */
VsManifestSnapshot *vs_snap_record_from_location(const VsSnapLocation *loc, const char *provider,
                                                 const char *snapshot_dir);

/* The provider that made REC, to ask, delete, roll back or clone it: reflink
 * and btrfs with REC's snapshot_dir, rbd, or the hook C configures for REC's
 * pool (an error naming the pool and the file when there is none). LOC as
 * vs_snap_location_from_record fills it. A repository is hostile: REC has
 * passed the manifest's checks (handles of virtsnap's own making, absolute
 * paths without ".."), and the providers refuse a snapshot directory that is
 * not private; a caller that writes into REC's disk (rollback) confirms the
 * location against the live system first. */
VsSnapProvider *vs_snap_provider_for_record(const VsSnapConfig *c, const VsManifestSnapshot *rec,
                                            const char *disk, VsSnapLocation *loc, GError **error);

/* ------------------------------------------------------------------------- */
/* The repository's side (snapshot-records.c): what its manifests record     */

/* Whether a recorded snapshot is still there, as its provider says. */
typedef enum {
    VS_SNAP_STATE_UNKNOWN,   /* its provider could not be asked: see the reason */
    VS_SNAP_STATE_EXISTS,
    VS_SNAP_STATE_GONE,
} VsSnapState;
/* "unknown", "yes", "no": what `snapshots` prints. */
const char *vs_snap_state_name(VsSnapState state);

/* Asks REC's provider (vs_snap_provider_for_record, C's hooks) whether it
 * still exists; DISK names it in messages ("web1/vda"). UNKNOWN with *REASON
 * (to free) when it cannot be asked: no hook configured for its pool, a
 * cluster that does not answer, a snapshot directory that is not there (a file
 * system not mounted?). Nothing is created on the way: a reflink or btrfs
 * snapshot directory is looked at before a provider would make it. */
VsSnapState vs_snap_record_state(const VsSnapConfig *c, const VsManifestSnapshot *rec, const char *disk,
                                 char **reason);

/* Deletes REC through its provider. One that is already gone is no failure:
 * *WAS_GONE (may be NULL) says so. False only when it may still exist (its
 * provider could not be made or asked, or refused). */
bool vs_snap_record_delete(const VsSnapConfig *c, const VsManifestSnapshot *rec, const char *disk, bool *was_gone,
                           GError **error);

/* One storage snapshot a backup recorded, one per disk. */
typedef struct {
    char *backup_id;
    int64_t completed;            /* unix microseconds */
    char *domain;
    char *disk;                   /* the target, "vda" */
    bool in_repo;                 /* false: the disk's data is only in the snapshot */
    VsManifestSnapshot *snapshot;
    VsSnapState state;
    char *reason;                 /* UNKNOWN: why its provider could not be asked */
} VsRecordedSnapshot;
void vs_recorded_snapshot_free(VsRecordedSnapshot *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsRecordedSnapshot, vs_recorded_snapshot_free)

/* Every storage snapshot the backups of REPO record (ID: one backup, as
 * vs_repo_load_manifest takes it, or NULL: all), oldest backup first, of the
 * domains DOMAINS names (names or UUIDs; NULL or empty: all); with ASK, each
 * one's state (vs_snap_record_state with C), else UNKNOWN without a reason.
 * A manifest that cannot be read is appended to *UNREADABLE (created when
 * NULL; a message naming the backup) and passed over. NULL with ERROR only
 * when the repository's backups cannot be listed or ID is not a backup. */
GPtrArray *vs_repo_list_snapshots(VsRepo *repo, const char *id, const char *const *domains, const VsSnapConfig *c,
                                  bool ask, GPtrArray **unreadable, GError **error);

/* Appends to *PROBLEMS (VsVerifyProblem*, digest_hex NULL, domain and disk
 * set) every recorded snapshot of a disk whose data is only there (in_repo
 * false) and that no longer exists: that backup cannot be restored. The same
 * for a disk whose data is also in the repository, and every snapshot whose
 * provider could not be asked, is a notice (strings, appended to *NOTICES):
 * nothing is lost. ID as vs_repo_verify takes it. *CHECKED: snapshots asked,
 * *UNKNOWN: of those, how many could not be (both may be NULL). */
bool vs_repo_verify_snapshots(VsRepo *repo, const char *id, const VsSnapConfig *c, GPtrArray **problems,
                              GPtrArray **notices, guint *checked, guint *unknown, GError **error);

/* The configuration file C was read from (or would have been). */
const char *vs_snap_config_file(const VsSnapConfig *c);

G_END_DECLS
