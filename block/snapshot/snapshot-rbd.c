/* The rbd provider: Ceph RBD snapshots through librbd, one cluster connection
 * per operation (the driver calls a handful per backup; a connection is tens
 * of milliseconds). Clones are copy-on-write children of a protected
 * snapshot; diff is rbd_diff_iterate2, which asks the OSDs' object maps, so an
 * incremental copy reads only what changed. Bounded: a stopped cluster is an
 * error after VIRTSNAP_NET_TIMEOUT_SECS (the network sources' bound), not a hang. */
#include <errno.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <string.h>
#include "snapshot-internal.h"
#include "source-internal.h"


typedef struct {
    rados_t cluster;
    rados_ioctx_t io;
    rbd_image_t image;
    bool have_cluster, have_io, have_image;
} RbdConn;

static void
rbd_conn_close(RbdConn *c)
{
    if (c->have_image)
        rbd_close(c->image);
    if (c->have_io)
        rados_ioctx_destroy(c->io);
    if (c->have_cluster)
        rados_shutdown(c->cluster);
    memset(c, 0, sizeof *c);
}

static void
rbd_error(GError **error, const VsSnapLocation *loc, const char *op, const char *snap, int ret, const char *fix)
{
    int err = ret < 0 ? -ret : ret;

    g_set_error(error, VS_ERROR, err == ETIMEDOUT ? VS_ERROR_TIMEOUT : snap_errno_code(err),
                "snapshot: %s: %s: rbd %s/%s%s%s: %s%s%s", loc->disk, op, loc->rbd_pool, loc->rbd_image,
                snap ? "@" : "", snap ? snap : "", g_strerror(err), fix ? ": " : "", fix ? fix : "");
}

/* Connects to LOC's cluster and opens its image, READ_ONLY (no watch on an
 * image a guest uses, for what only looks) or at snapshot SNAP (then always
 * read-only). */
static bool
rbd_conn_open(const VsSnapLocation *loc, const char *op, const char *snap, bool read_only, RbdConn *c,
              GError **error)
{
    /* A silent cluster is an error after the network sources' bound. */
    g_autofree char *secs = g_strdup_printf("%u", vs_net_timeout_secs());
    const char *const conf[][2] = {
        {"client_mount_timeout", secs}, {"rados_mon_op_timeout", secs}, {"rados_osd_op_timeout", secs},
        {"log_to_stderr", "false"}, {"err_to_stderr", "false"},
    };
    g_autofree char *client = g_strdup_printf("client.%s", loc->rbd_user ? loc->rbd_user : "admin");
    const char *fix = NULL;
    int ret;

    memset(c, 0, sizeof *c);
    if (loc->kind != VS_SNAP_LOC_RBD) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "snapshot: %s: %s: a %s disk is not an rbd image",
                    loc->disk, op, vs_snap_loc_kind_name(loc->kind));
        return false;
    }
    /* The names go into an rbd: string QEMU parses: nothing it would split on. */
    if (!vs_snap_name_check("rbd pool", loc->rbd_pool, error) ||
        !vs_snap_name_check("rbd image", loc->rbd_image, error) ||
        (loc->rbd_user && !vs_snap_name_check("rbd user", loc->rbd_user, error))) {
        vs_error_prefix(error, "%s: %s", loc->disk, op);
        return false;
    }
    if ((ret = rados_create2(&c->cluster, "ceph", client, 0)) == 0) {
        c->have_cluster = true;
        if ((ret = rados_conf_read_file(c->cluster, loc->rbd_conf)) < 0)
            fix = "the Ceph configuration file cannot be read";
        for (size_t i = 0; ret == 0 && i < G_N_ELEMENTS(conf); i++)
            ret = rados_conf_set(c->cluster, conf[i][0], conf[i][1]);
    }
    if (ret == 0 && (ret = rados_connect(c->cluster)) < 0)
        fix = "the cluster did not answer or refused the key: check its monitors and the client's keyring";
    if (ret == 0 && (ret = rados_ioctx_create(c->cluster, loc->rbd_pool, &c->io)) == 0)
        c->have_io = true;
    if (ret == 0 && (ret = snap || read_only ? rbd_open_read_only(c->io, loc->rbd_image, &c->image, snap)
                                             : rbd_open(c->io, loc->rbd_image, &c->image, NULL)) == 0)
        c->have_image = true;
    if (ret == 0)
        return true;
    rbd_error(error, loc, op, snap, ret, fix);
    rbd_conn_close(c);
    return false;
}

static char *
srbd_create(VsSnapProvider *p, const VsSnapLocation *loc, const char *label, GError **error)
{
    RbdConn c;
    int ret;

    if (!rbd_conn_open(loc, "create", NULL, false, &c, error))
        return NULL;
    if ((ret = rbd_snap_create(c.image, label)) < 0)
        rbd_error(error, loc, "create", label, ret, ret == -EEXIST ? "pick another label" : NULL);
    rbd_conn_close(&c);
    return ret < 0 ? NULL : g_strdup(label);
}

static bool
srbd_delete(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error)
{
    RbdConn c;
    int prot = 0, ret;

    if (!rbd_conn_open(loc, "delete", NULL, false, &c, error))
        return false;
    ret = rbd_snap_is_protected(c.image, handle, &prot);
    if (ret == 0 && prot && (ret = rbd_snap_unprotect(c.image, handle)) == -EBUSY) {
        rbd_error(error, loc, "delete", handle, ret, "clones of it exist (`rbd children`): flatten or remove them");
        rbd_conn_close(&c);
        return false;
    }
    if (ret == 0)
        ret = rbd_snap_remove(c.image, handle);
    if (ret < 0)
        rbd_error(error, loc, "delete", handle, ret, NULL);
    rbd_conn_close(&c);
    return ret == 0;
}

static bool
srbd_rollback(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error)
{
    RbdConn c;
    int ret;

    if (!rbd_conn_open(loc, "rollback", NULL, false, &c, error))
        return false;
    if ((ret = rbd_snap_rollback(c.image, handle)) < 0)
        rbd_error(error, loc, "rollback", handle, ret,
                  ret == -EBUSY || ret == -EROFS ? "the image is in use: shut the domain off first" : NULL);
    rbd_conn_close(&c);
    return ret == 0;
}

static char *
srbd_clone_snap(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, const char *name, GError **error)
{
    RbdConn c;
    int prot = 0, order = 0, ret;
    uint64_t features = 0;

    if (!rbd_conn_open(loc, "clone", NULL, false, &c, error))
        return NULL;
    ret = rbd_snap_is_protected(c.image, handle, &prot);
    if (ret == 0 && !prot)
        ret = rbd_snap_protect(c.image, handle);
    if (ret == 0)
        ret = rbd_get_features(c.image, &features);
    if (ret == 0)
        ret = rbd_clone(c.io, loc->rbd_image, handle, c.io, name, features, &order);
    if (ret < 0)
        rbd_error(error, loc, "clone", handle, ret, ret == -EEXIST ? "an image of the clone's name exists" : NULL);
    rbd_conn_close(&c);
    return ret < 0 ? NULL : g_strdup_printf("rbd:%s/%s", loc->rbd_pool, name);
}

/* VALUE with QEMU's rbd: option separators (':' and '\') escaped. */
static char *
qemu_rbd_escape(const char *value)
{
    GString *s = g_string_new(NULL);

    for (const char *c = value; *c; c++) {
        if (*c == ':' || *c == '\\')
            g_string_append_c(s, '\\');
        g_string_append_c(s, *c);
    }
    return g_string_free(s, FALSE);
}

static bool
rbd_snap_present(const VsSnapLocation *loc, const char *op, const char *handle, bool *exists, GError **error)
{
    RbdConn c;
    int ret;

    if (!rbd_conn_open(loc, op, NULL, true, &c, error))
        return false;
    if ((ret = rbd_snap_exists(c.image, handle, exists)) < 0)
        rbd_error(error, loc, op, handle, ret, NULL);
    rbd_conn_close(&c);
    return ret == 0;
}

static char *
srbd_expose(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *image_only, GError **error)
{
    g_autofree char *conf = loc->rbd_conf ? qemu_rbd_escape(loc->rbd_conf) : NULL;
    bool exists = false;

    if (!rbd_snap_present(loc, "expose", handle, &exists, error))
        return NULL;
    if (!exists) {
        rbd_error(error, loc, "expose", handle, -ENOENT, NULL);
        return NULL;
    }
    *image_only = true;
    return g_strdup_printf("rbd:%s/%s@%s%s%s%s%s", loc->rbd_pool, loc->rbd_image, handle,
                           loc->rbd_user ? ":id=" : "", loc->rbd_user ? loc->rbd_user : "", conf ? ":conf=" : "",
                           conf ? conf : "");
}

static bool
srbd_exists(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *exists, GError **error)
{
    return rbd_snap_present(loc, "exists", handle, exists, error);
}

static int
diff_cb(uint64_t offset, size_t len, int exists, void *arg)
{
    VsExtent e = {.offset = offset, .length = len, .zero = !exists};

    g_array_append_val((GArray *)arg, e);
    return 0;
}

static gint
extent_cmp(gconstpointer a, gconstpointer b)
{
    const VsExtent *x = a, *y = b;

    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static bool
srbd_diff(VsSnapProvider *p, const VsSnapLocation *loc, const char *from, const char *to, GArray *out,
         GError **error)
{
    g_autoptr(GArray) found = g_array_new(FALSE, FALSE, sizeof(VsExtent));
    uint64_t size = 0;
    RbdConn c;
    int ret;

    if (!rbd_conn_open(loc, "diff", to, true, &c, error))
        return false;
    ret = rbd_get_size(c.image, &size);
    if (ret == 0)
        ret = rbd_diff_iterate2(c.image, from, 0, size, 1, 0, diff_cb, found);
    if (ret < 0)
        rbd_error(error, loc, "diff", from ? from : to, ret, NULL);
    rbd_conn_close(&c);
    if (ret < 0)
        return false;
    g_array_sort(found, extent_cmp);
    g_array_append_vals(out, found->data, found->len);
    return true;
}

static const VsSnapOps rbd_ops = {
    .name = "rbd",
    .create = srbd_create,
    .delete = srbd_delete,
    .rollback = srbd_rollback,
    .clone = srbd_clone_snap,
    .expose = srbd_expose,
    .diff = srbd_diff,
    .exists = srbd_exists,
};

VsSnapProvider *
vs_snap_rbd_new(GError **error)
{
    VsSnapProvider *p = g_new0(VsSnapProvider, 1);

    p->ops = &rbd_ops;
    return p;
}

bool
snap_rbd_built(void)
{
    return true;
}
