/* The copy stage of a backup run: the guests run again, and every stable disk
 * goes into the repository, several at once, at a lower priority. Each disk is
 * read where its method says its point in time is (open_disk): an image below
 * an overlay (or of a shut-off domain) through the data path here, as
 * --data-path says; a pull-mode job's NBD export; the file a push-mode job
 * wrote, once the job has ended (before_copy). */
#include "config.h"
#include "backup-internal.h"

#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

typedef struct {
    Run *run;
    DomJob *j;
    DiskJob *d;
} CopyTask;

static void
copy_progress(uint64_t done, uint64_t total, void *opaque)
{
    CopyTask *t = opaque;
    progress(t->run, VS_BACKUP_PHASE_COPY, t->j->name, t->d->target, done, total);
}

/* The reader for D, as --data-path says: storage on NFS or iSCSI read from
 * here with libnfs/libiscsi (a qcow2 through its map, so the data never passes
 * through a server process); a local chain from its files; and QEMU's own
 * drivers, served by qemu-nbd, for everything else. Under auto, a direct path
 * that does not answer falls back to the host's view and says why. */
VsSource *
open_reader(Run *run, DomJob *j, DiskJob *d, GError **error)
{
    const char *url = d->url ? d->url : d->direct_url;
    bool raw = g_strcmp0(d->format, "raw") == 0;
    GError *err = NULL;
    VsSource *src = NULL;
    /* CHAP: the secret the disk's <auth> names, else --iscsi-auth. */
    g_autoptr(VsIscsiAuth) disk_auth = url && g_str_has_prefix(url, "iscsi://") ?
                                       vs_disk_iscsi_auth(vs_link_conn(run->link), j->xml, d->target, error) : NULL;
    const VsIscsiAuth *auth = disk_auth ? disk_auth : run->iscsi_auth;

    if (error && *error)
        return NULL;
    /* Only NFS and iSCSI have a direct path of ours: under auto, others (RBD,
     * gluster, ...) are QEMU's to read, with no note about a failed try. */
    if (url && run->opts->data_path == VS_DATA_PATH_AUTO && !g_str_has_prefix(url, "nfs://") &&
        !g_str_has_prefix(url, "iscsi://"))
        url = NULL;
    if (url && run->opts->data_path != VS_DATA_PATH_HOST) {
        /* The map path has no CHAP of its own (qemu-img map would need the
         * secret too): such a qcow2 is read through qemu-nbd below. */
        src = raw ? vs_source_open_url(url, auth, false, &err)
                  : vs_source_open_mapped(url, d->format, &err);
        if (src) {
            d->data_path = g_str_has_prefix(url, "iscsi://") ? "iscsi" : "nfs";
            return src;
        }
        if (run->opts->data_path == VS_DATA_PATH_DIRECT) {
            g_propagate_prefixed_error(error, err, "--data-path=direct: ");
            return NULL;
        }
        d->direct_failed = g_strdup(err->message);
        g_clear_error(&err);
    }
    if (d->path && raw) {
        d->data_path = "file";
        return vs_source_open_file(d->path, error);
    }
    if (d->path) {
        if ((src = vs_source_open_mapped(d->path, d->format, &err))) {
            d->data_path = "file";
            return src;
        }
        if (!g_error_matches(err, VS_ERROR, VS_ERROR_UNSUPPORTED)) {
            g_propagate_error(error, err);
            return NULL;
        }
        g_clear_error(&err);
    }
    d->data_path = "qemu-nbd";
    return vs_source_open_image_auth(d->path ? d->path : d->url, d->format,
                                     d->path ? NULL : auth, error);
}

static void
copy_one(gpointer data, gpointer user)
{
    CopyTask *t = data;
    DiskJob *d = t->d;
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    VsCopyOptions copts;
    const char *fault = g_getenv("VIRTSNAP_FAULT_COPY_AFTER");
    VsManifestDisk *m = vs_manifest_disk_new(d->target);
    const BackupMethod *method = t->j->method;
    g_autofree char *why = NULL;

    (void)user;
    m->format = g_strdup(d->format);
    m->source = g_strdup(d->path ? d->path : d->url);
    g_ptr_array_unref(m->chain);
    m->chain = g_ptr_array_ref(d->chain);

    vs_copy_options_init(&copts);
    if ((src = method->open_disk(t->run, t->j, d, &copts, &err))) {
        copts.progress = copy_progress;
        copts.progress_opaque = t;
        if (fault)
            copts.fault_after_bytes = g_ascii_strtoull(fault, NULL, 10);
        if (vs_copy_source_to_repo(src, t->run->repo, m, &copts, &err)) {
            d->bytes_read = m->bytes_read;
            d->bytes_stored = m->bytes_stored;
            d->mdisk = m;
            return;
        }
    }
    /* The message names the disk; the code stays the reader's. */
    if (method->copy_failed && (why = method->copy_failed(t->j, d, err)))
        d->error = g_error_new_literal(err->domain, err->code, why);
    else
        d->error = g_error_new(err->domain, err->code, "copy: domain '%s' disk %s: %s", t->j->name,
                               d->target, err->message);
    manifest_disk_free(m);
}

void
backup_copy(Run *run)
{
    g_autoptr(GPtrArray) tasks = g_ptr_array_new_with_free_func(g_free);
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int old_nice = getpriority(PRIO_PROCESS, tid);
    GThreadPool *pool;

    /* The guests run again while we copy, and under TCG a guest is a CPU hog
     * that stalls when the copy takes its cores: copy at a lower priority.
     * Linux nice values are per thread and inherited by the threads (and the
     * qemu-nbd readers) created from here on; the freeze is long over. */
    if (run->opts->copy_nice > 0)
        (void)setpriority(PRIO_PROCESS, tid, MIN(old_nice + run->opts->copy_nice, 19));
    pool = g_thread_pool_new(copy_one, NULL, MAX(1, run->opts->parallel_disks), TRUE, NULL);

    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        if (j->error || (j->method->before_copy && !j->method->before_copy(run, j)))
            continue;
        for (guint k = 0; k < j->disks->len; k++) {
            CopyTask *t;
            /* Recorded already (a snapshot-only disk): nothing to copy. */
            if (((DiskJob *)j->disks->pdata[k])->mdisk)
                continue;
            t = g_new0(CopyTask, 1);
            t->run = run;
            t->j = j;
            t->d = j->disks->pdata[k];
            g_ptr_array_add(tasks, t);
            g_thread_pool_push(pool, t, NULL);
        }
    }
    g_thread_pool_free(pool, FALSE, TRUE);
    /* Back to normal for the commits (needs privilege; without it, stay nice). */
    (void)setpriority(PRIO_PROCESS, tid, old_nice);
    vs_fault_point("after-copy");
    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *d = j->disks->pdata[k];
            if (d->error)
                dom_fail_error(j, d->error);
        }
    }
}

