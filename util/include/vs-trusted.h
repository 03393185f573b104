/* Configuration files that name what virtsnap runs or writes as root
 * (snapshots.conf, virtsnap.conf): read only when root (or the caller) owns
 * them and nobody else can write them, so that another user cannot make root
 * run a program of theirs or write where they choose. */
#pragma once

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

/* Reads FILE whole into *TEXT (NUL-terminated) and *LEN, refusing
 * (VS_ERROR_DENIED) a file not owned by root or the caller or writable by group
 * or others, and anything not a regular file or a symbolic link
 * (VS_ERROR_INVALID_ARG, O_NOFOLLOW). WHAT starts every message ("snapshot
 * config"); WHY says what the file controls ("it names programs virtsnap runs
 * as root"). A FILE that does not exist is VS_ERROR_NOT_FOUND, unless
 * MISSING_OK: then true with *TEXT NULL. */
bool vs_read_trusted_file(const char *file, const char *what, const char *why, bool missing_ok, char **text,
                          gsize *len, GError **error);

G_END_DECLS
