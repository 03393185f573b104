/* Asks an NFS server which directories it exports (the MOUNT protocol's EXPORT
 * call through libnfs), so that a disk given only as "/export/dir/d.qcow2" on a
 * server can be split into export and path the way array-snapshot tools expect.
 * Driven asynchronously from one poll loop, as QEMU's block/nfs.c does, because
 * libnfs's synchronous call has no timeout and a dead server must not hang a
 * discovery run. */
#include "config.h"
#include "vs-probe.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>

typedef struct {
    bool done;
    int status;
    char *err;
    GPtrArray *dirs;
} ExportsCall;

static void
exports_cb(struct rpc_context *rpc, int status, void *data, void *opaque)
{
    ExportsCall *call = opaque;

    call->done = true;
    call->status = status;
    if (status != RPC_STATUS_SUCCESS) {
        call->err = g_strdup(data ? (const char *)data : rpc_get_error(rpc));
        return;
    }
    /* libnfs frees the list after we return: copy what we keep. */
    for (exports e = *(exports *)data; e; e = e->ex_next)
        g_ptr_array_add(call->dirs, g_strdup(e->ex_dir));
}

char **
vs_nfs_list_exports(const char *server, int timeout_ms, GError **error)
{
    struct rpc_context *rpc = rpc_init_context();
    ExportsCall call = { .dirs = g_ptr_array_new_with_free_func(g_free) };
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    char **out = NULL;

    if (!rpc) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "nfs exports: cannot create an RPC context");
        goto out;
    }
    if (mount_getexports_async(rpc, server, exports_cb, &call) != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "nfs exports: %s: %s", server, rpc_get_error(rpc));
        goto out;
    }
    while (!call.done) {
        struct pollfd pfd = { .fd = rpc_get_fd(rpc), .events = rpc_which_events(rpc) };
        gint64 left = deadline - g_get_monotonic_time();
        int r;

        if (left <= 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                        "nfs exports: %s did not answer within %d ms: check that its MOUNT service "
                        "and rpcbind are reachable", server, timeout_ms);
            goto out;
        }
        /* Wake at least every 100 ms so that libnfs's own timers run. */
        r = poll(&pfd, 1, (int)MIN(left / 1000 + 1, 100));
        if (r < 0 && errno != EINTR) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "nfs exports: poll: %s", g_strerror(errno));
            goto out;
        }
        if (rpc_service(rpc, r > 0 ? pfd.revents : 0) < 0 && !call.done) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "nfs exports: %s: %s", server, rpc_get_error(rpc));
            goto out;
        }
    }
    if (call.status != RPC_STATUS_SUCCESS) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "nfs exports: %s: %s", server,
                    call.err ? call.err : "request failed");
        goto out;
    }
    g_ptr_array_add(call.dirs, NULL);
    out = (char **)g_ptr_array_free(g_steal_pointer(&call.dirs), FALSE);
out:
    if (rpc)
        rpc_destroy_context(rpc);
    if (call.dirs)
        g_ptr_array_free(call.dirs, TRUE);
    g_free(call.err);
    return out;
}

bool
vs_nfs_split_path(const char *const *exports, const char *server_path,
                  char **export_out, char **path_out)
{
    const char *best = NULL;
    size_t best_len = 0;

    for (size_t i = 0; exports && exports[i]; i++) {
        const char *e = exports[i];
        size_t n = strlen(e);
        while (n > 1 && e[n - 1] == '/')
            n--;
        if (strncmp(server_path, e, n) == 0 &&
            (server_path[n] == '/' || (n == 1 && e[0] == '/')) && n > best_len) {
            best = e;
            best_len = n;
        }
    }
    if (!best)
        return false;
    *export_out = g_strndup(best, best_len);
    *path_out = g_strdup(best_len == 1 ? server_path : server_path + best_len);
    return true;
}
