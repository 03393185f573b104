/* Restore and the storage pools its disks live in. A disk put back where it
 * was (in place, or a new file or clone beside the original) needs its pool:
 * the pool its definition names (a volume), the one its storage snapshot
 * recorded, or a pool the backup saved whose directory held the disk. The plan
 * asks whether each is there and active; one that is not is an error naming
 * it, unless --define-pools, which defines it again from the XML the backup
 * saved (backup-pools.c) and starts it (a dir, fs or netfs pool with its
 * directory made: nothing else is built, so no file system is made and no
 * device written), once the whole plan is checked and before any disk is
 * written. A pool defined so stays defined whatever happens after. The saved
 * XML comes from a hostile repository: it must parse and name the pool asked
 * for, and only pools a restored disk needs are defined. */
#include "config.h"
#include "restore-internal.h"
#include "control.h"

#include <string.h>

struct _RPoolNeed {
    char *name;
    char *xml;               /* to define from; NULL: defined, only to be started */
    bool build;              /* its directory made at start */
    char *backup_id;         /* whose saved XML */
};

void
restore_pool_need_free(RPoolNeed *n)
{
    g_free(n->name);
    g_free(n->xml);
    g_free(n->backup_id);
    g_free(n);
}

/* The pool D lives in, as the backup tells: NULL when none is known. */
static char *
disk_pool(const RDom *r, const RDisk *d, const VsDiskDef *dd)
{
    const VsManifestDisk *md = d->md;
    g_autofree char *dir = NULL;

    if (dd && dd->src && dd->src->type == VS_DISK_TYPE_VOLUME && dd->src->pool)
        return g_strdup(dd->src->pool);
    if (md->snapshot && md->snapshot->pool)
        return g_strdup(md->snapshot->pool);
    if (!md->source || !g_path_is_absolute(md->source) || !r->md->pools)
        return NULL;
    dir = g_path_get_dirname(md->source);
    for (guint i = 0; i < r->md->pools->len; i++) {
        const VsManifestPool *p = r->md->pools->pdata[i];
        g_autoptr(VsPoolDef) def = vs_pool_def_parse_string(p->xml, p->name, NULL);

        if (def && def->target_path && !g_strcmp0(def->target_path, dir))
            return g_strdup(p->name);
    }
    return NULL;
}

static RPoolNeed *
find_need(Run *run, const char *name)
{
    for (guint i = 0; run->pool_needs && i < run->pool_needs->len; i++)
        if (!strcmp(((RPoolNeed *)run->pool_needs->pdata[i])->name, name))
            return run->pool_needs->pdata[i];
    return NULL;
}

/* Without --define-pools: why POOL (missing or inactive) stops the restore. */
static void
pool_error(RDom *r, RDisk *d, const char *pool, bool missing, bool saved, GError **error)
{
    if (!missing)
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: domain '%s' disk %s lives in storage pool '%s', which is not active: start it "
                    "with virsh pool-start %s, or give --define-pools; nothing was changed", r->name,
                    d->target, pool, pool);
    else if (saved)
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "restore: domain '%s' disk %s lives in storage pool '%s', which is not defined any "
                    "more: give --define-pools to define and start it again from the definition backup %s "
                    "saved; nothing was changed", r->name, d->target, pool, r->m->id);
    else
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "restore: domain '%s' disk %s lives in storage pool '%s', which is not defined any "
                    "more, and backup %s did not save its definition: define the pool by hand (virsh "
                    "pool-define), then restore again; nothing was changed", r->name, d->target, pool,
                    r->m->id);
}

/* The saved definition of POOL, checked: it must be one and name POOL. */
static bool
saved_xml_ok(RDom *r, const VsManifestPool *saved, bool *build, GError **error)
{
    g_autoptr(VsPoolDef) def = vs_pool_def_parse_string(saved->xml, saved->name, error);

    if (!def) {
        vs_error_prefix(error, "restore: --define-pools: the definition of storage pool '%s' in backup %s",
                        saved->name, r->m->id);
        return false;
    }
    if (g_strcmp0(def->name, saved->name) != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --define-pools: backup %s saved a definition under pool '%s' that defines "
                    "a pool '%s': it is not used; define the pool by hand (virsh pool-define)", r->m->id,
                    saved->name, def->name ? def->name : "(none)");
        return false;
    }
    *build = def->type == VS_POOL_DIR || def->type == VS_POOL_FS || def->type == VS_POOL_NETFS;
    return true;
}

bool
restore_pools_plan_disk(Run *run, RDom *r, RDisk *d, const VsDiskDef *dd, GError **error)
{
    g_autofree char *pool = disk_pool(r, d, dd);
    g_autoptr(GError) err = NULL;
    const VsManifestPool *saved;
    RPoolNeed *need;
    bool build = false;
    int active;

    if (!pool)
        return true;
    d->pool_name = g_strdup(pool);
    if ((need = find_need(run, pool))) {
        d->pool_pending = true;
        return true;
    }
    active = vs_control()->pool_is_active(run->conn, pool, &err);
    if (active == 1)
        return true;
    if (active < 0 && (!err || err->code != VS_ERROR_NOT_FOUND)) {
        g_set_error(error, VS_ERROR, err ? (VsErrorCode)err->code : VS_ERROR_LIBVIRT,
                    "restore: domain '%s' disk %s: storage pool '%s': %s", r->name, d->target, pool,
                    err ? err->message : "cannot say whether it is active");
        return false;
    }
    saved = vs_manifest_domain_find_pool(r->md, pool);
    if (!run->opts->define_pools || (active < 0 && !saved)) {
        pool_error(r, d, pool, active < 0, saved != NULL, error);
        return false;
    }
    if (active < 0 && !saved_xml_ok(r, saved, &build, error))
        return false;
    need = g_new0(RPoolNeed, 1);
    need->name = g_strdup(pool);
    need->xml = active < 0 ? g_strdup(saved->xml) : NULL;
    need->build = build;
    need->backup_id = g_strdup(r->m->id);
    if (!run->pool_needs)
        run->pool_needs = g_ptr_array_new_with_free_func((GDestroyNotify)restore_pool_need_free);
    g_ptr_array_add(run->pool_needs, need);
    d->pool_pending = true;
    return true;
}

bool
restore_pools_define(Run *run, GError **error)
{
    const VsControlOps *c = vs_control();

    for (guint i = 0; run->pool_needs && i < run->pool_needs->len; i++) {
        RPoolNeed *n = run->pool_needs->pdata[i];
        g_autoptr(GError) err = NULL;

        if (n->xml && !c->pool_define(run->conn, n->xml, &err)) {
            vs_control_error(error, g_steal_pointer(&err), VS_ERROR_LIBVIRT,
                             "restore: --define-pools: defining storage pool '%s' from backup %s (nothing "
                             "else was changed)", n->name, n->backup_id);
            return false;
        }
        if (!c->pool_start(run->conn, n->name, n->build, &err)) {
            vs_control_error(error, g_steal_pointer(&err), VS_ERROR_LIBVIRT,
                             "restore: --define-pools: starting storage pool '%s'%s (nothing else was "
                             "changed)", n->name, n->xml ? ", defined now from the backup" : "");
            return false;
        }
        g_ptr_array_add(run->pool_notes,
                        n->xml ? g_strdup_printf("storage pool '%s' defined from backup %s and started",
                                                 n->name, n->backup_id)
                               : g_strdup_printf("storage pool '%s' started", n->name));
    }
    /* The directories the plan could not look at before their pool was there. */
    for (guint i = 0; run->pool_needs && i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];

        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];

            if (d->pool_pending && d->dir && !d->snap && !(d->sink_url && !d->sink_image) &&
                !restore_check_dir(d->dir, "directory", error))
                return false;
        }
    }
    return true;
}
