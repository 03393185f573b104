/* The interrupt flag (see vs-interrupt.h): set from a signal handler, read by
 * the copy loops and between steps. The handler does two async-signal-safe
 * things only: it stores the signal number and, from the second signal on,
 * writes a fixed line to stderr saying that cleanup still runs. */
#include "config.h"
#include "vs-interrupt.h"
#include "vs-error.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t first_signal;
static volatile sig_atomic_t signal_count;
/* The deadline, monotonic us (0: none), and what it is called; set before
 * the run's threads start. */
static gint64 deadline_us;
static char deadline_label[96];

static void
on_signal(int sig)
{
    static const char msg[] =
        "virtsnap: still cleaning up after the first interrupt (guests go back on their own "
        "disks, temp files are removed); it exits as soon as that is done. kill -9 stops it "
        "at once and leaves the rest to `virtsnap recover`.\n";

    if (!first_signal)
        first_signal = sig;
    if (signal_count < 2 && ++signal_count == 2) {
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
    }
}

void
vs_interrupt_install(void)
{
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++) {
        struct sigaction old;

        /* Started with the signal ignored (nohup, a background job of a
         * script): it stays ignored, as whoever started us asked. */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

void
vs_interrupt_set_deadline(int seconds, const char *label)
{
    deadline_us = seconds > 0 ? g_get_monotonic_time() + (gint64)seconds * G_USEC_PER_SEC : 0;
    g_strlcpy(deadline_label, label ? label : "", sizeof deadline_label);
}

int
vs_interrupted(void)
{
    if (first_signal)
        return first_signal;
    return deadline_us && g_get_monotonic_time() >= deadline_us ? VS_INTERRUPT_DEADLINE : 0;
}

bool
vs_interrupt_check(const char *what, GError **error)
{
    int sig = vs_interrupted();

    if (!sig)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_INTERRUPTED, "%s: interrupted by %s", what, vs_signal_name(sig));
    return false;
}

int
vs_interrupt_exit_status(int sig)
{
    if (sig == VS_INTERRUPT_DEADLINE)
        return 1;
    return sig ? 128 + sig : 0;
}

const char *
vs_signal_name(int sig)
{
    static char buf[160];

    switch (sig) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    case SIGHUP:
        return "SIGHUP";
    case VS_INTERRUPT_DEADLINE:
        g_snprintf(buf, sizeof buf, "the run's deadline (%s, reached)", deadline_label);
        return buf;
    default:
        g_snprintf(buf, sizeof buf, "signal %d", sig);
        return buf;
    }
}
