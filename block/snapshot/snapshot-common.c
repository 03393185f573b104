/* The provider-independent half of storage snapshots: the wrappers that
 * check handles and names (snapshot-names.c: they come back from
 * repositories, hostile until checked) before any provider sees one, opening
 * a snapshot's bytes as a source, and which provider `auto` picks for a disk. */
#include <errno.h>
#include <string.h>
#include "snapshot-internal.h"

int
snap_errno_code(int err)
{
    switch (err) {
    case ENOENT:
        return VS_ERROR_NOT_FOUND;
    case EOPNOTSUPP:
    case EXDEV:
    case ENOTTY:
    case EINVAL:
        return VS_ERROR_UNSUPPORTED;
    default:
        return VS_ERROR_IO;
    }
}

const char *
vs_snap_loc_kind_name(VsSnapLocKind kind)
{
    static const char *const names[] = {"file", "block", "nfs", "iscsi", "rbd"};

    return (unsigned)kind < G_N_ELEMENTS(names) ? names[kind] : "unknown";
}


void
vs_snap_provider_free(VsSnapProvider *p)
{
    if (p && p->ops->free)
        p->ops->free(p);
    g_free(p);
}

const char *
vs_snap_provider_name(const VsSnapProvider *p)
{
    return p->ops->name;
}

char *
vs_snap_create(VsSnapProvider *p, const VsSnapLocation *loc, const char *label, GError **error)
{
    g_autofree char *handle = NULL;

    if (!vs_snap_name_check("label", label, error))
        return NULL;
    handle = p->ops->create(p, loc, label, error);
    /* A provider's own handle obeys the rule too: it is what comes back. */
    if (handle && !vs_snap_handle_check(handle, error)) {
        vs_error_prefix(error, "snapshot: %s: %s made", loc->disk, p->ops->name);
        return NULL;
    }
    return g_steal_pointer(&handle);
}

bool
vs_snap_delete(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error)
{
    return vs_snap_handle_check(handle, error) && p->ops->delete(p, loc, handle, error);
}

bool
vs_snap_rollback(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error)
{
    return vs_snap_handle_check(handle, error) && p->ops->rollback(p, loc, handle, error);
}

char *
vs_snap_clone(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, const char *name,
              GError **error)
{
    if (!vs_snap_handle_check(handle, error) || !vs_snap_name_check("clone name", name, error))
        return NULL;
    return p->ops->clone(p, loc, handle, name, error);
}

char *
vs_snap_expose(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *image_only,
               GError **error)
{
    bool only = false;
    char *where;

    if (!vs_snap_handle_check(handle, error))
        return NULL;
    where = p->ops->expose(p, loc, handle, &only, error);
    if (image_only)
        *image_only = only;
    return where;
}

bool
vs_snap_has_diff(const VsSnapProvider *p)
{
    return p->ops->diff != NULL;
}

bool
vs_snap_diff(VsSnapProvider *p, const VsSnapLocation *loc, const char *from, const char *to, GArray *out,
             GError **error)
{
    if (!p->ops->diff) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "snapshot: %s: the %s provider cannot say what changed between snapshots: "
                    "read the whole snapshot", loc->disk, p->ops->name);
        return false;
    }
    if ((from && !vs_snap_handle_check(from, error)) || !vs_snap_handle_check(to, error))
        return false;
    return p->ops->diff(p, loc, from, to, out, error);
}

bool
vs_snap_exists(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *exists,
               GError **error)
{
    *exists = false;
    return vs_snap_handle_check(handle, error) && p->ops->exists(p, loc, handle, exists, error);
}

bool
vs_snap_locate(VsSnapProvider *p, const VsSnapLocation *loc, char **controller, char **volume, GError **error)
{
    *controller = *volume = NULL;
    if (!p->ops->locate) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "snapshot: %s: the %s provider cannot name the storage controller and volume", loc->disk,
                    p->ops->name);
        return false;
    }
    return p->ops->locate(p, loc, controller, volume, error);
}

VsSource *
vs_snap_open(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, const char *format,
             GError **error)
{
    bool image_only = false;
    g_autofree char *where = vs_snap_expose(p, loc, handle, &image_only, error);
    g_autoptr(GError) err = NULL;
    VsSource *src;

    if (!where)
        return NULL;
    if (!format || !strcmp(format, "raw"))
        return image_only ? vs_source_open_image(where, "raw", error)
                          : vs_source_open_url(where, NULL, false, error);
    /* A qcow2 (chain) in the snapshot: read through its map where it can be,
     * else by QEMU. */
    if (!image_only && (src = vs_source_open_mapped(where, format, &err)))
        return src;
    if (err && !g_error_matches(err, VS_ERROR, VS_ERROR_UNSUPPORTED)) {
        g_propagate_error(error, g_steal_pointer(&err));
        return NULL;
    }
    return vs_source_open_image(where, format, error);
}

VsSnapProvider *
vs_snap_choose(const VsSnapLocation *loc, const VsSnapHookConfig *hook, const char *reflink_base,
               GError **error)
{
    if (hook && hook->path)
        return vs_snap_hook_new(hook, error);
    if (loc->kind == VS_SNAP_LOC_RBD)
        return vs_snap_rbd_new(error);
    if (loc->kind == VS_SNAP_LOC_FILE && reflink_base && loc->path && snap_btrfs_is_subvolume_dir(loc->path))
        return vs_snap_btrfs_new(reflink_base, error);
    if (loc->kind == VS_SNAP_LOC_FILE && reflink_base)
        return vs_snap_reflink_new(reflink_base, error);
    g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                "snapshot: %s: no provider for a %s disk%s: name a hook for its pool%s", loc->disk,
                vs_snap_loc_kind_name(loc->kind),
                loc->kind == VS_SNAP_LOC_FILE ? " without a reflink snapshot directory" : "",
                loc->kind == VS_SNAP_LOC_FILE ? ", or a directory on its XFS/btrfs file system for reflink" : "");
    return NULL;
}
