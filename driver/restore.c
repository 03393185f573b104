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
 * (libvirt makes new ones) and its own console logs, sockets and nvram.
 *
 * Each step has its file: restore-plan.c, restore-write.c, restore-install.c,
 * and restore-instant.c for --instant; this one runs them and makes the result. */
#include "config.h"
#include "restore-internal.h"
#include "instant.h"
#include "vs-xml.h"
#include "vs-repo.h"
#include "vs-source.h"
#include "vs-copy.h"
#include "vs-temp.h"
#include "retry.h"

#include <libvirt/virterror.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void
vs_restore_options_init(VsRestoreOptions *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->parallel_disks = 2;
    opts->shutdown_timeout = 60;
    opts->agent_timeout = 5;
    opts->copy_stall_timeout = 300;
    opts->retry_count = 3;
}

static void
disk_result_free(VsRestoreDiskResult *d)
{
    g_free(d->target); g_free(d->path); g_free(d->format); g_free(d->pool);
    g_free(d->volume); g_free(d->action); g_free(d->note); g_free(d->nbd);
    g_free(d->snapshot);
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
    if (r->pools)
        g_ptr_array_unref(r->pools);
    g_free(r);
}

void
restore_rdisk_free(RDisk *d)
{
    g_free(d->target); g_free(d->format); g_free(d->dir); g_free(d->dest); g_free(d->tmp);
    g_free(d->sink_url);
    g_free(d->vol_name); g_free(d->action); g_free(d->note); g_free(d->error);
    vs_mount_free(d->mount);
    vs_verify_problem_free(d->bad_chunk);
    vs_snap_provider_free(d->snap);
    g_free(d->snap_disk); g_free(d->clone_name); g_free(d->clone); g_free(d->pool_name);
    g_free(d);
}

void
restore_rdom_free(RDom *d)
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

void
restore_note(RDom *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(d->notes, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

void
restore_dom_fail(RDom *d, const char *fmt, ...)
{
    va_list ap;

    if (d->error)
        return;
    va_start(ap, fmt);
    d->error = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

bool
restore_domain_active(virDomainPtr dom)
{
    int state = VIR_DOMAIN_NOSTATE, reason;

    if (virDomainGetState(dom, &state, &reason, 0) < 0)
        return false;
    return state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_PAUSED ||
           state == VIR_DOMAIN_BLOCKED || state == VIR_DOMAIN_PMSUSPENDED ||
           state == VIR_DOMAIN_SHUTDOWN;
}

/* ------------------------------------------------------------------------- */

static VsRestoreResult *
make_result(Run *run)
{
    VsRestoreResult *res = g_new0(VsRestoreResult, 1);

    res->domains = g_ptr_array_new_with_free_func((GDestroyNotify)domain_result_free);
    res->pools = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < run->pool_notes->len; i++)
        g_ptr_array_add(res->pools, g_strdup(run->pool_notes->pdata[i]));
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
            k2->snapshot = restore_snap_describe(d);
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
    if (o->format && !restore_format_supported(o->format)) {
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
    if (o->from_snapshot && (o->instant || o->target_dir || o->pool || o->format)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --from-snapshot rolls disks back in place or clones them beside the "
                    "original (--as): it does not take %s", o->instant ? "--instant" :
                    o->target_dir ? "--target-dir" : o->pool ? "--pool" : "--format (a snapshot keeps "
                    "its disk's format)");
        return false;
    }
    if (o->snapshot_config && !o->from_snapshot) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "restore: --snapshot-config goes with --from-snapshot");
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
            VsRetry retry = VS_RETRY_INIT(run->opts->retry_count);
            bool ok;

            virDomainFree(r->dom);
            r->dom = NULL;
            while (!(ok = vs_link_domain(link, r->existing_uuid, &r->dom, &gen, error)) &&
                   vs_retry_again(&retry, error))
                ;
            vs_retry_note(&retry, "domain lookup", r->notes);
            if (!ok) {
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
        restore_discard_temps(run, run->doms->pdata[i]);
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
    vs_snap_config_free(run->snap_config);
    if (run->pool_needs)
        g_ptr_array_unref(run->pool_needs);
    if (run->pool_notes)
        g_ptr_array_unref(run->pool_notes);
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
    if (opts->deadline_s > 0) {
        g_autofree char *label = g_strdup_printf("SC_AGENT_TIMEOUT=%d s", opts->deadline_s);
        vs_interrupt_set_deadline(opts->deadline_s, label);
    }
    /* --instant, and a clone of a whole domain from its snapshots, boot at once. */
    if (opts->instant || (opts->from_snapshot && opts->new_name && !(opts->disks && opts->disks[0]))) {
        instant_opts = *opts;
        instant_opts.define = instant_opts.start = true;
        run.opts = opts = &instant_opts;
    }
    run.pool_notes = g_ptr_array_new_with_free_func(g_free);
    if (opts->from_snapshot && !(run.snap_config = vs_snap_config_load(opts->snapshot_config, error))) {
        vs_error_prefix(error, "restore: --from-snapshot");
        return NULL;
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
    run.doms = g_ptr_array_new_with_free_func((GDestroyNotify)restore_rdom_free);
    if (opts->pool && !open_pool(&run, error))
        goto fail;

    for (size_t i = 0; names[i]; i++) {
        RDom *r;
        bool dup = false;

        for (size_t k = 0; k < i; k++)
            dup = dup || !strcmp(names[k], names[i]);
        if (dup)
            continue;
        if (!(r = restore_plan_domain(&run, names[i], error)))
            goto fail;
        for (guint k = 0; k < run.doms->len; k++) {
            RDom *o2 = run.doms->pdata[k];
            if (!g_strcmp0(o2->new_name, r->new_name)) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                            "restore: domain '%s' is named twice", r->new_name);
                restore_rdom_free(r);
                goto fail;
            }
        }
        g_ptr_array_add(run.doms, r);
    }
    /* Nothing is created before this point: an interrupt so far leaves nothing.
     * The pools --define-pools brings back come first (they stay). */
    if (!vs_interrupt_check("restore", error) || !restore_pools_define(&run, error) ||
        !journal_temps(&run, error))
        goto fail;
    if (opts->from_snapshot) {
        if (!restore_snap_write_phase(&run, error))
            goto fail;
    } else if (opts->instant) {
        if (!restore_instant_check_chunks(&run, error))
            goto fail;
        restore_instant_write_phase(&run);
    } else if (!restore_write_phase(&run, error)) {
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
        restore_finish_domain(&run, run.doms->pdata[i]);
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
        restore_instant_copy_phase(&run);
    }
    result = make_result(&run);
    run_clear(&run);
    return result;

fail:
    discard_all(&run);
    run_clear(&run);
    return NULL;
}
