/* Backups of running domains without suspending them, and the recovery of
 * whatever an interrupted backup left behind.
 *
 * One backup run is one group: the running domains are frozen together through
 * qemu-guest-agent, each gets one atomic disk-only external snapshot (overlays),
 * all are thawed, the now stable images are copied into the repository, and the
 * overlays are committed back (active commit, pivot on the READY event). Every
 * step is written to a journal before it happens, so `recover` (and the next
 * backup of the same domain) can finish or undo it. A guardian process armed
 * before the freeze thaws the guests by itself when the main process dies or
 * overruns the freeze bound. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <libvirt/libvirt.h>
#include "vs-error.h"
#include "vs-interrupt.h"

G_BEGIN_DECLS

typedef enum {
    VS_QUIESCE_TRY,       /* freeze; if impossible, back up crash-consistent and say so */
    VS_QUIESCE_REQUIRE,   /* freeze, or fail that domain */
    VS_QUIESCE_OFF,       /* never freeze */
    VS_QUIESCE_LAST
} VsQuiesceMode;

/* How disks on NFS and iSCSI are read. */
typedef enum {
    VS_DATA_PATH_AUTO,    /* directly where the storage answers us, else through the host */
    VS_DATA_PATH_DIRECT,  /* libnfs/libiscsi from this machine, or fail */
    VS_DATA_PATH_HOST,    /* the host's view: its mounts, or QEMU's own network drivers */
    VS_DATA_PATH_LAST
} VsDataPath;

/* How a running domain's point in time is taken. */
typedef enum {
    VS_BACKUP_METHOD_OVERLAY,   /* external snapshot, copy the stable images, commit back */
    VS_BACKUP_METHOD_BEGIN,     /* libvirt's backup API: pull-mode job + checkpoint */
    VS_BACKUP_METHOD_AUTO,      /* begin for a domain with a qcow2 disk, else overlay */
    VS_BACKUP_METHOD_LAST
} VsBackupMethod;

typedef enum {
    VS_BACKUP_LEVEL_DEFAULT,  /* inc when a usable checkpoint chain exists, else full */
    VS_BACKUP_LEVEL_FULL,
    VS_BACKUP_LEVEL_INC,      /* the same as DEFAULT, said explicitly: falls back to full */
    VS_BACKUP_LEVEL_DIFF,     /* changes since the chain's last full backup; falls back to full */
    VS_BACKUP_LEVEL_LAST
} VsBackupLevel;

/* The options' words (backup.c, util/include/vs-enum.h's VS_ENUM_IMPL): --quiesce try, require,
 * off; --data-path auto, direct, host; --mode overlay, begin, auto; --level full, inc,
 * diff (DEFAULT has no word). *_from_string: the value, or -1 for any other word. */
const char *vs_quiesce_mode_to_string(VsQuiesceMode value);
int vs_quiesce_mode_from_string(const char *str);
const char *vs_data_path_to_string(VsDataPath value);
int vs_data_path_from_string(const char *str);
const char *vs_backup_method_to_string(VsBackupMethod value);
int vs_backup_method_from_string(const char *str);
const char *vs_backup_level_to_string(VsBackupLevel value);
int vs_backup_level_from_string(const char *str);

typedef enum {
    VS_BACKUP_PHASE_PREPARE,
    VS_BACKUP_PHASE_FREEZE,
    VS_BACKUP_PHASE_COPY,
    VS_BACKUP_PHASE_COMMIT,
    VS_BACKUP_PHASE_DONE,
} VsBackupPhase;

/* Progress: called from copy worker threads too, but never from two threads at
 * once. DOMAIN/DISK are NULL for group-wide events. */
typedef void (*VsBackupProgress)(VsBackupPhase phase, const char *domain, const char *disk,
                                 uint64_t done, uint64_t total, void *opaque);

typedef struct {
    const char *repo_path;      /* required */
    bool init_repo;             /* create the repository if it does not exist */
    const char *state_dir;      /* journal, guardian log; NULL: $VIRTSNAP_STATE_DIR or /var/lib/virtsnap */
    int lock_wait;              /* seconds to wait for a domain another run holds, default 0 */
    const char *overlay_dir;    /* NULL: beside each disk */
    const char *uri;            /* the connection's URI, for the guardian's own connection */
    VsQuiesceMode quiesce;
    int max_freeze_ms;          /* default 10000 */
    int agent_timeout;          /* seconds for each agent call, default 5 */
    int commit_timeout;         /* seconds for each active commit to become READY, default 600;
                                 * then, with a guest that was frozen for the snapshot, one more
                                 * commit with the guest frozen, within max_freeze_ms */
    unsigned long commit_bandwidth; /* bytes/s of the commit while the guest runs, 0: unlimited */
    unsigned parallel_disks;    /* disks copied at once, default 2 */
    int copy_nice;              /* added to the nice value while copying, default 10 (0: off) */
    bool no_compress;           /* new chunks stored uncompressed (--compress=off) */
    VsDataPath data_path;       /* default auto */
    const char *iscsi_auth_file; /* CHAP user= and password= lines (root-only file), or NULL */
    const char *guardian_exe;   /* program run as `EXE guardian ...`; default /proc/self/exe */
    VsBackupMethod mode;          /* default overlay */
    VsBackupLevel level;        /* begin mode only */
    const char *backup_xml_path;     /* begin mode: a domainbackup XML file (virsh backup-begin's) */
    const char *checkpoint_xml_path; /* ... and a domaincheckpoint XML file; see docs/virtsnap.1 */
    /* begin mode: a push-mode job (QEMU writes each disk into a qcow2 file that
     * virtsnap then reads and removes) instead of a pull-mode one. */
    bool push;
    const char *push_dir;       /* where those files go (implies push); NULL: the state directory */
    /* --storage-snapshot[=PROVIDER]: after the thaw, a storage snapshot of each
     * stable base ("auto", "reflink", "btrfs", "rbd", "hook"; NULL: none), the
     * overlays committed at once, the copy read from the snapshot. */
    const char *storage_snapshot;
    bool no_copy;               /* the backup is the storage snapshots (kept) */
    bool keep_snapshot;         /* copy, and keep the snapshots for fast restores */
    const char *snapshot_config; /* hooks and providers per pool; NULL: the default file */
    /* KVM_CMD_RETRY_COUNT: a failed idempotent libvirt or agent step (a lookup,
     * an XML read, a thaw, a block-job query...) is tried again up to this many
     * times, with backoff, when its error may pass (driver/retry.c); default 3. */
    int retry_count;
    /* SC_AGENT_TIMEOUT, --deadline: seconds the whole run may take, 0: no bound.
     * When reached, the run stops at its next safe point and unwinds as on an
     * interrupt (vs-interrupt.h: VS_INTERRUPT_DEADLINE), the message naming
     * "SC_AGENT_TIMEOUT=N s". */
    int deadline_s;
    /* KVM_VM_CONFIG_DIR: each backed-up domain's definition is written here as
     * NAME.xml (mode 0600) once the backup holds it; NULL: nowhere. */
    const char *config_dir;
    /* A remote hypervisor (-c with another host's URI): the TCP port its pull
     * jobs' NBD exports listen on, one more for each further domain; 0: 10809. */
    int nbd_port;
    VsBackupProgress progress;
    void *progress_opaque;
} VsBackupOptions;

void vs_backup_options_init(VsBackupOptions *opts);

/* driver/remote.c (vs_uri_remote_host, vs-driver.h, tells a remote URI).
 * OPTS against a remote OPTS->uri: what a run from another host cannot do
 * (overlays, push jobs, storage snapshots) fails with VS_ERROR_INVALID_ARG,
 * naming what to use instead. True for a local connection. */
bool vs_backup_check_remote(const VsBackupOptions *opts, GError **error);

typedef struct {
    char *target;
    uint64_t bytes_read;
    uint64_t bytes_stored;
    char *data_path;            /* how it was read: file, nfs, iscsi, qemu-nbd; NULL: not read */
    char *read;                 /* "changed" (since the base backup), "full", or "full: why" */
    char *snapshot_provider;    /* the storage snapshot made of it, NULL: none */
    char *snapshot_handle;
    bool snapshot_kept;         /* still there after the run (--no-copy, --keep-snapshot) */
} VsBackupDiskResult;

typedef struct {
    char *name;
    bool ok;
    char *consistency;          /* quiesced | crash */
    int64_t freeze_ms;          /* -1 when not frozen */
    int64_t frozen_at;          /* unix ms when the freeze began, -1 when not frozen */
    int64_t thawed_at;          /* unix ms when the thaw returned */
    GPtrArray *notes;           /* of char*: why crash-consistent under --quiesce=try, etc. */
    char *mode;                 /* "overlay" or "begin" */
    char *level;                /* "full", "inc" or "diff" */
    char *base;                 /* inc, diff: the backup whose unchanged chunks it shares */
    char *checkpoint;           /* begin: the checkpoint taken at this backup's instant */
    char *backup_xml;           /* begin: the domainbackup XML the job was begun with */
    char *checkpoint_xml;       /* begin: ... and its domaincheckpoint XML */
    GError *error;              /* why this domain failed (the cause's code), NULL when ok */
    GPtrArray *disks;           /* of VsBackupDiskResult* */
    int64_t overlay_ms;         /* the guest's time on overlays, point in time to the end of
                                 * the commit; -1: none */
} VsBackupDomainResult;

typedef struct {
    char *id;                   /* NULL when no backup was written */
    int64_t group_freeze_ms;    /* -1 when nothing was frozen */
    /* Where the run's time went, ms: repository, discovery, recovery and planning;
     * guardian, freeze, snapshots or backup jobs, thaw; the copy; commits or the
     * abort of the jobs; the manifest (while the jobs are torn down) and the
     * checkpoints' upkeep. */
    int64_t prepare_ms, freeze_phase_ms, copy_ms, end_ms, manifest_ms;
    GPtrArray *domains;         /* of VsBackupDomainResult* */
    GPtrArray *notes;           /* of char*: what recovery of earlier runs did first */
} VsBackupResult;

void vs_backup_result_free(VsBackupResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsBackupResult, vs_backup_result_free)

/* The checks vs_backup_run makes of its arguments alone, before it opens or
 * connects to anything: a repository given, NAMES or ALL (not both), options
 * that go together. A caller may run them first to tell bad usage from a
 * failure (VS_ERROR_INVALID_ARG). */
bool vs_backup_check_options(const char *const *names, bool all, const VsBackupOptions *opts,
                             GError **error);

/* Backs up NAMES (or every domain with ALL). Returns a result even when some
 * domains failed (each says why; the backup holds the others); NULL with *error
 * only when nothing could be attempted (bad repository, no such domain when it
 * is the only one, ...). */
VsBackupResult *vs_backup_run(virConnectPtr conn, const char *const *names, bool all,
                              const VsBackupOptions *opts, GError **error);

/* Finishes or undoes every interrupted run found in the state directory (only
 * those no live process holds): thaws guests, commits and pivots overlays that
 * virtsnap created, removes temp files. DOMAIN_UUIDS limits it to runs touching
 * those domains (NULL: all). Messages describing what was done are appended to
 * ACTIONS (char*). Returns false if some leftover could not be repaired. */
bool vs_recover(virConnectPtr conn, const char *state_dir, const char *const *domain_uuids,
                GPtrArray *actions, GError **error);

/* The guardian process's main (`virtsnap guardian ...`). */
int vs_guardian_main(int argc, char **argv);

/* vs_fault_point, the fault points for tests, is in the internal util/vs-fault.h. */

G_END_DECLS
