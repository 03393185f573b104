/* The frozen window of a backup run: the guardian (started early, armed just
 * before the freeze), each method's prepare (its intent journaled, its files
 * made beforehand so that the window stays short), every guest frozen on a
 * thread of its own, each domain's point in time by its method (an atomic
 * external snapshot, the begin of a backup job, ...), every guest thawed
 * whatever happened; and, for a point in time whose reply was lost with the
 * connection, what its method finds the domain runs on. */
#include "config.h"
#include "backup-internal.h"
#include "retry.h"

/* ------------------------------------------------------------------------- */
/* Freeze, snapshot, thaw: each domain on its own thread, so that the group's
 * frozen window is the slowest guest's, not the sum of all.                  */

static void
for_each_domain(Run *run, GPtrArray *set, VsEachFunc step)
{
    vs_each_parallel(set, step, run);
}

static void
step_freeze(gpointer item, gpointer data)
{
    DomJob *j = item;
    Run *run = data;
    j->frozen_at = g_get_real_time() / 1000;
    j->freeze_start = vs_now_ms();
    j->frozen = vs_agent_freeze(j->dom, run->opts->agent_timeout, &j->thread_error);
    if (j->frozen)
        vs_fault_point("after-freeze");
}

/* The method's point in time, on the domain's own thread. */
static void
step_point_in_time(gpointer item, gpointer data)
{
    DomJob *j = item;
    Run *run = data;
    j->method->point_in_time(run, j);
}

static void
step_thaw(gpointer item, gpointer data)
{
    DomJob *j = item;
    Run *run = data;
    g_autoptr(GError) err = NULL;
    /* Thawing twice is harmless: a frozen guest's thaw is tried again (one
     * whose freeze failed most likely has no agent answering: once). */
    VsRetry r = VS_RETRY_INIT(j->frozen ? run->opts->retry_count : 0);
    bool ok;

    while (!(ok = vs_fault_fail("agent-thaw", &err) && vs_agent_thaw(j->dom, run->opts->agent_timeout, &err)) &&
           r.done < r.max && vs_link_alive(run->link) && vs_retry_again(&r, &err))
        ;
    vs_retry_note(&r, "thaw", j->notes);

    /* libvirtd restarted while the guest was frozen: thaw over a new connection. */
    if (!ok && !vs_link_alive(run->link)) {
        g_autoptr(GError) rerr = NULL;

        if (dom_revive(run, j, "thaw", &rerr)) {
            g_clear_error(&err);
            ok = vs_agent_thaw(j->dom, run->opts->agent_timeout, &err);
        } else {
            g_prefix_error(&err, "%s; ", rerr->message);
        }
    }
    if (!ok) {
        j->thaw_failed = true;
        /* A guest whose freeze failed too is most likely not frozen at all (a
         * hung agent): the guardian tries once more; the data is fine either way. */
        if (j->frozen) {
            dom_fail_from(j, err, "%s (the guardian tries again at once)", err->message);
        } else {
            /* Read after the freeze's note: "...; the thaw failed too". */
            if (j->notes->len == 0)
                add_note(j, "freeze failed");
            add_note(j, "the thaw failed too (%s), so the guardian tried again", err->message);
        }
    }
    j->freeze_end = vs_now_ms();
    j->thawed_at = g_get_real_time() / 1000;
}

/* A domain whose point in time did not succeed. A call cut short by a closed
 * connection may have been carried out all the same: what the domain runs on,
 * asked again on a new connection, decides (the method's recheck). When
 * nothing can be known, the files stay for recover. */
static void
settle_unsnapshotted(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;
    bool lost = !vs_link_alive(run->link) || vs_link_generation(run->link) != j->gen;

    if (lost && !dom_revive(run, j, "snapshot", &err)) {
        j->left = true;
        add_note(j, "%s: its files are kept for `virtsnap recover`", err->message);
        return;
    }
    j->method->recheck(run, j);
}

/* A guardian (not yet armed) for the domains of UUIDS, NULL-terminated. */
static VsGuardian *
spawn_guardian(Run *run, GPtrArray *uuids, GError **error)
{
    const VsBackupOptions *o = run->opts;

    return vs_guardian_spawn(o->guardian_exe, o->uri, o->state_dir, run->manifest->id,
                             o->max_freeze_ms, (const char *const *)uuids->pdata,
                             o->agent_timeout, error);
}

/* The guardian for the domains that will likely be frozen (running, with an
 * agent channel, quiesce not off), started now so that its start overlaps the
 * preparation of the domains; freeze_phase checks it against the domains it
 * freezes. Not started (freeze_phase starts one) when it cannot be. */
void
guardian_early(Run *run, GPtrArray *discovered)
{
    g_autoptr(GPtrArray) uuids = g_ptr_array_new();

    if (run->opts->quiesce == VS_QUIESCE_OFF)
        return;
    for (guint i = 0; i < discovered->len; i++) {
        const VsDiscoveredDomain *d = discovered->pdata[i];

        if (g_strcmp0(d->state, "running") == 0 && d->agent != VS_AGENT_NONE)
            g_ptr_array_add(uuids, d->uuid);
    }
    if (uuids->len == 0)
        return;
    g_ptr_array_add(uuids, NULL);
    run->guardian = spawn_guardian(run, uuids, NULL);
}

/* The domains that get a point in time (SNAP) and those of them frozen for
 * it (FRZ). */
static void
select_window(Run *run, GPtrArray *snap, GPtrArray *frz)
{
    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        if (j->error || !j->active || !j->window)
            continue;
        g_ptr_array_add(snap, j);
        if (j->freeze)
            g_ptr_array_add(frz, j);
    }
}

/* The guardian started while the domains were prepared serves if there is
 * anything to freeze and it guards every domain to be frozen (those it guards
 * in vain it thaws in vain, only if we die); otherwise it goes, and NULL says
 * one for exactly these is to be started. */
static VsGuardian *
early_guardian(Run *run, GPtrArray *frz)
{
    VsGuardian *guardian = g_steal_pointer(&run->guardian);
    bool serves = guardian && frz->len > 0;

    for (guint i = 0; serves && i < frz->len; i++)
        serves = vs_guardian_covers(guardian, ((DomJob *)frz->pdata[i])->uuid);
    if (guardian && !serves) {
        vs_guardian_stop(guardian, true);
        guardian = NULL;
    }
    return guardian;
}

/* Journal every intent first: a crash from here on leaves enough to undo.
 * Then each method makes what can be made before the freeze. A domain whose
 * freeze could not be journaled has failed: it is not frozen (recover could
 * not know to thaw it), and nothing is made for it. FRZ keeps the others. */
static void
prepare_window(Run *run, GPtrArray *snap, GPtrArray *frz)
{
    for (guint i = 0; i < snap->len; i++) {
        DomJob *j = snap->pdata[i];
        if (j->freeze && !journal(run, j, vs_journal_freeze)) {
            j->freeze = false;
            g_ptr_array_remove(frz, j);
            continue;
        }
        j->method->prepare(run, j);
    }
}

/* Every domain of FRZ frozen at once; the monotonic ms the first freeze began. */
static int64_t
freeze_all(Run *run, GPtrArray *frz)
{
    int64_t first = -1;

    for_each_domain(run, frz, step_freeze);
    for (guint i = 0; i < frz->len; i++) {
        DomJob *j = frz->pdata[i];
        if (first < 0 || j->freeze_start < first)
            first = j->freeze_start;
        if (j->frozen)
            continue;
        if (run->opts->quiesce == VS_QUIESCE_REQUIRE) {
            dom_fail_from(j, j->thread_error, "%s; --quiesce=require: domain '%s' not backed up",
                          j->thread_error->message, j->name);
        } else {
            add_note(j, "freeze failed (%s): backed up crash-consistent", j->thread_error->message);
        }
        g_clear_error(&j->thread_error);
    }
    return first;
}

/* Thaw every domain whose freeze was attempted: a freeze that timed out may
 * have frozen some file systems. */
static void
thaw_all(Run *run, GPtrArray *frz, VsGuardian *guardian)
{
    for_each_domain(run, frz, step_thaw);
    if (guardian) {
        bool thawed = true;
        for (guint i = 0; i < frz->len; i++)
            thawed = thawed && !((DomJob *)frz->pdata[i])->thaw_failed;
        /* Told that not all are thawed, the guardian thaws them and asks each
         * guest until it says thawed; its verdict is what the journal keeps. */
        if (vs_guardian_stop(guardian, thawed) && !thawed) {
            for (guint i = 0; i < frz->len; i++) {
                DomJob *j = frz->pdata[i];
                if (j->thaw_failed)
                    add_note(j, "the guardian confirmed it thawed (or no longer running)");
                j->thaw_failed = false;
            }
        }
    }
    vs_fault_point("after-thaw");
}

/* What the window made of each domain of SNAP: thawed (journaled) or left for
 * recover, its point in time taken or settled, its consistency. The monotonic
 * ms the last thaw returned. */
static int64_t
close_window(Run *run, GPtrArray *snap)
{
    int64_t last = -1;

    for (guint i = 0; i < snap->len; i++) {
        DomJob *j = snap->pdata[i];
        if (j->freeze && j->freeze_end > last)
            last = j->freeze_end;
        /* A freeze not known to be over stays in the journal: recover thaws. */
        if (j->freeze && !j->thaw_failed)
            journal(run, j, vs_journal_thawed);
        else if (j->freeze)
            j->left = true;
        if (j->thread_error) {
            dom_fail_error(j, j->thread_error);
            g_clear_error(&j->thread_error);
        }
        if (!j->snapshotted) {
            settle_unsnapshotted(run, j);
            continue;
        }
        if (j->frozen) {
            int64_t held = j->freeze_end - j->freeze_start;
            if (held > run->opts->max_freeze_ms) {
                /* The guardian may have thawed before the snapshot was taken. */
                add_note(j, "frozen for %" G_GINT64_FORMAT " ms, over --max-freeze: treated as "
                         "crash-consistent", held);
            } else {
                g_free(j->consistency);
                j->consistency = g_strdup("quiesced");
            }
        }
    }
    return last;
}

/* The group's frozen window in ms; -1 when nothing was frozen, -2 (with
 * *ERROR) when nothing was frozen or snapshotted because the window could not
 * be guarded. */
static int64_t
freeze_phase(Run *run, GError **error)
{
    g_autoptr(GPtrArray) snap = g_ptr_array_new();
    g_autoptr(GPtrArray) frz = g_ptr_array_new();
    g_autoptr(GPtrArray) go = g_ptr_array_new();
    VsGuardian *guardian = NULL;
    int64_t first, last;

    /* Interrupted while the domains were prepared: nothing is frozen or
     * snapshotted, and nothing will be. */
    if (!vs_interrupt_check("backup", error)) {
        if (run->guardian)
            vs_guardian_stop(g_steal_pointer(&run->guardian), true);
        return -2;
    }
    select_window(run, snap, frz);
    guardian = early_guardian(run, frz);
    if (snap->len == 0)
        return -1;
    if (frz->len > 0 && !guardian) {
        g_autoptr(GPtrArray) uuids = g_ptr_array_new();

        for (guint i = 0; i < frz->len; i++)
            g_ptr_array_add(uuids, ((DomJob *)frz->pdata[i])->uuid);
        g_ptr_array_add(uuids, NULL);
        if (!(guardian = spawn_guardian(run, uuids, error)))
            return -2;
    }
    prepare_window(run, snap, frz);
    if (guardian && !vs_guardian_arm(guardian, error)) {
        /* Nothing frozen or snapshotted: the images made for it go. */
        vs_guardian_stop(guardian, true);
        for (guint i = 0; i < snap->len; i++) {
            DomJob *j = snap->pdata[i];
            if (j->method->unprepare && !j->method->unprepare(run, j))
                j->left = true;
        }
        return -2;
    }
    vs_fault_point("before-freeze");
    progress(run, VS_BACKUP_PHASE_FREEZE, NULL, NULL, 0, snap->len);

    first = freeze_all(run, frz);
    /* The point in time only for those not failed. */
    for (guint i = 0; i < snap->len; i++)
        if (!((DomJob *)snap->pdata[i])->error)
            g_ptr_array_add(go, snap->pdata[i]);
    for_each_domain(run, go, step_point_in_time);
    thaw_all(run, frz, guardian);
    last = close_window(run, snap);
    return first >= 0 && last >= first ? last - first : -1;
}


void
backup_window(Run *run)
{
    g_autoptr(GError) err = NULL;

    run->group_ms = freeze_phase(run, &err);
    if (run->group_ms == -2) {
        /* Nothing was frozen or snapshotted: the guardian could not be armed. */
        for (guint i = 0; i < run->doms->len; i++) {
            DomJob *j = run->doms->pdata[i];
            if (j->active)
                dom_fail_error(j, err);
        }
        run->group_ms = -1;
    }
}
