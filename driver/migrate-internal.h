/* What the pieces of `virtsnap migrate` share (migrate.c runs it, migrate-checks.c
 * holds the pre-checks, migrate-after.c the checkpoints redefined afterwards):
 * one run's context, and the decisions that need no libvirt (flags, memory),
 * kept apart so that the unit tests reach them. */
#pragma once

#include "driver-internal.h"
#include "vs-migrate.h"

typedef struct {
    virConnectPtr conn, dconn;   /* source (borrowed) and destination (the run's own) */
    virDomainPtr dom;
    const VsMigrateOptions *o;
    VsMigrateResult *r;
    VsDiscoveredDomain *disc;    /* the domain as discovered on the source */
    const char *dest_uri;
    bool active;
} VsMigrateRun;

/* Records check NAME in R with what was checked. */
void vs_migrate_check_add(VsMigrateResult *r, const char *name, bool ok, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

/* The VIR_MIGRATE_* flags for O on a domain NAME that is ACTIVE (running or
 * paused) and PERSISTENT, or 0 with VS_ERROR_INVALID_ARG when O's mode does
 * not fit its state. */
unsigned long vs_migrate_flags(const VsMigrateOptions *o, const char *name, bool active,
                               bool persistent, GError **error);
/* Whether NEED_KIB of guest memory fits FREE_BYTES on the destination DEST:
 * false with VS_ERROR_FAILED naming both. *DETAIL: what was compared. */
bool vs_migrate_memory_fits(const char *name, const char *dest, uint64_t need_kib,
                            unsigned long long free_bytes, char **detail, GError **error);

/* The pre-checks on the destination (migrate-checks.c), each recorded in the
 * run's result, failing with the error vs_migrate documents. */
bool vs_migrate_check_cpu(VsMigrateRun *m, GError **error);
bool vs_migrate_check_memory(VsMigrateRun *m, GError **error);
bool vs_migrate_check_disks(VsMigrateRun *m, GError **error);

/* After the move: the domain's checkpoint redefined on DDOM from the
 * repository's record (migrate-after.c); what happened goes into the result. */
void vs_migrate_checkpoints(VsMigrateRun *m, virDomainPtr ddom);
