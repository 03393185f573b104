/* The frozen window of a backup run: the guardian (started early, armed just
 * before the freeze), every guest frozen on a thread of its own, each
 * domain's point in time (one atomic external snapshot onto overlays, or the
 * begin of a libvirt backup job), every guest thawed whatever happened; and,
 * for a point in time whose reply was lost with the connection, what the
 * domain turns out to run on. What can be made beforehand (overlays, scratch
 * images) is made before the freeze, so that the window stays short. */
#include "config.h"
#include "backup-internal.h"
#include "qcow2-writer.h"
#include "vs-block.h"
#include "vs-restore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Freeze, snapshot, thaw: each domain on its own thread, so that the group's
 * frozen window is the slowest guest's, not the sum of all.                  */

typedef gpointer (*DomStep)(gpointer data);

typedef struct {
    Run *run;
    DomJob *j;
} StepArg;

static void
for_each_domain(Run *run, GPtrArray *set, DomStep step)
{
    g_autoptr(GPtrArray) threads = g_ptr_array_new();
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);

    for (guint i = 0; i < set->len; i++) {
        StepArg *a = g_new0(StepArg, 1);
        a->run = run;
        a->j = set->pdata[i];
        g_ptr_array_add(args, a);
        g_ptr_array_add(threads, g_thread_new("virtsnap-dom", step, a));
    }
    for (guint i = 0; i < threads->len; i++)
        g_thread_join(threads->pdata[i]);
}

static gpointer
step_freeze(gpointer data)
{
    StepArg *a = data;
    DomJob *j = a->j;

    j->frozen_at = g_get_real_time() / 1000;
    j->freeze_start = vs_now_ms();
    j->frozen = vs_agent_freeze(j->dom, a->run->opts->agent_timeout, &j->thread_error);
    if (j->frozen)
        vs_fault_point("after-freeze");
    return NULL;
}

/* Creating the overlays inside the frozen window costs 20-60 ms per snapshot
 * here; made beforehand (their header naming the original image and format, as
 * libvirt would write it) the snapshot only has to switch to them. Anything
 * unusual (a network original, a probe that fails) keeps libvirt's own way. */
static void
precreate_overlays(DomJob *j)
{
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
    j->reuse_ext = made > 0;
    return;
undo:
    for (guint i = 0; i < made; i++) {
        DiskJob *d = j->disks->pdata[i];
        if (d->overlay)
            unlink(d->overlay);
    }
}

/* An empty qcow2 image of SIZE bytes at PATH (replacing any file there), by
 * the same writer restore uses: no process, about a millisecond. */
static bool
make_scratch(const char *path, uint64_t size, GError **error)
{
    g_autoptr(VsQcow2Writer) w = NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok;

    if (fd < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s", path, g_strerror(errno));
        return false;
    }
    ok = (w = vs_qcow2_writer_new(fd, path, size, error)) && vs_qcow2_writer_finish(w, error);
    if (close(fd) < 0 && ok) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s", path, g_strerror(errno));
        ok = false;
    }
    if (!ok)
        unlink(path);
    return ok;
}

/* The scratch images (or push targets) of a begin job, made before the freeze: left to libvirt,
 * each is formatted by a blockdev-create job inside the frozen window (the
 * begin took 15-25 ms longer, measured with virsh backup-begin). Only for
 * scratch files of virtsnap's own choosing: a user's --backup-xml scratch
 * files are libvirt's to make, as virsh would. Anything unusual (a size that
 * cannot be read, a write that fails) keeps libvirt's way. Called again
 * before a retried begin: the failed job may have written into them, and a
 * scratch cluster would shadow the disk's data. */
static bool
own_scratch(const DomJob *j, const DiskJob *d)
{
    return d->scratch && j->scratch_dir && g_str_has_prefix(d->scratch, j->scratch_dir);
}

static void
precreate_scratch(DomJob *j)
{
    j->reuse_scratch = false;
    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        virDomainBlockInfo info;

        if (!own_scratch(j, d))
            goto undo;
        /* A push job's disks were sized by push_space_check. */
        if (!d->capacity) {
            if (virDomainGetBlockInfo(j->dom, d->target, &info, 0) < 0)
                goto undo;
            d->capacity = info.capacity;
        }
        if (!make_scratch(d->scratch, d->capacity, NULL))
            goto undo;
    }
    j->reuse_scratch = j->disks->len > 0;
    return;
undo:
    /* All of them: a file left from a failed first begin must not be reused. */
    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];

        if (own_scratch(j, d))
            unlink(d->scratch);
    }
}

/* QEMU runs in a mount namespace of its own: a file system mounted on the
 * host after the domain started is not there for QEMU unless mounts propagate
 * (shared propagation, as systemd sets it up; not on every host), and QEMU's
 * "No such file or directory" for a file that is plainly there misleads. */
static bool
push_dir_hint(DomJob *j)
{
    GError *e = j->thread_error;
    char *before;

    if (!j->push || !e || !strstr(e->message, "No such file or directory") || !j->scratch_dir ||
        !g_file_test(j->scratch_dir, G_FILE_TEST_IS_DIR))
        return false;
    before = e->message;
    e->message = g_strdup_printf("%s (%s is there on the host, but QEMU cannot see it: a file "
                                 "system mounted after the domain started stays outside QEMU's "
                                 "mount namespace where mounts do not propagate; give a "
                                 "--push-dir QEMU sees, or leave it out for the state directory)",
                                 before, j->scratch_dir);
    g_free(before);
    return true;
}

/* The begin mode's snapshot: one pull- or push-mode job over every disk,
 * creating this backup's checkpoint. An incremental that libvirt refuses (a
 * bitmap broken since the check) becomes a full job at once, inside the same
 * frozen window. */
static gpointer
step_backup_begin(StepArg *a)
{
    DomJob *j = a->j;
    g_autofree VsJobDisk *disks = g_new0(VsJobDisk, j->disks->len);
    g_autofree char *socket = j->push ? NULL : g_build_filename(j->sock_dir, "nbd.sock", NULL);

    const char *description = a->run->checkpoint_xml ? a->run->checkpoint_xml->description : NULL;

    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        disks[i] = (VsJobDisk) { .target = d->target, .bitmap = d->bitmap,
                                 .incremental = j->push ? push_incremental(j, d) : d->bitmap,
                                 .scratch = j->push ? NULL : d->scratch,
                                 .push_target = j->push ? d->scratch : NULL };
    }
    vs_backup_job_xml(socket, j->incremental, j->diff, j->checkpoint, description, disks,
                      j->disks->len, (const char *const *)j->other_targets, &j->backup_xml,
                      &j->checkpoint_xml);
    if (!vs_backup_job_begin(j->dom, j->name, j->incremental, j->backup_xml,
                             j->checkpoint_xml, j->reuse_scratch, &j->thread_error)) {
        /* A full job would not see the directory either. */
        if (push_dir_hint(j) || !j->incremental)
            return NULL;
        if (j->push) {
            uint64_t avail = dir_free_bytes(j->scratch_dir);

            if (j->push_need_full > avail) {
                g_autofree char *where = g_path_get_dirname(j->scratch_dir);
                g_prefix_error(&j->thread_error, "the incremental push job was refused, and a "
                               "full one would write about %" G_GUINT64_FORMAT " MiB into %s, "
                               "which has %" G_GUINT64_FORMAT " MiB free (give --push-dir a file "
                               "system with room, or leave out --push): ",
                               MiB_OF(j->push_need_full), where, avail / (1024 * 1024));
                return NULL;
            }
        }
        add_note(j, "full backup: %s", j->thread_error->message);
        g_clear_error(&j->thread_error);
        g_clear_pointer(&j->incremental, g_free);
        g_clear_pointer(&j->base, vs_manifest_free);
        j->diff = false;
        g_clear_pointer(&j->backup_xml, g_free);
        g_clear_pointer(&j->checkpoint_xml, g_free);
        for (guint i = 0; i < j->disks->len; i++)
            disks[i].incremental = false;
        vs_backup_job_xml(socket, NULL, false, j->checkpoint, description, disks, j->disks->len,
                          (const char *const *)j->other_targets, &j->backup_xml, &j->checkpoint_xml);
        if (j->reuse_scratch)
            precreate_scratch(j);
        if (!vs_backup_job_begin(j->dom, j->name, NULL, j->backup_xml, j->checkpoint_xml,
                                 j->reuse_scratch, &j->thread_error)) {
            (void)push_dir_hint(j);
            return NULL;
        }
    }
    j->job_started = j->snapshotted = true;
    vs_fault_point("after-snapshot");
    return NULL;
}

static gpointer
step_snapshot(gpointer data)
{
    StepArg *a = data;
    DomJob *j = a->j;
    g_autoptr(VsSnapshotDef) snap = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *name = g_strdup_printf("virtsnap-%s", a->run->manifest->id);
    virDomainSnapshotPtr s;
    unsigned flags = VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC |
                     VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA;
    g_autoptr(VsDomainDef) def = NULL;

    if (j->begin)
        return step_backup_begin(a);
    /* libvirt would take a shut-off domain's snapshot offline, rewriting its
     * definition: a domain whose QEMU died since it was prepared is not one to
     * back up now. */
    if (virDomainIsActive(j->dom) == 0) {
        g_set_error(&j->thread_error, VS_ERROR, VS_ERROR_STOPPED, "snapshot: domain '%s' stopped "
                    "before its snapshot (its QEMU ended): not backed up", j->name);
        return NULL;
    }
    if (j->reuse_ext)
        flags |= VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT;
    snap = vs_snapshot_def_new(name);
    snap->memory = VS_SNAPSHOT_LOCATION_NO;
    /* Every disk the domain runs with must be named (a hot-plugged one is not
     * in its definition): one left out would get libvirt's default overlay. */
    def = vs_domain_def_parse_string(j->live_xml, j->name, NULL);
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
    s = virDomainSnapshotCreateXML(j->dom, xml, flags);
    if (!s) {
        vs_set_libvirt_error(&j->thread_error, VS_ERROR_LIBVIRT, "snapshot: domain '%s'", j->name);
        return NULL;
    }
    virDomainSnapshotFree(s);
    j->snapshotted = true;
    vs_fault_point("after-snapshot");
    return NULL;
}

static gpointer
step_thaw(gpointer data)
{
    StepArg *a = data;
    DomJob *j = a->j;
    g_autoptr(GError) err = NULL;
    bool ok = vs_agent_thaw(j->dom, a->run->opts->agent_timeout, &err);

    /* libvirtd restarted while the guest was frozen: thaw over a new connection. */
    if (!ok && !vs_link_alive(a->run->link)) {
        g_autoptr(GError) rerr = NULL;

        if (dom_revive(a->run, j, "thaw", &rerr)) {
            g_clear_error(&err);
            ok = vs_agent_thaw(j->dom, a->run->opts->agent_timeout, &err);
        } else {
            g_prefix_error(&err, "%s; ", rerr->message);
        }
    }
    if (!ok) {
        j->thaw_failed = true;
        /* A guest whose freeze failed too is most likely not frozen at all (a
         * hung agent): the guardian tries once more; the data is fine either way. */
        if (j->frozen) {
            dom_fail(j, "%s (the guardian tries again at once)", err->message);
        } else {
            g_autofree char *before = g_steal_pointer(&j->note);
            j->note = g_strdup_printf("%s; the thaw failed too (%s), so the guardian tried again",
                                      before ? before : "freeze failed", err->message);
        }
    }
    j->freeze_end = vs_now_ms();
    j->thawed_at = g_get_real_time() / 1000;
    return NULL;
}

static bool
any_overlay(DomJob *j)
{
    for (guint i = 0; i < j->disks->len; i++)
        if (((DiskJob *)j->disks->pdata[i])->overlay)
            return true;
    return false;
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

/* A domain whose snapshot (or backup-begin) did not succeed. A call cut short
 * by a closed connection may have been carried out all the same: what the
 * domain runs on, asked again on a new connection, decides. An overlay in use
 * is committed like any other; a backup job with this run's checkpoint is
 * ended like any other. When nothing can be known, the files stay for recover. */
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
    if (j->begin) {
        virDomainCheckpointPtr cp = NULL;
        /* Asked even when the connection looks fine: the thaw may have
         * reopened it already. This run's checkpoint proves the job ours. */
        int st = vs_backup_job_state(j->dom);

        if (st > 0 && (cp = virDomainCheckpointLookupByName(j->dom, j->checkpoint, 0))) {
            j->job_started = j->snapshotted = true;
            add_note(j, "the backup job began though libvirt's reply was lost; it was ended");
        } else if (st < 0) {
            j->left = true;
        }
        if (cp)
            virDomainCheckpointFree(cp);
        return;
    }
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

/* The job's directories, and its journal record: a run killed while the job
 * runs leaves recover enough to end it and remove them. */
static void
prepare_job_dirs(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *owner = vs_qemu_dac_owner(vs_link_conn(run->link), NULL);
    unsigned uid = 0, gid = 0;

    if (!journal(run, j, "backup-job", "checkpoint", j->checkpoint, "socket_dir", j->sock_dir,
                 "scratch_dir", j->scratch_dir))
        return;
    /* QEMU (libvirt-qemu) creates the socket; libvirt creates and labels the scratch files. */
    if (!vs_make_dir(j->scratch_dir, 0755, &err) ||
        (j->sock_dir && (!vs_make_dir(vs_run_dir(), 0755, &err) ||
                         !vs_make_dir(j->sock_dir, 0700, &err)))) {
        dom_fail(j, "backup-begin: domain '%s': %s", j->name, err->message);
        return;
    }
    if (j->sock_dir && owner && sscanf(owner, "+%u:+%u", &uid, &gid) == 2 && chown(j->sock_dir, uid, gid) < 0)
        dom_fail(j, "backup-begin: domain '%s': cannot give %s to QEMU's user %s: %s", j->name,
                 j->sock_dir, owner, g_strerror(errno));
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
        if (j->error || !j->active || !(j->begin || any_overlay(j)))
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

/* Journal every intent first: a crash from here on leaves enough to undo. Then
 * what can be made before the freeze is made. */
static void
prepare_window(Run *run, GPtrArray *snap)
{
    for (guint i = 0; i < snap->len; i++) {
        DomJob *j = snap->pdata[i];
        if (j->freeze)
            journal(run, j, "freeze", NULL, NULL, NULL, NULL, NULL, NULL);
        if (j->begin)
            prepare_job_dirs(run, j);
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *d = j->disks->pdata[k];
            g_autoptr(GError) jerr = NULL;
            if (d->overlay &&
                !vs_journal_append(run->journal, &jerr, "overlay", "domain", j->name, "uuid", j->uuid,
                                   "disk", d->target, "overlay", d->overlay,
                                   "original", d->path ? d->path : d->url, "format", d->format, NULL))
                dom_fail(j, "%s", jerr->message);
        }
    }
    for (guint i = 0; i < snap->len; i++) {
        DomJob *j = snap->pdata[i];

        if (j->error)
            continue;
        if (j->begin)
            precreate_scratch(j);
        else
            precreate_overlays(j);
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
            dom_fail(j, "%s; --quiesce=require: domain '%s' not backed up",
                     j->thread_error->message, j->name);
        } else {
            g_free(j->note);
            j->note = g_strdup_printf("freeze failed (%s): backed up crash-consistent",
                                      j->thread_error->message);
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
            journal(run, j, "thawed", NULL, NULL, NULL, NULL, NULL, NULL);
        else if (j->freeze)
            j->left = true;
        if (j->thread_error) {
            dom_fail(j, "%s", j->thread_error->message);
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
                g_free(j->note);
                j->note = g_strdup_printf("frozen for %" G_GINT64_FORMAT " ms, over --max-freeze: "
                                          "treated as crash-consistent", held);
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
    prepare_window(run, snap);
    if (guardian && !vs_guardian_arm(guardian, error)) {
        /* Nothing frozen or snapshotted: the images made for it go. */
        vs_guardian_stop(guardian, true);
        for (guint i = 0; i < snap->len; i++)
            if (drop_unused_overlays(run, snap->pdata[i]) != 0)
                ((DomJob *)snap->pdata[i])->left = true;
        return -2;
    }
    vs_fault_point("before-freeze");
    progress(run, VS_BACKUP_PHASE_FREEZE, NULL, NULL, 0, snap->len);

    first = freeze_all(run, frz);
    /* The point in time only for those not failed. */
    for (guint i = 0; i < snap->len; i++)
        if (!((DomJob *)snap->pdata[i])->error)
            g_ptr_array_add(go, snap->pdata[i]);
    for_each_domain(run, go, step_snapshot);
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
                dom_fail(j, "%s", err->message);
        }
        run->group_ms = -1;
    }
}
