/* Restore: domains of a backup written back, in place or as new domains.
 *
 * Everything that can be checked is checked before anything is touched: the
 * backup and every domain and disk named, the new names, the target
 * directories or pool, whether the domains concerned may be stopped, and every
 * chunk the restored disks need (re-read and re-hashed). Disks are then written,
 * sparse and several at a time, to temp files beside their destination; only
 * when all disks of a domain are complete is the domain stopped (in place, with
 * --force) and are the temp files renamed over their destination, so that a
 * restore that fails leaves the original domain and its disks as they were. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <libvirt/libvirt.h>
#include "vs-error.h"
#include "vs-repo.h"

G_BEGIN_DECLS

typedef struct {
    const char *repo_path;        /* required */
    const char *backup_id;        /* id, unique prefix or "latest"; NULL: the newest backup
                                   * that holds each domain */
    const char *new_name;         /* --as: restore as a new domain (one domain only) */
    const char *target_dir;       /* disks go here as NAME-TARGET.FMT */
    const char *pool;             /* ... or into volumes of this dir/fs/netfs pool */
    const char *const *disks;     /* NULL: every disk of the backup; else only these targets */
    const char *format;           /* raw or qcow2; NULL: each disk's own */
    bool define;                  /* virDomainDefineXML the restored definition */
    bool start;                   /* start it (implies define) */
    bool force;                   /* stop a running domain / replace an existing name or file */
    const char *state_dir;        /* STATE/restore; NULL: as backup */
    int lock_wait;                /* seconds to wait for a domain another run holds, default 0 */
    const char *uri;              /* for the virsh command printed */
    unsigned parallel_disks;      /* disks written at once, default 2 */
    int shutdown_timeout;         /* seconds --force waits for a graceful shutdown, default 60 */
    int agent_timeout;            /* seconds for each guest-agent call, default 5 */
    /* --instant (driver/instant.c): each disk becomes a qcow2 overlay at its destination
     * backed by the backup served over NBD (vs_mount_start); the domain is defined and
     * started at once, then each disk is pulled (virDomainBlockPull) into its overlay
     * while the guest runs, and the export stopped once no disk depends on it. Chunks
     * are checked to exist, not re-hashed, beforehand (the plugin re-hashes each chunk
     * it reads). Implies define and start; whole domains only. */
    bool instant;
    /* Re-hash every chunk with SHA-256 as it is written (as `virtsnap verify`
     * does); otherwise its zstd frame checksum and size are checked. */
    bool verify_hash;
    int copy_stall_timeout;       /* seconds a pull may make no progress, default 300 */
    /* Progress lines ("DOMAIN: running ...") as they happen, e.g. for stderr; may be NULL. */
    void (*progress)(const char *message, void *opaque);
    void *progress_opaque;
    /* --from-snapshot (restore-snapshot.c): each disk from the storage snapshot
     * its backup recorded (VsManifestDisk.snapshot), not from the repository:
     * in place by rollback (the recorded disk confirmed against the live
     * domain or pool first), or with new_name as a thin clone per disk beside
     * the original, NEW-TARGET[.FMT], that the new domain is defined on and
     * started (implies start). A disk without a recorded snapshot is an error
     * naming it. Not with --instant, --target-dir, --pool or --format. */
    bool from_snapshot;
    const char *snapshot_config;  /* the provider configuration; NULL: VS_SNAP_CONFIG_DEFAULT */
    /* --define-pools (restore-pools.c): a storage pool a restored disk lives in
     * that is not defined any more is defined from the XML the backup saved
     * and started (one defined but inactive is started). Without it, such a
     * pool is an error naming it and this option. */
    bool define_pools;
    /* KVM_CMD_RETRY_COUNT: as VsBackupOptions.retry_count; default 3. */
    int retry_count;
    /* SC_AGENT_TIMEOUT, --deadline: as VsBackupOptions.deadline_s. */
    int deadline_s;
} VsRestoreOptions;

void vs_restore_options_init(VsRestoreOptions *opts);

/* `virtsnap export` into a file: vs_repo_export_disk_ctl with its temp image
 * named in a journal of its own under STATE_DIR (NULL: the default), so that
 * `virtsnap recover` removes it if the export is killed (kill -9). CTL may be
 * NULL; its tmp and keep_tmp are set here. */
bool vs_export_file(VsRepo *repo, const VsManifest *m, const char *domain, const char *disk,
                    const char *out, const char *format, const char *state_dir, VsExportControl *ctl,
                    GError **error);

typedef struct {
    char *target;                 /* vda */
    char *path;                   /* the file written */
    char *format;                 /* raw | qcow2 */
    char *pool, *volume;          /* when restored into a pool */
    uint64_t virtual_size;
    char *action;                 /* replaced | created | hot-swapped | new-file */
    char *note;                   /* e.g. a backing chain restored flattened */
    char *nbd;                    /* --instant: the export (URI) the disk still depends on
                                   * because its copy did not finish; NULL once copied */
    char *snapshot;               /* --from-snapshot: "PROVIDER:HANDLE" it came from */
} VsRestoreDiskResult;

typedef struct {
    char *name;                   /* the domain in the backup */
    char *restored_as;            /* the name it has now */
    char *backup_id;
    bool ok;
    char *error;                  /* why it failed; then nothing of it was changed unless
                                   * the message says otherwise */
    bool in_place;
    bool stopped;                 /* --force stopped it for the restore */
    bool defined;
    bool started;
    char *xml_path;               /* the definition written to a file (not defined) */
    char *define_command;         /* the virsh command that would define it */
    GPtrArray *disks;             /* of VsRestoreDiskResult* */
    GPtrArray *notes;             /* of char* */
    bool instant;
    int64_t running_ms;           /* --instant: ms from the start of the restore until the
                                   * domain ran (-1: it did not) */
    int64_t copied_ms;            /* ... until every disk was copied into place (-1: not) */
} VsRestoreDomainResult;

typedef struct {
    GPtrArray *domains;           /* of VsRestoreDomainResult* */
    GPtrArray *pools;             /* of char*: what --define-pools did ("pool 'P' defined
                                   * from backup ID and started"); empty when nothing */
} VsRestoreResult;

void vs_restore_result_free(VsRestoreResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsRestoreResult, vs_restore_result_free)

/* The checks vs_restore_run makes of its arguments alone, before it opens or
 * connects to anything: a repository given, NAMES, the new name, options
 * that go together. A caller may run them first to tell bad usage from a
 * failure (VS_ERROR_INVALID_ARG). */
bool vs_restore_check_options(const char *const *names, const VsRestoreOptions *opts,
                              GError **error);

/* Restores NAMES (names or UUIDs as in the backup). Returns NULL with *error,
 * having touched nothing, when the request cannot be carried out as a whole
 * (bad option, unknown backup, domain or disk, name taken, target missing or
 * not writable, a running domain without --force, a missing or corrupt chunk).
 * Otherwise a result per domain: each domain succeeds or fails on its own. */
VsRestoreResult *vs_restore_run(virConnectPtr conn, const char *const *names,
                                const VsRestoreOptions *opts, GError **error);

/* ------------------------------------------------------------------------- */
/* Mounts (driver/mount.c): one disk of a backup served read-only over NBD by  */
/* nbdkit and block/nbdkit/nbdkit-virtsnap.c, for virtsnap mount and restore --instant. */
/* Each mount is registered in RUN/mounts/ID.json (RUN: /run/virtsnap) with its */
/* nbdkit's pid, socket or port, pid file and log.                            */

typedef struct {
    const char *repo_path;        /* required */
    const char *backup_id;        /* id, unique prefix or "latest" */
    const char *domain;           /* name or UUID in the backup */
    const char *disk;             /* target */
    const char *socket;           /* unix socket; NULL and no port: RUN/mounts/ID.sock */
    int port;                     /* > 0: TCP on 127.0.0.1:PORT instead */
    const char *owner;            /* USER[:GROUP] or +UID:+GID to give the socket to
                                   * (mode 0600); NULL: root's alone */
    bool foreground;              /* nbdkit stays in our session and dies with us
                                   * (vs_mount_wait); else it gets its own session */
    const char *instant_dest;     /* restore --instant: the overlay on this export,
                                   * at its final path (recover finishes its copy) */
    const char *instant_tmp;      /* ... and where it is written before install */
    bool instant_copy;            /* ... a raw disk: the guest runs on the overlay at
                                   * instant_tmp until a block copy moves it to instant_dest */
} VsMountOptions;

typedef struct {
    char *id;                     /* 8 hex digits */
    char *uri;                    /* nbd+unix:///?socket=PATH or nbd://127.0.0.1:PORT */
    char *socket;                 /* NULL for TCP */
    int port;                     /* 0 for a socket */
    int pid;                      /* nbdkit */
    uint64_t starttime;           /* of pid (/proc/PID/stat): a reused pid is not ours */
    char *repo, *backup_id, *domain, *disk;
    uint64_t virtual_size;
    char *log;                    /* nbdkit's messages */
    bool alive;                   /* vs_mount_list/find: nbdkit still runs */
    char *instant_dest, *instant_tmp;  /* VsMountOptions; NULL for a plain mount */
    bool instant_copy;
    int restore_pid;              /* the restore --instant that started it, */
    uint64_t restore_starttime;   /* ... while it runs recover leaves it alone */
} VsMount;

void vs_mount_free(VsMount *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsMount, vs_mount_free)

/* The checks vs_mount_start makes of OPTS alone, before it opens anything: a
 * repository, backup, domain and disk given, a socket or a port (1 to 65535),
 * --owner only for a socket (VS_ERROR_INVALID_ARG). */
bool vs_mount_check_options(const VsMountOptions *opts, GError **error);

/* Checks the backup, domain and disk, starts nbdkit and returns once it
 * accepts connections (the socket owned as asked), registered. */
VsMount *vs_mount_start(const VsMountOptions *opts, GError **error);
/* Foreground mounts: waits until nbdkit exits or this process gets SIGINT,
 * SIGTERM or SIGHUP (then stops it); unregisters it. */
bool vs_mount_wait(VsMount *m, GError **error);
/* The registered mounts, oldest first (dead ones too: alive false). */
GPtrArray *vs_mount_list(GError **error);
/* A mount by id, socket path, NBD URI, PORT or 127.0.0.1:PORT. */
VsMount *vs_mount_find(const char *what, GError **error);
/* Stops nbdkit (SIGTERM, SIGKILL after 10 s) and removes its files. With CONN,
 * refused (VS_ERROR_INVALID_ARG) while the live XML of a running domain names
 * the export, unless FORCE. */
bool vs_mount_stop(VsMount *m, virConnectPtr conn, bool force, GError **error);

G_END_DECLS
