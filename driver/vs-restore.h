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
    const char *state_dir;        /* per-domain locks; NULL: as backup */
    const char *uri;              /* for the virsh command printed */
    unsigned parallel_disks;      /* disks written at once, default 2 */
    int shutdown_timeout;         /* seconds --force waits for a graceful shutdown, default 60 */
    int agent_timeout;            /* seconds for each guest-agent call, default 5 */
} VsRestoreOptions;

void vs_restore_options_init(VsRestoreOptions *opts);

typedef struct {
    char *target;                 /* vda */
    char *path;                   /* the file written */
    char *format;                 /* raw | qcow2 */
    char *pool, *volume;          /* when restored into a pool */
    uint64_t virtual_size;
    char *action;                 /* replaced | created | hot-swapped | new-file */
    char *note;                   /* e.g. a backing chain restored flattened */
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
} VsRestoreDomainResult;

typedef struct {
    GPtrArray *domains;           /* of VsRestoreDomainResult* */
} VsRestoreResult;

void vs_restore_result_free(VsRestoreResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsRestoreResult, vs_restore_result_free)

/* Restores NAMES (names or UUIDs as in the backup). Returns NULL with *error,
 * having touched nothing, when the request cannot be carried out as a whole
 * (bad option, unknown backup, domain or disk, name taken, target missing or
 * not writable, a running domain without --force, a missing or corrupt chunk).
 * Otherwise a result per domain: each domain succeeds or fails on its own. */
VsRestoreResult *vs_restore_run(virConnectPtr conn, const char *const *names,
                                const VsRestoreOptions *opts, GError **error);

G_END_DECLS
