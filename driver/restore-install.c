/* Restore's install, per domain, only once all of its disks are complete: a
 * running domain is stopped (in place, --force) or, for single disks
 * (--disks), each disk is hot-swapped (live detach, rename, live attach); temp
 * files are renamed over their destination (owner and mode kept), or a LUN,
 * NFS file or block device written over in place; then the definition is
 * defined and started, or written to NAME.xml with the virsh command that
 * defines it. */
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

#define DETACH_TIMEOUT_MS 30000

/* ------------------------------------------------------------------------- */
/* Install                                                                    */

static bool
fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool ok;

    if (fd < 0)
        return false;
    ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

/* In place over a LUN or an NFS file: the domain is stopped by now. */
static bool
install_sink(Run *run, RDisk *d, GError **error)
{
    g_autofree char *xml = vs_domain_def_format(d->dom->def, error);
    /* CHAP: the secret the disk's <auth> names in the definition restored. */
    g_autoptr(VsIscsiAuth) auth = xml ? vs_disk_iscsi_auth(run->conn, xml, d->target, error) : NULL;
    g_autoptr(VsSource) sink = xml && !(error && *error) ? vs_source_open_url(d->sink_url, auth, true, error)
                                                          : NULL;
    g_autoptr(VsSource) image = NULL;

    if (sink && d->sink_image) {
        if (!(image = vs_source_open_file(d->tmp, error)) || !vs_copy_file_to_sink(image, sink, error)) {
            vs_error_prefix(error, "restore: domain '%s' disk %s", d->dom->name, d->target);
            return false;
        }
        unlink(d->tmp);
        d->installed = true;
        return true;
    }

    if (!sink || !vs_copy_repo_to_sink(run->repo, d->md, sink, true, error)) {
        vs_error_prefix(error, "restore: domain '%s' disk %s", d->dom->name, d->target);
        return false;
    }
    d->installed = true;
    return true;
}

/* TMP becomes DEST, with DEST's owner and mode when it exists. */
static bool
install_file(RDisk *d, const char *dest, bool replace, GError **error)
{
    struct stat st;
    int err;

    if (lstat(dest, &st) == 0) {
        if (!replace) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "restore: %s appeared meanwhile; the restored "
                        "image is kept as %s", dest, d->tmp);
            return false;
        }
        /* Through the file itself: a symlink put in its place (a directory
         * others can write to) must not hand its target DEST's owner. */
        int fd = open(d->tmp, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

        err = fd < 0 ? errno : fchown(fd, st.st_uid, st.st_gid) < 0 || fchmod(fd, st.st_mode & 07777) < 0
                                   ? errno : 0;
        if (fd >= 0)
            close(fd);
        if (err) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "restore: %s: copying owner and mode of %s: %s",
                        d->tmp, dest, g_strerror(err));
            return false;
        }
    }
    if (rename(d->tmp, dest) < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "restore: renaming %s to %s: %s", d->tmp, dest,
                    g_strerror(err));
        return false;
    }
    d->installed = true;
    if (!fsync_dir(d->dir)) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "restore: %s: syncing the directory: %s", d->dir,
                    g_strerror(err));
        return false;
    }
    return true;
}

/* --instant of a raw disk: DEST becomes an empty sparse raw image of the disk's
 * size (owner and mode of the file it replaces), for the block copy to fill;
 * the overlay stays at tmp, where the guest starts. */
static bool
install_copy_target(RDisk *d, GError **error)
{
    g_autofree char *fresh = g_strdup_printf("%s.raw", d->tmp);
    struct stat st;
    int fd = open(fresh, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), err;

    if (fd < 0 || ftruncate(fd, (off_t)d->md->virtual_size) < 0 || fsync(fd) < 0 ||
        (lstat(d->dest, &st) == 0 &&
         (fchown(fd, st.st_uid, st.st_gid) < 0 || fchmod(fd, st.st_mode & 07777) < 0))) {
        err = errno;
        if (fd >= 0)
            close(fd);
        unlink(fresh);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "restore: %s: creating the raw image the copy "
                    "fills: %s", d->dest, g_strerror(err));
        return false;
    }
    close(fd);
    if (rename(fresh, d->dest) < 0) {
        err = errno;
        unlink(fresh);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "restore: renaming %s to %s: %s", fresh, d->dest,
                    g_strerror(err));
        return false;
    }
    d->installed = true;
    return true;
}

static bool
stop_domain(Run *run, RDom *r, GError **error)
{
    const char *name = r->new_name;
    int state = VIR_DOMAIN_NOSTATE, reason;
    gint64 deadline;

    virDomainGetState(r->dom, &state, &reason, 0);
    if (state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_BLOCKED) {
        (void)virDomainAgentSetResponseTimeout(r->dom, run->opts->agent_timeout, 0);
        (void)virDomainShutdownFlags(r->dom, VIR_DOMAIN_SHUTDOWN_GUEST_AGENT |
                                             VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN);
        (void)virDomainAgentSetResponseTimeout(r->dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
        deadline = g_get_monotonic_time() + (gint64)run->opts->shutdown_timeout * G_USEC_PER_SEC;
        while (restore_domain_active(r->dom) && g_get_monotonic_time() < deadline)
            g_usleep(200 * 1000);
    }
    if (restore_domain_active(r->dom)) {
        if (virDomainDestroy(r->dom) < 0 && restore_domain_active(r->dom)) {
            vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: stopping domain '%s'", name);
            return false;
        }
        restore_note(r, "domain '%s' did not shut down within %d s: destroyed", name,
                     run->opts->shutdown_timeout);
    }
    r->stopped = true;
    return true;
}

static bool
wait_disk_gone(virDomainPtr dom, const char *target)
{
    gint64 deadline = g_get_monotonic_time() + DETACH_TIMEOUT_MS * 1000;

    do {
        g_autoptr(GError) err = NULL;
        g_autofree char *src = vs_domain_disk_source(dom, target, false, &err);

        if (!src && err && err->code == VS_ERROR_NOT_FOUND)
            return true;
        g_usleep(100 * 1000);
    } while (g_get_monotonic_time() < deadline);
    return false;
}

static bool
hot_swap(Run *run, RDom *r, RDisk *d, GError **error)
{
    const char *name = r->new_name;
    g_autofree char *live = virDomainGetXMLDesc(r->dom, 0);
    g_autoptr(VsDomainDef) def = NULL;
    g_autofree char *disk_xml = NULL, *formatted = NULL;
    VsDiskDef *dd;

    (void)run;
    if (!live) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: domain '%s': cannot read its XML", name);
        return false;
    }
    if (!(def = vs_domain_def_parse_string(live, name, error)))
        return false;
    if ((dd = vs_domain_def_find_disk(def, d->target)) && dd->src) {
        g_free(dd->src->format);
        dd->src->format = g_strdup(d->format);
        g_clear_pointer(&dd->src->backing, vs_storage_source_free);
        dd->src->backing_terminated = false;
    }
    if (!(formatted = vs_domain_def_format(def, error)) ||
        !(disk_xml = vs_domain_def_disk_xml(def, d->target, error)))
        return false;
    if (virDomainDetachDeviceFlags(r->dom, disk_xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: detaching disk %s from running domain "
                             "'%s' (nothing was changed)", d->target, name);
        return false;
    }
    if (!wait_disk_gone(r->dom, d->target)) {
        g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                    "restore: the guest of domain '%s' did not release disk %s within %d s; the "
                    "disk is unchanged, the restored image is %s (the guest may still let the "
                    "disk go: check virsh domblklist %s)", name, d->target, DETACH_TIMEOUT_MS / 1000,
                    d->tmp, name);
        return false;
    }
    if (!install_file(d, d->dest, true, error)) {
        /* Put the untouched disk back. */
        if (virDomainAttachDeviceFlags(r->dom, disk_xml, VIR_DOMAIN_AFFECT_LIVE) < 0 && error && *error) {
            char *m = g_strdup_printf("%s; and attaching the old disk again failed: %s (it is "
                                      "back at the next start)", (*error)->message,
                                      virGetLastErrorMessage());
            g_free((*error)->message);
            (*error)->message = m;
        }
        return false;
    }
    if (virDomainAttachDeviceFlags(r->dom, disk_xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT,
                             "restore: disk %s of domain '%s' was restored into %s, but attaching "
                             "it again to the running guest failed (it is back at the next start; "
                             "or: virsh attach-disk %s %s %s --live --subdriver %s)", d->target,
                             name, d->dest, name, d->dest, d->target, d->format);
        return false;
    }
    return true;
}

static char *
shell_quote_if_needed(const char *s)
{
    for (const char *p = s; *p; p++)
        if (!g_ascii_isalnum(*p) && !strchr("/._+-=:,@", *p))
            return g_shell_quote(s);
    return g_strdup(s);
}

void
restore_finish_domain(Run *run, RDom *r)
{
    const VsRestoreOptions *o = run->opts;
    g_autoptr(GError) err = NULL;
    g_autofree char *xml = NULL;
    bool any_installed = false;
    bool was_active = r->active;

    if (r->error)
        return;
    if (!r->partial && !(xml = vs_domain_def_format(r->def, &err))) {
        restore_dom_fail(r, "restore: domain '%s': %s; nothing was changed", r->new_name, err->message);
        restore_discard_temps(run, r);
        return;
    }
    if (!vs_interrupt_check("restore", &err)) {
        restore_dom_fail(r, "%s before domain '%s' was changed; nothing of it was changed", err->message,
                         r->new_name);
        restore_discard_temps(run, r);
        return;
    }
    if (r->must_stop && r->dom && restore_domain_active(r->dom)) {
        if (!stop_domain(run, r, &err)) {
            restore_dom_fail(r, "%s; nothing was changed", err->message);
            restore_discard_temps(run, r);
            return;
        }
    }
    /* The last moment an interrupt leaves the domain as it was (started again
     * below when it was stopped for the restore); from the first disk
     * installed on, the domain is finished first. */
    if (!vs_interrupt_check("restore", &err))
        restore_dom_fail(r, "%s before domain '%s' was changed; nothing of it was changed", err->message,
                         r->new_name);
    for (guint i = 0; i < r->disks->len && !r->error; i++) {
        RDisk *d = r->disks->pdata[i];
        bool ok;

        g_clear_error(&err);
        if (d->rollback || d->clone_ready)
            ok = restore_snap_install(run, d, &err);
        else if (d->hot)
            ok = hot_swap(run, r, d, &err);
        else if (d->sink_url)
            ok = install_sink(run, d, &err);
        else if (d->instant_copy)
            ok = install_copy_target(d, &err);
        else
            ok = install_file(d, d->dest, !d->new_file, &err);
        any_installed = any_installed || d->installed;
        if (!ok) {
            if (any_installed)
                restore_dom_fail(r, "%s (disks restored before it: see the result)", err->message);
            else
                restore_dom_fail(r, "%s; nothing was changed", err->message);
            break;
        }
    }
    if (r->error) {
        restore_discard_temps(run, r);
        /* Untouched, so back to how it was. */
        if (!any_installed && r->stopped && was_active && virDomainCreate(r->dom) == 0)
            restore_note(r, "domain '%s' was started again", r->new_name);
        return;
    }
    if (run->pool)
        (void)virStoragePoolRefresh(run->pool, 0);
    restore_snap_refresh_pools(run, r);

    if (!r->partial && (o->define || o->start)) {
        virDomainPtr dom = virDomainDefineXML(run->conn, xml);
        if (!dom) {
            vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "restore: defining domain '%s'", r->new_name);
            restore_dom_fail(r, "%s (its disks are restored)", err->message);
            return;
        }
        r->defined = true;
        if (r->dom)
            virDomainFree(r->dom);
        r->dom = dom;
    } else if (!r->partial) {
        g_autofree char *q = shell_quote_if_needed(r->xml_path);
        g_autofree char *u = o->uri ? shell_quote_if_needed(o->uri) : NULL;

        /* 0600, like the disks beside it: the guest's whole configuration. */
        if (!g_file_set_contents_full(r->xml_path, xml, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, &err)) {
            restore_dom_fail(r, "restore: writing %s: %s (the disks are restored)", r->xml_path,
                             err->message);
            return;
        }
        r->define_cmd = g_strdup_printf("virsh%s%s define %s", u ? " -c " : "", u ? u : "", q);
    }
    if (o->start && r->dom && !restore_domain_active(r->dom)) {
        if (virDomainCreate(r->dom) < 0) {
            vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "restore: starting domain '%s'", r->new_name);
            restore_dom_fail(r, "%s (it is restored%s)", err->message, r->defined ? " and defined" : "");
            return;
        }
        r->started = true;
        if (o->instant) {
            r->running_ms = vs_now_ms() - run->t0;
            if (o->progress) {
                g_autofree char *msg = g_strdup_printf("%s: running from backup %s over NBD after "
                                                       "%" G_GINT64_FORMAT " ms; copying its disks "
                                                       "into place", r->new_name, r->m->id,
                                                       r->running_ms);
                o->progress(msg, o->progress_opaque);
            }
        }
    }
}
