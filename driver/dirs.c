/* Where virtsnap keeps what lives only as long as the machine runs: the
 * sockets of pull-mode backups and the registry of mounts (RUN/mounts). It is
 * apart from the state directory (journal.c) because it must be reachable by
 * QEMU (mode 0755) and is wiped at boot, which is right for both. And whether
 * a directory is libvirt's own, where nothing of ours may be written. */
#include "config.h"
#include "driver-internal.h"

#include <string.h>
#include <sys/stat.h>

const char *
vs_run_dir(void)
{
    const char *env = g_getenv("VIRTSNAP_RUN_DIR");

    return env && *env ? env : "/run/virtsnap";
}

bool
vs_dir_is_libvirts_own(const char *dir)
{
    static const char own[] = "/etc/libvirt/qemu";
    struct stat a, b;
    g_autofree char *canon = NULL;

    if (!dir || !*dir)
        return false;
    if (stat(dir, &a) == 0 && stat(own, &b) == 0)
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    canon = g_canonicalize_filename(dir, "/");
    return strcmp(canon, own) == 0;
}
