/* The settle stage of a backup run: what made the point in time is undone.
 * Overlays are committed back into their images (pivot on READY; a commit that
 * does not converge is retried with the guest frozen) and removed once libvirt
 * confirms nothing names them; backup jobs are aborted and, on a thread that
 * overlaps the manifest's commit, torn down with their files. Anything not
 * known for sure stays for `virtsnap recover`. */
#include "config.h"
#include "backup-internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Commit back                                                                */

/* A commit that does not converge while the guest writes converges as soon as
 * the guest cannot write: freeze it, commit and pivot within --max-freeze,
 * thaw. The freeze is journaled and guarded like the snapshot's (a guardian
 * thaws if we die or hang), and the commit runs at full speed. False leaves the
 * guest on its overlay, thawed, as the first attempt did. */
static bool
commit_frozen(Run *run, DomJob *j, DiskJob *d, int64_t *held_ms, GError **error)
{
    const char *uuids[] = { j->uuid, NULL };
    const VsBackupOptions *o = run->opts;
    g_autoptr(GError) thaw_err = NULL;
    VsGuardian *guardian;
    int64_t t0;
    bool ok = false, thawed;

    *held_ms = -1;
    guardian = vs_guardian_start(o->guardian_exe, o->uri, o->state_dir, run->manifest->id,
                                 o->max_freeze_ms, uuids, o->agent_timeout, error);
    if (!guardian)
        return false;
    if (!journal(run, j, "freeze", NULL, NULL, NULL, NULL, NULL, NULL)) {
        vs_guardian_stop(guardian, true);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "commit: domain '%s': cannot journal the freeze",
                    j->name);
        return false;
    }
    t0 = vs_now_ms();
    if (vs_agent_freeze(j->dom, o->agent_timeout, error)) {
        /* Leave time for the pivot and the thaw inside the bound. */
        int budget = (int)(o->max_freeze_ms - (vs_now_ms() - t0)) - 1000;
        if (budget <= 0)
            g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                        "commit: domain '%s' disk %s: no time left in --max-freeze for a commit",
                        j->name, d->target);
        else
            ok = vs_blockcommit_pivot_limited(vs_link_conn(run->link), j->dom, d->target, budget,
                                              0, error);
    }
    thawed = vs_agent_thaw(j->dom, o->agent_timeout, &thaw_err);
    *held_ms = vs_now_ms() - t0;
    vs_guardian_stop(guardian, thawed);
    if (thawed)
        journal(run, j, "thawed", NULL, NULL, NULL, NULL, NULL, NULL);
    else
        dom_fail(j, "%s (the guardian tries again at once)", thaw_err->message);
    return ok;
}

/* D's overlay stays where it is, for recover: the domain fails with WHY and
 * the file's name, and the journal is kept. */
static bool
keep_overlay(DomJob *j, DiskJob *d, bool on_it, const char *fmt, ...) G_GNUC_PRINTF(4, 5);

static bool
keep_overlay(DomJob *j, DiskJob *d, bool on_it, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *why = NULL;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    msg = on_it ? g_strdup_printf("%s; the domain runs on overlay %s until "
                                                   "`virtsnap recover` commits it", why, d->overlay)
                                 : g_strdup_printf("%s; overlay %s is kept for `virtsnap recover`",
                                                   why, d->overlay);

    j->left = true;
    /* Never hidden behind an earlier error: a guest left on an overlay matters. */
    if (j->error)
        add_note(j, "%s", msg);
    dom_fail(j, "%s", msg);
    return false;
}

/* The overlay is off the disk's chain: it goes once libvirt, on a live
 * connection, confirms that nothing of the domain names it any more. */
static bool
drop_overlay(Run *run, DomJob *j, DiskJob *d)
{
    g_autoptr(GError) err = NULL;
    int use = vs_domain_uses_file(vs_link_conn(run->link), j->uuid, d->overlay, &err);

    if (use < 0)
        return keep_overlay(j, d, false, "%s", err->message);
    if (use > 0)
        return keep_overlay(j, d, false, "commit: domain '%s' still names the overlay of disk %s "
                            "after its commit", j->name, d->target);
    if (unlink(d->overlay) < 0 && errno != ENOENT) {
        dom_fail(j, "commit: cannot remove overlay %s: %s", d->overlay, g_strerror(errno));
        return false;
    }
    journal(run, j, "committed", "disk", d->target, NULL, NULL, NULL, NULL);
    progress(run, VS_BACKUP_PHASE_COMMIT, j->name, d->target, 1, 1);
    vs_fault_point("after-commit");
    return true;
}

/* Commits D's overlay and pivots, once the guest keeps writing faster than
 * the commit copies with the guest frozen (commit_frozen). */
static bool
commit_pivot(Run *run, DomJob *j, DiskJob *d, GError **error)
{
    g_autoptr(GError) err = NULL, ferr = NULL;
    int64_t held = -1;

    if (vs_blockcommit_pivot_limited(vs_link_conn(run->link), j->dom, d->target,
                                     run->opts->commit_timeout * 1000, run->opts->commit_bandwidth,
                                     &err))
        return true;
    if (!g_error_matches(err, VS_ERROR, VS_ERROR_TIMEOUT) || !j->frozen ||
        run->opts->quiesce == VS_QUIESCE_OFF) {
        g_propagate_error(error, g_steal_pointer(&err));
        return false;
    }
    if (commit_frozen(run, j, d, &held, &ferr)) {
        add_note(j, "%s; finished with the guest frozen for %" G_GINT64_FORMAT " ms", err->message,
                 held);
        return true;
    }
    g_set_error(error, VS_ERROR, ferr->code, "%s; then, with the guest frozen: %s", err->message,
                ferr->message);
    return false;
}

/* D's overlay back into its base. Each try starts from what libvirt says now,
 * so a try cut short by a closed connection resumes on a new one (a commit it
 * left running is cancelled and begun again; meanwhile the guest stays on the
 * overlay, which holds everything). A domain that stopped, or anything not
 * known for sure, keeps the overlay for recover. */
static bool
commit_disk(Run *run, DomJob *j, DiskJob *d)
{
    for (int attempt = 1;; attempt++) {
        g_autoptr(GError) err = NULL;
        g_autofree char *cur = NULL;
        bool retry = attempt < 4;

        if (!dom_revive(run, j, "commit", &err))
            return keep_overlay(j, d, false, "%s", err->message);
        /* -1 on a live connection: a transient domain gone with its QEMU. */
        if (virDomainIsActive(j->dom) != 1 && vs_link_alive(run->link))
            return keep_overlay(j, d, false, "commit: domain '%s' stopped during its backup (its "
                                "QEMU ended) with what it wrote since the snapshot in its overlay",
                                j->name);
        if (!vs_link_alive(run->link) && retry)
            continue;
        cur = vs_domain_disk_source(j->dom, d->target, false, &err);
        if (!cur) {
            if (retry && !vs_link_alive(run->link))
                continue;
            return keep_overlay(j, d, false, "%s", err->message);
        }
        if (strcmp(cur, d->overlay) != 0) {
            /* Committed by a try cut short, or never applied. */
            if (d->path && attempt > 1 && strcmp(cur, d->path) != 0)
                return keep_overlay(j, d, false, "commit: domain '%s' disk %s is on neither "
                                    "the overlay nor its original (%s)", j->name, d->target, cur);
            return drop_overlay(run, j, d);
        }
        progress(run, VS_BACKUP_PHASE_COMMIT, j->name, d->target, 0, 1);
        journal(run, j, "commit", "disk", d->target, "overlay", d->overlay, NULL, NULL);
        vs_fault_point("before-commit");
        if (!commit_pivot(run, j, d, &err)) {
            if (retry && !vs_link_alive(run->link))
                continue;
            return keep_overlay(j, d, virDomainIsActive(j->dom) == 1, "%s", err->message);
        }
        g_free(cur);
        cur = vs_domain_disk_source(j->dom, d->target, false, &err);
        if (!cur && retry && !vs_link_alive(run->link))
            continue;
        if (g_strcmp0(cur, d->path ? d->path : cur) != 0) {
            dom_fail(j, "commit: domain '%s' disk %s: after the pivot the disk is %s, not %s",
                     j->name, d->target, cur ? cur : "(none)", d->path);
            j->left = true;
            return false;
        }
        return drop_overlay(run, j, d);
    }
}

/* A guest QEMU paused for a failed write (the overlay's or scratch file's
 * file system full) goes on once virtsnap's file is out of its way: its
 * write is retried then, so nothing is lost. */
static void
resume_paused(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;
    bool resumed = false;

    if (!j->active)
        return;
    if (!dom_revive(run, j, "resume", &err) || !vs_domain_resume_paused(j->dom, &resumed, &err))
        dom_fail(j, "%s", err->message);
    else if (resumed)
        add_note(j, "the guest paused for an I/O error during the backup (a file system of "
                 "virtsnap's full?) and was resumed once virtsnap's file was out of its way");
}

static bool
commit_domain(Run *run, DomJob *j)
{
    bool ok = true;

    for (guint k = 0; k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];

        if (d->overlay && !commit_disk(run, j, d))
            ok = false;
    }
    if (ok)
        resume_paused(run, j);
    return ok;
}

/* ------------------------------------------------------------------------- */
/* End of a pull-mode job                                                     */

static void
remove_job_dirs(DomJob *j)
{
    for (guint k = 0; k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];
        if (d->scratch)
            unlink(d->scratch);
    }
    if (j->scratch_dir)
        rmdir(j->scratch_dir);
    if (j->sock_dir) {
        g_autofree char *sock = g_build_filename(j->sock_dir, "nbd.sock", NULL);
        unlink(sock);
        rmdir(j->sock_dir);
    }
}

static void
job_failed(DomJob *j, const GError *err)
{
    if (j->error)
        add_note(j, "%s; `virtsnap recover` ends it", err->message);
    dom_fail(j, "%s; `virtsnap recover` ends it", err->message);
}

/* The copy is over (or failed): the job is aborted, which is how a pull job
 * ends and what releases the scratch files and the NBD server. An abort cut
 * short by a closed connection is tried again on a new one. */
static bool
abort_job(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;

    if (!j->job_started)
        return true;
    vs_fault_point("before-commit");
    for (int attempt = 1; attempt < 4; attempt++) {
        g_clear_error(&err);
        if (dom_revive(run, j, "backup-end", &err) && vs_backup_job_abort(j->dom, j->name, &err)) {
            j->job_aborted = true;
            return true;
        }
        if (vs_link_alive(run->link))
            break;
    }
    j->left = true;
    job_failed(j, err);
    return false;
}

/* Once QEMU has torn the aborted job down, as libvirt confirms, its files go;
 * a job that will not end, or that libvirt cannot tell about, keeps them for
 * recover. The guest goes on if a full scratch file system paused it. */
static bool
finish_job(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;

    if (j->job_started) {
        bool gone = false;

        if (!j->job_aborted)
            return false;
        for (int attempt = 1; !gone && attempt < 4; attempt++) {
            g_clear_error(&err);
            gone = dom_revive(run, j, "backup-end", &err) &&
                   vs_backup_job_wait_gone(j->dom, j->name, &err);
            if (!gone && vs_link_alive(run->link))
                break;
        }
        if (!gone) {
            j->left = true;
            job_failed(j, err);
            return false;
        }
        j->job_started = false;
    } else if (j->left) {
        /* A begin whose outcome is unknown: its files may be the job's. */
        return false;
    }
    remove_job_dirs(j);
    journal(run, j, "job-ended", NULL, NULL, NULL, NULL, NULL, NULL);
    resume_paused(run, j);
    return true;
}

/* A thread: the teardown of the aborted jobs (tens of ms, more on a loaded
 * host) overlaps the commit of the manifest, which does not depend on it.
 * Touches only the jobs' error, note and files, and the journal, which the
 * main thread leaves alone until it joins. Non-NULL when every job ended. */
static gpointer
finish_jobs(gpointer data)
{
    Run *run = data;
    bool ok = true;

    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        if (j->begin)
            ok = finish_job(run, j) && ok;
    }
    return ok ? GINT_TO_POINTER(1) : NULL;
}

void
backup_settle(Run *run)
{
    bool begin_jobs = false;

    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        if (j->begin) {
            begin_jobs = true;
            if (!abort_job(run, j))
                run->all_clean = false;
        } else if (j->snapshotted && !commit_domain(run, j)) {
            run->all_clean = false;
        }
    }
    if (begin_jobs)
        run->job_waiter = g_thread_new("virtsnap-jobs", finish_jobs, run);
}
