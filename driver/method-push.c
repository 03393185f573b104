/* The push method: a libvirt push-mode backup job (--push, --push-dir, or a
 * push-mode --backup-xml). QEMU writes each disk's point in time, or for an
 * incremental only its changed clusters, into a qcow2 file of ours; once the
 * job has ended by itself the copy reads those files (a partly changed chunk
 * is completed from the base backup's chunk), and the job's end removes them.
 * A push job out of room fails the guest's writes, so it starts only where
 * what it will write fits. The job itself is method-job.c's. */
#include "config.h"
#include "method-job.h"

/* The qcow2 metadata of a push target besides its data: an L2 table per
 * 512 MiB of disk, refcount blocks, the header, with room to spare. */
#define PUSH_META_BYTES(capacity) ((capacity) / 4096 + 4 * 1024 * 1024)

/* Whether the push job writes only D's changes: a push target has no bytes
 * for the rest, so that needs the base's chunks on the same grid (the disk
 * not resized since; its size unknown counts as resized). */
bool
push_incremental(DomJob *j, DiskJob *d)
{
    const VsManifestDisk *prev = base_disk(j, d);

    return prev && d->capacity && prev->virtual_size == d->capacity;
}

/* A push job that runs out of room does more than fail: QEMU's
 * copy-before-write filter then fails the guest's own writes to clusters not
 * yet copied (QEMU's default on-cbw-error, which libvirt 9.0 keeps), and the
 * test guest did not survive that. So a push job starts only where what it
 * will write fits: each incremental disk's changed bytes (libvirt's estimate
 * from the bitmaps), each other disk's allocated bytes, qcow2's metadata; the
 * domains of one run share the room. */
static void
push_space_check(Run *run, DomJob *j)
{
    JobPriv *p = j->priv;
    g_autofree char *where = g_path_get_dirname(p->scratch_dir);
    g_autoptr(VsCheckpointDef) since = j->incremental ? vs_checkpoint_with_sizes(j->dom, j->incremental)
                                                      : NULL;
    uint64_t need = 0, avail;

    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        const VsCheckpointDiskDef *changed = NULL;
        VsBlockInfo info;
        GError *cause = NULL;

        if (!vs_control()->block_info(j->dom, d->target, &info, &cause)) {
            g_autoptr(GError) err = NULL;
            vs_control_error(&err, cause, VS_ERROR_LIBVIRT, "domblkinfo %s", d->target);
            dom_fail_from(j, err, "backup: domain '%s': cannot tell how much its push job would write: "
                          "%s", j->name, err->message);
            return;
        }
        d->capacity = info.capacity;
        p->push_need_full += info.allocation + PUSH_META_BYTES(info.capacity);
        for (guint k = 0; since && push_incremental(j, d) && k < since->disks->len; k++) {
            const VsCheckpointDiskDef *cd = since->disks->pdata[k];
            if (cd->checkpoint && cd->has_size && !g_strcmp0(cd->name, d->target))
                changed = cd;
        }
        need += (changed ? changed->size : info.allocation) + PUSH_META_BYTES(info.capacity);
    }
    avail = dir_free_bytes(p->scratch_dir);
    avail -= MIN(avail, run->push_reserved);
    if (need > avail) {
        dom_fail(j, "backup: domain '%s': its push job would write about %" G_GUINT64_FORMAT " MiB "
                 "into %s, which has %" G_GUINT64_FORMAT " MiB free%s (a push job out of room fails "
                 "the guest's writes): give --push-dir a file system with room, or leave out "
                 "--push (a pull-mode job needs room only for what the guest overwrites while "
                 "the copy runs)", j->name, MiB_OF(need),
                 where, avail / (1024 * 1024),
                 run->push_reserved ? " besides this run's other push jobs" : "");
        return;
    }
    run->push_reserved += need;
}

static void
push_plan(Run *run, DomJob *j, const VsDomainDef *def)
{
    job_plan(run, j, def, true);
    if (!j->error)
        push_space_check(run, j);
}

typedef struct {
    Run *run;
    DomJob *j;
} PushWait;

static void
push_progress(uint64_t done, uint64_t total, void *opaque)
{
    PushWait *w = opaque;
    progress(w->run, VS_BACKUP_PHASE_COPY, w->j->name, "push job", done, total);
}

/* A push job has written its files once it has ended by itself; jobs of
 * several domains run at once, so waiting for them in turn costs nothing. */
static bool
push_before_copy(Run *run, DomJob *j)
{
    JobPriv *p = j->priv;
    g_autoptr(GError) err = NULL;
    PushWait w = { run, j };

    if (!p->job_started)
        return true;
    vs_fault_point("push-wait");
    for (int attempt = 1; attempt < 4; attempt++) {
        g_clear_error(&err);
        if (dom_revive(run, j, "backup-push", &err) &&
            vs_push_job_wait(j->dom, j->name, push_progress, &w, &err)) {
            p->job_started = false;
            return true;
        }
        if (!g_error_matches(err, VS_ERROR, VS_ERROR_CONNECTION))
            break;
    }
    /* Ended either way, unless libvirt could not say: then its files may
     * still be written, and stay for recover with the job. */
    if (g_error_matches(err, VS_ERROR, VS_ERROR_CONNECTION))
        j->left = true;
    else
        p->job_started = false;
    dom_fail_from(j, err, "%s: no backup of it was written", err->message);
    return false;
}

/* The qcow2 that D's push-mode job wrote: only D's changes when the job was
 * incremental for it (read with the base's chunks), else the whole disk. */
static VsSource *
open_push_target(DomJob *j, DiskJob *d, VsCopyOptions *copts, GError **error)
{
    bool delta = push_incremental(j, d);
    VsSource *src = vs_source_open_push_target(d->scratch, delta, error);

    if (!src)
        return NULL;
    if (delta) {
        copts->previous = base_disk(j, d);
        d->read = g_strdup_printf("changed since %s", j->base->id);
    } else {
        d->read = g_strdup(base_disk(j, d) ? "full: resized since the base backup" : read_whole(d));
    }
    return src;
}

static VsSource *
push_open_disk(Run *run, DomJob *j, DiskJob *d, VsCopyOptions *copts, GError **error)
{
    VsSource *src = open_push_target(j, d, copts, error);

    d->data_path = "push";
    return src;
}

const BackupMethod backup_method_push = {
    .name = "push",
    .plan = push_plan,
    .before_copy = push_before_copy,
    .open_disk = push_open_disk,
    JOB_METHOD_HOOKS,
};
