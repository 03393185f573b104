/* `virtsnap recover` of a migration whose virtsnap was killed (kill -9, a
 * crash) between the journal's "migrate" record and libvirt's answer: the
 * guest may be running on either host, or paused on one or both (caught
 * between Perform and Finish). Both hosts are asked (the record names both
 * URIs); the decision is a pure function of what each says, so that the unit
 * tests can walk its whole table. */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>

G_BEGIN_DECLS

/* What one host says of the domain. */
typedef enum {
    VS_MIG_UNKNOWN,          /* the host could not be asked */
    VS_MIG_ABSENT,           /* no such domain there */
    VS_MIG_SHUTOFF,          /* defined, not running (or crashed) */
    VS_MIG_RUNNING,
    VS_MIG_PAUSED_MIGRATION, /* paused by the migration (reason "migration") */
    VS_MIG_PAUSED_OTHER,     /* paused by anyone else (a user, an I/O error) */
    VS_MIG_POSTCOPY,         /* paused in or after post-copy: only an administrator knows */
    VS_MIG_MIGRATING,        /* libvirt still runs a migration job of it */
} VsMigSide;

typedef enum { VS_HOST_NONE, VS_HOST_SOURCE, VS_HOST_DEST } VsMigHost;

typedef struct {
    bool settled;            /* the guest runs (or will, once resumed) on at most one host */
    VsMigHost resume;        /* resume it here: its paused copy is the one to run */
    VsMigHost keep;          /* where it runs once settled (NONE: on neither) */
    VsMigHost destroy;       /* the stale copy paused by the migration, destroyed only once
                              * KEEP is confirmed running */
    const char *finding;     /* why, in words, for the report */
} VsMigPlan;

/* The plan for SRC (the source host's answer) and DST (the destination's). */
VsMigPlan vs_migration_settle_plan(VsMigSide src, VsMigSide dst);
const char *vs_mig_side_name(VsMigSide s);

/* Settles the migration of domain NAME (UUID) from SOURCE to DEST (libvirt
 * URIs; a NULL or CONN's own: CONN) that a dead run journaled: asks both
 * hosts, resumes the copy to run, then destroys the stale paused one, and
 * tells ACTIONS what it found and did. False with *error when it cannot be
 * settled (a host unreachable, a migration still running, running on both):
 * the journal stays for the next recover. Nothing is ever undefined or
 * removed: only a QEMU process paused by the migration is destroyed, once the
 * other copy is confirmed running. */
bool vs_recover_migration(virConnectPtr conn, const char *name, const char *uuid,
                          const char *source, const char *dest, GPtrArray *actions,
                          GError **error);

G_END_DECLS
