/* The one table of block-job events (blockjob-events.c) that the commit and
 * copy of blockjob.c and the pull of instant.c wait on: libvirt's event thread
 * records the last event of each "uuid/disk", and waiters look it up. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <libvirt/libvirt.h>

G_BEGIN_DECLS

/* Any type of job, for vs_block_event_status and vs_block_event_wait. */
#define VS_BLOCK_JOB_ANY_TYPE (-1)

/* Makes sure CONN's block-job events reach the table (one callback per
 * connection, registered once); on failure *error starts with OP. */
bool vs_block_events_watch(virConnectPtr conn, const char *op, GError **error);
/* "uuid/disk": the key of DISK of DOM in the table. */
char *vs_block_event_key(virDomainPtr dom, const char *disk);
/* Drops what the table holds for KEY (before a job starts, after it ended). */
void vs_block_event_forget(const char *key);
/* The status (VIR_DOMAIN_BLOCK_JOB_COMPLETED, ...) of the last event for KEY
 * when it came from a job of TYPE (VIR_DOMAIN_BLOCK_JOB_TYPE_*, or
 * VS_BLOCK_JOB_ANY_TYPE); -1 when there is none. */
int vs_block_event_status(const char *key, int type);
/* When the status of KEY is still SEEN, waits for the next event of any job,
 * until UNTIL (monotonic µs) at the latest; returns the status then. */
int vs_block_event_wait(const char *key, int type, int seen, gint64 until);
/* Waits for the next event of any job, until UNTIL at the latest. */
void vs_block_events_wait_any(gint64 until);

G_END_DECLS
