/* Interrupts: SIGINT, SIGTERM and SIGHUP ask a long run (backup, restore, export)
 * to stop, not kill it. The handler only records the first signal (an atomic
 * flag: nothing else is safe in a handler); the copy loops and the steps between
 * them read it at their next safe point and fail with VS_ERROR_INTERRUPTED,
 * and the normal failure path then removes what the run created and puts the
 * guests back on their disks. A second signal does not cut that cleanup short
 * (it says so on stderr): a guest left on an overlay, or a domain left stopped,
 * is worse than a wait. kill -9 is the way out, and `virtsnap recover` finishes
 * from the journal what the killed run left. A run's deadline (SC_AGENT_TIMEOUT,
 * --deadline) is the same request made by the clock: once it has passed,
 * vs_interrupted() says VS_INTERRUPT_DEADLINE and the run unwinds as on a
 * signal. */
#pragma once

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

/* Installs the handlers for SIGINT, SIGTERM and SIGHUP (SA_RESTART: no call
 * sees EINTR because of them); one that was ignored when virtsnap started
 * (nohup) stays ignored. Idempotent. */
void vs_interrupt_install(void);

/* Not a signal: what vs_interrupted() says once the deadline has passed. */
#define VS_INTERRUPT_DEADLINE 1000

/* Asks the run to stop SECONDS from now (0: no deadline) as a signal would;
 * LABEL names the bound in messages ("SC_AGENT_TIMEOUT=30 s"). */
void vs_interrupt_set_deadline(int seconds, const char *label);

/* The first of those signals received since vs_interrupt_install, else
 * VS_INTERRUPT_DEADLINE once the deadline has passed, 0 if neither. */
int vs_interrupted(void);

/* true when nothing interrupted the run; otherwise sets VS_ERROR_INTERRUPTED,
 * "WHAT: interrupted by SIGINT", and returns false. */
bool vs_interrupt_check(const char *what, GError **error);

/* The exit status a run interrupted by SIG ends with: 128 + SIG (130 for
 * SIGINT, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a command the
 * signal killed; 1 (a failure) for the deadline; 0 when SIG is 0. */
int vs_interrupt_exit_status(int sig);

/* "SIGINT", "SIGTERM", "SIGHUP", "the run's deadline (LABEL, reached)", or "signal N". */
const char *vs_signal_name(int sig);

G_END_DECLS
