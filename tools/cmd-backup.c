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

/* D's notes in one line, as printed ("; " between them), or NULL when none. */
static char *
joined_notes(const VsBackupDomainResult *d)
{
    g_autoptr(GStrvBuilder) sb = g_strv_builder_new();
    g_auto(GStrv) notes = NULL;

    if (!d->notes || d->notes->len == 0)
        return NULL;
    for (guint i = 0; i < d->notes->len; i++)
        g_strv_builder_add(sb, d->notes->pdata[i]);
    notes = g_strv_builder_end(sb);
    return g_strjoinv("; ", notes);
}

/* The result as JSON; R NULL: the same members, empty, for a run that failed
 * before any domain, ERROR saying why. */
static char *
result_json(const VsBackupResult *r, const char *error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    vs_json_add_str(b, "id", r ? r->id : NULL);
    vs_json_add_str(b, "error", error);
    json_builder_set_member_name(b, "domains");
    json_builder_begin_array(b);
    for (guint i = 0; r && i < r->domains->len; i++) {
        const VsBackupDomainResult *d = r->domains->pdata[i];
        g_autofree char *note = joined_notes(d);
        json_builder_begin_object(b);
        vs_json_add_str(b, "name", d->name);
        vs_json_add_bool(b, "ok", d->ok);
        vs_json_add_str(b, "consistency", d->consistency);
        vs_json_add_int_or_null(b, "freeze_ms", d->freeze_ms);
        vs_json_add_int_or_null(b, "frozen_at_ms", d->frozen_at);
        vs_json_add_int_or_null(b, "thawed_at_ms", d->thawed_at);
        vs_json_add_str(b, "note", note);
        json_builder_set_member_name(b, "notes");
        json_builder_begin_array(b);
        for (guint k = 0; d->notes && k < d->notes->len; k++)
            json_builder_add_string_value(b, d->notes->pdata[k]);
        json_builder_end_array(b);
        vs_json_add_str(b, "error", d->error ? d->error->message : NULL);
        vs_json_add_str(b, "aborted", d->aborted);
        vs_json_add_str(b, "mode", d->mode);
        vs_json_add_str(b, "level", d->level);
        vs_json_add_str(b, "base", d->base);
        vs_json_add_str(b, "checkpoint", d->checkpoint);
        vs_json_add_str(b, "backup_xml", d->backup_xml);
        vs_json_add_str(b, "checkpoint_xml", d->checkpoint_xml);
        vs_json_add_int_or_null(b, "overlay_ms", d->overlay_ms);
        json_builder_set_member_name(b, "disks");
        json_builder_begin_array(b);
        for (guint k = 0; k < d->disks->len; k++) {
            const VsBackupDiskResult *dr = d->disks->pdata[k];
            json_builder_begin_object(b);
            vs_json_add_str(b, "target", dr->target);
            vs_json_add_int(b, "bytes_read", dr->bytes_read);
            vs_json_add_int(b, "bytes_stored", dr->bytes_stored);
            vs_json_add_str(b, "data_path", dr->data_path);
            vs_json_add_str(b, "read", dr->read);
            json_builder_set_member_name(b, "snapshot");
            if (dr->snapshot_handle) {
                json_builder_begin_object(b);
                vs_json_add_str(b, "provider", dr->snapshot_provider);
                vs_json_add_str(b, "handle", dr->snapshot_handle);
                vs_json_add_bool(b, "kept", dr->snapshot_kept);
                json_builder_end_object(b);
            } else {
                json_builder_add_null_value(b);
            }
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    vs_json_add_int_or_null(b, "group_freeze_ms", r ? r->group_freeze_ms : -1);
    json_builder_set_member_name(b, "phases_ms");
    if (r) {
        const struct { const char *name; int64_t ms; } phases[] = {
            { "prepare", r->prepare_ms }, { "freeze", r->freeze_phase_ms }, { "copy", r->copy_ms },
            { "end", r->end_ms }, { "manifest", r->manifest_ms },
        };
        json_builder_begin_object(b);
        for (size_t i = 0; i < G_N_ELEMENTS(phases); i++) {
            vs_json_add_int(b, phases[i].name, phases[i].ms);
        }
        json_builder_end_object(b);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "recovered");
    json_builder_begin_array(b);
    for (guint i = 0; r && i < r->notes->len; i++)
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
        g_autofree char *note = joined_notes(d);
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
            if (d->overlay_ms >= 0)
                printf(", on overlays %" G_GINT64_FORMAT " ms", d->overlay_ms);
            printf("  %s%s%s, read %s, stored %s new\n", d->level, d->base ? " since " : "",
                   d->base ? d->base : "", rs, ss);
        } else {
            printf("  %-20s FAILED\n", d->name);
        }
        if (note)
            printf("      note: %s\n", note);
    }
}

/* The command line of a backup, as given. */
typedef struct {
    gboolean json, all, init, push, no_copy, keep_snapshot;
    char *storage_snapshot, *snapshot_config;
    char *repo, *quiesce, *overlay_dir, *state_dir, *data_path, *iscsi_auth, *mode, *level;
    char *backup_xml, *checkpoint_xml, *compress, *push_dir;
    int nbd_port;
    double max_freeze;
    int agent_timeout, commit_timeout, parallel, copy_nice, commit_mib, lock_wait, deadline;
} BackupArgs;

/* An int option the user did not give: the configuration (or the default) decides. */
#define UNSET G_MININT

static void
backup_args_clear(BackupArgs *a)
{
    g_free(a->repo); g_free(a->quiesce); g_free(a->overlay_dir); g_free(a->state_dir);
    g_free(a->data_path); g_free(a->iscsi_auth); g_free(a->mode); g_free(a->level);
    g_free(a->backup_xml); g_free(a->checkpoint_xml); g_free(a->compress); g_free(a->push_dir);
    g_free(a->storage_snapshot); g_free(a->snapshot_config);
}

/* --storage-snapshot takes its word optionally: a bare one is =auto (GOption
 * has optional arguments only for callbacks). Up to "--", the rest being
 * domain names. */
static void
storage_snapshot_default(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (!strcmp(argv[i], "--storage-snapshot"))
            argv[i] = (char *)"--storage-snapshot=auto";
}

/* --OPTION=WORD of an enum option: FROM_STRING's value for WORD (vs-backup.h), DEFAULT
 * when the option was not given, or -1 with the usage error naming WORDS. */
static int
option_word(const char *option, const char *word, int (*from_string)(const char *), const char *words,
            int dflt, GError **error)
{
    int v;

    if (!word)
        return dflt;
    if ((v = from_string(word)) < 0)
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: --%s=%s: use %s", option, word,
                    words);
    return v;
}

/* The options not given, from the configuration (option > environment > file,
 * vs-config.h), then the built-in defaults. */
static void
config_defaults(BackupArgs *a, const VsConfig *cfg)
{
    if (a->max_freeze == -G_MAXDOUBLE)
        a->max_freeze = vs_config_double(cfg, "VIRTSNAP_MAX_FREEZE", 10.0);
    if (a->agent_timeout == UNSET)
        a->agent_timeout = vs_config_int(cfg, "VIRTSNAP_AGENT_TIMEOUT", 5);
    if (a->parallel == UNSET)
        a->parallel = vs_config_int(cfg, "VIRTSNAP_PARALLEL_DISKS", 2);
    if (a->deadline == UNSET)
        a->deadline = vs_config_int(cfg, "SC_AGENT_TIMEOUT", 0);
    if (!a->quiesce)
        a->quiesce = g_strdup(vs_config_get(cfg, "VIRTSNAP_QUIESCE"));
}

/* The checked arguments A (and the configuration's keys no option has) into OPTS. */
static void
set_options(const BackupArgs *a, VsBackupOptions *opts, const VsConfig *cfg)
{
    opts->iscsi_auth_file = a->iscsi_auth;
    opts->no_compress = a->compress && strcmp(a->compress, "off") == 0;
    opts->backup_xml_path = a->backup_xml;
    opts->checkpoint_xml_path = a->checkpoint_xml;
    opts->push = a->push || a->push_dir;
    opts->push_dir = a->push_dir;
    opts->repo_path = vs_repo_arg(a->repo);
    opts->init_repo = a->init;
    opts->state_dir = vs_cfg("VIRTSNAP_STATE_DIR", a->state_dir);
    opts->lock_wait = a->lock_wait;
    opts->overlay_dir = a->overlay_dir;
    opts->storage_snapshot = a->storage_snapshot;
    opts->no_copy = a->no_copy;
    opts->keep_snapshot = a->keep_snapshot;
    opts->snapshot_config = vs_cfg("VIRTSNAP_SNAPSHOT_CONFIG", a->snapshot_config);
    opts->max_freeze_ms = (int)(a->max_freeze * 1000);
    opts->agent_timeout = a->agent_timeout;
    opts->commit_timeout = a->commit_timeout;
    opts->commit_bandwidth = (unsigned long)a->commit_mib * 1024 * 1024;
    opts->parallel_disks = a->parallel;
    opts->copy_nice = a->copy_nice;
    opts->retry_count = vs_config_int(cfg, "KVM_CMD_RETRY_COUNT", opts->retry_count);
    opts->deadline_s = a->deadline;
    opts->config_dir = vs_config_get(cfg, "KVM_VM_CONFIG_DIR");
    opts->nbd_port = a->nbd_port;
}

/* Options in, OPTS out; every failure is bad usage (exit 2). String options
 * are taken as bytes (G_OPTION_ARG_FILENAME), as the domain names after them
 * are: no conversion from the locale's charset that could fail on its own. */
/* The method the options imply: a job's XML or push mode without --mode mean
 * begin; --level needs a method that has levels. */
static bool
settle_mode(const BackupArgs *a, VsBackupOptions *opts, GError **error)
{
    if (a->backup_xml || a->checkpoint_xml) {
        if (a->mode && opts->mode != VS_BACKUP_METHOD_BEGIN) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "backup: --backup-xml and --checkpoint-xml describe a backup job: they go "
                        "with --mode=begin (the default with them), not --mode=%s", a->mode);
            return false;
        }
        opts->mode = VS_BACKUP_METHOD_BEGIN;
    }
    if ((a->push || a->push_dir) && !a->mode)
        opts->mode = VS_BACKUP_METHOD_BEGIN;
    if (a->level && opts->mode == VS_BACKUP_METHOD_OVERLAY) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: --level goes with --mode=begin or "
                    "--mode=auto (an overlay backup reads every disk whole)");
        return false;
    }
    return true;
}

static bool
backup_parse(BackupArgs *a, VsBackupOptions *opts, int *argc, char ***argv, GError **error)
{
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &a->repo, "repository directory (default $VIRTSNAP_REPO)", "DIR" },
        { "init", 0, 0, G_OPTION_ARG_NONE, &a->init, "create the repository if it does not exist", NULL },
        { "all", 'a', 0, G_OPTION_ARG_NONE, &a->all, "back up every domain", NULL },
        { "quiesce", 0, 0, G_OPTION_ARG_FILENAME, &a->quiesce, "require, try (default) or off", "MODE" },
        { "data-path", 0, 0, G_OPTION_ARG_FILENAME, &a->data_path, "disks on NFS/iSCSI: auto (default: direct where "
          "reachable, else the host's view), direct (libnfs/libiscsi from here) or host", "PATH" },
        { "iscsi-auth", 0, 0, G_OPTION_ARG_FILENAME, &a->iscsi_auth, "CHAP credentials for direct iSCSI reads: "
          "a file of user= and password= lines, root's (or yours) and mode 0600", "FILE" },
        { "mode", 0, 0, G_OPTION_ARG_FILENAME, &a->mode, "overlay (default), begin (libvirt backup job + checkpoint) or auto", "MODE" },
        { "level", 0, 0, G_OPTION_ARG_FILENAME, &a->level, "begin mode: inc (default: since the last backup, when the checkpoint chain is usable), diff (since the chain's last full backup) or full", "LEVEL" },
        { "backup-xml", 0, 0, G_OPTION_ARG_FILENAME, &a->backup_xml, "begin mode: take the disks and scratch files "
          "from this domainbackup XML (what virsh backup-begin takes; mode='pull' or 'push')", "FILE" },
        { "push", 0, 0, G_OPTION_ARG_NONE, &a->push, "begin mode: a push-mode job (QEMU writes each disk, or "
          "an incremental's changes, into a qcow2 that virtsnap reads, then removes)", NULL },
        { "push-dir", 0, 0, G_OPTION_ARG_FILENAME, &a->push_dir, "with --push (implied): put its files here "
          "(default: the state directory)", "DIR" },
        { "nbd-port", 0, 0, G_OPTION_ARG_INT, &a->nbd_port, "begin mode on a remote hypervisor (-c with "
          "another host): the TCP port there its NBD export listens on, one more per further domain "
          "(default 10809)", "PORT" },
        { "checkpoint-xml", 0, 0, G_OPTION_ARG_FILENAME, &a->checkpoint_xml, "begin mode: the description and "
          "bitmap-less disks of the checkpoint from this domaincheckpoint XML", "FILE" },
        { "max-freeze", 0, 0, G_OPTION_ARG_DOUBLE, &a->max_freeze, "longest a guest may stay frozen, seconds (default 10, at most 600)", "SECS" },
        { "agent-timeout", 0, 0, G_OPTION_ARG_INT, &a->agent_timeout, "bound on each guest-agent call, seconds (default 5, 1 to 300)", "SECS" },
        { "commit-timeout", 0, 0, G_OPTION_ARG_INT, &a->commit_timeout, "bound on each commit to converge, seconds (default 600, 1 to 604800); then one more with the guest frozen", "SECS" },
        { "commit-bandwidth", 0, 0, G_OPTION_ARG_INT, &a->commit_mib, "limit each commit to MIB MiB/s while the guest runs (default 0: no limit)", "MIB" },
        { "overlay-dir", 0, 0, G_OPTION_ARG_FILENAME, &a->overlay_dir, "put overlays here instead of beside each disk", "DIR" },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &a->state_dir, "journal and guardian log (default /var/lib/virtsnap)", "DIR" },
        { "lock-wait", 0, 0, G_OPTION_ARG_INT, &a->lock_wait, "wait up to SECS for a domain another run is "
          "working on (default 0: fail at once; at most 86400)", "SECS" },
        { "parallel", 0, 0, G_OPTION_ARG_INT, &a->parallel, "disks copied at once (default 2, 1 to 64)", "N" },
        { "compress", 0, 0, G_OPTION_ARG_FILENAME, &a->compress, "new chunks: zstd (default) or off (stored "
          "uncompressed: for a repository on a compressing file system, or a host short of CPU)", "HOW" },
        { "copy-nice", 0, 0, G_OPTION_ARG_INT, &a->copy_nice, "lower the copy's CPU priority by N while the guests run (default 10, 0 to 19)", "N" },
        { "storage-snapshot", 0, 0, G_OPTION_ARG_FILENAME, &a->storage_snapshot, "after the thaw, a storage "
          "snapshot of each disk (auto when bare, reflink, btrfs, rbd or hook); overlays committed at once, the "
          "copy read from the snapshot", "[=PROVIDER]" },
        { "no-copy", 0, 0, G_OPTION_ARG_NONE, &a->no_copy, "with --storage-snapshot: the backup is the snapshots "
          "(kept, recorded in the repository; `virtsnap vault` copies them later)", NULL },
        { "keep-snapshot", 0, 0, G_OPTION_ARG_NONE, &a->keep_snapshot, "with --storage-snapshot: copy, and keep "
          "the snapshots for fast restores (pruned with the backup)", NULL },
        { "snapshot-config", 0, 0, G_OPTION_ARG_FILENAME, &a->snapshot_config, "providers and hooks per pool "
          "(default /etc/virtsnap/snapshots.conf)", "FILE" },
        { "deadline", 0, 0, G_OPTION_ARG_INT, &a->deadline, "stop the whole run after SECS and unwind it, as on "
          "an interrupt (default $SC_AGENT_TIMEOUT or the configuration's; 0: none)", "SECS" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &a->json, "print the result as JSON (on a failure too: its \"error\")", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("(--all | DOMAIN...) - back up running and shut-off domains "
                                                          "(none: those of KVM_VM_MAPPING)");
    const VsConfig *cfg = vs_cli_config();

    storage_snapshot_default(*argc, *argv);
    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, argc, argv, error)) {
        g_autoptr(GError) e = g_steal_pointer(error);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: %s (see virtsnap backup --help)",
                    e->message);
        return false;
    }
    config_defaults(a, cfg);
    vs_backup_options_init(opts);
    int data_path, quiesce, mode, level;
    if ((data_path = option_word("data-path", a->data_path, vs_data_path_from_string,
                                 "auto, direct or host", opts->data_path, error)) < 0 ||
        (quiesce = option_word("quiesce", a->quiesce, vs_quiesce_mode_from_string,
                               "require, try or off", opts->quiesce, error)) < 0 ||
        (mode = option_word("mode", a->mode, vs_backup_method_from_string,
                            "overlay, begin or auto", opts->mode, error)) < 0)
        return false;
    if (a->compress && strcmp(a->compress, "zstd") != 0 && strcmp(a->compress, "off") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "backup: --compress=%s: use zstd or off", a->compress);
        return false;
    }
    if ((level = option_word("level", a->level, vs_backup_level_from_string, "inc, diff or full",
                             opts->level, error)) < 0)
        return false;
    opts->data_path = data_path;
    opts->quiesce = quiesce;
    opts->mode = mode;
    opts->level = level;
    if (!settle_mode(a, opts, error))
        return false;
    if (!(a->max_freeze > 0 && a->max_freeze <= 600)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: --max-freeze %g: give more than 0, at most 600 (seconds)", a->max_freeze);
        return false;
    }
    {
        const VsIntOption ints[] = {      /* as parsed */
            { "--agent-timeout", a->agent_timeout, 1, 300 },
            { "--commit-timeout", a->commit_timeout, 1, 604800 },
            { "--commit-bandwidth", a->commit_mib, 0, VS_NO_MAX },
            { "--lock-wait", a->lock_wait, 0, 86400 },
            { "--parallel", a->parallel, 1, 64 },
            { "--copy-nice", a->copy_nice, 0, 19 },
            { "--deadline", a->deadline, 0, 604800 },
            { "--nbd-port", a->nbd_port, 0, 65535 },
        };
        if (!vs_check_int_options("backup", ints, G_N_ELEMENTS(ints), error))
            return false;
    }
    set_options(a, opts, cfg);
    /* No names and no --all: the VMs of KVM_VM_MAPPING (checked to exist once connected). */
    return vs_backup_check_options(*argc > 1 || a->all || !vs_config_names(cfg, "KVM_VM_MAPPING") ?
                                   (const char *const *)(*argv + 1) : vs_config_names(cfg, "KVM_VM_MAPPING"),
                                   a->all, opts, error);
}

int
vs_cmd_backup(const VsGlobal *g, int argc, char **argv)
{
    BackupArgs a = { .max_freeze = -G_MAXDOUBLE, .agent_timeout = UNSET, .commit_timeout = 600, .parallel = UNSET,
                     .copy_nice = 10, .deadline = UNSET };
    const char *const *names;
    g_autoptr(GError) err = NULL;
    g_autoptr(VsBackupResult) res = NULL;
    VsBackupOptions opts;
    Bar bar = { 0 };
    virConnectPtr conn;
    int rc = 0;

    bool parsed = backup_parse(&a, &opts, &argc, &argv, &err);

    opts.uri = vs_default_uri(g->uri);
    /* What a run from another host than the hypervisor cannot do is bad usage too. */
    if (!parsed || !vs_backup_check_remote(&opts, &err)) {
        bool json = a.json || vs_argv_has(argc, argv, "--json");

        rc = vs_fail_with(2, err->message, json ? result_json(NULL, err->message) : NULL);
        backup_args_clear(&a);
        return rc;
    }
    bar.tty = !a.json && !g->quiet && isatty(STDERR_FILENO);
    bar.pct = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    opts.progress = on_progress;
    opts.progress_opaque = &bar;

    if (!(conn = vs_conn_open(g->uri, &err))) {
        g_autofree char *msg = g_strdup_printf("backup: %s", err->message);
        rc = vs_fail_with(1, msg, a.json ? result_json(NULL, msg) : NULL);
    } else {
        /* A signal from here on stops the backup at its next safe point: the
         * guests are thawed and put back on their disks, jobs aborted, and no
         * backup is written (driver/backup.c). */
        vs_interrupt_install();
        names = (const char *const *)(argv + 1);
        if (argc == 1 && !a.all && vs_config_names(g->config, "KVM_VM_MAPPING") &&
            !(names = vs_config_vms(conn, "KVM_VM_MAPPING", true, &err)))
            rc = vs_fail_with(err->code == VS_ERROR_INVALID_ARG ? 2 : 1, err->message,
                              a.json ? result_json(NULL, err->message) : NULL);
        else
            res = vs_backup_run(conn, names, a.all, &opts, &err);
        vs_conn_close(conn);
        if (bar.tty && g_hash_table_size(bar.pct) > 0)
            fputs("\n", stderr);
        if (!res && !rc)
            rc = vs_fail_with(1, err->message, a.json ? result_json(NULL, err->message) : NULL);
    }
    g_hash_table_unref(bar.pct);
    if (res && a.json) {
        g_autofree char *text = result_json(res, NULL);
        fputs(text, stdout);
    } else if (res && !g->quiet) {
        print_summary(res);
    }
    for (guint i = 0; res && i < res->domains->len; i++) {
        const VsBackupDomainResult *d = res->domains->pdata[i];
        if (!d->ok) {
            vs_print_error("%s", d->error ? d->error->message : "backup: failed");
            rc = 1;
        }
    }
    if (res && !res->id)
        rc = 1;
    if (rc && vs_interrupted())
        rc = vs_interrupt_exit_status(vs_interrupted());
    backup_args_clear(&a);
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
    ok = vs_recover(conn, vs_cfg("VIRTSNAP_STATE_DIR", state_dir), NULL, actions, &err);
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
