/* What the cluster agent's files share (cluster.c, cluster-ops.c,
 * cluster-holder.c): notes for the administrator and the lock taken, or its
 * backup holder interrupted, before a stop. */
#pragma once

#include "vs-cluster.h"
#include "driver-internal.h"

/* A line into NOTES (may be NULL). */
void vs_cluster_note(GPtrArray *notes, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* The per-domain lock of UUID for a stop, by monotonic DEADLINE (µs): taken at
 * once when free; held by a virtsnap backup, that backup is sent SIGTERM
 * (after checking the pid is still the process that took the lock) and the
 * lock waited for; held by anything else, waited for. Waits at most
 * MAX_WAIT_S and half of the time left. Returns the lock's fd, or -1 when
 * the stop goes on without it (NOTES says why): never fails the stop. */
int vs_cluster_lock_or_interrupt(const char *state_dir, const char *uuid, const char *name,
                                 gint64 deadline, int max_wait_s, GPtrArray *notes);
