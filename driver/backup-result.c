/* The last stage of a backup run: the manifest of every domain copied in full
 * (committed unless interrupted), the checkpoints kept or dropped after it, the
 * result each domain reports with the time each phase took, and the journal's
 * end: removed, or kept for recover when something was left. */
#include "config.h"
#include "backup-internal.h"
#include "arbitrate.h"

#include <string.h>

void
vs_backup_result_free(VsBackupResult *r)
{
    if (!r)
        return;
    g_free(r->id);
    g_ptr_array_unref(r->domains);
    g_ptr_array_unref(r->notes);
    g_free(r);
}

static void
domain_result_free(VsBackupDomainResult *d)
{
    g_free(d->name); g_free(d->consistency); g_ptr_array_unref(d->notes); g_clear_error(&d->error);
    g_free(d->mode); g_free(d->level); g_free(d->base); g_free(d->checkpoint);
    g_free(d->backup_xml); g_free(d->checkpoint_xml); g_free(d->aborted);
    g_ptr_array_unref(d->disks);
    g_free(d);
}

static void
disk_result_free(VsBackupDiskResult *d)
{
    g_free(d->snapshot_provider);
    g_free(d->snapshot_handle);
    g_free(d->target);
    g_free(d->data_path);
    g_free(d->read);
    g_free(d);
}

void
result_note(VsBackupDomainResult *dr, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(dr->notes, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

/* ------------------------------------------------------------------------- */

static VsBackupResult *
make_result(Run *run, int64_t group_freeze_ms)
{
    VsBackupResult *r = g_new0(VsBackupResult, 1);

    r->group_freeze_ms = group_freeze_ms;
    r->domains = g_ptr_array_new_with_free_func((GDestroyNotify)domain_result_free);
    r->notes = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; run->doms && i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        VsBackupDomainResult *d = g_new0(VsBackupDomainResult, 1);

        d->name = g_strdup(j->name);
        d->ok = j->error == NULL;
        /* A domain with no backup has no consistency to speak of. */
        d->consistency = g_strdup(j->error ? "none" : j->consistency);
        d->freeze_ms = j->frozen ? j->freeze_end - j->freeze_start : -1;
        d->frozen_at = j->frozen ? j->frozen_at : -1;
        d->thawed_at = j->frozen ? j->thawed_at : -1;
        d->overlay_ms = j->overlay_ms;
        d->notes = g_ptr_array_new_with_free_func(g_free);
        for (guint k = 0; k < j->notes->len; k++)
            g_ptr_array_add(d->notes, g_strdup(j->notes->pdata[k]));
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *dj = j->disks->pdata[k];
            if (dj->direct_failed)
                result_note(d, "disk %s read through the host: the direct path failed: %s",
                            dj->target, dj->direct_failed);
        }
        d->error = j->error ? g_error_copy(j->error) : NULL;
        d->level = g_strdup(!j->incremental ? "full" : j->diff ? "diff" : "inc");
        d->base = j->incremental && j->base ? g_strdup(j->base->id) : NULL;
        j->method->describe(j, d);
        d->disks = g_ptr_array_new_with_free_func((GDestroyNotify)disk_result_free);
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *dj = j->disks->pdata[k];
            VsBackupDiskResult *dr = g_new0(VsBackupDiskResult, 1);
            dr->target = g_strdup(dj->target);
            dr->bytes_read = dj->bytes_read;
            dr->bytes_stored = dj->bytes_stored;
            dr->data_path = g_strdup(dj->data_path);
            dr->read = g_strdup(dj->read ? dj->read : "full");
            g_ptr_array_add(d->disks, dr);
        }
        g_ptr_array_add(r->domains, d);
    }
    return r;
}

static VsBackupDomainResult *
missing_domain(const char *name, const GError *error)
{
    VsBackupDomainResult *d = g_new0(VsBackupDomainResult, 1);
    d->name = g_strdup(name);
    d->consistency = g_strdup("crash");
    d->freeze_ms = d->frozen_at = d->thawed_at = d->overlay_ms = -1;
    d->notes = g_ptr_array_new_with_free_func(g_free);
    d->error = g_error_copy(error);
    d->disks = g_ptr_array_new_with_free_func((GDestroyNotify)disk_result_free);
    return d;
}

/* The chunks the incrementals of this run will take over from their base
 * backups, looked up while the guests are frozen and the changes copied: the
 * commit checks that every chunk a manifest names is in the repository, and
 * with a cold cache those lookups (a directory block and an inode each, over
 * 256 directories) took 85 ms at the end of a 0.7 s incremental. Here they
 * overlap the rest; the commit's own check stays the authority. */
typedef struct {
    VsRepo *repo;
    GPtrArray *disks;   /* const VsManifestDisk* of the base backups */
} ChunkWarm;

static gpointer
chunk_warm_run(gpointer data)
{
    ChunkWarm *w = data;

    for (guint i = 0; i < w->disks->len; i++) {
        const VsManifestDisk *md = w->disks->pdata[i];

        for (guint k = 0; k < md->chunks->len; k++)
            (void)vs_repo_has_chunk(w->repo, &g_array_index(md->chunks, VsChunkRef, k).digest);
    }
    g_ptr_array_unref(w->disks);
    g_free(w);
    return NULL;
}

void
backup_warm_start(Run *run)
{
    ChunkWarm *w;
    GPtrArray *disks = g_ptr_array_new();

    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        VsManifestDomain *md = j->incremental && j->base ? manifest_domain_of(j->base, j) : NULL;

        for (guint k = 0; md && k < md->disks->len; k++)
            g_ptr_array_add(disks, md->disks->pdata[k]);
    }
    if (disks->len == 0) {
        g_ptr_array_unref(disks);
        return;
    }
    w = g_new(ChunkWarm, 1);
    w->repo = run->repo;
    w->disks = disks;
    run->warm = g_thread_new("vs-chunk-warm", chunk_warm_run, w);
}

/* The manifest holds every domain whose data was copied in full. */
static void
assemble_manifest(Run *run)
{
    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        bool copied = j->disks->len > 0;
        VsManifestDomain *md;

        for (guint k = 0; k < j->disks->len; k++)
            copied = copied && ((DiskJob *)j->disks->pdata[k])->mdisk;
        if (!copied)
            continue;
        md = vs_manifest_add_domain(run->manifest, j->name);
        md->uuid = g_strdup(j->uuid);
        md->consistency = g_strdup(j->consistency);
        md->freeze_ms = j->frozen ? j->freeze_end - j->freeze_start : -1;
        md->xml = g_strdup(j->xml);
        md->overlay_ms = j->overlay_ms;
        backup_save_pools(run, j, md);
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *d = j->disks->pdata[k];
            g_ptr_array_add(md->disks, g_steal_pointer(&d->mdisk));
        }
    }
    run->manifest->group_freeze_ms = run->group_ms;
}

/* The manifest into the repository, unless interrupted: the guests are back
 * on their disks by now, and no backup is written; its chunks go at the next
 * gc. */
static bool
commit_manifest(Run *run, GError **error)
{
    vs_fault_point("before-manifest");
    if (vs_interrupted()) {
        g_set_error(error, VS_ERROR, VS_ERROR_INTERRUPTED, "backup: interrupted by %s: no backup "
                    "was written", vs_signal_name(vs_interrupted()));
        return false;
    }
    return vs_repo_commit_manifest(run->repo, run->manifest, error);
}

/* Every domain of the manifest failed with the commit's ERR. */
static void
fail_uncommitted(VsBackupResult *result, const GError *err)
{
    for (guint k = 0; k < result->domains->len; k++) {
        VsBackupDomainResult *dr = result->domains->pdata[k];
        if (!dr->error)
            dr->error = g_error_copy(err);
        dr->ok = false;
        g_free(dr->consistency);
        dr->consistency = g_strdup("none");
    }
}

static VsBackupDomainResult *
domain_result_of(VsBackupResult *result, const char *name)
{
    VsBackupDomainResult *dr = NULL;

    for (guint i = 0; i < result->domains->len; i++)
        if (!g_strcmp0(((VsBackupDomainResult *)result->domains->pdata[i])->name, name))
            dr = result->domains->pdata[i];
    return dr;
}

/* An interrupted run whose domains a migrate --abort-backup asked for: each
 * such domain says so, its error the migration's (arbitrate.c), no backup
 * of it written. */
static void
mark_aborted_for_migration(Run *run, VsBackupResult *result)
{
    if (!vs_interrupted())
        return;
    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        VsBackupDomainResult *dr = domain_result_of(result, j->name);
        g_autofree char *why = dr && !dr->ok ? vs_backup_abort_request(j->uuid) : NULL;

        if (!why)
            continue;
        g_clear_error(&dr->error);
        g_set_error(&dr->error, VS_ERROR, VS_ERROR_INTERRUPTED,
                    "backup: domain '%s': aborted for %s: no backup was written; the guest is "
                    "back on its disks", j->name, why);
        dr->aborted = g_strdup("migration");
    }
}

/* KVM_VM_CONFIG_DIR: each domain the backup holds has its definition written
 * there as NAME.xml (0600: it may name storage secrets' users, paths), as the
 * backup saved it. A file that cannot be written is a note: the backup stands.
 * Libvirt's own /etc/libvirt/qemu, Snap Creator's default, already holds them:
 * nothing is written there behind libvirt's back. */
static void
save_definitions(Run *run, VsBackupResult *result)
{
    const char *dir = vs_dir_is_libvirts_own(run->opts->config_dir) ? NULL : run->opts->config_dir;

    for (guint i = 0; dir && i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        VsBackupDomainResult *dr = domain_result_of(result, j->name);
        g_autoptr(GError) err = NULL;

        if (!dr || !dr->ok || !j->xml)
            continue;
        if (!vs_definition_write(dir, j->name, j->xml, &err))
            result_note(dr, "KVM_VM_CONFIG_DIR: its definition not written: %s", err->message);
    }
}

VsBackupResult *
backup_result(Run *run)
{
    g_autoptr(GError) err = NULL;
    VsBackupResult *result = NULL;
    bool committed = false;

    assemble_manifest(run);
    if (run->warm)
        g_thread_join(run->warm);
    if (run->manifest->domains->len > 0)
        committed = commit_manifest(run, &err);
    if (run->job_waiter && !g_thread_join(run->job_waiter))
        run->all_clean = false;
    result = make_result(run, run->group_ms);
    if (run->manifest->domains->len > 0) {
        if (committed) {
            result->id = g_strdup(run->manifest->id);
            save_definitions(run, result);
        } else
            fail_uncommitted(result, err);
    }
    mark_aborted_for_migration(run, result);
    for (guint i = 0; i < run->not_found->len; i++) {
        const VsProblem *p = run->not_found->pdata[i];

        g_ptr_array_add(result->domains, missing_domain(p->domain, p->error));
    }
    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        if (j->method->after_manifest)
            j->method->after_manifest(run, j, result, domain_result_of(result, j->name));
    }
    result->prepare_ms = (run->t_frozen - run->t_start) / 1000;
    result->freeze_phase_ms = (run->t_copied - run->t_frozen) / 1000;
    result->copy_ms = (run->t_ended - run->t_copied) / 1000;
    result->end_ms = (run->t_manifest - run->t_ended) / 1000;
    result->manifest_ms = (g_get_monotonic_time() - run->t_manifest) / 1000;
    g_ptr_array_extend_and_steal(result->notes, g_steal_pointer(&run->notes));

    /* A journal with overlays still applied, or anything else left, stays for recover. */
    for (guint i = 0; i < run->doms->len; i++)
        run->all_clean = run->all_clean && !((DomJob *)run->doms->pdata[i])->left;
    if (run->all_clean) {
        vs_journal_finish(run->journal);
    } else {
        vs_journal_incomplete(run->journal, NULL);
        vs_journal_close(run->journal);
    }
    return result;
}
