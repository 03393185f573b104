/* The storage method (`backup --storage-snapshot`, issue 15): the overlay
 * method's point in time (freeze, one atomic snapshot onto overlays, thaw),
 * made safe by the storage itself: right after the thaw each stable base gets
 * a storage snapshot (reflink, btrfs, RBD, an array's hook: block/snapshot/),
 * and the overlays are committed back at once, so that the guest runs on an
 * overlay for the milliseconds the snapshots take instead of for the whole
 * copy. The copy then reads the snapshot (or, with --no-copy, the backup is
 * the snapshots, recorded in the manifest). Each snapshot is journaled before
 * it is made and when it is made and deleted: `virtsnap recover` deletes one a
 * dead run left that no manifest records. A snapshot not kept is deleted once
 * the copy is done; one kept whose backup did not land is deleted too. */
#include "config.h"
#include "backup-internal.h"
#include "vs-block.h"

#include <string.h>

static char *
disk_name(const DomJob *j, const DiskJob *d)
{
    return g_strdup_printf("%s/%s", j->name, d->target);
}

bool
storage_locate(Run *run, DomJob *j, DiskJob *d, const VsDiscoveredDisk *disc)
{
    g_autofree char *name = disk_name(j, d);
    g_autofree char *why = NULL;
    g_autofree char *dir = NULL;
    g_autoptr(GError) err = NULL;
    VsSnapLocation loc;

    if (!vs_discover_snap_location(disc, name, &loc, &why)) {
        dom_fail(j, "snapshot: %s: %s", name, why);
        return false;
    }
    d->snap_provider = vs_snap_config_choose(run->snap_config, &loc, run->opts->storage_snapshot, &dir, &err);
    if (!d->snap_provider) {
        dom_fail_error(j, err);
        return false;
    }
    d->snap = vs_snap_record_from_location(&loc, vs_snap_provider_name(d->snap_provider), dir);
    return true;
}

/* --snapshot-config as recover, from another directory, finds it (NULL: the
 * default). */
static char *
config_file(const Run *run)
{
    return run->opts->snapshot_config ? g_canonicalize_filename(run->opts->snapshot_config, NULL) : NULL;
}

/* D's snapshot, journaled before (recover finds it by its label) and after
 * (with the handle the provider gave it). */
static bool
take_snapshot(Run *run, DomJob *j, DiskJob *d)
{
    g_autofree char *name = disk_name(j, d);
    g_autofree char *label = g_strdup_printf("virtsnap-%s-%s", run->manifest->id, d->target);
    g_autofree char *json = NULL;
    g_autofree char *config = config_file(run);
    g_autoptr(GError) err = NULL;
    char *handle;
    VsSnapLocation loc;

    g_free(d->snap->handle);
    d->snap->handle = g_strdup(label);
    json = vs_manifest_snapshot_to_json(d->snap);
    if (!vs_journal_storage_snapshot(run->journal, j->name, j->uuid, d->target, json, config, &err)) {
        dom_fail_error(j, err);
        return false;
    }
    vs_fault_point("before-storage-snapshot");
    vs_snap_location_from_record(d->snap, name, &loc);
    if (!(handle = vs_snap_create(d->snap_provider, &loc, label, &err))) {
        dom_fail_error(j, err);
        /* Killed at its timeout, a hook may have made it without saying so. */
        if (g_error_matches(err, VS_ERROR, VS_ERROR_TIMEOUT) && !strcmp(d->snap->provider, "hook"))
            add_note(j, "the hook timed out making a snapshot of %s labelled %s: if the array has it, "
                     "delete it there", name, label);
        return false;
    }
    g_free(d->snap->handle);
    d->snap->handle = handle;
    d->snap_made = true;
    g_free(json);
    json = vs_manifest_snapshot_to_json(d->snap);
    /* Not journaled, the snapshot is still this run's to delete (finish). */
    if (!vs_journal_snapshot_made(run->journal, j->name, j->uuid, d->target, json, config, &err))
        dom_fail_error(j, err);
    vs_fault_point("after-storage-snapshot");
    return true;
}

/* --no-copy: the disk's record is the snapshot alone. */
static void
snapshot_only_disk(DiskJob *d)
{
    VsManifestDisk *m = vs_manifest_disk_new(d->target);
    g_autoptr(VsImageInfo) info = d->path ? vs_image_probe(d->path, NULL) : NULL;

    m->format = g_strdup(d->format);
    m->source = g_strdup(d->path ? d->path : d->url);
    g_ptr_array_unref(m->chain);
    m->chain = g_ptr_array_ref(d->chain);
    m->virtual_size = info ? info->virtual_size : d->capacity;
    m->in_repo = false;
    m->snapshot = vs_manifest_snapshot_copy(d->snap);
    d->mdisk = m;
    d->data_path = "snapshot";
    d->snap_kept = true;
}

/* The overlays back into their bases, once: now, or at settle when the
 * snapshots never came. */
static bool
commit_once(Run *run, DomJob *j)
{
    if (!j->settled) {
        j->settle_ok = backup_method_overlay.settle(run, j);
        j->settled = true;
    }
    return j->settle_ok;
}

/* The copy stage begins: every base is stable under its overlay, the guest
 * thawed. Snapshot each, then commit the overlays whatever happened. */
static bool
storage_before_copy(Run *run, DomJob *j)
{
    bool ok = true;

    for (guint k = 0; ok && k < j->disks->len; k++)
        ok = take_snapshot(run, j, j->disks->pdata[k]);
    if (!commit_once(run, j))
        ok = false;
    if (!ok || j->error)
        return false;
    if (run->opts->no_copy)
        for (guint k = 0; k < j->disks->len; k++)
            snapshot_only_disk(j->disks->pdata[k]);
    return true;
}

static VsSource *
storage_open_disk(Run *run, DomJob *j, DiskJob *d, VsCopyOptions *copts, GError **error)
{
    g_autofree char *name = disk_name(j, d);
    VsSnapLocation loc;
    VsSource *src;

    (void)run;
    (void)copts;
    vs_snap_location_from_record(d->snap, name, &loc);
    if ((src = vs_snap_open(d->snap_provider, &loc, d->snap->handle, d->format, error)))
        d->data_path = "snapshot";
    return src;
}

static bool
storage_settle(Run *run, DomJob *j)
{
    bool ok = commit_once(run, j);
    bool copied = !j->error;

    for (guint k = 0; k < j->disks->len; k++)
        copied = copied && ((DiskJob *)j->disks->pdata[k])->mdisk;
    /* --keep-snapshot: recorded beside the data. */
    if (copied && run->opts->keep_snapshot)
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *d = j->disks->pdata[k];
            if (d->snap_made && !d->mdisk->snapshot) {
                d->mdisk->snapshot = vs_manifest_snapshot_copy(d->snap);
                d->snap_kept = true;
            }
        }
    return ok;
}

/* Deletes D's snapshot and journals it; false (J keeps its journal for
 * recover, which tries again) when the storage would not. */
static bool
delete_snapshot(Run *run, DomJob *j, DiskJob *d)
{
    g_autofree char *name = disk_name(j, d);
    g_autoptr(GError) err = NULL;
    VsSnapLocation loc;

    vs_snap_location_from_record(d->snap, name, &loc);
    if (!vs_snap_delete(d->snap_provider, &loc, d->snap->handle, &err) &&
        !g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND)) {
        add_note(j, "%s; `virtsnap recover` deletes it later", err->message);
        return false;
    }
    d->snap_deleted = true;
    d->snap_kept = false;
    g_clear_error(&err);
    if (!vs_journal_snapshot_deleted(run->journal, j->name, j->uuid, d->target, &err)) {
        add_note(j, "%s", err->message);
        return false;
    }
    return true;
}

/* On the teardown thread: the snapshots the backup does not keep. */
static bool
storage_finish(Run *run, DomJob *j)
{
    bool ok = true;

    for (guint k = 0; k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];
        if (d->snap_made && !d->snap_kept && !d->snap_deleted)
            ok = delete_snapshot(run, j, d) && ok;
    }
    return ok;
}

/* Kept snapshots whose backup did not land are nobody's: deleted. The
 * result says per disk what was made and what stays. */
static void
storage_after_manifest(Run *run, DomJob *j, VsBackupResult *result, VsBackupDomainResult *dr)
{
    bool landed = result->id && dr && dr->ok;

    for (guint k = 0; k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];
        VsBackupDiskResult *r = dr && k < dr->disks->len ? dr->disks->pdata[k] : NULL;

        if (d->snap_kept && !landed && !delete_snapshot(run, j, d))
            j->left = true;
        if (!r || !d->snap_made)
            continue;
        r->snapshot_provider = g_strdup(d->snap->provider);
        r->snapshot_handle = g_strdup(d->snap->handle);
        r->snapshot_kept = d->snap_kept;
    }
}

static void
storage_describe(const DomJob *j, VsBackupDomainResult *dr)
{
    (void)j;
    dr->mode = g_strdup("storage-snapshot");
}

static void
storage_plan(Run *run, DomJob *j, const VsDomainDef *def)
{
    backup_method_overlay.plan(run, j, def);
}

static void
storage_prepare(Run *run, DomJob *j)
{
    backup_method_overlay.prepare(run, j);
}

static bool
storage_unprepare(Run *run, DomJob *j)
{
    return backup_method_overlay.unprepare(run, j);
}

static void
storage_point_in_time(Run *run, DomJob *j)
{
    backup_method_overlay.point_in_time(run, j);
}

static void
storage_recheck(Run *run, DomJob *j)
{
    backup_method_overlay.recheck(run, j);
}

const BackupMethod backup_method_storage = {
    .name = "storage",
    .plan = storage_plan,
    .prepare = storage_prepare,
    .unprepare = storage_unprepare,
    .point_in_time = storage_point_in_time,
    .recheck = storage_recheck,
    .before_copy = storage_before_copy,
    .open_disk = storage_open_disk,
    .settle = storage_settle,
    .finish = storage_finish,
    .after_manifest = storage_after_manifest,
    .describe = storage_describe,
    .free_priv = g_free,
};
