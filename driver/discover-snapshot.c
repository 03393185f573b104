/* Discovery's answer to "which storage snapshot provider would `auto` use for
 * this disk" (issue 15): the disk's location as discovery found it (file path,
 * pool and volume, NFS server/export/path, iSCSI portal/IQN/LUN, WWID, RBD
 * pool/image) handed to the block layer's side-effect-free vs_snap_which, so
 * that `discover` creates no snapshot directory and runs nothing. No hook can
 * be configured yet, so where a hook would be the way the reason says so. The
 * reflink snapshot directory is taken to be the disk's own directory (on the
 * disk's file system by construction) until an option names another. */
#include "config.h"
#include "driver-internal.h"
#include "vs-snapshot.h"

#include <string.h>

/* The kind of storage D lives on, as the block layer counts them; false for a
 * disk no provider could map (a network disk or a pool volume reached by a
 * protocol other than NFS, iSCSI, RBD: gluster, nbd, http, ...). */
static bool
location_kind(const VsDiscoveredDisk *d, VsSnapLocKind *kind)
{
    if (d->rbd_pool || g_strcmp0(d->pool_type, "rbd") == 0)
        *kind = VS_SNAP_LOC_RBD;
    else if (d->nfs_server)
        *kind = VS_SNAP_LOC_NFS;
    else if (d->iscsi_iqn)
        /* a kernel iscsi pool's LUN is a local block device; iscsi-direct and
         * protocol='iscsi' are reached by QEMU itself */
        *kind = g_strcmp0(d->pool_type, "iscsi") == 0 ? VS_SNAP_LOC_BLOCK : VS_SNAP_LOC_ISCSI;
    else if (d->block_device || (d->path && g_str_has_prefix(d->path, "/dev/")))
        /* /dev/...: also a volume of a pool whose volumes are devices (zfs) */
        *kind = VS_SNAP_LOC_BLOCK;
    else if (g_strcmp0(d->type, "network") == 0 || (d->path && strstr(d->path, "://")))
        return false;
    else
        *kind = VS_SNAP_LOC_FILE;
    return true;
}

bool
vs_discover_snap_location(const VsDiscoveredDisk *d, const char *name, VsSnapLocation *loc, char **why)
{
    const char *local = d->path && !strstr(d->path, "://") ? d->path : NULL;

    *loc = (VsSnapLocation){
        .disk = name,
        .path = d->block_device ? d->block_device : local,
        .pool = d->pool,
        .volume = d->volume,
        .nfs_server = d->nfs_server,
        .nfs_export = d->nfs_export,
        .nfs_path = d->nfs_path,
        .iscsi_portal = d->iscsi_portal,
        .iscsi_iqn = d->iscsi_iqn,
        .iscsi_lun = d->iscsi_lun,
        .wwid = d->wwid,
        .rbd_pool = d->rbd_pool,
        .rbd_image = d->rbd_image,
        .rbd_user = d->rbd_user,
    };
    if (d->skipped) {
        *why = g_strdup_printf("no provider: the disk is not backed up: %s", d->skipped);
        return false;
    }
    if (d->error) {
        *why = g_strdup("no provider: discovery could not resolve where the disk lives (see its error)");
        return false;
    }
    if (!location_kind(d, &loc->kind)) {
        *why = g_strdup_printf("no provider: a network disk that is not NFS, iSCSI or RBD (%s)",
                               d->path ? d->path : "?");
        return false;
    }
    /* An iscsi-direct volume's "path" is libvirt's name for it, not a file. */
    if (loc->path && loc->path[0] != '/')
        loc->path = NULL;
    return true;
}

void
vs_discover_snapshot_provider(VsDiscoveredDisk *d, const char *domain)
{
    g_autofree char *name = g_strdup_printf("%s/%s", domain ? domain : "?", d->target ? d->target : "?");
    g_autofree char *why = NULL;
    g_autofree char *base = NULL;
    bool needs_hook = false;
    VsSnapLocation loc;

    d->snapshot_provider = NULL;
    g_clear_pointer(&d->snapshot_reason, g_free);
    if (!vs_discover_snap_location(d, name, &loc, &d->snapshot_reason))
        return;
    if (loc.kind == VS_SNAP_LOC_FILE && loc.path)
        base = g_path_get_dirname(loc.path);
    d->snapshot_provider = vs_snap_which(&loc, NULL, base, &why, &needs_hook);
    if (!d->snapshot_provider)
        d->snapshot_reason = needs_hook
            ? g_strdup_printf("no provider: %s: that needs a hook (hooks are not "
                              "configurable yet)", why)
            : g_strdup_printf("no provider: %s", why);
}
