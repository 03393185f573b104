/* Where virtsnap keeps what lives only as long as the machine runs: the
 * sockets of pull-mode backups and the registry of mounts (RUN/mounts). It is
 * apart from the state directory (journal.c) because it must be reachable by
 * QEMU (mode 0755) and is wiped at boot, which is right for both. */
#include "config.h"
#include "driver-internal.h"

const char *
vs_run_dir(void)
{
    const char *env = g_getenv("VIRTSNAP_RUN_DIR");

    return env && *env ? env : "/run/virtsnap";
}
