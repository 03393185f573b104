/* restore --instant: instead of writing each disk, it is served over NBD (a
 * mount, mount.c) with a qcow2 overlay on the export where its temp file would
 * be, which install renames into place; once the domain runs, each disk is
 * pulled into its overlay (or, for a raw disk, block-copied onto its
 * destination) and the export stopped (instant.c). */
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

/* ------------------------------------------------------------------------- */
/* --instant (the mounts: driver/mount.c; the pull: driver/instant.c)        */

/* Chunks are only looked for: re-hashing them all would take as long as a
 * restore; the plugin re-hashes each chunk it serves (a bad one is a read
 * error, never wrong data). */
bool
restore_instant_check_chunks(Run *run, GError **error)
{
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];
            for (guint c = 0; c < d->md->chunks->len; c++) {
                const VsChunkRef *ref = &g_array_index(d->md->chunks, VsChunkRef, c);
                char hex[VS_DIGEST_HEX_LEN];

                if (vs_repo_has_chunk(run->repo, &ref->digest))
                    continue;
                vs_digest_to_hex(&ref->digest, hex);
                g_set_error(error, VS_ERROR, VS_ERROR_IO,
                            "restore: backup %s cannot be restored: domain '%s' disk %s at offset "
                            "%" G_GUINT64_FORMAT " needs chunk %s, which is missing; nothing was "
                            "touched (virtsnap verify lists every damaged chunk)", r->m->id,
                            r->name, d->target, ref->offset, hex);
                return false;
            }
        }
    }
    return true;
}

/* Instead of writing each disk: serve it, and put a qcow2 overlay on the export
 * where the disk's temp file would be; install renames it into place. */
void
restore_instant_write_phase(Run *run)
{
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        g_autofree char *owner = vs_qemu_dac_owner(run->conn, r->def->type);

        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];
            VsMountOptions mo = { .repo_path = run->opts->repo_path, .backup_id = r->m->id,
                                  .domain = r->name, .disk = d->target, .owner = owner,
                                  .instant_dest = d->dest, .instant_tmp = d->tmp,
                                  .instant_copy = d->instant_copy };
            g_autoptr(GError) err = NULL;

            if (!(d->mount = vs_mount_start(&mo, &err)) ||
                !vs_instant_overlay(d->tmp, d->mount->uri, d->md->virtual_size, &err)) {
                d->error = g_strdup_printf("restore: domain '%s' disk %s: %s", r->name, d->target,
                                           err->message);
                continue;
            }
            d->written = true;
            if (d->instant_copy) {
                VsDiskDef *dd = vs_domain_def_find_disk(r->def, d->target);
                if (dd && dd->src) {
                    dd->src->type = VS_DISK_TYPE_FILE;
                    g_free(dd->src->path);
                    dd->src->path = g_strdup(d->tmp);
                    g_free(dd->src->format);
                    dd->src->format = g_strdup("qcow2");
                }
            }
        }
        restore_fail_on_disk_errors(run, r);
    }
}

static void
instant_unmount(RDom *r, RDisk *d)
{
    g_autoptr(GError) err = NULL;

    if (!vs_mount_stop(d->mount, NULL, true, &err)) {
        restore_note(r, "disk %s is copied, but its export did not stop: %s", d->target, err->message);
        return;
    }
    g_clear_pointer(&d->mount, vs_mount_free);
}

/* The domain does not run: the copy is qemu-img's. */
static void
instant_offline(RDom *r, RDisk *d)
{
    g_autoptr(GError) err = NULL;

    if (d->instant_copy) {
        if (!vs_instant_finish_offline_copy(r->dom, d->target, d->tmp, d->dest, "raw", &err)) {
            restore_dom_fail(r, "restore: domain '%s' is not running and disk %s still is the overlay %s "
                             "reading the backup through %s: %s; the export stays up (mount %s)",
                             r->new_name, d->target, d->tmp, d->mount->uri, err->message, d->mount->id);
            return;
        }
        restore_note(r, "disk %s: the domain was not running, so the backup was copied into %s (raw) "
                     "offline", d->target, d->dest);
        instant_unmount(r, d);
        return;
    }
    if (!vs_instant_finish_offline(d->dest, &err)) {
        g_autofree char *q = g_shell_quote(d->dest);
        restore_dom_fail(r, "restore: domain '%s' is not running and disk %s (%s) still reads the backup "
                         "through %s: %s; the export stays up (mount %s); finish with: qemu-img rebase -f "
                         "qcow2 -b '' %s && virtsnap umount %s", r->new_name, d->target, d->dest,
                         d->mount->uri, err->message, d->mount->id, q, d->mount->id);
        return;
    }
    restore_note(r, "disk %s: the domain was not running, so the backup was copied into %s offline",
                 d->target, d->dest);
    instant_unmount(r, d);
}

void
restore_instant_copy_phase(Run *run)
{
    const VsRestoreOptions *o = run->opts;
    g_autoptr(GArray) jobs = g_array_new(FALSE, TRUE, sizeof(VsPullJob));
    g_autoptr(GPtrArray) jdisks = g_ptr_array_new();

    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];

            if (!d->mount || !d->installed)
                continue;
            if (d->instant_copy && r->started && r->dom && restore_domain_active(r->dom)) {
                g_autoptr(GError) cerr = NULL;
                if (vs_blockcopy_pivot(run->conn, r->dom, d->target, d->dest, "raw", &cerr)) {
                    unlink(d->tmp);
                    if (r->copied_ms < vs_now_ms() - run->t0)
                        r->copied_ms = vs_now_ms() - run->t0;
                    instant_unmount(r, d);
                } else if (!restore_domain_active(r->dom)) {
                    instant_offline(r, d);
                } else {
                    restore_dom_fail(r, "restore: domain '%s' runs, but disk %s is still the overlay %s "
                                     "reading the backup through %s: %s; the export stays up (mount %s); "
                                     "virtsnap recover finishes the copy", r->new_name, d->target, d->tmp,
                                     d->mount->uri, cerr->message, d->mount->id);
                }
                continue;
            }
            if (r->started && r->dom && restore_domain_active(r->dom)) {
                VsPullJob j = { .dom = r->dom, .disk = d->target };
                g_array_append_val(jobs, j);
                g_ptr_array_add(jdisks, d);
            } else {
                instant_offline(r, d);
            }
        }
    }
    if (jobs->len)
        vs_blockpull_run(run->conn, (VsPullJob *)(void *)jobs->data, jobs->len,
                         o->copy_stall_timeout, o->progress, o->progress_opaque);
    for (guint i = 0; i < jobs->len; i++) {
        VsPullJob *j = &g_array_index(jobs, VsPullJob, i);
        RDisk *d = jdisks->pdata[i];
        RDom *r = d->dom;

        if (j->state == VS_PULL_DONE)
            instant_unmount(r, d);
        else if (j->state == VS_PULL_STOPPED)
            instant_offline(r, d);
        else
            restore_dom_fail(r, "restore: domain '%s' runs, but disk %s (%s) still reads the backup through "
                             "%s: %s; the export stays up (mount %s, see virtsnap mount --list); finish the "
                             "copy with: virsh blockpull %s %s --wait && virtsnap umount %s", r->new_name,
                             d->target, d->dest, d->mount->uri, j->error ? j->error : "?", d->mount->id,
                             r->new_name, d->target, d->mount->id);
        if (r->copied_ms < j->done_ms - run->t0)
            r->copied_ms = j->done_ms - run->t0;
        g_free(j->error);
    }
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        bool pending = false;

        for (guint k = 0; k < r->disks->len; k++)
            pending = pending || ((RDisk *)r->disks->pdata[k])->mount;
        if (pending || !r->started) {
            r->copied_ms = -1;
            continue;
        }
        if (r->copied_ms < 0)
            r->copied_ms = vs_now_ms() - run->t0;
        if (o->progress) {
            g_autofree char *msg = g_strdup_printf("%s: disks copied into place after %" G_GINT64_FORMAT
                                                   " ms; it no longer depends on the repository",
                                                   r->new_name, r->copied_ms);
            o->progress(msg, o->progress_opaque);
        }
    }
}
