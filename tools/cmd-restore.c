/* `virtsnap restore`: options in, vs_restore_run, a summary or --json out.
 * Exit 0 when every domain was restored, 1 when the request was refused
 * (nothing touched) or some domain failed (each failure on standard error). */
#include "config.h"
#include "virtsnap.h"
#include "vs-restore.h"
#include "vs-interrupt.h"
#include "vs-snapshot.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

/* The result as JSON; R NULL: no domains, for a restore refused as a whole,
 * ERROR saying why. */
static char *
result_json(const VsRestoreResult *r, const char *error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    vs_json_add_str(b, "error", error);
    json_builder_set_member_name(b, "domains");
    json_builder_begin_array(b);
    for (guint i = 0; r && i < r->domains->len; i++) {
        const VsRestoreDomainResult *d = r->domains->pdata[i];

        json_builder_begin_object(b);
        vs_json_add_str(b, "name", d->name);
        vs_json_add_str(b, "restored_as", d->restored_as);
        vs_json_add_str(b, "backup", d->backup_id);
        vs_json_add_bool(b, "ok", d->ok);
        vs_json_add_str(b, "error", d->error);
        vs_json_add_bool(b, "in_place", d->in_place);
        vs_json_add_bool(b, "stopped", d->stopped);
        vs_json_add_bool(b, "defined", d->defined);
        vs_json_add_bool(b, "started", d->started);
        vs_json_add_str(b, "xml", d->xml_path);
        vs_json_add_str(b, "define_command", d->define_command);
        vs_json_add_bool(b, "instant", d->instant);
        vs_json_add_int_or_null(b, "running_after_ms", d->running_ms);
        vs_json_add_int_or_null(b, "copied_after_ms", d->copied_ms);
        json_builder_set_member_name(b, "disks");
        json_builder_begin_array(b);
        for (guint k = 0; k < d->disks->len; k++) {
            const VsRestoreDiskResult *k2 = d->disks->pdata[k];

            json_builder_begin_object(b);
            vs_json_add_str(b, "target", k2->target);
            vs_json_add_str(b, "path", k2->path);
            vs_json_add_str(b, "format", k2->format);
            vs_json_add_str(b, "pool", k2->pool);
            vs_json_add_str(b, "volume", k2->volume);
            vs_json_add_int(b, "virtual_size", (gint64)k2->virtual_size);
            vs_json_add_str(b, "action", k2->action);
            vs_json_add_str(b, "note", k2->note);
            vs_json_add_str(b, "nbd", k2->nbd);
            vs_json_add_str(b, "snapshot", k2->snapshot);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_set_member_name(b, "notes");
        json_builder_begin_array(b);
        for (guint k = 0; k < d->notes->len; k++)
            json_builder_add_string_value(b, d->notes->pdata[k]);
        json_builder_end_array(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "pools");
    json_builder_begin_array(b);
    for (guint i = 0; r && r->pools && i < r->pools->len; i++)
        json_builder_add_string_value(b, r->pools->pdata[i]);
    json_builder_end_array(b);
    json_builder_end_object(b);
    return vs_json_builder_text(b, true);
}

static void
print_summary(const VsRestoreResult *r)
{
    for (guint i = 0; r->pools && i < r->pools->len; i++)
        printf("%s\n", (char *)r->pools->pdata[i]);
    for (guint i = 0; i < r->domains->len; i++) {
        const VsRestoreDomainResult *d = r->domains->pdata[i];

        if (!d->ok) {
            printf("%s: FAILED (backup %s)\n", d->name, d->backup_id);
        } else {
            printf("%s", d->name);
            if (g_strcmp0(d->name, d->restored_as) != 0)
                printf(" as %s", d->restored_as);
            printf(": restored from backup %s%s", d->backup_id, d->in_place ? " in place" : "");
            if (d->stopped)
                printf(", stopped first");
            if (d->defined)
                printf(", defined");
            if (d->started)
                printf(", started");
            if (d->running_ms >= 0)
                printf(" (running after %.1f s", d->running_ms / 1000.0);
            if (d->running_ms >= 0 && d->copied_ms >= 0)
                printf(", copied into place after %.1f s", d->copied_ms / 1000.0);
            if (d->running_ms >= 0)
                printf(")");
            printf("\n");
        }
        for (guint k = 0; k < d->disks->len; k++) {
            const VsRestoreDiskResult *k2 = d->disks->pdata[k];
            g_autofree char *size = g_format_size(k2->virtual_size);

            printf("  %-5s %s (%s, %s, %s)", k2->target, k2->path, k2->format, size, k2->action);
            if (k2->volume)
                printf(" volume %s of pool %s", k2->volume, k2->pool);
            printf("\n");
            if (k2->snapshot)
                printf("        from storage snapshot %s\n", k2->snapshot);
            if (k2->note)
                printf("        note: %s\n", k2->note);
            if (k2->nbd)
                printf("        still reads the backup through %s\n", k2->nbd);
        }
        for (guint k = 0; k < d->notes->len; k++)
            printf("  note: %s\n", (char *)d->notes->pdata[k]);
        if (d->define_command)
            printf("  definition written to %s; define it with:\n    %s\n", d->xml_path,
                   d->define_command);
    }
}

/* "a,b" and "c" -> a, b, c (empty items dropped). */
static void
split_into(GPtrArray *out, const char *list)
{
    g_auto(GStrv) parts = g_strsplit(list, ",", -1);

    for (size_t i = 0; parts[i]; i++) {
        g_strstrip(parts[i]);
        if (*parts[i])
            g_ptr_array_add(out, g_strdup(parts[i]));
    }
}

static void
print_progress(const char *message, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "restore: %s\n", message);
}

/* What the command line left out, from the configuration (option >
 * environment > file), then the built-in defaults. No NAMES: those of
 * KVM_RESTORE_VM_LIST, which need not exist (a VM deleted since its backup is
 * restored too). */
static void
config_defaults(const VsConfig *cfg, GPtrArray *names, int *parallel, int *agent_timeout, int *deadline)
{
    const char *const *cfg_names = names->len == 0 ? vs_config_vms(NULL, "KVM_RESTORE_VM_LIST", false, NULL) : NULL;

    for (guint i = 0; cfg_names && cfg_names[i]; i++)
        g_ptr_array_add(names, g_strdup(cfg_names[i]));
    if (*parallel == G_MININT)
        *parallel = vs_config_int(cfg, "VIRTSNAP_PARALLEL_DISKS", 2);
    if (*agent_timeout == G_MININT)
        *agent_timeout = vs_config_int(cfg, "VIRTSNAP_AGENT_TIMEOUT", 5);
    if (*deadline == G_MININT)
        *deadline = vs_config_int(cfg, "SC_AGENT_TIMEOUT", 0);
}

/* ARGV's words after the command's name (ARGC of them, the first skipped) and
 * the comma-separated words of LISTS (freed), into ARR. */
static void
collect_names(GPtrArray *arr, int argc, char **argv, char **lists)
{
    for (int i = 1; i < argc; i++)
        g_ptr_array_add(arr, g_strdup(argv[i]));
    for (size_t i = 0; lists && lists[i]; i++)
        split_into(arr, lists[i]);
    g_strfreev(lists);
}

/* RES on standard output (JSON or the summary), each failed domain's error on
 * standard error; the exit status: 0, 1 when a domain failed, or an
 * interrupt's. */
static int
report(const VsRestoreResult *res, bool json, bool quiet)
{
    int rc = 0;

    if (json) {
        g_autofree char *text = result_json(res, NULL);
        fputs(text, stdout);
    } else if (!quiet) {
        print_summary(res);
    }
    for (guint i = 0; i < res->domains->len; i++) {
        const VsRestoreDomainResult *d = res->domains->pdata[i];
        if (!d->ok) {
            vs_print_error("%s", d->error);
            rc = 1;
        }
    }
    if (rc && vs_interrupted())
        rc = vs_interrupt_exit_status(vs_interrupted());
    return rc;
}

/* Why a restore cannot run against URI, or NULL: a restore writes the disks as
 * files here and gives libvirt their paths, which on another host would be the
 * hypervisor's. */
static char *
remote_refusal(const char *g_uri)
{
    const char *uri = vs_default_uri(g_uri);
    g_autofree char *remote = vs_uri_remote_host(uri);

    if (!remote)
        return NULL;
    return g_strdup_printf("restore: %s is another host (-c %s), and a remote run cannot restore: it "
                           "writes the disk images as files of this host, which the hypervisor's "
                           "domain could not use; run `virtsnap restore` on the hypervisor, with the "
                           "repository reachable there (a shared mount, or a copy)", remote, uri);
}

int
vs_cmd_restore(const VsGlobal *g, int argc, char **argv)
{
    gboolean json = FALSE, define = FALSE, start = FALSE, force = FALSE, instant = FALSE, verify_hash = FALSE;
    gboolean from_snapshot = FALSE, define_pools = FALSE;
    g_autofree char *repo = NULL, *backup = NULL, *as = NULL, *target_dir = NULL, *pool = NULL;
    g_autofree char *snapshot_config = NULL;
    g_autofree char *format = NULL, *state_dir = NULL;
    char **lists = NULL, **disk_lists = NULL;
    int parallel = G_MININT, shutdown_timeout = 60, agent_timeout = G_MININT, lock_wait = 0, deadline = G_MININT;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory (default $VIRTSNAP_REPO)", "DIR" },
        { "backup", 'b', 0, G_OPTION_ARG_FILENAME, &backup, "backup id or unique prefix (default, or 'latest': the newest backup that holds each domain)", "ID" },
        { "list", 'l', 0, G_OPTION_ARG_FILENAME_ARRAY, &lists, "domains to restore, comma-separated", "VM1,VM2" },
        { "as", 0, 0, G_OPTION_ARG_FILENAME, &as, "restore as a new domain NAME beside the original", "NAME" },
        { "target-dir", 't', 0, G_OPTION_ARG_FILENAME, &target_dir, "write the disks into DIR as NAME-TARGET.FMT", "DIR" },
        { "pool", 'p', 0, G_OPTION_ARG_FILENAME, &pool, "write the disks into volumes of a dir/fs/netfs pool", "POOL" },
        { "disks", 'd', 0, G_OPTION_ARG_FILENAME_ARRAY, &disk_lists, "restore only these disks (targets, comma-separated)", "vda,vdb" },
        { "format", 'f', 0, G_OPTION_ARG_FILENAME, &format, "raw or qcow2 (default: each disk's own)", "FMT" },
        { "define", 0, 0, G_OPTION_ARG_NONE, &define, "define the restored domain in libvirt", NULL },
        { "start", 0, 0, G_OPTION_ARG_NONE, &start, "start it (implies --define)", NULL },
        { "force", 0, 0, G_OPTION_ARG_NONE, &force, "stop a running domain, replace an existing name or file", NULL },
        { "verify-hash", 0, 0, G_OPTION_ARG_NONE, &verify_hash, "re-hash every chunk with SHA-256 as it is written "
          "(default: its zstd checksum and size are checked)", NULL },
        { "instant", 0, 0, G_OPTION_ARG_NONE, &instant, "start the domain at once on the backup served over NBD, copy its disks into place while it runs (implies --start)", NULL },
        { "from-snapshot", 0, 0, G_OPTION_ARG_NONE, &from_snapshot, "from the storage snapshots the backup "
          "recorded: in place by rollback, or with --as as thin clones beside the original (started)", NULL },
        { "snapshot-config", 0, 0, G_OPTION_ARG_FILENAME, &snapshot_config, "--from-snapshot: the storage "
          "snapshot configuration (default " VS_SNAP_CONFIG_DEFAULT ")", "FILE" },
        { "define-pools", 0, 0, G_OPTION_ARG_NONE, &define_pools, "define and start a storage pool a restored "
          "disk needs that no longer exists, from the XML the backup saved", NULL },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "temporary images and definitions (default /var/lib/virtsnap)", "DIR" },
        { "lock-wait", 0, 0, G_OPTION_ARG_INT, &lock_wait, "wait up to SECS for a domain another run is "
          "working on (default 0: fail at once; at most 86400)", "SECS" },
        { "parallel", 0, 0, G_OPTION_ARG_INT, &parallel, "disks written at once (default 2, 1 to 64)", "N" },
        { "shutdown-timeout", 0, 0, G_OPTION_ARG_INT, &shutdown_timeout, "--force: seconds to wait for a graceful shutdown (default 60, at most 86400)", "SECS" },
        { "agent-timeout", 0, 0, G_OPTION_ARG_INT, &agent_timeout, "bound on each guest-agent call, seconds (default 5, 1 to 300)", "SECS" },
        { "deadline", 0, 0, G_OPTION_ARG_INT, &deadline, "stop the whole run after SECS and unwind it, as on "
          "an interrupt (default $SC_AGENT_TIMEOUT or the configuration's; 0: none)", "SECS" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print the result as JSON (on a failure too: its \"error\")", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx =
        g_option_context_new("(DOMAIN... | --list VM1,VM2) - restore domains from a backup (none: those of "
                             "KVM_RESTORE_VM_LIST)");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) disks = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *refusal = NULL;
    VsRestoreOptions opts;
    virConnectPtr conn;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        g_autofree char *msg = g_strdup_printf("restore: %s (see virtsnap restore --help)", err->message);
        json = json || vs_argv_has(argc, argv, "--json");
        return vs_fail_with(2, msg, json ? result_json(NULL, msg) : NULL);
    }
    collect_names(names, argc, argv, lists);
    collect_names(disks, 0, NULL, disk_lists);
    config_defaults(g->config, names, &parallel, &agent_timeout, &deadline);
    g_ptr_array_add(names, NULL);
    g_ptr_array_add(disks, NULL);

    vs_restore_options_init(&opts);
    opts.repo_path = vs_repo_arg(repo);
    opts.backup_id = backup;
    opts.new_name = as;
    opts.target_dir = target_dir;
    opts.pool = pool;
    opts.disks = disks->len > 1 ? (const char *const *)disks->pdata : NULL;
    opts.format = format;
    opts.define = define;
    opts.start = start;
    opts.force = force;
    opts.state_dir = vs_cfg("VIRTSNAP_STATE_DIR", state_dir);
    opts.lock_wait = lock_wait;
    opts.uri = g->uri ? g->uri : g_getenv("LIBVIRT_DEFAULT_URI");
    opts.parallel_disks = (unsigned)parallel;
    opts.shutdown_timeout = shutdown_timeout;
    opts.agent_timeout = agent_timeout;
    opts.instant = instant;
    opts.verify_hash = verify_hash;
    opts.from_snapshot = from_snapshot;
    opts.snapshot_config = vs_cfg("VIRTSNAP_SNAPSHOT_CONFIG", snapshot_config);
    opts.retry_count = vs_config_int(g->config, "KVM_CMD_RETRY_COUNT", opts.retry_count);
    opts.deadline_s = deadline;
    opts.define_pools = define_pools;
    {
        const VsIntOption ints[] = {      /* as parsed */
            { "--parallel", parallel, 1, 64 },
            { "--shutdown-timeout", shutdown_timeout, 0, 86400 },
            { "--agent-timeout", agent_timeout, 1, 300 },
            { "--lock-wait", lock_wait, 0, 86400 },
            { "--deadline", deadline, 0, 604800 },
        };
        if (!vs_check_int_options("restore", ints, G_N_ELEMENTS(ints), &err) ||
            !vs_restore_check_options((const char *const *)names->pdata, &opts, &err))
            return vs_fail_with(2, err->message, json ? result_json(NULL, err->message) : NULL);
    }
    if ((refusal = remote_refusal(g->uri)))
        return vs_fail_with(2, refusal, json ? result_json(NULL, refusal) : NULL);
    if (!g->quiet)
        opts.progress = print_progress;

    if (!(conn = vs_conn_open(g->uri, &err))) {
        g_autofree char *msg = g_strdup_printf("restore: %s", err->message);
        return vs_fail_with(1, msg, json ? result_json(NULL, msg) : NULL);
    }
    /* A signal from here on stops the restore at its next safe point, which
     * removes what it wrote and leaves each domain as it was (driver/restore.c). */
    vs_interrupt_install();
    res = vs_restore_run(conn, (const char *const *)names->pdata, &opts, &err);
    vs_conn_close(conn);
    if (!res)
        return vs_fail_with(vs_interrupted() ? vs_interrupt_exit_status(vs_interrupted()) : 1, err->message,
                            json ? result_json(NULL, err->message) : NULL);
    return report(res, json, g->quiet);
}
