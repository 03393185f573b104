/* Temp file names (vs-temp.h): made here, and read back by recover and gc,
 * which remove a temp file only once the process that made it is gone. */
#include "config.h"
#include "vs-temp.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* The longest BASE kept in a name: NAME_MAX is 255, and the rest takes at
 * most 14 + 10 + 1 + 16 + 1 + 64 + 1. */
#define MAX_BASE 140

const char *
vs_temp_host(void)
{
    static char *host;
    char *h;

    if (g_once_init_enter(&host)) {
        h = g_strndup(g_get_host_name(), 64);
        for (char *p = h; *p; p++)
            if (!g_ascii_isalnum(*p) && *p != '.' && *p != '_')
                *p = '_';
        g_once_init_leave(&host, h);
    }
    return host;
}

char *
vs_temp_path(const char *dir, const char *base)
{
    g_autofree char *b = g_strndup(base, MAX_BASE);

    return g_strdup_printf("%s/%s%d-%08x%08x@%s@%s", dir, VS_TEMP_PREFIX, (int)getpid(),
                           g_random_int(), g_random_int(), vs_temp_host(), b);
}

bool
vs_temp_parse(const char *name, int *pid, char **host)
{
    const char *p, *at1, *at2;
    char *end;
    long v;

    if (!g_str_has_prefix(name, VS_TEMP_PREFIX))
        return false;
    p = name + strlen(VS_TEMP_PREFIX);
    errno = 0;
    v = strtol(p, &end, 10);
    if (errno || end == p || v <= 0 || v > G_MAXINT || *end != '-')
        return false;
    if (!(at1 = strchr(end, '@')) || !(at2 = strchr(at1 + 1, '@')) || at2 == at1 + 1)
        return false;
    if (pid)
        *pid = (int)v;
    if (host)
        *host = g_strndup(at1 + 1, at2 - at1 - 1);
    return true;
}

bool
vs_temp_maker_gone(int pid, const char *host)
{
    if (pid <= 0 || g_strcmp0(host, vs_temp_host()) != 0)
        return false;
    return kill(pid, 0) < 0 && errno == ESRCH;
}
