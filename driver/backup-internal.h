/* The private header of one backup run (vs_backup_run, backup.c), shared by
 * the files of its stages and of its methods and nothing else: the run, each
 * domain's job and each disk's, the method ops table, and the helpers every
 * stage uses. The stages, in order:
 *   backup-plan.c    options, repository, discovery, recovery first, the journal,
 *                    each domain's job: its disks, its method, base backup choice;
 *   backup-window.c  guardian, freeze, each method's point in time, thaw;
 *   backup-copy.c    the data path and the copy pool;
 *   backup-settle.c  each method's settle (commit back, end of the job) and teardown;
 *   backup-result.c  the manifest, each method's after_manifest (checkpoints), the
 *                    result and its timing.
 * The methods, each a BackupMethod in a file of its own:
 *   method-overlay.c external snapshot onto overlays, commit back (also shut-off domains)
 *   method-pull.c    libvirt backup job, pull mode (NBD exports, scratch files)
 *   method-push.c    libvirt backup job, push mode (QEMU writes qcow2 files of ours)
 *   method-storage.c the overlay method's point in time made safe by a storage snapshot,
 *                    overlays committed at once, the copy read from the snapshot
 *   method-job.c     what pull and push share: the job, its checkpoint, its files */
#pragma once

#include "driver-internal.h"
#include "control.h"
#include "vs-repo.h"
#include "vs-xml.h"
#include "vs-source.h"
#include "vs-snapshot.h"


typedef struct {
    char *target;
    char *format;
    char *path;              /* local path of the top image (file/block/netfs) */
    char *url;               /* nfs:// or iscsi:// when not reachable by path */
    char *direct_url;        /* nfs:// of a netfs pool volume (PATH is the host's mount) */
    const char *data_path;   /* how the copy read it (a static string) */
    char *direct_failed;     /* --data-path=auto: why the direct path was not used */
    bool is_file;            /* a file of its own: its overlay can go beside it */
    GPtrArray *chain;        /* VsManifestImage*: top first */
    VsManifestDisk *mdisk;   /* filled by the copy, then moved into the manifest */
    uint64_t bytes_read, bytes_stored;
    GError *error;           /* the copy failed (the reader's code, a message naming the disk) */
    char *read;              /* for the result: "changed", "full" or "full: why" */
    /* What the domain's method keeps for this disk. The overlay method: */
    char *overlay;           /* our overlay, NULL when the disk gets none */
    /* The backup job methods (pull, push): */
    bool bitmap;             /* qcow2: in the checkpoint, read incrementally */
    /* The job's file for this disk: pull, its scratch image; push, the qcow2
     * the job writes the disk into. --backup-xml may name it before the method
     * is chosen. */
    char *scratch;
    uint64_t capacity;       /* the disk's size as libvirt said before the job; 0: unknown */
    /* The storage method: where the disk lives and, once made, its snapshot
     * (provider, handle), as the manifest will record it; the provider; and
     * what became of the snapshot. */
    VsManifestSnapshot *snap;
    VsSnapProvider *snap_provider;
    bool snap_made;          /* the snapshot exists (journaled snapshot-made) */
    bool snap_kept;          /* ... and stays after the run (recorded in the manifest) */
    bool snap_deleted;       /* ... and was deleted again (journaled snapshot-deleted) */
} DiskJob;

typedef struct BackupMethod BackupMethod;

typedef struct {
    virDomainPtr dom;
    guint gen;               /* the connection generation DOM belongs to (VsLink) */
    char *name;
    char *uuid;
    bool active;             /* running or paused: needs a point in time */
    bool freeze;             /* we will try to freeze it */
    bool frozen;             /* the freeze call succeeded */
    bool window;             /* its method takes a point in time (set by its plan) */
    bool snapshotted;        /* the point in time was taken: settle undoes it */
    bool thaw_failed;
    /* Something of this run stays for `virtsnap recover`: a file a guest may
     * still use, a freeze not known to be over. The journal is kept. */
    bool left;
    int lock_fd;
    char *xml;               /* the definition kept in the manifest */
    VsDomainDef *live_def;   /* what the domain runs now, as discovery parsed it: its
                              * disks are the snapshot's */
    GPtrArray *disks;        /* DiskJob* */
    int64_t freeze_start, freeze_end;     /* monotonic ms */
    int64_t pit_ms;          /* monotonic ms of the point in time (overlays on); 0: none */
    int64_t overlay_ms;      /* the guest's time on overlays: point in time to end of commit; -1 */
    bool settled, settle_ok; /* the storage method: overlays committed early, and how */
    int64_t frozen_at, thawed_at;         /* unix ms, for the group's point in time */
    char *consistency;
    GPtrArray *notes;        /* char*: add_note's, in order */
    GError *error;           /* first error: the domain failed (its code kept: dom_fail_error) */
    GError *thread_error;    /* from a freeze/snapshot/thaw thread */
    /* The level: a method that reads only what changed sets them. */
    char *incremental;       /* the base's checkpoint; NULL: full */
    bool diff;               /* the base is the chain's last full backup */
    const VsManifest *base;  /* the backup the checkpoint belongs to (RUN's manifests own it) */
    /* How the point in time is taken, and the method's own state (its free_priv
     * frees it). Every job starts with the overlay method; the plan may choose
     * another for a running domain. */
    const BackupMethod *method;
    void *priv;
} DomJob;

typedef struct {
    virConnectPtr conn;      /* the caller's; libvirt calls go through LINK */
    VsLink *link;
    const VsBackupOptions *opts;
    VsRepo *repo;
    char *repo_tag;          /* names this repository's checkpoints */
    VsManifest *manifest;    /* the backup being made: its id names the run */
    VsJournal *journal;
    GPtrArray *doms;         /* DomJob* */
    GMutex progress_lock;
    VsIscsiAuth *iscsi_auth; /* from --iscsi-auth, or NULL */
    VsBackupDef *job_xml;    /* --backup-xml, or NULL */
    VsCheckpointDef *checkpoint_xml; /* --checkpoint-xml, or NULL */
    VsGuardian *guardian;    /* started early, armed at the freeze (see guardian_early) */
    bool push;               /* --push, --push-dir or a push-mode --backup-xml */
    uint64_t push_reserved;  /* bytes the push jobs planned so far will write */
    uint64_t pull_reserved;  /* scratch room the pull jobs planned so far asked for */
    /* What the stages hand on; vs_backup_run frees them. */
    GPtrArray *discovered;   /* VsDiscoveredDomain*: what the plan found */
    /* The repository's backups as the plan loaded them to choose bases, each
     * once per run however many domains look (run_manifest). */
    GStrv repo_ids;
    GHashTable *manifests;   /* id -> VsManifest*, NULL when it could not be loaded */
    VsSnapConfig *snap_config; /* --storage-snapshot: the providers' configuration */
    GPtrArray *notes;        /* char*: what recovery of earlier runs did first */
    GPtrArray *not_found;    /* VsProblem*: why a named domain is not backed up at all */
    int64_t group_ms;        /* the group's frozen window; -1: nothing frozen */
    GThread *warm;           /* looks up the base backups' chunks (backup_warm_start) */
    GThread *job_waiter;     /* tears the ended backup jobs down (backup_settle) */
    bool all_clean;          /* nothing left for `virtsnap recover` so far */
    /* The hypervisor's host when it is not this one (remote.c), else NULL:
     * its disk paths are not ours; the data comes over a TCP NBD export. */
    char *remote;
    /* Phase boundaries (monotonic us), reported so that a run's time can be
     * accounted for without a profiler. */
    int64_t t_start, t_frozen, t_copied, t_ended, t_manifest;
} Run;

/* ------------------------------------------------------------------------- */
/* Methods: each way to make a domain's point in time stable is one of these,
 * in a file of its own (method-*.c), its state in DomJob.priv. The stages call
 * the hooks in this order; a hook marked optional may be NULL. A hook runs on
 * the main thread unless its comment says otherwise; failures go to the domain (dom_fail,
 * add_note) and, when something must stay for `virtsnap recover`, j->left. A
 * new method: a file defining one of these, its declaration below, a line in
 * choose_method (backup-plan.c), and driver/meson.build. */
struct BackupMethod {
    const char *name;        /* "overlay", "pull", "push": for messages and debuggers */
    /* Plan stage, outside the window, before anything is journaled: the
     * method's files and base backup, the room they need; sets j->window when
     * the domain needs a point in time (a running one). DEF is the definition
     * the domain runs with, may be NULL. */
    void (*plan)(Run *run, DomJob *j, const VsDomainDef *def);
    /* Outside the frozen window, just before it: journal what the point in
     * time will make (recover undoes it from that), then make what can be
     * made beforehand, so that the window stays short. */
    void (*prepare)(Run *run, DomJob *j);
    /* Optional: the window never opened (the guardian could not be armed):
     * what prepare made goes; false when something may be in use (left). */
    bool (*unprepare)(Run *run, DomJob *j);
    /* Inside the frozen window, on the domain's own thread: must be short
     * and touch nothing shared but J. Sets j->snapshotted, or j->thread_error. */
    void (*point_in_time)(Run *run, DomJob *j);
    /* The point in time did not succeed as far as we know, and the connection
     * is live again: a reply lost with the old one may hide one that did (then
     * set j->snapshotted); when that cannot be known, j->left. */
    void (*recheck)(Run *run, DomJob *j);
    /* Optional, copy stage: before J's disks are read; false fails J. */
    bool (*before_copy)(Run *run, DomJob *j);
    /* What the copy reads for disk D (sets d->data_path and d->read; may set
     * COPTS' previous and readers). Called on a copy thread. */
    VsSource *(*open_disk)(Run *run, DomJob *j, DiskJob *d, VsCopyOptions *copts, GError **error);
    /* Optional: why reading D failed with ERR, when the method knows better
     * than the reader (NULL: the reader's error stands). On a copy thread. */
    char *(*copy_failed)(DomJob *j, DiskJob *d, const GError *err);
    /* Settle stage, for every domain, failed or not: what made the point in
     * time is undone, as far as it was made (overlays committed back, the job
     * ended). False when something is left for recover. */
    bool (*settle)(Run *run, DomJob *j);
    /* Optional: the rest of the teardown, on a thread of its own while the
     * manifest is committed: touch only J (its error, note, files) and the
     * journal. False when something is left. */
    bool (*finish)(Run *run, DomJob *j);
    /* Optional, after the manifest: what depends on whether J's backup is in
     * it (checkpoints kept or dropped); notes go to DR, J's result. */
    void (*after_manifest)(Run *run, DomJob *j, VsBackupResult *result, VsBackupDomainResult *dr);
    /* J's mode and method fields in its result. */
    void (*describe)(const DomJob *j, VsBackupDomainResult *dr);
    void (*free_priv)(void *priv);
};

extern const BackupMethod backup_method_overlay;   /* method-overlay.c */
extern const BackupMethod backup_method_pull;      /* method-pull.c */
extern const BackupMethod backup_method_push;      /* method-push.c */
extern const BackupMethod backup_method_storage;   /* method-storage.c */


/* ------------------------------------------------------------------------- */
/* Helpers (backup.c)                                                         */

#define MiB_OF(bytes) ((bytes) / (1024 * 1024) + 1)

/* First error wins: later ones are dropped, the first is what the user sees.
 * dom_fail's error is VS_ERROR_FAILED; dom_fail_error keeps ERR's domain and
 * code (a copy), and dom_fail_from takes them from CAUSE with a message of its
 * own (which usually quotes CAUSE's). */
void dom_fail(DomJob *j, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void dom_fail_error(DomJob *j, const GError *err);
void dom_fail_from(DomJob *j, const GError *cause, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* Notes accumulate: a fallback to a full backup and a failed freeze both matter. */
void add_note(DomJob *j, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* The same for a domain's result, after the manifest (backup-result.c). */
void result_note(VsBackupDomainResult *dr, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* J->dom on a live connection: reopened (libvirtd restarted) and looked up
 * again when needed. WHAT names the step for the error. */
bool dom_revive(Run *run, DomJob *j, const char *what, GError **error);
void progress(Run *run, VsBackupPhase phase, const char *dom, const char *disk, uint64_t done,
              uint64_t total);
/* A journal record for J (NULL: the run's); false (J failed) when it could not
 * be written: without it the step cannot be undone after a crash. */
bool journal(Run *run, DomJob *j, bool (*write)(VsJournal *, const char *, const char *, GError **));
/* J's domain in backup M (by UUID when both have one), or NULL. */
VsManifestDomain *manifest_domain_of(const VsManifest *m, const DomJob *j);
void manifest_disk_free(VsManifestDisk *m);
void manifest_image_free(VsManifestImage *i);
void disk_job_free(DiskJob *d);
void dom_job_free(DomJob *j);

/* vs_backup_run from domains discovered already (DISCOVERED, taken: their
 * definitions move into the jobs), without discovery or the recovery of
 * earlier runs that precede it: the entry of the unit tests, whose domains
 * are the scripted control plane's (tests/driver/test-backup-run.c). */
VsBackupResult *backup_run_discovered(virConnectPtr conn, GPtrArray *discovered,
                                      const VsBackupOptions *opts, GError **error);

/* remote.c: the TCP port of J's NBD export on a remote hypervisor (planned in
 * the order of run->doms), and the libnbd URI of EXPORT there. */
guint remote_nbd_port(const Run *run, const DomJob *j);
char *remote_nbd_uri(const char *host, guint port, const char *export);

/* ------------------------------------------------------------------------- */
/* The stages, in the order vs_backup_run calls them                          */

/* backup-plan.c: everything before the frozen window that can fail the run as
 * a whole (false with *error: nothing was attempted), then each domain's job. */
bool backup_plan(Run *run, const char *const *names, bool all, GError **error);
/* backup-result.c: looks up the base backups' chunks in the background. */
void backup_warm_start(Run *run);
/* backup-window.c: the guardian, freeze, the point in time, thaw. */
void backup_window(Run *run);
/* backup-copy.c: every stable disk into the repository. */
void backup_copy(Run *run);
/* backup-settle.c: overlays committed back, backup jobs ended. */
void backup_settle(Run *run);
/* backup-result.c: the manifest, the checkpoints, the result; ends the journal. */
VsBackupResult *backup_result(Run *run);
/* backup-pools.c: the storage pools J's backed-up disks live in, saved in MD
 * (their persistent XML); one that cannot be read is a note on J. */
void backup_save_pools(Run *run, DomJob *j, VsManifestDomain *md);

/* ------------------------------------------------------------------------- */
/* Shared between stages                                                      */

/* backup-plan.c */
uint64_t dir_free_bytes(const char *dir);
/* The base backup's record of disk D, when D is read incrementally. */
const VsManifestDisk *base_disk(DomJob *j, DiskJob *d);
/* The base backup of an incremental (or, with --level=diff, a differential):
 * sets j->incremental, j->base and j->diff, or notes why a full backup. */
void choose_base(Run *run, DomJob *j);
/* The repository's backup ids, oldest first (NULL with *ERROR), and backup
 * ID (NULL: unreadable), each read once per run; RUN owns them. */
const char *const *run_backup_ids(Run *run, GError **error);
const VsManifest *run_manifest(Run *run, const char *id);
/* The base that <incremental> of --backup-xml names; false fails J. */
bool job_xml_base(Run *run, DomJob *j);
/* backup-window.c */
void guardian_early(Run *run, GPtrArray *discovered);
/* method-storage.c: D's location (from discovery's DISC) and the provider
 * --storage-snapshot and the configuration choose for it; false fails J. */
bool storage_locate(Run *run, DomJob *j, DiskJob *d, const VsDiscoveredDisk *disc);
/* backup-copy.c: the data path for D's image, as --data-path says. */
VsSource *open_reader(Run *run, DomJob *j, DiskJob *d, GError **error);
/* backup-settle.c: resumes a guest QEMU paused for a write error. */
void resume_paused(Run *run, DomJob *j);
