/* The part of a source that is the same for every backend: allocation, close,
 * and the wrappers through which callers reach the vtable so that optional
 * entries (extents, clone) get one meaning everywhere instead of a NULL check in
 * every caller. */
#include "config.h"
#include "source-internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

VsSource *
vs_source_new(const VsSourceOps *ops, const char *description, void *priv)
{
    VsSource *src = g_new0(VsSource, 1);

    src->ops = ops;
    src->description = g_strdup(description);
    src->priv = priv;
    return src;
}

void
vs_source_close(VsSource *src)
{
    if (!src)
        return;
    if (src->ops && src->ops->close)
        src->ops->close(src);
    g_free(src->description);
    g_free(src);
}

uint64_t
vs_source_size(VsSource *src)
{
    return src->ops->size(src);
}

bool
vs_source_extents(VsSource *src, uint64_t offset, uint64_t length, GArray *out, GError **error)
{
    uint64_t size = vs_source_size(src);

    if (offset >= size || length == 0)
        return true;
    length = MIN(length, size - offset);
    if (!src->ops->extents) {
        VsExtent e = { .offset = offset, .length = length, .zero = false };
        g_array_append_val(out, e);
        return true;
    }
    return src->ops->extents(src, offset, length, out, error);
}

bool
vs_source_pread(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error)
{
    return src->ops->pread(src, buf, len, offset, error);
}

VsSource *
vs_source_clone(VsSource *src, GError **error)
{
    if (!src->ops->clone) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "%s: %s: this kind of source cannot be opened twice",
                    src->ops->name, src->description);
        return NULL;
    }
    return src->ops->clone(src, error);
}

/* One check for every backend, before anything is written: a LUN that is too
 * small must be refused, not half overwritten. */
static bool
check_write(VsSource *src, const char *op, size_t len, uint64_t offset, GError **error)
{
    uint64_t size = vs_source_size(src);

    if (!src->writable || !src->ops->pwrite) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "%s: %s: %s: opened read-only",
                    src->ops->name, op, src->description);
        return false;
    }
    if (offset > size || len > size - offset) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "%s: %s: %s: %zu bytes at offset %" G_GUINT64_FORMAT " end beyond its size of %"
                    G_GUINT64_FORMAT " bytes (nothing written)", src->ops->name, op,
                    src->description, len, offset, size);
        return false;
    }
    return true;
}

bool
vs_sink_check_size(VsSource *sink, uint64_t needed, GError **error)
{
    uint64_t size = vs_source_size(sink);

    if (size >= needed)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                "%s: write: %s: too small: %" G_GUINT64_FORMAT " bytes, %" G_GUINT64_FORMAT
                " needed (nothing written)", sink->ops->name, sink->description, size, needed);
    return false;
}

bool
vs_source_write_zeros(VsSource *src, size_t len, uint64_t offset, GError **error)
{
    /* Bounded, so that zeroing a whole disk does not allocate one. */
    enum { ZERO_BUF = 1 << 20 };
    g_autofree char *zeros = g_malloc0(MIN(len, (size_t)ZERO_BUF));

    while (len > 0) {
        size_t n = MIN(len, (size_t)ZERO_BUF);
        if (!src->ops->pwrite(src, zeros, n, offset, error))
            return false;
        len -= n;
        offset += n;
    }
    return true;
}

bool
vs_source_zero(VsSource *src, size_t len, uint64_t offset, GError **error)
{
    if (!check_write(src, "zero", len, offset, error))
        return false;
    if (len == 0)
        return true;
    if (src->ops->zero)
        return src->ops->zero(src, len, offset, error);
    return vs_source_write_zeros(src, len, offset, error);
}

bool
vs_source_pwrite(VsSource *src, const void *buf, size_t len, uint64_t offset, GError **error)
{
    if (!check_write(src, "pwrite", len, offset, error))
        return false;
    if (len == 0)
        return true;
    if (src->ops->zero && vs_buffer_is_zero(buf, len))
        return src->ops->zero(src, len, offset, error);
    return src->ops->pwrite(src, buf, len, offset, error);
}

bool
vs_source_flush(VsSource *src, GError **error)
{
    if (!src->writable) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "%s: flush: %s: opened read-only",
                    src->ops->name, src->description);
        return false;
    }
    return !src->ops->flush || src->ops->flush(src, error);
}

bool
vs_source_truncate(VsSource *src, uint64_t size, GError **error)
{
    if (!src->writable) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "%s: truncate: %s: opened read-only",
                    src->ops->name, src->description);
        return false;
    }
    if (!src->ops->truncate) {
        if (size == vs_source_size(src))
            return true;
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "%s: truncate: %s: the size is fixed at %" G_GUINT64_FORMAT " bytes (asked for %"
                    G_GUINT64_FORMAT ")", src->ops->name, src->description, vs_source_size(src), size);
        return false;
    }
    return src->ops->truncate(src, size, error);
}

static bool
has_prefix_nocase(const char *s, const char *prefix)
{
    return g_ascii_strncasecmp(s, prefix, strlen(prefix)) == 0;
}

VsSource *
vs_source_open_url(const char *url, const VsIscsiAuth *auth, bool writable, GError **error)
{
    if (has_prefix_nocase(url, "nfs://"))
        return vs_source_open_nfs(url, writable, error);
    if (has_prefix_nocase(url, "iscsi://"))
        return vs_source_open_iscsi(url, auth, writable, error);
    if (has_prefix_nocase(url, "nbd://") || has_prefix_nocase(url, "nbd+") ||
        has_prefix_nocase(url, "nbds")) {
        if (writable) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "open: %s: NBD sources are read-only", url);
            return NULL;
        }
        return vs_source_open_nbd_uri(url, error);
    }
    if (has_prefix_nocase(url, "file://")) {
        g_autofree char *path = g_filename_from_uri(url, NULL, error);
        if (!path)
            return NULL;
        return writable ? vs_source_open_file_rw(path, 0, error) : vs_source_open_file(path, error);
    }
    if (strstr(url, "://")) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "open: %s: not a URL virtsnap can read (nfs://, iscsi://, nbd://, file://)",
                    url);
        return NULL;
    }
    return writable ? vs_source_open_file_rw(url, 0, error) : vs_source_open_file(url, error);
}

void
vs_extent_add(GArray *out, uint64_t offset, uint64_t length, bool zero)
{
    VsExtent e = { .offset = offset, .length = length, .zero = zero };

    if (length)
        g_array_append_val(out, e);
}

static unsigned
env_secs(const char *name, unsigned dflt)
{
    const char *v = g_getenv(name);
    guint64 n;

    if (v && g_ascii_string_to_unsigned(v, 10, 1, 3600, &n, NULL))
        return (unsigned)n;
    return dflt;
}

unsigned
vs_net_reconnect_secs(void)
{
    return env_secs("VIRTSNAP_NET_RECONNECT_SECS", 30);
}

unsigned
vs_net_timeout_secs(void)
{
    return env_secs("VIRTSNAP_NET_TIMEOUT_SECS", 30);
}

bool
vs_net_backoff(unsigned attempt, gint64 deadline)
{
    gint64 delay = (gint64)100000 << MIN(attempt, 5u);

    delay = MIN(delay, (gint64)2000000);
    if (g_get_monotonic_time() + delay > deadline)
        return false;
    g_usleep((gulong)delay);
    return true;
}

bool
vs_net_socket_down(int fd)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char c;
    ssize_t n;

    if (fd < 0)
        return true;
    if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0)
        return errno == ENOTCONN;
    n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && (errno == ECONNRESET || errno == ENOTCONN || errno == EPIPE));
}

char *
vs_url_strip_credentials(const char *url)
{
    const char *scheme_end = strstr(url, "://");
    const char *host, *at, *slash;

    if (!scheme_end)
        return g_strdup(url);
    host = scheme_end + 3;
    slash = strchr(host, '/');
    at = strchr(host, '@');
    if (!at || (slash && at > slash))
        return g_strdup(url);
    return g_strdup_printf("%.*s%s", (int)(host - url), url, at + 1);
}
