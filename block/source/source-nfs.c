/* The NFS source: a file on an NFS export read (and, for restore, written)
 * through libnfs, v3 or v4 as the URL says. libnfs's asynchronous calls are
 * driven by the shared request loop (source-net.c): a pread of a chunk becomes
 * several READs of at most the server's maximum size in flight on one TCP
 * connection, which is what a single-threaded client needs to fill a fast link.
 * libnfs's own reconnect is switched off: it retries forever by default, and it
 * cannot re-issue our requests after the server lost its state anyway; the loop
 * mounts and opens afresh instead, within a bounded time. Clones (the engine's
 * reader threads) get their own context and connection. Writing works over
 * NFSv3 only (libnfs 4.0 cannot encode an NFSv4 WRITE). NFSv3 has no way to
 * ask for holes and libnfs 4.0 no SEEK_DATA, so everything is data; the engine
 * keeps zero chunks out of the repository all the same. */
#include "config.h"
#include "source-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <nfsc/libnfs.h>
#include <string.h>
#include <unistd.h>

/* Requests of this size or the server's maximum, whichever is smaller, and
 * this many in flight: measured on loopback ganesha, 16 x 1 MiB gains nothing
 * over 8 and costs memory in libnfs. */
#define PIECE_MAX ((size_t)1 << 20)
#define MAX_INFLIGHT 8
/* Mount and open are synchronous: each may take this long, so a reconnect
 * overruns its bound by at most this much. */
#define CONNECT_TIMEOUT_SECS 10

enum { OP_READ, OP_WRITE, OP_FSYNC, OP_TRUNCATE };

typedef struct {
    char *url;                 /* as given: libnfs parses its options again at each connect */
    bool writable;
    bool v4;                   /* version=4 in the URL */
    struct nfs_context *nfs;
    struct nfsfh *fh;
    uint64_t size;
    size_t piece;              /* request size */
    VsNetConn conn;
} NfsSource;

static const VsSourceOps nfs_ops;
static const VsNetOps nfs_net_ops;

static void
nfs_disconnect(void *be)
{
    NfsSource *ns = be;

    /* The context does not free its file handles. Closing one is local for
     * NFSv3; for NFSv4 it is a CLOSE call, not to be waited for on a
     * connection already known to be dead (that handle is lost, ~150 bytes). */
    if (ns->fh && (!ns->v4 || !ns->conn.broken))
        nfs_close(ns->nfs, ns->fh);
    /* Destroying the context cancels what is in flight (the loop ignores
     * those callbacks). */
    if (ns->nfs)
        nfs_destroy_context(ns->nfs);
    ns->nfs = NULL;
    ns->fh = NULL;
}

/* The error of a failed mount or open (RET, libnfs's -errno), with a code and
 * a hint for the cases users get wrong; libnfs's own text (DETAIL) says which
 * call failed. DOWN: the connection never came up. */
static void
set_open_error(GError **error, const char *url, const char *what, int ret, const char *detail,
               bool v4, bool down)
{
    int code = VS_ERROR_IO;
    const char *hint = "";

    bool mount = g_str_equal(what, "mount");

    if (ret == -ENOENT) {
        code = VS_ERROR_NOT_FOUND;
        hint = mount ? " (no such export)" : " (no such file)";
    } else if (mount && !v4 && ret == -EACCES) {
        /* MNT3ERR_ACCES: ganesha answers an unknown NFSv3 export like a
         * forbidden one. */
        code = VS_ERROR_DENIED;
        hint = " (no such export, or not exported to this client)";
    } else if (ret == -EACCES || ret == -EPERM) {
        code = VS_ERROR_DENIED;
        hint = " (permission denied: export options or file mode)";
    } else if (down) {
        code = VS_ERROR_UNREACHABLE;
        hint = " (server unreachable, or no NFS server there)";
    }
    g_set_error(error, VS_ERROR, code, "nfs: open: %s: %s: %s%s", url, what,
                detail && *detail ? detail : g_strerror(-ret), hint);
}

/* NFSv4 keeps open state per client name: two contexts under libnfs's default
 * name (clones, one per reader thread) expire each other's (NFS4ERR_EXPIRED),
 * so every context is a client of its own. */
static void
set_client_identity(struct nfs_context *nfs)
{
    static gint counter;
    g_autofree char *name = g_strdup_printf("virtsnap-%s-%d-%d", g_get_host_name(), (int)getpid(),
                                            g_atomic_int_add(&counter, 1));
    char verifier[8];

    for (unsigned i = 0; i < sizeof verifier; i++)
        verifier[i] = (char)g_random_int();
    nfs4_set_client_name(nfs, name);
    nfs4_set_verifier(nfs, verifier);
}

static bool
nfs_connect_ctx(void *be, GError **error)
{
    NfsSource *ns = be;
    struct nfs_url *u;
    int ret;

    nfs_disconnect(ns);
    ns->nfs = nfs_init_context();
    if (!ns->nfs) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "nfs: open: %s: cannot create a libnfs context",
                    ns->conn.description);
        return false;
    }
    /* Sync calls (mount, open) give up after the timeout; async ones are also
     * timed by the loop (silence). */
    nfs_set_timeout(ns->nfs, (int)MIN(vs_net_timeout_secs(), CONNECT_TIMEOUT_SECS) * 1000);
    nfs_set_autoreconnect(ns->nfs, 0);
    /* libnfs 4.0 leaks the name it replaces (28 bytes a context): v4 only. */
    if (ns->v4)
        set_client_identity(ns->nfs);
    u = nfs_parse_url_full(ns->nfs, ns->url);
    if (!u) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "nfs: open: %s: %s",
                    ns->conn.description, nfs_get_error(ns->nfs));
        nfs_disconnect(ns);
        return false;
    }
    ret = nfs_mount(ns->nfs, u->server, u->path);
    if (ret < 0) {
        set_open_error(error, ns->conn.description, "mount", ret, nfs_get_error(ns->nfs), ns->v4,
                       vs_net_socket_down(nfs_get_fd(ns->nfs)));
        goto fail;
    }
    ret = nfs_open(ns->nfs, u->file, ns->writable ? O_RDWR : O_RDONLY, &ns->fh);
    if (ret < 0) {
        set_open_error(error, ns->conn.description, "open", ret, nfs_get_error(ns->nfs), ns->v4,
                       vs_net_socket_down(nfs_get_fd(ns->nfs)));
        goto fail;
    }
    nfs_destroy_url(u);
    ns->piece = (size_t)(ns->writable ? MIN(nfs_get_readmax(ns->nfs), nfs_get_writemax(ns->nfs))
                                      : nfs_get_readmax(ns->nfs));
    /* libnfs 4.0 knows no maximum for NFSv4 (0) and splits by itself. */
    if (ns->piece == 0 || ns->piece > PIECE_MAX)
        ns->piece = PIECE_MAX;
    ns->piece = MAX(ns->piece, (size_t)4096);
    return true;

fail:
    nfs_destroy_url(u);
    nfs_disconnect(ns);
    return false;
}

/* One completion for every kind of piece: STATUS >= 0 is the byte count of a
 * read or write (0 for fsync and truncate), < 0 an errno. libnfs reports a
 * connection that went away as RPC errors (-EFAULT) or cancellations (-EINTR);
 * everything else is the server's answer to this request. */
static void
piece_cb(int status, struct nfs_context *nfs, void *data, void *private_data)
{
    VsNetPiece *p = private_data;

    if (status < 0) {
        bool lost = status == -EFAULT || status == -EINTR || status == -EPIPE ||
                    status == -ECONNRESET || status == -ETIMEDOUT || status == -ENOTCONN;
        g_autofree char *msg = g_strdup_printf("%s (%s)", data ? (const char *)data : "",
                                               g_strerror(-status));
        vs_net_piece_failed(p, lost, status == -ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO, msg);
        return;
    }
    switch (p->op) {
    case OP_READ:
        if ((size_t)status > p->len)
            status = (int)p->len;
        if (status > 0)
            memcpy(p->buf, data, (size_t)status);
        vs_net_piece_done(p, (size_t)status);
        break;
    case OP_WRITE:
        vs_net_piece_done(p, (size_t)status);
        break;
    default:
        vs_net_piece_done(p, p->len);
        break;
    }
}

static bool
nfs_issue(void *be, VsNetPiece *p, GError **error)
{
    NfsSource *ns = be;
    int ret = -EINVAL;

    switch (p->op) {
    case OP_READ:
        ret = nfs_pread_async(ns->nfs, ns->fh, p->offset, p->len, piece_cb, p);
        break;
    case OP_WRITE:
        ret = nfs_pwrite_async(ns->nfs, ns->fh, p->offset, p->len, p->buf, piece_cb, p);
        break;
    case OP_FSYNC:
        ret = nfs_fsync_async(ns->nfs, ns->fh, piece_cb, p);
        break;
    case OP_TRUNCATE:
        ret = nfs_ftruncate_async(ns->nfs, ns->fh, p->offset, piece_cb, p);
        break;
    }
    if (ret < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "cannot queue a request: %s",
                    nfs_get_error(ns->nfs));
        return false;
    }
    return true;
}

static int
nfs_fd(void *be)
{
    return nfs_get_fd(((NfsSource *)be)->nfs);
}

static int
nfs_events(void *be)
{
    return nfs_which_events(((NfsSource *)be)->nfs);
}

static int
nfs_service_cb(void *be, int revents, GError **error)
{
    NfsSource *ns = be;
    int r = nfs_service(ns->nfs, revents);

    if (r < 0)
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s", nfs_get_error(ns->nfs));
    return r;
}

static const VsNetOps nfs_net_ops = {
    .issue = nfs_issue,
    .fd = nfs_fd,
    .which_events = nfs_events,
    .service = nfs_service_cb,
    .disconnect = nfs_disconnect,
    .connect = nfs_connect_ctx,
};

static bool
run_io(VsSource *src, const char *opname, int op, char *buf, size_t len, uint64_t offset,
       GError **error)
{
    NfsSource *ns = src->priv;

    return vs_net_run_range(&ns->conn, opname, op, buf, len, offset, ns->piece, MAX_INFLIGHT,
                            error);
}

static uint64_t
nfs_size(VsSource *src)
{
    return ((NfsSource *)src->priv)->size;
}

static bool
nfs_pread_(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error)
{
    return run_io(src, "pread", OP_READ, buf, len, offset, error);
}

static bool
nfs_pwrite_(VsSource *src, const void *buf, size_t len, uint64_t offset, GError **error)
{
    /* libnfs only reads from the buffer of a write. */
    return run_io(src, "pwrite", OP_WRITE, (char *)buf, len, offset, error);
}

static bool
nfs_single(VsSource *src, const char *opname, int op, uint64_t arg, GError **error)
{
    NfsSource *ns = src->priv;
    VsNetPiece piece = { .op = op, .offset = arg, .len = 1 };

    return vs_net_run(&ns->conn, opname, &piece, 1, 1, error);
}

static bool
nfs_flush_(VsSource *src, GError **error)
{
    return nfs_single(src, "flush", OP_FSYNC, 0, error);
}

static bool
nfs_truncate_(VsSource *src, uint64_t size, GError **error)
{
    NfsSource *ns = src->priv;

    if (!nfs_single(src, "truncate", OP_TRUNCATE, size, error))
        return false;
    ns->size = size;
    return true;
}

static void
nfs_close_(VsSource *src)
{
    NfsSource *ns = src->priv;

    if (!ns)
        return;
    nfs_disconnect(ns);
    vs_net_conn_clear(&ns->conn);
    g_free(ns->url);
    g_free(ns);
    src->priv = NULL;
}

static bool
url_is_v4(const char *url)
{
    const char *query = strchr(url, '?');

    return query && strstr(query, "version=4");
}

static VsSource *
nfs_open_full(const char *url, const char *description, bool writable, uint64_t size,
              GError **error)
{
    NfsSource *ns = g_new0(NfsSource, 1);
    g_autoptr(VsSource) src = vs_source_new(&nfs_ops, description, ns);

    src->writable = writable;
    ns->url = g_strdup(url);
    ns->writable = writable;
    ns->v4 = url_is_v4(url);
    vs_net_conn_init(&ns->conn, &nfs_net_ops, ns, "nfs", src->description);
    if (!nfs_connect_ctx(ns, error))
        return NULL;
    if (size == UINT64_MAX) {
        struct nfs_stat_64 st;
        int ret = nfs_fstat64(ns->nfs, ns->fh, &st);
        if (ret < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "nfs: open: %s: stat: %s", description,
                        nfs_get_error(ns->nfs));
            return NULL;
        }
        size = st.nfs_size;
    }
    ns->size = size;
    return g_steal_pointer(&src);
}

static VsSource *
nfs_clone_(VsSource *src, GError **error)
{
    NfsSource *ns = src->priv;

    return nfs_open_full(ns->url, src->description, ns->writable, ns->size, error);
}

static const VsSourceOps nfs_ops = {
    .name = "nfs",
    .size = nfs_size,
    .pread = nfs_pread_,
    .clone = nfs_clone_,
    .close = nfs_close_,
    /* One reader thread already keeps 8 requests in flight; a second thread
     * (own connection) adds a core for the memcpy out of libnfs's buffers. */
    .preferred_readers = 2,
    .pwrite = nfs_pwrite_,
    .flush = nfs_flush_,
    .truncate = nfs_truncate_,
};

VsSource *
vs_source_open_nfs(const char *url, bool writable, GError **error)
{
    g_autofree char *description = vs_url_strip_credentials(url);

    /* libnfs 4.0 fails every NFSv4 WRITE before sending it ("ZDR error:
     * Failed to encode COMPOUND4args", any size, here against ganesha 4.3):
     * say so at open rather than at the first write. */
    if (writable && url_is_v4(url)) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "nfs: open: %s: writing over NFSv4 does not work with libnfs 4.0; use NFSv3 "
                    "(no version=4) to write", description);
        return NULL;
    }

    return nfs_open_full(url, description, writable, UINT64_MAX, error);
}
