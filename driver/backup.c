/* `virtsnap backup`: one consistent point in time for a group of running
 * domains without suspending any of them. The order is what makes it safe:
 * journal the intent; arm the guardian; freeze every guest in parallel, each
 * call bounded; one atomic disk-only external snapshot per domain; thaw, always;
 * copy the now stable images into the repository with several disks in flight;
 * commit every overlay back, pivoting only on READY; write the manifest last.
 * Each domain succeeds or fails on its own, and whatever fails, cleanup (thaw,
 * commit, removal of our overlays) runs and never hides the first error.
 *
 * With --mode=begin the snapshot step is a libvirt pull-mode backup job instead
 * (virDomainBackupBegin inside the same frozen window, creating a checkpoint), the
 * copy reads the job's NBD exports (incrementally: only chunks the dirty bitmap
 * touches are read, the others are taken from the base backup's manifest), and
 * instead of a commit the job is ended and this repository's older checkpoints
 * are deleted (or, when the backup failed, the new one). With --push (or a
 * push-mode --backup-xml) the job is a push-mode one: QEMU writes each disk, or
 * for an incremental only its changed clusters, into a qcow2 file of ours; once
 * the job has ended by itself, the copy reads those files (a partly changed chunk
 * is completed from the base backup's chunk) and removes them. */
#include "config.h"
#include "driver-internal.h"
#include "qcow2-writer.h"
#include "vs-xml.h"
#include "vs-repo.h"
#include "vs-source.h"
#include "vs-block.h"
#include "vs-restore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>

typedef struct {
    char *target;
    char *format;
    char *path;              /* local path of the top image (file/block/netfs) */
    char *url;               /* nfs:// or iscsi:// when not reachable by path */
    char *direct_url;        /* nfs:// of a netfs pool volume (PATH is the host's mount) */
    const char *data_path;   /* how the copy read it (a static string) */
    char *direct_failed;     /* --data-path=auto: why the direct path was not used */
    char *overlay;           /* our overlay, NULL when the disk gets none */
    GPtrArray *chain;        /* VsManifestImage*: top first */
    VsManifestDisk *mdisk;   /* filled by the copy, then moved into the manifest */
    uint64_t bytes_read, bytes_stored;
    char *error;
    /* --mode=begin */
    bool bitmap;             /* qcow2: in the checkpoint, read incrementally */
    /* The job's file for this disk: pull, its scratch image; push, the qcow2
     * the job writes the disk into. */
    char *scratch;
    uint64_t capacity;       /* the disk's size as libvirt said before the job; 0: unknown */
    char *read;              /* for the result: "changed", "full" or "full: why" */
} DiskJob;

typedef struct {
    virDomainPtr dom;
    guint gen;               /* the connection generation DOM belongs to (VsLink) */
    char *name;
    char *uuid;
    bool active;             /* running or paused: needs an overlay */
    bool freeze;             /* we will try to freeze it */
    bool frozen;             /* the freeze call succeeded */
    bool snapshotted;
    bool reuse_ext;          /* overlays made before the freeze: snapshot reuses them */
    bool reuse_scratch;      /* scratch images made before the freeze: the job reuses them */
    bool thaw_failed;
    /* Something of this run stays for `virtsnap recover`: a file a guest may
     * still use, a freeze not known to be over. The journal is kept. */
    bool left;
    int lock_fd;
    char *xml;               /* the definition kept in the manifest */
    char *live_xml;          /* what the domain runs now: its disks are the snapshot's */
    GPtrArray *disks;        /* DiskJob* */
    int64_t freeze_start, freeze_end;     /* monotonic ms */
    int64_t frozen_at, thawed_at;         /* unix ms, for the group's point in time */
    char *consistency;
    char *note;
    char *error;             /* first error: the domain failed */
    GError *thread_error;    /* from a freeze/snapshot/thaw thread */
    /* --mode=begin: a pull-mode backup job instead of overlays */
    bool begin;
    bool push;               /* a push-mode job (QEMU writes the disks into our files) */
    uint64_t push_need_full; /* bytes a full push job of every disk would write */
    bool job_started;
    bool job_aborted;        /* the abort was accepted; the teardown may still run */
    char *checkpoint;        /* the one this backup creates */
    char *incremental;       /* the base's checkpoint; NULL: full */
    bool diff;               /* the base is the chain's last full backup */
    VsManifest *base;        /* the backup the checkpoint belongs to */
    char **other_targets;    /* disks left out of the job and the checkpoint */
    char *sock_dir;          /* holds the NBD socket (QEMU's DAC owner) */
    char *scratch_dir;
    char *backup_xml, *checkpoint_xml;   /* what the job was begun with */
} DomJob;

typedef struct {
    virConnectPtr conn;      /* the caller's; libvirt calls go through LINK */
    VsLink *link;
    const VsBackupOptions *opts;
    VsRepo *repo;
    char *repo_tag;          /* names this repository's checkpoints */
    VsManifest *manifest;
    VsJournal *journal;
    GPtrArray *doms;         /* DomJob* */
    GMutex progress_lock;
    VsIscsiAuth *iscsi_auth; /* from --iscsi-auth, or NULL */
    VsBackupDef *job_xml;    /* --backup-xml, or NULL */
    VsCheckpointDef *checkpoint_xml; /* --checkpoint-xml, or NULL */
    VsGuardian *guardian;    /* started early, armed at the freeze (see guardian_early) */
    bool push;               /* --push, --push-dir or a push-mode --backup-xml */
    uint64_t push_reserved;  /* bytes the push jobs prepared so far will write */
    uint64_t pull_reserved;  /* scratch room the pull jobs prepared so far asked for */
} Run;

/* The index of S in NAMES (NULL-terminated) into *OUT, or false. */
static bool
enum_from_string(const char *s, const char *const *names, int *out)
{
    for (int i = 0; names[i]; i++) {
        if (!g_strcmp0(s, names[i])) {
            *out = i;
            return true;
        }
    }
    return false;
}

bool
vs_quiesce_mode_from_string(const char *s, VsQuiesceMode *out)
{
    static const char *const names[] = { [VS_QUIESCE_TRY] = "try", [VS_QUIESCE_REQUIRE] = "require",
                                         [VS_QUIESCE_OFF] = "off", NULL };
    int v;

    if (!enum_from_string(s, names, &v))
        return false;
    *out = (VsQuiesceMode)v;
    return true;
}

bool
vs_backup_method_from_string(const char *s, VsBackupMethod *out)
{
    static const char *const names[] = { [VS_BACKUP_METHOD_OVERLAY] = "overlay",
                                         [VS_BACKUP_METHOD_BEGIN] = "begin",
                                         [VS_BACKUP_METHOD_AUTO] = "auto", NULL };
    int v;

    if (!enum_from_string(s, names, &v))
        return false;
    *out = (VsBackupMethod)v;
    return true;
}

bool
vs_backup_level_from_string(const char *s, VsBackupLevel *out)
{
    /* "default" is not a level one can ask for by name. */
    static const char *const names[] = { [VS_BACKUP_LEVEL_DEFAULT] = "", [VS_BACKUP_LEVEL_FULL] = "full",
                                         [VS_BACKUP_LEVEL_INC] = "inc",
                                         [VS_BACKUP_LEVEL_DIFF] = "diff", NULL };
    int v;

    if (!s || !*s || !enum_from_string(s, names, &v))
        return false;
    *out = (VsBackupLevel)v;
    return true;
}

bool
vs_data_path_from_string(const char *s, VsDataPath *out)
{
    static const char *const names[] = { [VS_DATA_PATH_AUTO] = "auto", [VS_DATA_PATH_DIRECT] = "direct",
                                         [VS_DATA_PATH_HOST] = "host", NULL };
    int v;

    if (!enum_from_string(s, names, &v))
        return false;
    *out = (VsDataPath)v;
    return true;
}

void
vs_backup_options_init(VsBackupOptions *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->quiesce = VS_QUIESCE_TRY;
    opts->max_freeze_ms = 10000;
    opts->agent_timeout = 5;
    opts->commit_timeout = 600;
    opts->commit_bandwidth = 0;
    opts->parallel_disks = 2;
    opts->copy_nice = 10;
}

/* A copied disk that never made it into a manifest (its domain failed). */
static void
manifest_disk_free(VsManifestDisk *m)
{
    if (!m)
        return;
    g_free(m->target); g_free(m->format); g_free(m->source);
    if (m->chain)
        g_ptr_array_unref(m->chain);
    if (m->chunks)
        g_array_unref(m->chunks);
    g_free(m);
}

static void
disk_job_free(DiskJob *d)
{
    manifest_disk_free(d->mdisk);
    g_free(d->target); g_free(d->format); g_free(d->path); g_free(d->url); g_free(d->direct_url);
    g_free(d->direct_failed);
    g_free(d->overlay); g_free(d->error);
    g_free(d->scratch); g_free(d->read);
    if (d->chain)
        g_ptr_array_unref(d->chain);
    g_free(d);
}

static void
dom_job_free(DomJob *j)
{
    if (j->dom)
        virDomainFree(j->dom);
    vs_domain_unlock(j->lock_fd);
    g_free(j->name); g_free(j->uuid); g_free(j->xml); g_free(j->live_xml);
    g_free(j->consistency); g_free(j->note); g_free(j->error);
    g_clear_error(&j->thread_error);
    g_ptr_array_unref(j->disks);
    g_free(j->checkpoint); g_free(j->incremental);
    vs_manifest_free(j->base);
    g_strfreev(j->other_targets);
    g_free(j->sock_dir); g_free(j->scratch_dir);
    g_free(j->backup_xml); g_free(j->checkpoint_xml);
    g_free(j);
}

static void
manifest_image_free(VsManifestImage *i)
{
    g_free(i->path);
    g_free(i->format);
    g_free(i);
}

void
vs_backup_result_free(VsBackupResult *r)
{
    if (!r)
        return;
    g_free(r->id);
    g_ptr_array_unref(r->domains);
    g_ptr_array_unref(r->notes);
    g_free(r);
}

static void
domain_result_free(VsBackupDomainResult *d)
{
    g_free(d->name); g_free(d->consistency); g_free(d->note); g_free(d->error);
    g_free(d->mode); g_free(d->level); g_free(d->base); g_free(d->checkpoint);
    g_free(d->backup_xml); g_free(d->checkpoint_xml);
    g_ptr_array_unref(d->disks);
    g_free(d);
}

static void
disk_result_free(VsBackupDiskResult *d)
{
    g_free(d->target);
    g_free(d->data_path);
    g_free(d->read);
    g_free(d);
}

/* First error wins: later ones are dropped, the first is what the user sees. */
static void
dom_fail(DomJob *j, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
dom_fail(DomJob *j, const char *fmt, ...)
{
    va_list ap;

    if (j->error)
        return;
    va_start(ap, fmt);
    j->error = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

/* J->dom on a live connection: reopened (libvirtd restarted) and looked up
 * again when needed. WHAT names the step for the error. */
static bool
dom_revive(Run *run, DomJob *j, const char *what, GError **error)
{
    if (!vs_link_revive(run->link, what, error))
        return false;
    if (!vs_link_domain(run->link, j->uuid, &j->dom, &j->gen, error)) {
        vs_error_prefix(error, "%s: domain '%s'", what, j->name);
        return false;
    }
    return true;
}

static void
progress(Run *run, VsBackupPhase phase, const char *dom, const char *disk, uint64_t done,
         uint64_t total)
{
    if (!run->opts->progress)
        return;
    g_mutex_lock(&run->progress_lock);
    run->opts->progress(phase, dom, disk, done, total, run->opts->progress_opaque);
    g_mutex_unlock(&run->progress_lock);
}

/* J's record of a kind that says nothing else (vs_journal_freeze, _thawed,
 * _job_ended), through WRITE. */
static bool
journal(Run *run, DomJob *j, bool (*write)(VsJournal *, const char *, const char *, GError **))
{
    g_autoptr(GError) err = NULL;

    if (write(run->journal, j ? j->name : NULL, j ? j->uuid : NULL, &err))
        return true;
    /* Without a journal the step cannot be undone after a crash: do not take it. */
    if (j)
        dom_fail(j, "%s", err->message);
    return false;
}

/* ------------------------------------------------------------------------- */
/* Preparation                                                               */

static char *
overlay_path(Run *run, DomJob *j, const VsDiscoveredDisk *d)
{
    g_autofree char *base = NULL;

    if (run->opts->overlay_dir) {
        base = g_strdup_printf("%s.%s.virtsnap-%s.qcow2", j->name, d->target, run->manifest->id);
        /* Absolute: QEMU opens it, from a working directory of its own. */
        g_autofree char *dir = g_canonicalize_filename(run->opts->overlay_dir, NULL);

        return g_build_filename(dir, base, NULL);
    }
    if (g_strcmp0(d->type, "file") == 0 && d->path && g_path_is_absolute(d->path))
        return g_strdup_printf("%s.virtsnap-%s.qcow2", d->path, run->manifest->id);
    /* Block devices, volumes and network disks have no directory of their own. */
    base = g_strdup_printf("%s.%s.virtsnap-%s.qcow2", j->uuid, d->target, run->manifest->id);
    return g_build_filename(vs_state_dir(run->opts->state_dir), "overlays", base, NULL);
}

static bool
prepare_disks(Run *run, DomJob *j, const VsDiscoveredDomain *disc, const VsDomainDef *def)
{
    for (guint i = 0; i < disc->disks->len; i++) {
        const VsDiscoveredDisk *d = disc->disks->pdata[i];
        const VsDiskDef *dd = vs_domain_def_find_disk(def, d->target);
        DiskJob *job;

        if (d->skipped)
            continue;
        if (d->error) {
            dom_fail(j, "domain '%s': disk %s: %s", j->name, d->target, d->error);
            return false;
        }
        job = g_new0(DiskJob, 1);
        job->target = g_strdup(d->target);
        job->format = g_strdup(d->format ? d->format : "raw");
        job->chain = g_ptr_array_new_with_free_func((GDestroyNotify)manifest_image_free);
        if (d->iscsi_iqn && d->iscsi_portal) {
            job->url = g_strdup_printf("iscsi://%s/%s/%d", d->iscsi_portal, d->iscsi_iqn,
                                       d->iscsi_lun >= 0 ? d->iscsi_lun : 0);
        } else if (g_strcmp0(d->type, "network") == 0 && d->nfs_server) {
            job->url = g_strdup_printf("nfs://%s%s%s", d->nfs_server, d->nfs_export ? d->nfs_export : "",
                                       d->nfs_path ? d->nfs_path : "");
        } else if (g_strcmp0(d->type, "network") == 0) {
            job->url = g_strdup(d->path);
        } else {
            job->path = g_strdup(d->path);
            if (g_strcmp0(d->pool_type, "netfs") == 0 && d->nfs_server && d->nfs_export && d->nfs_path)
                job->direct_url = g_strdup_printf("nfs://%s%s%s", d->nfs_server, d->nfs_export,
                                                  d->nfs_path);
        }
        {
            VsManifestImage *top = g_new0(VsManifestImage, 1);
            top->path = g_strdup(job->path ? job->path : job->url);
            top->format = g_strdup(job->format);
            g_ptr_array_add(job->chain, top);
        }
        for (guint k = 0; k < d->chain->len; k++) {
            const VsChainElem *e = d->chain->pdata[k];
            VsManifestImage *img = g_new0(VsManifestImage, 1);
            img->path = g_strdup(e->path);
            img->format = g_strdup(e->format);
            g_ptr_array_add(job->chain, img);
        }
        /* QEMU can go on writing a deleted image through its open descriptor, but
         * a commit reopens the base by name: an overlay on it could never be
         * committed back. Refuse before touching anything. */
        if (job->path && access(job->path, F_OK) < 0) {
            dom_fail(j, "domain '%s': disk %s: %s does not exist (%s); nothing was done%s",
                     j->name, d->target, job->path, g_strerror(errno),
                     j->active ? " (the running guest may still hold it open: copy it from "
                                 "/proc/PID/fd of its QEMU before the domain stops)" : "");
            g_ptr_array_add(j->disks, job);
            return false;
        }
        /* A read-only disk does not change under a running guest: no overlay. */
        if (j->active && !(dd && (dd->readonly || dd->shareable)))
            job->overlay = overlay_path(run, j, d);
        if (j->active && dd && dd->shareable)
            dom_fail(j, "domain '%s': disk %s is shareable: another guest may write it while it "
                     "is copied, so it cannot be backed up consistently; detach it or mark it "
                     "<readonly/>", j->name, d->target);
        g_ptr_array_add(j->disks, job);
    }
    return j->error == NULL;
}

static void
add_note(DomJob *j, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Notes accumulate: a fallback to a full backup and a failed freeze both matter. */
static void
add_note(DomJob *j, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;
    g_autofree char *before = g_steal_pointer(&j->note);

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    j->note = before ? g_strdup_printf("%s; %s", before, msg) : g_steal_pointer(&msg);
}

/* J's domain in backup M (by UUID when both have one), or NULL. */
static VsManifestDomain *
manifest_domain_of(const VsManifest *m, const DomJob *j)
{
    for (guint k = 0; k < m->domains->len; k++) {
        VsManifestDomain *c = m->domains->pdata[k];
        if (j->uuid && c->uuid ? !g_strcmp0(c->uuid, j->uuid) : !g_strcmp0(c->name, j->name))
            return c;
    }
    return NULL;
}

/* Whether every disk of J that has a bitmap now is in backup ID (MD): a disk
 * added since then has no chunks to share. Otherwise a note says so. */
static bool
base_has_disks(DomJob *j, const VsManifestDomain *md, const char *id, const char *which)
{
    for (guint k = 0; k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];
        if (d->bitmap && !vs_manifest_find_disk(md, d->target)) {
            add_note(j, "full backup: disk %s is not in the %s %s", d->target, which, id);
            return false;
        }
    }
    return true;
}

/* The base of a differential: the chain's last full backup, found by its
 * checkpoint (whose description says it is a full backup's: the repository's
 * manifests do not record levels), if that backup is still in the repository.
 * Otherwise a full backup, and why. */
static void
choose_full_base(Run *run, DomJob *j)
{
    g_autofree char *cp = vs_checkpoint_chain_full(j->dom, run->repo_tag);
    g_autofree char *id = vs_checkpoint_backup_id(run->repo_tag, cp);
    g_autoptr(VsManifest) m = NULL;
    VsManifestDomain *md = NULL;

    if (!id) {
        add_note(j, "full backup: no full backup of this domain in this repository has its "
                 "checkpoint left to count a differential from (deleted, the domain redefined, "
                 "or not taken with --mode=begin)");
        return;
    }
    if (!(m = vs_repo_load_manifest(run->repo, id, NULL)) || !(md = manifest_domain_of(m, j))) {
        add_note(j, "full backup: the chain's full backup %s is no longer in the repository "
                 "(pruned?)", id);
        return;
    }
    if (!base_has_disks(j, md, id, "chain's full backup"))
        return;
    j->incremental = g_steal_pointer(&cp);
    j->base = g_steal_pointer(&m);
    j->diff = true;
}

/* The base of an incremental: the newest backup of this domain in this
 * repository, if its checkpoint still exists with every bitmap intact and it
 * holds every disk that has a bitmap now. Otherwise a full backup, and why. */
static void
choose_base(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) ids = NULL;
    guint n;

    if (run->opts->level == VS_BACKUP_LEVEL_DIFF) {
        choose_full_base(run, j);
        return;
    }
    if (!(ids = vs_repo_list(run->repo, &err))) {
        add_note(j, "full backup: cannot list the repository's backups (%s)", err->message);
        return;
    }
    n = g_strv_length(ids);
    for (guint i = n; i-- > 0;) {
        g_autoptr(VsManifest) m = vs_repo_load_manifest(run->repo, ids[i], NULL);
        VsManifestDomain *md = m ? manifest_domain_of(m, j) : NULL;
        g_autofree char *cp = NULL, *why = NULL;

        if (!md)
            continue;
        cp = vs_checkpoint_name(run->repo_tag, m->id);
        if (!vs_checkpoint_usable(j->dom, cp, &why)) {
            g_autofree char *rwhy = NULL;
            if (vs_checkpoint_redefine(j->dom, cp, vs_repo_path(run->repo), run->repo_tag, j->uuid,
                                       &rwhy)) {
                add_note(j, "checkpoint %s no longer exists in libvirt (the domain defined anew, or "
                         "the checkpoint deleted): redefined from the copy kept in the repository",
                         cp);
                g_clear_pointer(&why, g_free);
            } else if (rwhy) {
                g_autofree char *w = g_steal_pointer(&why);
                why = g_strdup_printf("%s; %s", w, rwhy);
            }
        }
        if (why) {
            add_note(j, "full backup: the last backup %s of this domain cannot be the base: %s",
                     m->id, why);
            return;
        }
        if (!base_has_disks(j, md, m->id, "last backup"))
            return;
        j->incremental = g_steal_pointer(&cp);
        j->base = g_steal_pointer(&m);
        return;
    }
    add_note(j, "full backup: no earlier backup of this domain in this repository");
}

/* --backup-xml / --checkpoint-xml: what a `virsh backup-begin` user already
 * wrote, read as instructions for the job virtsnap begins. Taken: which disks
 * (backup='no' leaves one out, a disk not named is in, as with libvirt), their
 * scratch files, <incremental> naming the checkpoint of one of this
 * repository's backups (the base: what did not change since comes from its
 * manifest), a checkpoint's description and its checkpoint='no' disks (no
 * bitmap: read whole every time). <server> is replaced, with a note: virtsnap
 * serves the export on a private socket and reads it itself. Refused, each
 * saying why: push mode, export names, bitmap and checkpoint names (the chain
 * is found by virtsnap's own names). */
static char *
read_xml_option(const char *option, const char *path, GError **error)
{
    g_autoptr(GError) lerr = NULL;
    char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, &lerr))
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: %s: %s", option, lerr->message);
    return text;
}

static bool
load_job_xml(Run *run, GError **error)
{
    const VsBackupOptions *o = run->opts;
    g_autofree char *text = NULL;

    if (o->backup_xml_path) {
        if (!(text = read_xml_option("--backup-xml", o->backup_xml_path, error)))
            return false;
        if (!(run->job_xml = vs_backup_def_parse_string(text, o->backup_xml_path, error)))
            return false;
        if (run->push && run->job_xml->mode == VS_BACKUP_MODE_PULL) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "backup: --backup-xml %s asks for a pull-mode job (mode='pull'), --push "
                        "for a push-mode one: leave one of them out", o->backup_xml_path);
            return false;
        }
        run->push = run->push || run->job_xml->mode == VS_BACKUP_MODE_PUSH;
        for (guint i = 0; i < run->job_xml->disks->len; i++) {
            const VsBackupDiskDef *d = run->job_xml->disks->pdata[i];
            if (d->export_name || d->export_bitmap || d->incremental || d->target) {
                g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                            "backup: --backup-xml %s: disk %s: %s is virtsnap's to choose: "
                            "leave it out", o->backup_xml_path, d->name,
                            d->export_name ? "exportname" : d->export_bitmap ? "exportbitmap" :
                            d->incremental ? "a per-disk incremental"
                                           : "a push <target> (virtsnap writes the job's files "
                                             "into --push-dir, the state directory by default, "
                                             "and removes them once read)");
                return false;
            }
        }
        g_clear_pointer(&text, g_free);
    }
    if (o->checkpoint_xml_path) {
        if (!(text = read_xml_option("--checkpoint-xml", o->checkpoint_xml_path, error)))
            return false;
        if (!(run->checkpoint_xml = vs_checkpoint_def_parse_string(text, o->checkpoint_xml_path, error)))
            return false;
        if (run->checkpoint_xml->name) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "backup: --checkpoint-xml %s: virtsnap names the checkpoint itself "
                        "(virtsnap-TAG-BACKUPID, so that each repository finds its own chain and "
                        "never deletes another's): leave <name> out", o->checkpoint_xml_path);
            return false;
        }
        for (guint i = 0; i < run->checkpoint_xml->disks->len; i++) {
            const VsCheckpointDiskDef *d = run->checkpoint_xml->disks->pdata[i];
            if (d->bitmap) {
                g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                            "backup: --checkpoint-xml %s: disk %s: the bitmap is named after "
                            "the checkpoint: leave bitmap= out", o->checkpoint_xml_path, d->name);
                return false;
            }
        }
    }
    return true;
}

/* The instructions of --backup-xml/--checkpoint-xml for J (see load_job_xml). */
static bool
apply_job_xml(Run *run, DomJob *j, const VsDomainDef *def)
{
    const VsBackupDef *b = run->job_xml;
    const VsCheckpointDef *c = run->checkpoint_xml;

    for (guint i = 0; b && i < b->disks->len; i++) {
        const VsBackupDiskDef *bd = b->disks->pdata[i];
        bool found = false;

        for (guint k = 0; k < j->disks->len && !found; k++) {
            DiskJob *d = j->disks->pdata[k];
            if (g_strcmp0(d->target, bd->name) != 0)
                continue;
            found = true;
            if (!bd->backup) {
                g_ptr_array_remove_index(j->disks, k);
            } else if (bd->scratch && !run->push) {
                g_free(d->scratch);
                d->scratch = g_strdup(bd->scratch);
            }
        }
        if (!found && !(def && vs_domain_def_find_disk((VsDomainDef *)def, bd->name) && !bd->backup)) {
            dom_fail(j, "backup: --backup-xml %s: domain '%s' has no disk %s that can be backed up",
                     run->opts->backup_xml_path, j->name, bd->name);
            return false;
        }
    }
    if (b && (b->server_name || b->server_port || b->server_socket))
        add_note(j, "the job's export is served on virtsnap's own unix socket, not on the "
                 "<server> of %s: virtsnap reads it itself", run->opts->backup_xml_path);
    if (j->disks->len == 0) {
        dom_fail(j, "backup: --backup-xml %s leaves no disk of domain '%s' to back up",
                 run->opts->backup_xml_path, j->name);
        return false;
    }
    for (guint i = 0; c && i < c->disks->len; i++) {
        const VsCheckpointDiskDef *cd = c->disks->pdata[i];
        bool found = false;

        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *d = j->disks->pdata[k];
            if (!g_strcmp0(d->target, cd->name)) {
                found = true;
                if (!cd->checkpoint)
                    d->bitmap = false;
            }
        }
        if (!found) {
            dom_fail(j, "backup: --checkpoint-xml %s: disk %s is not one the backup reads",
                     run->opts->checkpoint_xml_path, cd->name);
            return false;
        }
    }
    return true;
}

/* <incremental> of --backup-xml: the base is the backup of this repository
 * whose checkpoint it names. */
static bool
job_xml_base(Run *run, DomJob *j)
{
    const char *want = run->job_xml->incremental;
    g_auto(GStrv) ids = vs_repo_list(run->repo, NULL);
    g_autofree char *why = NULL;

    for (guint i = 0; ids && ids[i]; i++) {
        g_autofree char *cp = vs_checkpoint_name(run->repo_tag, ids[i]);
        g_autoptr(VsManifest) m = NULL;

        if (g_strcmp0(cp, want) != 0)
            continue;
        m = vs_repo_load_manifest(run->repo, ids[i], NULL);
        if (!m || !manifest_domain_of(m, j))
            break;
        if (!vs_checkpoint_usable(j->dom, cp, &why)) {
            dom_fail(j, "backup: --backup-xml %s: <incremental>%s</incremental>: %s",
                     run->opts->backup_xml_path, want, why);
            return false;
        }
        j->incremental = g_steal_pointer(&cp);
        j->base = g_steal_pointer(&m);
        return true;
    }
    dom_fail(j, "backup: --backup-xml %s: <incremental>%s</incremental> is not the checkpoint of "
             "a backup of domain '%s' in this repository (virtsnap takes what did not change from "
             "that backup): name one of its checkpoints (virtsnap list --json), or leave "
             "<incremental> out and virtsnap picks the newest", run->opts->backup_xml_path, want,
             j->name);
    return false;
}

/* The qcow2 metadata of a push target besides its data: an L2 table per
 * 512 MiB of disk, refcount blocks, the header, with room to spare. */
#define PUSH_META_BYTES(capacity) ((capacity) / 4096 + 4 * 1024 * 1024)
#define MiB_OF(bytes) ((bytes) / (1024 * 1024) + 1)

/* The bytes free to us in DIR's file system (f_bavail), or in that of its
 * nearest ancestor that exists yet; UINT64_MAX when none answers. */
static uint64_t
dir_free_bytes(const char *dir)
{
    g_autofree char *p = g_strdup(dir);
    struct statvfs st;

    while (statvfs(p, &st) < 0) {
        char *slash = strrchr(p, '/');
        if (!slash || slash == p)
            return UINT64_MAX;
        *slash = '\0';
    }
    return (uint64_t)st.f_bavail * st.f_frsize;
}

/* The base backup's record of disk D, when D is read incrementally: the
 * unchanged chunks come from there. */
static const VsManifestDisk *
base_disk(DomJob *j, DiskJob *d)
{
    VsManifestDomain *md;

    if (!j->incremental || !d->bitmap || !j->base)
        return NULL;
    md = manifest_domain_of(j->base, j);
    return md ? vs_manifest_find_disk(md, d->target) : NULL;
}

/* Whether the push job writes only D's changes: a push target has no bytes
 * for the rest, so that needs the base's chunks on the same grid (the disk
 * not resized since; its size unknown counts as resized). */
static bool
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
    g_autofree char *where = g_path_get_dirname(j->scratch_dir);
    g_autoptr(VsCheckpointDef) since = j->incremental ? vs_checkpoint_with_sizes(j->dom, j->incremental)
                                                      : NULL;
    uint64_t need = 0, avail;

    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        const VsCheckpointDiskDef *changed = NULL;
        virDomainBlockInfo info;

        if (virDomainGetBlockInfo(j->dom, d->target, &info, 0) < 0) {
            g_autoptr(GError) err = NULL;
            vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "domblkinfo %s", d->target);
            dom_fail(j, "backup: domain '%s': cannot tell how much its push job would write: %s",
                     j->name, err->message);
            return;
        }
        d->capacity = info.capacity;
        j->push_need_full += info.allocation + PUSH_META_BYTES(info.capacity);
        for (guint k = 0; since && push_incremental(j, d) && k < since->disks->len; k++) {
            const VsCheckpointDiskDef *cd = since->disks->pdata[k];
            if (cd->checkpoint && cd->has_size && !g_strcmp0(cd->name, d->target))
                changed = cd;
        }
        need += (changed ? changed->size : info.allocation) + PUSH_META_BYTES(info.capacity);
    }
    avail = dir_free_bytes(j->scratch_dir);
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

/* --mode=begin (or auto, for a domain with a qcow2 disk): a pull-mode job
 * replaces the overlays. Disks whose image cannot hold a bitmap are read whole. */
/* The least room a pull job's scratch files get: what the guest overwrites
 * while the copy runs cannot be known beforehand, but a file system with less
 * than this fills at once, and QEMU then pauses the guest (or fails its
 * writes). 32 MiB and 1/256 of the disks' size. */
#define PULL_SCRATCH_FLOOR(capacity) (((uint64_t)32 << 20) + (capacity) / 256)

static void
pull_space_check(Run *run, DomJob *j)
{
    g_autofree char *where = g_path_get_dirname(j->scratch_dir);
    uint64_t capacity = 0, need, avail;

    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        virDomainBlockInfo info;

        if (virDomainGetBlockInfo(j->dom, d->target, &info, 0) < 0) {
            g_autoptr(GError) err = NULL;
            vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "domblkinfo %s", d->target);
            dom_fail(j, "backup: domain '%s': cannot tell the size of its disks: %s", j->name,
                     err->message);
            return;
        }
        d->capacity = info.capacity;
        capacity += info.capacity;
    }
    need = PULL_SCRATCH_FLOOR(capacity);
    avail = dir_free_bytes(j->scratch_dir);
    avail -= MIN(avail, run->pull_reserved);
    if (need > avail) {
        dom_fail(j, "backup: domain '%s': the scratch files of its backup job go to %s, which "
                 "has %" G_GUINT64_FORMAT " MiB free%s; virtsnap wants at least %" G_GUINT64_FORMAT
                 " MiB there (32 MiB and 1/256 of the disks' size), and more if the guest writes "
                 "much while the copy runs (out of room, QEMU pauses the guest): give --state-dir "
                 "a file system with room, or use --mode=overlay", j->name, where,
                 avail / (1024 * 1024), run->pull_reserved ? " besides this run's other jobs" : "",
                 MiB_OF(need));
        return;
    }
    run->pull_reserved += need;
}

static void
prepare_begin(Run *run, DomJob *j, const VsDomainDef *def)
{
    g_autoptr(GPtrArray) others = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *short_uuid = g_strndup(j->uuid, 8);
    guint bitmaps = 0;

    if ((run->job_xml || run->checkpoint_xml) && !j->active) {
        dom_fail(j, "backup: domain '%s' is not running: a backup job (--backup-xml, "
                 "--checkpoint-xml) needs a running domain; back it up without them", j->name);
        return;
    }
    if (run->opts->mode == VS_BACKUP_METHOD_OVERLAY || !j->active)
        return;
    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        d->bitmap = vs_disk_holds_bitmaps(d->format, d->path, NULL);
    }
    if (!apply_job_xml(run, j, def))
        return;
    for (guint i = 0; i < j->disks->len; i++)
        bitmaps += ((DiskJob *)j->disks->pdata[i])->bitmap;
    if (run->opts->mode == VS_BACKUP_METHOD_AUTO && bitmaps == 0)
        return;
    j->begin = true;
    j->push = run->push;
    j->checkpoint = vs_checkpoint_name(run->repo_tag, run->manifest->id);
    if (j->push && run->opts->push_dir) {
        g_autofree char *dir = g_canonicalize_filename(run->opts->push_dir, NULL);
        j->scratch_dir = g_strdup_printf("%s/%s-%s", dir, run->manifest->id, short_uuid);
    } else {
        j->scratch_dir = g_strdup_printf("%s/scratch/%s-%s", vs_state_dir(run->opts->state_dir),
                                         run->manifest->id, short_uuid);
    }
    /* Short: a unix socket path has 108 bytes. */
    if (!j->push)
        j->sock_dir = g_strdup_printf("%s/nbd-%s-%s", vs_run_dir(), run->manifest->id + 17,
                                      short_uuid);
    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        g_clear_pointer(&d->overlay, g_free);
        if (!d->scratch)
            d->scratch = g_strdup_printf("%s/%s.qcow2", j->scratch_dir, d->target);
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
    j->other_targets = (char **)g_ptr_array_free(g_steal_pointer(&others), FALSE);
    if (run->job_xml && run->job_xml->incremental)
        (void)job_xml_base(run, j);
    else if (bitmaps == 0)
        add_note(j, "full backup: no disk can hold a dirty bitmap (raw)");
    else if (run->opts->level != VS_BACKUP_LEVEL_FULL)
        choose_base(run, j);
    if (j->push && !j->error)
        push_space_check(run, j);
    else if (!j->error)
        pull_space_check(run, j);
}

static bool
is_our_overlay(const char *path)
{
    g_autofree char *base = path ? g_path_get_basename(path) : NULL;

    return base && strstr(base, ".virtsnap-") && g_str_has_suffix(base, ".qcow2");
}

/* The journal's leftovers on these domains were recovered before this: an
 * overlay of ours still in a live chain belongs to a run this state directory
 * does not know (another --state-dir), or one recover could not commit.
 * Another overlay on top of it would bury it. */
static const char *
overlay_in_chain(const VsDiscoveredDomain *disc, const char **target)
{
    for (guint i = 0; i < disc->disks->len; i++) {
        const VsDiscoveredDisk *d = disc->disks->pdata[i];
        const char *found = is_our_overlay(d->path) ? d->path : NULL;

        for (guint k = 0; !found && d->chain && k < d->chain->len; k++) {
            const VsChainElem *e = d->chain->pdata[k];
            if (is_our_overlay(e->path))
                found = e->path;
        }
        if (found) {
            *target = d->target;
            return found;
        }
    }
    return NULL;
}

static bool
foreign_overlays(DomJob *j, const VsDiscoveredDomain *disc)
{
    const char *target = NULL, *found = overlay_in_chain(disc, &target);

    if (found)
        dom_fail(j, "backup: domain '%s' disk %s runs on %s, an overlay of a virtsnap run that "
                 "this state directory's journal does not name (a run with another --state-dir, "
                 "or one `virtsnap recover` could not finish): run `virtsnap recover` with that "
                 "run's --state-dir, or commit it by hand (virsh blockcommit %s %s --active "
                 "--pivot), then back the domain up again", j->name, target, found, j->name,
                 target);
    return !found;
}

static DomJob *
prepare_domain(Run *run, virDomainPtr dom, const VsDiscoveredDomain *disc)
{
    DomJob *j = g_new0(DomJob, 1);
    g_autoptr(VsDomainDef) def = NULL;
    g_autoptr(GPtrArray) again = NULL;
    g_autoptr(GError) err = NULL;
    int state = VIR_DOMAIN_NOSTATE, reason;

    j->dom = dom;
    j->lock_fd = -1;
    j->name = g_strdup(virDomainGetName(dom));
    j->uuid = g_strdup(disc->uuid);
    j->disks = g_ptr_array_new_with_free_func((GDestroyNotify)disk_job_free);
    j->consistency = g_strdup("crash");
    virDomainGetState(dom, &state, &reason, 0);
    j->active = state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_PAUSED ||
                state == VIR_DOMAIN_BLOCKED || state == VIR_DOMAIN_PMSUSPENDED;

    /* Refused before a byte is copied, not at the commit. */
    if (vs_manifest_domain_name_problem(j->name)) {
        g_autofree char *shown = g_strescape(j->name ? j->name : "", NULL);

        dom_fail(j, "backup: domain \"%s\": its name %s, and a repository holds no such name "
                 "(see docs/repository-format.md, Names and paths); rename the domain to back it up",
                 shown, vs_manifest_domain_name_problem(j->name));
        return j;
    }
    if ((j->lock_fd = vs_domain_lock(run->opts->state_dir, j->uuid, j->name, "backup",
                                     run->opts->lock_wait, &err)) < 0) {
        dom_fail(j, "%s", err->message);
        return j;
    }
    /* Discovered before the lock: while this run waited for it (--lock-wait), or
     * just before it took it, the run that held it may have moved the disks (its
     * overlays committed away). */
    if (run->opts->lock_wait > 0 || overlay_in_chain(disc, &(const char *){ NULL })) {
        const char *const uuid[] = { j->uuid, NULL };
        VsDiscoverOptions dopts;

        vs_discover_options_init(&dopts);
        dopts.agent_timeout = run->opts->agent_timeout;
        again = vs_discover(vs_link_conn(run->link), uuid, &dopts, NULL, &err);
        if (!again || again->len != 1) {
            dom_fail(j, "domain '%s': cannot discover it again once locked%s%s", j->name,
                     err ? ": " : "", err ? err->message : "");
            return j;
        }
        disc = again->pdata[0];
        virDomainGetState(dom, &state, &reason, 0);
        j->active = state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_PAUSED ||
                    state == VIR_DOMAIN_BLOCKED || state == VIR_DOMAIN_PMSUSPENDED;
    }
    /* The definition restores a domain; a transient one has only its live XML. */
    j->xml = virDomainGetXMLDesc(dom, disc->persistent ? VIR_DOMAIN_XML_INACTIVE : 0);
    if (!j->xml || !(def = vs_domain_def_parse_string(disc->xml, j->name, &err))) {
        dom_fail(j, "domain '%s': cannot read its XML%s%s", j->name, err ? ": " : "",
                 err ? err->message : "");
        return j;
    }
    for (guint i = 0; i < disc->problems->len; i++) {
        if (!((VsProblem *)disc->problems->pdata[i])->disk) {
            dom_fail(j, "%s", ((VsProblem *)disc->problems->pdata[i])->error->message);
            return j;
        }
    }
    j->live_xml = g_strdup(disc->xml);
    if (!foreign_overlays(j, disc) || !prepare_disks(run, j, disc, def))
        return j;
    if (j->disks->len == 0) {
        dom_fail(j, "domain '%s' has no disk that can be backed up", j->name);
        return j;
    }
    prepare_begin(run, j, def);

    if (!j->active || run->opts->quiesce == VS_QUIESCE_OFF) {
        j->freeze = false;
        if (!j->active) {
            /* A shut-off domain's disks are at rest: as consistent as a freeze. */
            g_free(j->consistency);
            j->consistency = g_strdup("quiesced");
        }
    } else if (state == VIR_DOMAIN_PAUSED || state == VIR_DOMAIN_PMSUSPENDED) {
        if (run->opts->quiesce == VS_QUIESCE_REQUIRE)
            dom_fail(j, "domain '%s' is paused: its agent cannot freeze it (resume it, or use "
                     "--quiesce=try for a crash-consistent backup)", j->name);
        else
            j->note = g_strdup("paused: backed up crash-consistent");
    } else if (disc->agent == VS_AGENT_NONE) {
        if (run->opts->quiesce == VS_QUIESCE_REQUIRE)
            dom_fail(j, "domain '%s' has no qemu-guest-agent channel, so it cannot be frozen: "
                     "add <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
                     "</channel> and run qemu-ga in the guest, or use --quiesce=try", j->name);
        else
            j->note = g_strdup("no qemu-guest-agent channel: backed up crash-consistent");
    } else {
        j->freeze = true;
    }
    return j;
}

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

    if (!vs_journal_backup_job(run->journal, j->name, j->uuid, j->checkpoint, j->sock_dir,
                               j->scratch_dir, &err)) {
        dom_fail(j, "%s", err->message);
        return;
    }
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

/* The chunks the incrementals of this run will take over from their base
 * backups, looked up while the guests are frozen and the changes copied: the
 * commit checks that every chunk a manifest names is in the repository, and
 * with a cold cache those lookups (a directory block and an inode each, over
 * 256 directories) took 85 ms at the end of a 0.7 s incremental. Here they
 * overlap the rest; the commit's own check stays the authority. */
typedef struct {
    VsRepo *repo;
    GPtrArray *disks;   /* const VsManifestDisk* of the base backups */
} ChunkWarm;

static gpointer
chunk_warm_run(gpointer data)
{
    ChunkWarm *w = data;

    for (guint i = 0; i < w->disks->len; i++) {
        const VsManifestDisk *md = w->disks->pdata[i];

        for (guint k = 0; k < md->chunks->len; k++)
            (void)vs_repo_has_chunk(w->repo, &g_array_index(md->chunks, VsChunkRef, k).digest);
    }
    g_ptr_array_unref(w->disks);
    g_free(w);
    return NULL;
}

static GThread *
chunk_warm_start(Run *run, VsRepo *repo)
{
    ChunkWarm *w;
    GPtrArray *disks = g_ptr_array_new();

    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        VsManifestDomain *md = j->incremental && j->base ? manifest_domain_of(j->base, j) : NULL;

        for (guint k = 0; md && k < md->disks->len; k++)
            g_ptr_array_add(disks, md->disks->pdata[k]);
    }
    if (disks->len == 0) {
        g_ptr_array_unref(disks);
        return NULL;
    }
    w = g_new(ChunkWarm, 1);
    w->repo = repo;
    w->disks = disks;
    return g_thread_new("vs-chunk-warm", chunk_warm_run, w);
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
static void
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

static int64_t
freeze_phase(Run *run, GError **error)
{
    g_autoptr(GPtrArray) snap = g_ptr_array_new();
    g_autoptr(GPtrArray) frz = g_ptr_array_new();
    g_autoptr(GPtrArray) uuids = g_ptr_array_new();
    VsGuardian *guardian = NULL;
    int64_t first = -1, last = -1;

    /* Interrupted while the domains were prepared: nothing is frozen or
     * snapshotted, and nothing will be. */
    if (!vs_interrupt_check("backup", error)) {
        if (run->guardian)
            vs_guardian_stop(g_steal_pointer(&run->guardian), true);
        return -2;
    }

    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        if (j->error || !j->active || !(j->begin || any_overlay(j)))
            continue;
        g_ptr_array_add(snap, j);
        if (j->freeze) {
            g_ptr_array_add(frz, j);
            g_ptr_array_add(uuids, j->uuid);
        }
    }
    /* The guardian started while the domains were prepared serves if there
     * is anything to freeze and it guards every domain to be frozen (those it
     * guards in vain it thaws in vain, only if we die); otherwise it goes, and
     * one for exactly these is started. */
    guardian = g_steal_pointer(&run->guardian);
    {
        bool serves = guardian && frz->len > 0;

        for (guint i = 0; serves && i < frz->len; i++)
            serves = vs_guardian_covers(guardian, ((DomJob *)frz->pdata[i])->uuid);
        if (guardian && !serves) {
            vs_guardian_stop(guardian, true);
            guardian = NULL;
        }
    }
    if (snap->len == 0)
        return -1;
    if (frz->len > 0 && !guardian) {
        g_ptr_array_add(uuids, NULL);
        guardian = spawn_guardian(run, uuids, error);
        if (!guardian)
            return -2;
    }

    /* Journal every intent first: a crash from here on leaves enough to undo. */
    for (guint i = 0; i < snap->len; i++) {
        DomJob *j = snap->pdata[i];
        if (j->freeze)
            journal(run, j, vs_journal_freeze);
        if (j->begin)
            prepare_job_dirs(run, j);
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *d = j->disks->pdata[k];
            g_autoptr(GError) jerr = NULL;
            if (d->overlay &&
                !vs_journal_overlay(run->journal, j->name, j->uuid, d->target, d->overlay,
                                    d->path ? d->path : d->url, d->format, &jerr))
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

    /* Snapshot only those not failed. */
    {
        g_autoptr(GPtrArray) go = g_ptr_array_new();
        for (guint i = 0; i < snap->len; i++)
            if (!((DomJob *)snap->pdata[i])->error)
                g_ptr_array_add(go, snap->pdata[i]);
        for_each_domain(run, go, step_snapshot);
    }

    /* Thaw every domain whose freeze was attempted: a freeze that timed out may
     * have frozen some file systems. */
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

    for (guint i = 0; i < snap->len; i++) {
        DomJob *j = snap->pdata[i];
        if (j->freeze && j->freeze_end > last)
            last = j->freeze_end;
        /* A freeze not known to be over stays in the journal: recover thaws. */
        if (j->freeze && !j->thaw_failed)
            journal(run, j, vs_journal_thawed);
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
    return first >= 0 && last >= first ? last - first : -1;
}

/* ------------------------------------------------------------------------- */
/* Copy                                                                       */

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
static VsSource *
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

/* Why disk D of a begin job is read whole when it has no base to count from. */
static const char *
read_whole(const DiskJob *d)
{
    return d->bitmap ? "full"
                     : "full: the image cannot hold a dirty bitmap (raw); unchanged chunks cost "
                       "only their dedup";
}

/* The NBD export of disk D of J's pull-mode job: with the job's dirty bitmap
 * and the base's chunk list when the disk is read incrementally. */
static VsSource *
open_job_export(DomJob *j, DiskJob *d, VsCopyOptions *copts, GError **error)
{
    const char *sock_override = g_getenv("VIRTSNAP_FAULT_NBD_SOCKET");  /* tests: unreachable */
    g_autofree char *sock = sock_override ? g_strdup(sock_override)
                                          : g_build_filename(j->sock_dir, "nbd.sock", NULL);
    g_autofree char *uri = g_strdup_printf("nbd+unix:///%s?socket=%s", d->target, sock);
    g_autofree char *bitmap = g_strdup_printf("qemu:dirty-bitmap:backup-%s", d->target);
    const VsManifestDisk *prev = NULL;
    VsSource *src;

    /* Four connections, each with one request in flight: QEMU serves each
     * request in turn (fleecing node, image file, socket), so that with two the
     * server sat idle between them. Measured (incrementals of a 5% change, 2
     * CPUs, page cache dropped, runs interleaved): the copy took 0.82-2.0 s with
     * four against 1.2-3.7 s with two, faster in each of 5 rounds; a full
     * backup was no slower (13.4-16.8 s against 15.9-18.5 s). */
    copts->readers = 4;
    prev = base_disk(j, d);
    if (!prev) {
        d->read = g_strdup(read_whole(d));
        return vs_source_open_nbd_uri(uri, error);
    }
    if (!(src = vs_source_open_nbd_bitmap(uri, bitmap, error)))
        return NULL;
    if (vs_source_size(src) != prev->virtual_size) {
        /* Resized since the base: another chunk grid, nothing to share. */
        d->read = g_strdup_printf("full: resized since backup %s", j->base->id);
        return src;
    }
    copts->previous = prev;
    d->read = g_strdup_printf("changed since %s", j->base->id);
    return src;
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

/* Is DOM stopped, or stopping? QEMU tears its NBD server down before libvirt
 * reports the domain inactive, so a reader may see the end first. */
static bool
domain_went_away(virDomainPtr dom)
{
    for (int i = 0; i < 50; i++) {
        int state = VIR_DOMAIN_NOSTATE, reason;
        if (virDomainIsActive(dom) == 0)
            return true;
        if (virDomainGetState(dom, &state, &reason, 0) == 0 && state == VIR_DOMAIN_SHUTDOWN)
            return true;
        g_usleep(100 * 1000);
    }
    return false;
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
    VsManifestDisk *m = g_new0(VsManifestDisk, 1);
    bool pull = t->j->begin && !t->j->push;

    (void)user;
    m->target = g_strdup(d->target);
    m->format = g_strdup(d->format);
    m->source = g_strdup(d->path ? d->path : d->url);
    m->chain = g_ptr_array_ref(d->chain);
    m->chunks = g_array_new(FALSE, FALSE, sizeof(VsChunkRef));

    vs_copy_options_init(&copts);
    /* A pull-mode job's disks are read from its NBD server; the others as
     * --data-path says (open_reader). */
    if (t->j->push) {
        src = open_push_target(t->j, d, &copts, &err);
        d->data_path = "push";
    } else if (pull) {
        src = open_job_export(t->j, d, &copts, &err);
        d->data_path = "nbd";
    } else {
        src = open_reader(t->run, t->j, d, &err);
    }
    if (src) {
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
    /* A pull-mode job dies with its domain: say that rather than what the
     * reader saw of it (a refused connection, a dropped read). A push job had
     * ended before its files were read. */
    if (pull && domain_went_away(t->j->dom))
        d->error = g_strdup_printf("copy: domain '%s' stopped during its backup (the backup job "
                                   "ended with it) while disk %s was read: no backup of it was "
                                   "written; back it up again once it runs (%s)", t->j->name,
                                   d->target, err->message);
    else if (pull && !vs_backup_job_active(t->j->dom))
        d->error = g_strdup_printf("copy: the backup job of domain '%s' ended under virtsnap (was "
                                   "it aborted?) while disk %s was read: no backup of it was "
                                   "written (%s)", t->j->name, d->target, err->message);
    else
        d->error = g_strdup_printf("copy: domain '%s' disk %s: %s", t->j->name, d->target,
                                   err->message);
    manifest_disk_free(m);
}

/* A CopyTask of a whole push job (its D is NULL). */
static void
push_progress(uint64_t done, uint64_t total, void *opaque)
{
    CopyTask *t = opaque;
    progress(t->run, VS_BACKUP_PHASE_COPY, t->j->name, "push job", done, total);
}

/* A push job has written its files once it has ended by itself; jobs of
 * several domains run at once, so waiting for them in turn costs nothing. */
static bool
push_job_wait(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;
    CopyTask w = { run, j, NULL };

    if (!j->job_started)
        return true;
    vs_fault_point("push-wait");
    for (int attempt = 1; attempt < 4; attempt++) {
        g_clear_error(&err);
        if (dom_revive(run, j, "backup-push", &err) &&
            vs_push_job_wait(j->dom, j->name, push_progress, &w, &err)) {
            j->job_started = false;
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
        j->job_started = false;
    dom_fail(j, "%s: no backup of it was written", err->message);
    return false;
}

static void
copy_phase(Run *run)
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
        if (j->error || (j->push && !push_job_wait(run, j)))
            continue;
        for (guint k = 0; k < j->disks->len; k++) {
            CopyTask *t = g_new0(CopyTask, 1);
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
                dom_fail(j, "%s", d->error);
        }
    }
}

/* ------------------------------------------------------------------------- */
/* Commit back                                                                */

/* A commit that does not converge while the guest writes converges as soon as
 * the guest cannot write: freeze it, commit and pivot within --max-freeze,
 * thaw. The freeze is journaled and guarded like the snapshot's (a guardian
 * thaws if we die or hang), and the commit runs at full speed. False leaves the
 * guest on its overlay, thawed, as the first attempt did. */
static bool
commit_frozen(Run *run, DomJob *j, DiskJob *d, int64_t *held_ms, GError **error)
{
    const char *uuids[] = { j->uuid, NULL };
    const VsBackupOptions *o = run->opts;
    g_autoptr(GError) thaw_err = NULL;
    VsGuardian *guardian;
    int64_t t0;
    bool ok = false, thawed;

    *held_ms = -1;
    guardian = vs_guardian_start(o->guardian_exe, o->uri, o->state_dir, run->manifest->id,
                                 o->max_freeze_ms, uuids, o->agent_timeout, error);
    if (!guardian)
        return false;
    if (!journal(run, j, vs_journal_freeze)) {
        vs_guardian_stop(guardian, true);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "commit: domain '%s': cannot journal the freeze",
                    j->name);
        return false;
    }
    t0 = vs_now_ms();
    if (vs_agent_freeze(j->dom, o->agent_timeout, error)) {
        /* Leave time for the pivot and the thaw inside the bound. */
        int budget = (int)(o->max_freeze_ms - (vs_now_ms() - t0)) - 1000;
        if (budget <= 0)
            g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                        "commit: domain '%s' disk %s: no time left in --max-freeze for a commit",
                        j->name, d->target);
        else
            ok = vs_blockcommit_pivot_limited(vs_link_conn(run->link), j->dom, d->target, budget,
                                              0, error);
    }
    thawed = vs_agent_thaw(j->dom, o->agent_timeout, &thaw_err);
    *held_ms = vs_now_ms() - t0;
    vs_guardian_stop(guardian, thawed);
    if (thawed)
        journal(run, j, vs_journal_thawed);
    else
        dom_fail(j, "%s (the guardian tries again at once)", thaw_err->message);
    return ok;
}

/* D's overlay stays where it is, for recover: the domain fails with WHY and
 * the file's name, and the journal is kept. */
static bool
keep_overlay(DomJob *j, DiskJob *d, bool on_it, const char *fmt, ...) G_GNUC_PRINTF(4, 5);

static bool
keep_overlay(DomJob *j, DiskJob *d, bool on_it, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *why = NULL;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    msg = on_it ? g_strdup_printf("%s; the domain runs on overlay %s until "
                                                   "`virtsnap recover` commits it", why, d->overlay)
                                 : g_strdup_printf("%s; overlay %s is kept for `virtsnap recover`",
                                                   why, d->overlay);

    j->left = true;
    /* Never hidden behind an earlier error: a guest left on an overlay matters. */
    if (j->error)
        add_note(j, "%s", msg);
    dom_fail(j, "%s", msg);
    return false;
}

/* The overlay is off the disk's chain: it goes once libvirt, on a live
 * connection, confirms that nothing of the domain names it any more. */
static bool
drop_overlay(Run *run, DomJob *j, DiskJob *d)
{
    g_autoptr(GError) err = NULL;
    int use = vs_domain_uses_file(vs_link_conn(run->link), j->uuid, d->overlay, &err);

    if (use < 0)
        return keep_overlay(j, d, false, "%s", err->message);
    if (use > 0)
        return keep_overlay(j, d, false, "commit: domain '%s' still names the overlay of disk %s "
                            "after its commit", j->name, d->target);
    if (unlink(d->overlay) < 0 && errno != ENOENT) {
        dom_fail(j, "commit: cannot remove overlay %s: %s", d->overlay, g_strerror(errno));
        return false;
    }
    if (!vs_journal_committed(run->journal, j->name, j->uuid, d->target, &err))
        dom_fail(j, "%s", err->message);
    progress(run, VS_BACKUP_PHASE_COMMIT, j->name, d->target, 1, 1);
    vs_fault_point("after-commit");
    return true;
}

/* Commits D's overlay and pivots, once the guest keeps writing faster than
 * the commit copies with the guest frozen (commit_frozen). */
static bool
commit_pivot(Run *run, DomJob *j, DiskJob *d, GError **error)
{
    g_autoptr(GError) err = NULL, ferr = NULL;
    int64_t held = -1;

    if (vs_blockcommit_pivot_limited(vs_link_conn(run->link), j->dom, d->target,
                                     run->opts->commit_timeout * 1000, run->opts->commit_bandwidth,
                                     &err))
        return true;
    if (!g_error_matches(err, VS_ERROR, VS_ERROR_TIMEOUT) || !j->frozen ||
        run->opts->quiesce == VS_QUIESCE_OFF) {
        g_propagate_error(error, g_steal_pointer(&err));
        return false;
    }
    if (commit_frozen(run, j, d, &held, &ferr)) {
        add_note(j, "%s; finished with the guest frozen for %" G_GINT64_FORMAT " ms", err->message,
                 held);
        return true;
    }
    g_set_error(error, VS_ERROR, ferr->code, "%s; then, with the guest frozen: %s", err->message,
                ferr->message);
    return false;
}

/* D's overlay back into its base. Each try starts from what libvirt says now,
 * so a try cut short by a closed connection resumes on a new one (a commit it
 * left running is cancelled and begun again; meanwhile the guest stays on the
 * overlay, which holds everything). A domain that stopped, or anything not
 * known for sure, keeps the overlay for recover. */
static bool
commit_disk(Run *run, DomJob *j, DiskJob *d)
{
    for (int attempt = 1;; attempt++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(GError) jerr = NULL;
        g_autofree char *cur = NULL;
        bool retry = attempt < 4;

        if (!dom_revive(run, j, "commit", &err))
            return keep_overlay(j, d, false, "%s", err->message);
        /* -1 on a live connection: a transient domain gone with its QEMU. */
        if (virDomainIsActive(j->dom) != 1 && vs_link_alive(run->link))
            return keep_overlay(j, d, false, "commit: domain '%s' stopped during its backup (its "
                                "QEMU ended) with what it wrote since the snapshot in its overlay",
                                j->name);
        if (!vs_link_alive(run->link) && retry)
            continue;
        cur = vs_domain_disk_source(j->dom, d->target, false, &err);
        if (!cur) {
            if (retry && !vs_link_alive(run->link))
                continue;
            return keep_overlay(j, d, false, "%s", err->message);
        }
        if (strcmp(cur, d->overlay) != 0) {
            /* Committed by a try cut short, or never applied. */
            if (d->path && attempt > 1 && strcmp(cur, d->path) != 0)
                return keep_overlay(j, d, false, "commit: domain '%s' disk %s is on neither "
                                    "the overlay nor its original (%s)", j->name, d->target, cur);
            return drop_overlay(run, j, d);
        }
        progress(run, VS_BACKUP_PHASE_COMMIT, j->name, d->target, 0, 1);
        if (!vs_journal_commit(run->journal, j->name, j->uuid, d->target, d->overlay, &jerr))
            dom_fail(j, "%s", jerr->message);
        vs_fault_point("before-commit");
        if (!commit_pivot(run, j, d, &err)) {
            if (retry && !vs_link_alive(run->link))
                continue;
            return keep_overlay(j, d, virDomainIsActive(j->dom) == 1, "%s", err->message);
        }
        g_free(cur);
        cur = vs_domain_disk_source(j->dom, d->target, false, &err);
        if (!cur && retry && !vs_link_alive(run->link))
            continue;
        if (g_strcmp0(cur, d->path ? d->path : cur) != 0) {
            dom_fail(j, "commit: domain '%s' disk %s: after the pivot the disk is %s, not %s",
                     j->name, d->target, cur ? cur : "(none)", d->path);
            j->left = true;
            return false;
        }
        return drop_overlay(run, j, d);
    }
}

/* A guest QEMU paused for a failed write (the overlay's or scratch file's
 * file system full) goes on once virtsnap's file is out of its way: its
 * write is retried then, so nothing is lost. */
static void
resume_paused(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;
    bool resumed = false;

    if (!j->active)
        return;
    if (!dom_revive(run, j, "resume", &err) || !vs_domain_resume_paused(j->dom, &resumed, &err))
        dom_fail(j, "%s", err->message);
    else if (resumed)
        add_note(j, "the guest paused for an I/O error during the backup (a file system of "
                 "virtsnap's full?) and was resumed once virtsnap's file was out of its way");
}

static bool
commit_domain(Run *run, DomJob *j)
{
    bool ok = true;

    for (guint k = 0; k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];

        if (d->overlay && !commit_disk(run, j, d))
            ok = false;
    }
    if (ok)
        resume_paused(run, j);
    return ok;
}

/* ------------------------------------------------------------------------- */
/* End of a pull-mode job                                                     */

static void
remove_job_dirs(DomJob *j)
{
    for (guint k = 0; k < j->disks->len; k++) {
        DiskJob *d = j->disks->pdata[k];
        if (d->scratch)
            unlink(d->scratch);
    }
    if (j->scratch_dir)
        rmdir(j->scratch_dir);
    if (j->sock_dir) {
        g_autofree char *sock = g_build_filename(j->sock_dir, "nbd.sock", NULL);
        unlink(sock);
        rmdir(j->sock_dir);
    }
}

static void
job_failed(DomJob *j, const GError *err)
{
    if (j->error)
        add_note(j, "%s; `virtsnap recover` ends it", err->message);
    dom_fail(j, "%s; `virtsnap recover` ends it", err->message);
}

/* The copy is over (or failed): the job is aborted, which is how a pull job
 * ends and what releases the scratch files and the NBD server. An abort cut
 * short by a closed connection is tried again on a new one. */
static bool
abort_job(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;

    if (!j->job_started)
        return true;
    vs_fault_point("before-commit");
    for (int attempt = 1; attempt < 4; attempt++) {
        g_clear_error(&err);
        if (dom_revive(run, j, "backup-end", &err) && vs_backup_job_abort(j->dom, j->name, &err)) {
            j->job_aborted = true;
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
static bool
finish_job(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;

    if (j->job_started) {
        bool gone = false;

        if (!j->job_aborted)
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
        j->job_started = false;
    } else if (j->left) {
        /* A begin whose outcome is unknown: its files may be the job's. */
        return false;
    }
    remove_job_dirs(j);
    journal(run, j, vs_journal_job_ended);
    resume_paused(run, j);
    return true;
}

/* A thread: the teardown of the aborted jobs (tens of ms, more on a loaded
 * host) overlaps the commit of the manifest, which does not depend on it.
 * Touches only the jobs' error, note and files, and the journal, which the
 * main thread leaves alone until it joins. Non-NULL when every job ended. */
static gpointer
finish_jobs(gpointer data)
{
    Run *run = data;
    bool ok = true;

    for (guint i = 0; i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        if (j->begin)
            ok = finish_job(run, j) && ok;
    }
    return ok ? GINT_TO_POINTER(1) : NULL;
}

/* After the manifest: a backup that is in it keeps its checkpoint and this
 * repository's older ones go (their bitmaps merge into the chain), except the
 * chain's full backup's, which a differential counts from; a full backup starts
 * a new chain. A backup that is not in it loses the checkpoint it created, so
 * the next incremental counts from the base it had. Never touches another
 * repository's checkpoints. */
static void
settle_checkpoints(Run *run, DomJob *j, VsBackupResult *result)
{
    VsBackupDomainResult *dr = NULL;
    g_autoptr(GPtrArray) failed = g_ptr_array_new_with_free_func(g_free);
    bool kept;

    if (!j->begin || j->job_started)
        return;
    for (guint i = 0; i < result->domains->len; i++)
        if (!g_strcmp0(((VsBackupDomainResult *)result->domains->pdata[i])->name, j->name))
            dr = result->domains->pdata[i];
    kept = result->id && dr && dr->ok;
    if (kept) {
        g_autoptr(GError) err = NULL;
        g_autofree char *full = !j->incremental ? NULL
                                : j->diff ? g_strdup(j->incremental)
                                : vs_checkpoint_chain_full(j->dom, run->repo_tag);
        vs_checkpoints_prune(j->dom, run->repo_tag, j->checkpoint, full, failed);
        if (strcmp(result->id, run->manifest->id) != 0)
            g_ptr_array_add(failed, g_strdup(j->checkpoint));   /* id redrawn: a stranger now */
        /* After the prune: the checkpoint has no parent left to name. */
        else if (!vs_checkpoint_save(j->dom, j->checkpoint, run->repo, run->repo_tag,
                                     j->uuid, &err)) {
            g_autofree char *before = g_steal_pointer(&dr->note);
            dr->note = g_strdup_printf("%s%s%s (a domain defined anew will need a full backup)",
                                       before ? before : "", before ? "; " : "", err->message);
        }
    } else if (!vs_checkpoint_delete(j->dom, j->checkpoint)) {
        g_ptr_array_add(failed, g_strdup(j->checkpoint));
    }
    if (failed->len && dr) {
        g_ptr_array_add(failed, NULL);
        g_autofree char *names = g_strjoinv(", ", (char **)failed->pdata);
        g_autofree char *before = g_steal_pointer(&dr->note);
        dr->note = g_strdup_printf("%s%scheckpoints left to delete at the next backup: %s",
                                   before ? before : "", before ? "; " : "", names);
    }
}

/* ------------------------------------------------------------------------- */

static VsBackupResult *
make_result(Run *run, int64_t group_freeze_ms)
{
    VsBackupResult *r = g_new0(VsBackupResult, 1);

    r->group_freeze_ms = group_freeze_ms;
    r->domains = g_ptr_array_new_with_free_func((GDestroyNotify)domain_result_free);
    r->notes = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; run->doms && i < run->doms->len; i++) {
        DomJob *j = run->doms->pdata[i];
        VsBackupDomainResult *d = g_new0(VsBackupDomainResult, 1);

        d->name = g_strdup(j->name);
        d->ok = j->error == NULL;
        /* A domain with no backup has no consistency to speak of. */
        d->consistency = g_strdup(j->error ? "none" : j->consistency);
        d->freeze_ms = j->frozen ? j->freeze_end - j->freeze_start : -1;
        d->frozen_at = j->frozen ? j->frozen_at : -1;
        d->thawed_at = j->frozen ? j->thawed_at : -1;
        d->note = g_strdup(j->note);
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *dj = j->disks->pdata[k];
            g_autofree char *before = NULL;
            if (!dj->direct_failed)
                continue;
            before = g_steal_pointer(&d->note);
            d->note = g_strdup_printf("%s%sdisk %s read through the host: the direct path failed: %s",
                                      before ? before : "", before ? "; " : "", dj->target,
                                      dj->direct_failed);
        }
        d->error = g_strdup(j->error);
        d->mode = g_strdup(j->begin ? "begin" : j->active ? "overlay" : "direct");
        d->level = g_strdup(!j->incremental ? "full" : j->diff ? "diff" : "inc");
        d->base = j->incremental && j->base ? g_strdup(j->base->id) : NULL;
        d->checkpoint = j->begin ? g_strdup(j->checkpoint) : NULL;
        d->backup_xml = g_strdup(j->backup_xml);
        d->checkpoint_xml = g_strdup(j->checkpoint_xml);
        d->disks = g_ptr_array_new_with_free_func((GDestroyNotify)disk_result_free);
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *dj = j->disks->pdata[k];
            VsBackupDiskResult *dr = g_new0(VsBackupDiskResult, 1);
            dr->target = g_strdup(dj->target);
            dr->bytes_read = dj->bytes_read;
            dr->bytes_stored = dj->bytes_stored;
            dr->data_path = g_strdup(dj->data_path);
            dr->read = g_strdup(dj->read ? dj->read : "full");
            g_ptr_array_add(d->disks, dr);
        }
        g_ptr_array_add(r->domains, d);
    }
    return r;
}

static VsBackupDomainResult *
missing_domain(const char *name, const char *error)
{
    VsBackupDomainResult *d = g_new0(VsBackupDomainResult, 1);
    d->name = g_strdup(name);
    d->consistency = g_strdup("crash");
    d->freeze_ms = d->frozen_at = d->thawed_at = -1;
    d->error = g_strdup(error);
    d->disks = g_ptr_array_new_with_free_func((GDestroyNotify)disk_result_free);
    return d;
}

bool
vs_backup_check_options(const char *const *names, bool all, const VsBackupOptions *opts,
                        GError **error)
{
    bool named = names && names[0];

    if (!opts->repo_path || !*opts->repo_path) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: no repository: give --repo DIR or set VIRTSNAP_REPO");
        return false;
    }
    if (all == named) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, all ?
                    "backup: --all and domain names exclude each other" :
                    "backup: name the domains to back up, or give --all");
        return false;
    }
    for (size_t i = 0; named && names[i]; i++) {
        if (!*names[i]) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: a domain name given is empty");
            return false;
        }
    }
    if ((opts->push || opts->push_dir) && opts->mode == VS_BACKUP_METHOD_OVERLAY) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: --push and --push-dir choose how a backup job hands over the disks: "
                    "they go with --mode=begin or --mode=auto");
        return false;
    }
    if ((opts->backup_xml_path || opts->checkpoint_xml_path) && (all || names[1])) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: --backup-xml and --checkpoint-xml describe one domain's job: name "
                    "one domain");
        return false;
    }
    return true;
}

VsBackupResult *
vs_backup_run(virConnectPtr conn, const char *const *names, bool all,
              const VsBackupOptions *opts, GError **error)
{
    g_autoptr(VsLink) link = vs_link_new(conn, opts->uri);
    Run run = { .conn = conn, .link = link, .opts = opts };
    g_autoptr(GPtrArray) discovered = NULL;
    g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) not_found = g_ptr_array_new();    /* VsProblem*, of problems */
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) repo = NULL;
    g_autoptr(VsManifest) manifest = NULL;
    VsBackupResult *result = NULL;
    VsDiscoverOptions dopts;
    int64_t group_ms;
    bool all_clean = true, begin_jobs = false, committed = false;
    GThread *job_waiter = NULL, *warm;
    g_autoptr(VsIscsiAuth) auth = NULL;
    g_autofree char *repo_tag = NULL;
    g_autoptr(VsBackupDef) job_xml = NULL;
    g_autoptr(VsCheckpointDef) checkpoint_xml = NULL;
    /* Phase boundaries (monotonic us), reported so that a run's time can be
     * accounted for without a profiler. */
    int64_t t_start = g_get_monotonic_time(), t_frozen, t_copied, t_ended, t_manifest;

    if (!vs_backup_check_options(names, all, opts, error))
        return NULL;
    if (opts->overlay_dir && !g_file_test(opts->overlay_dir, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: --overlay-dir %s: no such directory (create it, or leave the option "
                    "out to put each overlay beside its disk)", opts->overlay_dir);
        return NULL;
    }
    if (opts->push_dir && !g_file_test(opts->push_dir, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: --push-dir %s: no such directory (create it, or leave the option "
                    "out to have the push job write into the state directory)", opts->push_dir);
        return NULL;
    }
    run.push = opts->push || opts->push_dir;
    if (!(repo = vs_repo_open(opts->repo_path, opts->init_repo, true, 0, error))) {
        /* The repository's error ends with how to create one; --init does too. */
        if (error && *error && (*error)->code == VS_ERROR_NOT_FOUND && !opts->init_repo) {
            g_autoptr(GError) e = g_steal_pointer(error);
            g_set_error(error, e->domain, e->code, "backup: %s (or give backup --init)", e->message);
        } else {
            vs_error_prefix(error, "backup");
        }
        return NULL;
    }
    if (!vs_repo_lock_shared(repo, error))
        return NULL;
    vs_repo_set_compression(repo, !opts->no_compress);
    if (opts->iscsi_auth_file && !(auth = vs_iscsi_auth_load(opts->iscsi_auth_file, error))) {
        vs_error_prefix(error, "backup: --iscsi-auth");
        return NULL;
    }
    run.iscsi_auth = auth;
    if (!load_job_xml(&run, error))
        return NULL;
    job_xml = run.job_xml;              /* freed with this frame */
    checkpoint_xml = run.checkpoint_xml;
    run.repo = repo;
    run.repo_tag = repo_tag = vs_repo_tag(repo);
    g_mutex_init(&run.progress_lock);

    /* Discover first: it resolves every disk, and says which names do not exist. */
    vs_discover_options_init(&dopts);
    dopts.agent_timeout = opts->agent_timeout;
    discovered = vs_discover(conn, all ? NULL : names, &dopts, &problems, error);
    if (!discovered)
        return NULL;
    for (guint i = 0; problems && i < problems->len; i++)
        if (!((VsProblem *)problems->pdata[i])->disk &&
            g_error_matches(((VsProblem *)problems->pdata[i])->error, VS_ERROR, VS_ERROR_NOT_FOUND))
            g_ptr_array_add(not_found, problems->pdata[i]);
    if (discovered->len == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "backup: %s",
                    not_found->len ? ((VsProblem *)not_found->pdata[0])->error->message
                                   : "no domains to back up");
        return NULL;
    }

    /* Leftovers of interrupted runs on these domains come first. */
    {
        g_autoptr(GPtrArray) uuids = g_ptr_array_new();
        g_autoptr(GError) rerr = NULL;
        for (guint i = 0; i < discovered->len; i++)
            g_ptr_array_add(uuids, ((VsDiscoveredDomain *)discovered->pdata[i])->uuid);
        g_ptr_array_add(uuids, NULL);
        if (!vs_recover(conn, opts->state_dir, (const char *const *)uuids->pdata, notes, &rerr))
            g_ptr_array_add(notes, g_strdup_printf("recover: %s", rerr->message));
    }

    manifest = vs_manifest_new();
    run.manifest = manifest;
    {
        g_autofree char *ovl = g_build_filename(vs_state_dir(opts->state_dir), "overlays", NULL);
        /* QEMU (as libvirt-qemu) must reach overlays kept here. */
        if (!vs_make_dir(vs_state_dir(opts->state_dir), 0755, error) ||
            !vs_make_dir(ovl, 0755, error))
            return NULL;
    }
    if (!(run.journal = vs_journal_create(opts->state_dir, manifest->id, error)))
        return NULL;
    if (!vs_journal_begin_backup(run.journal, manifest->id, vs_repo_path(repo), (int)getpid(), error)) {
        vs_journal_finish(run.journal);
        return NULL;
    }

    progress(&run, VS_BACKUP_PHASE_PREPARE, NULL, NULL, 0, discovered->len);
    guardian_early(&run, discovered);
    run.doms = g_ptr_array_new_with_free_func((GDestroyNotify)dom_job_free);
    for (guint i = 0; i < discovered->len; i++) {
        VsDiscoveredDomain *disc = discovered->pdata[i];
        virDomainPtr dom = virDomainLookupByUUIDString(conn, disc->uuid);
        if (!dom) {
            g_ptr_array_add(not_found, g_strdup_printf("backup: domain '%s' disappeared", disc->name));
            continue;
        }
        g_ptr_array_add(run.doms, prepare_domain(&run, dom, disc));
    }

    warm = chunk_warm_start(&run, repo);
    t_frozen = g_get_monotonic_time();
    group_ms = freeze_phase(&run, &err);
    if (group_ms == -2) {
        /* Nothing was frozen or snapshotted: the guardian could not be armed. */
        for (guint i = 0; i < run.doms->len; i++) {
            DomJob *j = run.doms->pdata[i];
            if (j->active)
                dom_fail(j, "%s", err->message);
        }
        group_ms = -1;
    }
    t_copied = g_get_monotonic_time();
    copy_phase(&run);
    t_ended = g_get_monotonic_time();
    for (guint i = 0; i < run.doms->len; i++) {
        DomJob *j = run.doms->pdata[i];
        if (j->begin) {
            begin_jobs = true;
            if (!abort_job(&run, j))
                all_clean = false;
        } else if (j->snapshotted && !commit_domain(&run, j)) {
            all_clean = false;
        }
    }
    if (begin_jobs)
        job_waiter = g_thread_new("virtsnap-jobs", finish_jobs, &run);

    t_manifest = g_get_monotonic_time();
    /* The manifest holds every domain whose data was copied in full. */
    for (guint i = 0; i < run.doms->len; i++) {
        DomJob *j = run.doms->pdata[i];
        bool copied = j->disks->len > 0;
        VsManifestDomain *md;

        for (guint k = 0; k < j->disks->len; k++)
            copied = copied && ((DiskJob *)j->disks->pdata[k])->mdisk;
        if (!copied)
            continue;
        md = vs_manifest_add_domain(manifest, j->name);
        md->uuid = g_strdup(j->uuid);
        md->consistency = g_strdup(j->consistency);
        md->freeze_ms = j->frozen ? j->freeze_end - j->freeze_start : -1;
        md->xml = g_strdup(j->xml);
        for (guint k = 0; k < j->disks->len; k++) {
            DiskJob *d = j->disks->pdata[k];
            g_ptr_array_add(md->disks, g_steal_pointer(&d->mdisk));
        }
    }
    manifest->group_freeze_ms = group_ms;
    if (warm)
        g_thread_join(warm);
    if (manifest->domains->len > 0) {
        vs_fault_point("before-manifest");
        /* Interrupted: the guests are back on their disks by now, and no
         * backup is written; its chunks go at the next gc. */
        g_clear_error(&err);
        if (vs_interrupted())
            g_set_error(&err, VS_ERROR, VS_ERROR_INTERRUPTED, "backup: interrupted by %s: no backup "
                        "was written", vs_signal_name(vs_interrupted()));
        else
            committed = vs_repo_commit_manifest(repo, manifest, &err);
    }
    if (job_waiter && !g_thread_join(job_waiter))
        all_clean = false;
    result = make_result(&run, group_ms);
    if (manifest->domains->len > 0) {
        if (committed) {
            result->id = g_strdup(manifest->id);
        } else {
            for (guint k = 0; k < result->domains->len; k++) {
                VsBackupDomainResult *dr = result->domains->pdata[k];
                if (!dr->error)
                    dr->error = g_strdup(err->message);
                dr->ok = false;
                g_free(dr->consistency);
                dr->consistency = g_strdup("none");
            }
        }
    }
    for (guint i = 0; i < not_found->len; i++) {
        const VsProblem *p = not_found->pdata[i];
        g_ptr_array_add(result->domains, missing_domain(p->domain, p->error->message));
    }
    for (guint i = 0; i < run.doms->len; i++)
        settle_checkpoints(&run, run.doms->pdata[i], result);
    result->prepare_ms = (t_frozen - t_start) / 1000;
    result->freeze_phase_ms = (t_copied - t_frozen) / 1000;
    result->copy_ms = (t_ended - t_copied) / 1000;
    result->end_ms = (t_manifest - t_ended) / 1000;
    result->manifest_ms = (g_get_monotonic_time() - t_manifest) / 1000;
    g_ptr_array_extend_and_steal(result->notes, g_steal_pointer(&notes));
    notes = g_ptr_array_new_with_free_func(g_free);

    /* A journal with overlays still applied, or anything else left, stays for recover. */
    for (guint i = 0; i < run.doms->len; i++)
        all_clean = all_clean && !((DomJob *)run.doms->pdata[i])->left;
    if (all_clean) {
        vs_journal_finish(run.journal);
    } else {
        vs_journal_incomplete(run.journal, NULL);
        vs_journal_close(run.journal);
    }
    g_ptr_array_unref(run.doms);
    vs_repo_unlock(repo);
    g_mutex_clear(&run.progress_lock);
    return result;
}
