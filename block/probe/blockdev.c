/* Where the host kernel exposes a block device's identity: discovery reports a
 * WWID for block and multipath disks so that an administrator can match the
 * device with the LUN on the storage array. Only sysfs is read; a device that
 * has no WWID (a loop device, say) simply has none. */
#include "config.h"
#include "vs-probe.h"

#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static char *
read_trimmed(const char *path)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return NULL;
    g_strstrip(text);
    return *text ? g_steal_pointer(&text) : NULL;
}

char *
vs_blockdev_wwid(const char *device)
{
    struct stat st;
    g_autofree char *sys = NULL;
    static const char *const files[] = { "wwid", "device/wwid" };
    char *val;

    if (stat(device, &st) < 0 || !S_ISBLK(st.st_mode))
        return NULL;
    sys = g_strdup_printf("/sys/dev/block/%u:%u", major(st.st_rdev), minor(st.st_rdev));
    for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autofree char *p = g_build_filename(sys, files[i], NULL);
        if ((val = read_trimmed(p)))
            return val;
    }
    /* A multipath map: dm/uuid is "mpath-<wwid>". */
    {
        g_autofree char *p = g_build_filename(sys, "dm", "uuid", NULL);
        g_autofree char *uuid = read_trimmed(p);
        if (uuid && g_str_has_prefix(uuid, "mpath-"))
            return g_strdup(uuid + strlen("mpath-"));
    }
    return NULL;
}
