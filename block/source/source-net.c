/* The request loop shared by the NFS and iSCSI sources: a blocking pread or
 * pwrite is cut into pieces, several of them in flight on the backend's
 * asynchronous context, driven by poll on its one socket. Everything about a
 * dropped connection lives here so that both protocols behave alike: a piece
 * that was cut off, a service error or a silence longer than the timeout makes
 * the loop connect afresh (backoff from 100 ms to 2 s, for at most
 * vs_net_reconnect_secs) and issue again every piece that had not completed;
 * callbacks from the dead context are recognised by their generation and
 * ignored. When the loop returns, no piece is left in flight: the caller's
 * buffers are free to go. */
#include "config.h"
#include "source-internal.h"

#include <errno.h>
#include <poll.h>

enum { PIECE_TODO, PIECE_INFLIGHT, PIECE_DONE, PIECE_LOST, PIECE_FAILED };

/* How often the loop wakes without events: the libraries time requests out
 * from their service calls, and the loop checks for silence. */
#define POLL_MS 100

void
vs_net_conn_init(VsNetConn *conn, const VsNetOps *ops, void *be, const char *proto,
                 const char *description)
{
    *conn = (VsNetConn){ .ops = ops, .be = be, .proto = proto, .description = description };
}

void
vs_net_conn_clear(VsNetConn *conn)
{
    g_clear_pointer(&conn->failure, g_free);
}

static bool
stale(VsNetPiece *p)
{
    return p->gen != p->conn->gen || p->state != PIECE_INFLIGHT;
}

void
vs_net_piece_done(VsNetPiece *p, size_t len)
{
    if (stale(p))
        return;
    p->conn->progress = true;
    if (len >= p->len) {
        p->state = PIECE_DONE;
        return;
    }
    if (len == 0) {
        vs_net_piece_failed(p, false, VS_ERROR_IO, "unexpected end of file (it shrank?)");
        return;
    }
    p->buf += len;
    p->offset += len;
    p->len -= len;
    p->state = PIECE_TODO;
}

void
vs_net_piece_failed(VsNetPiece *p, bool lost, int code, const char *message)
{
    VsNetConn *conn = p->conn;

    if (stale(p))
        return;
    conn->progress = true;
    if (lost) {
        p->state = PIECE_LOST;
        return;
    }
    p->state = PIECE_FAILED;
    if (!conn->failure) {
        conn->failure = g_strdup_printf("at offset %" G_GUINT64_FORMAT ": %s", p->offset,
                                        message ? message : "failed");
        conn->failure_code = code;
    }
}

/* Drops the context (and with it every piece in flight) and makes the pieces
 * that had not completed issuable again. */
static void
drop(VsNetConn *conn, VsNetPiece *pieces, unsigned n)
{
    conn->gen++;
    conn->broken = true;       /* before disconnect: nothing is to be waited for */
    conn->ops->disconnect(conn->be);
    for (unsigned i = 0; i < n; i++)
        if (pieces[i].state == PIECE_INFLIGHT || pieces[i].state == PIECE_LOST)
            pieces[i].state = PIECE_TODO;
}

/* Until DEADLINE: it is set when the connection first fails and cleared only
 * by progress, so a server that accepts connections but fails every request
 * cannot keep the loop reconnecting for ever. */
static bool
reconnect(VsNetConn *conn, const char *op, const char *cause, gint64 deadline, GError **error)
{
    unsigned secs = vs_net_reconnect_secs();
    g_autoptr(GError) last = NULL;

    for (unsigned attempt = 0;; attempt++) {
        g_clear_error(&last);
        if (conn->ops->connect(conn->be, &last)) {
            conn->broken = false;
            conn->reconnects++;
            g_debug("%s: %s: %s: reconnected after %u attempts (%s)", conn->proto, op,
                    conn->description, attempt + 1, cause);
            return true;
        }
        conn->gen++;
        conn->ops->disconnect(conn->be);
        if (!vs_net_backoff(attempt, deadline))
            break;
    }
    g_set_error(error, VS_ERROR, VS_ERROR_IO,
                "%s: %s: %s: connection lost (%s) and not re-established within %u s: %s",
                conn->proto, op, conn->description, cause ? cause : "no cause known", secs,
                last ? last->message : "no attempt");
    return false;
}

bool
vs_net_run(VsNetConn *conn, const char *op, VsNetPiece *pieces, unsigned n, unsigned max_inflight,
           GError **error)
{
    gint64 timeout = (gint64)vs_net_timeout_secs() * G_USEC_PER_SEC;
    gint64 last_progress = g_get_monotonic_time(), deadline = 0;
    g_autofree char *cause = g_strdup(conn->broken ? "a previous request failed" : NULL);

    vs_net_conn_clear(conn);
    for (unsigned i = 0; i < n; i++) {
        pieces[i].conn = conn;
        pieces[i].state = PIECE_TODO;
    }
    for (;;) {
        unsigned inflight = 0, done = 0;
        bool lost = false;
        g_autoptr(GError) err = NULL;

        if (conn->broken) {
            if (!deadline)
                deadline = g_get_monotonic_time() +
                           (gint64)vs_net_reconnect_secs() * G_USEC_PER_SEC;
            if (!reconnect(conn, op, cause, deadline, error))
                return false;
            last_progress = g_get_monotonic_time();
        }
        for (unsigned i = 0; i < n; i++) {
            VsNetPiece *p = &pieces[i];
            if (p->state == PIECE_INFLIGHT)
                inflight++;
        }
        for (unsigned i = 0; i < n && inflight < max_inflight && !lost; i++) {
            VsNetPiece *p = &pieces[i];
            if (p->state != PIECE_TODO)
                continue;
            p->gen = conn->gen;
            p->state = PIECE_INFLIGHT;
            if (!conn->ops->issue(conn->be, p, &err)) {
                p->state = PIECE_TODO;
                /* With requests in flight this is back-pressure (libnfs's
                 * NFSv4 encoder runs out of room): issue again when some
                 * have completed. With none, the context is unusable. */
                if (inflight)
                    g_clear_error(&err);
                else
                    lost = true;
                break;
            }
            inflight++;
        }
        inflight = 0;
        for (unsigned i = 0; i < n; i++) {
            switch (pieces[i].state) {
            case PIECE_DONE: done++; break;
            case PIECE_INFLIGHT: inflight++; break;
            case PIECE_LOST: lost = true; break;
            default: break;
            }
        }
        if (conn->failure) {
            /* A final error: nothing may stay in flight on our buffers. */
            if (inflight)
                drop(conn, pieces, n);
            g_set_error(error, VS_ERROR, conn->failure_code, "%s: %s: %s: %s", conn->proto, op,
                        conn->description, conn->failure);
            return false;
        }
        if (done == n)
            return true;
        if (!lost && !err) {
            struct pollfd pfd = { .fd = conn->ops->fd(conn->be),
                                  .events = (short)conn->ops->which_events(conn->be) };
            int r = poll(&pfd, 1, POLL_MS);

            if (r < 0 && errno != EINTR) {
                int e = errno;
                g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s: %s: poll: %s", conn->proto, op,
                            conn->description, g_strerror(e));
                drop(conn, pieces, n);
                return false;
            }
            conn->progress = false;
            if (conn->ops->service(conn->be, r > 0 ? pfd.revents : 0, &err) < 0)
                lost = true;
            else if (conn->progress) {
                last_progress = g_get_monotonic_time();
                deadline = 0;
            }
            else if (g_get_monotonic_time() - last_progress > timeout) {
                lost = true;
                g_set_error(&err, VS_ERROR, VS_ERROR_TIMEOUT, "no answer for %u s",
                            vs_net_timeout_secs());
            }
        }
        if (lost || err) {
            g_free(cause);
            cause = g_strdup(err ? err->message : "a request was cut off");
            drop(conn, pieces, n);
        }
    }
}

bool
vs_net_run_range(VsNetConn *conn, const char *opname, int op, char *buf, size_t len,
                 uint64_t offset, size_t piece, unsigned max_inflight, GError **error)
{
    unsigned n = (unsigned)((len + piece - 1) / piece);
    g_autofree VsNetPiece *pieces = g_new0(VsNetPiece, MAX(n, 1u));

    for (unsigned i = 0; i < n; i++) {
        size_t at = (size_t)i * piece;
        VsNetPiece *p = &pieces[i];

        *p = (VsNetPiece){ .op = op, .buf = buf + at, .offset = offset + at,
                           .len = MIN(piece, len - at) };
        p->iov = (struct iovec){ .iov_base = p->buf, .iov_len = p->len };
    }
    return vs_net_run(conn, opname, pieces, n, max_inflight, error);
}
