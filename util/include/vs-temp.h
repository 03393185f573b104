/* Names of the temp files virtsnap leaves behind only when it is killed: an
 * image built beside the file it becomes (export, restore), and the files of a
 * repository's tmp/ directory. Each name says which process on which host made
 * it, so that `virtsnap recover` (for the images, which the run's journal
 * lists) and `virtsnap gc` (for the repository's) can tell a stale one from one
 * that a live run still writes. */
#pragma once

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

/* The fixed start of an image temp file's name: ".virtsnap-tmp-". */
#define VS_TEMP_PREFIX ".virtsnap-tmp-"

/* DIR/.virtsnap-tmp-PID-RANDOM@HOST@BASE: hidden, ours by its prefix, and its
 * maker's pid and host (BASE, the file it is to become, is cut short if the
 * name would be too long). */
char *vs_temp_path(const char *dir, const char *base);

/* This host's name as temp names carry it: any character but [A-Za-z0-9._]
 * made '_', at most 64. */
const char *vs_temp_host(void);

/* Whether NAME (a file name, no directory) is an image temp file of ours; its
 * maker's pid and host then (HOST may be NULL; *HOST is newly allocated). */
bool vs_temp_parse(const char *name, int *pid, char **host);

/* Whether the process PID of HOST is known to be gone: HOST is this host and
 * no process has that pid. A temp file of another host, or of a pid that is
 * in use (perhaps by another process since), is never called stale. */
bool vs_temp_maker_gone(int pid, const char *host);

G_END_DECLS
