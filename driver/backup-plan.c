/* The first stage of a backup run: everything decided before anything is
 * frozen. The options, the repository and the job XML files, each a reason
 * not to start; discovery and the recovery of earlier runs' leftovers; the
 * journal; then each domain's job: its lock, its disks, its method (overlay,
 * or for --mode=begin/auto a backup job, pull or push: choose_method) and
 * that method's plan, which may use the base backup choice made here (the
 * newest with a usable checkpoint, the chain's full one for a differential,
 * or what --backup-xml names). A domain that cannot be backed up fails here,
 * before a byte is copied. */
#include "config.h"
#include "backup-internal.h"
#include "retry.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/statvfs.h>

/* ------------------------------------------------------------------------- */
/* Preparation                                                               */

static bool
prepare_disks(Run *run, DomJob *j, const VsDiscoveredDomain *disc, const VsDomainDef *def)
{
    for (guint i = 0; i < disc->disks->len; i++) {
        const VsDiscoveredDisk *d = disc->disks->pdata[i];
        const VsDiskDef *dd = vs_domain_def_find_disk(def, d->target);
        DiskJob *job;

        /* Said, not silent: a user who relies on the backup must know that an
         * ISO, say, is not in it (its <disk> is, in the saved definition). */
        if (d->skipped) {
            add_note(j, "disk %s skipped: %s; the saved definition keeps it", d->target, d->skipped);
            continue;
        }
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
        } else if (g_strcmp0(d->type, "network") == 0 && d->rbd_pool && d->rbd_image) {
            /* QEMU's own syntax, which qemu-nbd reads (discovery's path is a URL for people). */
            job->url = g_strdup_printf("rbd:%s/%s%s%s", d->rbd_pool, d->rbd_image, d->rbd_user ? ":id=" : "",
                                       d->rbd_user ? d->rbd_user : "");
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
        if (job->path && !run->remote && access(job->path, F_OK) < 0) {
            dom_fail(j, "domain '%s': disk %s: %s does not exist (%s); nothing was done%s",
                     j->name, d->target, job->path, g_strerror(errno),
                     j->active ? " (the running guest may still hold it open: copy it from "
                                 "/proc/PID/fd of its QEMU before the domain stops)" : "");
            g_ptr_array_add(j->disks, job);
            return false;
        }
        job->is_file = g_strcmp0(d->type, "file") == 0;
        if (run->opts->storage_snapshot && !storage_locate(run, j, job, d)) {
            g_ptr_array_add(j->disks, job);
            return false;
        }
        if (j->active && dd && dd->shareable)
            dom_fail(j, "domain '%s': disk %s is shareable: another guest may write it while it "
                     "is copied, so it cannot be backed up consistently; detach it or mark it "
                     "<readonly/>", j->name, d->target);
        g_ptr_array_add(j->disks, job);
    }
    return j->error == NULL;
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
    const VsManifest *m = NULL;
    VsManifestDomain *md = NULL;

    if (!id) {
        add_note(j, "full backup: no full backup of this domain in this repository has its "
                 "checkpoint left to count a differential from (deleted, the domain redefined, "
                 "or not taken with --mode=begin)");
        return;
    }
    if (!(m = run_manifest(run, id)) || !(md = manifest_domain_of(m, j))) {
        add_note(j, "full backup: the chain's full backup %s is no longer in the repository "
                 "(pruned?)", id);
        return;
    }
    if (!base_has_disks(j, md, id, "chain's full backup"))
        return;
    j->incremental = g_steal_pointer(&cp);
    j->base = m;
    j->diff = true;
}

/* The base of an incremental: the newest backup of this domain in this
 * repository, if its checkpoint still exists with every bitmap intact and it
 * holds every disk that has a bitmap now. Otherwise a full backup, and why. */
void
choose_base(Run *run, DomJob *j)
{
    g_autoptr(GError) err = NULL;
    const char *const *ids;
    guint n;

    if (run->opts->level == VS_BACKUP_LEVEL_DIFF) {
        choose_full_base(run, j);
        return;
    }
    if (!(ids = run_backup_ids(run, &err))) {
        add_note(j, "full backup: cannot list the repository's backups (%s)", err->message);
        return;
    }
    n = g_strv_length((GStrv)ids);
    for (guint i = n; i-- > 0;) {
        const VsManifest *m = run_manifest(run, ids[i]);
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
        j->base = m;
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
        if (run->push && run->remote) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "backup: --backup-xml %s asks for a push-mode job, which has the "
                        "hypervisor %s write the disks into files of virtsnap's, on this host: "
                        "a remote run (-c %s) uses a pull-mode job (mode='pull', or leave the "
                        "mode out), or run virtsnap on the hypervisor", o->backup_xml_path,
                        run->remote, o->uri);
            return false;
        }
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
        add_note(j, "the job's export is served %s, not on the <server> of %s: virtsnap reads "
                 "it itself", run->remote ? "on TCP on the hypervisor (--nbd-port)"
                                          : "on virtsnap's own unix socket",
                 run->opts->backup_xml_path);
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
bool
job_xml_base(Run *run, DomJob *j)
{
    const char *want = run->job_xml->incremental;
    const char *const *ids = run_backup_ids(run, NULL);
    g_autofree char *why = NULL;

    for (guint i = 0; ids && ids[i]; i++) {
        g_autofree char *cp = vs_checkpoint_name(run->repo_tag, ids[i]);
        const VsManifest *m = NULL;

        if (g_strcmp0(cp, want) != 0)
            continue;
        m = run_manifest(run, ids[i]);
        if (!m || !manifest_domain_of(m, j))
            break;
        if (!vs_checkpoint_usable(j->dom, cp, &why)) {
            dom_fail(j, "backup: --backup-xml %s: <incremental>%s</incremental>: %s",
                     run->opts->backup_xml_path, want, why);
            return false;
        }
        j->incremental = g_steal_pointer(&cp);
        j->base = m;
        return true;
    }
    dom_fail(j, "backup: --backup-xml %s: <incremental>%s</incremental> is not the checkpoint of "
             "a backup of domain '%s' in this repository (virtsnap takes what did not change from "
             "that backup): name one of its checkpoints (virtsnap list --json), or leave "
             "<incremental> out and virtsnap picks the newest", run->opts->backup_xml_path, want,
             j->name);
    return false;
}


const char *const *
run_backup_ids(Run *run, GError **error)
{
    if (!run->repo_ids)
        run->repo_ids = vs_repo_list(run->repo, error);
    return (const char *const *)run->repo_ids;
}

const VsManifest *
run_manifest(Run *run, const char *id)
{
    gpointer m;

    if (!run->manifests)
        run->manifests = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                               (GDestroyNotify)vs_manifest_free);
    if (!g_hash_table_lookup_extended(run->manifests, id, NULL, &m)) {
        m = vs_repo_load_manifest(run->repo, id, NULL);
        g_hash_table_insert(run->manifests, g_strdup(id), m);
    }
    return m;
}

/* The bytes free to us in DIR's file system (f_bavail), or in that of its
 * nearest ancestor that exists yet; UINT64_MAX when none answers. */
uint64_t
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
const VsManifestDisk *
base_disk(DomJob *j, DiskJob *d)
{
    VsManifestDomain *md;

    if (!j->incremental || !d->bitmap || !j->base)
        return NULL;
    md = manifest_domain_of(j->base, j);
    return md ? vs_manifest_find_disk(md, d->target) : NULL;
}


/* How J's point in time is taken: --mode=begin (or auto, for a domain with
 * a qcow2 disk) a backup job, pull or push, instead of the overlays. Disks
 * whose image cannot hold a bitmap are read whole. A domain that fails here
 * keeps the overlay method, which does nothing for it. */
static const BackupMethod *
choose_method(Run *run, DomJob *j, const VsDomainDef *def)
{
    guint bitmaps = 0;

    if ((run->job_xml || run->checkpoint_xml) && !j->active) {
        dom_fail(j, "backup: domain '%s' is not running: a backup job (--backup-xml, "
                 "--checkpoint-xml) needs a running domain; back it up without them", j->name);
        return &backup_method_overlay;
    }
    if (run->remote && !j->active) {
        /* Refused: its disks are files of the hypervisor, and only a backup
         * job of a running domain serves them over the network. */
        dom_fail(j, "backup: domain '%s' is not running on %s, and a remote run (-c %s) reads "
                 "disks only through a running domain's backup job (its disk files are the "
                 "hypervisor's, not this host's): start it, or run virtsnap on the hypervisor",
                 j->name, run->remote, run->opts->uri);
        return &backup_method_overlay;
    }
    if (run->opts->storage_snapshot)
        return &backup_method_storage;
    if (run->opts->mode == VS_BACKUP_METHOD_OVERLAY || !j->active)
        return &backup_method_overlay;
    for (guint i = 0; i < j->disks->len; i++) {
        DiskJob *d = j->disks->pdata[i];
        d->bitmap = vs_disk_holds_bitmaps(d->format, d->path, NULL);
    }
    if (!apply_job_xml(run, j, def))
        return &backup_method_overlay;
    for (guint i = 0; i < j->disks->len; i++)
        bitmaps += ((DiskJob *)j->disks->pdata[i])->bitmap;
    /* Remote: an overlay would be read by its base's path, the hypervisor's. */
    if (run->opts->mode == VS_BACKUP_METHOD_AUTO && bitmaps == 0 && !run->remote)
        return &backup_method_overlay;
    return run->push ? &backup_method_push : &backup_method_pull;
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

/* J's state now (NOSTATE when libvirt cannot say), and whether it runs. */
static int
domain_state(DomJob *j)
{
    int state = VIR_DOMAIN_NOSTATE, reason;

    if (!vs_control()->domain_state(j->dom, &state, &reason, NULL))
        state = VIR_DOMAIN_NOSTATE;
    j->active = state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_PAUSED ||
                state == VIR_DOMAIN_BLOCKED || state == VIR_DOMAIN_PMSUSPENDED;
    return state;
}

/* The definition kept in the manifest, which restores the domain: the
 * persistent one, or a transient domain's live XML, which discovery read. */
static bool
keep_definition(Run *run, DomJob *j, const VsDiscoveredDomain *disc)
{
    g_autoptr(GError) err = NULL;
    VsRetry r = VS_RETRY_INIT(run->opts->retry_count);

    if (disc->persistent) {
        while (!(vs_fault_fail("domain-xml", &err) && (j->xml = vs_control()->domain_xml(j->dom, true, &err))) &&
               vs_retry_again(&r, &err))
            ;
        vs_retry_note(&r, "reading the persistent XML", j->notes);
    } else {
        j->xml = g_strdup(disc->xml);
    }
    /* No definition parsed: discovery's problem with the domain says why. */
    for (guint i = 0; !err && !disc->def && i < disc->problems->len; i++) {
        const VsProblem *p = disc->problems->pdata[i];
        if (!p->disk)
            err = g_error_copy(p->error);
    }
    if (!j->xml || !disc->def) {
        dom_fail(j, "domain '%s': cannot read its XML%s%s", j->name, err ? ": " : "",
                 err ? err->message : "");
        return false;
    }
    return true;
}

static DomJob *
prepare_domain(Run *run, virDomainPtr dom, VsDiscoveredDomain *disc)
{
    DomJob *j = g_new0(DomJob, 1);
    const VsDomainDef *def;
    g_autoptr(GPtrArray) again = NULL;
    g_autoptr(GError) err = NULL;
    int state;

    j->dom = dom;
    j->lock_fd = -1;
    j->name = g_strdup(vs_control()->domain_name(dom));
    j->uuid = g_strdup(disc->uuid);
    j->disks = g_ptr_array_new_with_free_func((GDestroyNotify)disk_job_free);
    j->notes = g_ptr_array_new_with_free_func(g_free);
    j->method = &backup_method_overlay;
    j->overlay_ms = -1;
    j->consistency = g_strdup("crash");
    state = domain_state(j);

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
        dom_fail_error(j, err);
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
        dopts.remote = run->remote != NULL;
        again = vs_discover(vs_link_conn(run->link), uuid, &dopts, NULL, &err);
        if (!again || again->len != 1) {
            dom_fail(j, "domain '%s': cannot discover it again once locked%s%s", j->name,
                     err ? ": " : "", err ? err->message : "");
            return j;
        }
        disc = again->pdata[0];
        state = domain_state(j);
    }
    if (!keep_definition(run, j, disc))
        return j;
    /* Parsed once, by discovery: the stages take it from the job. */
    def = j->live_def = g_steal_pointer(&disc->def);
    for (guint i = 0; i < disc->problems->len; i++) {
        const VsProblem *p = disc->problems->pdata[i];

        if (!p->disk) {
            dom_fail_error(j, p->error);
            return j;
        }
    }
    if (!foreign_overlays(j, disc) || !prepare_disks(run, j, disc, def))
        return j;
    if (j->disks->len == 0) {
        dom_fail(j, "domain '%s' has no disk that can be backed up", j->name);
        return j;
    }
    j->method = choose_method(run, j, def);
    j->method->plan(run, j, def);

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
            add_note(j, "paused: backed up crash-consistent");
    } else if (disc->agent == VS_AGENT_NONE) {
        if (run->opts->quiesce == VS_QUIESCE_REQUIRE)
            dom_fail(j, "domain '%s' has no qemu-guest-agent channel, so it cannot be frozen: "
                     "add <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
                     "</channel> and run qemu-ga in the guest, or use --quiesce=try", j->name);
        else
            add_note(j, "no qemu-guest-agent channel: backed up crash-consistent");
    } else {
        j->freeze = true;
    }
    return j;
}

/* The options that name directories, the repository (locked shared), the
 * credentials and job XML files: each a reason not to start at all. */
static bool
open_run(Run *run, const char *const *names, bool all, GError **error)
{
    const VsBackupOptions *opts = run->opts;

    if (!vs_backup_check_options(names, all, opts, error) || !vs_backup_check_remote(opts, error))
        return false;
    run->remote = vs_uri_remote_host(opts->uri);
    if (opts->overlay_dir && !g_file_test(opts->overlay_dir, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: --overlay-dir %s: no such directory (create it, or leave the option "
                    "out to put each overlay beside its disk)", opts->overlay_dir);
        return false;
    }
    if (opts->push_dir && !g_file_test(opts->push_dir, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: --push-dir %s: no such directory (create it, or leave the option "
                    "out to have the push job write into the state directory)", opts->push_dir);
        return false;
    }
    run->push = opts->push || opts->push_dir;
    if (!(run->repo = vs_repo_open(opts->repo_path, opts->init_repo, true, 0, error))) {
        /* The repository's error ends with how to create one; --init does too. */
        if (error && *error && (*error)->code == VS_ERROR_NOT_FOUND && !opts->init_repo) {
            g_autoptr(GError) e = g_steal_pointer(error);
            g_set_error(error, e->domain, e->code, "backup: %s (or give backup --init)", e->message);
        } else {
            vs_error_prefix(error, "backup");
        }
        return false;
    }
    if (!vs_repo_lock_shared(run->repo, error))
        return false;
    vs_repo_set_compression(run->repo, !opts->no_compress);
    if (opts->iscsi_auth_file && !(run->iscsi_auth = vs_iscsi_auth_load(opts->iscsi_auth_file, error))) {
        vs_error_prefix(error, "backup: --iscsi-auth");
        return false;
    }
    if (!load_job_xml(run, error))
        return false;
    run->repo_tag = vs_repo_tag(run->repo);
    return true;
}

/* Discovery resolves every disk and says which names do not exist; leftovers
 * of interrupted runs on these domains are recovered before anything else. */
/* A domain named but not backed up at all, for the result (takes ERROR). */
static VsProblem *
missing_problem(const char *domain, GError *error)
{
    VsProblem *p = g_new0(VsProblem, 1);

    p->domain = g_strdup(domain);
    p->error = error;
    return p;
}

static bool
discover_domains(Run *run, const char *const *names, bool all, GError **error)
{
    g_autoptr(GPtrArray) uuids = g_ptr_array_new();
    g_autoptr(GError) rerr = NULL;
    g_autoptr(GPtrArray) problems = NULL;
    VsDiscoverOptions dopts;

    vs_discover_options_init(&dopts);
    dopts.agent_timeout = run->opts->agent_timeout;
    dopts.remote = run->remote != NULL;
    run->discovered = vs_discover(run->conn, all ? NULL : names, &dopts, &problems, error);
    if (!run->discovered)
        return false;
    for (guint i = 0; problems && i < problems->len; i++) {
        const VsProblem *p = problems->pdata[i];

        if (!p->disk && g_error_matches(p->error, VS_ERROR, VS_ERROR_NOT_FOUND))
            g_ptr_array_add(run->not_found, missing_problem(p->domain, g_error_copy(p->error)));
    }
    if (run->discovered->len == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "backup: %s",
                    run->not_found->len ? ((VsProblem *)run->not_found->pdata[0])->error->message
                                        : "no domains to back up");
        return false;
    }

    for (guint i = 0; i < run->discovered->len; i++)
        g_ptr_array_add(uuids, ((VsDiscoveredDomain *)run->discovered->pdata[i])->uuid);
    g_ptr_array_add(uuids, NULL);
    if (!vs_recover(run->conn, run->opts->state_dir, (const char *const *)uuids->pdata, run->notes,
                    &rerr))
        g_ptr_array_add(run->notes, g_strdup_printf("recover: %s", rerr->message));
    return true;
}

/* The state directory and this run's journal, its first record written. */
static bool
start_journal(Run *run, GError **error)
{
    const VsBackupOptions *opts = run->opts;
    g_autofree char *ovl = g_build_filename(vs_state_dir(opts->state_dir), "overlays", NULL);

    /* QEMU (as libvirt-qemu) must reach overlays kept here. */
    if (!vs_make_dir(vs_state_dir(opts->state_dir), 0755, error) || !vs_make_dir(ovl, 0755, error))
        return false;
    if (!(run->journal = vs_journal_create(opts->state_dir, run->manifest->id, error)))
        return false;
    if (!vs_journal_begin_backup(run->journal, run->manifest->id, vs_repo_path(run->repo), (int)getpid(),
                                 error)) {
        vs_journal_finish(run->journal);
        return false;
    }
    return true;
}

bool
backup_plan(Run *run, const char *const *names, bool all, GError **error)
{
    /* A configuration that does not load fails the run before anything is touched. */
    if (run->opts->storage_snapshot &&
        !(run->snap_config = vs_snap_config_load(run->opts->snapshot_config, error)))
        return false;
    /* Domains handed in (backup_run_discovered) were discovered by the caller. */
    if (!open_run(run, names, all, error) ||
        (!run->discovered && !discover_domains(run, names, all, error)))
        return false;
    run->manifest = vs_manifest_new();
    if (!start_journal(run, error))
        return false;

    progress(run, VS_BACKUP_PHASE_PREPARE, NULL, NULL, 0, run->discovered->len);
    guardian_early(run, run->discovered);
    run->doms = g_ptr_array_new_with_free_func((GDestroyNotify)dom_job_free);
    for (guint i = 0; i < run->discovered->len; i++) {
        VsDiscoveredDomain *disc = run->discovered->pdata[i];
        virDomainPtr dom = vs_control()->domain_lookup_uuid(run->conn, disc->uuid, NULL);
        if (!dom) {
            g_ptr_array_add(run->not_found,
                            missing_problem(disc->name, g_error_new(VS_ERROR, VS_ERROR_NOT_FOUND,
                                                                    "backup: domain '%s' disappeared",
                                                                    disc->name)));
            continue;
        }
        g_ptr_array_add(run->doms, prepare_domain(run, dom, disc));
    }
    return true;
}
