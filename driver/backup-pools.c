/* The storage pools of a backup: every libvirt pool a backed-up disk lives in
 * (as discovery found it: a volume of the pool, or a file in its directory)
 * is saved in the manifest with its persistent definition, so that `restore
 * --define-pools` can define and start a pool that was removed since
 * (restore-pools.c). Saving is best effort: a pool whose definition cannot be
 * read is a note on the domain, never a failed backup (its data is complete
 * without it). Pool XML names secrets by usage or UUID only, never by value. */
#include "config.h"
#include "backup-internal.h"

#include <string.h>

/* What discovery found of J's domain: by UUID, else by name. */
static const VsDiscoveredDomain *
discovered_of(Run *run, const DomJob *j)
{
    for (guint i = 0; run->discovered && i < run->discovered->len; i++) {
        const VsDiscoveredDomain *d = run->discovered->pdata[i];

        if (j->uuid && d->uuid ? !g_ascii_strcasecmp(j->uuid, d->uuid) : !g_strcmp0(j->name, d->name))
            return d;
    }
    return NULL;
}

static bool
backed_up(const DomJob *j, const char *target)
{
    for (guint k = 0; k < j->disks->len; k++)
        if (!g_strcmp0(((DiskJob *)j->disks->pdata[k])->target, target))
            return true;
    return false;
}

void
backup_save_pools(Run *run, DomJob *j, VsManifestDomain *md)
{
    const VsDiscoveredDomain *disc = discovered_of(run, j);
    /* Each pool asked once, whether it answered or not. */
    g_autoptr(GHashTable) asked = g_hash_table_new(g_str_hash, g_str_equal);

    for (guint i = 0; disc && i < disc->disks->len; i++) {
        const VsDiscoveredDisk *d = disc->disks->pdata[i];
        g_autoptr(GError) err = NULL;
        g_autofree char *xml = NULL;

        if (!d->pool || !*d->pool || !backed_up(j, d->target) || !g_hash_table_add(asked, d->pool))
            continue;
        if (!(xml = vs_control()->pool_xml(vs_link_conn(run->link), d->pool, &err))) {
            add_note(j, "disk %s: the definition of its storage pool '%s' could not be saved (%s): "
                     "restore --define-pools cannot define that pool again", d->target, d->pool,
                     err ? err->message : "no answer");
            continue;
        }
        vs_manifest_domain_add_pool(md, d->pool, xml);
    }
}
