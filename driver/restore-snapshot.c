/* `restore --from-snapshot`: each disk from the storage snapshot its backup
 * recorded (VsManifestDisk.snapshot, docs/snapshots.md), not from the
 * repository. In place, the disk is rolled back (vs_snap_rollback) at install,
 * once the domain is stopped as any restore in place stops it; its definition
 * is the backup's, as always. With --as NEW, each disk becomes a thin clone
 * NEW-TARGET[.FMT] beside the original (vs_snap_clone), which the new domain
 * is defined on and started. The plan checks every disk first (a snapshot
 * recorded, its provider, the snapshot still there, the clone's name free);
 * a repository is hostile, so before anything is rolled back the recorded
 * disk is confirmed against the live system: the domain's definition now, or
 * the pool's volume, must name that same file or image. A file clone is made
 * under its own name and at once renamed to a journaled temp name (tempfile.c),
 * so that an interrupt removes it and `virtsnap recover` does after a kill -9;
 * install renames it into place, as a restored image. A clone that is not a
 * file beside the disk (an RBD image, a hook's) is named in any error that
 * leaves it behind. */
#include "config.h"
#include "restore-internal.h"
#include "control.h"
#include "vs-snapshot.h"
#include "vs-temp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool
kind_is(const VsManifestSnapshot *rec, const char *kind)
{
    return !g_strcmp0(rec->kind, kind);
}

/* The disk's image, as a domain's <source> of it would name it: its path, or
 * for RBD "POOL/IMAGE". */
static char *
recorded_image(const VsManifestSnapshot *rec)
{
    if (kind_is(rec, "rbd"))
        return rec->rbd_pool && rec->rbd_image ? g_strdup_printf("%s/%s", rec->rbd_pool, rec->rbd_image) : NULL;
    return g_strdup(rec->path);
}

/* The plan of a clone for --as: its name, where it will be, its temp name. */
static bool
plan_clone(RDom *r, RDisk *d, VsDiskDef *dd, GError **error)
{
    const VsManifestSnapshot *rec = d->md->snapshot;
    bool file = kind_is(rec, "file") && rec->path;
    struct stat st;

    if (!file && !kind_is(rec, "rbd")) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "restore: --from-snapshot --as: domain '%s' disk %s is a %s disk: a clone of it "
                    "cannot be attached to a new domain yet (file and RBD disks can); restore it in "
                    "place, or from the repository without --from-snapshot", r->name, d->target,
                    rec->kind ? rec->kind : "(unknown)");
        return false;
    }
    if (!file && dd->src->type != VS_DISK_TYPE_NETWORK && dd->src->type != VS_DISK_TYPE_VOLUME) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "restore: --from-snapshot --as: domain '%s' disk %s: the backup's definition does "
                    "not name it as an RBD image or volume: its clone cannot be attached", r->name, d->target);
        return false;
    }
    d->clone_name = file && d->format ? g_strdup_printf("%s-%s.%s", r->new_name, d->target, d->format)
                                      : g_strdup_printf("%s-%s", r->new_name, d->target);
    if (!vs_snap_name_check("clone name", d->clone_name, error)) {
        vs_error_prefix(error, "restore: --as %s: domain '%s' disk %s (choose a name of letters, digits, "
                        "'.', '_' and '-')", r->new_name, r->name, d->target);
        return false;
    }
    d->action = g_strdup("cloned");
    if (!file) {
        d->dest = g_strdup_printf("rbd:%s/%s", rec->rbd_pool, d->clone_name);
        return true;
    }
    d->dir = g_path_get_dirname(rec->path);
    d->dest = g_build_filename(d->dir, d->clone_name, NULL);
    if (lstat(d->dest, &st) == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --from-snapshot --as %s: %s exists already: remove it, or choose another "
                    "name with --as", r->new_name, d->dest);
        return false;
    }
    d->tmp = vs_temp_path(d->dir, d->clone_name);
    return true;
}

bool
restore_snap_plan_disk(Run *run, RDom *r, RDisk *d, VsDiskDef *dd, GError **error)
{
    const VsManifestDisk *md = d->md;
    const VsManifestSnapshot *rec = md->snapshot;
    bool exists = false;

    if (!rec) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "restore: --from-snapshot: domain '%s' disk %s in backup %s has no storage snapshot "
                    "(backed up without --storage-snapshot, or its snapshot was not kept): restore it "
                    "from the repository without --from-snapshot, or name a backup that has one with "
                    "--backup%s", r->name, d->target, r->m->id,
                    r->md->disks->len > 1 ? " (or leave it out with --disks)" : "");
        return false;
    }
    if (!dd || !dd->src) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "restore: the definition saved with domain '%s' has no disk %s", r->name, d->target);
        return false;
    }
    d->snap_disk = g_strdup_printf("%s/%s", r->name, d->target);
    if (!(d->snap = vs_snap_provider_for_record(run->snap_config, rec, d->snap_disk, &d->loc, error)) ||
        !vs_snap_exists(d->snap, &d->loc, rec->handle, &exists, error)) {
        vs_error_prefix(error, "restore: --from-snapshot");
        return false;
    }
    if (!exists) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "restore: --from-snapshot: the storage snapshot %s (%s) of domain '%s' disk %s in "
                    "backup %s does not exist any more: %s", rec->handle, rec->provider, r->name, d->target,
                    r->m->id, md->in_repo ? "restore from the repository without --from-snapshot"
                                          : "the backup holds no other copy of that disk");
        return false;
    }
    if (!r->in_place)
        return plan_clone(r, d, dd, error);
    if (r->dom && r->active && !r->must_stop) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --from-snapshot: domain '%s' is running: its disks are rolled back only "
                    "while it is shut off; shut it down first, or give --force to stop it", r->new_name);
        return false;
    }
    if (!(d->dest = recorded_image(rec))) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --from-snapshot: backup %s records no disk path for the snapshot of domain "
                    "'%s' disk %s: it cannot be rolled back", r->m->id, r->name, d->target);
        return false;
    }
    d->dir = kind_is(rec, "file") ? g_path_get_dirname(rec->path) : NULL;
    d->dest_exists = kind_is(rec, "file");
    d->rollback = true;
    d->action = g_strdup("rolled-back");
    return true;
}

/* ------------------------------------------------------------------------- */
/* Before anything is changed: the recorded disk confirmed                    */

/* Does SRC (a <source> in a definition of the live system) name the disk
 * REC recorded? A volume is asked of its pool. */
static bool
source_names(Run *run, const VsStorageSource *src, const VsManifestSnapshot *rec)
{
    g_autofree char *image = recorded_image(rec);
    g_autofree char *path = NULL;

    if (!image || !src)
        return false;
    switch (src->type) {
    case VS_DISK_TYPE_FILE:
    case VS_DISK_TYPE_BLOCK:
        return !kind_is(rec, "rbd") && !g_strcmp0(src->path, image);
    case VS_DISK_TYPE_VOLUME:
        if (!src->pool || !src->volume)
            return false;
        path = vs_control()->pool_volume_path(run->conn, src->pool, src->volume, NULL);
        return path && !strcmp(path, image);
    case VS_DISK_TYPE_NETWORK:
        return kind_is(rec, "rbd") && !g_strcmp0(src->protocol, "rbd") && !g_strcmp0(src->name, image);
    default:
        return false;
    }
}

static bool
confirm_location(Run *run, RDom *r, RDisk *d, GError **error)
{
    const VsManifestSnapshot *rec = d->md->snapshot;
    g_autofree char *path = NULL;
    struct stat st;

    if (kind_is(rec, "file") && (lstat(rec->path, &st) < 0 || !S_ISREG(st.st_mode))) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --from-snapshot: domain '%s' disk %s: %s, the disk the snapshot was taken "
                    "of, is not a regular file now: it is not rolled back; restore from the repository "
                    "without --from-snapshot, or with --as", r->name, d->target, rec->path);
        return false;
    }
    if (r->dom) {
        g_autofree char *xml = vs_control()->domain_xml(r->dom, true, NULL);
        g_autoptr(VsDomainDef) def = xml ? vs_domain_def_parse_string(xml, r->new_name, NULL) : NULL;
        VsDiskDef *now = def ? vs_domain_def_find_disk(def, d->target) : NULL;

        if (now && source_names(run, now->src, rec))
            return true;
    }
    /* Only for a domain that is gone: one that is there says itself which
     * disk is its own, and a volume of the pool may be any domain's. */
    if (!r->dom && rec->pool && rec->volume &&
        (path = vs_control()->pool_volume_path(run->conn, rec->pool, rec->volume, NULL))) {
        g_autofree char *image = recorded_image(rec);
        if (!g_strcmp0(path, image))
            return true;
    }
    {
        g_autofree char *image = recorded_image(rec);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --from-snapshot: backup %s says the snapshot of domain '%s' disk %s is of %s, "
                    "but %s%s%s%s%s names that disk now: it is not rolled back (the repository alone does "
                    "not decide what is written over); point the domain's disk %s back at it, or restore "
                    "with --as", r->m->id, r->name, d->target, image, r->dom ? "the domain's definition "
                    "(which is what decides while the domain exists)" : "no domain",
                    !r->dom && rec->pool && rec->volume ? " nor volume " : "",
                    !r->dom && rec->pool && rec->volume ? rec->volume : "",
                    !r->dom && rec->pool && rec->volume ? " of pool " : "",
                    !r->dom && rec->pool && rec->volume ? rec->pool : "", d->target);
    }
    return false;
}

/* ------------------------------------------------------------------------- */
/* The clones, before anything else is changed                                */

/* The new domain's disk D on its clone CLONE (a path, or rbd:POOL/NAME). */
static void
point_at_clone(RDom *r, RDisk *d, const char *clone)
{
    VsDiskDef *dd = vs_domain_def_find_disk(r->def, d->target);
    VsStorageSource *src = dd ? dd->src : NULL;

    if (!src)
        return;
    if (g_path_is_absolute(clone)) {
        VsStorageSource *n = vs_storage_source_new(VS_DISK_TYPE_FILE);

        n->path = g_strdup(d->dest);
        n->format = g_strdup(src->format ? src->format : d->format);
        /* A qcow2 clone has its original's backing file. */
        n->backing = g_steal_pointer(&src->backing);
        n->backing_terminated = src->backing_terminated;
        vs_storage_source_free(src);
        dd->src = n;
    } else if (src->type == VS_DISK_TYPE_VOLUME) {
        g_free(src->volume);
        src->volume = g_strdup(d->clone_name);
    } else {
        g_free(src->name);
        src->name = g_strdup_printf("%s/%s", d->md->snapshot->rbd_pool, d->clone_name);
    }
}

static bool
make_clone(RDom *r, RDisk *d, GError **error)
{
    const VsManifestSnapshot *rec = d->md->snapshot;
    g_autofree char *made = vs_snap_clone(d->snap, &d->loc, rec->handle, d->clone_name, error);
    int err;

    if (!made) {
        vs_error_prefix(error, "restore: --from-snapshot --as %s", r->new_name);
        return false;
    }
    if (d->tmp && !g_strcmp0(made, d->dest)) {
        /* Under the journaled temp name at once: interrupt and recover know it. */
        if (rename(made, d->tmp) < 0) {
            err = errno;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "restore: --from-snapshot: renaming the clone %s "
                        "to %s: %s (remove the clone by hand)", made, d->tmp, g_strerror(err));
            return false;
        }
    } else {
        /* Not the file planned (a hook's clone, an RBD image): it is the
         * destination itself, and is named wherever it is left. */
        g_clear_pointer(&d->tmp, g_free);
        g_free(d->dest);
        d->dest = g_strdup(made);
        d->clone_ready = true;
    }
    d->clone = g_steal_pointer(&made);
    point_at_clone(r, d, d->clone);
    return true;
}

/* The clones left that no temp name covers, for an error: "" when none. */
static char *
clones_left(Run *run)
{
    g_autoptr(GString) s = g_string_new(NULL);

    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];
            if (d->clone_ready && !d->installed)
                g_string_append_printf(s, "%s%s", s->len ? ", " : "", d->clone);
        }
    }
    if (s->len)
        g_string_prepend(s, "; clones made and left (remove them by hand): ");
    return g_string_free(g_steal_pointer(&s), FALSE);
}

bool
restore_snap_write_phase(Run *run, GError **error)
{
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];

        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];
            bool ok;

            if (!vs_interrupt_check("restore", error))
                ok = false;
            else
                ok = d->rollback ? confirm_location(run, r, d, error) : make_clone(r, d, error);
            if (!ok) {
                g_autofree char *left = clones_left(run);

                if (*left && error && *error) {
                    char *m = g_strconcat((*error)->message, left, NULL);
                    g_free((*error)->message);
                    (*error)->message = m;
                }
                return false;
            }
            d->written = true;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------- */
/* Install                                                                    */

bool
restore_snap_install(Run *run, RDisk *d, GError **error)
{
    const VsManifestSnapshot *rec = d->md->snapshot;

    if (d->clone_ready) {
        d->installed = true;
        if (rec->pool && kind_is(rec, "rbd"))
            (void)vs_control()->pool_refresh(run->conn, rec->pool, NULL);
        return true;
    }
    if (!vs_snap_rollback(d->snap, &d->loc, rec->handle, error)) {
        vs_error_prefix(error, "restore: domain '%s' disk %s", d->dom->new_name, d->target);
        return false;
    }
    d->installed = true;
    return true;
}

void
restore_snap_refresh_pools(Run *run, RDom *r)
{
    /* Best effort: the clones show up as volumes of the pool they are in. */
    for (guint i = 0; i < r->disks->len; i++) {
        RDisk *d = r->disks->pdata[i];
        if (d->clone && d->installed && d->pool_name)
            (void)vs_control()->pool_refresh(run->conn, d->pool_name, NULL);
    }
}

char *
restore_snap_describe(const RDisk *d)
{
    const VsManifestSnapshot *rec = d->snap ? d->md->snapshot : NULL;

    return rec ? g_strdup_printf("%s:%s", rec->provider, rec->handle) : NULL;
}
