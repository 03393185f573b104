/* What the pull and push methods share: a libvirt backup job over the
 * domain's disks, begun inside the frozen window and creating this backup's
 * checkpoint (incremental since the base backup's checkpoint when there is
 * one; a refused incremental becomes a full job within the same window). Its
 * files (scratch images or push targets, made before the freeze where
 * possible; the NBD socket's directory) and its journal record come first;
 * after the copy the job is aborted, and torn down with its files on a thread
 * that overlaps the manifest's commit; after the manifest this repository's
 * older checkpoints go (or, when the backup failed, the new one). */
#include "config.h"
#include "method-job.h"
#include "vs-qcow2.h"
#include "vs-restore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The job's checkpoint and files, named after this run and the domain, the
 * disks it leaves out, and its base backup: what --backup-xml names, else the
 * newest usable one (or the chain's full one for --level=diff). */
void
job_plan(Run *run, DomJob *j, const VsDomainDef *def, bool push)
{
    g_autoptr(GPtrArray) others = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *short_uuid = g_strndup(j->uuid, 8);
    JobPriv *p = g_new0(JobPriv, 1);
    guint bitmaps = 0;

    j->priv = p;
    j->window = true;
    for (guint i = 0; i < j->disks->len; i++)
        bitmaps += ((DiskJob *)j->disks->pdata[i])->bitmap;
    p->push = push;
    p->checkpoint = vs_checkpoint_name(run->repo_tag, run->manifest->id);
    if (run->remote) {
        /* Nothing of this host's: libvirt makes the scratch files on the
         * hypervisor, and the export listens there. */
        p->nbd_host = g_strdup(run->remote);
        p->nbd_port = remote_nbd_port(run, j);
    } else if (p->push && run->opts->push_dir) {
        g_autofree char *dir = g_canonicalize_filename(run->opts->push_dir, NULL);
        p->scratch_dir = g_strdup_printf("%s/%s-%s", dir, run->manifest->id, short_uuid);
    } else {
        p->scratch_dir = g_strdup_printf("%s/scratch/%s-%s", vs_state_dir(run->opts->state_dir),
                                         run->manifest->id, short_uuid);
    }
    /* Short: a unix socket path has 108 bytes. */
    if (!p->push && !run->remote)
        p->sock_dir = g_strdup_printf("%s/nbd-%s-%s", vs_run_dir(), run->manifest->id + 17,
                                      short_uuid);
    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        if (!d->scratch && p->scratch_dir)
            d->scratch = g_strdup_printf("%s/%s.qcow2", p->scratch_dir, d->target);
        /* Remote: a path on the hypervisor, beside the image, as newer libvirt
         * names one left out (9.0 takes a scratch-less file disk for an empty
         * path); libvirt removes it with the job. Not a path of this host. */
        else if (!d->scratch && run->remote && d->is_file && d->path)
            d->scratch = g_strdup_printf("%s.%s", d->path, p->checkpoint);
    }
    for (guint i = 0; def && i < def->disks->len; i++) {
        const VsDiskDef *dd = def->disks->pdata[i];
        bool ours = false;
        for (guint k = 0; k < j->disks->len; k++)
            ours = ours || !g_strcmp0(((DiskJob *)j->disks->pdata[k])->target, dd->target_dev);
        if (!ours && dd->target_dev)
            g_ptr_array_add(others, g_strdup(dd->target_dev));
    }
    g_ptr_array_add(others, NULL);
    p->other_targets = (char **)g_ptr_array_free(g_steal_pointer(&others), FALSE);
    if (run->job_xml && run->job_xml->incremental)
        (void)job_xml_base(run, j);
    else if (bitmaps == 0)
        add_note(j, "full backup: no disk can hold a dirty bitmap (raw)");
    else if (run->opts->level != VS_BACKUP_LEVEL_FULL)
        choose_base(run, j);
}

/* The job's directories, and its journal record: a run killed while the job
 * runs leaves recover enough to end it and remove them. */
static void
prepare_job_dirs(Run *run, DomJob *j)
{
    JobPriv *p = j->priv;
    g_autoptr(GError) err = NULL;
    /* Only a pull job has a socket for QEMU to create. */
    g_autofree char *owner = p->sock_dir ? vs_qemu_dac_owner(vs_link_conn(run->link), NULL) : NULL;
    unsigned uid = 0, gid = 0;

    if (!vs_journal_backup_job(run->journal, j->name, j->uuid, p->checkpoint, p->sock_dir, p->scratch_dir,
                               &err)) {
        dom_fail_error(j, err);
        return;
    }
    /* QEMU (libvirt-qemu) creates the socket; libvirt creates and labels the scratch files.
     * A remote job has neither here. */
    if ((p->scratch_dir && !vs_make_dir(p->scratch_dir, 0755, &err)) ||
        (p->sock_dir && (!vs_make_dir(vs_run_dir(), 0755, &err) ||
                         !vs_make_dir(p->sock_dir, 0700, &err)))) {
        dom_fail_from(j, err, "backup-begin: domain '%s': %s", j->name, err->message);
        return;
    }
    if (p->sock_dir && owner && sscanf(owner, "+%u:+%u", &uid, &gid) == 2 && chown(p->sock_dir, uid, gid) < 0)
        dom_fail(j, "backup-begin: domain '%s': cannot give %s to QEMU's user %s: %s", j->name,
                 p->sock_dir, owner, g_strerror(errno));
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
    const JobPriv *p = j->priv;

    return d->scratch && p->scratch_dir && g_str_has_prefix(d->scratch, p->scratch_dir);
}

static void
precreate_scratch(DomJob *j)
{
    JobPriv *p = j->priv;

    p->reuse_scratch = false;
    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        VsBlockInfo info;

        if (!own_scratch(j, d))
            goto undo;
        /* A push job's disks were sized by push_space_check. */
        if (!d->capacity) {
            if (!vs_control()->block_info(j->dom, d->target, &info, NULL))
                goto undo;
            d->capacity = info.capacity;
        }
        if (!make_scratch(d->scratch, d->capacity, NULL))
            goto undo;
    }
    p->reuse_scratch = j->disks->len > 0;
    return;
undo:
    /* All of them: a file left from a failed first begin must not be reused. */
    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];

        if (own_scratch(j, d))
            unlink(d->scratch);
    }
}

/* The job's directories and its journal record, then its files. */
void
job_prepare(Run *run, DomJob *j)
{
    prepare_job_dirs(run, j);
    if (!j->error)
        precreate_scratch(j);
}

/* The pid of the QEMU that runs the domain with UUID (libvirt gives it
 * "-uuid UUID"), or 0. */
static int
qemu_pid_of(const char *uuid)
{
    g_autoptr(GDir) proc = uuid ? g_dir_open("/proc", 0, NULL) : NULL;
    const char *name;

    while (proc && (name = g_dir_read_name(proc))) {
        g_autofree char *path = g_build_filename("/proc", name, "cmdline", NULL);
        g_autofree char *cmd = NULL;
        gsize len;

        if (!g_ascii_isdigit(name[0]) || !g_file_get_contents(path, &cmd, &len, NULL))
            continue;
        /* NUL-separated arguments; g_file_get_contents adds one more NUL. */
        for (gsize off = 0; off < len; off += strlen(cmd + off) + 1)
            if (!strcmp(cmd + off, "-uuid") && off + 6 < len && !strcmp(cmd + off + 6, uuid))
                return atoi(name);
    }
    return 0;
}

/* Whether process PID sees DIR as the host does: the same directory through
 * its root, which resolves in its own mount namespace. */
static bool
pid_sees_dir(int pid, const char *dir)
{
    g_autofree char *abs = g_canonicalize_filename(dir, NULL);
    g_autofree char *there = g_strdup_printf("/proc/%d/root%s", pid, abs);
    struct stat here_st, there_st;

    return stat(abs, &here_st) == 0 && stat(there, &there_st) == 0 &&
           here_st.st_dev == there_st.st_dev && here_st.st_ino == there_st.st_ino;
}

/* QEMU runs in a mount namespace of its own: a file system mounted on the
 * host after the domain started is not there for QEMU unless mounts propagate
 * (shared propagation, as systemd sets it up; not on every host), and QEMU's
 * "No such file or directory" for a file that is plainly there misleads. Told
 * by looking at the directory from QEMU's side, not by reading QEMU's message. */
static bool
push_dir_hint(DomJob *j)
{
    JobPriv *p = j->priv;
    GError *e = j->thread_error;
    char *before;
    int pid;

    if (!p->push || !e || !p->scratch_dir || !g_file_test(p->scratch_dir, G_FILE_TEST_IS_DIR) ||
        (pid = qemu_pid_of(j->uuid)) <= 0 || pid_sees_dir(pid, p->scratch_dir))
        return false;
    before = e->message;
    e->message = g_strdup_printf("%s (%s is there on the host, but QEMU cannot see it: a file "
                                 "system mounted after the domain started stays outside QEMU's "
                                 "mount namespace where mounts do not propagate; give a "
                                 "--push-dir QEMU sees, or leave it out for the state directory)",
                                 before, p->scratch_dir);
    g_free(before);
    return true;
}

/* A remote job's export listens on a port of the hypervisor that virtsnap
 * chose (libvirt 9.0 picks none for TCP): taken by another run there, or shut
 * by a firewall, the begin fails with QEMU's words, which do not say which. */
static void
remote_port_hint(DomJob *j)
{
    JobPriv *p = j->priv;

    if (p->nbd_host && j->thread_error)
        g_prefix_error(&j->thread_error, "the job's NBD export was to listen on %s port %u of "
                       "the hypervisor (if that port is taken there, give --nbd-port another; "
                       "this host must reach it): ", p->nbd_host, p->nbd_port);
}

/* The begin mode's snapshot: one pull- or push-mode job over every disk,
 * creating this backup's checkpoint. An incremental that libvirt refuses (a
 * bitmap broken since the check) becomes a full job at once, inside the same
 * frozen window. */
void
job_point_in_time(Run *run, DomJob *j)
{
    JobPriv *p = j->priv;
    g_autofree VsJobDisk *disks = g_new0(VsJobDisk, j->disks->len);
    g_autofree char *socket = p->sock_dir ? g_build_filename(p->sock_dir, "nbd.sock", NULL) : NULL;
    VsJobServer server = { .socket = socket, .host = p->nbd_host, .port = p->nbd_port };

    const char *description = run->checkpoint_xml ? run->checkpoint_xml->description : NULL;

    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        disks[i] = (VsJobDisk) { .target = d->target, .bitmap = d->bitmap,
                                 .incremental = p->push ? push_incremental(j, d) : d->bitmap,
                                 .scratch = p->push ? NULL : d->scratch,
                                 .push_target = p->push ? d->scratch : NULL };
    }
    vs_backup_job_xml(p->push ? NULL : &server, j->incremental, j->diff, p->checkpoint, description, disks,
                      j->disks->len, (const char *const *)p->other_targets, &p->backup_xml,
                      &p->checkpoint_xml);
    if (!vs_backup_job_begin(j->dom, j->name, j->incremental, p->backup_xml,
                             p->checkpoint_xml, p->reuse_scratch, &j->thread_error)) {
        /* A full job would not see the directory either. */
        if (push_dir_hint(j))
            return;
        if (!j->incremental) {
            remote_port_hint(j);
            return;
        }
        if (p->push) {
            uint64_t avail = dir_free_bytes(p->scratch_dir);

            if (p->push_need_full > avail) {
                g_autofree char *where = g_path_get_dirname(p->scratch_dir);
                g_prefix_error(&j->thread_error, "the incremental push job was refused, and a "
                               "full one would write about %" G_GUINT64_FORMAT " MiB into %s, "
                               "which has %" G_GUINT64_FORMAT " MiB free (give --push-dir a file "
                               "system with room, or leave out --push): ",
                               MiB_OF(p->push_need_full), where, avail / (1024 * 1024));
                return;
            }
        }
        add_note(j, "full backup: %s", j->thread_error->message);
        g_clear_error(&j->thread_error);
        g_clear_pointer(&j->incremental, g_free);
        j->base = NULL;
        j->diff = false;
        g_clear_pointer(&p->backup_xml, g_free);
        g_clear_pointer(&p->checkpoint_xml, g_free);
        for (guint i = 0; i < j->disks->len; i++)
            disks[i].incremental = false;
        vs_backup_job_xml(p->push ? NULL : &server, NULL, false, p->checkpoint, description, disks, j->disks->len,
                          (const char *const *)p->other_targets, &p->backup_xml, &p->checkpoint_xml);
        if (p->reuse_scratch)
            precreate_scratch(j);
        if (!vs_backup_job_begin(j->dom, j->name, NULL, p->backup_xml, p->checkpoint_xml,
                                 p->reuse_scratch, &j->thread_error)) {
            (void)push_dir_hint(j);
            remote_port_hint(j);
            return;
        }
    }
    p->job_started = j->snapshotted = true;
    vs_fault_point("after-snapshot");
}

/* The begin did not succeed as far as we know: a job with this run's
 * checkpoint began all the same (its reply lost with the connection) and is
 * ended like any other; when libvirt cannot say, its files stay for recover. */
void
job_recheck(Run *run, DomJob *j)
{
    JobPriv *p = j->priv;
    g_autofree char *cp = NULL;
    /* Asked even when the connection looks fine: the thaw may have
     * reopened it already. This run's checkpoint proves the job ours. */
    int st = vs_backup_job_state(j->dom);

    if (st > 0 && (cp = vs_control()->checkpoint_xml(j->dom, p->checkpoint, 0, NULL))) {
        p->job_started = j->snapshotted = true;
        add_note(j, "the backup job began though libvirt's reply was lost; it was ended");
    } else if (st < 0) {
        j->left = true;
    }
}

/* Why disk D of a begin job is read whole when it has no base to count from. */
const char *
read_whole(const DiskJob *d)
{
    return d->bitmap ? "full"
                     : "full: the image cannot hold a dirty bitmap (raw); unchanged chunks cost "
                       "only their dedup";
}

/* ------------------------------------------------------------------------- */
/* The end of the job                                                         */

static void
remove_job_dirs(DomJob *j)
{
    JobPriv *p = j->priv;

    /* A remote job's scratch files are the hypervisor's (libvirt's, or
     * --backup-xml's paths there): a file of that name here is another. */
    for (guint k = 0; !p->nbd_host && k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];
        if (d->scratch)
            unlink(d->scratch);
    }
    if (p->scratch_dir)
        rmdir(p->scratch_dir);
    if (p->sock_dir) {
        g_autofree char *sock = g_build_filename(p->sock_dir, "nbd.sock", NULL);
        unlink(sock);
        rmdir(p->sock_dir);
    }
}

static void
job_failed(DomJob *j, const GError *err)
{
    if (j->error)
        add_note(j, "%s; `virtsnap recover` ends it", err->message);
    dom_fail_from(j, err, "%s; `virtsnap recover` ends it", err->message);
}

/* The copy is over (or failed): the job is aborted, which is how a pull job
 * ends and what releases the scratch files and the NBD server. An abort cut
 * short by a closed connection is tried again on a new one. */
bool
job_settle(Run *run, DomJob *j)
{
    JobPriv *p = j->priv;
    g_autoptr(GError) err = NULL;

    if (!p->job_started)
        return true;
    vs_fault_point("before-commit");
    for (int attempt = 1; attempt < 4; attempt++) {
        g_clear_error(&err);
        if (dom_revive(run, j, "backup-end", &err) && vs_backup_job_abort(j->dom, j->name, &err)) {
            p->job_aborted = true;
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
bool
job_finish(Run *run, DomJob *j)
{
    JobPriv *p = j->priv;
    g_autoptr(GError) err = NULL;

    if (p->job_started) {
        bool gone = false;

        if (!p->job_aborted)
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
        p->job_started = false;
    } else if (j->left) {
        /* A begin whose outcome is unknown: its files may be the job's. */
        return false;
    }
    remove_job_dirs(j);
    journal(run, j, vs_journal_job_ended);
    resume_paused(run, j);
    return true;
}

/* After the manifest: a backup that is in it keeps its checkpoint and this
 * repository's older ones go (their bitmaps merge into the chain), except the
 * chain's full backup's, which a differential counts from; a full backup starts
 * a new chain. A backup that is not in it loses the checkpoint it created, so
 * the next incremental counts from the base it had. Never touches another
 * repository's checkpoints. */
void
job_after_manifest(Run *run, DomJob *j, VsBackupResult *result, VsBackupDomainResult *dr)
{
    JobPriv *p = j->priv;
    g_autoptr(GPtrArray) failed = g_ptr_array_new_with_free_func(g_free);
    bool kept;

    if (p->job_started)
        return;
    kept = result->id && dr && dr->ok;
    if (kept) {
        g_autoptr(GError) err = NULL;
        g_autofree char *full = !j->incremental ? NULL
                                : j->diff ? g_strdup(j->incremental)
                                : vs_checkpoint_chain_full(j->dom, run->repo_tag);
        vs_checkpoints_prune(j->dom, run->repo_tag, p->checkpoint, full, failed);
        if (strcmp(result->id, run->manifest->id) != 0)
            g_ptr_array_add(failed, g_strdup(p->checkpoint));   /* id redrawn: a stranger now */
        /* After the prune: the checkpoint has no parent left to name. */
        else if (!vs_checkpoint_save(j->dom, p->checkpoint, run->repo, run->repo_tag,
                                     j->uuid, &err)) {
            result_note(dr, "%s (a domain defined anew will need a full backup)", err->message);
        }
    } else if (!vs_checkpoint_delete(j->dom, p->checkpoint)) {
        g_ptr_array_add(failed, g_strdup(p->checkpoint));
    }
    if (failed->len && dr) {
        g_ptr_array_add(failed, NULL);
        g_autofree char *names = g_strjoinv(", ", (char **)failed->pdata);
        result_note(dr, "checkpoints left to delete at the next backup: %s", names);
    }
}

void
job_describe(const DomJob *j, VsBackupDomainResult *dr)
{
    const JobPriv *p = j->priv;

    dr->mode = g_strdup("begin");
    dr->checkpoint = g_strdup(p->checkpoint);
    dr->backup_xml = g_strdup(p->backup_xml);
    dr->checkpoint_xml = g_strdup(p->checkpoint_xml);
}

void
job_priv_free(void *priv)
{
    JobPriv *p = priv;

    if (!p)
        return;
    g_free(p->checkpoint);
    g_strfreev(p->other_targets);
    g_free(p->sock_dir); g_free(p->scratch_dir);
    g_free(p->backup_xml); g_free(p->checkpoint_xml);
    g_free(p->nbd_host);
    g_free(p);
}
