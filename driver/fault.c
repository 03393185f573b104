/* Named fault points, so that tests can kill virtsnap (SIGKILL, no cleanup of
 * any kind) or hang it at an exact step of a backup and then prove that recover
 * and the guardian put everything right. Inert unless $VIRTSNAP_FAULT is set. */
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
}
