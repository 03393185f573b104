/* Named fault points (vs-fault.c): a test hook inside the driver and the block
 * layer, which no tool calls, so not in a public header. A test that needs it
 * includes this header itself. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Inert unless $VIRTSNAP_FAULT is set: POINT kills the process (SIGKILL),
 * hang:POINT hangs until an interrupt, sleep:POINT:MS sleeps. */
void vs_fault_point(const char *point);

G_END_DECLS
