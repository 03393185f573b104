/* Named fault points (vs-fault.c): a test hook inside the driver and the block
 * layer, which no tool calls, so not in a public header. A test that needs it
 * includes this header itself. */
#pragma once

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

/* Inert unless $VIRTSNAP_FAULT is set: POINT kills the process (SIGKILL),
 * hang:POINT hangs until an interrupt, sleep:POINT:MS sleeps. */
void vs_fault_point(const char *point);
/* A step that can fail: with $VIRTSNAP_FAULT=fail:POINT, false and *ERROR
 * (VS_ERROR_IO, "injected fault POINT"), as if the step itself had failed;
 * with fail:POINT:N, only the first N calls in the process fail; otherwise
 * true. The points: journal-freeze, journal-freeze:DOMAIN (the freeze record,
 * of any domain or of DOMAIN, is not written); the steps driver/retry.c
 * retries: domain-lookup, domain-xml, agent-thaw, freeze-status,
 * block-job-info. */
bool vs_fault_fail(const char *point, GError **error);

G_END_DECLS
