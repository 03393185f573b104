/* Checkpoints and backup jobs: the libvirt side of `backup --mode=begin`.
 * A pull-mode job (virDomainBackupBegin) makes libvirt's QEMU serve a frozen view of
 * each disk over NBD on a unix socket (on TCP for a remote hypervisor) while the guest runs on, and creates a
 * checkpoint (a persistent dirty bitmap in each qcow2) at the same instant; the next
 * incremental job exposes the bitmap of the changes since that checkpoint as the NBD
 * meta context "qemu:dirty-bitmap:backup-TARGET". A pull job ends only when it is
 * aborted. A push-mode job instead has QEMU write each disk (for an incremental,
 * only the clusters the bitmap names) into a qcow2 file, and ends by itself; how
 * it ended is in libvirt's completed-job statistics. Checkpoints are named "virtsnap-TAG-BACKUPID", TAG derived from the
 * repository, so that each repository keeps its own chain on one domain and only
 * ever deletes its own checkpoints; the name being derived from the backup id is
 * what ties a checkpoint to the manifest of the same instant without a new manifest
 * member. A full backup's checkpoint says so in its <description>: a differential
 * backup counts from the chain's last full one, which has to be found again among
 * the checkpoints, and libvirt keeps the description with them. */
#include "config.h"
#include "driver-internal.h"
#include "control.h"
#include "vs-xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <errno.h>
#include <string.h>

#define CHECKPOINT_PREFIX "virtsnap-"
/* The start of the <description> of a full backup's checkpoint. */
#define FULL_DESCRIPTION "virtsnap full backup"

static bool
tag_valid(const char *s)
{
    if (strlen(s) != 8)
        return false;
    for (int i = 0; i < 8; i++)
        if (!g_ascii_isxdigit(s[i]))
            return false;
    return true;
}

char *
vs_repo_tag(VsRepo *repo)
{
    const char *repo_path = vs_repo_path(repo);
    g_autofree char *file = g_build_filename(repo_path, "checkpoints", "tag", NULL);
    g_autofree char *kept = NULL;
    g_autofree char *real = NULL, *sum = NULL;
    char *tag;

    /* The tag is kept in the repository once it has one: derived from the
     * path alone, moving the repository (another mount point) would break its
     * chain into a full backup and leave its checkpoints, no longer its own,
     * on the domains for good. */
    if (g_file_get_contents(file, &kept, NULL, NULL) && tag_valid(g_strstrip(kept)))
        return g_steal_pointer(&kept);
    real = realpath(repo_path, NULL);
    sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256, real ? real : repo_path, -1);
    /* Eight hex digits: short enough for names, and two repositories of one
     * domain colliding (1 in 4e9) would only cost a full backup. A repository
     * that cannot be written keeps deriving it. */
    tag = g_strndup(sum, 8);
    {
        g_autofree char *line = g_strdup_printf("%s\n", tag);

        (void)vs_repo_write_file(repo, "checkpoints/tag", line, strlen(line), NULL);
    }
    return tag;
}

char *
vs_checkpoint_name(const char *tag, const char *backup_id)
{
    return g_strdup_printf(CHECKPOINT_PREFIX "%s-%s", tag, backup_id);
}

bool
vs_checkpoint_usable(virDomainPtr dom, const char *name, char **why)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *xml = vs_control()->checkpoint_xml(dom, name,
                                                        VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN, &err);

    /* Only libvirt's record can be checked beforehand: libvirt 9.0 describes a
     * checkpoint, sizes included (VIR_DOMAIN_CHECKPOINT_XML_SIZE), even when its
     * bitmap is missing from the image or was left inconsistent by a killed
     * QEMU; it refuses only the job ("missing or broken bitmap"), which the
     * caller turns into a full backup. */
    if (!xml) {
        *why = g_strdup_printf("checkpoint %s no longer exists (deleted by hand, the domain "
                               "redefined, or that backup was not taken with --mode=begin)", name);
        return false;
    }
    return true;
}

void
vs_backup_job_xml(const VsJobServer *server, const char *incremental, bool diff,
                  const char *checkpoint, const char *description, const VsJobDisk *disks,
                  guint n_disks, const char *const *other_targets, char **backup_xml,
                  char **checkpoint_xml)
{
    g_autoptr(VsBackupDef) bdef = vs_backup_def_new(server ? VS_BACKUP_MODE_PULL : VS_BACKUP_MODE_PUSH);
    g_autoptr(VsCheckpointDef) cdef = vs_checkpoint_def_new(checkpoint);

    /* The description starts with what kind of backup made the checkpoint: a
     * differential finds the chain's full by it. A user's own (--checkpoint-xml)
     * follows. */
    g_autofree char *kind = incremental ? g_strdup_printf("virtsnap %s backup since %s",
                                                          diff ? "differential" : "incremental",
                                                          incremental)
                                        : g_strdup(FULL_DESCRIPTION);

    cdef->description = description ? g_strdup_printf("%s: %s", kind, description)
                                    : g_steal_pointer(&kind);
    bdef->incremental = g_strdup(incremental);
    if (server && server->socket) {
        bdef->server_transport = g_strdup("unix");
        bdef->server_socket = g_strdup(server->socket);
    } else if (server) {
        /* libvirt 9.0 allocates no port for TCP: the caller names one. */
        bdef->server_transport = g_strdup("tcp");
        bdef->server_name = g_strdup(server->host);
        bdef->server_port = g_strdup_printf("%u", server->port);
    }
    for (guint i = 0; i < n_disks; i++) {
        VsBackupDiskDef *bd = vs_backup_def_add_disk(bdef, disks[i].target, true);

        /* A disk without a bitmap (raw) is read whole even in an incremental job. */
        if (incremental)
            bd->backupmode = g_strdup(disks[i].incremental ? "incremental" : "full");
        bd->type = VS_DISK_TYPE_FILE;
        if (server) {
            bd->scratch = g_strdup(disks[i].scratch);
        } else {
            bd->target = g_strdup(disks[i].push_target);
            bd->format = g_strdup("qcow2");
        }
        vs_checkpoint_def_add_disk(cdef, disks[i].target, disks[i].bitmap);
    }
    for (size_t i = 0; other_targets && other_targets[i]; i++) {
        vs_backup_def_add_disk(bdef, other_targets[i], false);
        vs_checkpoint_def_add_disk(cdef, other_targets[i], false);
    }
    *backup_xml = vs_backup_def_format(bdef);
    *checkpoint_xml = vs_checkpoint_def_format(cdef);
}

bool
vs_backup_job_begin(virDomainPtr dom, const char *name, const char *incremental,
                    const char *backup_xml, const char *checkpoint_xml, bool reuse_external,
                    GError **error)
{
    GError *cause = NULL;

    if (!vs_control()->backup_begin(dom, backup_xml, checkpoint_xml, reuse_external, &cause)) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "backup-begin: domain '%s'%s%s", name,
                         incremental ? " since checkpoint " : "", incremental ? incremental : "");
        return false;
    }
    return true;
}

/* 1 when DOM runs a backup job, 0 when it runs none, -1 when libvirt could
 * not say (a closed connection, a domain gone): never taken for "none", as
 * that once unlinked the scratch files of a job still running. The job's
 * statistics are in *ST (the caller clears them, whatever this returns). */
static int
backup_job_stats(virDomainPtr dom, VsJobStats *st)
{
    if (!vs_control()->job_stats(dom, false, st, NULL))
        return -1;
    return st->type != VIR_DOMAIN_JOB_NONE && st->operation == VIR_DOMAIN_JOB_OPERATION_BACKUP;
}

int
vs_backup_job_state(virDomainPtr dom)
{
    const VsControlOps *c = vs_control();

    /* 200 ms apart: 5 s for a running domain, 30 s for one shutting down. */
    for (int i = 0;; i++) {
        VsJobStats st = { 0 };
        int state = VIR_DOMAIN_NOSTATE, reason;
        int backup = backup_job_stats(dom, &st);

        vs_job_stats_clear(&st);
        if (backup >= 0)
            return backup;
        /* A stopped domain has no job, though libvirt refuses to say so. */
        if (!c->domain_state(dom, &state, &reason, NULL))
            return c->domain_is_active(dom) == 0 ? 0 : -1;
        if (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED)
            return 0;
        /* One on its way down (the guest shut itself down, QEMU exits)
         * answers neither for a moment; a closed connection never will. */
        if (i == (state == VIR_DOMAIN_SHUTDOWN ? 150 : 25) ||
            c->conn_alive(c->domain_conn(dom)) != 1)
            return -1;
        g_usleep(200 * 1000);
    }
}

bool
vs_backup_job_active(virDomainPtr dom)
{
    return vs_backup_job_state(dom) == 1;
}

/* The error for a job libvirt could not tell us about. */
static void
job_unknown(virDomainPtr dom, const char *name, GError **error)
{
    const VsControlOps *c = vs_control();
    VsJobStats st = { 0 };
    g_autoptr(GError) err = NULL;
    const char *why = NULL;
    bool alive;

    /* Asked once more for libvirt's own words. */
    if (!c->job_stats(dom, false, &st, &err))
        why = err->message;
    vs_job_stats_clear(&st);
    alive = c->conn_alive(c->domain_conn(dom)) == 1;
    g_set_error(error, VS_ERROR, alive ? VS_ERROR_LIBVIRT : VS_ERROR_CONNECTION,
                "backup-end: domain '%s': %s%s%s", name,
                alive ? "libvirt cannot say whether its backup job still runs"
                      : "the connection to libvirtd closed (libvirtd restarted or stopped)",
                why ? ": " : "", why ? why : "");
}

bool
vs_backup_job_abort(virDomainPtr dom, const char *name, GError **error)
{
    GError *cause = NULL;
    int st = vs_backup_job_state(dom);

    /* A pull-mode job has nothing to complete: aborting it is how it ends. Only a
     * backup job is aborted, never a migration or another tool's job. */
    if (st == 0)
        return true;
    if (st < 0) {
        job_unknown(dom, name, error);
        return false;
    }
    if (!vs_control()->job_abort(dom, &cause) && (st = vs_backup_job_state(dom)) != 0) {
        if (st < 0) {
            g_clear_error(&cause);
            job_unknown(dom, name, error);
        } else {
            vs_control_error(error, cause, VS_ERROR_LIBVIRT, "backup-end: domain '%s': domjobabort",
                             name);
        }
        return false;
    }
    g_clear_error(&cause);
    return true;
}

typedef struct {
    GMutex lock;
    GCond cond;
    bool done;
} JobWaiter;

static void
job_waiter_free(void *opaque)
{
    JobWaiter *w = opaque;

    g_mutex_clear(&w->lock);
    g_cond_clear(&w->cond);
    g_free(w);
}

static void
on_job_completed(void *opaque)
{
    JobWaiter *w = opaque;

    g_mutex_lock(&w->lock);
    w->done = true;
    g_cond_signal(&w->cond);
    g_mutex_unlock(&w->lock);
}

/* Waits while DOM runs a backup job: until DEADLINE (monotonic µs; 0: none)
 * or until the domain stops, handing TICK (may be NULL) the job's statistics
 * at each look. False when the deadline passed (*STOPPED false) or the domain
 * stopped (*STOPPED true), the job with it. libvirt
 * says when a job ends with the job-completed event, rather than a poll adding
 * up to its interval to every backup; a slow poll stays in case the event
 * never comes (or came before we listened). libvirt frees the waiter once the
 * callback is deregistered, never while it may still run. */
static bool
wait_job_gone(virDomainPtr dom, int64_t deadline, void (*tick)(const VsJobStats *, void *),
              void *opaque, bool *stopped, bool *unknown)
{
    const VsControlOps *c = vs_control();
    JobWaiter *w = g_new0(JobWaiter, 1);
    int cb;
    bool ok = true;

    *stopped = *unknown = false;
    g_mutex_init(&w->lock);
    g_cond_init(&w->cond);
    /* On failure W is freed already. */
    cb = c->job_watch(dom, on_job_completed, w, job_waiter_free);
    for (;;) {
        int64_t now = g_get_monotonic_time();
        int64_t until = now + 250 * G_TIME_SPAN_MILLISECOND;
        VsJobStats st = { 0 };
        int running = backup_job_stats(dom, &st);

        if (running > 0 && tick)
            tick(&st, opaque);
        vs_job_stats_clear(&st);
        if (running < 0 && c->domain_is_active(dom) != 0) {
            /* Not known to be over: the connection closed, or libvirt failed. */
            *unknown = true;
            ok = false;
            break;
        }
        if (running <= 0)
            break;
        if (deadline && now > deadline) {
            ok = false;
            break;
        }
        if (deadline)
            until = MIN(until, deadline);
        if (cb < 0) {
            g_usleep(50 * 1000);
            continue;
        }
        g_mutex_lock(&w->lock);
        while (!w->done && g_cond_wait_until(&w->cond, &w->lock, until))
            ;
        w->done = false;
        g_mutex_unlock(&w->lock);
    }
    /* A domain that stopped has no job (GetJobStats fails): that is no end of it. */
    if (ok && c->domain_is_active(dom) == 0) {
        *stopped = true;
        ok = false;
    }
    if (cb >= 0)
        c->job_unwatch(dom, cb);
    return ok;
}

bool
vs_backup_job_wait_gone(virDomainPtr dom, const char *name, GError **error)
{
    bool stopped, unknown;

    /* The abort returns before QEMU has torn the job's block jobs down (tens of
     * ms, seconds on a loaded host); its scratch files are in use until then.
     * A domain that stopped took its job with it. */
    if (wait_job_gone(dom, g_get_monotonic_time() + 60 * G_USEC_PER_SEC, NULL, NULL, &stopped,
                      &unknown) || stopped)
        return true;
    if (unknown) {
        job_unknown(dom, name, error);
        return false;
    }
    g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                "backup-end: domain '%s': the backup job was aborted but is still "
                "there after 60 s (virsh domjobinfo %s)", name, name);
    return false;
}

typedef struct {
    VsPushProgress progress;
    void *opaque;
} PushTick;

/* How far the job has written, as libvirt counts it (bytes of all its disks). */
static void
push_tick(const VsJobStats *st, void *opaque)
{
    PushTick *t = opaque;

    if (st->has_progress && st->total)
        t->progress(st->processed, st->total, t->opaque);
}

bool
vs_push_job_wait(virDomainPtr dom, const char *name, VsPushProgress progress, void *opaque,
                 GError **error)
{
    PushTick tick = { progress, opaque };
    VsJobStats st = { 0 };
    GError *cause = NULL;
    bool stopped, unknown, ok = false;

    /* No deadline: a push job copies whole disks (a full backup) at the
     * storage's pace, and QEMU ends it itself, or with the domain. */
    if (!wait_job_gone(dom, 0, progress ? push_tick : NULL, &tick, &stopped, &unknown)) {
        if (unknown) {
            job_unknown(dom, name, error);
            return false;
        }
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT, "backup-push: domain '%s' stopped while its "
                    "push-mode backup job was writing (the job ended with it)", name);
        return false;
    }
    if (!vs_control()->job_stats(dom, true, &st, &cause)) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "backup-push: domain '%s': how the backup "
                         "job ended (domjobinfo --completed)", name);
        vs_job_stats_clear(&st);
        return false;
    }
    if (st.operation >= 0 && st.operation != VIR_DOMAIN_JOB_OPERATION_BACKUP)
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT, "backup-push: domain '%s': another job (%d) "
                    "ended after the backup job, so how that ended is unknown: no backup of it "
                    "was written", name, st.operation);
    else if (st.type == VIR_DOMAIN_JOB_COMPLETED)
        ok = true;
    else
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT, "backup-push: domain '%s': the push-mode "
                    "backup job %s%s%s", name,
                    st.type == VIR_DOMAIN_JOB_CANCELLED ? "was aborted" : "failed",
                    st.errmsg ? ": " : "", st.errmsg ? st.errmsg : "");
    vs_job_stats_clear(&st);
    return ok;
}

bool
vs_backup_job_end(virDomainPtr dom, const char *name, GError **error)
{
    return vs_backup_job_abort(dom, name, error) && vs_backup_job_wait_gone(dom, name, error);
}

/* Deleting merges the checkpoint's bitmap into its parent's, so a checkpoint of
 * another chain (another repository) below it still sees every change. A bitmap
 * QEMU could not store (killed while it ran) cannot be merged: then only
 * libvirt's record goes, and the broken bitmap, which QEMU never uses again,
 * stays in the image (`qemu-img bitmap --remove` while the domain is off). */
static bool
delete_one(virDomainPtr dom, const char *name, bool *absent)
{
    const VsControlOps *c = vs_control();
    g_autoptr(GError) err = NULL;

    *absent = false;
    if (c->checkpoint_delete(dom, name, false, &err))
        return true;
    if (g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND)) {
        *absent = true;
        return true;
    }
    return c->checkpoint_delete(dom, name, true, NULL);
}

bool
vs_checkpoint_delete(virDomainPtr dom, const char *name)
{
    bool absent;

    return delete_one(dom, name, &absent);
}

char *
vs_checkpoint_chain_full(virDomainPtr dom, const char *tag)
{
    const VsControlOps *c = vs_control();
    g_autofree char *prefix = g_strdup_printf(CHECKPOINT_PREFIX "%s-", tag);
    g_auto(GStrv) names = c->checkpoint_list(dom, NULL);
    char *best = NULL;

    for (size_t i = 0; names && names[i]; i++) {
        const char *cname = names[i];
        g_autofree char *xml = NULL;
        g_autoptr(VsCheckpointDef) def = NULL;

        /* Backup ids sort by time: the greatest name is the newest backup. */
        if (g_str_has_prefix(cname, prefix) && g_strcmp0(cname, best) > 0 &&
            (xml = c->checkpoint_xml(dom, cname, VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN, NULL)) &&
            (def = vs_checkpoint_def_parse_string(xml, cname, NULL)) &&
            def->description && g_str_has_prefix(def->description, FULL_DESCRIPTION)) {
            g_free(best);
            best = g_strdup(cname);
        }
    }
    return best;
}

VsCheckpointDef *
vs_checkpoint_with_sizes(virDomainPtr dom, const char *name)
{
    g_autofree char *xml = vs_control()->checkpoint_xml(dom, name,
                                                        VIR_DOMAIN_CHECKPOINT_XML_SIZE |
                                                        VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN, NULL);

    return xml ? vs_checkpoint_def_parse_string(xml, name, NULL) : NULL;
}

char *
vs_checkpoint_backup_id(const char *tag, const char *name)
{
    g_autofree char *prefix = g_strdup_printf(CHECKPOINT_PREFIX "%s-", tag);

    return name && g_str_has_prefix(name, prefix) ? g_strdup(name + strlen(prefix)) : NULL;
}

guint
vs_checkpoints_prune(virDomainPtr dom, const char *tag, const char *keep, const char *keep2,
                     GPtrArray *failed)
{
    g_autofree char *prefix = g_strdup_printf(CHECKPOINT_PREFIX "%s-", tag);
    g_auto(GStrv) names = vs_control()->checkpoint_list(dom, NULL);
    guint deleted = 0;

    for (size_t i = 0; names && names[i]; i++) {
        const char *cname = names[i];
        bool absent;

        if (g_str_has_prefix(cname, prefix) && g_strcmp0(cname, keep) != 0 &&
            g_strcmp0(cname, keep2) != 0) {
            /* One gone since the list (deleted by hand meanwhile) is not counted. */
            if (!delete_one(dom, cname, &absent)) {
                if (failed)
                    g_ptr_array_add(failed, g_strdup(cname));
            } else if (!absent) {
                deleted++;
            }
        }
    }
    return deleted;
}

/* ------------------------------------------------------------------------- */
/* Checkpoint XML kept in the repository                                     */

/* REPO/checkpoints/TAG/UUID.xml: the newest checkpoint of this chain on that
 * domain, as libvirt described it. libvirt keeps checkpoints as metadata of a
 * domain, which a transient domain restarted elsewhere, or one undefined and
 * defined again, loses while the bitmaps stay in its qcow2 images; with this
 * copy the checkpoint is redefined and the chain goes on instead of starting
 * again with a full backup. Not part of any backup: gc and verify ignore it. */
static char *
saved_path(const char *repo_path, const char *tag, const char *uuid)
{
    g_autofree char *file = g_strdup_printf("%s.xml", uuid);

    return g_build_filename(repo_path, "checkpoints", tag, file, NULL);
}

bool
vs_checkpoint_save(virDomainPtr dom, const char *name, VsRepo *repo, const char *tag,
                   const char *uuid, GError **error)
{
    GError *cause = NULL;
    g_autofree char *xml = vs_control()->checkpoint_xml(dom, name, 0, &cause);
    g_autofree char *rel = g_strdup_printf("checkpoints/%s/%s.xml", tag, uuid);

    if (!xml) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "checkpoint %s", name);
        return false;
    }
    /* In the repository, with its modes: a checkpoint's XML is the domain's. */
    if (!vs_repo_write_file(repo, rel, xml, strlen(xml), error)) {
        g_prefix_error(error, "checkpoint %s: keeping its XML: ", name);
        return false;
    }
    return true;
}

bool
vs_checkpoint_redefine(virDomainPtr dom, const char *name, const char *repo_path, const char *tag,
                       const char *uuid, char **why)
{
    g_autofree char *path = saved_path(repo_path, tag, uuid);
    g_autofree char *xml = NULL;
    g_autoptr(GError) err = NULL;

    if (!g_file_get_contents(path, &xml, NULL, NULL))
        return false;                   /* none kept: nothing to say */
    /* libvirt's full description (with <domain>, <parent>, sizes): only its
     * name is looked at here. */
    {
        xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), path, NULL, XML_PARSE_NONET);
        xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
        g_autofree char *saved = NULL;

        for (xmlNodePtr n = root ? root->children : NULL; n; n = n->next)
            if (n->type == XML_ELEMENT_NODE && !xmlStrcmp(n->name, BAD_CAST "name")) {
                xmlChar *c = xmlNodeGetContent(n);
                saved = g_strdup((const char *)c);
                xmlFree(c);
            }
        if (doc)
            xmlFreeDoc(doc);
        if (g_strcmp0(saved, name) != 0)
            return false;               /* a newer chain's, or not ours */
    }
    /* Whether the bitmaps are still in the images cannot be asked of a running
     * QEMU through libvirt (and the image header shows only those it had when
     * QEMU opened it). If one is gone (the checkpoint was deleted by hand, not
     * lost), libvirt refuses the incremental job, and a full one starts at once
     * in the same frozen window. */
    if (!vs_control()->checkpoint_redefine(dom, xml, &err)) {
        *why = g_strdup_printf("redefining it from %s failed: %s", path, err->message);
        return false;
    }
    return true;
}
