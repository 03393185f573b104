/* The overlay method: a running domain's point in time is one atomic
 * disk-only external snapshot onto overlays of ours (qcow2 files over each
 * disk, made before the freeze where possible), the copy reads the now stable
 * images below them (as --data-path says), and each overlay is committed back
 * (active commit, pivot only on READY; a commit that does not converge while
 * the guest writes is finished with the guest frozen) and removed once libvirt
 * confirms nothing names it. Read-only and shut-off disks get no overlay: a
 * shut-off domain is read as it is, by this method with nothing to snapshot.
 * Every overlay is journaled before it is made: `virtsnap recover` commits or
 * removes what a dead run left. */
#include "config.h"
#include "backup-internal.h"
#include "vs-block.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    bool reuse_ext;          /* overlays made before the freeze: the snapshot reuses them */
} OverlayPriv;

static bool
any_overlay(DomJob *j)
{
    for (guint i = 0; i < j->disks->len; i++)
        if (((DiskJob *)j->disks->pdata[i])->overlay)
            return true;
    return false;
}

/* Where D's overlay goes: beside a file disk, else in --overlay-dir or the
 * state directory. */
static char *
overlay_path(Run *run, DomJob *j, const DiskJob *d)
{
    g_autofree char *base = NULL;

    if (run->opts->overlay_dir) {
        base = g_strdup_printf("%s.%s.virtsnap-%s.qcow2", j->name, d->target, run->manifest->id);
        /* Absolute: QEMU opens it, from a working directory of its own. */
        g_autofree char *dir = g_canonicalize_filename(run->opts->overlay_dir, NULL);

        return g_build_filename(dir, base, NULL);
    }
    if (d->is_file && d->path && g_path_is_absolute(d->path))
        return g_strdup_printf("%s.virtsnap-%s.qcow2", d->path, run->manifest->id);
    /* Block devices, volumes and network disks have no directory of their own. */
    base = g_strdup_printf("%s.%s.virtsnap-%s.qcow2", j->uuid, d->target, run->manifest->id);
    return g_build_filename(vs_state_dir(run->opts->state_dir), "overlays", base, NULL);
}

/* An overlay for every disk of a running domain but a read-only one, which
 * does not change under the guest. */
static void
overlay_plan(Run *run, DomJob *j, const VsDomainDef *def)
{
    if (!j->active)
        return;
    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        const VsDiskDef *dd = def ? vs_domain_def_find_disk(def, d->target) : NULL;

        if (!(dd && (dd->readonly || dd->shareable)))
            d->overlay = overlay_path(run, j, d);
    }
    j->priv = g_new0(OverlayPriv, 1);
    j->window = any_overlay(j);
}

/* Creating the overlays inside the frozen window costs 20-60 ms per snapshot
 * here; made beforehand (their header naming the original image and format, as
 * libvirt would write it) the snapshot only has to switch to them. Anything
 * unusual (a network original, a probe that fails) keeps libvirt's own way. */
static void
precreate_overlays(DomJob *j)
{
    OverlayPriv *p = j->priv;
    guint made = 0;

    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        g_autoptr(VsImageInfo) info = NULL;
        g_autofree char *size = NULL, *errout = NULL;
        int status = 0;

        if (!d->overlay)
            continue;
        if (!d->path || !(info = vs_image_probe(d->path, NULL)))
            goto undo;
        size = g_strdup_printf("%" G_GUINT64_FORMAT, info->virtual_size);
        {
            const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", d->path,
                                   "-F", d->format, d->overlay, size, NULL };
            if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                              NULL, NULL, NULL, &errout, &status, NULL) ||
                !g_spawn_check_wait_status(status, NULL))
                goto undo;
        }
        made = i + 1;
    }
    p->reuse_ext = made > 0;
    return;
undo:
    for (guint i = 0; i < made; i++) {
        DiskJob *d = j->disks->pdata[i];
        if (d->overlay)
            unlink(d->overlay);
    }
}

/* Each overlay journaled (recover commits or removes it), then made. */
static void
overlay_prepare(Run *run, DomJob *j)
{
    for (guint k = 0; k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];
        g_autoptr(GError) jerr = NULL;
        if (d->overlay &&
            !vs_journal_overlay(run->journal, j->name, j->uuid, d->target, d->overlay,
                                d->path ? d->path : d->url, d->format, &jerr))
            dom_fail_error(j, jerr);
    }
    if (!j->error)
        precreate_overlays(j);
}

/* Removes J's overlay files that the domain, as a live connection says, does
 * not use: made for a snapshot that failed or never came (libvirt's atomic
 * snapshot undoes itself, not always its files). 1 when one is in use after
 * all (a snapshot whose reply was lost with the connection), -1 when that
 * could not be known: those files stay. */
static int
drop_unused_overlays(Run *run, DomJob *j)
{
    int kept = 0;

    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        int use;

        if (!d->overlay || !g_file_test(d->overlay, G_FILE_TEST_EXISTS))
            continue;
        use = vs_domain_uses_file(vs_link_conn(run->link), j->uuid, d->overlay, NULL);
        if (use == 0)
            unlink(d->overlay);
        else if (use > 0 || kept == 0)
            kept = use;
    }
    return kept;
}

static bool
overlay_unprepare(Run *run, DomJob *j)
{
    return drop_unused_overlays(run, j) == 0;
}

/* One atomic disk-only external snapshot of every disk the domain runs with:
 * onto our overlay, or none for a disk without one. */
static void
overlay_point_in_time(Run *run, DomJob *j)
{
    OverlayPriv *p = j->priv;
    g_autoptr(VsSnapshotDef) snap = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *name = g_strdup_printf("virtsnap-%s", run->manifest->id);
    unsigned flags = VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC |
                     VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA;
    const VsDomainDef *def = j->live_def;
    GError *cause = NULL;

    /* libvirt would take a shut-off domain's snapshot offline, rewriting its
     * definition: a domain whose QEMU died since it was prepared is not one to
     * back up now. */
    if (vs_control()->domain_is_active(j->dom) == 0) {
        g_set_error(&j->thread_error, VS_ERROR, VS_ERROR_STOPPED, "snapshot: domain '%s' stopped "
                    "before its snapshot (its QEMU ended): not backed up", j->name);
        return;
    }
    if (p->reuse_ext)
        flags |= VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT;
    snap = vs_snapshot_def_new(name);
    snap->memory = VS_SNAPSHOT_LOCATION_NO;
    /* Every disk the domain runs with must be named (a hot-plugged one is not
     * in its definition): one left out would get libvirt's default overlay. */
    for (guint i = 0; def && i < def->disks->len; i++) {
        const VsDiskDef *dd = def->disks->pdata[i];
        DiskJob *job = NULL;
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *c = j->disks->pdata[k];
            if (!g_strcmp0(c->target, dd->target_dev))
                job = c;
        }
        if (job && job->overlay) {
            VsSnapshotDiskDef *sd = vs_snapshot_def_add_disk(snap, job->target,
                                                             VS_SNAPSHOT_LOCATION_EXTERNAL);
            sd->src = vs_storage_source_new(VS_DISK_TYPE_FILE);
            sd->src->path = g_strdup(job->overlay);
            sd->src->format = g_strdup("qcow2");
        } else {
            vs_snapshot_def_add_disk(snap, dd->target_dev, VS_SNAPSHOT_LOCATION_NO);
        }
    }
    xml = vs_snapshot_def_format(snap);
    if (!vs_control()->snapshot_create(j->dom, xml, flags, &cause)) {
        vs_control_error(&j->thread_error, cause, VS_ERROR_LIBVIRT, "snapshot: domain '%s'",
                         j->name);
        return;
    }
    j->snapshotted = true;
    j->pit_ms = vs_now_ms();
    vs_fault_point("after-snapshot");
}

/* The snapshot did not succeed as far as we know: an overlay in use after all
 * (a snapshot whose reply was lost with the connection) is committed like any
 * other; when that cannot be known, the files stay for recover. */
static void
overlay_recheck(Run *run, DomJob *j)
{
    switch (drop_unused_overlays(run, j)) {
    case 1:
        j->snapshotted = true;
        add_note(j, "the snapshot was taken though libvirt's reply was lost; it was committed");
        break;
    case -1:
        j->left = true;
        break;
    }
}

/* The image below the overlay, stable now, as --data-path says. */
static VsSource *
overlay_open_disk(Run *run, DomJob *j, DiskJob *d, VsCopyOptions *copts, GError **error)
{
    (void)copts;
    return open_reader(run, j, d, error);
}

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
    if (!journal(run, j, vs_journal_freeze)) {
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
        journal(run, j, vs_journal_thawed);
    else
        dom_fail_from(j, thaw_err, "%s (the guardian tries again at once)", thaw_err->message);
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
    if (!vs_journal_committed(run->journal, j->name, j->uuid, d->target, &err))
        dom_fail_error(j, err);
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
        g_autoptr(GError) jerr = NULL;
        g_autofree char *cur = NULL;
        bool retry = attempt < 4;

        if (!dom_revive(run, j, "commit", &err))
            return keep_overlay(j, d, false, "%s", err->message);
        /* -1 on a live connection: a transient domain gone with its QEMU. */
        if (vs_control()->domain_is_active(j->dom) != 1 && vs_link_alive(run->link))
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
        if (!vs_journal_commit(run->journal, j->name, j->uuid, d->target, d->overlay, &jerr))
            dom_fail_error(j, jerr);
        vs_fault_point("before-commit");
        if (!commit_pivot(run, j, d, &err)) {
            if (retry && !vs_link_alive(run->link))
                continue;
            return keep_overlay(j, d, vs_control()->domain_is_active(j->dom) == 1, "%s",
                                err->message);
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

/* Every overlay of a domain that got its snapshot back into its image. */
static bool
overlay_settle(Run *run, DomJob *j)
{
    bool ok = true;

    if (!j->snapshotted)
        return true;
    for (guint k = 0; k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];

        if (d->overlay && !commit_disk(run, j, d))
            ok = false;
    }
    if (ok && j->pit_ms)
        j->overlay_ms = vs_now_ms() - j->pit_ms;
    if (ok)
        resume_paused(run, j);
    return ok;
}

static void
overlay_describe(const DomJob *j, VsBackupDomainResult *dr)
{
    dr->mode = g_strdup(j->active ? "overlay" : "direct");
}

const BackupMethod backup_method_overlay = {
    .name = "overlay",
    .plan = overlay_plan,
    .prepare = overlay_prepare,
    .unprepare = overlay_unprepare,
    .point_in_time = overlay_point_in_time,
    .recheck = overlay_recheck,
    .open_disk = overlay_open_disk,
    .settle = overlay_settle,
    .describe = overlay_describe,
    .free_priv = g_free,
};
