/* Discovery's answer to "which storage snapshot provider would a backup use
 * for this disk" (issue 15): the disk's location as discovery found it (file
 * path, pool and volume, NFS server/export/path, iSCSI portal/IQN/LUN, WWID,
 * RBD pool/image) and what the snapshot configuration says for its pool (a
 * hook, provider=none or a provider named, the snapshot directory) handed to
 * the block layer's side-effect-free vs_snap_which, so that `discover` creates
 * no snapshot directory and runs nothing. Where a hook would be the way and
 * none is configured, the reason says where to name one. Without a configured
 * snapshot-dir the reflink directory is the disk's own (on the disk's file
 * system by construction), as a backup takes it. */
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

/* The provider CONFIG's explicit WANT (reflink, btrfs, rbd) for a disk where
 * auto would use GOT: the same, reflink where btrfs would do (reflink works
 * on any btrfs), else none with the reason. */
static const char *
explicit_provider(const char *want, const char *got, const char *file, char **reason)
{
    if (!strcmp(want, got) || (!strcmp(want, "reflink") && !strcmp(got, "btrfs")))
        return !strcmp(want, "reflink") ? "reflink" : got;
    *reason = g_strdup_printf("no provider: the snapshot configuration (%s) asks for %s for its pool, which "
                              "cannot snapshot this disk (%s could)", file, want, got);
    return NULL;
}

void
vs_discover_snapshot_provider(VsDiscoveredDisk *d, const char *domain, const VsSnapConfig *config)
{
    g_autofree char *name = g_strdup_printf("%s/%s", domain ? domain : "?", d->target ? d->target : "?");
    g_autofree char *why = NULL;
    g_autofree char *base = NULL;
    const char *file = vs_snap_config_file(config);
    const char *got;
    bool needs_hook = false;
    VsSnapSettings s;
    VsSnapLocation loc;

    d->snapshot_provider = NULL;
    g_clear_pointer(&d->snapshot_reason, g_free);
    if (!vs_discover_snap_location(d, name, &loc, &d->snapshot_reason))
        return;
    vs_snap_config_for(config, &loc, &s);
    if (!strcmp(s.provider, "none")) {
        d->snapshot_reason = g_strdup_printf("no provider: the snapshot configuration (%s) says provider=none "
                                             "for %s%s", file, loc.pool ? "its pool " : "its disks",
                                             loc.pool ? loc.pool : "");
        return;
    }
    /* The configured directory, else the disk's own (on its file system by
     * construction), as a backup would take it. */
    if (loc.kind == VS_SNAP_LOC_FILE && loc.path)
        base = s.snapshot_dir ? g_strdup(s.snapshot_dir) : g_path_get_dirname(loc.path);
    /* A hook counts where auto or hook is asked for: an explicit provider
     * overrides it. */
    got = vs_snap_which(&loc, strcmp(s.provider, "auto") && strcmp(s.provider, "hook") ? NULL : s.hook, base,
                        &why, &needs_hook);
    if (got && strcmp(s.provider, "auto") != 0) {
        d->snapshot_provider = explicit_provider(s.provider, got, file, &d->snapshot_reason);
        return;
    }
    if ((d->snapshot_provider = got))
        return;
    if (strcmp(s.provider, "auto") && strcmp(s.provider, "hook"))
        d->snapshot_reason = g_strdup_printf("no provider: the snapshot configuration (%s) asks for %s for its "
                                             "pool: %s", file, s.provider, why);
    else
        d->snapshot_reason = needs_hook
        ? g_strdup_printf("no provider: %s: that needs a hook (name one in %s: [%s%s] hook=/path/to/hook)", why,
                          file, loc.pool ? "pool:" : "defaults", loc.pool ? loc.pool : "")
        : g_strdup_printf("no provider: %s", why);
}

bool
vs_discover_locate(VsDiscoveredDisk *d, const char *domain, const VsSnapConfig *config, GError **error)
{
    g_autofree char *name = g_strdup_printf("%s/%s", domain ? domain : "?", d->target ? d->target : "?");
    g_autofree char *why = NULL;
    g_autoptr(VsSnapProvider) hook = NULL;
    g_autoptr(GError) err = NULL;
    VsSnapSettings s;
    VsSnapLocation loc;

    if (!config || !vs_discover_snap_location(d, name, &loc, &why))
        return true;
    vs_snap_config_for(config, &loc, &s);
    if (!s.hook || (strcmp(s.provider, "auto") && strcmp(s.provider, "hook")))
        return true;
    if (!(hook = vs_snap_hook_new(s.hook, &err)) ||
        !vs_snap_locate(hook, &loc, &d->controller, &d->controller_volume, &err)) {
        if (g_error_matches(err, VS_ERROR, VS_ERROR_UNSUPPORTED))
            return true;
        g_propagate_prefixed_error(error, g_steal_pointer(&err), "discover: domain '%s': disk %s: ",
                                   domain, d->target);
        return false;
    }
    return true;
}
