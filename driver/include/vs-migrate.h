/* `virtsnap migrate`: a domain moved to another libvirt host, live when it runs,
 * after pre-checks that each name what stands in the way and what to do (the
 * destination answers, offers the guest's CPU, has the memory, sees every disk
 * or --copy-storage copies them; no virtsnap run holds the domain and no overlay
 * of ours is in its chains; libvirt allows the migration), bounded by a timeout
 * that aborts the job (the guest then runs on where it was). A persistent
 * domain moves with its definition. The run holds the domain's per-domain lock
 * ("migrate") throughout, so a backup is refused naming it, and journals the
 * move (both URIs) for `virtsnap recover`. Afterwards, with a repository, the
 * domain's checkpoint is redefined on the destination from the repository's
 * record, so the next --mode=begin incremental there continues the chain. */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"

G_BEGIN_DECLS

typedef enum {
    VS_MIGRATE_AUTO,      /* live when the domain runs, its definition when shut off */
    VS_MIGRATE_LIVE,      /* --live: the domain must run */
    VS_MIGRATE_OFFLINE,   /* --offline: the domain must be shut off; only its definition moves */
} VsMigrateMode;

/* Progress of a running migration, from the source's job statistics. */
typedef struct {
    uint64_t total, processed, remaining;  /* bytes (memory, and disks with copy_storage) */
    int64_t elapsed_ms;
} VsMigrateProgress;
typedef void (*VsMigrateProgressFunc)(const VsMigrateProgress *p, void *opaque);

typedef struct {
    VsMigrateMode mode;
    bool copy_storage;          /* VIR_MIGRATE_NON_SHARED_DISK: disks copied, not required on the destination */
    bool unsafe;                /* VIR_MIGRATE_UNSAFE: storage the administrator knows to be shared */
    int timeout_s;              /* 0: unbounded; else the job is aborted after this long */
    const char *repo_path;      /* NULL: no checkpoint redefined afterwards */
    const char *state_dir;      /* journal (NULL: $VIRTSNAP_STATE_DIR or the default) */
    const char *source_uri;     /* CONN's URI, for the journal (NULL: asked of CONN) */
    int lock_wait_s;            /* how long to wait for the domain's lock (default 0; the CLI's
                                 * --wait: 300): a backup's frozen window and overlays end first */
    bool abort_backup;          /* --abort-backup: a backup holding the domain is stopped (SIGTERM;
                                 * it records itself aborted for a migration), then waited for */
    void (*say)(const char *line, void *opaque);  /* may be NULL: whom the run waits for */
    void *say_opaque;
    VsMigrateProgressFunc progress;  /* may be NULL; called about twice a second */
    void *progress_opaque;
} VsMigrateOptions;

void vs_migrate_options_init(VsMigrateOptions *o);

/* One pre-check and what it found: NAME ("destination", "cpu", "memory",
 * "disks", "lock", "overlay", "allowed"), DETAIL what was checked. */
typedef struct {
    char *name;
    bool ok;
    char *detail;
} VsMigrateCheck;

typedef struct {
    char *name, *uuid;
    char *source_uri, *dest_uri;
    bool live;                  /* a running domain moved live; false: its definition (offline) */
    bool persistent;            /* moved with its definition, undefined at the source */
    unsigned long flags;        /* VIR_MIGRATE_* passed */
    int64_t elapsed_ms;
    int64_t downtime_ms;        /* -1: libvirt did not say */
    uint64_t data_bytes;        /* processed, 0 when unknown */
    GPtrArray *checks;          /* VsMigrateCheck*, in the order run */
    GPtrArray *checkpoints;     /* char*: redefined on the destination (or found there) */
    bool checkpoint_redefined;  /* ... by this run, from the repository's record */
    char *checkpoint_note;      /* why the next incremental there will be a full backup, or NULL */
} VsMigrateResult;

void vs_migrate_result_free(VsMigrateResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsMigrateResult, vs_migrate_result_free)

/* Migrates domain NAME (name or UUID) of CONN to DEST_URI. True with *RESULT
 * (always set, also on failure: the checks run so far) when the domain runs
 * (or is defined) on the destination. Errors, "migrate: ..." naming the check:
 * VS_ERROR_INVALID_ARG (--live/--offline against the domain's state),
 * VS_ERROR_NOT_FOUND, VS_ERROR_UNREACHABLE (destination, or a disk it cannot
 * see), VS_ERROR_UNSUPPORTED (CPU, overlay), VS_ERROR_FAILED (memory),
 * VS_ERROR_BUSY (the domain's lock), VS_ERROR_LIBVIRT (refused or failed),
 * VS_ERROR_TIMEOUT (aborted after timeout_s; the guest runs on the source). */
bool vs_migrate(virConnectPtr conn, const char *name, const char *dest_uri,
                const VsMigrateOptions *opts, VsMigrateResult **result, GError **error);

G_END_DECLS
