/* The mount registry (mount-registry.c), private to mount.c, which starts and
 * stops the mounts, and instant.c, which finishes what an interrupted restore
 * --instant left on them. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-restore.h"

G_BEGIN_DECLS

/* RUN/mounts, and the file of mount ID there with extension EXT (".json"). */
char *vs_mounts_dir(void);
char *vs_mount_file(const char *id, const char *ext);
/* State letter and start time (clock ticks since boot) of PID. */
bool vs_mount_proc_stat(int pid, char *state, uint64_t *starttime);
/* Whether PID runs and is the process that started at STARTTIME (0: any); a
 * zombie child is reaped. */
bool vs_mount_pid_alive(int pid, uint64_t starttime);
/* M registered (RUN/mounts/ID.json), or its files (socket, pid file, log,
 * entry) removed. */
bool vs_mount_registry_write(const VsMount *m, GError **error);
void vs_mount_registry_remove(const VsMount *m);

G_END_DECLS
