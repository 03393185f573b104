/* What the source backends share and nothing outside block/ needs: building a
 * VsSource around a backend's private state. */
#pragma once

#include "vs-source.h"
#include "vs-repo.h"      /* vs_buffer_is_zero */

#include <sys/uio.h>

G_BEGIN_DECLS

/* Takes ownership of PRIV (released by OPS->close); DESCRIPTION is copied. */
VsSource *vs_source_new(const VsSourceOps *ops, const char *description, void *priv);
/* Appends one extent to OUT (a GArray of VsExtent) unless LENGTH is 0. */
void vs_extent_add(GArray *out, uint64_t offset, uint64_t length, bool zero);
/* Writes LEN zero bytes through ops->pwrite, for backends that cannot punch. */
bool vs_source_write_zeros(VsSource *src, size_t len, uint64_t offset, GError **error);

/* Reconnecting network sources: how long one source keeps trying to get a
 * dropped connection back before it gives up with an error, in seconds
 * (VIRTSNAP_NET_RECONNECT_SECS, default 30), and the timeout of one request
 * (VIRTSNAP_NET_TIMEOUT_SECS, default 30). */
unsigned vs_net_reconnect_secs(void);
unsigned vs_net_timeout_secs(void);
/* Sleeps before reconnect attempt ATTEMPT (0, 1, ...): 100 ms doubling up to
 * 2 s. False when that would end after DEADLINE (monotonic µs): give up. */
bool vs_net_backoff(unsigned attempt, gint64 deadline);
/* Whether the connection on socket FD (-1: none) is down: it never came up
 * (refused, unreachable, still connecting) or the peer closed or reset it.
 * The sources tell "cannot connect" by this, not by their library's words. */
bool vs_net_socket_down(int fd);
/* URL without "user[%password]@" (for descriptions and messages). */
char *vs_url_strip_credentials(const char *url);

G_END_DECLS

/* The request loop of the network sources (source-net.c). A blocking call
 * (pread, pwrite, flush, ...) becomes an array of pieces; the loop keeps up to
 * max_inflight of them issued on the backend's asynchronous context, polls its
 * socket (which_events/service, as QEMU's block/nfs.c and block/iscsi.c do),
 * and when the connection drops or stops answering for the timeout, has the
 * backend connect afresh (bounded in time, with backoff) and re-issues the
 * pieces that had not completed. Pieces must therefore be idempotent (reads,
 * writes of the same bytes, flushes). */
typedef struct _VsNetConn VsNetConn;

typedef struct {
    int op;                /* the backend's: read, write, ... */
    char *buf;
    uint64_t offset;
    size_t len;
    void *opaque;          /* the backend's, e.g. where a result goes */
    /* {buf, len} as vs_net_run_range cut it: libiscsi keeps a pointer to
     * its iovec (same layout, scsi_iovec) until the task ends. */
    struct iovec iov;
    /* the loop's */
    VsNetConn *conn;
    unsigned gen;
    int state;
} VsNetPiece;

typedef struct {
    /* Queues P on the current context; false: the context is unusable (the
     * loop reconnects), with *error saying why. */
    bool (*issue)(void *be, VsNetPiece *p, GError **error);
    int (*fd)(void *be);
    int (*which_events)(void *be);
    /* < 0: the connection is gone; *error says why. */
    int (*service)(void *be, int revents, GError **error);
    /* Tears the context down (callbacks of pieces still in flight may run:
     * they are ignored). */
    void (*disconnect)(void *be);
    /* A fresh context, logged in / mounted / opened: the state of the source
     * as after open. */
    bool (*connect)(void *be, GError **error);
} VsNetOps;

struct _VsNetConn {
    const VsNetOps *ops;
    void *be;
    const char *proto;         /* "nfs", "iscsi": message prefixes */
    const char *description;
    unsigned gen;              /* bumped by each reconnect: stale callbacks are ignored */
    bool broken;               /* reconnect before the next piece */
    unsigned reconnects;       /* for tests and statistics */
    char *failure;             /* the first final error of a piece in this run */
    int failure_code;          /* its VsError code */
    bool progress;             /* a piece completed since the last look */
};

void vs_net_conn_init(VsNetConn *conn, const VsNetOps *ops, void *be, const char *proto,
                      const char *description);
/* Runs N pieces to completion or to the first error (named after OP). */
bool vs_net_run(VsNetConn *conn, const char *op, VsNetPiece *pieces, unsigned n,
                unsigned max_inflight, GError **error);
/* Cuts [offset, offset+len) of BUF into pieces of at most PIECE bytes of
 * operation OP and runs them. */
bool vs_net_run_range(VsNetConn *conn, const char *opname, int op, char *buf, size_t len,
                      uint64_t offset, size_t piece, unsigned max_inflight, GError **error);
/* From the backend's completion callbacks. LEN < the piece's: the rest is
 * issued again (0: "unexpected end"). */
void vs_net_piece_done(VsNetPiece *p, size_t len);
/* LOST: the connection failed under the piece (it is re-issued after a
 * reconnect); otherwise a final error of the piece, MESSAGE the server's. */
void vs_net_piece_failed(VsNetPiece *p, bool lost, int code, const char *message);
void vs_net_conn_clear(VsNetConn *conn);
