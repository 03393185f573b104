/* Named fault points, so that tests can kill virtsnap (SIGKILL, no cleanup of
 * any kind) or hang it at an exact step of a backup, restore or export and then
 * prove that recover and the guardian put everything right, or hold it there
 * for a while (to let a guest write into its overlay, or to interrupt it with a
 * signal at a known moment). Inert unless $VIRTSNAP_FAULT is set: POINT kills,
 * hang:POINT hangs, sleep:POINT:MS sleeps. A hang or a sleep ends early when an
 * interrupt (vs-interrupt.h) arrives, and creates the file $VIRTSNAP_FAULT_MARK
 * (when set) first, so that a test knows the run got there. fail:POINT makes
 * the step at POINT fail with an error instead (vs_fault_fail), for the
 * orderings that a write failing at the wrong moment must not break;
 * fail:POINT:N only its first N times in the process, for the retries of a
 * step that fails and then succeeds (KVM_CMD_RETRY_COUNT). */
#include "config.h"
#include "vs-fault.h"
#include "vs-interrupt.h"
#include "vs-error.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static void
mark(void)
{
    const char *m = g_getenv("VIRTSNAP_FAULT_MARK");

    if (m && *m)
        (void)g_file_set_contents(m, "", 0, NULL);
}

void
vs_fault_point(const char *point)
{
    const char *f = g_getenv("VIRTSNAP_FAULT");
    gint64 end;

    if (!f || !*f)
        return;
    if (strcmp(f, point) == 0)
        kill(getpid(), SIGKILL);
    if (g_str_has_prefix(f, "hang:") && strcmp(f + 5, point) == 0) {
        mark();
        while (!vs_interrupted())
            g_usleep(20 * 1000);
    }
    if (g_str_has_prefix(f, "sleep:") && g_str_has_prefix(f + 6, point) && f[6 + strlen(point)] == ':') {
        end = g_get_monotonic_time() + (gint64)g_ascii_strtoull(f + 7 + strlen(point), NULL, 10) * 1000;
        mark();
        while (!vs_interrupted() && g_get_monotonic_time() < end)
            g_usleep(20 * 1000);
    }
}

/* With fail:POINT:N, whether this call is one of the first N. */
static bool
fail_counted(const char *spec, const char *point)
{
    static gint calls;
    size_t n = strlen(point);
    const char *count = spec + n + 1;

    if (strncmp(spec, point, n) != 0 || spec[n] != ':' || !*count || strspn(count, "0123456789") != strlen(count))
        return false;
    return g_atomic_int_add(&calls, 1) < (gint)g_ascii_strtoull(count, NULL, 10);
}

bool
vs_fault_fail(const char *point, GError **error)
{
    const char *f = g_getenv("VIRTSNAP_FAULT");

    if (f && g_str_has_prefix(f, "fail:") && (strcmp(f + 5, point) == 0 || fail_counted(f + 5, point))) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "injected fault %s (VIRTSNAP_FAULT)", point);
        return false;
    }
    return true;
}
