/* Named fault points, so that tests can kill virtsnap (SIGKILL, no cleanup of
 * any kind) or hang it at an exact step of a backup and then prove that recover
 * and the guardian put everything right, or hold it there for a while (to let a
 * guest write into its overlay, say). Inert unless $VIRTSNAP_FAULT is set:
 * POINT kills, hang:POINT hangs, sleep:POINT:MS sleeps. */
#include "config.h"
#include "vs-backup.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

void
vs_fault_point(const char *point)
{
    const char *f = g_getenv("VIRTSNAP_FAULT");

    if (!f || !*f)
        return;
    if (strcmp(f, point) == 0)
        kill(getpid(), SIGKILL);
    if (g_str_has_prefix(f, "hang:") && strcmp(f + 5, point) == 0)
        for (;;)
            pause();
    if (g_str_has_prefix(f, "sleep:") && g_str_has_prefix(f + 6, point) && f[6 + strlen(point)] == ':')
        g_usleep(g_ascii_strtoull(f + 7 + strlen(point), NULL, 10) * 1000);
}
