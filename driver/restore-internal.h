/* Restore's private header: the run, each domain and each disk as the steps
 * of a restore see them (restore.c runs them: restore-plan.c checks and
 * decides everything, restore-write.c writes the disks, restore-install.c puts
 * them in place and defines and starts the domains, restore-instant.c serves
 * and copies them instead for --instant), and the steps themselves. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <libvirt/libvirt.h>
#include "driver-internal.h"
#include "vs-restore.h"
#include "vs-repo.h"
#include "vs-xml.h"
#include "vs-snapshot.h"

G_BEGIN_DECLS

typedef struct _RDom RDom;
typedef struct _RPoolNeed RPoolNeed;

typedef struct {
    RDom *dom;
    const VsManifestDisk *md;
    char *target;
    char *format;            /* written */
    char *dir;               /* where dest and tmp live */
    char *dest;              /* the final path */
    char *tmp;               /* the complete image before it becomes dest */
    char *sink_url;          /* in place on a LUN, NFS file or block device: written over
                              * at install */
    bool sink_image;         /* ... a qcow2: first written whole into tmp (state dir), then
                              * that file over the target */
    bool dest_exists;
    bool hot;                /* live detach, rename, live attach */
    bool new_file;           /* running disk of unknown use: written beside it */
    char *vol_name;          /* in the pool */
    bool vol_created;        /* by us: deleted again on failure */
    char *action;
    char *note;
    char *error;
    bool written;
    bool installed;
    VsMount *mount;          /* --instant: the export the overlay reads; NULL once copied */
    bool instant_copy;       /* --instant of a raw disk: the guest starts on the overlay (tmp)
                              * and a block copy moves it onto dest, raw */
    VsVerifyProblem *bad_chunk; /* the write failed on a chunk of the backup */
    /* --from-snapshot (restore-snapshot.c) */
    VsSnapProvider *snap;    /* the provider of md->snapshot */
    VsSnapLocation loc;      /* the recorded disk (borrows md->snapshot and snap_disk) */
    char *snap_disk;         /* "DOMAIN/TARGET", in the provider's messages */
    bool rollback;           /* in place: rolled back at install */
    char *clone_name;        /* --as: the clone's name, beside the original */
    char *clone;             /* ... the clone made (path or URL) */
    bool clone_ready;        /* ... not a file under tmp: dest itself, installed as made */
    /* restore-pools.c */
    char *pool_name;         /* the storage pool the disk lives in, when known */
    bool pool_pending;       /* --define-pools defines or starts it before the write */
} RDisk;

struct _RDom {
    char *name;              /* in the backup */
    char *new_name;
    VsManifest *m;           /* borrowed from the run */
    VsManifestDomain *md;
    VsDomainDef *def;
    virDomainPtr dom;        /* the existing domain called new_name, NULL if none */
    char *existing_uuid;
    bool active;             /* dom runs (or is paused) */
    bool in_place;
    bool partial;            /* --disks */
    bool renamed;
    bool must_stop;
    int lock_fd;
    GPtrArray *disks;        /* RDisk* */
    GPtrArray *notes;        /* char* */
    bool stopped, defined, started;
    char *xml_path;
    char *define_cmd;
    char *error;
    int64_t running_ms, copied_ms;   /* --instant, -1: not (yet) */
};

typedef struct {
    virConnectPtr conn;
    const VsRestoreOptions *opts;
    VsRepo *repo;
    GHashTable *manifests;   /* id -> VsManifest* */
    char **ids;              /* every backup id, oldest first (lazily) */
    virStoragePoolPtr pool;
    char *pool_dir;
    GPtrArray *doms;         /* RDom* */
    GHashTable *disk_users;  /* path -> its user (restore-plan.c), of every domain; lazily */
    int64_t t0;              /* vs_now_ms() at the start */
    gint cancel;             /* a disk hit a bad chunk: the other writes stop */
    VsJournal *journal;      /* names the temp files, for recover after a kill -9 */
    VsSnapConfig *snap_config; /* --from-snapshot: the providers' configuration */
    GPtrArray *pool_needs;   /* RPoolNeed*: pools --define-pools defines or starts (lazily) */
    GPtrArray *pool_notes;   /* char*: what it did, for the result */
} Run;

/* restore.c */
void restore_rdisk_free(RDisk *d);
void restore_rdom_free(RDom *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(RDom, restore_rdom_free)
/* Adds a note to the domain's result. */
void restore_note(RDom *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* The domain fails with this message (its first failure is the one kept). */
void restore_dom_fail(RDom *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Whether DOM runs (or is paused, suspended, shutting down). */
bool restore_domain_active(virDomainPtr dom);

/* restore-plan.c: the plan of domain NAME, checked; NULL with *error when it
 * cannot be restored as asked (nothing was touched). */
RDom *restore_plan_domain(Run *run, const char *name, GError **error);
/* raw or qcow2 */
bool restore_format_supported(const char *fmt);
/* Whether files can be created in DIR (WHAT names it in the error). */
bool restore_check_dir(const char *dir, const char *what, GError **error);

/* restore-write.c: every disk of the run written to its temp file (or, when
 * written over in place at install, its chunks checked); false with *error
 * when a chunk of the backup is bad (then nothing is left), else each domain
 * with a disk that failed fails. */
bool restore_write_phase(Run *run, GError **error);
/* Removes what a domain that failed before its disks were installed left. */
void restore_discard_temps(Run *run, RDom *r);
/* A domain with any disk that could not be written fails as a whole. */
void restore_fail_on_disk_errors(Run *run, RDom *r);

/* restore-install.c: stops, installs, defines and starts domain R (its
 * failure in r->error). */
void restore_finish_domain(Run *run, RDom *r);

/* restore-instant.c: --instant instead of the write phase, and the copy once
 * the domains run. */
bool restore_instant_check_chunks(Run *run, GError **error);
void restore_instant_write_phase(Run *run);
void restore_instant_copy_phase(Run *run);

/* restore-snapshot.c: --from-snapshot. The plan of disk D (rollback in place,
 * or a clone for --as); the write phase instead of restore_write_phase (each
 * recorded disk to roll back confirmed against the live system, the clones
 * made); a rollback (or a clone made as its destination) at install; the
 * pools of R's clones refreshed once they are in place; D's
 * "PROVIDER:HANDLE" for the result (NULL when not from a snapshot). */
bool restore_snap_plan_disk(Run *run, RDom *r, RDisk *d, VsDiskDef *dd, GError **error);
bool restore_snap_write_phase(Run *run, GError **error);
bool restore_snap_install(Run *run, RDisk *d, GError **error);
void restore_snap_refresh_pools(Run *run, RDom *r);
char *restore_snap_describe(const RDisk *d);

/* restore-pools.c: the pool D (of definition DD, before the plan changes it)
 * lives in, which must exist and be active, or with --define-pools is
 * defined and started by restore_pools_define, after the plan and before
 * anything is written. */
bool restore_pools_plan_disk(Run *run, RDom *r, RDisk *d, const VsDiskDef *dd, GError **error);
bool restore_pools_define(Run *run, GError **error);
void restore_pool_need_free(RPoolNeed *n);

G_END_DECLS
