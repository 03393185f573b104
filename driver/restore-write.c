/* Restore's write: each disk is exported (sparse, raw or qcow2) to a temp file
 * beside its destination, several disks at a time, memory bounded by a few
 * chunks per disk. The export re-hashes every chunk it writes, so there is no
 * verify pass first: a chunk that is missing or corrupt ends the whole run,
 * naming the chunk, with every temp file removed and nothing installed, as a
 * verify pass would have. Another failure (ENOSPC, the repository gone)
 * removes the temp files of that domain. */
#include "config.h"
#include "restore-internal.h"
#include "instant.h"
#include "vs-xml.h"
#include "vs-repo.h"
#include "vs-source.h"
#include "vs-temp.h"

#include <libvirt/virterror.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PROBLEMS_SHOWN 5

/* ------------------------------------------------------------------------- */
/* Write                                                                      */

typedef struct {
    Run *run;
    RDisk *d;
} WriteTask;

/* Chunks the restore needed and could not have (missing, corrupt, unreadable)
 * end the whole run, as a failed verify would: named with their files, and
 * nothing installed. */
static void
bad_chunks_error(Run *run, GPtrArray *bad, GError **error)
{
    g_autoptr(GString) msg = g_string_new(NULL);

    for (guint i = 0; i < bad->len && i < MAX_PROBLEMS_SHOWN; i++) {
        VsVerifyProblem *p = bad->pdata[i];
        g_autofree char *file = NULL;

        if (p->digest_hex) {
            char sub[3] = { p->digest_hex[0], p->digest_hex[1], 0 };
            file = g_build_filename(vs_repo_path(run->repo), "chunks", sub, p->digest_hex, NULL);
        }
        g_string_append_printf(msg, "%sdomain '%s' disk %s at offset %" G_GUINT64_FORMAT
                                " needs chunk %s (%s), which is %s", i ? "; " : "", p->domain,
                                p->disk, p->offset, p->digest_hex ? p->digest_hex : "?",
                                file ? file : "?", p->problem);
    }
    if (bad->len > MAX_PROBLEMS_SHOWN)
        g_string_append_printf(msg, "; and %u more", bad->len - MAX_PROBLEMS_SHOWN);
    g_set_error(error, VS_ERROR, VS_ERROR_IO,
                "restore: backup %s cannot be restored: %s; nothing was touched (virtsnap verify "
                "lists every damaged chunk)", ((VsVerifyProblem *)bad->pdata[0])->backup_id, msg->str);
}

static bool
sink_chunks_ok(Run *run, RDisk *d, GError **error)
{
    for (guint i = 0; i < d->md->chunks->len; i++) {
        const VsChunkRef *c = &g_array_index(d->md->chunks, VsChunkRef, i);
        size_t len = 0;
        g_autofree char *data = NULL;

        if (g_atomic_int_get(&run->cancel)) {
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "not checked (cancelled)");
            return false;
        }
        if (!vs_interrupt_check("not checked", error))
            return false;
        if (!(data = vs_repo_get_chunk(run->repo, &c->digest, &len, error))) {
            vs_error_prefix(error, "chunk at offset %" G_GUINT64_FORMAT " (nothing was written)",
                            c->offset);
            return false;
        }
    }
    return true;
}

/* There is no verify pass before the write: the export re-hashes every chunk
 * as it writes it, into a temp file, and nothing is installed before every
 * disk of the run is written. A bad chunk cancels the other disks at once. */
static void
write_one(gpointer data, gpointer user)
{
    WriteTask *t = data;
    RDisk *d = t->d;
    /* Built at tmp (journaled), which install renames over dest. */
    VsExportControl ctl = { .cancel = &t->run->cancel, .verify_hash = t->run->opts->verify_hash,
                            .tmp = d->tmp, .keep_tmp = true };
    g_autoptr(GError) err = NULL;

    (void)user;
    /* Tests: time to pull the repository away from under a running restore,
     * and a file that says the write phase has begun. */
    if (g_getenv("VIRTSNAP_FAULT_RESTORE_DELAY_MS")) {
        if (g_getenv("VIRTSNAP_FAULT_RESTORE_MARK"))
            (void)g_file_set_contents(g_getenv("VIRTSNAP_FAULT_RESTORE_MARK"), "", 0, NULL);
        g_usleep(g_ascii_strtoull(g_getenv("VIRTSNAP_FAULT_RESTORE_DELAY_MS"), NULL, 10) * 1000);
    }
    /* A disk still queued when another met a bad chunk, or after an
     * interrupt: the run is over. */
    if (vs_interrupted()) {
        d->error = g_strdup_printf("restore: domain '%s' disk %s: not written (interrupted by %s)",
                                   d->dom->name, d->target, vs_signal_name(vs_interrupted()));
        return;
    }
    if (g_atomic_int_get(&t->run->cancel)) {
        d->error = g_strdup_printf("restore: domain '%s' disk %s: not written (cancelled)", d->dom->name,
                                   d->target);
        return;
    }
    if (d->sink_url && !d->sink_image) {
        /* Written over at install; here every chunk it needs is checked, so
         * that a bad one ends the run before anything is overwritten. */
        if (sink_chunks_ok(t->run, d, &err))
            d->written = true;
        else
            d->error = g_strdup_printf("restore: domain '%s' disk %s: %s", d->dom->name, d->target,
                                       err->message);
        return;
    }
    if (vs_repo_export_disk_ctl(t->run->repo, d->dom->m, d->dom->name, d->target, d->dest, d->format, &ctl,
                                &err)) {
        d->written = true;
        return;
    }
    if (ctl.bad_chunk) {
        d->bad_chunk = ctl.bad_chunk;
        g_atomic_int_set(&t->run->cancel, 1);
    }
    {
        /* The temp file is gone: name the destination instead. */
        g_autoptr(GString) msg = g_string_new(err->message);

        g_string_replace(msg, d->tmp, d->dest, 0);
        d->error = g_strdup_printf("restore: domain '%s' disk %s: %s", d->dom->name, d->target, msg->str);
    }
}

static bool
create_volume(Run *run, RDisk *d, GError **error)
{
    g_autoptr(VsVolDef) vd = g_new0(VsVolDef, 1);
    g_autofree char *xml = NULL;
    virStorageVolPtr vol;
    char *path;

    vd->name = g_strdup(d->vol_name);
    vd->capacity = d->md->virtual_size;
    vd->allocation = 0;
    vd->target_format = g_strdup(d->format);
    xml = vs_vol_def_format(vd);
    if (!(vol = virStorageVolCreateXML(run->pool, xml, 0))) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: creating volume %s in pool '%s'",
                             d->vol_name, run->opts->pool);
        return false;
    }
    d->vol_created = true;
    path = virStorageVolGetPath(vol);
    virStorageVolFree(vol);
    if (path && g_strcmp0(path, d->dest) != 0) {
        g_autofree char *dir = g_path_get_dirname(path);
        if (g_strcmp0(dir, d->dir) != 0) {
            free(path);
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "restore: pool '%s' put volume %s outside its directory %s",
                        run->opts->pool, d->vol_name, d->dir);
            return false;
        }
        g_free(d->dest);
        d->dest = g_strdup(path);
    }
    free(path);
    return true;
}

static void
delete_volume(Run *run, RDisk *d)
{
    virStorageVolPtr vol;

    if (!d->vol_created)
        return;
    if ((vol = virStorageVolLookupByName(run->pool, d->vol_name))) {
        virStorageVolDelete(vol, 0);
        virStorageVolFree(vol);
    }
    d->vol_created = false;
}

/* Removes what a domain that failed before its disks were installed left. */
void
restore_discard_temps(Run *run, RDom *r)
{
    for (guint i = 0; i < r->disks->len; i++) {
        RDisk *d = r->disks->pdata[i];
        if (!d->installed) {
            if (d->tmp)
                unlink(d->tmp);
            delete_volume(run, d);
            if (d->mount) {
                (void)vs_mount_stop(d->mount, NULL, true, NULL);
                g_clear_pointer(&d->mount, vs_mount_free);
            }
        }
    }
}

/* A domain with any disk that could not be written fails as a whole, and
 * what its other disks wrote is removed: nothing of it was changed. */
void
restore_fail_on_disk_errors(Run *run, RDom *r)
{
    for (guint k = 0; k < r->disks->len; k++) {
        RDisk *d = r->disks->pdata[k];
        if (d->error)
            restore_dom_fail(r, "%s; nothing of domain '%s' was changed", d->error, r->new_name);
    }
    if (r->error)
        restore_discard_temps(run, r);
}

bool
restore_write_phase(Run *run, GError **error)
{
    g_autoptr(GPtrArray) bad = g_ptr_array_new();
    g_autoptr(GPtrArray) tasks = g_ptr_array_new_with_free_func(g_free);
    GThreadPool *pool = g_thread_pool_new(write_one, NULL, MAX(1, run->opts->parallel_disks), TRUE, NULL);

    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];
            WriteTask *t;

            if (d->vol_name && !d->dest_exists) {
                g_autoptr(GError) err = NULL;
                if (!create_volume(run, d, &err)) {
                    d->error = g_strdup(err->message);
                    continue;
                }
            }
            t = g_new0(WriteTask, 1);
            t->run = run;
            t->d = d;
            g_ptr_array_add(tasks, t);
            g_thread_pool_push(pool, t, NULL);
        }
    }
    g_thread_pool_free(pool, FALSE, TRUE);
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];
            if (d->bad_chunk)
                g_ptr_array_add(bad, d->bad_chunk);
        }
    }
    if (bad->len > 0) {
        for (guint i = 0; i < run->doms->len; i++)
            restore_discard_temps(run, run->doms->pdata[i]);
        bad_chunks_error(run, bad, error);
        return false;
    }
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        restore_fail_on_disk_errors(run, r);
    }
    return true;
}
