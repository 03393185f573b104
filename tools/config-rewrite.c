/* One key of a KEY=VALUE configuration file set in place, for `discover
 * --mapping --update-config FILE`: the administrator's file keeps its
 * comments, order, blank lines and line endings byte for byte, and only the
 * value of the key's line changes (or one line is appended). The file is
 * replaced atomically (a reader sees the old file or the new one, a crash
 * leaves one of them), is never reached through a symlink (root writes it),
 * and keeps its mode and owner. */
#include "config.h"
#include "config-rewrite.h"
#include "vs-error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether LINE (not including its end) is "KEY=..." with blanks allowed
 * before KEY and around '='; *VALUE_AT: the offset of the value (the blanks
 * before it stay the administrator's). */
static bool
line_sets(const char *line, size_t len, const char *key, size_t *value_at)
{
    size_t i = 0, klen = strlen(key);

    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (len - i < klen || strncmp(line + i, key, klen) != 0)
        return false;
    i += klen;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i >= len || line[i] != '=')
        return false;
    i++;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    *value_at = i;
    return true;
}

char *
vs_config_text_set(const char *text, const char *key, const char *value, GError **error)
{
    g_autoptr(GString) out = g_string_new(NULL);
    const char *p = text;
    int found_line = 0, line_no = 0;

    if (strpbrk(value, "\r\n")) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "config: the value of %s would span lines", key);
        return NULL;
    }
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        /* a CR before the LF stays with the line's end */
        size_t body = len > 0 && p[len - 1] == '\r' ? len - 1 : len;
        size_t at;

        line_no++;
        if (line_sets(p, body, key, &at)) {
            if (found_line) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                            "config: %s is set on lines %d and %d: remove one, then try again", key, found_line,
                            line_no);
                return NULL;
            }
            found_line = line_no;
            g_string_append_len(out, p, at);
            g_string_append(out, value);
            g_string_append_len(out, p + body, (gssize)(len - body));
        } else {
            g_string_append_len(out, p, (gssize)len);
        }
        if (!nl)
            break;
        g_string_append_c(out, '\n');
        p = nl + 1;
    }
    if (!found_line) {
        if (out->len && out->str[out->len - 1] != '\n')
            g_string_append_c(out, '\n');
        g_string_append_printf(out, "%s=%s\n", key, value);
    }
    return g_string_free(g_steal_pointer(&out), FALSE);
}

/* The whole of FD (a regular file, at most 1 MiB: a configuration file). */
static char *
read_all(int fd, const char *file, GError **error)
{
    g_autoptr(GString) s = g_string_new(NULL);
    char buf[8192];
    ssize_t n;

    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "config: %s: cannot read it: %s", file, g_strerror(errno));
            return NULL;
        }
        g_string_append_len(s, buf, n);
        if (s->len > 1024 * 1024) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "config: %s: larger than 1 MiB: not a "
                        "configuration file", file);
            return NULL;
        }
    }
    if (memchr(s->str, 0, s->len)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "config: %s: holds a NUL byte: not a configuration file",
                    file);
        return NULL;
    }
    return g_string_free(g_steal_pointer(&s), FALSE);
}

static bool
write_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, text, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        text += n;
        len -= (size_t)n;
    }
    return true;
}

/* TEXT into a new temp file beside FILE with ST's mode and owner, synced;
 * its path, or NULL (nothing left behind). */
static char *
write_temp(const char *file, const struct stat *st, const char *text, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(file);
    g_autofree char *base = g_path_get_basename(file);
    char *tmp = g_strdup_printf("%s/.%s.XXXXXX", dir, base);
    int fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0600);
    int err = 0;

    if (fd < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "config: %s: cannot create a temp file in %s: %s", file, dir,
                    g_strerror(errno));
        g_free(tmp);
        return NULL;
    }
    if (!write_all(fd, text, strlen(text)) || fchown(fd, st->st_uid, st->st_gid) < 0 ||
        fchmod(fd, st->st_mode & 07777) < 0 || fsync(fd) < 0)
        err = errno ? errno : EIO;
    if (close(fd) < 0 && !err)
        err = errno;
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "config: %s: cannot write %s: %s (the file is unchanged)", file,
                    tmp, g_strerror(err));
        unlink(tmp);
        g_free(tmp);
        return NULL;
    }
    return tmp;
}

bool
vs_config_file_set(const char *file, const char *key, const char *value, GError **error)
{
    g_autofree char *text = NULL, *updated = NULL, *tmp = NULL, *dir = NULL;
    g_autoptr(GError) err = NULL;
    struct stat st;
    int fd, dfd;

    fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        g_set_error(error, VS_ERROR, errno == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                    "config: %s: cannot open it: %s%s", file, g_strerror(errno),
                    errno == ELOOP ? " (a symlink is not followed: name the file itself)" : "");
        return false;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "config: %s: not a regular file", file);
        close(fd);
        return false;
    }
    text = read_all(fd, file, error);
    close(fd);
    if (!text)
        return false;
    if (!(updated = vs_config_text_set(text, key, value, &err))) {
        g_set_error(error, VS_ERROR, err->code, "config: %s: %s", file,
                    g_str_has_prefix(err->message, "config: ") ? err->message + 8 : err->message);
        return false;
    }
    if (!(tmp = write_temp(file, &st, updated, error)))
        return false;
    if (rename(tmp, file) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "config: %s: cannot replace it: %s (the file is unchanged)",
                    file, g_strerror(errno));
        unlink(tmp);
        return false;
    }
    /* the rename itself made durable */
    dir = g_path_get_dirname(file);
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return true;
}
