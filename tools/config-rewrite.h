/* KEY=VALUE configuration files rewritten in place (config-rewrite.c), for
 * `discover --mapping --update-config FILE`: one key's line changed, every
 * other byte of the file kept, the file replaced atomically. */
#pragma once

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

/* KEY=VALUE configuration text with KEY's line set to VALUE: the value of
 * the one line "KEY=..." (blanks allowed around KEY and '=') replaced, every
 * other byte kept; a line added at the end (after a '\n' if the text lacks
 * one) when there is none. KEY on two lines, or a VALUE with a newline: NULL
 * with VS_ERROR_INVALID_ARG. */
char *vs_config_text_set(const char *text, const char *key, const char *value, GError **error);

/* Rewrites FILE with vs_config_text_set, atomically: a temp file in its
 * directory, the mode and owner kept, fsync, rename. A symlink is not
 * followed (refused), nor is anything but a regular file. */
bool vs_config_file_set(const char *file, const char *key, const char *value, GError **error);

G_END_DECLS
