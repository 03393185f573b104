/* Restore's plan: every domain, disk, name, target and pool is resolved and
 * checked before anything is written; any problem ends the run with nothing
 * touched. In place, a disk goes back where the manifest says it was, in its
 * format. A disk that had a backing chain is restored flattened into its top
 * image, as a standalone image (the backing files are left as they are; the
 * definition loses its <backingStore>). Elsewhere (--as, --target-dir, --pool)
 * disks are new files NAME-TARGET.FMT, and a renamed domain gets no UUID and
 * no MAC addresses (libvirt makes new ones) and its own console logs, sockets
 * and nvram. */
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
/* Plan: which backup                                                         */

static VsManifest *
load_manifest(Run *run, const char *id, GError **error)
{
    VsManifest *m = g_hash_table_lookup(run->manifests, id);

    if (m)
        return m;
    if (!(m = vs_repo_load_manifest(run->repo, id, error)))
        return NULL;
    g_hash_table_insert(run->manifests, g_strdup(m->id), m);
    return m;
}


static char *
domain_names(const VsManifest *m)
{
    g_autoptr(GString) s = g_string_new(NULL);

    for (guint i = 0; i < m->domains->len; i++)
        g_string_append_printf(s, "%s%s", i ? ", " : "", ((VsManifestDomain *)m->domains->pdata[i])->name);
    return g_string_free(g_steal_pointer(&s), FALSE);
}

/* "latest" (or no --backup) is each domain's newest backup. */
static bool
find_backup(Run *run, const char *name, VsManifest **mp, VsManifestDomain **mdp, GError **error)
{
    g_autoptr(GError) unreadable = NULL;

    if (run->opts->backup_id && strcmp(run->opts->backup_id, "latest") != 0) {
        VsManifest *m = load_manifest(run, run->opts->backup_id, error);
        g_autofree char *names = NULL;

        if (!m) {
            vs_error_prefix(error, "restore: backup '%s'", run->opts->backup_id);
            return false;
        }
        if ((*mdp = vs_manifest_lookup_domain(m, name))) {
            *mp = m;
            return true;
        }
        names = domain_names(m);
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "restore: backup %s has no domain '%s' (it holds: %s)", m->id, name, names);
        return false;
    }
    if (!run->ids) {
        if (!(run->ids = vs_repo_list(run->repo, error))) {
            vs_error_prefix(error, "restore");
            return false;
        }
    }
    for (guint n = g_strv_length(run->ids); n > 0; n--) {
        g_autoptr(GError) merr = NULL;
        VsManifest *m = load_manifest(run, run->ids[n - 1], &merr);

        /* An unreadable manifest is verify's to report; an older backup may do. */
        if (m && (*mdp = vs_manifest_lookup_domain(m, name))) {
            *mp = m;
            return true;
        }
        if (!m && !unreadable)
            unreadable = g_steal_pointer(&merr);
    }
    /* The domain may be in the one that could not be read (a manifest that
     * names it in a way no backup may, say): show why. */
    g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                "restore: no backup in %s holds a domain '%s' (see virtsnap list)%s%s",
                vs_repo_path(run->repo), name, unreadable ? "; a backup that cannot be read: " : "",
                unreadable ? unreadable->message : "");
    return false;
}

/* ------------------------------------------------------------------------- */
/* Plan: domains and disks                                                    */

static bool
is_local_path(const char *p)
{
    return p && g_path_is_absolute(p) && !strstr(p, "://");
}

/* Storage we write over in place ourselves, through libiscsi or libnfs. */
static bool
is_network_url(const char *p)
{
    return p && (g_str_has_prefix(p, "iscsi://") || g_str_has_prefix(p, "nfs://"));
}

/* A file name restore builds from names in a backup (NAME-TARGET.FMT,
 * NAME.xml) names a file in the directory given, never one elsewhere: the
 * repository validates those names, and this is the second line. */
static bool
plain_file_name(const RDom *r, const char *name, GError **error)
{
    if (*name && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                "restore: backup %s domain '%s': \"%s\" is not a plain file name; nothing was written",
                r->m->id, r->name, name);
    return false;
}

/* Can we create files in DIR? Checked by doing it: access(2) does not know
 * about read-only mounts for root in every case, nor about full file systems. */
bool
restore_check_dir(const char *dir, const char *what, GError **error)
{
    g_autofree char *probe = vs_temp_path(dir, "probe");
    struct stat st;
    int fd, err;

    if (stat(dir, &st) < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, err == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                    "restore: %s %s: %s%s", what, dir, g_strerror(err),
                    err == ENOENT ? " (create it first)" : "");
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "restore: %s %s is not a directory", what, dir);
        return false;
    }
    fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "restore: cannot write in %s %s: %s", what, dir,
                    g_strerror(err));
        return false;
    }
    close(fd);
    unlink(probe);
    return true;
}

bool
restore_format_supported(const char *fmt)
{
    return !g_strcmp0(fmt, "raw") || !g_strcmp0(fmt, "qcow2");
}

/* A domain that uses a file as a disk or backing image (run->disk_users). */
typedef struct {
    char *name;
    bool running;
} DiskUser;

static void
disk_user_free(DiskUser *u)
{
    g_free(u->name);
    g_free(u);
}

static void
add_users(GHashTable *users, const char *name, bool active, const VsStorageSource *src)
{
    for (; src; src = src->backing) {
        DiskUser *u;

        if (!src->path || !*src->path)
            continue;
        /* A running user wins: it is the one that forbids. */
        if (!active && g_hash_table_contains(users, src->path))
            continue;
        u = g_new(DiskUser, 1);
        u->name = g_strdup(name);
        u->running = active;
        g_hash_table_insert(users, g_strdup(src->path), u);
    }
}

/* Which domain uses PATH as a disk or backing image, other than SELF: NULL if none. */
static const DiskUser *
disk_user(Run *run, const char *path, const char *self)
{
    const DiskUser *who;

    if (!run->disk_users) {
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(run->conn, &doms, 0);

        run->disk_users = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                (GDestroyNotify)disk_user_free);
        for (int i = 0; i < n; i++) {
            bool active = restore_domain_active(doms[i]);
            const char *name = virDomainGetName(doms[i]);
            g_autofree char *xml = virDomainGetXMLDesc(doms[i], active ? 0 : VIR_DOMAIN_XML_INACTIVE);
            g_autoptr(VsDomainDef) def = xml ? vs_domain_def_parse_string(xml, name, NULL) : NULL;

            for (guint k = 0; def && k < def->disks->len; k++)
                add_users(run->disk_users, name, active,
                          ((VsDiskDef *)def->disks->pdata[k])->src);
            virDomainFree(doms[i]);
        }
        free(doms);
    }
    who = g_hash_table_lookup(run->disk_users, path);
    return who && strcmp(who->name, self) != 0 ? who : NULL;
}

/* Is TARGET mounted in the guest? 1 yes (*where set), 0 no, -1 cannot tell. */
static int
disk_in_use(virDomainPtr dom, const char *target, int timeout_s, char **where, char **why)
{
    virDomainFSInfoPtr *info = NULL;
    int n, used = 0;

    (void)virDomainAgentSetResponseTimeout(dom, timeout_s, 0);
    n = virDomainGetFSInfo(dom, &info, 0);
    if (n < 0) {
        const char *msg = virGetLastErrorMessage();
        *why = g_strdup(msg ? msg : "no answer");
    }
    (void)virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; !used && k < info[i]->ndevAlias; k++) {
            if (!g_strcmp0(info[i]->devAlias[k], target)) {
                *where = g_strdup(info[i]->mountpoint);
                used = 1;
            }
        }
        virDomainFSInfoFree(info[i]);
    }
    free(info);
    return used;
}

static VsStorageSource *
new_source(const Run *run, const RDisk *d)
{
    VsStorageSource *src;

    if (run->pool) {
        src = vs_storage_source_new(VS_DISK_TYPE_VOLUME);
        src->pool = g_strdup(run->opts->pool);
        src->volume = g_strdup(d->vol_name);
    } else {
        src = vs_storage_source_new(VS_DISK_TYPE_FILE);
        src->path = g_strdup(d->dest);
    }
    src->format = g_strdup(d->format);
    return src;
}

/* In place on a device written over at install (a LUN, an NFS export, a block
 * device): 1 when D is such a disk, planned; 0 when it is not; -1 with *error
 * when it cannot be restored so. */
static int
plan_in_place_device(const VsRestoreOptions *o, RDom *r, RDisk *d, VsDiskDef *dd,
                     const VsManifestDisk *md, GError **error)
{
    g_autofree char *base = NULL;
    struct stat st;

    if (r->in_place && !o->instant && !g_strcmp0(md->format, "qcow2") && !g_strcmp0(d->format, "qcow2") &&
        (is_network_url(md->source) ||
         (is_local_path(md->source) && stat(md->source, &st) == 0 && S_ISBLK(st.st_mode)))) {
        /* A qcow2 on an NFS export, a LUN or a block device: the image is
         * written whole into a local temp file (the state directory), then that
         * file over the target at install, once the domain is stopped. */
        d->sink_url = g_strdup(md->source);
        d->sink_image = true;
        d->dest = g_strdup(md->source);
        d->dir = g_build_filename(vs_state_dir(o->state_dir), "restore", NULL);
        base = g_strdup_printf("%s-%s", r->name, d->target);
        d->tmp = vs_temp_path(d->dir, base);
        d->action = g_strdup("rewritten");
        g_clear_pointer(&dd->src->backing, vs_storage_source_free);
        dd->src->backing_terminated = false;
        if (!vs_make_dir(vs_state_dir(o->state_dir), 0755, error) || !vs_make_dir(d->dir, 0700, error))
            return -1;
        return 1;
    }
    if (r->in_place && is_local_path(md->source) && stat(md->source, &st) == 0 &&
        S_ISBLK(st.st_mode) && (g_strcmp0(md->format, "raw") != 0 || g_strcmp0(d->format, "raw") != 0)) {
        if (g_strcmp0(md->format, d->format) != 0)
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "restore: domain '%s' disk %s is block device %s, backed up as %s: a block "
                        "device is written over in place in the disk's own format (raw or qcow2), "
                        "not as %s; give --target-dir or --pool to restore it as %s", r->name,
                        d->target, md->source, md->format ? md->format : "(unknown)", d->format,
                        d->format);
        else
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "restore: domain '%s' disk %s is block device %s (%s): %s; give "
                        "--target-dir or --pool", r->name, d->target, md->source, d->format,
                        o->instant ? "--instant runs the guest on an image file, not on a block "
                        "device in place" : "it cannot be written over in place in that format");
        return -1;
    }
    if (r->in_place && (is_network_url(md->source) ||
                        (is_local_path(md->source) && stat(md->source, &st) == 0 && S_ISBLK(st.st_mode))) &&
        !g_strcmp0(md->format, "raw") && !g_strcmp0(d->format, "raw")) {
        /* A LUN, a raw file on an NFS export or a block device (LVM, loop,
         * multipath): no temp file and rename there. Its chunks are all
         * checked in the write phase, and it is written over at install,
         * once the domain is stopped (vs_copy_repo_to_sink), the device's
         * size checked first. */
        d->sink_url = g_strdup(md->source);
        d->dest = g_strdup(md->source);
        d->action = g_strdup("rewritten");
        g_free(dd->src->format);
        dd->src->format = g_strdup("raw");
        g_clear_pointer(&dd->src->backing, vs_storage_source_free);
        dd->src->backing_terminated = false;
        return 1;
    }
    return 0;
}

/* In place into a local file: the one the backup names. */
static bool
plan_in_place_file(const VsRestoreOptions *o, RDom *r, RDisk *d, VsDiskDef *dd,
                   const VsManifestDisk *md, GError **error)
{
    struct stat st;

    if (!is_local_path(md->source)) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "restore: domain '%s' disk %s was %s (%s), not a local file nor a raw disk "
                    "on iSCSI or NFS: restoring it in place is not supported yet; give "
                    "--target-dir or --pool", r->name, d->target,
                    md->source ? md->source : "(unknown)", md->format ? md->format : "?");
        return false;
    }
    d->dest = g_strdup(md->source);
    if (stat(d->dest, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "restore: domain '%s' disk %s is %s, neither a regular file nor a "
                        "block device: it cannot be restored in place; give --target-dir or "
                        "--pool", r->name, d->target, d->dest);
            return false;
        }
        d->dest_exists = true;
    }
    d->dir = g_path_get_dirname(d->dest);
    if (g_strcmp0(d->format, md->format) != 0 && r->dom && !(o->define || o->start)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --format %s changes the format of domain '%s' disk %s in place "
                    "(it is %s): give --define too, so that its definition says so",
                    d->format, r->name, d->target, md->format);
        return false;
    }
    if (md->chain && md->chain->len > 1)
        d->note = g_strdup_printf("had a backing chain of %u images: restored flattened into "
                                  "%s as a standalone image (the backing files are left as they are)",
                                  md->chain->len, d->dest);
    if (r->dom && !r->active) {
        g_autofree char *cur = vs_domain_disk_source(r->dom, d->target, true, NULL);
        if (cur && g_strcmp0(cur, d->dest) != 0)
            restore_note(r, "disk %s: the domain now uses %s, the backup had %s: restored to %s%s",
                         d->target, cur, d->dest, d->dest,
                         o->define || o->start ? "" : " (give --define to point the domain back at it)");
    }
    /* The definition: the same file, its format, no backing chain any more. */
    if (dd->src->type == VS_DISK_TYPE_FILE) {
        g_free(dd->src->path);
        dd->src->path = g_strdup(d->dest);
    }
    g_free(dd->src->format);
    dd->src->format = g_strdup(d->format);
    g_clear_pointer(&dd->src->backing, vs_storage_source_free);
    dd->src->backing_terminated = false;
    return true;
}

/* Elsewhere (--as, --target-dir, --pool): a new file NAME-TARGET.FMT. */
static bool
plan_elsewhere(Run *run, RDom *r, RDisk *d, VsDiskDef *dd, const VsManifestDisk *md,
               GError **error)
{
    const VsRestoreOptions *o = run->opts;
    g_autofree char *base = NULL;
    struct stat st;

    base = g_strdup_printf("%s-%s.%s", r->new_name, d->target, d->format);
    if (!plain_file_name(r, base, error))
        return false;
    if (run->pool) {
        virStorageVolPtr vol;

        d->dir = g_strdup(run->pool_dir);
        d->vol_name = g_strdup(base);
        vol = virStorageVolLookupByName(run->pool, base);
        if (vol) {
            char *path = virStorageVolGetPath(vol);
            d->dest = g_strdup(path ? path : "");
            free(path);
            virStorageVolFree(vol);
            d->dest_exists = true;
            if (!o->force) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                            "restore: pool '%s' already has a volume %s: give --force to replace "
                            "it, or choose another name with --as", o->pool, base);
                return false;
            }
            g_free(d->dir);
            d->dir = g_path_get_dirname(d->dest);
        } else {
            d->dest = g_build_filename(d->dir, base, NULL);
        }
    } else {
        if (o->target_dir) {
            d->dir = g_canonicalize_filename(o->target_dir, NULL);
        } else if (is_local_path(md->source)) {
            d->dir = g_path_get_dirname(md->source);
        } else {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "restore: domain '%s' disk %s was %s, not a local file: give "
                        "--target-dir or --pool for its new file", r->name, d->target,
                        md->source ? md->source : "(unknown)");
            return false;
        }
        d->dest = g_build_filename(d->dir, base, NULL);
        if (lstat(d->dest, &st) == 0) {
            d->dest_exists = true;
            if (!o->force) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                            "restore: %s exists: give --force to replace it, or choose another "
                            "name with --as or another --target-dir", d->dest);
                return false;
            }
            if (!S_ISREG(st.st_mode)) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                            "restore: %s exists and is not a regular file", d->dest);
                return false;
            }
        }
    }
    if (md->chain && md->chain->len > 1)
        d->note = g_strdup_printf("had a backing chain of %u images: restored flattened",
                                  md->chain->len);
    vs_storage_source_free(dd->src);
    dd->src = new_source(run, d);
    return true;
}

/* D's destination exists: it must not be another domain's disk. */
static bool
check_not_others(Run *run, RDom *r, RDisk *d, GError **error)
{
    const VsRestoreOptions *o = run->opts;
    /* Never write over another domain's disk (e.g. one renamed since the
     * backup, or one given the name NAME-vda.qcow2 by hand). */
    /* Disk files only (--disks elsewhere): no domain is stopped, so even
     * the domain of that name must not be using the file. */
    const DiskUser *who = disk_user(run, d->dest, r->partial && !r->in_place ? "" : r->new_name);

    if (who && (who->running || !o->force)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: %s (domain '%s' disk %s) is a disk of domain %s%s: %s", d->dest,
                    r->new_name, d->target, who->name, who->running ? " (running)" : "",
                    who->running ? "it is not overwritten while that "
                    "domain runs; restore elsewhere with --as or --target-dir" :
                    "give --force to overwrite it anyway, or restore elsewhere with --as or "
                    "--target-dir");
        return false;
    }
    return true;
}

static bool
plan_disk(Run *run, RDom *r, const VsManifestDisk *md, GError **error)
{
    const VsRestoreOptions *o = run->opts;
    RDisk *d = g_new0(RDisk, 1);
    VsDiskDef *dd = vs_domain_def_find_disk(r->def, md->target);
    struct stat st;
    int device;

    d->dom = r;
    d->md = md;
    d->target = g_strdup(md->target);
    d->format = g_strdup(o->format ? o->format : md->format);
    g_ptr_array_add(r->disks, d);
    if (o->instant && !g_strcmp0(d->format, "raw")) {
        /* The guest starts on a qcow2 overlay of the export kept beside dest
         * (tmp), and a block copy then moves it onto dest, raw, and pivots. */
        d->instant_copy = true;
    } else if (o->instant && g_strcmp0(d->format, "qcow2") != 0) {
        /* The overlay the guest starts on is the final image: qcow2. */
        restore_note(r, "disk %s was %s: restored as qcow2 (--instant)", md->target,
                     md->format ? md->format : "(unknown)");
        g_free(d->format);
        d->format = g_strdup("qcow2");
    }

    /* Back where it was (in place, or beside the original): its pool. */
    if (!o->target_dir && !o->pool && !restore_pools_plan_disk(run, r, d, dd, error))
        return false;
    if (o->from_snapshot)
        return restore_snap_plan_disk(run, r, d, dd, error) &&
               (!d->dest_exists || check_not_others(run, r, d, error));
    if (!md->in_repo) {
        /* Its chunks are empty and mean nothing: restored, it would be zeros. */
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "restore: domain '%s' disk %s of backup %s is not in the repository, only in its "
                    "storage snapshot %s (a backup --no-copy): restore it with --from-snapshot, or "
                    "copy it into the repository with `virtsnap vault --repo %s %s`; nothing was changed",
                    r->name, d->target, r->m->id, md->snapshot && md->snapshot->handle ? md->snapshot->handle : "",
                    vs_repo_path(run->repo), r->m->id);
        return false;
    }
    if (!restore_format_supported(d->format)) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "restore: domain '%s' disk %s was backed up as %s: give --format raw or "
                    "--format qcow2", r->name, d->target, md->format ? md->format : "(unknown)");
        return false;
    }
    if (!dd || !dd->src) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "restore: the definition saved with domain '%s' has no disk %s", r->name, d->target);
        return false;
    }

    /* In place for a domain that is not defined any more: the file at the
     * recorded path may be anything by now (another domain's disk made since,
     * a file of someone else). Only the domain itself (its UUID, under its
     * name) proves a path is still its disk; without it, --force says so. */
    if (r->in_place && !r->dom && !o->force && is_local_path(md->source) &&
        lstat(md->source, &st) == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: domain '%s' is not defined any more, and %s (its disk %s in backup %s) "
                    "exists: nothing proves that file is still that domain's disk, so it is not "
                    "overwritten; give --force to overwrite it, or restore elsewhere with "
                    "--target-dir or --as", r->name, md->source, d->target, r->m->id);
        return false;
    }
    if ((device = plan_in_place_device(o, r, d, dd, md, error)) != 0)
        return device > 0;
    if (r->in_place ? !plan_in_place_file(o, r, d, dd, md, error)
                    : !plan_elsewhere(run, r, d, dd, md, error))
        return false;
    if (d->dest_exists && !check_not_others(run, r, d, error))
        return false;
    {
        g_autofree char *b = g_path_get_basename(d->dest);
        d->tmp = vs_temp_path(d->dir, b);
    }
    d->action = g_strdup(d->dest_exists ? "replaced" : "created");
    return true;
}

static bool
plan_hot_swap(Run *run, RDom *r, GError **error)
{
    for (guint i = 0; i < r->disks->len; i++) {
        RDisk *d = r->disks->pdata[i];
        g_autoptr(GError) lerr = NULL;
        g_autofree char *cur = vs_domain_disk_source(r->dom, d->target, false, &lerr);
        g_autofree char *where = NULL, *why = NULL;
        int used;

        if (d->sink_url) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "restore: disk %s of running domain '%s' is %s, written over in place: "
                        "not while the guest runs; shut the domain down (--force does)", d->target,
                        r->new_name, d->sink_url);
            return false;
        }
        if (!cur) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                        "restore: running domain '%s' has no disk %s now: attach it first, or shut "
                        "the domain down (--force does)", r->new_name, d->target);
            return false;
        }
        if (g_strcmp0(cur, d->dest) != 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "restore: disk %s of running domain '%s' is %s now, not %s as backed up: "
                        "it cannot be swapped in place; shut the domain down (--force does) or "
                        "restore elsewhere with --as or --target-dir", d->target, r->new_name, cur,
                        d->dest);
            return false;
        }
        used = disk_in_use(r->dom, d->target, run->opts->agent_timeout, &where, &why);
        if (used > 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "restore: disk %s of running domain '%s' is in use: mounted on %s in the "
                        "guest; unmount it there first, or give --force to shut the domain down "
                        "for the restore", d->target, r->new_name, where ? where : "?");
            return false;
        }
        if (used < 0) {
            /* Swapping a disk the guest may be using would pull it from under
             * its file system: write it beside instead, and say how to swap. */
            g_autofree char *b = g_path_get_basename(d->dest);
            g_free(d->dest);
            d->dest = g_strdup_printf("%s/%s.restored-%s", d->dir, b, r->m->id);
            d->new_file = true;
            d->dest_exists = false;
            g_free(d->action);
            d->action = g_strdup("new-file");
            d->note = g_strdup_printf("the guest agent could not say whether %s is in use (%s): "
                                      "the running disk was left alone and the backup written to "
                                      "this new file; to use it: unmount it in the guest, then "
                                      "virsh detach-disk %s %s --live; mv %s %s; virsh attach-disk "
                                      "%s %s %s --live --subdriver %s", d->target, why, r->new_name,
                                      d->target, d->dest, cur, r->new_name, cur, d->target, d->format);
            if (lstat(d->dest, &(struct stat){ 0 }) == 0) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "restore: %s exists already",
                            d->dest);
                return false;
            }
        } else {
            d->hot = true;
            g_free(d->action);
            d->action = g_strdup("hot-swapped");
        }
    }
    return true;
}

static bool
lookup_existing(Run *run, RDom *r, GError **error)
{
    char uuid[VIR_UUID_STRING_BUFLEN] = "";

    r->dom = virDomainLookupByName(run->conn, r->new_name);
    if (!r->dom) {
        if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN)
            return true;
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: looking up domain '%s'", r->new_name);
        return false;
    }
    if (virDomainGetUUIDString(r->dom, uuid) == 0)
        r->existing_uuid = g_strdup(uuid);
    r->active = restore_domain_active(r->dom);
    return true;
}

/* The domain of the name restored to, when there is one: it may be replaced,
 * it is locked, and whether it runs decides how it is restored. */
static bool
plan_existing(Run *run, RDom *r, GError **error)
{
    const VsRestoreOptions *o = run->opts;

    if (!lookup_existing(run, r, error))
        return false;
    if (r->dom && !r->in_place && !o->force) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: a domain '%s' already exists: choose another name with --as, or "
                    "give --force to replace its definition (it is stopped; its disks are left "
                    "as they are)", r->new_name);
        return false;
    }
    if (r->dom && r->in_place && r->existing_uuid && r->md->uuid &&
        g_ascii_strcasecmp(r->existing_uuid, r->md->uuid) != 0 && !o->force) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: domain '%s' exists but is not the one backed up (UUID %s, the "
                    "backup's is %s): give --force to restore over it, or --as another name",
                    r->new_name, r->existing_uuid, r->md->uuid);
        return false;
    }
    if (r->dom || r->in_place) {
        const char *uuid = r->existing_uuid ? r->existing_uuid : r->md->uuid;
        if (uuid && (r->lock_fd = vs_domain_lock(o->state_dir, uuid, r->new_name, "restore",
                                                   o->lock_wait, error)) < 0) {
            vs_error_prefix(error, "restore");
            return false;
        }
        /* Whether it runs is asked under the lock: the run waited for (--lock-wait)
         * may have started or stopped it. */
        if (r->dom)
            r->active = restore_domain_active(r->dom);
    }
    if (r->dom && r->active) {
        if (r->in_place && r->partial && !o->force) {
            /* hot swap: planned below, once the disks are known */
        } else if (!o->force) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "restore: domain '%s' is running: shut it down first, or give --force "
                        "to stop it (graceful shutdown, destroyed after %d s)", r->new_name,
                        o->shutdown_timeout);
            return false;
        } else {
            r->must_stop = true;
        }
    }
    return true;
}

/* Every disk restored (all, or those of --disks), and their directories. */
static bool
plan_disks(Run *run, RDom *r, GError **error)
{
    const VsRestoreOptions *o = run->opts;

    if (r->partial) {
        for (size_t i = 0; o->disks[i]; i++) {
            const VsManifestDisk *md = vs_manifest_find_disk(r->md, o->disks[i]);
            if (!md) {
                g_autoptr(GString) have = g_string_new(NULL);
                for (guint k = 0; k < r->md->disks->len; k++)
                    g_string_append_printf(have, "%s%s", k ? ", " : "",
                                           ((VsManifestDisk *)r->md->disks->pdata[k])->target);
                g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                            "restore: domain '%s' in backup %s has no disk %s (it has: %s)",
                            r->name, r->m->id, o->disks[i], have->str);
                return false;
            }
            for (size_t k = 0; k < i; k++)
                if (!strcmp(o->disks[k], o->disks[i]))
                    md = NULL;             /* named twice */
            if (md && !plan_disk(run, r, md, error))
                return false;
        }
        if (o->start && !r->dom) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                        "restore: --start: domain '%s' is not defined; restore the whole domain "
                        "(without --disks) to define it", r->new_name);
            return false;
        }
    } else {
        for (guint k = 0; k < r->md->disks->len; k++)
            if (!plan_disk(run, r, r->md->disks->pdata[k], error))
                return false;
    }
    if (r->disks->len == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "restore: domain '%s' in backup %s has no disks", r->name, r->m->id);
        return false;
    }
    if (r->dom && r->active && r->in_place && r->partial && !o->force &&
        !plan_hot_swap(run, r, error))
        return false;
    for (guint i = 0; i < r->disks->len; i++) {
        RDisk *d = r->disks->pdata[i];
        bool seen = d->sink_url != NULL && !d->sink_image;   /* no directory: the target itself */
        for (guint k = 0; k < i; k++)
            seen = seen || !g_strcmp0(((RDisk *)r->disks->pdata[k])->dir, d->dir);
        /* A pool --define-pools starts makes it (checked then); a snapshot's
         * provider writes there itself. */
        seen = seen || d->pool_pending || d->snap;
        if (!seen && !restore_check_dir(d->dir, o->target_dir && !r->in_place ? "target directory" :
                                run->pool && !r->in_place ? "pool directory" : "directory",
                                error))
            return false;
    }
    return true;
}

/* Removable media (an ISO: shared install media) is never in a backup; its drive comes back
 * as it was, but empty when the image is gone now, which would keep the domain from starting. */
static void
plan_media(RDom *r)
{
    for (guint i = 0; i < r->def->disks->len; i++) {
        VsDiskDef *dd = r->def->disks->pdata[i];

        if ((dd->device != VS_DISK_DEVICE_CDROM && dd->device != VS_DISK_DEVICE_FLOPPY) || !dd->src ||
            (dd->src->type != VS_DISK_TYPE_FILE && dd->src->type != VS_DISK_TYPE_BLOCK) ||
            !dd->src->path || access(dd->src->path, F_OK) == 0)
            continue;
        restore_note(r, "%s %s: %s does not exist: the drive is restored empty; insert it again with "
                     "`virsh change-media %s %s %s --insert --config`",
                     vs_disk_device_to_string(dd->device), dd->target_dev, dd->src->path,
                     r->new_name, dd->target_dev, dd->src->path);
        g_clear_pointer(&dd->src, vs_storage_source_free);
    }
}

/* The definition restored: a new name, UUID and MACs, or the existing UUID. */
static bool
plan_definition(Run *run, RDom *r, GError **error)
{
    if (r->renamed) {
        if (!vs_domain_def_set_name(r->def, r->new_name, error) ||
            !vs_domain_def_set_uuid(r->def, r->existing_uuid, error)) {
            vs_error_prefix(error, "restore");
            return false;
        }
        if (vs_domain_def_clear_macs(r->def) > 0)
            restore_note(r, "MAC addresses removed: libvirt generates new ones");
        {
            g_autoptr(GPtrArray) changes = g_ptr_array_new_with_free_func(g_free);
            vs_domain_def_rename_files(r->def, r->name, r->new_name, changes);
            for (guint i = 0; i < changes->len; i++)
                restore_note(r, "renamed %s", (char *)changes->pdata[i]);
        }
        if (!r->existing_uuid)
            restore_note(r, "new UUID: libvirt makes one up");
    } else if (r->existing_uuid) {
        if (!vs_domain_def_set_uuid(r->def, r->existing_uuid, error))
            return false;
    } else if (r->md->uuid) {
        virDomainPtr other = virDomainLookupByUUIDString(run->conn, r->md->uuid);
        if (other) {
            const char *oname = virDomainGetName(other);
            restore_note(r, "UUID %s now belongs to domain '%s': the restored domain gets a new one",
                         r->md->uuid, oname ? oname : "?");
            virDomainFree(other);
            vs_domain_def_set_uuid(r->def, NULL, NULL);
        }
    }
    return true;
}

/* Where the definition is written when it is not defined: NAME.xml. */
static bool
plan_xml_path(Run *run, RDom *r, GError **error)
{
    const VsRestoreOptions *o = run->opts;
    const char *dir = o->target_dir ? o->target_dir : NULL;
    g_autofree char *xml_dir = NULL;
    g_autofree char *xml_name = g_strdup_printf("%s.xml", r->new_name);

    if (!plain_file_name(r, xml_name, error))
        return false;

    if (!dir && (run->pool || !((RDisk *)r->disks->pdata[0])->dir)) {
        /* Not in the pool: it would show up as a volume. Nor beside an image
         * that is not a file (an RBD image rolled back). */
        xml_dir = g_build_filename(vs_state_dir(o->state_dir), "restore", NULL);
        if (!vs_make_dir(vs_state_dir(o->state_dir), 0755, error) || !vs_make_dir(xml_dir, 0700, error))
            return false;
    } else {
        xml_dir = g_strdup(dir ? dir : ((RDisk *)r->disks->pdata[0])->dir);
    }
    r->xml_path = g_build_filename(xml_dir, xml_name, NULL);
    return true;
}

RDom *
restore_plan_domain(Run *run, const char *name, GError **error)
{
    const VsRestoreOptions *o = run->opts;
    g_autoptr(RDom) r = g_new0(RDom, 1);
    g_autofree char *label = NULL;
    bool files_only;

    r->lock_fd = -1;
    r->running_ms = r->copied_ms = -1;
    r->disks = g_ptr_array_new_with_free_func((GDestroyNotify)restore_rdisk_free);
    r->notes = g_ptr_array_new_with_free_func(g_free);
    if (!find_backup(run, name, &r->m, &r->md, error))
        return NULL;
    r->name = g_strdup(r->md->name);
    r->new_name = g_strdup(o->new_name ? o->new_name : r->md->name);
    r->renamed = g_strcmp0(r->new_name, r->name) != 0;
    r->in_place = !r->renamed && !o->target_dir && !o->pool;
    r->partial = o->disks && o->disks[0];
    /* Some disks of a domain restored elsewhere are just files: no domain. */
    files_only = r->partial && !r->in_place;

    if (!r->md->xml || !*r->md->xml) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "restore: backup %s holds no definition for domain '%s'", r->m->id, r->name);
        return NULL;
    }
    label = g_strdup_printf("backup %s domain %s", r->m->id, r->name);
    if (!(r->def = vs_domain_def_parse_string(r->md->xml, label, error))) {
        vs_error_prefix(error, "restore");
        return NULL;
    }

    if (!files_only && !plan_existing(run, r, error))
        return NULL;
    if (!plan_disks(run, r, error) || !plan_definition(run, r, error))
        return NULL;
    if (!r->partial)
        plan_media(r);
    if (!r->partial && !(o->define || o->start) && !plan_xml_path(run, r, error))
        return NULL;
    return g_steal_pointer(&r);
}
