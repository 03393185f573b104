/* The private header of one backup run (vs_backup_run, backup.c), shared by
 * the files of its stages and nothing else: the run, each domain's job and each
 * disk's, and the helpers every stage uses. The stages, in order:
 *   backup-plan.c    options, repository, discovery, recovery first, the journal,
 *                    each domain's job: its disks, method, base backup, room;
 *   backup-window.c  guardian, freeze, the point in time, thaw;
 *   backup-copy.c    the data path and the copy pool;
 *   backup-settle.c  commit back (with the frozen retry) or the end of the job;
 *   backup-result.c  the manifest, the checkpoints kept, the result and its timing. */
#pragma once

#include "driver-internal.h"
#include "vs-repo.h"
#include "vs-xml.h"
#include "vs-source.h"


typedef struct {
    char *target;
    char *format;
    char *path;              /* local path of the top image (file/block/netfs) */
    char *url;               /* nfs:// or iscsi:// when not reachable by path */
    char *direct_url;        /* nfs:// of a netfs pool volume (PATH is the host's mount) */
    const char *data_path;   /* how the copy read it (a static string) */
    char *direct_failed;     /* --data-path=auto: why the direct path was not used */
    char *overlay;           /* our overlay, NULL when the disk gets none */
    GPtrArray *chain;        /* VsManifestImage*: top first */
    VsManifestDisk *mdisk;   /* filled by the copy, then moved into the manifest */
    uint64_t bytes_read, bytes_stored;
    char *error;
    /* --mode=begin */
    bool bitmap;             /* qcow2: in the checkpoint, read incrementally */
    /* The job's file for this disk: pull, its scratch image; push, the qcow2
     * the job writes the disk into. */
    char *scratch;
    uint64_t capacity;       /* the disk's size as libvirt said before the job; 0: unknown */
    char *read;              /* for the result: "changed", "full" or "full: why" */
} DiskJob;

typedef struct {
    virDomainPtr dom;
    guint gen;               /* the connection generation DOM belongs to (VsLink) */
    char *name;
    char *uuid;
    bool active;             /* running or paused: needs an overlay */
    bool freeze;             /* we will try to freeze it */
    bool frozen;             /* the freeze call succeeded */
    bool snapshotted;
    bool reuse_ext;          /* overlays made before the freeze: snapshot reuses them */
    bool reuse_scratch;      /* scratch images made before the freeze: the job reuses them */
    bool thaw_failed;
    /* Something of this run stays for `virtsnap recover`: a file a guest may
     * still use, a freeze not known to be over. The journal is kept. */
    bool left;
    int lock_fd;
    char *xml;               /* the definition kept in the manifest */
    char *live_xml;          /* what the domain runs now: its disks are the snapshot's */
    GPtrArray *disks;        /* DiskJob* */
    int64_t freeze_start, freeze_end;     /* monotonic ms */
    int64_t frozen_at, thawed_at;         /* unix ms, for the group's point in time */
    char *consistency;
    char *note;
    char *error;             /* first error: the domain failed */
    GError *thread_error;    /* from a freeze/snapshot/thaw thread */
    /* --mode=begin: a pull-mode backup job instead of overlays */
    bool begin;
    bool push;               /* a push-mode job (QEMU writes the disks into our files) */
    uint64_t push_need_full; /* bytes a full push job of every disk would write */
    bool job_started;
    bool job_aborted;        /* the abort was accepted; the teardown may still run */
    char *checkpoint;        /* the one this backup creates */
    char *incremental;       /* the base's checkpoint; NULL: full */
    bool diff;               /* the base is the chain's last full backup */
    VsManifest *base;        /* the backup the checkpoint belongs to */
    char **other_targets;    /* disks left out of the job and the checkpoint */
    char *sock_dir;          /* holds the NBD socket (QEMU's DAC owner) */
    char *scratch_dir;
    char *backup_xml, *checkpoint_xml;   /* what the job was begun with */
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
    uint64_t push_reserved;  /* bytes the push jobs prepared so far will write */
    uint64_t pull_reserved;  /* scratch room the pull jobs prepared so far asked for */
    /* What the stages hand on; vs_backup_run frees them. */
    GPtrArray *discovered;   /* VsDiscoveredDomain*: what the plan found */
    GPtrArray *notes;        /* char*: what recovery of earlier runs did first */
    GPtrArray *not_found;    /* char*: why a named domain is not backed up at all */
    int64_t group_ms;        /* the group's frozen window; -1: nothing frozen */
    GThread *warm;           /* looks up the base backups' chunks (backup_warm_start) */
    GThread *job_waiter;     /* tears the ended backup jobs down (backup_settle) */
    bool all_clean;          /* nothing left for `virtsnap recover` so far */
    /* Phase boundaries (monotonic us), reported so that a run's time can be
     * accounted for without a profiler. */
    int64_t t_start, t_frozen, t_copied, t_ended, t_manifest;
} Run;


/* ------------------------------------------------------------------------- */
/* Helpers (backup.c)                                                         */

#define MiB_OF(bytes) ((bytes) / (1024 * 1024) + 1)

/* First error wins: later ones are dropped, the first is what the user sees. */
void dom_fail(DomJob *j, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Notes accumulate: a fallback to a full backup and a failed freeze both matter. */
void add_note(DomJob *j, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* J->dom on a live connection: reopened (libvirtd restarted) and looked up
 * again when needed. WHAT names the step for the error. */
bool dom_revive(Run *run, DomJob *j, const char *what, GError **error);
void progress(Run *run, VsBackupPhase phase, const char *dom, const char *disk, uint64_t done,
              uint64_t total);
/* A journal record for J (NULL: the run's); false (J failed) when it could not
 * be written: without it the step cannot be undone after a crash. */
bool journal(Run *run, DomJob *j, const char *op, const char *k1, const char *v1,
             const char *k2, const char *v2, const char *k3, const char *v3);
/* J's domain in backup M (by UUID when both have one), or NULL. */
VsManifestDomain *manifest_domain_of(const VsManifest *m, const DomJob *j);
void manifest_disk_free(VsManifestDisk *m);
void manifest_image_free(VsManifestImage *i);
void disk_job_free(DiskJob *d);
void dom_job_free(DomJob *j);

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

/* ------------------------------------------------------------------------- */
/* Shared between stages                                                      */

/* backup-plan.c */
uint64_t dir_free_bytes(const char *dir);
const VsManifestDisk *base_disk(DomJob *j, DiskJob *d);
bool push_incremental(DomJob *j, DiskJob *d);
/* backup-window.c */
void guardian_early(Run *run, GPtrArray *discovered);
