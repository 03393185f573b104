/* Where virtsnap keeps what lives only as long as the machine runs: the
 * sockets of pull-mode backups and the registry of mounts (RUN/mounts). It is
 * apart from the state directory (journal.c) because it must be reachable by
 * QEMU (mode 0755) and is wiped at boot, which is right for both. And whether
 * a directory is libvirt's own, where nothing of ours may be written, and the
 * one way a definition is written into a directory the user named
 * (KVM_VM_CONFIG_DIR, SyncDir). */
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

bool
vs_definition_write(const char *dir, const char *name, const char *xml, GError **error)
{
    g_autofree char *file = NULL, *path = NULL;

    if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "'%s' cannot be a file name", name ? name : "");
        return false;
    }
    file = g_strconcat(name, ".xml", NULL);
    path = g_build_filename(dir, file, NULL);
    /* a temporary file renamed over PATH: a symlink there is replaced, not followed */
    return g_file_set_contents_full(path, xml, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error);
}
