/* `virtsnap backup` and `virtsnap recover`. Backup prints a progress bar per
 * disk when standard error is a terminal, a short summary or --json at the end,
 * and exits 1 if any domain failed (the others are in the backup). Recover lists
 * what it repaired. The hidden `guardian` command is the guardian process the
 * backup starts from this same executable. */
#include "config.h"
#include "virtsnap.h"
#include "vs-backup.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    bool tty;
    GHashTable *pct;     /* "dom/disk" -> percent */
    gint64 last_draw;
} Bar;

static void
draw(Bar *bar, bool force)
{
    GHashTableIter it;
    gpointer k, v;
    g_autoptr(GString) line = g_string_new("\r\033[K");
    gint64 now = g_get_monotonic_time();

    if (!force && now - bar->last_draw < 200000)
        return;
    bar->last_draw = now;
    g_hash_table_iter_init(&it, bar->pct);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        int p = GPOINTER_TO_INT(v) - 1;
        int filled = p / 5;
        g_string_append_printf(line, "%s [%.*s%.*s] %3d%%  ", (char *)k, filled,
                               "####################", 20 - filled, "....................", p);
    }
    fputs(line->str, stderr);
    fflush(stderr);
}

static void
on_progress(VsBackupPhase phase, const char *dom, const char *disk, uint64_t done, uint64_t total,
            void *opaque)
{
    Bar *bar = opaque;

    if (!bar->tty)
        return;
    switch (phase) {
    case VS_BACKUP_PHASE_FREEZE:
        fprintf(stderr, "\r\033[Kfreezing and snapshotting %" G_GUINT64_FORMAT " domain(s)...\n", total);
        break;
    case VS_BACKUP_PHASE_COPY:
        if (dom && disk && total) {
            int p = (int)(done * 100 / total);
            g_hash_table_insert(bar->pct, g_strdup_printf("%s/%s", dom, disk), GINT_TO_POINTER(p + 1));
            draw(bar, done == total);
        }
        break;
    case VS_BACKUP_PHASE_COMMIT:
        if (done == 0) {
            draw(bar, true);
            fprintf(stderr, "\n");
            g_hash_table_remove_all(bar->pct);
            fprintf(stderr, "committing %s/%s back...\n", dom, disk);
        }
        break;
    default:
        break;
    }
}

static char *
result_json(const VsBackupResult *r)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "id");
    r->id ? json_builder_add_string_value(b, r->id) : json_builder_add_null_value(b);
    json_builder_set_member_name(b, "domains");
    json_builder_begin_array(b);
    for (guint i = 0; i < r->domains->len; i++) {
        const VsBackupDomainResult *d = r->domains->pdata[i];
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, d->name);
        json_builder_set_member_name(b, "ok");
        json_builder_add_boolean_value(b, d->ok);
        json_builder_set_member_name(b, "consistency");
        json_builder_add_string_value(b, d->consistency);
        json_builder_set_member_name(b, "freeze_ms");
        d->freeze_ms >= 0 ? json_builder_add_int_value(b, d->freeze_ms) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "frozen_at_ms");
        d->frozen_at >= 0 ? json_builder_add_int_value(b, d->frozen_at) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "thawed_at_ms");
        d->thawed_at >= 0 ? json_builder_add_int_value(b, d->thawed_at) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "note");
        d->note ? json_builder_add_string_value(b, d->note) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "error");
        d->error ? json_builder_add_string_value(b, d->error) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "mode");
        json_builder_add_string_value(b, d->mode);
        json_builder_set_member_name(b, "level");
        json_builder_add_string_value(b, d->level);
        json_builder_set_member_name(b, "base");
        d->base ? json_builder_add_string_value(b, d->base) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "checkpoint");
        d->checkpoint ? json_builder_add_string_value(b, d->checkpoint) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "backup_xml");
        d->backup_xml ? json_builder_add_string_value(b, d->backup_xml) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "checkpoint_xml");
        d->checkpoint_xml ? json_builder_add_string_value(b, d->checkpoint_xml) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "disks");
        json_builder_begin_array(b);
        for (guint k = 0; k < d->disks->len; k++) {
            const VsBackupDiskResult *dr = d->disks->pdata[k];
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "target");
            json_builder_add_string_value(b, dr->target);
            json_builder_set_member_name(b, "bytes_read");
            json_builder_add_int_value(b, dr->bytes_read);
            json_builder_set_member_name(b, "bytes_stored");
            json_builder_add_int_value(b, dr->bytes_stored);
            json_builder_set_member_name(b, "data_path");
            dr->data_path ? json_builder_add_string_value(b, dr->data_path)
                          : json_builder_add_null_value(b);
            json_builder_set_member_name(b, "read");
            json_builder_add_string_value(b, dr->read);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "group_freeze_ms");
    r->group_freeze_ms >= 0 ? json_builder_add_int_value(b, r->group_freeze_ms)
                            : json_builder_add_null_value(b);
    json_builder_set_member_name(b, "phases_ms");
    json_builder_begin_object(b);
    {
        const struct { const char *name; int64_t ms; } phases[] = {
            { "prepare", r->prepare_ms }, { "freeze", r->freeze_phase_ms }, { "copy", r->copy_ms },
            { "end", r->end_ms }, { "manifest", r->manifest_ms },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(phases); i++) {
            json_builder_set_member_name(b, phases[i].name);
            json_builder_add_int_value(b, phases[i].ms);
        }
    }
    json_builder_end_object(b);
    json_builder_set_member_name(b, "recovered");
    json_builder_begin_array(b);
    for (guint i = 0; i < r->notes->len; i++)
        json_builder_add_string_value(b, r->notes->pdata[i]);
    json_builder_end_array(b);
    json_builder_end_object(b);
    return vs_json_builder_text(b, true);
}

static void
print_summary(const VsBackupResult *r)
{
    for (guint i = 0; i < r->notes->len; i++)
        printf("recovered first: %s\n", (char *)r->notes->pdata[i]);
    if (r->id)
        printf("backup %s", r->id);
    else
        printf("no backup written");
    if (r->group_freeze_ms >= 0)
        printf(" (group frozen %" G_GINT64_FORMAT " ms)", r->group_freeze_ms);
    printf("\n");
    for (guint i = 0; i < r->domains->len; i++) {
        const VsBackupDomainResult *d = r->domains->pdata[i];
        uint64_t rd = 0, st = 0;
        for (guint k = 0; k < d->disks->len; k++) {
            rd += ((VsBackupDiskResult *)d->disks->pdata[k])->bytes_read;
            st += ((VsBackupDiskResult *)d->disks->pdata[k])->bytes_stored;
        }
        if (d->ok) {
            g_autofree char *rs = g_format_size(rd), *ss = g_format_size(st);
            printf("  %-20s %-9s", d->name, d->consistency);
            if (d->freeze_ms >= 0)
                printf(" frozen %" G_GINT64_FORMAT " ms", d->freeze_ms);
            printf("  %s%s%s, read %s, stored %s new\n", d->level, d->base ? " since " : "",
                   d->base ? d->base : "", rs, ss);
        } else {
            printf("  %-20s FAILED\n", d->name);
        }
        if (d->note)
            printf("      note: %s\n", d->note);
    }
}

int
vs_cmd_backup(const VsGlobal *g, int argc, char **argv)
{
    gboolean json = FALSE, all = FALSE, init = FALSE;
    char *repo = NULL, *quiesce = NULL, *overlay_dir = NULL, *state_dir = NULL;
    char *data_path = NULL, *iscsi_auth = NULL;
    char *mode = NULL, *level = NULL, *backup_xml = NULL, *checkpoint_xml = NULL, *compress = NULL;
    char *push_dir = NULL;
    gboolean push = FALSE;
    double max_freeze = 10.0;
    int agent_timeout = 5, commit_timeout = 600, parallel = 2, copy_nice = 10, commit_mib = 0;
    int lock_wait = 0;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory (default $VIRTSNAP_REPO)", "DIR" },
        { "init", 0, 0, G_OPTION_ARG_NONE, &init, "create the repository if it does not exist", NULL },
        { "all", 'a', 0, G_OPTION_ARG_NONE, &all, "back up every domain", NULL },
        { "quiesce", 0, 0, G_OPTION_ARG_STRING, &quiesce, "require, try (default) or off", "MODE" },
        { "data-path", 0, 0, G_OPTION_ARG_STRING, &data_path, "disks on NFS/iSCSI: auto (default: direct where "
          "reachable, else the host's view), direct (libnfs/libiscsi from here) or host", "PATH" },
        { "iscsi-auth", 0, 0, G_OPTION_ARG_FILENAME, &iscsi_auth, "CHAP credentials for direct iSCSI reads: "
          "a root-only file of user= and password= lines", "FILE" },
        { "mode", 0, 0, G_OPTION_ARG_STRING, &mode, "overlay (default), begin (libvirt backup job + checkpoint) or auto", "MODE" },
        { "level", 0, 0, G_OPTION_ARG_STRING, &level, "begin mode: inc (default: since the last backup, when the checkpoint chain is usable), diff (since the chain's last full backup) or full", "LEVEL" },
        { "backup-xml", 0, 0, G_OPTION_ARG_FILENAME, &backup_xml, "begin mode: take the disks and scratch files "
          "from this domainbackup XML (what virsh backup-begin takes; mode='pull' or 'push')", "FILE" },
        { "push", 0, 0, G_OPTION_ARG_NONE, &push, "begin mode: a push-mode job (QEMU writes each disk, or "
          "an incremental's changes, into a qcow2 that virtsnap reads, then removes)", NULL },
        { "push-dir", 0, 0, G_OPTION_ARG_FILENAME, &push_dir, "with --push (implied): put its files here "
          "(default: the state directory)", "DIR" },
        { "checkpoint-xml", 0, 0, G_OPTION_ARG_FILENAME, &checkpoint_xml, "begin mode: the description and "
          "bitmap-less disks of the checkpoint from this domaincheckpoint XML", "FILE" },
        { "max-freeze", 0, 0, G_OPTION_ARG_DOUBLE, &max_freeze, "longest a guest may stay frozen, seconds (default 10)", "SECS" },
        { "agent-timeout", 0, 0, G_OPTION_ARG_INT, &agent_timeout, "bound on each guest-agent call, seconds (default 5)", "SECS" },
        { "commit-timeout", 0, 0, G_OPTION_ARG_INT, &commit_timeout, "bound on each commit to converge, seconds (default 600); then one more with the guest frozen", "SECS" },
        { "commit-bandwidth", 0, 0, G_OPTION_ARG_INT, &commit_mib, "limit each commit to MIB MiB/s while the guest runs (default 0: no limit)", "MIB" },
        { "overlay-dir", 0, 0, G_OPTION_ARG_FILENAME, &overlay_dir, "put overlays here instead of beside each disk", "DIR" },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "journal and guardian log (default /var/lib/virtsnap)", "DIR" },
        { "lock-wait", 0, 0, G_OPTION_ARG_INT, &lock_wait, "wait up to SECS for a domain another run is "
          "working on (default 0: fail at once)", "SECS" },
        { "parallel", 0, 0, G_OPTION_ARG_INT, &parallel, "disks copied at once (default 2)", "N" },
        { "compress", 0, 0, G_OPTION_ARG_STRING, &compress, "new chunks: zstd (default) or off (stored "
          "uncompressed: for a repository on a compressing file system, or a host short of CPU)", "HOW" },
        { "copy-nice", 0, 0, G_OPTION_ARG_INT, &copy_nice, "lower the copy's CPU priority by N while the guests run (default 10, 0 to 19)", "N" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print the result as JSON", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("(--all | DOMAIN...) - back up running and shut-off domains");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsBackupResult) res = NULL;
    VsBackupOptions opts;
    Bar bar = { 0 };
    virConnectPtr conn;
    int rc = 0;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        vs_print_error("backup: %s (see virtsnap backup --help)", err->message);
        return 2;
    }
    vs_backup_options_init(&opts);
    if (data_path && !vs_data_path_from_string(data_path, &opts.data_path)) {
        vs_print_error("backup: --data-path=%s: use auto, direct or host", data_path);
        return 2;
    }
    opts.iscsi_auth_file = iscsi_auth;
    if (quiesce && !vs_quiesce_mode_from_string(quiesce, &opts.quiesce)) {
        vs_print_error("backup: --quiesce=%s: use require, try or off", quiesce);
        return 2;
    }
    if (mode && !vs_backup_method_from_string(mode, &opts.mode)) {
        vs_print_error("backup: --mode=%s: use overlay, begin or auto", mode);
        return 2;
    }
    if (compress && strcmp(compress, "zstd") != 0 && strcmp(compress, "off") != 0) {
        vs_print_error("backup: --compress=%s: use zstd or off", compress);
        return 2;
    }
    opts.no_compress = compress && strcmp(compress, "off") == 0;
    if (level && !vs_backup_level_from_string(level, &opts.level)) {
        vs_print_error("backup: --level=%s: use inc, diff or full", level);
        return 2;
    }
    if (backup_xml || checkpoint_xml) {
        if (mode && opts.mode != VS_BACKUP_METHOD_BEGIN) {
            vs_print_error("backup: --backup-xml and --checkpoint-xml describe a backup job: they go "
                           "with --mode=begin (the default with them), not --mode=%s", mode);
            return 2;
        }
        opts.mode = VS_BACKUP_METHOD_BEGIN;
        opts.backup_xml_path = backup_xml;
        opts.checkpoint_xml_path = checkpoint_xml;
    }
    if (push || push_dir) {
        if (mode && opts.mode == VS_BACKUP_METHOD_OVERLAY) {
            vs_print_error("backup: --push and --push-dir choose how a backup job hands over the "
                           "disks: they go with --mode=begin (the default with them) or --mode=auto");
            return 2;
        }
        if (!mode)
            opts.mode = VS_BACKUP_METHOD_BEGIN;
        opts.push = TRUE;
        opts.push_dir = push_dir;
    }
    if (level && opts.mode == VS_BACKUP_METHOD_OVERLAY) {
        vs_print_error("backup: --level goes with --mode=begin or --mode=auto (an overlay backup "
                       "reads every disk whole)");
        return 2;
    }
    if (all && argc > 1) {
        vs_print_error("backup: --all and domain names exclude each other");
        return 2;
    }
    if (max_freeze <= 0 || max_freeze > 600 || agent_timeout < 1 || commit_timeout < 1 || parallel < 1 ||
        copy_nice < 0 || copy_nice > 19 || commit_mib < 0 || lock_wait < 0) {
        vs_print_error("backup: --max-freeze must be in (0, 600] s; --agent-timeout, --commit-timeout "
                       "and --parallel at least 1; --copy-nice 0 to 19; --commit-bandwidth and "
                       "--lock-wait 0 or more");
        return 2;
    }
    opts.repo_path = repo ? repo : g_getenv("VIRTSNAP_REPO");
    opts.init_repo = init;
    opts.state_dir = state_dir;
    opts.lock_wait = lock_wait;
    opts.overlay_dir = overlay_dir;
    opts.uri = vs_default_uri(g->uri);
    opts.max_freeze_ms = (int)(max_freeze * 1000);
    opts.agent_timeout = agent_timeout;
    opts.commit_timeout = commit_timeout;
    opts.commit_bandwidth = (unsigned long)commit_mib * 1024 * 1024;
    opts.parallel_disks = parallel;
    opts.copy_nice = copy_nice;
    bar.tty = !json && !g->quiet && isatty(STDERR_FILENO);
    bar.pct = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    opts.progress = on_progress;
    opts.progress_opaque = &bar;

    if (!(conn = vs_conn_open(g->uri, &err))) {
        vs_print_error("backup: %s", err->message);
        g_hash_table_unref(bar.pct);
        return 1;
    }
    /* A signal from here on stops the backup at its next safe point: the
     * guests are thawed and put back on their disks, jobs aborted, and no
     * backup is written (driver/backup.c). */
    vs_interrupt_install();
    res = vs_backup_run(conn, (const char *const *)(argv + 1), all, &opts, &err);
    vs_conn_close(conn);
    if (bar.tty && g_hash_table_size(bar.pct) > 0)
        fputs("\n", stderr);
    g_hash_table_unref(bar.pct);
    if (!res) {
        vs_print_error("%s", err->message);
        return vs_interrupted() ? vs_interrupt_exit_status(vs_interrupted()) : 1;
    }
    if (json) {
        g_autofree char *text = result_json(res);
        fputs(text, stdout);
    } else if (!g->quiet) {
        print_summary(res);
    }
    for (guint i = 0; i < res->domains->len; i++) {
        const VsBackupDomainResult *d = res->domains->pdata[i];
        if (!d->ok) {
            vs_print_error("%s", d->error);
            rc = 1;
        }
    }
    if (!res->id)
        rc = 1;
    if (rc && vs_interrupted())
        rc = vs_interrupt_exit_status(vs_interrupted());
    return rc;
}

int
vs_cmd_recover(const VsGlobal *g, int argc, char **argv)
{
    char *state_dir = NULL;
    GOptionEntry entries[] = {
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "where the journals are (default /var/lib/virtsnap)", "DIR" },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("- finish or undo interrupted backups");
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    virConnectPtr conn;
    bool ok;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err) || argc > 1) {
        vs_print_error("recover: %s (see virtsnap recover --help)", err ? err->message : "takes no arguments");
        return 2;
    }
    if (!(conn = vs_conn_open(g->uri, &err))) {
        vs_print_error("recover: %s", err->message);
        return 1;
    }
    ok = vs_recover(conn, state_dir, NULL, actions, &err);
    vs_conn_close(conn);
    for (guint i = 0; i < actions->len; i++)
        printf("%s\n", (char *)actions->pdata[i]);
    if (!ok) {
        vs_print_error("%s", err ? err->message : "recover: some leftovers could not be repaired");
        return 1;
    }
    if (actions->len == 0 && !g->quiet)
        printf("nothing to recover\n");
    return 0;
}

int
vs_cmd_guardian(const VsGlobal *g, int argc, char **argv)
{
    (void)g;
    return vs_guardian_main(argc, argv);
}
