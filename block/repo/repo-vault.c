/* Vault (issue 15): a `backup --no-copy` recorded each disk only as a storage
 * snapshot (in_repo false); vault copies those snapshots into the repository
 * afterwards, at leisure, with the copy engine, and then replaces the backup's
 * manifest with one that holds the chunks (vs_repo_replace_manifest): the
 * manifest is the commit point, so a vault killed half way leaves the backup
 * snapshot-only and valid, and what it had written is unreferenced chunks for
 * gc. Where the snapshot's provider can say what changed between two of its
 * snapshots (rbd), an earlier backup of the same disk whose data is in the
 * repository and whose snapshot still exists makes the copy incremental: the
 * snapshot is read through vs_source_open_changed, a delta source, and the
 * engine takes every unchanged range from that backup's chunk list, as it does
 * for a libvirt incremental backup. The snapshots themselves are left alone:
 * they are kept until prune. */
#include "config.h"
#include "repo-internal.h"
#include "vs-copy.h"
#include "vs-fault.h"
#include "vs-interrupt.h"
#include "vs-snapshot.h"

#include <string.h>

static void
vault_disk_free(VsVaultDisk *d)
{
    if (!d)
        return;
    g_free(d->domain); g_free(d->disk); g_free(d->provider); g_free(d->handle);
    g_free(d->base_id); g_free(d->full_why); g_free(d->error);
    g_free(d);
}

void
vs_vault_result_free(VsVaultResult *r)
{
    if (!r)
        return;
    g_free(r->id);
    if (r->disks)
        g_ptr_array_unref(r->disks);
    g_free(r);
}

/* The earlier backup an incremental copy of a disk starts from. */
typedef struct {
    VsManifest *m;                 /* owns DISK */
    const VsManifestDisk *disk;
} VaultBase;

static void
vault_base_clear(VaultBase *b)
{
    g_clear_pointer(&b->m, vs_manifest_free);
    b->disk = NULL;
}

/* Whether two records name one disk of one storage: the same provider and the
 * same image, file or volume. */
static bool
same_storage(const VsManifestSnapshot *a, const VsManifestSnapshot *b)
{
    return !g_strcmp0(a->provider, b->provider) && !g_strcmp0(a->kind, b->kind) &&
           !g_strcmp0(a->path, b->path) && !g_strcmp0(a->pool, b->pool) && !g_strcmp0(a->volume, b->volume) &&
           !g_strcmp0(a->rbd_pool, b->rbd_pool) && !g_strcmp0(a->rbd_image, b->rbd_image) &&
           !g_strcmp0(a->snapshot_dir, b->snapshot_dir) && !g_strcmp0(a->nfs_path, b->nfs_path);
}

static bool
summary_holds(const VsBackupSummary *s, const char *domain, const char *target)
{
    for (guint i = 0; !s->problem && i < s->domains->len; i++) {
        const VsSummaryDomain *d = s->domains->pdata[i];

        if (!strcmp(d->name, domain))
            return g_strv_contains((const char *const *)d->disks, target);
    }
    return false;
}

/* The newest backup before M that holds DOM's disk DISK in the repository,
 * taken from a snapshot of the same storage that P says still exists, with
 * the same size: into *BASE. False with *WHY when there is none. */
static bool
find_base(VsRepo *repo, const VsManifest *m, const VsManifestDomain *dom, const VsManifestDisk *disk,
          VsSnapProvider *p, uint64_t size, VaultBase *base, char **why)
{
    g_autoptr(GPtrArray) all = vs_repo_list_summaries(repo, NULL);
    guint here = 0;
    bool seen = false;

    if (!all) {
        *why = g_strdup("the repository's backups could not be listed");
        return false;
    }
    while (here < all->len && strcmp(((VsBackupSummary *)all->pdata[here])->id, m->id) != 0)
        here++;
    if (here == all->len) {
        /* Removed meanwhile: which backups are earlier cannot be told. */
        *why = g_strdup("the backup is no longer listed in the repository");
        return false;
    }
    for (guint i = here; i-- > 0;) {
        const VsBackupSummary *s = all->pdata[i];
        g_autoptr(VsManifest) pm = NULL;
        const VsManifestDomain *pd;
        const VsManifestDisk *pk;
        VsSnapLocation loc;
        bool exists = false;

        if (!summary_holds(s, dom->name, disk->target) || !(pm = vs_repo_load_manifest(repo, s->id, NULL)))
            continue;
        if (!(pd = vs_manifest_find_domain(pm, dom->name)) || !(pk = vs_manifest_find_disk(pd, disk->target)))
            continue;
        if ((pd->uuid && dom->uuid && g_ascii_strcasecmp(pd->uuid, dom->uuid) != 0) || !pk->in_repo ||
            !pk->snapshot || !same_storage(pk->snapshot, disk->snapshot) || pk->virtual_size != size)
            continue;
        seen = true;
        if (!vs_snap_location_from_record(pk->snapshot, disk->target, &loc) ||
            !vs_snap_exists(p, &loc, pk->snapshot->handle, &exists, NULL) || !exists)
            continue;
        base->disk = pk;
        base->m = g_steal_pointer(&pm);
        return true;
    }
    *why = g_strdup(seen ? "the snapshots of the earlier vaulted backups of this disk are gone"
                         : "no earlier backup holds this disk in the repository with a snapshot of it");
    return false;
}

typedef struct {
    uint64_t half;
    bool hit;
} VaultProgress;

static void
vault_progress(uint64_t done, uint64_t total, void *opaque)
{
    VaultProgress *vp = opaque;

    (void)total;
    if (!vp->hit && done >= vp->half && done > 0) {
        vp->hit = true;
        vs_fault_point("vault-copy");
    }
}

/* Sets up the incremental read of SRC (replaced by its changed view) against
 * an earlier backup, into *BASE; leaves SRC whole with OUT->full_why set when
 * it cannot be. Never fails: a full copy is always right. */
static void
try_incremental(VsRepo *repo, const VsManifest *m, const VsManifestDomain *dom, const VsManifestDisk *disk,
                VsSnapProvider *p, const VsSnapLocation *loc, VsSource **src, VaultBase *base, VsVaultDisk *out)
{
    g_autoptr(GArray) changed = g_array_new(FALSE, FALSE, sizeof(VsExtent));
    g_autoptr(GError) err = NULL;
    uint64_t size = vs_source_size(*src);
    VsSource *view;

    if (!vs_snap_has_diff(p))
        return;
    if (disk->format && strcmp(disk->format, "raw") != 0) {
        out->full_why = g_strdup_printf("the disk is %s: the storage's diff is of the image file, not of "
                                        "what the guest sees", disk->format);
        return;
    }
    if (!find_base(repo, m, dom, disk, p, size, base, &out->full_why))
        return;
    if (!vs_snap_diff(p, loc, base->disk->snapshot->handle, disk->snapshot->handle, changed, &err)) {
        out->full_why = g_strdup_printf("the diff against backup %s failed: %s", base->m->id, err->message);
        vault_base_clear(base);
        return;
    }
    view = vs_source_open_changed(*src, changed, NULL);
    *src = view;
    out->incremental = true;
    out->base_id = g_strdup(base->m->id);
    out->bytes_changed = 0;
    for (guint i = 0; i < changed->len; i++)
        out->bytes_changed += g_array_index(changed, VsExtent, i).length;
}

/* Copies DISK's snapshot into REPO; on success DISK holds the chunks. */
static bool
vault_disk(VsRepo *repo, const VsSnapConfig *config, const VsManifest *m, const VsManifestDomain *dom,
           VsManifestDisk *disk, VsVaultDisk *out, GError **error)
{
    g_autofree char *name = g_strdup_printf("%s/%s", dom->name, disk->target);
    g_autoptr(VsSnapProvider) p = NULL;
    g_autoptr(VsSource) src = NULL;
    VsSnapLocation loc;
    VaultBase base = { 0 };
    VsCopyOptions opts;
    VaultProgress vp = { 0 };
    VsManifestDisk *copy = NULL;
    bool ok = false;

    if (!(p = vs_snap_provider_for_record(config, disk->snapshot, name, &loc, error)) ||
        !(src = vs_snap_open(p, &loc, disk->snapshot->handle, disk->format, error)))
        return false;
    out->virtual_size = vs_source_size(src);
    out->bytes_changed = out->virtual_size;
    if (disk->virtual_size && disk->virtual_size != out->virtual_size) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "the snapshot %s holds %" G_GUINT64_FORMAT " bytes, but "
                    "the backup recorded a disk of %" G_GUINT64_FORMAT ": it is not this disk's snapshot",
                    disk->snapshot->handle, out->virtual_size, disk->virtual_size);
        return false;
    }
    try_incremental(repo, m, dom, disk, p, &loc, &src, &base, out);
    vs_copy_options_init(&opts);
    opts.previous = base.disk;
    vp.half = out->virtual_size / 2;
    opts.progress = vault_progress;
    opts.progress_opaque = &vp;
    copy = vs_manifest_disk_new(disk->target);
    if (vs_copy_source_to_repo(src, repo, copy, &opts, error)) {
        GArray *t = disk->chunks;

        disk->chunks = copy->chunks;
        copy->chunks = t;
        disk->virtual_size = copy->virtual_size;
        disk->bytes_read = out->bytes_read = copy->bytes_read;
        disk->bytes_stored = out->bytes_stored = copy->bytes_stored;
        disk->in_repo = true;
        ok = true;
    }
    vs_manifest_disk_free(copy);
    vault_base_clear(&base);
    return ok;
}

/* What to do about a disk's failure, after its message. */
static const char *
advice(const GError *err)
{
    if (g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND))
        return "the storage snapshot is gone, so this disk cannot be vaulted: its data is lost to the "
               "repository (check the storage; remove the backup with prune)";
    if (g_error_matches(err, VS_ERROR, VS_ERROR_INTERRUPTED))
        return "run vault again to finish";
    return "fix that and run vault again; the disk stays snapshot-only until then";
}

static VsVaultDisk *
vault_disk_new(const VsManifestDomain *dom, const VsManifestDisk *disk)
{
    VsVaultDisk *d = g_new0(VsVaultDisk, 1);

    d->domain = g_strdup(dom->name);
    d->disk = g_strdup(disk->target);
    d->state = disk->in_repo ? VS_VAULT_DISK_IN_REPO : VS_VAULT_DISK_SKIPPED;
    if (disk->snapshot) {
        d->provider = g_strdup(disk->snapshot->provider);
        d->handle = g_strdup(disk->snapshot->handle);
    }
    d->virtual_size = disk->virtual_size;
    return d;
}

/* Copies every snapshot-only disk of M; the first failure into *ERROR. */
static void
vault_all(VsRepo *repo, const VsSnapConfig *config, VsManifest *m, VsVaultResult *res, GError **error)
{
    for (guint i = 0; i < m->domains->len; i++) {
        VsManifestDomain *dom = m->domains->pdata[i];

        for (guint k = 0; k < dom->disks->len; k++) {
            VsManifestDisk *disk = dom->disks->pdata[k];
            VsVaultDisk *out = vault_disk_new(dom, disk);
            g_autoptr(GError) err = NULL;

            g_ptr_array_add(res->disks, out);
            /* After an interrupt, nothing more is begun. */
            if (disk->in_repo || vs_interrupted() || (error && g_error_matches(*error, VS_ERROR,
                                                                                VS_ERROR_INTERRUPTED)))
                continue;
            if (vault_disk(repo, config, m, dom, disk, out, &err)) {
                out->state = VS_VAULT_DISK_VAULTED;
                res->vaulted++;
                continue;
            }
            out->state = VS_VAULT_DISK_FAILED;
            out->error = g_strdup_printf("vault: backup %s, domain %s, disk %s: %s; %s", m->id, dom->name,
                                         disk->target, err->message, advice(err));
            if (error && !*error)
                *error = g_error_new_literal(VS_ERROR, err->code, out->error);
        }
    }
}

bool
vs_repo_vault(VsRepo *repo, const char *id, const VsSnapConfig *config, VsVaultResult **result,
              GError **error)
{
    g_autoptr(VsManifest) m = NULL;
    g_autoptr(VsVaultResult) res = g_new0(VsVaultResult, 1);
    GError *first = NULL;

    *result = NULL;
    if (!(m = vs_repo_load_manifest(repo, id, error))) {
        vs_error_prefix(error, "vault");
        return false;
    }
    res->id = g_strdup(m->id);
    res->disks = g_ptr_array_new_with_free_func((GDestroyNotify)vault_disk_free);
    if (!vs_repo_lock_shared(repo, error)) {
        vs_error_prefix(error, "vault: backup %s", m->id);
        *result = g_steal_pointer(&res);
        return false;
    }
    vault_all(repo, config, m, res, &first);
    if (res->vaulted) {
        GError *cerr = NULL;

        vs_fault_point("vault-commit");
        if (!vs_repo_replace_manifest(repo, m, &cerr)) {
            /* Nothing committed: every disk copied is snapshot-only again. */
            for (guint i = 0; i < res->disks->len; i++) {
                VsVaultDisk *d = res->disks->pdata[i];
                if (d->state == VS_VAULT_DISK_VAULTED)
                    d->state = VS_VAULT_DISK_FAILED;
            }
            res->vaulted = 0;
            g_clear_error(&first);
            g_propagate_prefixed_error(&first, cerr, "vault: backup %s: the snapshots were copied but not "
                                       "committed, the backup is snapshot-only still (run vault again): ", m->id);
        }
    }
    vs_repo_unlock(repo);
    *result = g_steal_pointer(&res);
    if (first) {
        g_propagate_error(error, first);
        return false;
    }
    return true;
}
