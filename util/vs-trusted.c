/* The one reading of a root-trusted configuration file (vs-trusted.h): opened
 * without following a link, checked on the descriptor it is then read from, so
 * that nothing can be swapped in between the check and the read. */
#include "config.h"
#include "vs-trusted.h"
#include "vs-error.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static bool
check_owner(int fd, const char *file, const char *what, const char *why, GError **error)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s: %s", what, file, g_strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "%s: %s: not a regular file", what, file);
        return false;
    }
    if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022)) {
        g_set_error(error, VS_ERROR, VS_ERROR_DENIED,
                    "%s: %s: owned by uid %u with mode %04o: %s, so it must be root's and not writable by "
                    "group or others (chown root %s; chmod go-w %s)", what, file, (unsigned)st.st_uid,
                    (unsigned)(st.st_mode & 07777), why, file, file);
        return false;
    }
    return true;
}

bool
vs_read_trusted_file(const char *file, const char *what, const char *why, bool missing_ok, char **text,
                     gsize *len, GError **error)
{
    g_autoptr(GIOChannel) ch = NULL;
    g_autoptr(GError) err = NULL;
    int fd;

    *text = NULL;
    *len = 0;
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT && missing_ok)
            return true;
        g_set_error(error, VS_ERROR, errno == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO, "%s: %s: %s", what,
                    file, g_strerror(errno));
        return false;
    }
    if (!check_owner(fd, file, what, why, error)) {
        close(fd);
        return false;
    }
    ch = g_io_channel_unix_new(fd);
    g_io_channel_set_close_on_unref(ch, TRUE);
    if (g_io_channel_read_to_end(ch, text, len, &err) != G_IO_STATUS_NORMAL) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s: %s", what, file, err->message);
        g_clear_pointer(text, g_free);
        return false;
    }
    return true;
}
