/* The settle stage of a backup run: what made each domain's point in time is
 * undone by its method (overlays committed back, backup jobs ended: see
 * method-*.c), and whatever teardown the methods leave for later runs on a
 * thread of its own, overlapping the manifest's commit. Anything not known for
 * sure stays for `virtsnap recover`. */
#include "config.h"
#include "backup-internal.h"

/* A guest QEMU paused for a failed write (the overlay's or scratch file's
 * file system full) goes on once virtsnap's file is out of its way: its
 * write is retried then, so nothing is lost. */
void
resume_paused(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;
    bool resumed = false;

    if (!j->active)
        return;
    if (!dom_revive(run, j, "resume", &err) || !vs_domain_resume_paused(j->dom, &resumed, &err))
        dom_fail_error(j, err);
    else if (resumed)
        add_note(j, "the guest paused for an I/O error during the backup (a file system of "
                 "virtsnap's full?) and was resumed once virtsnap's file was out of its way");
}

/* A thread: the teardown of the ended jobs (tens of ms, more on a loaded
 * host) overlaps the commit of the manifest, which does not depend on it.
 * Touches only the jobs' error, note and files, and the journal, which the
 * main thread leaves alone until it joins. Non-NULL when every job ended. */
static gpointer
finish_all(gpointer data)
{
    Run *run = data;
    bool ok = true;

    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        if (j->method->finish)
            ok = j->method->finish(run, j) && ok;
    }
    return ok ? GINT_TO_POINTER(1) : NULL;
}

void
backup_settle(Run *run)
{
    bool finish = false;

    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];

        if (!j->method->settle(run, j))
            run->all_clean = false;
        finish = finish || j->method->finish;
    }
    if (finish)
        run->job_waiter = g_thread_new("virtsnap-jobs", finish_all, run);
}
