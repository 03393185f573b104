/* `virtsnap restore`: domains of a backup written back. A run has three steps.
 *
 * Plan: every domain, disk, name, target and pool is resolved and checked
 * before anything is written; any problem ends the run with nothing touched.
 *
 * Write: each disk is exported (sparse, raw or qcow2) to a temp file beside its
 * destination, several disks at a time, memory bounded by a few chunks per
 * disk. The export re-hashes every chunk it writes, so there is no verify pass
 * first: a chunk that is missing or corrupt ends the whole run, naming the
 * chunk, with every temp file removed and nothing installed, as a verify pass
 * would have. Another failure (ENOSPC, the repository gone) removes the temp
 * files of that domain.
 *
 * Install, per domain, only once all of its disks are complete: a running
 * domain is stopped (in place, --force) or, for single disks (--disks), each
 * disk is hot-swapped (live detach, rename, live attach); temp files are renamed
 * over their destination (owner and mode kept); then the definition is defined
 * and started, or written to NAME.xml with the virsh command that defines it.
 *
 * In place, a disk goes back where the manifest says it was, in its format. A
 * disk that had a backing chain is restored flattened into its top image, as a
 * standalone image (the backing files are left as they are; the definition loses
 * its <backingStore>). Elsewhere (--as, --target-dir, --pool) disks are new
 * files NAME-TARGET.FMT, and a renamed domain gets no UUID and no MAC addresses
 * (libvirt makes new ones) and its own console logs, sockets and nvram. */
#include "config.h"
#include "driver-internal.h"
#include "vs-restore.h"
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
#define MAX_PROBLEMS_SHOWN 5

typedef struct _RDom RDom;

typedef struct {
    RDom *dom;
    const VsManifestDisk *md;
    char *target;
    char *format;            /* written */
    char *dir;               /* where dest and tmp live */
    char *dest;              /* the final path */
    char *tmp;               /* the complete image before it becomes dest */
    char *sink_url;          /* in place on a LUN, NFS file or block device: written over
                              * at install */
    bool sink_image;         /* ... a qcow2: first written whole into tmp (state dir), then
                              * that file over the target */
    bool dest_exists;
    bool hot;                /* live detach, rename, live attach */
    bool new_file;           /* running disk of unknown use: written beside it */
    char *vol_name;          /* in the pool */
    bool vol_created;        /* by us: deleted again on failure */
    char *action;
    char *note;
    char *error;
    bool written;
    bool installed;
    VsMount *mount;          /* --instant: the export the overlay reads; NULL once copied */
    bool instant_copy;       /* --instant of a raw disk: the guest starts on the overlay (tmp)
                              * and a block copy moves it onto dest, raw */
    VsVerifyProblem *bad_chunk; /* the write failed on a chunk of the backup */
} RDisk;

struct _RDom {
    char *name;              /* in the backup */
    char *new_name;
    VsManifest *m;           /* borrowed from the run */
    VsManifestDomain *md;
    VsDomainDef *def;
    virDomainPtr dom;        /* the existing domain called new_name, NULL if none */
    char *existing_uuid;
    bool active;             /* dom runs (or is paused) */
    bool in_place;
    bool partial;            /* --disks */
    bool renamed;
    bool must_stop;
    int lock_fd;
    GPtrArray *disks;        /* RDisk* */
    GPtrArray *notes;        /* char* */
    bool stopped, defined, started;
    char *xml_path;
    char *define_cmd;
    char *error;
    int64_t running_ms, copied_ms;   /* --instant, -1: not (yet) */
};

typedef struct {
    virConnectPtr conn;
    const VsRestoreOptions *opts;
    VsRepo *repo;
    GHashTable *manifests;   /* id -> VsManifest* */
    char **ids;              /* every backup id, oldest first (lazily) */
    virStoragePoolPtr pool;
    char *pool_dir;
    GPtrArray *doms;         /* RDom* */
    GHashTable *disk_users;  /* path -> "NAME" or "NAME (running)", of every domain; lazily */
    int64_t t0;              /* vs_now_ms() at the start */
    gint cancel;             /* a disk hit a bad chunk: the other writes stop */
    VsJournal *journal;      /* names the temp files, for recover after a kill -9 */
} Run;

void
vs_restore_options_init(VsRestoreOptions *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->parallel_disks = 2;
    opts->shutdown_timeout = 60;
    opts->agent_timeout = 5;
    opts->copy_stall_timeout = 300;
}

static void
disk_result_free(VsRestoreDiskResult *d)
{
    g_free(d->target); g_free(d->path); g_free(d->format); g_free(d->pool);
    g_free(d->volume); g_free(d->action); g_free(d->note); g_free(d->nbd);
    g_free(d);
}

static void
domain_result_free(VsRestoreDomainResult *d)
{
    g_free(d->name); g_free(d->restored_as); g_free(d->backup_id); g_free(d->error);
    g_free(d->xml_path); g_free(d->define_command);
    g_ptr_array_unref(d->disks);
    g_ptr_array_unref(d->notes);
    g_free(d);
}

void
vs_restore_result_free(VsRestoreResult *r)
{
    if (!r)
        return;
    g_ptr_array_unref(r->domains);
    g_free(r);
}

static void
rdisk_free(RDisk *d)
{
    g_free(d->target); g_free(d->format); g_free(d->dir); g_free(d->dest); g_free(d->tmp);
    g_free(d->sink_url);
    g_free(d->vol_name); g_free(d->action); g_free(d->note); g_free(d->error);
    vs_mount_free(d->mount);
    vs_verify_problem_free(d->bad_chunk);
    g_free(d);
}

static void
rdom_free(RDom *d)
{
    if (!d)
        return;
    if (d->dom)
        virDomainFree(d->dom);
    vs_domain_unlock(d->lock_fd);
    if (d->def)
        vs_domain_def_free(d->def);
    g_free(d->name); g_free(d->new_name); g_free(d->existing_uuid);
    g_free(d->xml_path); g_free(d->define_cmd); g_free(d->error);
    g_ptr_array_unref(d->disks);
    g_ptr_array_unref(d->notes);
    g_free(d);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(RDom, rdom_free)

static void
note(RDom *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
note(RDom *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(d->notes, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

static void
dom_fail(RDom *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
dom_fail(RDom *d, const char *fmt, ...)
{
    va_list ap;

    if (d->error)
        return;
    va_start(ap, fmt);
    d->error = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

static bool
domain_active(virDomainPtr dom)
{
    int state = VIR_DOMAIN_NOSTATE, reason;

    if (virDomainGetState(dom, &state, &reason, 0) < 0)
        return false;
    return state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_PAUSED ||
           state == VIR_DOMAIN_BLOCKED || state == VIR_DOMAIN_PMSUSPENDED ||
           state == VIR_DOMAIN_SHUTDOWN;
}

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
static bool
check_dir(const char *dir, const char *what, GError **error)
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

static bool
format_supported(const char *fmt)
{
    return !g_strcmp0(fmt, "raw") || !g_strcmp0(fmt, "qcow2");
}

static void
add_users(GHashTable *users, const char *name, bool active, const VsStorageSource *src)
{
    for (; src; src = src->backing) {
        if (!src->path || !*src->path)
            continue;
        /* A running user wins: it is the one that forbids. */
        if (active || !g_hash_table_contains(users, src->path))
            g_hash_table_insert(users, g_strdup(src->path),
                                active ? g_strdup_printf("%s (running)", name) : g_strdup(name));
    }
}

/* Which domain uses PATH as a disk or backing image, other than SELF: NULL if none. */
static const char *
disk_user(Run *run, const char *path, const char *self)
{
    const char *who;

    if (!run->disk_users) {
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(run->conn, &doms, 0);

        run->disk_users = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        for (int i = 0; i < n; i++) {
            bool active = domain_active(doms[i]);
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
    if (!who || (g_str_has_prefix(who, self) &&
                 (who[strlen(self)] == 0 || !strcmp(who + strlen(self), " (running)"))))
        return NULL;
    return who;
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

static bool
plan_disk(Run *run, RDom *r, const VsManifestDisk *md, GError **error)
{
    const VsRestoreOptions *o = run->opts;
    RDisk *d = g_new0(RDisk, 1);
    VsDiskDef *dd = vs_domain_def_find_disk(r->def, md->target);
    g_autofree char *base = NULL;
    struct stat st;

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
        note(r, "disk %s was %s: restored as qcow2 (--instant)", md->target,
             md->format ? md->format : "(unknown)");
        g_free(d->format);
        d->format = g_strdup("qcow2");
    }

    if (!format_supported(d->format)) {
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
            return false;
        return true;
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
        return false;
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
        return true;
    }
    if (r->in_place) {
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
                note(r, "disk %s: the domain now uses %s, the backup had %s: restored to %s%s",
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
    } else {
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
    }
    if (d->dest_exists) {
        /* Never write over another domain's disk (e.g. one renamed since the
         * backup, or one given the name NAME-vda.qcow2 by hand). */
        /* Disk files only (--disks elsewhere): no domain is stopped, so even
         * the domain of that name must not be using the file. */
        const char *who = disk_user(run, d->dest, r->partial && !r->in_place ? "" : r->new_name);

        if (who && (g_str_has_suffix(who, " (running)") || !o->force)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "restore: %s (domain '%s' disk %s) is a disk of domain %s: %s", d->dest,
                        r->new_name, d->target, who,
                        g_str_has_suffix(who, " (running)") ? "it is not overwritten while that "
                        "domain runs; restore elsewhere with --as or --target-dir" :
                        "give --force to overwrite it anyway, or restore elsewhere with --as or "
                        "--target-dir");
            return false;
        }
    }
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
    r->active = domain_active(r->dom);
    return true;
}

static RDom *
plan_domain(Run *run, const char *name, GError **error)
{
    const VsRestoreOptions *o = run->opts;
    g_autoptr(RDom) r = g_new0(RDom, 1);
    g_autofree char *label = NULL;
    bool files_only;

    r->lock_fd = -1;
    r->running_ms = r->copied_ms = -1;
    r->disks = g_ptr_array_new_with_free_func((GDestroyNotify)rdisk_free);
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

    if (!files_only) {
        if (!lookup_existing(run, r, error))
            return NULL;
        if (r->dom && !r->in_place && !o->force) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "restore: a domain '%s' already exists: choose another name with --as, or "
                        "give --force to replace its definition (it is stopped; its disks are left "
                        "as they are)", r->new_name);
            return NULL;
        }
        if (r->dom && r->in_place && r->existing_uuid && r->md->uuid &&
            g_ascii_strcasecmp(r->existing_uuid, r->md->uuid) != 0 && !o->force) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "restore: domain '%s' exists but is not the one backed up (UUID %s, the "
                        "backup's is %s): give --force to restore over it, or --as another name",
                        r->new_name, r->existing_uuid, r->md->uuid);
            return NULL;
        }
        if (r->dom || r->in_place) {
            const char *uuid = r->existing_uuid ? r->existing_uuid : r->md->uuid;
            if (uuid && (r->lock_fd = vs_domain_lock(o->state_dir, uuid, r->new_name, "restore",
                                                       o->lock_wait, error)) < 0) {
                vs_error_prefix(error, "restore");
                return NULL;
            }
            /* Whether it runs is asked under the lock: the run waited for (--lock-wait)
             * may have started or stopped it. */
            if (r->dom)
                r->active = domain_active(r->dom);
        }
        if (r->dom && r->active) {
            if (r->in_place && r->partial && !o->force) {
                /* hot swap: planned below, once the disks are known */
            } else if (!o->force) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                            "restore: domain '%s' is running: shut it down first, or give --force "
                            "to stop it (graceful shutdown, destroyed after %d s)", r->new_name,
                            o->shutdown_timeout);
                return NULL;
            } else {
                r->must_stop = true;
            }
        }
    }

    /* Disks */
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
                return NULL;
            }
            for (size_t k = 0; k < i; k++)
                if (!strcmp(o->disks[k], o->disks[i]))
                    md = NULL;             /* named twice */
            if (md && !plan_disk(run, r, md, error))
                return NULL;
        }
        if (o->start && !r->dom) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                        "restore: --start: domain '%s' is not defined; restore the whole domain "
                        "(without --disks) to define it", r->new_name);
            return NULL;
        }
    } else {
        for (guint k = 0; k < r->md->disks->len; k++)
            if (!plan_disk(run, r, r->md->disks->pdata[k], error))
                return NULL;
    }
    if (r->disks->len == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "restore: domain '%s' in backup %s has no disks", r->name, r->m->id);
        return NULL;
    }
    if (r->dom && r->active && r->in_place && r->partial && !o->force &&
        !plan_hot_swap(run, r, error))
        return NULL;
    for (guint i = 0; i < r->disks->len; i++) {
        RDisk *d = r->disks->pdata[i];
        bool seen = d->sink_url != NULL && !d->sink_image;   /* no directory: the target itself */
        for (guint k = 0; k < i; k++)
            seen = seen || !g_strcmp0(((RDisk *)r->disks->pdata[k])->dir, d->dir);
        if (!seen && !check_dir(d->dir, o->target_dir && !r->in_place ? "target directory" :
                                run->pool && !r->in_place ? "pool directory" : "directory",
                                error))
            return NULL;
    }

    /* The definition */
    if (r->renamed) {
        if (!vs_domain_def_set_name(r->def, r->new_name, error) ||
            !vs_domain_def_set_uuid(r->def, r->existing_uuid, error)) {
            vs_error_prefix(error, "restore");
            return NULL;
        }
        if (vs_domain_def_clear_macs(r->def) > 0)
            note(r, "MAC addresses removed: libvirt generates new ones");
        {
            g_autoptr(GPtrArray) changes = g_ptr_array_new_with_free_func(g_free);
            vs_domain_def_rename_files(r->def, r->name, r->new_name, changes);
            for (guint i = 0; i < changes->len; i++)
                note(r, "renamed %s", (char *)changes->pdata[i]);
        }
        if (!r->existing_uuid)
            note(r, "new UUID: libvirt makes one up");
    } else if (r->existing_uuid) {
        if (!vs_domain_def_set_uuid(r->def, r->existing_uuid, error))
            return NULL;
    } else if (r->md->uuid) {
        virDomainPtr other = virDomainLookupByUUIDString(run->conn, r->md->uuid);
        if (other) {
            const char *oname = virDomainGetName(other);
            note(r, "UUID %s now belongs to domain '%s': the restored domain gets a new one",
                 r->md->uuid, oname ? oname : "?");
            virDomainFree(other);
            vs_domain_def_set_uuid(r->def, NULL, NULL);
        }
    }
    if (!r->partial && !(o->define || o->start)) {
        const char *dir = o->target_dir ? o->target_dir : NULL;
        g_autofree char *xml_dir = NULL;
        g_autofree char *xml_name = g_strdup_printf("%s.xml", r->new_name);

        if (!plain_file_name(r, xml_name, error))
            return NULL;

        if (!dir && run->pool) {
            /* Not in the pool: it would show up as a volume. */
            xml_dir = g_build_filename(vs_state_dir(o->state_dir), "restore", NULL);
            if (!vs_make_dir(vs_state_dir(o->state_dir), 0755, error) || !vs_make_dir(xml_dir, 0700, error))
                return NULL;
        } else {
            xml_dir = g_strdup(dir ? dir : ((RDisk *)r->disks->pdata[0])->dir);
        }
        r->xml_path = g_build_filename(xml_dir, xml_name, NULL);
    }
    return g_steal_pointer(&r);
}

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
static void
discard_temps(Run *run, RDom *r)
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
static void
fail_on_disk_errors(Run *run, RDom *r)
{
    for (guint k = 0; k < r->disks->len; k++) {
        RDisk *d = r->disks->pdata[k];
        if (d->error)
            dom_fail(r, "%s; nothing of domain '%s' was changed", d->error, r->new_name);
    }
    if (r->error)
        discard_temps(run, r);
}

static bool
write_phase(Run *run, GError **error)
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
            discard_temps(run, run->doms->pdata[i]);
        bad_chunks_error(run, bad, error);
        return false;
    }
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        fail_on_disk_errors(run, r);
    }
    return true;
}

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
        while (domain_active(r->dom) && g_get_monotonic_time() < deadline)
            g_usleep(200 * 1000);
    }
    if (domain_active(r->dom)) {
        if (virDomainDestroy(r->dom) < 0 && domain_active(r->dom)) {
            vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: stopping domain '%s'", name);
            return false;
        }
        note(r, "domain '%s' did not shut down within %d s: destroyed", name, run->opts->shutdown_timeout);
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

static void
finish_domain(Run *run, RDom *r)
{
    const VsRestoreOptions *o = run->opts;
    g_autoptr(GError) err = NULL;
    g_autofree char *xml = NULL;
    bool any_installed = false;
    bool was_active = r->active;

    if (r->error)
        return;
    if (!r->partial && !(xml = vs_domain_def_format(r->def, &err))) {
        dom_fail(r, "restore: domain '%s': %s; nothing was changed", r->new_name, err->message);
        discard_temps(run, r);
        return;
    }
    if (!vs_interrupt_check("restore", &err)) {
        dom_fail(r, "%s before domain '%s' was changed; nothing of it was changed", err->message,
                 r->new_name);
        discard_temps(run, r);
        return;
    }
    if (r->must_stop && r->dom && domain_active(r->dom)) {
        if (!stop_domain(run, r, &err)) {
            dom_fail(r, "%s; nothing was changed", err->message);
            discard_temps(run, r);
            return;
        }
    }
    /* The last moment an interrupt leaves the domain as it was (started again
     * below when it was stopped for the restore); from the first disk
     * installed on, the domain is finished first. */
    if (!vs_interrupt_check("restore", &err))
        dom_fail(r, "%s before domain '%s' was changed; nothing of it was changed", err->message,
                 r->new_name);
    for (guint i = 0; i < r->disks->len && !r->error; i++) {
        RDisk *d = r->disks->pdata[i];
        bool ok;

        g_clear_error(&err);
        if (d->hot)
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
                dom_fail(r, "%s (disks restored before it: see the result)", err->message);
            else
                dom_fail(r, "%s; nothing was changed", err->message);
            break;
        }
    }
    if (r->error) {
        discard_temps(run, r);
        /* Untouched, so back to how it was. */
        if (!any_installed && r->stopped && was_active && virDomainCreate(r->dom) == 0)
            note(r, "domain '%s' was started again", r->new_name);
        return;
    }
    if (run->pool)
        (void)virStoragePoolRefresh(run->pool, 0);

    if (!r->partial && (o->define || o->start)) {
        virDomainPtr dom = virDomainDefineXML(run->conn, xml);
        if (!dom) {
            vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "restore: defining domain '%s'", r->new_name);
            dom_fail(r, "%s (its disks are restored)", err->message);
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
            dom_fail(r, "restore: writing %s: %s (the disks are restored)", r->xml_path, err->message);
            return;
        }
        r->define_cmd = g_strdup_printf("virsh%s%s define %s", u ? " -c " : "", u ? u : "", q);
    }
    if (o->start && r->dom && !domain_active(r->dom)) {
        if (virDomainCreate(r->dom) < 0) {
            vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "restore: starting domain '%s'", r->new_name);
            dom_fail(r, "%s (it is restored%s)", err->message, r->defined ? " and defined" : "");
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

/* ------------------------------------------------------------------------- */
/* --instant (the mounts and the pull: driver/mount.c)                        */

/* Chunks are only looked for: re-hashing them all would take as long as a
 * restore; the plugin re-hashes each chunk it serves (a bad one is a read
 * error, never wrong data). */
static bool
instant_check_chunks(Run *run, GError **error)
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
static void
instant_write_phase(Run *run)
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
        fail_on_disk_errors(run, r);
    }
}

static void
instant_unmount(RDom *r, RDisk *d)
{
    g_autoptr(GError) err = NULL;

    if (!vs_mount_stop(d->mount, NULL, true, &err)) {
        note(r, "disk %s is copied, but its export did not stop: %s", d->target, err->message);
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
            dom_fail(r, "restore: domain '%s' is not running and disk %s still is the overlay %s "
                     "reading the backup through %s: %s; the export stays up (mount %s)",
                     r->new_name, d->target, d->tmp, d->mount->uri, err->message, d->mount->id);
            return;
        }
        note(r, "disk %s: the domain was not running, so the backup was copied into %s (raw) "
             "offline", d->target, d->dest);
        instant_unmount(r, d);
        return;
    }
    if (!vs_instant_finish_offline(d->dest, &err)) {
        g_autofree char *q = g_shell_quote(d->dest);
        dom_fail(r, "restore: domain '%s' is not running and disk %s (%s) still reads the backup "
                 "through %s: %s; the export stays up (mount %s); finish with: qemu-img rebase -f "
                 "qcow2 -b '' %s && virtsnap umount %s", r->new_name, d->target, d->dest,
                 d->mount->uri, err->message, d->mount->id, q, d->mount->id);
        return;
    }
    note(r, "disk %s: the domain was not running, so the backup was copied into %s offline",
         d->target, d->dest);
    instant_unmount(r, d);
}

static void
instant_copy_phase(Run *run)
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
            if (d->instant_copy && r->started && r->dom && domain_active(r->dom)) {
                g_autoptr(GError) cerr = NULL;
                if (vs_blockcopy_pivot(run->conn, r->dom, d->target, d->dest, "raw", &cerr)) {
                    unlink(d->tmp);
                    if (r->copied_ms < vs_now_ms() - run->t0)
                        r->copied_ms = vs_now_ms() - run->t0;
                    instant_unmount(r, d);
                } else if (!domain_active(r->dom)) {
                    instant_offline(r, d);
                } else {
                    dom_fail(r, "restore: domain '%s' runs, but disk %s is still the overlay %s "
                             "reading the backup through %s: %s; the export stays up (mount %s); "
                             "virtsnap recover finishes the copy", r->new_name, d->target, d->tmp,
                             d->mount->uri, cerr->message, d->mount->id);
                }
                continue;
            }
            if (r->started && r->dom && domain_active(r->dom)) {
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
            dom_fail(r, "restore: domain '%s' runs, but disk %s (%s) still reads the backup through "
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

/* ------------------------------------------------------------------------- */

static VsRestoreResult *
make_result(Run *run)
{
    VsRestoreResult *res = g_new0(VsRestoreResult, 1);

    res->domains = g_ptr_array_new_with_free_func((GDestroyNotify)domain_result_free);
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        VsRestoreDomainResult *dr = g_new0(VsRestoreDomainResult, 1);

        dr->name = g_strdup(r->name);
        dr->restored_as = g_strdup(r->new_name);
        dr->backup_id = g_strdup(r->m->id);
        dr->ok = r->error == NULL;
        dr->error = g_strdup(r->error);
        dr->in_place = r->in_place;
        dr->stopped = r->stopped;
        dr->defined = r->defined;
        dr->started = r->started;
        dr->xml_path = r->define_cmd ? g_strdup(r->xml_path) : NULL;
        dr->define_command = g_strdup(r->define_cmd);
        dr->instant = run->opts->instant;
        dr->running_ms = r->running_ms;
        dr->copied_ms = r->copied_ms;
        dr->disks = g_ptr_array_new_with_free_func((GDestroyNotify)disk_result_free);
        dr->notes = g_ptr_array_new_with_free_func(g_free);
        for (guint k = 0; k < r->notes->len; k++)
            g_ptr_array_add(dr->notes, g_strdup(r->notes->pdata[k]));
        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];
            VsRestoreDiskResult *k2;

            if (!d->installed && !(dr->ok && d->written))
                continue;
            k2 = g_new0(VsRestoreDiskResult, 1);
            k2->target = g_strdup(d->target);
            k2->path = g_strdup(d->dest);
            k2->format = g_strdup(d->format);
            k2->pool = d->vol_name ? g_strdup(run->opts->pool) : NULL;
            k2->volume = g_strdup(d->vol_name);
            k2->virtual_size = d->md->virtual_size;
            k2->action = g_strdup(d->action);
            k2->note = g_strdup(d->note);
            k2->nbd = d->mount ? g_strdup(d->mount->uri) : NULL;
            g_ptr_array_add(dr->disks, k2);
        }
        g_ptr_array_add(res->domains, dr);
    }
    return res;
}

bool
vs_restore_check_options(const char *const *names, const VsRestoreOptions *o, GError **error)
{
    guint n = names ? g_strv_length((char **)names) : 0;

    if (!o->repo_path || !*o->repo_path) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: no repository: give --repo DIR or set VIRTSNAP_REPO");
        return false;
    }
    if (n == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "restore: name the domains to restore");
        return false;
    }
    for (guint i = 0; i < n; i++) {
        if (!*names[i]) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "restore: a domain name given is empty");
            return false;
        }
    }
    if (o->backup_id && !*o->backup_id) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --backup is empty (an id, a unique prefix, or latest)");
        return false;
    }
    if (o->new_name && n > 1) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --as names one new domain: restore one domain at a time with it");
        return false;
    }
    if (o->new_name && !vs_domain_name_check(o->new_name, error)) {
        vs_error_prefix(error, "restore: --as");
        return false;
    }
    if (o->target_dir && o->pool) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --target-dir and --pool exclude each other");
        return false;
    }
    if (o->format && !format_supported(o->format)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --format %s: use raw or qcow2", o->format);
        return false;
    }
    if (o->disks && o->disks[0] && o->define) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --disks restores disks into the existing definition; --define is "
                    "for whole domains");
        return false;
    }
    if (o->instant && ((o->disks && o->disks[0]) || o->pool)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --instant restores whole domains into files: it does not take %s",
                    o->pool ? "--pool (use --target-dir)" : "--disks");
        return false;
    }
    if (o->disks && o->disks[0] && o->start && (o->new_name || o->target_dir || o->pool)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --disks with --as, --target-dir or --pool writes disk files only; "
                    "--start needs a whole domain");
        return false;
    }
    return true;
}

static bool
open_pool(Run *run, GError **error)
{
    const char *name = run->opts->pool;
    g_autofree char *xml = NULL;
    g_autoptr(VsPoolDef) def = NULL;
    int active;

    if (!(run->pool = virStoragePoolLookupByName(run->conn, name))) {
        if (virGetLastErrorCode() == VIR_ERR_NO_STORAGE_POOL)
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                        "restore: storage pool '%s' not found (virsh pool-list --all)", name);
        else
            vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: storage pool '%s'", name);
        return false;
    }
    if ((active = virStoragePoolIsActive(run->pool)) <= 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: storage pool '%s' is not active: start it with virsh pool-start %s",
                    name, name);
        return false;
    }
    if (!(xml = virStoragePoolGetXMLDesc(run->pool, 0))) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: storage pool '%s'", name);
        return false;
    }
    if (!(def = vs_pool_def_parse_string(xml, name, error))) {
        vs_error_prefix(error, "restore: storage pool '%s'", name);
        return false;
    }
    if (def->type != VS_POOL_DIR && def->type != VS_POOL_FS && def->type != VS_POOL_NETFS) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "restore: storage pool '%s' is of type %s: restoring into it is not supported "
                    "yet (supported: dir, fs, netfs); use --target-dir", name,
                    vs_pool_type_to_string(def->type));
        return false;
    }
    if (!def->target_path) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML, "restore: storage pool '%s' has no target path", name);
        return false;
    }
    (void)virStoragePoolRefresh(run->pool, 0);
    run->pool_dir = g_strdup(def->target_path);
    return true;
}

/* The writes take long and need no libvirt: a libvirtd that restarted
 * meanwhile is reconnected to before the domains are stopped, defined and
 * started, with the existing domains and the pool looked up again. */
static bool
revive(Run *run, VsLink *link, GError **error)
{
    if (vs_link_alive(link))
        return true;
    if (!vs_link_revive(link, "restore", error))
        return false;
    run->conn = vs_link_conn(link);
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        guint gen = 0;

        if (r->dom && r->existing_uuid) {
            virDomainFree(r->dom);
            r->dom = NULL;
            if (!vs_link_domain(link, r->existing_uuid, &r->dom, &gen, error)) {
                vs_error_prefix(error, "restore: domain '%s'", r->new_name);
                return false;
            }
        }
    }
    if (run->pool) {
        const char *name = run->opts->pool;
        virStoragePoolPtr p = virStoragePoolLookupByName(run->conn, name);

        if (!p) {
            vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "restore: pool '%s'", name);
            return false;
        }
        virStoragePoolFree(run->pool);
        run->pool = p;
    }
    return true;
}

/* Every temp file the run may create, in its journal before the write phase
 * creates any: a kill -9 leaves recover the list. */
static bool
journal_temps(Run *run, GError **error)
{
    if (!(run->journal = vs_temp_journal_create(run->opts->state_dir, "restore", error))) {
        vs_error_prefix(error, "restore");
        return false;
    }
    for (guint i = 0; i < run->doms->len; i++) {
        RDom *r = run->doms->pdata[i];
        for (guint k = 0; k < r->disks->len; k++) {
            RDisk *d = r->disks->pdata[k];
            g_autofree char *raw = d->tmp ? g_strdup_printf("%s.raw", d->tmp) : NULL;

            if ((d->tmp && !vs_journal_temp(run->journal, d->tmp, error)) ||
                (d->instant_copy && !vs_journal_temp(run->journal, raw, error))) {
                vs_error_prefix(error, "restore");
                return false;
            }
        }
    }
    return true;
}

/* An interrupt after the write phase, or a failure: what is not installed goes. */
static void
discard_all(Run *run)
{
    for (guint i = 0; run->doms && i < run->doms->len; i++)
        discard_temps(run, run->doms->pdata[i]);
}

static void
run_clear(Run *run)
{
    if (run->doms)
        g_ptr_array_unref(run->doms);
    if (run->manifests)
        g_hash_table_unref(run->manifests);
    g_strfreev(run->ids);
    if (run->pool)
        virStoragePoolFree(run->pool);
    g_free(run->pool_dir);
    if (run->disk_users)
        g_hash_table_unref(run->disk_users);
    if (run->repo)
        vs_repo_close(run->repo);
    /* Its temp files are installed, removed, or handed to a guest by now. */
    vs_journal_finish(run->journal);
}

VsRestoreResult *
vs_restore_run(virConnectPtr conn, const char *const *names, const VsRestoreOptions *opts,
               GError **error)
{
    VsRestoreOptions instant_opts;
    Run run = { .conn = conn, .opts = opts, .t0 = vs_now_ms() };
    g_autoptr(VsLink) link = vs_link_new(conn, opts->uri);
    VsRestoreResult *result = NULL;
    g_autoptr(GError) lerr = NULL;

    if (!vs_restore_check_options(names, opts, error))
        return NULL;
    if (opts->instant) {
        instant_opts = *opts;
        instant_opts.define = instant_opts.start = true;
        run.opts = opts = &instant_opts;
    }
    if (!(run.repo = vs_repo_open(opts->repo_path, false, false, 0, error))) {
        vs_error_prefix(error, "restore");
        return NULL;
    }
    /* Keeps gc from deleting chunks under us; a repository on read-only media
     * cannot run a gc anyway. */
    if (!vs_repo_lock_shared(run.repo, &lerr) && lerr->code == VS_ERROR_TIMEOUT) {
        g_propagate_prefixed_error(error, g_steal_pointer(&lerr), "restore: ");
        run_clear(&run);
        return NULL;
    }
    run.manifests = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          (GDestroyNotify)vs_manifest_free);
    run.doms = g_ptr_array_new_with_free_func((GDestroyNotify)rdom_free);
    if (opts->pool && !open_pool(&run, error))
        goto fail;

    for (size_t i = 0; names[i]; i++) {
        RDom *r;
        bool dup = false;

        for (size_t k = 0; k < i; k++)
            dup = dup || !strcmp(names[k], names[i]);
        if (dup)
            continue;
        if (!(r = plan_domain(&run, names[i], error)))
            goto fail;
        for (guint k = 0; k < run.doms->len; k++) {
            RDom *o2 = run.doms->pdata[k];
            if (!g_strcmp0(o2->new_name, r->new_name)) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                            "restore: domain '%s' is named twice", r->new_name);
                rdom_free(r);
                goto fail;
            }
        }
        g_ptr_array_add(run.doms, r);
    }
    /* Nothing is created before this point: an interrupt so far leaves nothing. */
    if (!vs_interrupt_check("restore", error) || !journal_temps(&run, error))
        goto fail;
    if (opts->instant) {
        if (!instant_check_chunks(&run, error))
            goto fail;
        instant_write_phase(&run);
    } else if (!write_phase(&run, error)) {
        goto fail;
    }
    vs_fault_point("restore-written");
    if (vs_interrupted()) {
        g_set_error(error, VS_ERROR, VS_ERROR_INTERRUPTED, "restore: interrupted by %s before anything was "
                    "installed: nothing was changed, and the images written were removed",
                    vs_signal_name(vs_interrupted()));
        goto fail;
    }
    if (!revive(&run, link, error))
        goto fail;
    for (guint i = 0; i < run.doms->len; i++)
        finish_domain(&run, run.doms->pdata[i]);
    for (guint i = 0; opts->instant && i < run.doms->len; i++) {
        RDom *r = run.doms->pdata[i];
        /* The guest runs on these now: the mount registry's, not temp files. */
        for (guint k = 0; r->started && k < r->disks->len; k++)
            vs_temp_done(run.journal, ((RDisk *)r->disks->pdata[k])->tmp);
    }
    if (opts->instant) {
        /* From here a killed restore leaves running guests on their exports
         * (nbdkit outlives us on purpose): `virtsnap recover` finishes them. */
        vs_fault_point("instant-running");
        instant_copy_phase(&run);
    }
    result = make_result(&run);
    run_clear(&run);
    return result;

fail:
    discard_all(&run);
    run_clear(&run);
    return NULL;
}
