/* KVM_CMD_RETRY_COUNT: a failed libvirt or guest-agent step that is safe to
 * repeat (a lookup, an XML read, a thaw, a query) tried again a few times with
 * backoff, for the errors that may pass (a daemon busy, an agent slow to
 * answer), never for those that will not (a bad argument, a domain that does
 * not exist). An interrupt does not stop them: the unwinding needs these steps
 * too (a thaw, a lookup before a commit), and the waits are short. A step whose repetition
 * is not harmless (a freeze with its bounded window, a create) is not retried
 * here. The loop stays at the call site:
 *
 *     VsRetry r = VS_RETRY_INIT(opts->retry_count);
 *     while (!(xml = step(&err)) && vs_retry_again(&r, &err))
 *         ;
 *     vs_retry_note(&r, "reading the XML", j->notes);
 */
#pragma once

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

#define VS_RETRY_FIRST_MS 500     /* the first wait; each next one twice as long */
#define VS_RETRY_MAX_MS 4000      /* ... up to this */

typedef struct {
    int max;          /* retries allowed */
    int done;         /* retries made */
    int delay_ms;     /* the next wait */
    char *first;      /* the first failure's message, for the note */
} VsRetry;

#define VS_RETRY_INIT(count) { .max = (count), .done = 0, .delay_ms = VS_RETRY_FIRST_MS, .first = NULL }

/* Whether ERR may pass if the step is tried again: a libvirt, agent, I/O or
 * timeout failure, a busy lock; not bad input, a missing or stopped domain, a
 * closed connection (its own revival handles that), an interrupt. */
bool vs_retry_transient(const GError *err);

/* After a failed try with *ERROR set: true, *ERROR cleared, once the backoff
 * has been waited, when the step should be tried again (transient, retries
 * left); false with *ERROR as it was otherwise. */
bool vs_retry_again(VsRetry *r, GError **error);

/* Once the step is over, however it went: when it was retried, one note
 * "WHAT: retried N time(s) (KVM_CMD_RETRY_COUNT) after: FIRST" appended to
 * NOTES (char*, may be NULL: then a g_message); R's memory freed. */
void vs_retry_note(VsRetry *r, const char *what, GPtrArray *notes);

G_END_DECLS
