/* The pieces of restore --instant that sit on top of mounts (mount.c): the
 * overlay on an export, the copy that makes it stand alone (a block pull while
 * the guest runs, qemu-img while it does not), and recover's finishing of an
 * interrupted restore --instant.
 *
 * Each disk becomes a qcow2 overlay at its destination whose backing file is
 * the NBD export; libvirt starts the domain on it (it reads the backing chain
 * from the image: nbd+unix://...), then a block pull (block-stream, no base)
 * copies every block of the backing into the overlay while the guest runs,
 * and drops the backing. Pull rather than copy: the image is already where it
 * belongs, nothing needs a pivot, and a pull left to itself (virtsnap killed)
 * still ends with a standalone image. */
#include "config.h"
#include "driver-internal.h"
#include "instant.h"
#include "mount-internal.h"
#include "blockjob-events.h"
#include "vs-block.h"
#include "vs-restore.h"
#include "vs-xml.h"

#include <libvirt/virterror.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROGRESS_EVERY_S 15

static bool
run_tool(const char *const *argv, const char *what, GError **error)
{
    g_autofree char *out = NULL, *err = NULL;
    g_autoptr(GError) lerr = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                      &status, &lerr)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s", what, lerr->message);
        return false;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s", what,
                    g_strstrip(err && *err ? err : out ? out : g_strdup("failed")));
        return false;
    }
    return true;
}

bool
vs_instant_overlay(const char *path, const char *uri, uint64_t size, GError **error)
{
    g_autofree char *sz = g_strdup_printf("%" G_GUINT64_FORMAT, size);
    g_autofree char *what = g_strdup_printf("restore: creating %s on %s", path, uri);
    const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", uri, "-F", "raw",
                           path, sz, NULL };

    if (!run_tool(argv, what, error))
        return false;
    if (chmod(path, 0600) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "restore: %s: %s", path, g_strerror(errno));
        unlink(path);
        return false;
    }
    return true;
}

bool
vs_instant_finish_offline(const char *path, GError **error)
{
    g_autofree char *what = g_strdup_printf("restore: copying the backup into %s (qemu-img rebase)", path);
    const char *argv[] = { "qemu-img", "rebase", "-q", "-f", "qcow2", "-b", "", path, NULL };

    return run_tool(argv, what, error);
}

/* Points DOM's persistent definition of disk TARGET at the file PATH as FORMAT. */
static bool
redefine_disk(virDomainPtr dom, const char *target, const char *path, const char *format,
              GError **error)
{
    g_autofree char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
    g_autoptr(VsDomainDef) def = xml ? vs_domain_def_parse_string(xml, "definition", error) : NULL;
    VsDiskDef *d = def ? vs_domain_def_find_disk(def, target) : NULL;
    g_autofree char *out = NULL;
    virDomainPtr again;

    if (!xml) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: domain '%s'", virDomainGetName(dom));
        return false;
    }
    if (!d || !d->src) {
        if (def)
            g_set_error(error, VS_ERROR, VS_ERROR_XML, "restore: domain '%s' has no disk %s",
                        virDomainGetName(dom), target);
        return false;
    }
    d->src->type = VS_DISK_TYPE_FILE;
    g_free(d->src->path);
    d->src->path = g_strdup(path);
    g_free(d->src->format);
    d->src->format = g_strdup(format);
    g_clear_pointer(&d->src->backing, vs_storage_source_free);
    d->src->backing_terminated = false;
    if (!(out = vs_domain_def_format(def, error)))
        return false;
    if (!(again = virDomainDefineXML(virDomainGetConnect(dom), out))) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: redefining domain '%s'",
                             virDomainGetName(dom));
        return false;
    }
    virDomainFree(again);
    return true;
}

bool
vs_instant_finish_offline_copy(virDomainPtr dom, const char *target, const char *overlay,
                               const char *dest, const char *format, GError **error)
{
    g_autofree char *what = g_strdup_printf("restore: copying the backup into %s (qemu-img convert)", dest);
    const char *argv[] = { "qemu-img", "convert", "-q", "-n", "-f", "qcow2", "-O", format, overlay,
                           dest, NULL };

    if (!run_tool(argv, what, error) || !redefine_disk(dom, target, dest, format, error))
        return false;
    unlink(overlay);
    return true;
}

/* Does DISK of the running DOM still have a backing image? 1 yes, 0 no, -1 unknown. */
static int
has_backing(virDomainPtr dom, const char *disk)
{
    g_autofree char *xml = virDomainGetXMLDesc(dom, 0);
    g_autoptr(VsDomainDef) def = xml ? vs_domain_def_parse_string(xml, "live", NULL) : NULL;
    VsDiskDef *d = def ? vs_domain_def_find_disk(def, disk) : NULL;

    if (!d || !d->src)
        return -1;
    return d->src->backing != NULL;
}

static void
pull_fail(VsPullJob *j, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
pull_fail(VsPullJob *j, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_free(j->error);
    j->error = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    j->state = VS_PULL_FAILED;
}

static void
say(void (*progress)(const char *, void *), void *opaque, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
say(void (*progress)(const char *, void *), void *opaque, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    if (!progress)
        return;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    progress(msg, opaque);
}

void
vs_blockpull_run(virConnectPtr conn, VsPullJob *jobs, guint n, int stall_s,
                 void (*progress)(const char *message, void *opaque), void *opaque)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    gint64 next_report = g_get_monotonic_time() + PROGRESS_EVERY_S * G_USEC_PER_SEC;
    guint running = 0;

    if (!vs_block_events_watch(conn, "restore", &err)) {
        for (guint i = 0; i < n; i++)
            pull_fail(&jobs[i], "%s", err->message);
        return;
    }
    for (guint i = 0; i < n; i++) {
        VsPullJob *j = &jobs[i];
        const char *name = virDomainGetName(j->dom);
        char *key = vs_block_event_key(j->dom, j->disk);

        g_ptr_array_add(keys, key);
        vs_block_event_forget(key);
        j->state = VS_PULL_RUNNING;
        j->last_change = g_get_monotonic_time();
        if (!j->adopt && virDomainBlockPull(j->dom, j->disk, 0, 0) < 0) {
            pull_fail(j, "starting the copy (block pull) of domain '%s' disk %s: %s", name, j->disk,
                      virGetLastErrorMessage());
            continue;
        }
        running++;
    }
    while (running > 0) {
        gint64 now;

        vs_block_events_wait_any(g_get_monotonic_time() + G_USEC_PER_SEC);
        now = g_get_monotonic_time();
        for (guint i = 0; i < n; i++) {
            VsPullJob *j = &jobs[i];
            const char *name = virDomainGetName(j->dom);
            int ev = vs_block_event_status(keys->pdata[i], VIR_DOMAIN_BLOCK_JOB_TYPE_PULL);
            virDomainBlockJobInfo info;
            int r;

            if (j->state != VS_PULL_RUNNING)
                continue;
            if (ev == VIR_DOMAIN_BLOCK_JOB_COMPLETED) {
                j->state = VS_PULL_DONE;
            } else if (ev == VIR_DOMAIN_BLOCK_JOB_FAILED || ev == VIR_DOMAIN_BLOCK_JOB_CANCELED) {
                if (virDomainIsActive(j->dom) == 0)
                    j->state = VS_PULL_STOPPED;
                else
                    pull_fail(j, "the copy (block pull) of domain '%s' disk %s %s", name, j->disk,
                              ev == VIR_DOMAIN_BLOCK_JOB_FAILED ? "failed (an unreadable chunk? "
                              "see the export's log)" : "was cancelled");
            } else if (virDomainIsActive(j->dom) == 0) {
                j->state = VS_PULL_STOPPED;
            } else if ((r = virDomainGetBlockJobInfo(j->dom, j->disk, &info, 0)) == 1) {
                if (info.cur != j->cur) {
                    j->cur = info.cur;
                    j->last_change = now;
                }
                j->end = info.end;
                if (stall_s > 0 && now - j->last_change > (gint64)stall_s * G_USEC_PER_SEC)
                    pull_fail(j, "the copy (block pull) of domain '%s' disk %s made no progress "
                              "for %d s (at %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes); "
                              "it was left running", name, j->disk, stall_s,
                              (uint64_t)info.cur, (uint64_t)info.end);
            } else if (r == 0 &&
                       vs_block_event_status(keys->pdata[i], VIR_DOMAIN_BLOCK_JOB_TYPE_PULL) < 0) {
                /* Gone without an event we saw (or before we watched): the chain says. */
                int b = has_backing(j->dom, j->disk);
                if (b == 0)
                    j->state = VS_PULL_DONE;
                else if (virDomainIsActive(j->dom) == 0)
                    j->state = VS_PULL_STOPPED;
                else
                    pull_fail(j, "the copy (block pull) of domain '%s' disk %s ended, but the disk "
                              "still has its backing image", name, j->disk);
            }
            if (j->state == VS_PULL_DONE && has_backing(j->dom, j->disk) == 1)
                pull_fail(j, "the copy (block pull) of domain '%s' disk %s completed, but the disk "
                          "still has its backing image", name, j->disk);
            if (j->state != VS_PULL_RUNNING) {
                j->done_ms = vs_now_ms();
                running--;
            }
        }
        if (running > 0 && now >= next_report) {
            next_report = now + PROGRESS_EVERY_S * G_USEC_PER_SEC;
            for (guint i = 0; i < n; i++)
                if (jobs[i].state == VS_PULL_RUNNING && jobs[i].end > 0)
                    say(progress, opaque, "%s: copying disk %s: %" G_GUINT64_FORMAT "%%",
                        virDomainGetName(jobs[i].dom), jobs[i].disk, jobs[i].cur * 100 / jobs[i].end);
        }
    }
    for (guint i = 0; i < keys->len; i++)
        vs_block_event_forget(keys->pdata[i]);
}

/* ------------------------------------------------------------------------- */
/* recover: an interrupted restore --instant                                  */

static bool
source_is_export(const VsStorageSource *s, const VsMount *m)
{
    if (g_strcmp0(s->protocol, "nbd") != 0)
        return false;
    for (guint h = 0; h < s->hosts->len; h++) {
        const VsHostDef *host = s->hosts->pdata[h];
        if (m->socket ? g_strcmp0(host->socket, m->socket) == 0
                      : (host->port && atoi(host->port) == m->port))
            return true;
    }
    return false;
}

/* The running domain and disk target whose live chain reads M's export. */
static bool
instant_user(const VsMount *m, virConnectPtr conn, virDomainPtr *dom_out, char **disk_out,
             GError **error)
{
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);

    *dom_out = NULL;
    *disk_out = NULL;
    if (n < 0) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "recover: cannot list the running domains");
        return false;
    }
    for (int i = 0; i < n; i++) {
        g_autofree char *xml = *dom_out ? NULL : virDomainGetXMLDesc(doms[i], 0);
        g_autoptr(VsDomainDef) def = xml ? vs_domain_def_parse_string(xml, "live", NULL) : NULL;

        for (guint k = 0; def && k < def->disks->len && !*dom_out; k++) {
            VsDiskDef *d = def->disks->pdata[k];
            for (VsStorageSource *s = d->src ? d->src->backing : NULL; s && !*dom_out; s = s->backing)
                if (source_is_export(s, m)) {
                    *dom_out = doms[i];
                    *disk_out = g_strdup(d->target_dev);
                    doms[i] = NULL;
                }
        }
        if (doms[i])
            virDomainFree(doms[i]);
    }
    free(doms);
    return true;
}

/* Does the qcow2 PATH name URI as its backing file? (Its header says.) */
static bool
image_backed_by(const char *path, const char *uri)
{
    g_autoptr(VsImageInfo) info = path ? vs_image_probe(path, NULL) : NULL;

    return info && g_strcmp0(info->backing_file, uri) == 0;
}

static void
instant_act(GPtrArray *actions, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
instant_act(GPtrArray *actions, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(actions, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

/* The shut-off domain whose definition has PATH as a disk (its target in *DISK). */
static virDomainPtr
defined_user(virConnectPtr conn, const char *path, char **disk)
{
    virDomainPtr *doms = NULL, found = NULL;
    int n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_INACTIVE);

    for (int i = 0; i < n; i++) {
        g_autofree char *xml = found ? NULL : virDomainGetXMLDesc(doms[i], VIR_DOMAIN_XML_INACTIVE);
        g_autoptr(VsDomainDef) def = xml ? vs_domain_def_parse_string(xml, "definition", NULL) : NULL;

        for (guint k = 0; def && k < def->disks->len && !found; k++) {
            VsDiskDef *d = def->disks->pdata[k];
            if (d->src && !g_strcmp0(d->src->path, path)) {
                found = doms[i];
                doms[i] = NULL;
                *disk = g_strdup(d->target_dev);
            }
        }
        if (doms[i])
            virDomainFree(doms[i]);
    }
    free(doms);
    return found;
}

/* The export of a raw disk of an interrupted restore --instant: the guest ran on
 * the overlay at instant_tmp, to be block-copied onto instant_dest. */
static bool
instant_recover_copy(virConnectPtr conn, VsMount *m, GPtrArray *actions, GError **error)
{
    virDomainPtr dom = NULL;
    g_autofree char *disk = NULL;

    if (!instant_user(m, conn, &dom, &disk, error))
        return false;
    if (dom) {
        virDomainBlockJobInfo info;
        const char *name = virDomainGetName(dom);
        bool ok;

        /* The killed restore's copy lost its READY event with it: start again. */
        if (virDomainGetBlockJobInfo(dom, disk, &info, 0) > 0) {
            (void)virDomainBlockJobAbort(dom, disk, 0);
            for (int i = 0; i < 300 && virDomainGetBlockJobInfo(dom, disk, &info, 0) > 0; i++)
                g_usleep(100 * 1000);
        }
        ok = vs_blockcopy_pivot(conn, dom, disk, m->instant_dest, "raw", error);
        if (ok) {
            unlink(m->instant_tmp);
            instant_act(actions, "finished the copy of domain '%s' disk %s from backup %s into %s "
                        "(block copy): it no longer depends on the repository", name, disk,
                        m->backup_id, m->instant_dest);
        } else {
            vs_error_prefix(error, "recover: the export stays up (mount %s): ", m->id);
        }
        virDomainFree(dom);
        if (!ok)
            return false;
    } else if (m->instant_tmp && g_file_test(m->instant_tmp, G_FILE_TEST_EXISTS)) {
        g_autofree char *target = NULL;
        virDomainPtr off = defined_user(conn, m->instant_tmp, &target);

        if (off) {
            bool ok = vs_instant_finish_offline_copy(off, target, m->instant_tmp, m->instant_dest,
                                                     "raw", error);
            if (ok)
                instant_act(actions, "copied backup %s into %s offline (qemu-img convert) and "
                            "pointed domain '%s' disk %s at it", m->backup_id, m->instant_dest,
                            virDomainGetName(off), target);
            virDomainFree(off);
            if (!ok) {
                vs_error_prefix(error, "recover: the export stays up (mount %s): ", m->id);
                return false;
            }
        } else {
            unlink(m->instant_tmp);
            instant_act(actions, "removed %s, left by an interrupted restore --instant",
                        m->instant_tmp);
        }
    }
    if (!vs_mount_stop(m, NULL, true, error))
        return false;
    instant_act(actions, "stopped export %s (%s) of backup %s", m->id, m->uri, m->backup_id);
    return true;
}

/* One export of an interrupted restore --instant. */
static bool
instant_recover_one(virConnectPtr conn, VsMount *m, GPtrArray *actions, GError **error)
{
    g_autoptr(GError) err = NULL;
    virDomainPtr dom = NULL;
    g_autofree char *disk = NULL;

    if (!m->alive) {
        /* Without its server the guest's reads of uncopied data already
         * failed; a new server would be another export, not the one QEMU
         * opened. Say so rather than guess. */
        const char *on = image_backed_by(m->instant_dest, m->uri) ? m->instant_dest :
                         m->instant_tmp && image_backed_by(m->instant_tmp, m->uri) ? m->instant_tmp : NULL;
        if (on) {
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                        "recover: %s still reads backup %s (domain '%s' disk %s) through %s, whose "
                        "server is gone; stop the domain that uses it, then restore the disk again "
                        "(virtsnap restore --repo %s --backup %s ...)", on, m->backup_id,
                        m->domain, m->disk, m->uri, m->repo, m->backup_id);
            return false;
        }
        if (m->instant_tmp && unlink(m->instant_tmp) == 0)
            instant_act(actions, "removed %s, left by an interrupted restore --instant", m->instant_tmp);
        return vs_mount_stop(m, NULL, true, error);
    }
    if (m->instant_copy)
        return instant_recover_copy(conn, m, actions, error);
    if (!instant_user(m, conn, &dom, &disk, error))
        return false;
    if (dom) {
        virDomainBlockJobInfo info;
        VsPullJob j = { .dom = dom, .disk = disk };
        const char *name = virDomainGetName(dom);

        j.adopt = virDomainGetBlockJobInfo(dom, disk, &info, 0) == 1 &&
                  info.type == VIR_DOMAIN_BLOCK_JOB_TYPE_PULL;
        vs_blockpull_run(conn, &j, 1, 0, NULL, NULL);
        if (j.state != VS_PULL_DONE) {
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                        "recover: domain '%s' disk %s still reads backup %s through %s: %s; the "
                        "export stays up (mount %s); run recover again", name, disk, m->backup_id,
                        m->uri, j.error ? j.error : "the domain stopped during the copy", m->id);
            g_free(j.error);
            virDomainFree(dom);
            return false;
        }
        instant_act(actions, "%s the copy of domain '%s' disk %s from backup %s (block pull): it "
                    "no longer depends on the repository", j.adopt ? "waited for" : "finished",
                    name, disk, m->backup_id);
        virDomainFree(dom);
    } else if (image_backed_by(m->instant_dest, m->uri)) {
        if (!vs_instant_finish_offline(m->instant_dest, error)) {
            vs_error_prefix(error, "recover: the export stays up (mount %s): ", m->id);
            return false;
        }
        instant_act(actions, "copied backup %s into %s offline (qemu-img rebase): it no longer "
                    "depends on the repository", m->backup_id, m->instant_dest);
    } else if (m->instant_tmp && image_backed_by(m->instant_tmp, m->uri)) {
        /* The restore died before it installed the disk: nothing uses it. */
        unlink(m->instant_tmp);
        instant_act(actions, "removed %s, left by an interrupted restore --instant", m->instant_tmp);
    }
    if (!vs_mount_stop(m, NULL, true, &err)) {
        g_propagate_error(error, g_steal_pointer(&err));
        return false;
    }
    instant_act(actions, "stopped export %s (%s) of backup %s", m->id, m->uri, m->backup_id);
    return true;
}

bool
vs_instant_recover(virConnectPtr conn, GPtrArray *actions, GError **error)
{
    g_autoptr(GPtrArray) mounts = vs_mount_list(error);
    bool ok = true;

    if (!mounts)
        return false;
    for (guint i = 0; i < mounts->len; i++) {
        VsMount *m = mounts->pdata[i];
        g_autoptr(GError) err = NULL;

        if (!m->instant_dest)
            continue;                   /* a mount of the user's own */
        if (m->restore_pid > 0 && vs_mount_pid_alive(m->restore_pid, m->restore_starttime)) {
            instant_act(actions, "left alone: export %s belongs to a restore --instant that still "
                        "runs (pid %d)", m->id, m->restore_pid);
            continue;
        }
        if (!instant_recover_one(conn, m, actions, &err)) {
            if (ok && error && !*error)
                g_propagate_error(error, g_steal_pointer(&err));
            else
                instant_act(actions, "%s", err->message);
            ok = false;
        }
    }
    return ok;
}
