/* `virtsnap recover`: finishing or undoing what an interrupted backup left,
 * driven only by its journal. Guests it froze are thawed; overlays it put on
 * disks are committed back and pivoted (or, for a domain shut down meanwhile,
 * committed offline and the definition pointed back at the original image);
 * overlay files it created that no domain uses are removed. An overlay virtsnap
 * did not create is never touched, and one that has since been buried under
 * another image is reported, not guessed at. A journal whose run is still alive
 * (its flock held) is left alone. No manifest is ever written here, so an
 * interrupted backup never appears complete. A pull-mode backup job (--mode=begin)
 * left running is aborted, its scratch files and socket directory removed, and
 * its checkpoint deleted unless the run's manifest was written after all.
 * Nothing is removed on a failed call: only what libvirt, on a live
 * connection (reopened when libvirtd restarted), says no domain uses. The
 * journals of export and restore (tempfile.c) name their temp images: those a
 * killed run left are removed, if their name is one of ours and no domain
 * uses them. A migration's journal (a killed `virtsnap migrate`) is settled
 * on both hosts it names (recover-migrate.c). */
#include "config.h"
#include "driver-internal.h"
#include "control.h"
#include "vs-restore.h"
#include "vs-quiesce.h"
#include "instant.h"
#include "recover-migrate.h"
#include "vs-block.h"
#include "vs-xml.h"
#include "vs-temp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void
recover_act(GPtrArray *actions, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (actions)
        g_ptr_array_add(actions, msg);
    else
        g_free(msg);
}

static bool
chain_contains(const VsStorageSource *src, const char *path)
{
    for (; src; src = src->backing)
        if (g_strcmp0(src->path, path) == 0)
            return true;
    return false;
}

/* Domain UUID on CONN, or NULL: with *GONE when a live connection says there
 * is no such domain (then nothing of it uses any file), else with *error,
 * VS_ERROR_CONNECTION "recover: domain 'NAME'WHY: <libvirt's words>". A
 * NOT_FOUND from a connection that died proves nothing: whether a file may go
 * is decided only by a lookup on a live one. */
static virDomainPtr
find_domain(virConnectPtr conn, const char *uuid, const char *name, const char *why, bool *gone,
            GError **error)
{
    const VsControlOps *c = vs_control();
    GError *cause = NULL;
    virDomainPtr dom = c->domain_lookup_uuid(conn, uuid, &cause);

    *gone = false;
    if (dom)
        return dom;
    if (g_error_matches(cause, VS_ERROR, VS_ERROR_NOT_FOUND) && c->conn_alive(conn) == 1) {
        g_error_free(cause);
        *gone = true;
        return NULL;
    }
    vs_control_error(error, cause, VS_ERROR_CONNECTION, "recover: domain '%s'%s", name, why);
    return NULL;
}

/* The domain is shut off but its definition points at our overlay: commit it
 * into the original with qemu-img and point the definition back. */
static bool
offline_commit(virConnectPtr conn, virDomainPtr dom, const char *disk, const char *overlay,
               const char *original, const char *format, GError **error)
{
    const VsControlOps *c = vs_control();
    const char *name = c->domain_name(dom);
    GError *cause = NULL;
    g_autofree char *xml = c->domain_xml_secure(dom, &cause);
    g_autoptr(VsDomainDef) def = NULL;
    g_autofree char *out = NULL, *errout = NULL, *newxml = NULL;
    const char *argv[] = { "qemu-img", "commit", "-q", "-f", "qcow2", overlay, NULL };
    VsDiskDef *d;
    int status = 0;

    if (!xml) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "recover: domain '%s'", name);
        return false;
    }
    if (!(def = vs_domain_def_parse_string(xml, name, error)))
        return false;
    if (!(d = vs_domain_def_find_disk(def, disk)) || !d->src ||
        (d->src->type != VS_DISK_TYPE_FILE && d->src->type != VS_DISK_TYPE_BLOCK) ||
        !g_path_is_absolute(original)) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "recover: domain '%s' disk %s: the original %s is not a local image; commit %s "
                    "into it by hand (qemu-img commit) and point the disk back at it",
                    name, disk, original, overlay);
        return false;
    }
    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &errout,
                      &status, error))
        return false;
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "recover: qemu-img commit %s: %s", overlay,
                    g_strstrip(errout));
        return false;
    }
    d->src->type = g_file_test(original, G_FILE_TEST_IS_REGULAR) ? VS_DISK_TYPE_FILE : VS_DISK_TYPE_BLOCK;
    g_free(d->src->path);
    d->src->path = g_strdup(original);
    g_free(d->src->format);
    d->src->format = g_strdup(format ? format : "raw");
    vs_storage_source_free(d->src->backing);
    d->src->backing = NULL;
    d->src->backing_terminated = false;
    if (!(newxml = vs_domain_def_format(def, error)))
        return false;
    if (!c->domain_define(conn, newxml, &cause)) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "recover: redefining domain '%s'", name);
        return false;
    }
    return true;
}

/* Removes OVERLAY once libvirt, on a live connection, confirms that domain
 * UUID no longer names it; in doubt the file stays, and so does the journal. */
static bool
remove_unused(virConnectPtr conn, const char *uuid, const char *name, const char *overlay,
              GPtrArray *actions, GError **error)
{
    g_autoptr(GError) err = NULL;
    int use = vs_domain_uses_file(conn, uuid, overlay, &err);

    if (use != 0) {
        if (use < 0)
            g_propagate_prefixed_error(error, g_steal_pointer(&err), "recover: ");
        else
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "recover: domain '%s' still names %s "
                        "(in its definition or below its disk): kept", name, overlay);
        return false;
    }
    if (unlink(overlay) == 0)
        recover_act(actions, "removed unused overlay %s of domain '%s'", overlay, name);
    else if (errno != ENOENT) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "recover: cannot remove %s: %s", overlay,
                    g_strerror(errno));
        return false;
    }
    return true;
}

/* The domain is gone (a transient one whose QEMU died): OVERLAY holds what
 * it wrote after the snapshot. Committed offline into ORIGINAL, whose header
 * it names, the disk holds every write again, for whoever starts the domain
 * anew. qemu-img takes the image's write lock, so a QEMU that has opened
 * ORIGINAL meanwhile makes it refuse rather than write under a guest. */
static bool
orphan_overlay(const char *overlay, const char *original, const char *name, GPtrArray *actions,
               GError **error)
{
    g_autoptr(VsImageInfo) info = NULL;
    const char *argv[] = { "qemu-img", "commit", "-q", "-f", "qcow2", overlay, NULL };
    g_autofree char *errout = NULL;
    int status = 0;

    if (!g_file_test(overlay, G_FILE_TEST_EXISTS))
        return true;
    info = vs_image_probe(overlay, NULL);
    if (!info || !original || !g_path_is_absolute(original) ||
        g_strcmp0(info->backing_file, original) != 0) {
        recover_act(actions, "domain '%s' no longer exists: its overlay %s is kept (it holds writes "
            "made after the backup's snapshot; commit it into its backing file with qemu-img "
            "commit)", name, overlay);
        return true;
    }
    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                      NULL, NULL, NULL, &errout, &status, error))
        return false;
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "recover: domain '%s' no longer exists, and "
                    "its overlay %s could not be committed into %s: %s (it is kept)", name,
                    overlay, original, g_strstrip(errout));
        return false;
    }
    if (unlink(overlay) < 0 && errno != ENOENT) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "recover: cannot remove %s: %s", overlay,
                    g_strerror(errno));
        return false;
    }
    recover_act(actions, "domain '%s' no longer exists: committed what it wrote after the backup's "
        "snapshot (overlay %s) into %s offline", name, overlay, original);
    return true;
}

static bool
recover_overlay(virConnectPtr conn, const VsJournalRecord *rec, GPtrArray *actions, GError **error)
{
    const char *uuid = rec->uuid, *name = rec->domain;
    const char *disk = rec->disk, *overlay = rec->overlay;
    const char *original = rec->original, *format = rec->format;
    const VsControlOps *c = vs_control();
    virDomainPtr dom;
    GError *cause = NULL;
    g_autofree char *xml = NULL;
    g_autoptr(VsDomainDef) def = NULL;
    VsDiskDef *d;
    int active;
    bool ok = false, gone;

    if (!uuid || !disk || !overlay)
        return true;
    if (!(dom = find_domain(conn, uuid, name, "", &gone, error)))
        return gone && orphan_overlay(overlay, original, name, actions, error);
    /* Not knowing is no "shut off": an offline commit and a redefinition of
     * a domain that runs would have only QEMU's image lock in their way. */
    if ((active = c->domain_is_active(dom)) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_CONNECTION, "recover: domain '%s': libvirt cannot "
                    "say whether it runs: its overlay %s is kept (run `virtsnap recover` again)",
                    name, overlay);
        goto out;
    }
    if (!(xml = c->domain_xml(dom, !active, &cause))) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "recover: domain '%s'", name);
        goto out;
    }
    if (!(def = vs_domain_def_parse_string(xml, name, error)))
        goto out;
    d = vs_domain_def_find_disk(def, disk);
    if (!d || !d->src || g_strcmp0(d->src->path, overlay) != 0) {
        if (d && d->src && chain_contains(d->src->backing, overlay)) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "recover: domain '%s' disk %s: virtsnap's overlay %s now lies below %s; "
                        "commit the chain by hand (virsh blockcommit %s %s --active --pivot)",
                        name, disk, overlay, d->src->path, name, disk);
            goto out;
        }
        /* Never applied, or already committed: only the file may be left. */
        ok = remove_unused(conn, uuid, name, overlay, actions, error);
        goto out;
    }
    if (active == 1) {
        if (!vs_blockcommit_pivot(conn, dom, disk, 600, error))
            goto out;
        recover_act(actions, "committed overlay %s back into %s and pivoted domain '%s' disk %s",
            overlay, original ? original : "its base", name, disk);
        {
            g_autoptr(GError) rerr = NULL;
            bool resumed = false;

            /* Paused for a full overlay file system: the failed write goes on now. */
            if (!vs_domain_resume_paused(dom, &resumed, &rerr))
                recover_act(actions, "%s", rerr->message);
            else if (resumed)
                recover_act(actions, "resumed domain '%s' (paused for an I/O error)", name);
        }
    } else {
        if (!offline_commit(conn, dom, disk, overlay, original, format, error))
            goto out;
        recover_act(actions, "committed overlay %s of shut-off domain '%s' disk %s into %s offline and "
            "pointed its definition back", overlay, name, disk, original);
    }
    ok = remove_unused(conn, uuid, name, overlay, NULL, error);
out:
    c->domain_free(dom);
    return ok;
}

/* False when the guest may still be frozen: the journal then stays, and the
 * next recover (or backup of the domain) tries again. */
static bool
recover_thaw(virConnectPtr conn, const VsJournalRecord *rec, GPtrArray *actions, GError **error)
{
    const char *uuid = rec->uuid, *name = rec->domain;
    const VsControlOps *c = vs_control();
    virDomainPtr dom;
    g_autofree char *status = NULL;
    bool ok = true, gone;
    int active;

    if (!uuid)
        return true;
    if (!(dom = find_domain(conn, uuid, name, " may still be frozen", &gone, error)))
        return gone;
    /* Only a domain that does not run is known not to be frozen. */
    if ((active = c->domain_is_active(dom)) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_CONNECTION, "recover: domain '%s' may still be "
                    "frozen: libvirt cannot say whether it runs (run `virtsnap recover` again)",
                    name);
        ok = false;
    }
    if (active == 1) {
        status = vs_agent_freeze_status(dom, 5, NULL);
        /* Thaw unless the agent says thawed: an unanswered query may be a frozen guest. */
        if (g_strcmp0(status, "thawed") != 0) {
            g_autoptr(GError) err = NULL;

            g_clear_pointer(&status, g_free);
            (void)vs_agent_thaw(dom, 5, &err);
            status = vs_agent_freeze_status(dom, 5, err ? NULL : &err);
            if (g_strcmp0(status, "thawed") == 0) {
                recover_act(actions, "thawed domain '%s'", name);
            } else {
                g_set_error(error, VS_ERROR, VS_ERROR_AGENT, "recover: domain '%s' may still be "
                            "frozen: %s (run `virtsnap recover` again once its agent answers)",
                            name, err ? err->message : "its agent still says frozen");
                ok = false;
            }
        }
    }
    c->domain_free(dom);
    return ok;
}

static void
remove_dir_files(const char *dir)
{
    g_autoptr(GDir) d = dir ? g_dir_open(dir, 0, NULL) : NULL;
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        unlink(path);
    }
    if (dir)
        rmdir(dir);
}

/* A BACKUP_JOB record: the pull- or push-mode job of a dead run. BEGIN (the
 * run's BEGIN record) says where its manifest would be. */
static bool
recover_backup_job(virConnectPtr conn, const VsJournalRecord *rec, const VsJournalRecord *begin,
                   bool ended, GPtrArray *actions, GError **error)
{
    const char *uuid = rec->uuid, *name = rec->domain;
    const char *cp = rec->checkpoint;
    const char *repo = begin ? begin->repo : NULL, *id = begin ? begin->id : NULL;
    const VsControlOps *c = vs_control();
    virDomainPtr dom = NULL;
    g_autofree char *manifest = NULL;
    bool ok = true, gone;
    int st;

    /* Whether the domain is gone must come from a live daemon: a scratch file
     * of a job that still runs is never removed. */
    if (uuid && !(dom = find_domain(conn, uuid, name, "", &gone, error)) && !gone)
        return false;
    if (dom && !ended && (st = vs_backup_job_state(dom)) != 0) {
        if (st < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_CONNECTION, "recover: domain '%s': libvirt "
                        "cannot say whether its backup job still runs: its files are kept", name);
            ok = false;
        } else if (vs_backup_job_end(dom, name, error)) {
            recover_act(actions, "ended the leftover backup job of domain '%s'", name);
        } else {
            ok = false;
        }
    }
    /* While the job runs, QEMU still uses its scratch files. */
    if (ok) {
        remove_dir_files(rec->scratch_dir);
        remove_dir_files(rec->socket_dir);
    }
    /* Killed after its manifest was written, the run's checkpoint is the chain's
     * newest; otherwise it marks a backup that does not exist. */
    manifest = repo && id ? g_strdup_printf("%s/backups/%s.json", repo, id) : NULL;
    if (ok && dom && cp && manifest && !g_file_test(manifest, G_FILE_TEST_EXISTS)) {
        g_autofree char *cpxml = c->checkpoint_xml(dom, cp, 0, NULL);

        if (cpxml) {
            if (vs_checkpoint_delete(dom, cp))
                recover_act(actions, "deleted checkpoint %s of the interrupted run from domain '%s'", cp, name);
            else
                recover_act(actions, "could not delete checkpoint %s of domain '%s'; the next backup "
                    "deletes it", cp, name);
        }
    }
    if (dom)
        c->domain_free(dom);
    return ok;
}

/* The repository's temp files of a dead run (REPO/tmp/KIND-PID-RANDOM.tmp):
 * chunks it had not yet made durable, never referenced by any manifest. */
static void
remove_repo_temp(const VsJournalRecord *begin, GPtrArray *actions)
{
    const char *repo = begin->repo;
    int pid = begin->pid;
    g_autofree char *dir = NULL;
    g_autofree char *infix = NULL;
    struct dirent *de;
    DIR *d;
    int root, fd;
    unsigned n = 0;

    if (!repo || pid <= 0)
        return;
    /* A live process with that pid (reused) may be writing there now. */
    if (kill(pid, 0) == 0 || errno != ESRCH)
        return;
    dir = g_build_filename(repo, "tmp", NULL);
    infix = g_strdup_printf("-%d-", pid);
    /* REPO/tmp itself, never a symlink in its place: what is deleted is in the
     * repository (a tampered one is refused by the commands that open it). */
    if ((root = open(repo, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return;
    fd = openat(root, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(root);
    if (fd < 0 || !(d = fdopendir(fd))) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, infix) || !g_str_has_suffix(de->d_name, ".tmp"))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    if (n)
        recover_act(actions, "removed %u temporary file(s) of the interrupted run from %s", n, dir);
}

/* 1 when some domain's live chain or definition names PATH (*WHO: which), 0
 * when none does, -1 with *error when libvirt cannot say. */
static int
any_domain_uses(virConnectPtr conn, const char *path, char **who, GError **error)
{
    const VsControlOps *c = vs_control();
    GError *cause = NULL;
    g_autofree virDomainPtr *doms = c->domain_list(conn, &cause);
    int r = 0;

    if (!doms) {
        vs_control_error(error, cause, VS_ERROR_CONNECTION, "recover: listing the domains that may "
                         "use %s", path);
        return -1;
    }
    for (size_t i = 0; doms[i]; i++) {
        char uuid[VIR_UUID_STRING_BUFLEN];

        c->domain_uuid(doms[i], uuid);
        if (r == 0 && uuid[0] && (r = vs_domain_uses_file(conn, uuid, path, error)) == 1)
            *who = g_strdup(c->domain_name(doms[i]));
        c->domain_free(doms[i]);
    }
    if (r < 0)
        vs_error_prefix(error, "recover");
    return r;
}

/* A TEMP record of an export or restore that is gone (its journal is no
 * longer locked): the image it was building. */
static bool
recover_temp(virConnectPtr conn, const char *path, GPtrArray *actions, GError **error)
{
    g_autofree char *base = path ? g_path_get_basename(path) : NULL;
    g_autofree char *who = NULL;
    struct stat st;
    int used;

    /* A journal names it, but a journal is a file too: only a name of ours. */
    if (!path || !g_path_is_absolute(path) || !vs_temp_parse(base, NULL, NULL)) {
        recover_act(actions, "left alone: %s is not the name of a virtsnap temp file", path ? path : "(none)");
        return true;
    }
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return true;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "recover: %s: %s", path, g_strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        recover_act(actions, "left alone: %s is not a regular file", path);
        return true;
    }
    if ((used = any_domain_uses(conn, path, &who, error)) < 0)
        return false;
    if (used) {
        recover_act(actions, "left alone: %s, an image an interrupted run was building, is a disk of domain "
            "'%s' now", path, who);
        return true;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "recover: removing %s: %s", path, g_strerror(errno));
        return false;
    }
    recover_act(actions, "removed %s, the temp image of an interrupted export or restore", path);
    return true;
}

static bool
touches(GPtrArray *records, const char *const *uuids)
{
    if (!uuids)
        return true;
    for (guint i = 0; i < records->len; i++) {
        const char *u = ((VsJournalRecord *)records->pdata[i])->uuid;
        for (size_t k = 0; u && uuids[k]; k++)
            if (!strcmp(u, uuids[k]))
                return true;
    }
    return false;
}

/* A recovery's first failure (FIRST) is its error; later ones are told
 * among its actions, so that one bad journal does not hide the others. */
static void
recover_failed(bool first, GPtrArray *actions, GError **error, GError **cause)
{
    if (first && error && !*error)
        g_propagate_error(error, g_steal_pointer(cause));
    else
        recover_act(actions, "%s", (*cause)->message);
}

/* Undoes what one journal's RECS say a run left behind: thaws first (a frozen
 * guest is the urgent part), then temp files, backup jobs and the overlays not
 * yet committed. FIRST: no failure was reported before, so this journal's first
 * failure becomes ERROR. True when nothing is left to do. */
static bool
recover_records(virConnectPtr conn, GPtrArray *recs, GPtrArray *actions, bool first, GError **error)
{
    /* uuid -> its last FREEZE, while no THAWED has followed it: a domain is
     * frozen again in the commit's frozen retry, after the window's THAWED. */
    g_autoptr(GHashTable) frozen = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GHashTable) committed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr(GHashTable) ended = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GHashTable) temp_done = g_hash_table_new(g_str_hash, g_str_equal);
    VsJournalRecord *begin = NULL;
    bool ok = true;

    for (guint k = 0; k < recs->len; k++) {
        VsJournalRecord *r = recs->pdata[k];
        const char *u = r->uuid;
        if (r->kind == VS_JOURNAL_FREEZE)
            g_hash_table_insert(frozen, (gpointer)(u ? u : ""), r);
        if (r->kind == VS_JOURNAL_THAWED && u)
            g_hash_table_remove(frozen, u);
        if (r->kind == VS_JOURNAL_COMMITTED && u)
            g_hash_table_add(committed, g_strdup_printf("%s/%s", u, r->disk));
        if (r->kind == VS_JOURNAL_JOB_ENDED && u)
            g_hash_table_add(ended, (gpointer)u);
        if (r->kind == VS_JOURNAL_TEMP_DONE && r->path)
            g_hash_table_add(temp_done, r->path);
        if (r->kind == VS_JOURNAL_BEGIN)
            begin = r;
    }
    for (guint k = 0; k < recs->len; k++) {
        VsJournalRecord *r = recs->pdata[k];
        g_autoptr(GError) terr = NULL;

        if (r->kind == VS_JOURNAL_FREEZE &&
            g_hash_table_lookup(frozen, r->uuid ? r->uuid : "") == r &&
            !recover_thaw(conn, r, actions, &terr)) {
            recover_failed(first && ok, actions, error, &terr);
            ok = false;
        }
    }
    for (guint k = 0; k < recs->len; k++) {
        VsJournalRecord *r = recs->pdata[k];
        g_autofree char *key = NULL;
        g_autoptr(GError) oerr = NULL;

        if (r->kind == VS_JOURNAL_TEMP) {
            const char *path = r->path;

            if ((!path || !g_hash_table_contains(temp_done, path)) &&
                !recover_temp(conn, path, actions, &oerr)) {
                recover_failed(first && ok, actions, error, &oerr);
                ok = false;
            }
            continue;
        }
        if (r->kind == VS_JOURNAL_BACKUP_JOB &&
            !recover_backup_job(conn, r, begin, g_hash_table_contains(ended, r->uuid ? r->uuid : ""),
                                actions, &oerr)) {
            recover_failed(first && ok, actions, error, &oerr);
            ok = false;
            continue;
        }
        /* A migration a killed run left: both hosts asked (recover-migrate.c). */
        if (r->kind == VS_JOURNAL_MIGRATE) {
            if (!vs_recover_migration(conn, r->domain, r->uuid, r->source, r->dest, actions, &oerr)) {
                recover_failed(first && ok, actions, error, &oerr);
                ok = false;
            }
            continue;
        }
        if (r->kind != VS_JOURNAL_OVERLAY)
            continue;
        key = g_strdup_printf("%s/%s", r->uuid, r->disk);
        if (g_hash_table_contains(committed, key))
            continue;
        if (!recover_overlay(conn, r, actions, &oerr)) {
            recover_failed(first && ok, actions, error, &oerr);
            ok = false;
        }
    }
    {
        g_autoptr(GError) serr = NULL;

        if (!recover_storage_snapshots(recs, begin, actions, &serr)) {
            recover_failed(first && ok, actions, error, &serr);
            ok = false;
        }
    }
    return ok;
}

bool
vs_recover(virConnectPtr conn, const char *state_dir, const char *const *uuids,
           GPtrArray *actions, GError **error)
{
    g_auto(GStrv) journals = vs_journal_list(state_dir);
    g_autofree char *uri = vs_control()->conn_uri(conn);
    g_autoptr(VsLink) link = vs_link_new(conn, uri);
    bool all_ok = true;

    for (size_t i = 0; journals[i]; i++) {
        g_autoptr(GPtrArray) recs = NULL;
        g_autoptr(GError) err = NULL;
        g_autofree char *base = g_path_get_basename(journals[i]);
        bool ok;
        int fd = -1;

        if (!(recs = vs_journal_read(journals[i], true, &fd, &err))) {
            /* In progress (its process holds the lock), or unreadable: not ours now. */
            if (!uuids)
                recover_act(actions, "left alone: %s", err->message);
            continue;
        }
        if (!touches(recs, uuids)) {
            close(fd);
            continue;
        }
        /* libvirtd restarted since the last journal: each step below asks
         * libvirt afresh, so a new connection is all it takes. A step that a
         * restart cuts short fails, and its journal stays for the next run. */
        if (!vs_link_revive(link, "recover", &err)) {
            recover_failed(all_ok, actions, error, &err);
            all_ok = false;
            close(fd);
            break;
        }
        conn = vs_link_conn(link);
        ok = recover_records(conn, recs, actions, all_ok, error);
        if (ok) {
            for (guint k = 0; k < recs->len; k++)
                if (((VsJournalRecord *)recs->pdata[k])->kind == VS_JOURNAL_BEGIN)
                    remove_repo_temp(recs->pdata[k], actions);
            unlink(journals[i]);
            recover_act(actions, "recovered interrupted run %.*s", (int)(strlen(base) - strlen(".jsonl")), base);
        } else {
            all_ok = false;
        }
        close(fd);
    }
    /* Not journaled: the mount registry is restore --instant's record. Only a
     * plain `recover` (no UUIDS: not the one a backup runs first) does it, as
     * it may wait for a whole disk to be copied. */
    if (!uuids) {
        g_autoptr(GError) err = NULL;

        if (!vs_link_revive(link, "recover", &err)) {
            recover_failed(all_ok, actions, error, &err);
            all_ok = false;
        } else {
            if (!vs_instant_recover(vs_link_conn(link), actions, &err)) {
                recover_failed(all_ok, actions, error, &err);
                all_ok = false;
            }
            /* A quiesce token whose guardian died: its journal's freezes were
             * thawed above; what it paused is resumed, and the token goes. */
            g_clear_error(&err);
            if (!vs_quiesce_recover(vs_link_conn(link), state_dir, actions, &err)) {
                recover_failed(all_ok, actions, error, &err);
                all_ok = false;
            }
        }
    }
    return all_ok;
}
