/* NBD sources through libnbd: an export named by a URI (a qemu-nbd someone else
 * runs, or libvirt's pull-mode backup server), and a disk image of any format
 * QEMU reads, qcow2 backing chain included, which we serve to ourselves with a
 * private read-only qemu-nbd that libnbd starts by socket activation (its socket
 * sits in a private directory libnbd removes) and kills and reaps in nbd_close
 * on every path, error paths included. Which ranges hold data comes from the base:allocation metadata
 * context, requested before connecting; a server without it is read whole. A
 * libvirt pull-mode incremental export also offers a dirty bitmap context; both
 * are asked for in one block status request and their answers, whose extent
 * boundaries differ, are merged into extents that carry both facts. The
 * image server's stderr goes to an unlinked temporary file so that its
 * complaints end up in our error messages rather than on the user's terminal. */
#include "config.h"
#include "source-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* qemu-nbd refuses requests above 32 MiB; most servers advertise their limit. */
#define NBD_MAX_REQUEST (32u * 1024 * 1024)
/* One block-status request covers at most this much (the protocol's length is
 * 32-bit); the engine asks again from where the answer ends. */
#define NBD_MAX_STATUS_SPAN (UINT64_C(1) << 30)
#define QEMU_NBD_ERR_MAX 4096

typedef struct {
    struct nbd_handle *nbd;
    uint64_t size;
    uint64_t max_request;
    bool have_allocation;
    char *bitmap;         /* the dirty bitmap context, or NULL */
    char *uri;            /* nbd: what a clone connects to */
    char *image_path;     /* image: what a clone serves again (absolute) */
    char *format;
    int err_fd;           /* image: qemu-nbd's stderr (unlinked file), or -1 */
    char *chap_user;      /* image: iscsi:// with CHAP: the user, and the */
    int secret_fd;        /* ... password in a memfd qemu-nbd reads, or -1 */
} NbdSource;

static const VsSourceOps nbd_ops;
static const VsSourceOps image_ops;

/* The tail of what qemu-nbd wrote to stderr, without trailing newlines, or NULL. */
static char *
server_stderr(NbdSource *ns)
{
    char buf[QEMU_NBD_ERR_MAX];
    off_t end;
    ssize_t n;

    if (ns->err_fd < 0 || (end = lseek(ns->err_fd, 0, SEEK_END)) <= 0)
        return NULL;
    n = pread(ns->err_fd, buf, sizeof buf - 1, end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    return g_strchomp(g_strdup(buf));
}

/* Sets ERROR from libnbd's last error on this thread, with what the server
 * printed when it is ours. */
static void
set_nbd_error(GError **error, const VsSource *src, NbdSource *ns, const char *action)
{
    int e = nbd_get_errno();
    const char *msg = nbd_get_error();
    g_autofree char *server = ns ? server_stderr(ns) : NULL;

    const char *why = msg ? msg : e ? g_strerror(e) : "unknown error";

    /* The server's complaint is the cause; libnbd's is only how we noticed. */
    if (server)
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s: %s: %s (%s)", src->ops->name,
                    src->description, action, server, why);
    else
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s: %s: %s", src->ops->name,
                    src->description, action, why);
}

static uint64_t
nbd_source_size(VsSource *src)
{
    return ((NbdSource *)src->priv)->size;
}

typedef struct {
    const char *bitmap;
    GArray *alloc;        /* VsExtent from base:allocation */
    GArray *dirty;        /* VsExtent from the bitmap: .unchanged = clean */
    uint64_t end;
} StatusCtx;

static int
status_cb(void *opaque, const char *context, uint64_t offset, uint32_t *entries, size_t n, int *error)
{
    StatusCtx *ctx = opaque;
    bool is_alloc = strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0;
    GArray *out;

    (void)error;
    if (is_alloc)
        out = ctx->alloc;
    else if (ctx->bitmap && strcmp(context, ctx->bitmap) == 0)
        out = ctx->dirty;
    else
        return 0;
    for (size_t i = 0; i + 1 < n && offset < ctx->end; i += 2) {
        uint64_t len = MIN((uint64_t)entries[i], ctx->end - offset);
        /* A hole that is not known to read as zeros must still be read; in a
         * dirty bitmap, bit 0 set means written since the checkpoint. */
        VsExtent e = { .offset = offset, .length = len,
                       .zero = is_alloc && (entries[i + 1] & LIBNBD_STATE_ZERO) != 0,
                       .unchanged = !is_alloc && (entries[i + 1] & 1) == 0 };
        if (len == 0)
            break;
        g_array_append_val(out, e);
        offset += len;
    }
    return 0;
}

/* Appends to OUT the extents of ALLOC cut where DIRTY's boundaries fall, each
 * with DIRTY's verdict, as far as both reach. */
static void
merge_extents(GArray *alloc, GArray *dirty, GArray *out)
{
    guint a = 0, d = 0;
    uint64_t pos = alloc->len ? g_array_index(alloc, VsExtent, 0).offset : 0;

    while (a < alloc->len && d < dirty->len) {
        VsExtent *ea = &g_array_index(alloc, VsExtent, a);
        VsExtent *ed = &g_array_index(dirty, VsExtent, d);
        uint64_t end = MIN(ea->offset + ea->length, ed->offset + ed->length);
        VsExtent e = { .offset = pos, .length = end - pos, .zero = ea->zero,
                       .unchanged = ed->unchanged };

        if (end > pos)
            g_array_append_val(out, e);
        pos = end;
        if (ea->offset + ea->length == end)
            a++;
        if (ed->offset + ed->length == end)
            d++;
    }
}

static bool
nbd_source_extents(VsSource *src, uint64_t offset, uint64_t length, GArray *out, GError **error)
{
    NbdSource *ns = src->priv;
    guint before = out->len;
    g_autoptr(GArray) alloc = g_array_new(FALSE, FALSE, sizeof(VsExtent));
    g_autoptr(GArray) dirty = g_array_new(FALSE, FALSE, sizeof(VsExtent));
    StatusCtx ctx = { .bitmap = ns->bitmap, .alloc = alloc, .dirty = dirty };

    if (!ns->have_allocation && !ns->bitmap) {
        VsExtent e = { .offset = offset, .length = length, .zero = false };
        g_array_append_val(out, e);
        return true;
    }
    length = MIN(length, NBD_MAX_STATUS_SPAN);
    ctx.end = offset + length;
    if (nbd_block_status(ns->nbd, length, offset,
                         (nbd_extent_callback) { .callback = status_cb, .user_data = &ctx }, 0) < 0) {
        g_autofree char *action = g_strdup_printf("block status at offset %" G_GUINT64_FORMAT, offset);
        set_nbd_error(error, src, ns, action);
        return false;
    }
    if (!ns->have_allocation && dirty->len) {
        /* Everything is data: one extent as long as the bitmap's answer. */
        const VsExtent *last = &g_array_index(dirty, VsExtent, dirty->len - 1);
        VsExtent e = { .offset = offset, .length = last->offset + last->length - offset };
        g_array_append_val(alloc, e);
    }
    if (ns->bitmap)
        merge_extents(alloc, dirty, out);
    else
        g_array_append_vals(out, alloc->data, alloc->len);
    if (out->len == before) {
        /* A compliant server always answers; guard the engine against looping. */
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "%s: %s: block status at offset %" G_GUINT64_FORMAT " returned no extents",
                    src->ops->name, src->description, offset);
        return false;
    }
    return true;
}

static bool
nbd_source_pread(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error)
{
    NbdSource *ns = src->priv;
    char *p = buf;

    while (len > 0) {
        size_t n = MIN(len, ns->max_request);

        if (nbd_pread(ns->nbd, p, n, offset, 0) < 0) {
            g_autofree char *action = g_strdup_printf("read at offset %" G_GUINT64_FORMAT, offset);
            set_nbd_error(error, src, ns, action);
            return false;
        }
        p += n;
        len -= n;
        offset += n;
    }
    return true;
}

/* An idle NBD server sends nothing unasked: anything to read, or a hangup,
 * means it has gone away. */
static bool
peer_alive(struct nbd_handle *h)
{
    struct pollfd p = { .fd = nbd_aio_get_fd(h), .events = POLLIN };

    return p.fd >= 0 && poll(&p, 1, 0) == 0;
}

static void
nbd_source_free(NbdSource *ns)
{
    if (!ns)
        return;
    if (ns->nbd) {
        /* A polite disconnect for servers we do not own (ours is killed by
         * nbd_close), and only while the peer is still there: libnbd 1.14
         * reads freed memory in nbd_shutdown when the server is gone. */
        if (ns->uri && nbd_aio_is_ready(ns->nbd) == 1 && peer_alive(ns->nbd))
            nbd_shutdown(ns->nbd, 0);
        /* Kills (SIGTERM) and reaps a server libnbd started. */
        nbd_close(ns->nbd);
    }
    if (ns->err_fd >= 0)
        close(ns->err_fd);
    if (ns->secret_fd >= 0)
        close(ns->secret_fd);
    g_free(ns->chap_user);
    g_free(ns->uri);
    g_free(ns->bitmap);
    g_free(ns->image_path);
    g_free(ns->format);
    g_free(ns);
}

static void
nbd_source_close(VsSource *src)
{
    nbd_source_free(src->priv);
    src->priv = NULL;
}

/* Reads size, limits and the allocation context of a connected handle. */
static bool
nbd_source_setup(VsSource *src, GError **error)
{
    NbdSource *ns = src->priv;
    int64_t size = nbd_get_size(ns->nbd), max = nbd_get_block_size(ns->nbd, LIBNBD_SIZE_MAXIMUM);

    if (size < 0) {
        set_nbd_error(error, src, ns, "size");
        return false;
    }
    ns->size = (uint64_t)size;
    ns->max_request = max > 0 ? MIN((uint64_t)max, NBD_MAX_REQUEST) : NBD_MAX_REQUEST;
    ns->have_allocation = nbd_can_meta_context(ns->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    if (ns->bitmap && nbd_can_meta_context(ns->nbd, ns->bitmap) != 1) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "%s: %s: the server offers no %s context",
                    src->ops->name, src->description, ns->bitmap);
        return false;
    }
    return true;
}

static struct nbd_handle *
new_handle(const VsSource *src_for_errors, const char *bitmap, GError **error)
{
    struct nbd_handle *h = nbd_create();

    if (!h) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "%s: %s: nbd_create: %s",
                    src_for_errors->ops->name, src_for_errors->description, nbd_get_error());
        return NULL;
    }
    /* libnbd zeroes every read buffer before the request by default (so that
     * a caller ignoring an error never sees stale memory): 4% of an
     * incremental's CPU, measured with perf. A failed read here is never used. */
    if (nbd_set_pread_initialize(h, false) < 0 ||
        nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
        (bitmap && nbd_add_meta_context(h, bitmap) < 0)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "%s: %s: %s", src_for_errors->ops->name,
                    src_for_errors->description, nbd_get_error());
        nbd_close(h);
        return NULL;
    }
    return h;
}

static VsSource *
open_uri(const char *uri, const char *bitmap, GError **error)
{
    NbdSource *ns = g_new0(NbdSource, 1);
    g_autoptr(VsSource) src = NULL;

    ns->err_fd = -1;
    ns->secret_fd = -1;
    ns->uri = g_strdup(uri);
    ns->bitmap = g_strdup(bitmap);
    src = vs_source_new(&nbd_ops, uri, ns);
    if (!(ns->nbd = new_handle(src, bitmap, error)))
        return NULL;
    if (nbd_connect_uri(ns->nbd, uri) < 0) {
        set_nbd_error(error, src, ns, "connect");
        return NULL;
    }
    if (!nbd_source_setup(src, error))
        return NULL;
    return g_steal_pointer(&src);
}

VsSource *
vs_source_open_nbd_uri(const char *uri, GError **error)
{
    return open_uri(uri, NULL, error);
}

VsSource *
vs_source_open_nbd_bitmap(const char *uri, const char *bitmap_context, GError **error)
{
    return open_uri(uri, bitmap_context, error);
}

static VsSource *
nbd_source_clone(VsSource *src, GError **error)
{
    NbdSource *ns = src->priv;

    return open_uri(ns->uri, ns->bitmap, error);
}

/* An image QEMU reads over the network itself (block-nfs, block-iscsi, block-rbd). */
static bool
is_url(const char *path)
{
    return g_str_has_prefix(path, "nfs://") || g_str_has_prefix(path, "iscsi://") || g_str_has_prefix(path, "rbd:");
}

static void
append_escaped(GString *s, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == ',')
            g_string_append_c(s, ',');
        g_string_append_c(s, *p);
    }
}

/* nfs://HOST/PATH and iscsi://HOST[:PORT]/IQN/LUN as QEMU's driver options;
 * CHAP_USER: the iSCSI login's user, its password the secret object SECRET_ID. */
static char *
url_opts(const char *url, const char *format, const char *chap_user, const char *secret_id)
{
    g_autoptr(GUri) uri = g_uri_parse(url, G_URI_FLAGS_NONE, NULL);
    GString *opts = g_string_new(NULL);
    const char *path = uri ? g_uri_get_path(uri) : "";

    g_string_printf(opts, "driver=%s,", format);
    if (uri && g_str_equal(g_uri_get_scheme(uri), "nfs")) {
        g_string_append(opts, "file.driver=nfs,file.server.type=inet,file.server.host=");
        append_escaped(opts, g_uri_get_host(uri));
        g_string_append(opts, ",file.path=");
        append_escaped(opts, path);
    } else if (uri) {
        g_auto(GStrv) parts = g_strsplit(path + (*path == '/'), "/", 2);
        g_string_append_printf(opts, "file.driver=iscsi,file.transport=tcp,file.portal=%s:%d,file.target=",
                               g_uri_get_host(uri), g_uri_get_port(uri) > 0 ? g_uri_get_port(uri) : 3260);
        append_escaped(opts, parts[0] ? parts[0] : "");
        g_string_append_printf(opts, ",file.lun=%s", parts[0] && parts[1] ? parts[1] : "0");
        if (chap_user) {
            g_string_append(opts, ",file.user=");
            append_escaped(opts, chap_user);
            g_string_append_printf(opts, ",file.password-secret=%s", secret_id);
        }
    }
    g_string_append(opts, ",force-share=on");
    return g_string_free(opts, FALSE);
}

/* rbd:POOL/IMAGE[@SNAP][:conf=FILE][:id=USER], QEMU's rbd file name (a '\\'
 * escapes the next byte), as the rbd driver's options: how the rbd snapshot
 * provider (vs-snapshot.h) exposes a snapshot. Other keys are dropped. */
static char *
rbd_opts(const char *url, const char *format)
{
    g_autoptr(GPtrArray) parts = g_ptr_array_new_with_free_func(g_free);
    GString *part = g_string_new(NULL), *opts = g_string_new(NULL);
    g_auto(GStrv) name = NULL;      /* POOL, IMAGE[@SNAP] */
    char *at;

    for (const char *p = url + strlen("rbd:"); *p; p++) {
        if (*p == '\\' && p[1]) {
            g_string_append_c(part, *++p);
        } else if (*p == ':') {
            g_ptr_array_add(parts, g_string_free(part, FALSE));
            part = g_string_new(NULL);
        } else {
            g_string_append_c(part, *p);
        }
    }
    g_ptr_array_add(parts, g_string_free(part, FALSE));
    name = g_strsplit(parts->pdata[0], "/", 2);
    if ((at = name[1] ? strchr(name[1], '@') : NULL))
        *at++ = '\0';
    g_string_printf(opts, "driver=%s,file.driver=rbd,file.pool=", format);
    append_escaped(opts, name[1] ? name[0] : "");
    g_string_append(opts, ",file.image=");
    append_escaped(opts, name[1] ? name[1] : name[0] ? name[0] : "");
    if (at) {
        g_string_append(opts, ",file.snapshot=");
        append_escaped(opts, at);
    }
    for (guint i = 1; i < parts->len; i++) {
        const char *kv = parts->pdata[i];
        if (g_str_has_prefix(kv, "conf=") || g_str_has_prefix(kv, "id=")) {
            g_string_append(opts, kv[0] == 'c' ? ",file.conf=" : ",file.user=");
            append_escaped(opts, strchr(kv, '=') + 1);
        }
    }
    g_string_append(opts, ",force-share=on");
    return g_string_free(opts, FALSE);
}

/* The --image-opts of a read-only, force-shared view of ABS_PATH as FORMAT:
 * QEMU's option syntax escapes a comma by doubling it. */
static char *
image_opts(const char *abs_path, const char *format, const char *chap_user, const char *secret_id)
{
    GString *opts = g_string_new(NULL);
    struct stat st;

    /* A block device (LVM, iSCSI LUN) wants QEMU's host_device protocol; a
     * network image QEMU's nfs or iscsi driver, given its parts (a URL in
     * file.filename would be taken for a local file name). */
    if (g_str_has_prefix(abs_path, "rbd:")) {
        g_string_free(opts, TRUE);
        return rbd_opts(abs_path, format);
    }
    if (is_url(abs_path)) {
        g_string_free(opts, TRUE);
        return url_opts(abs_path, format, chap_user, secret_id);
    }
    g_string_printf(opts, "driver=%s,file.driver=%s,file.filename=", format,
                    stat(abs_path, &st) == 0 && S_ISBLK(st.st_mode) ? "host_device" : "file");
    append_escaped(opts, abs_path);
    /* Inherited by the whole backing chain. */
    g_string_append(opts, ",force-share=on");
    return g_string_free(opts, FALSE);
}

/* The password in a sealed memfd: QEMU reads a secret object from a file, and
 * this one is on no disk and in no command line; qemu-nbd opens it through our
 * /proc entry while we hold it. */
static int
secret_memfd(const char *password, const char *description, GError **error)
{
    int fd = memfd_create("virtsnap-chap", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    size_t len = strlen(password);

    if (fd < 0 || write(fd, password, len) != (ssize_t)len ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: CHAP secret for qemu-nbd: %s",
                    description, g_strerror(e));
        return -1;
    }
    return fd;
}

static VsSource *
open_image(const char *abs_path, const char *format, const char *description,
           const char *chap_user, int secret_fd, GError **error)
{
    NbdSource *ns = g_new0(NbdSource, 1);
    g_autoptr(VsSource) src = vs_source_new(&image_ops, description, ns);
    g_autofree char *opts = image_opts(abs_path, format, chap_user, "vs-chap");
    g_autofree char *err_path = g_build_filename(g_get_tmp_dir(), "virtsnap-qemu-nbd-XXXXXX", NULL);
    g_autofree char *err_ref = NULL, *secret_obj = NULL;

    ns->image_path = g_strdup(abs_path);
    ns->format = g_strdup(format);
    ns->secret_fd = -1;
    if (chap_user) {
        ns->chap_user = g_strdup(chap_user);
        ns->secret_fd = fcntl(secret_fd, F_DUPFD_CLOEXEC, 0);
        if (ns->secret_fd < 0) {
            int e = errno;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: CHAP secret: %s", description,
                        g_strerror(e));
            return NULL;
        }
        secret_obj = g_strdup_printf("secret,id=vs-chap,format=raw,file=/proc/%d/fd/%d",
                                     (int)getpid(), ns->secret_fd);
    }
    ns->err_fd = mkostemp(err_path, O_CLOEXEC);
    if (ns->err_fd < 0) {
        int e = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "image: %s: temporary file in %s: %s",
                    description, g_get_tmp_dir(), g_strerror(e));
        return NULL;
    }
    /* Unlinked at once, so that nothing is left behind even if we are killed;
     * the server opens it through our descriptor's /proc link instead of
     * inheriting it (other threads fork too). */
    unlink(err_path);
    err_ref = g_strdup_printf("/proc/%d/fd/%d", (int)getpid(), ns->err_fd);
    if (!(ns->nbd = new_handle(src, NULL, error)))
        return NULL;
    {
        /* The shell only redirects (none of our descriptors is the server's)
         * and execs, so the pid libnbd forked (and named in LISTEN_PID) is
         * qemu-nbd's own. Page cache (writeback) rather than O_DIRECT: reads
         * are sequential and the kernel's readahead is what makes them fast;
         * nothing is written. force-share (qemu-nbd 7.2 has no --force-share;
         * the image option does the same): the image is the stable base under
         * a running guest's overlay, whose QEMU may hold its write lock, and
         * the commit that follows the copy needs that lock; a server left
         * behind by a killed backup must not hold a lock that blocks
         * `recover`. setpriv --pdeathsig: a qemu-nbd whose virtsnap was killed
         * before it connected would otherwise wait for a client forever. */
        char *argv[] = {
            (char *)"/bin/sh", (char *)"-c",
            (char *)"f=$1; shift; exec \"$@\" </dev/null >/dev/null 2>>\"$f\"", (char *)"sh",
            err_ref, (char *)"setpriv", (char *)"--pdeathsig", (char *)"KILL", (char *)"--",
            (char *)"qemu-nbd", (char *)"--read-only", (char *)"--cache=writeback",
            (char *)"--aio=threads", (char *)"--image-opts", opts, NULL, NULL, NULL,
        };

        if (secret_obj) {
            /* --object must come before the image it serves */
            argv[15] = argv[13]; argv[16] = argv[14];
            argv[13] = (char *)"--object"; argv[14] = secret_obj;
        }

        if (nbd_connect_systemd_socket_activation(ns->nbd, argv) < 0) {
            set_nbd_error(error, src, ns, "start qemu-nbd");
            return NULL;
        }
    }
    if (!nbd_source_setup(src, error))
        return NULL;
    return g_steal_pointer(&src);
}

VsSource *
vs_source_open_image(const char *path, const char *format, GError **error)
{
    return vs_source_open_image_auth(path, format, NULL, error);
}

VsSource *
vs_source_open_image_auth(const char *path, const char *format, const VsIscsiAuth *auth,
                          GError **error)
{
    g_autofree char *abs = NULL;

    if (!format || !*format) {
        /* Never let QEMU guess: a raw guest disk can hold a qcow2 header that
         * names any host file as its backing file. */
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "image: %s: the format must be given",
                    path);
        return NULL;
    }
    for (const char *p = format; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-') {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "image: %s: invalid format \"%s\"",
                        path, format);
            return NULL;
        }
    }
    if (auth && auth->user && g_str_has_prefix(path, "iscsi://")) {
        int fd = secret_memfd(auth->password ? auth->password : "", path, error);
        VsSource *src;

        if (fd < 0)
            return NULL;
        src = open_image(path, format, path, auth->user, fd, error);
        close(fd);
        return src;
    }
    if (is_url(path))
        return open_image(path, format, path, NULL, -1, error);
    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "image: %s: no such file", path);
        return NULL;
    }
    /* An absolute path never looks like a "protocol:" filename to QEMU. */
    abs = g_canonicalize_filename(path, NULL);
    return open_image(abs, format, path, NULL, -1, error);
}

static VsSource *
image_clone(VsSource *src, GError **error)
{
    NbdSource *ns = src->priv;

    /* A second private server rather than a second connection to the first:
     * socket activation leaves no address to connect to, and two qemu-nbd
     * processes also read in parallel. */
    return open_image(ns->image_path, ns->format, src->description, ns->chap_user, ns->secret_fd,
                      error);
}

static const VsSourceOps nbd_ops = {
    .name = "nbd",
    .size = nbd_source_size,
    .extents = nbd_source_extents,
    .pread = nbd_source_pread,
    .clone = nbd_source_clone,
    .close = nbd_source_close,
};

static const VsSourceOps image_ops = {
    .name = "image",
    .size = nbd_source_size,
    .extents = nbd_source_extents,
    .pread = nbd_source_pread,
    .clone = image_clone,
    .close = nbd_source_close,
    /* Measured on 2 CPUs (bench/copy-bench): two servers read a qcow2 about 10%
     * faster than one; a third only competes with hashing for the CPUs. */
    .preferred_readers = 2,
};
