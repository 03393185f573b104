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

int
vs_interrupted(void)
{
    return first_signal;
}

bool
vs_interrupt_check(const char *what, GError **error)
{
    int sig = first_signal;

    if (!sig)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_INTERRUPTED, "%s: interrupted by %s", what, vs_signal_name(sig));
    return false;
}

int
vs_interrupt_exit_status(int sig)
{
    return sig ? 128 + sig : 0;
}

const char *
vs_signal_name(int sig)
{
    static char buf[32];

    switch (sig) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    case SIGHUP:
        return "SIGHUP";
    default:
        g_snprintf(buf, sizeof buf, "signal %d", sig);
        return buf;
    }
}
