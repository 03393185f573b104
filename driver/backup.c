/* `virtsnap backup`: one consistent point in time for a group of running
 * domains without suspending any of them. The order is what makes it safe:
 * journal the intent; arm the guardian; freeze every guest in parallel, each
 * call bounded; one atomic disk-only external snapshot per domain; thaw, always;
 * copy the now stable images into the repository with several disks in flight;
 * commit every overlay back, pivoting only on READY; write the manifest last.
 * Each domain succeeds or fails on its own, and whatever fails, cleanup (thaw,
 * commit, removal of our overlays) runs and never hides the first error.
 *
 * With --mode=begin the snapshot step is a libvirt pull-mode backup job instead
 * (virDomainBackupBegin inside the same frozen window, creating a checkpoint), the
 * copy reads the job's NBD exports (incrementally: only chunks the dirty bitmap
 * touches are read, the others are taken from the base backup's manifest), and
 * instead of a commit the job is ended and this repository's older checkpoints
 * are deleted (or, when the backup failed, the new one). With --push (or a
 * push-mode --backup-xml) the job is a push-mode one: QEMU writes each disk, or
 * for an incremental only its changed clusters, into a qcow2 file of ours; once
 * the job has ended by itself, the copy reads those files (a partly changed chunk
 * is completed from the base backup's chunk) and removes them. */
#include "config.h"
#include "backup-internal.h"
#include "vs-enum.h"
#include "retry.h"

#include <string.h>

VS_ENUM_IMPL(vs_quiesce_mode, VsQuiesceMode, VS_QUIESCE_LAST, "try", "require", "off")
VS_ENUM_IMPL(vs_data_path, VsDataPath, VS_DATA_PATH_LAST, "auto", "direct", "host")
VS_ENUM_IMPL(vs_backup_method, VsBackupMethod, VS_BACKUP_METHOD_LAST, "overlay", "begin", "auto")
/* "default" is not a level one can ask for by name. */
VS_ENUM_IMPL(vs_backup_level, VsBackupLevel, VS_BACKUP_LEVEL_LAST, NULL, "full", "inc", "diff")

void
vs_backup_options_init(VsBackupOptions *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->quiesce = VS_QUIESCE_TRY;
    opts->max_freeze_ms = 10000;
    opts->agent_timeout = 5;
    opts->commit_timeout = 600;
    opts->commit_bandwidth = 0;
    opts->parallel_disks = 2;
    opts->copy_nice = 10;
    opts->retry_count = 3;
}

/* A copied disk that never made it into a manifest (its domain failed). */
void
manifest_disk_free(VsManifestDisk *m)
{
    vs_manifest_disk_free(m);
}

void
disk_job_free(DiskJob *d)
{
    manifest_disk_free(d->mdisk);
    g_free(d->target); g_free(d->format); g_free(d->path); g_free(d->url); g_free(d->direct_url);
    g_free(d->direct_failed);
    g_free(d->overlay); g_clear_error(&d->error);
    g_free(d->scratch); g_free(d->read);
    g_clear_pointer(&d->snap, vs_manifest_snapshot_free);
    g_clear_pointer(&d->snap_provider, vs_snap_provider_free);
    if (d->chain)
        g_ptr_array_unref(d->chain);
    g_free(d);
}

void
dom_job_free(DomJob *j)
{
    if (j->dom)
        vs_control()->domain_free(j->dom);
    vs_domain_unlock(j->lock_fd);
    g_free(j->name); g_free(j->uuid); g_free(j->xml);
    g_clear_pointer(&j->live_def, vs_domain_def_free);
    g_free(j->consistency); g_ptr_array_unref(j->notes); g_clear_error(&j->error);
    g_clear_error(&j->thread_error);
    g_ptr_array_unref(j->disks);
    g_free(j->incremental);
    if (j->priv)
        j->method->free_priv(j->priv);
    g_free(j);
}

void
manifest_image_free(VsManifestImage *i)
{
    g_free(i->path);
    g_free(i->format);
    g_free(i);
}


/* First error wins: later ones are dropped, the first is what the user sees. */
void
dom_fail(DomJob *j, const char *fmt, ...)
{
    va_list ap;

    if (j->error)
        return;
    va_start(ap, fmt);
    j->error = g_error_new_valist(VS_ERROR, VS_ERROR_FAILED, fmt, ap);
    va_end(ap);
}

void
dom_fail_error(DomJob *j, const GError *err)
{
    if (!j->error)
        j->error = g_error_copy(err);
}

void
dom_fail_from(DomJob *j, const GError *cause, const char *fmt, ...)
{
    va_list ap;

    if (j->error)
        return;
    va_start(ap, fmt);
    j->error = g_error_new_valist(cause->domain, cause->code, fmt, ap);
    va_end(ap);
}

/* J->dom on a live connection: reopened (libvirtd restarted) and looked up
 * again when needed. WHAT names the step for the error. */
bool
dom_revive(Run *run, DomJob *j, const char *what, GError **error)
{
    VsRetry r = VS_RETRY_INIT(run->opts->retry_count);
    bool ok;

    if (!vs_link_revive(run->link, what, error))
        return false;
    /* The lookup is retried; a domain gone or a connection closed is not. */
    while (!(ok = vs_link_domain(run->link, j->uuid, &j->dom, &j->gen, error)) && vs_retry_again(&r, error))
        ;
    vs_retry_note(&r, "domain lookup", j->notes);
    if (!ok)
        vs_error_prefix(error, "%s: domain '%s'", what, j->name);
    return ok;
}

void
progress(Run *run, VsBackupPhase phase, const char *dom, const char *disk, uint64_t done,
         uint64_t total)
{
    if (!run->opts->progress)
        return;
    g_mutex_lock(&run->progress_lock);
    run->opts->progress(phase, dom, disk, done, total, run->opts->progress_opaque);
    g_mutex_unlock(&run->progress_lock);
}

/* J's record of a kind that says nothing else (vs_journal_freeze, _thawed,
 * _job_ended), through WRITE. */
bool
journal(Run *run, DomJob *j, bool (*write)(VsJournal *, const char *, const char *, GError **))
{
    g_autoptr(GError) err = NULL;

    if (write(run->journal, j ? j->name : NULL, j ? j->uuid : NULL, &err))
        return true;
    /* Without a journal the step cannot be undone after a crash: do not take it. */
    if (j)
        dom_fail_error(j, err);
    return false;
}

/* Notes accumulate: a fallback to a full backup and a failed freeze both matter. */
void
add_note(DomJob *j, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(j->notes, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

/* J's domain in backup M (by UUID when both have one), or NULL. */
VsManifestDomain *
manifest_domain_of(const VsManifest *m, const DomJob *j)
{
    for (guint k = 0; k < m->domains->len; k++) {
        VsManifestDomain *c = m->domains->pdata[k];
        if (j->uuid && c->uuid ? !g_strcmp0(c->uuid, j->uuid) : !g_strcmp0(c->name, j->name))
            return c;
    }
    return NULL;
}


/* --storage-snapshot and the options that go with it. */
static bool
storage_options_ok(const VsBackupOptions *opts, GError **error)
{
    static const char *const providers[] = { "auto", "reflink", "btrfs", "rbd", "hook", NULL };
    const char *s = opts->storage_snapshot;

    if (s && !g_strv_contains(providers, s)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: --storage-snapshot=%s: not auto, reflink, "
                    "btrfs, rbd or hook", s);
        return false;
    }
    if (!s && (opts->no_copy || opts->keep_snapshot || opts->snapshot_config)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: %s goes with --storage-snapshot",
                    opts->no_copy ? "--no-copy" : opts->keep_snapshot ? "--keep-snapshot" : "--snapshot-config");
        return false;
    }
    if (opts->no_copy && opts->keep_snapshot) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: --no-copy keeps the snapshots already "
                    "(they are the backup); --keep-snapshot is for a backup that copies: give one of them");
        return false;
    }
    if (s && (opts->mode != VS_BACKUP_METHOD_OVERLAY || opts->backup_xml_path || opts->checkpoint_xml_path ||
              opts->push || opts->push_dir)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: --storage-snapshot takes the point in "
                    "time with overlays and the storage: it does not go with --mode=begin/auto, --push, "
                    "--backup-xml or --checkpoint-xml");
        return false;
    }
    return true;
}

bool
vs_backup_check_options(const char *const *names, bool all, const VsBackupOptions *opts,
                        GError **error)
{
    bool named = names && names[0];

    if (!opts->repo_path || !*opts->repo_path) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: no repository: give --repo DIR or set VIRTSNAP_REPO");
        return false;
    }
    if (all == named) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, all ?
                    "backup: --all and domain names exclude each other" :
                    "backup: name the domains to back up, or give --all");
        return false;
    }
    for (size_t i = 0; named && names[i]; i++) {
        if (!*names[i]) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: a domain name given is empty");
            return false;
        }
    }
    if ((opts->push || opts->push_dir) && opts->mode == VS_BACKUP_METHOD_OVERLAY) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: --push and --push-dir choose how a backup job hands over the disks: "
                    "they go with --mode=begin or --mode=auto");
        return false;
    }
    if (!storage_options_ok(opts, error))
        return false;
    if ((opts->backup_xml_path || opts->checkpoint_xml_path) && (all || names[1])) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: --backup-xml and --checkpoint-xml describe one domain's job: name "
                    "one domain");
        return false;
    }
    return true;
}


/* What the stages left in RUN, whatever stage the run ended in. */
static void
run_clear(Run *run)
{
    /* The jobs exist when the plan succeeded: the run went to its end. */
    if (run->doms) {
        g_ptr_array_unref(run->doms);
        vs_repo_unlock(run->repo);
    }
    /* After the jobs: their bases are among them. */
    g_clear_pointer(&run->manifests, g_hash_table_unref);
    g_clear_pointer(&run->snap_config, vs_snap_config_free);
    g_strfreev(run->repo_ids);
    g_mutex_clear(&run->progress_lock);
    g_clear_pointer(&run->checkpoint_xml, vs_checkpoint_def_free);
    g_clear_pointer(&run->job_xml, vs_backup_def_free);
    g_free(run->repo_tag);
    g_free(run->remote);
    g_clear_pointer(&run->iscsi_auth, vs_iscsi_auth_free);
    g_clear_pointer(&run->manifest, vs_manifest_free);
    g_clear_pointer(&run->repo, vs_repo_close);
    g_ptr_array_unref(run->not_found);
    if (run->notes)
        g_ptr_array_unref(run->notes);
    if (run->discovered)
        g_ptr_array_unref(run->discovered);
}

/* The pipeline: each stage is a file named for it (backup-internal.h). A
 * domain that fails in one stage is carried through the others with its
 * error, so that cleanup runs for it and the result says why. DISCOVERED
 * (taken; NULL: the plan discovers NAMES) are the domains to back up. */
static VsBackupResult *
run_pipeline(virConnectPtr conn, const char *const *names, bool all, GPtrArray *discovered,
             const VsBackupOptions *opts, GError **error)
{
    g_autoptr(VsLink) link = vs_link_new(conn, opts->uri);
    Run run = { .conn = conn, .link = link, .opts = opts, .all_clean = true,
                .discovered = discovered };
    VsBackupResult *result = NULL;

    run.t_start = g_get_monotonic_time();
    if (opts->deadline_s > 0) {
        g_autofree char *label = g_strdup_printf("SC_AGENT_TIMEOUT=%d s", opts->deadline_s);
        vs_interrupt_set_deadline(opts->deadline_s, label);
    }
    run.notes = g_ptr_array_new_with_free_func(g_free);
    run.not_found = g_ptr_array_new_with_free_func((GDestroyNotify)vs_problem_free);
    g_mutex_init(&run.progress_lock);
    if (backup_plan(&run, names, all, error)) {
        backup_warm_start(&run);
        run.t_frozen = g_get_monotonic_time();
        backup_window(&run);
        run.t_copied = g_get_monotonic_time();
        backup_copy(&run);
        run.t_ended = g_get_monotonic_time();
        backup_settle(&run);
        run.t_manifest = g_get_monotonic_time();
        result = backup_result(&run);
    }
    run_clear(&run);
    return result;
}

VsBackupResult *
vs_backup_run(virConnectPtr conn, const char *const *names, bool all,
              const VsBackupOptions *opts, GError **error)
{
    return run_pipeline(conn, names, all, NULL, opts, error);
}

VsBackupResult *
backup_run_discovered(virConnectPtr conn, GPtrArray *discovered, const VsBackupOptions *opts,
                      GError **error)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new();

    for (guint i = 0; i < discovered->len; i++)
        g_ptr_array_add(names, ((VsDiscoveredDomain *)discovered->pdata[i])->name);
    g_ptr_array_add(names, NULL);
    return run_pipeline(conn, (const char *const *)names->pdata, false, discovered, opts, error);
}
