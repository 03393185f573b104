/* The mapped image source: a local disk image chain (qcow2 and raw layers) read
 * straight from its files. `qemu-img map` says, for each guest range, whether it
 * is data, zero or unallocated and, for data, which layer of the chain holds it
 * and at which offset of that layer's file; we then read the data with pread on
 * our own descriptors of the layer files, with O_DIRECT where the read is
 * aligned. Compared with serving the chain to ourselves through qemu-nbd (the
 * image source), this takes the socket copies and the server's CPU out of the
 * data path, and O_DIRECT the page-cache copy too (a third of the engine's CPU
 * with it, measured with bench/copy-bench.c) while leaving the host's page cache
 * to its guests; several reader threads pread at once. It is only right while nothing
 * writes the chain, which is exactly the backup's situation: the guest writes
 * into the overlay above it. A layer that lives on an NFS export or an iSCSI
 * LUN (an nfs:// or iscsi:// image) is read with our own libnfs/libiscsi
 * sources, one connection per reader thread, so that the data does not pass
 * through a server process or the hypervisor's mounts. Ranges qemu-img can
 * place nowhere in a file (compressed clusters) are read through an image
 * source opened on first need; chains whose file offsets do not mean plain data
 * (encryption, external data files, other formats, layers of other protocols)
 * are refused with VS_ERROR_UNSUPPORTED so that the caller uses the image
 * source for the whole.
 *
 * The map is streamed: one `qemu-img map` runs while the engine walks the disk
 * and its output is read line by line as extents are asked for, so memory holds
 * only the extents between the planner and the slowest reader, however large
 * and fragmented the image. A read outside what the stream has seen (a caller
 * that reads without asking for extents first, or reads again) asks qemu-img
 * for just that range. */
#include "config.h"
#include "source-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* Bounds one extents call, as for the file source. */
#define MAX_EXTENTS_PER_CALL 1024
/* Reads aligned to this go around the page cache; qcow2 clusters and the
 * engine's page-aligned chunk buffers make that nearly every read. */
#define DIRECT_ALIGN 4096

typedef struct {
    uint64_t start, length;
    uint64_t host;          /* offset in the layer's file, when direct */
    int depth;              /* layer: 0 is the image itself */
    bool direct;            /* false: read through the fallback image source */
    uint64_t unread;        /* bytes no pread has taken yet: gone when 0 */
} MapExtent;

/* One qemu-img map run and the lines it has not given yet. Spawned and reaped
 * by hand rather than with GSubprocess, which would start GLib's child-watch
 * thread in every process that opens an image. */
typedef struct {
    GPid pid;               /* 0: none */
    FILE *out;
    int err_fd;
    bool eof;
} MapStream;
typedef struct {
    gint refs;
    char *path;
    char *format;
    uint64_t size;
    int *fds;               /* one per layer, by depth; -1 for a network layer */
    int *dfds;              /* the same opened O_DIRECT (-1: not possible there) */
    char **urls;            /* per layer: nfs:// or iscsi:// URL, NULL for a local file */
    unsigned nlayers;

    GMutex lock;            /* everything below */
    MapStream stream;       /* the walk; pid 0 before the first extents call */
    uint64_t handed;        /* extents given out up to here */
    MapExtent carry;        /* the part of the last line past what was asked (length 0: none) */
    bool carry_zero;
    GArray *data;           /* MapExtent: data ranges seen and not yet read, sorted */
    uint64_t known_from;    /* DATA covers every data range in [known_from, parsed_end) */
    uint64_t parsed_end;

    GMutex fallback_lock;
    VsSource *fallback;     /* image source for ranges with no file offset, opened lazily */
} Mapped;

/* What one reader thread holds: the shared map, and its own connection to each
 * network layer (a network source serves one thread at a time). */
typedef struct {
    Mapped *m;
    VsSource **net;         /* per layer, NULL for a local file */
} Handle;

static const VsSourceOps mapped_ops;

static void
stream_close(MapStream *s)
{
    int status;

    if (s->pid > 0) {
        if (!s->eof)
            kill(s->pid, SIGKILL);
        while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
            ;
        g_spawn_close_pid(s->pid);
    }
    if (s->out)
        fclose(s->out);
    if (s->err_fd >= 0)
        close(s->err_fd);
    s->pid = 0;
    s->out = NULL;
    s->err_fd = -1;
    s->eof = false;
}

static bool
stream_open(Mapped *m, MapStream *s, uint64_t offset, uint64_t length, GError **error)
{
    g_autofree char *start = g_strdup_printf("--start-offset=%" G_GUINT64_FORMAT, offset);
    g_autofree char *max = g_strdup_printf("--max-length=%" G_GUINT64_FORMAT, length);
    char *argv[] = { (char *)"qemu-img", (char *)"map", (char *)"-U", (char *)"--output=json",
                     (char *)"-f", m->format, start, max, m->path, NULL };
    GError *err = NULL;
    int out_fd = -1;

    s->err_fd = -1;
    if (!g_spawn_async_with_pipes(NULL, argv, NULL,
                                  G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                  G_SPAWN_CLOEXEC_PIPES, NULL, NULL, &s->pid, NULL, &out_fd,
                                  &s->err_fd, &err)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img map: %s", m->path, err->message);
        g_error_free(err);
        s->pid = 0;
        return false;
    }
    s->out = fdopen(out_fd, "r");
    if (!s->out) {
        int e = errno;
        close(out_fd);
        stream_close(s);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img map: %s", m->path, g_strerror(e));
        return false;
    }
    s->eof = false;
    return true;
}

/* Reaps qemu-img map at the end of its output; false with ERROR when it failed.
 * Its stderr is read only then: a map's complaints are a line or two. */
static bool
stream_finish(Mapped *m, MapStream *s, GError **error)
{
    char buf[2048];
    ssize_t n;
    int status = 0;
    GError *err = NULL;
    g_autofree char *why = NULL;

    s->eof = true;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
        ;
    g_spawn_close_pid(s->pid);
    s->pid = 0;
    if (g_spawn_check_wait_status(status, &err))
        return true;
    n = read(s->err_fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    why = g_strchomp(g_strdup(buf));
    g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img map: %s", m->path,
                *why ? why : err->message);
    g_error_free(err);
    return false;
}

/* The next extent, or false at the end (*error unset) or on failure. */
static bool
stream_next(Mapped *m, MapStream *s, MapExtent *e, bool *zero, GError **error)
{
    g_autoptr(JsonParser) parser = NULL;
    g_autofree char *line = NULL;
    size_t cap = 0;
    JsonObject *o;
    char *p;
    size_t len = 0;

    if (s->eof)
        return false;
    for (;;) {
        ssize_t n = getline(&line, &cap, s->out);

        if (n < 0) {
            if (ferror(s->out)) {
                int saved = errno;
                g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img map: %s", m->path,
                            g_strerror(saved));
                return false;
            }
            stream_finish(m, s, error);
            return false;
        }
        /* One object per line, inside one JSON array: "[{...}," "{...}," "{...}]". */
        p = g_strstrip(line);
        if (*p == '[')
            p++;
        len = strlen(p);
        while (len && (p[len - 1] == ',' || p[len - 1] == ']'))
            p[--len] = '\0';
        if (len)
            break;
    }
    parser = json_parser_new();
    if (!json_parser_load_from_data(parser, p, (gssize)len, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img map: unexpected output: %s",
                    m->path, p);
        return false;
    }
    o = json_node_get_object(json_parser_get_root(parser));
    memset(e, 0, sizeof *e);
    e->start = (uint64_t)json_object_get_int_member_with_default(o, "start", -1);
    e->length = (uint64_t)json_object_get_int_member_with_default(o, "length", 0);
    e->depth = (int)json_object_get_int_member_with_default(o, "depth", 0);
    /* Unallocated in the whole chain reads as zeros, as does a zero range. */
    *zero = !json_object_get_boolean_member_with_default(o, "data", FALSE) ||
            json_object_get_boolean_member_with_default(o, "zero", FALSE) ||
            !json_object_get_boolean_member_with_default(o, "present", TRUE);
    if (!*zero && json_object_has_member(o, "offset") && e->depth >= 0 &&
        (unsigned)e->depth < m->nlayers) {
        e->direct = true;
        e->host = (uint64_t)json_object_get_int_member(o, "offset");
    }
    e->unread = e->length;
    if (e->length == 0 || e->start > m->size || e->length > m->size - e->start) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img map: extent out of range: %s",
                    m->path, p);
        return false;
    }
    return true;
}

static uint64_t
mapped_size(VsSource *src)
{
    return ((Handle *)src->priv)->m->size;
}

/* Restarts the walk at OFFSET (a caller that jumps), dropping what is known. */
static bool
walk_restart(Mapped *m, uint64_t offset, GError **error)
{
    stream_close(&m->stream);
    g_array_set_size(m->data, 0);
    m->known_from = m->parsed_end = m->handed = offset;
    m->carry.length = 0;
    return stream_open(m, &m->stream, offset, m->size - offset, error);
}

static void
add_out(GArray *out, uint64_t offset, uint64_t length, bool zero)
{
    VsExtent x = { .offset = offset, .length = length, .zero = zero };
    g_array_append_val(out, x);
}

static bool
mapped_extents(VsSource *src, uint64_t offset, uint64_t length, GArray *out, GError **error)
{
    Mapped *m = ((Handle *)src->priv)->m;
    uint64_t end = offset + length;
    bool ok = true;

    g_mutex_lock(&m->lock);
    if (!m->stream.pid || offset != m->handed)
        ok = walk_restart(m, offset, error);
    for (unsigned n = 0; ok && m->handed < end && n < MAX_EXTENTS_PER_CALL; n++) {
        MapExtent e;
        bool zero;
        GError *err = NULL;

        if (m->carry.length) {
            e = m->carry;
            zero = m->carry_zero;
            m->carry.length = 0;
        } else if (!stream_next(m, &m->stream, &e, &zero, &err)) {
            if (err) {
                g_propagate_error(error, err);
                ok = false;
            } else if (m->handed < m->size) {
                g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img map ended at offset %"
                            G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT, m->path, m->handed, m->size);
                ok = false;
            }
            break;
        } else {
            if (e.start != m->parsed_end) {
                g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img map skipped from %"
                            G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT, m->path, m->parsed_end, e.start);
                ok = false;
                break;
            }
            m->parsed_end = e.start + e.length;
            if (!zero)
                g_array_append_val(m->data, e);
        }
        if (e.start + e.length > end) {
            /* Keep the rest for the next call, which starts there. */
            m->carry = e;
            m->carry_zero = zero;
            m->carry.host += end - e.start;
            m->carry.length -= end - e.start;
            m->carry.start = end;
            e.length = end - e.start;
        }
        add_out(out, e.start, e.length, zero);
        m->handed = e.start + e.length;
    }
    g_mutex_unlock(&m->lock);
    return ok;
}

/* Where one piece of a read comes from. */
typedef struct {
    char *buf;
    uint64_t len;
    uint64_t guest;
    int layer;              /* PIECE_FALLBACK, PIECE_ZERO, or the layer read at HOST */
    uint64_t host;
} Piece;

#define PIECE_FALLBACK (-1)
#define PIECE_ZERO (-2)

static void
add_piece(GArray *pieces, char *buf, uint64_t len, uint64_t guest, int layer, uint64_t host)
{
    Piece p = { .buf = buf, .len = len, .guest = guest, .layer = layer, .host = host };
    if (len)
        g_array_append_val(pieces, p);
}

/* Splits [offset, offset+len) over EXTENTS (data extents, sorted; the gaps
 * between them read as zeros). With CONSUME, counts the bytes as read and
 * drops the extents at the front that have been read whole. */
static void
plan_read(Mapped *m, GArray *extents, bool consume, char *buf, uint64_t len, uint64_t offset,
          GArray *pieces)
{
    uint64_t end = offset + len, pos = offset;
    guint lo = 0, hi = extents->len, drop = 0;

    while (lo < hi) {       /* the first extent ending after OFFSET */
        guint mid = lo + (hi - lo) / 2;
        MapExtent *e = &g_array_index(extents, MapExtent, mid);
        if (e->start + e->length <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (guint i = lo; i < extents->len && pos < end; i++) {
        MapExtent *e = &g_array_index(extents, MapExtent, i);
        uint64_t a, b;

        if (e->start >= end)
            break;
        a = MAX(e->start, pos);
        b = MIN(e->start + e->length, end);
        add_piece(pieces, buf + (pos - offset), a - pos, pos, PIECE_ZERO, 0);
        add_piece(pieces, buf + (a - offset), b - a, a, e->direct ? e->depth : PIECE_FALLBACK,
                  e->host + (a - e->start));
        if (consume)
            e->unread -= MIN(e->unread, b - a);
        pos = b;
    }
    add_piece(pieces, buf + (pos - offset), end - pos, pos, PIECE_ZERO, 0);
    if (!consume)
        return;
    while (drop < extents->len && g_array_index(extents, MapExtent, drop).unread == 0)
        drop++;
    if (drop) {
        MapExtent *last = &g_array_index(extents, MapExtent, drop - 1);
        m->known_from = last->start + last->length;
        g_array_remove_range(extents, 0, drop);
    }
}

/* Data extents of [offset, offset+len) from a qemu-img map of just that range. */
static bool
map_range(Mapped *m, uint64_t offset, uint64_t len, GArray *extents, GError **error)
{
    MapStream s = { .err_fd = -1 };
    bool ok;

    if (!stream_open(m, &s, offset, len, error))
        return false;
    for (;;) {
        MapExtent e;
        bool zero;
        GError *err = NULL;

        if (!stream_next(m, &s, &e, &zero, &err)) {
            ok = !err;
            if (err)
                g_propagate_error(error, err);
            break;
        }
        if (!zero)
            g_array_append_val(extents, e);
    }
    stream_close(&s);
    return ok;
}

static bool
read_fallback(VsSource *src, Piece *p, GError **error)
{
    Mapped *m = ((Handle *)src->priv)->m;
    bool ok;

    g_mutex_lock(&m->fallback_lock);
    if (!m->fallback)
        m->fallback = vs_source_open_image(m->path, m->format, error);
    ok = m->fallback && vs_source_pread(m->fallback, p->buf, p->len, p->guest, error);
    g_mutex_unlock(&m->fallback_lock);
    return ok;
}

static bool
read_direct(VsSource *src, Piece *p, GError **error)
{
    Handle *h = src->priv;
    Mapped *m = h->m;
    char *buf = p->buf;
    uint64_t len = p->len, host = p->host;
    int fd = m->fds[p->layer];

    if (h->net[p->layer]) {
        if (vs_source_pread(h->net[p->layer], buf, len, host, error))
            return true;
        vs_error_prefix(error, "image: %s: read at offset %" G_GUINT64_FORMAT, src->description,
                        p->guest);
        return false;
    }
    /* Aligned: around the page cache. */
    if (m->dfds[p->layer] >= 0 && ((uintptr_t)buf | host | len) % DIRECT_ALIGN == 0)
        fd = m->dfds[p->layer];
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)host);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EINVAL && fd != m->fds[p->layer]) {
            /* The device wants a larger alignment than ours: read through the cache. */
            fd = m->fds[p->layer];
            continue;
        }
        if (n <= 0) {
            int e = errno;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: read at offset %" G_GUINT64_FORMAT
                        " (file offset %" G_GUINT64_FORMAT "): %s", src->description, p->guest, host,
                        n < 0 ? g_strerror(e) : "unexpected end of file (the image shrank?)");
            return false;
        }
        buf += n;
        len -= (uint64_t)n;
        host += (uint64_t)n;
    }
    return true;
}

static bool
mapped_pread(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error)
{
    Mapped *m = ((Handle *)src->priv)->m;
    g_autoptr(GArray) pieces = g_array_new(FALSE, FALSE, sizeof(Piece));
    bool known;

    if (offset > m->size || len > m->size - offset) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "image: %s: read beyond the end "
                    "(%" G_GUINT64_FORMAT "+%zu of %" G_GUINT64_FORMAT ")", src->description,
                    offset, len, m->size);
        return false;
    }
    g_mutex_lock(&m->lock);
    known = m->stream.pid && offset >= m->known_from && offset + len <= m->parsed_end;
    if (known)
        plan_read(m, m->data, true, buf, len, offset, pieces);
    g_mutex_unlock(&m->lock);
    if (!known) {
        g_autoptr(GArray) ext = g_array_new(FALSE, FALSE, sizeof(MapExtent));
        if (!map_range(m, offset, len, ext, error))
            return false;
        plan_read(m, ext, false, buf, len, offset, pieces);
    }
    for (guint i = 0; i < pieces->len; i++) {
        Piece *p = &g_array_index(pieces, Piece, i);
        if (p->layer == PIECE_ZERO)
            memset(p->buf, 0, p->len);
        else if (!(p->layer == PIECE_FALLBACK ? read_fallback(src, p, error)
                                               : read_direct(src, p, error)))
            return false;
    }
    return true;
}

static void
mapped_unref(Mapped *m)
{
    if (!g_atomic_int_dec_and_test(&m->refs))
        return;
    stream_close(&m->stream);
    g_clear_pointer(&m->fallback, vs_source_close);
    for (unsigned i = 0; i < m->nlayers; i++) {
        if (m->fds[i] >= 0)
            close(m->fds[i]);
        if (m->dfds[i] >= 0)
            close(m->dfds[i]);
        g_free(m->urls[i]);
    }
    g_free(m->fds);
    g_free(m->dfds);
    g_free(m->urls);
    g_array_unref(m->data);
    g_mutex_clear(&m->lock);
    g_mutex_clear(&m->fallback_lock);
    g_free(m->path);
    g_free(m->format);
    g_free(m);
}

static void
handle_free(Handle *h)
{
    for (unsigned i = 0; i < h->m->nlayers; i++)
        g_clear_pointer(&h->net[i], vs_source_close);
    g_free(h->net);
    mapped_unref(h->m);
    g_free(h);
}

/* A handle on M (taking a reference) with a connection of its own to every
 * network layer, cloned from TEMPLATE's where there is one. */
static Handle *
handle_new(Mapped *m, Handle *template, GError **error)
{
    Handle *h = g_new0(Handle, 1);

    g_atomic_int_inc(&m->refs);
    h->m = m;
    h->net = g_new0(VsSource *, m->nlayers);
    for (unsigned i = 0; i < m->nlayers; i++) {
        if (!m->urls[i])
            continue;
        h->net[i] = template ? vs_source_clone(template->net[i], error)
                             : vs_source_open_url(m->urls[i], NULL, false, error);
        if (!h->net[i]) {
            vs_error_prefix(error, "image: %s: layer %u", m->path, i);
            handle_free(h);
            return NULL;
        }
    }
    return h;
}

/* Clones share the map and the local descriptors (pread on a descriptor is
 * safe from several threads); each has its own network connections. */
static VsSource *
mapped_clone(VsSource *src, GError **error)
{
    Handle *h = handle_new(((Handle *)src->priv)->m, src->priv, error);

    return h ? vs_source_new(&mapped_ops, src->description, h) : NULL;
}

static void
mapped_close(VsSource *src)
{
    Handle *h = src->priv;

    src->priv = NULL;
    if (h)
        handle_free(h);
}

static const VsSourceOps mapped_ops = {
    .name = "image",
    .size = mapped_size,
    .extents = mapped_extents,
    .pread = mapped_pread,
    .clone = mapped_clone,
    .close = mapped_close,
    /* O_DIRECT has no readahead: four preads in flight keep the disk busy
     * (bench/copy-bench.c on these machines: 2.6-3.1 s for 1.5 GiB against
     * 2.7-4.0 s with two). */
    .preferred_readers = 4,
};

/* Layers we read with our own network sources (block/source/source-nfs.c, -iscsi.c). */
static bool
network_layer(const char *file)
{
    return g_str_has_prefix(file, "nfs://") || g_str_has_prefix(file, "iscsi://");
}

/* The layers of PATH's chain, by depth, checked to be plain local files whose
 * map offsets are data: qcow2 without encryption or external data file, raw. */
static JsonArray *
chain_info(const char *path, const char *format, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autofree char *out = NULL, *err_out = NULL;
    char *argv[] = { (char *)"qemu-img", (char *)"info", (char *)"-U", (char *)"--backing-chain",
                     (char *)"--output=json", (char *)"-f", (char *)format, (char *)path, NULL };
    GError *err = NULL;
    JsonArray *layers;
    int status = 0;

    if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err_out, &status,
                      &err)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img info: %s", path, err->message);
        g_error_free(err);
        return NULL;
    }
    if (!g_spawn_check_wait_status(status, &err)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img info: %s", path,
                    *g_strchomp(err_out) ? err_out : err->message);
        g_error_free(err);
        return NULL;
    }
    if (!json_parser_load_from_data(parser, out, -1, NULL) ||
        !JSON_NODE_HOLDS_ARRAY(json_parser_get_root(parser)) ||
        json_array_get_length(json_node_get_array(json_parser_get_root(parser))) == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: qemu-img info: unexpected output", path);
        return NULL;
    }
    layers = json_node_get_array(json_parser_get_root(parser));
    for (guint i = 0; i < json_array_get_length(layers); i++) {
        JsonObject *l = json_array_get_object_element(layers, i);
        const char *fmt = l ? json_object_get_string_member_with_default(l, "format", "") : "";
        const char *file = l ? json_object_get_string_member_with_default(l, "filename", "") : "";
        JsonObject *spec = l && json_object_has_member(l, "format-specific") ?
                           json_object_get_object_member(l, "format-specific") : NULL;
        JsonObject *sdata = spec && json_object_has_member(spec, "data") ?
                            json_object_get_object_member(spec, "data") : NULL;

        if ((strcmp(fmt, "qcow2") != 0 && strcmp(fmt, "raw") != 0) ||
            (l && json_object_get_boolean_member_with_default(l, "encrypted", FALSE)) ||
            (sdata && json_object_has_member(sdata, "data-file")) ||
            (network_layer(file) ? false : strstr(file, "://") || g_str_has_prefix(file, "json:") ||
                                           !g_file_test(file, G_FILE_TEST_EXISTS))) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "image: %s: layer %u (%s, %s) cannot be read from its file directly", path, i,
                        file, fmt);
            return NULL;
        }
    }
    return json_array_ref(layers);
}

VsSource *
vs_source_open_mapped(const char *path, const char *format, GError **error)
{
    g_autoptr(JsonArray) layers = NULL;
    Mapped *m;
    Handle *h;

    if (!format || !*format) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "image: %s: no image format given", path);
        return NULL;
    }
    layers = chain_info(path, format, error);
    if (!layers)
        return NULL;
    m = g_new0(Mapped, 1);
    m->path = g_strdup(path);
    m->format = g_strdup(format);
    m->size = (uint64_t)json_object_get_int_member_with_default(json_array_get_object_element(layers, 0),
                                                               "virtual-size", 0);
    m->data = g_array_new(FALSE, FALSE, sizeof(MapExtent));
    m->stream.err_fd = -1;
    g_mutex_init(&m->lock);
    g_mutex_init(&m->fallback_lock);
    m->nlayers = json_array_get_length(layers);
    m->fds = g_new(int, m->nlayers);
    m->dfds = g_new(int, m->nlayers);
    m->urls = g_new0(char *, m->nlayers);
    for (unsigned i = 0; i < m->nlayers; i++)
        m->fds[i] = m->dfds[i] = -1;
    for (unsigned i = 0; i < m->nlayers; i++) {
        const char *file = json_object_get_string_member(json_array_get_object_element(layers, i),
                                                         "filename");
        if (network_layer(file)) {
            m->urls[i] = g_strdup(file);
            continue;
        }
        m->fds[i] = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (m->fds[i] < 0) {
            int e = errno;
            g_set_error(error, VS_ERROR, e == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                        "image: %s: open %s: %s", path, file, g_strerror(e));
            m->refs = 1;
            mapped_unref(m);
            return NULL;
        }
        (void)posix_fadvise(m->fds[i], 0, 0, POSIX_FADV_SEQUENTIAL);
        m->dfds[i] = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_DIRECT);
    }
    /* The first handle takes the first reference (a failure frees M). */
    h = handle_new(m, NULL, error);
    return h ? vs_source_new(&mapped_ops, path, h) : NULL;
}
