/* `virtsnap migrate DOMAIN DEST_URI`: the command line of vs_migrate
 * (vs-migrate.h). Progress goes to standard error while it is a terminal;
 * the end is one line (and a line per pre-check, the checkpoint redefined or
 * the note on why the next incremental will be full), or with --json one
 * object that holds the checks, the progress samples and the error. Usage
 * errors (and --live/--offline against the domain's state) exit 2, a refused
 * or failed migration 1. */
#include "config.h"
#include "virtsnap.h"
#include "vs-interrupt.h"
#include "vs-migrate.h"

#include <stdio.h>
#include <unistd.h>

/* Progress samples kept for --json: enough for the shape of a long migration. */
#define MAX_SAMPLES 240

typedef struct {
    bool tty;
    GArray *samples;   /* VsMigrateProgress */
} Progress;

static void
on_progress(const VsMigrateProgress *p, void *opaque)
{
    Progress *pr = opaque;

    if (pr->samples->len < MAX_SAMPLES)
        g_array_append_val(pr->samples, *p);
    if (pr->tty)
        fprintf(stderr, "\rmigrate: %3u%% of %" G_GUINT64_FORMAT " MiB, %" G_GUINT64_FORMAT " MiB left, "
                "%.1f s ", p->total ? (unsigned)(p->processed * 100 / p->total) : 0,
                p->total >> 20, p->remaining >> 20, p->elapsed_ms / 1000.0);
}

static char *
migrate_json(const VsMigrateResult *r, const Progress *pr, const char *error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    vs_json_add_str(b, "domain", r ? r->name : NULL);
    vs_json_add_str(b, "uuid", r ? r->uuid : NULL);
    vs_json_add_str(b, "source", r ? r->source_uri : NULL);
    vs_json_add_str(b, "destination", r ? r->dest_uri : NULL);
    vs_json_add_bool(b, "migrated", r && !error);
    vs_json_add_str(b, "mode", !r || !r->flags ? NULL : r->live ? "live" : "offline");
    vs_json_add_bool(b, "persistent", r && r->persistent);
    vs_json_add_int_or_null(b, "elapsed_ms", r && r->flags ? r->elapsed_ms : -1);
    vs_json_add_int_or_null(b, "downtime_ms", r ? r->downtime_ms : -1);
    vs_json_add_int_or_null(b, "data_bytes", r && r->data_bytes ? (gint64)r->data_bytes : -1);
    json_builder_set_member_name(b, "checks");
    json_builder_begin_array(b);
    for (guint i = 0; r && i < r->checks->len; i++) {
        const VsMigrateCheck *c = r->checks->pdata[i];

        json_builder_begin_object(b);
        vs_json_add_str(b, "name", c->name);
        vs_json_add_bool(b, "ok", c->ok);
        vs_json_add_str(b, "detail", c->detail);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "checkpoints");
    json_builder_begin_array(b);
    for (guint i = 0; r && i < r->checkpoints->len; i++)
        json_builder_add_string_value(b, r->checkpoints->pdata[i]);
    json_builder_end_array(b);
    vs_json_add_bool(b, "checkpoint_redefined", r && r->checkpoint_redefined);
    vs_json_add_str(b, "checkpoint_note", r && !error ? r->checkpoint_note : NULL);
    json_builder_set_member_name(b, "progress");
    json_builder_begin_array(b);
    for (guint i = 0; pr && i < pr->samples->len; i++) {
        const VsMigrateProgress *p = &g_array_index(pr->samples, VsMigrateProgress, i);

        json_builder_begin_object(b);
        vs_json_add_int(b, "elapsed_ms", p->elapsed_ms);
        vs_json_add_int(b, "processed", (gint64)p->processed);
        vs_json_add_int(b, "total", (gint64)p->total);
        vs_json_add_int(b, "remaining", (gint64)p->remaining);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    vs_json_add_str(b, "error", error);
    json_builder_end_object(b);
    return vs_json_builder_text(b, true);
}

static void
print_result(const VsMigrateResult *r, bool quiet)
{
    printf("migrated %s to %s %s in %.1f s", r->name, r->dest_uri, r->live ? "live" : "offline (its definition)",
           r->elapsed_ms / 1000.0);
    if (r->downtime_ms >= 0)
        printf(" (downtime %" G_GINT64_FORMAT " ms)", r->downtime_ms);
    printf("%s\n", r->persistent ? "; defined there, undefined here" : "");
    if (quiet)
        return;
    for (guint i = 0; i < r->checks->len; i++) {
        const VsMigrateCheck *c = r->checks->pdata[i];
        printf("  checked %s: %s\n", c->name, c->detail);
    }
    for (guint i = 0; i < r->checkpoints->len; i++)
        printf("  checkpoint %s %s on the destination: the next --mode=begin incremental continues the chain\n",
               (const char *)r->checkpoints->pdata[i], r->checkpoint_redefined ? "redefined" : "found");
    if (r->checkpoint_note)
        printf("  note: %s\n", r->checkpoint_note);
}

/* Whom the migration waits for, on stderr (a terminal's line or a log's). */
static void
say_line(const char *line, void *opaque)
{
    const VsGlobal *g = opaque;

    if (!g->quiet)
        fprintf(stderr, "%s\n", line);
}

static bool
check_ints(int timeout, int wait_s, GError **error)
{
    const VsIntOption ints[] = { { "--timeout", timeout, 0, 86400 }, { "--wait", wait_s, 0, 86400 } };

    return vs_check_int_options("migrate", ints, G_N_ELEMENTS(ints), error);
}

int
vs_cmd_migrate(const VsGlobal *g, int argc, char **argv)
{
    gboolean live = FALSE, offline = FALSE, copy_storage = FALSE, unsafe = FALSE, json = FALSE;
    int timeout = 0, wait_s = 300;
    gboolean abort_backup = FALSE;
    g_autofree char *repo = NULL, *state_dir = NULL;
    GOptionEntry entries[] = {
        { "live", 0, 0, G_OPTION_ARG_NONE, &live, "the domain must be running; it keeps running while "
          "it moves (the default for a running domain)", NULL },
        { "offline", 0, 0, G_OPTION_ARG_NONE, &offline, "move a shut-off domain's definition (the "
          "default for one)", NULL },
        { "copy-storage", 0, 0, G_OPTION_ARG_NONE, &copy_storage, "copy the disks to the destination "
          "(VIR_MIGRATE_NON_SHARED_DISK) instead of requiring it to see them", NULL },
        { "unsafe", 0, 0, G_OPTION_ARG_NONE, &unsafe, "migrate although libvirt calls the storage "
          "unshared (VIR_MIGRATE_UNSAFE): for storage known to be shared", NULL },
        { "timeout", 0, 0, G_OPTION_ARG_INT, &timeout, "abort the migration after this long; the "
          "guest then runs on at the source (default 0: no bound)", "SECS" },
        { "repo", 0, 0, G_OPTION_ARG_FILENAME, &repo, "afterwards redefine the domain's checkpoint on "
          "the destination from this repository's record (default $VIRTSNAP_REPO)", "DIR" },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "journal of the migration (default "
          "/var/lib/virtsnap)", "DIR" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print the result as JSON", NULL },
        { "wait", 0, 0, G_OPTION_ARG_INT, &wait_s, "wait up to SECS for a virtsnap run that holds the "
          "domain (a backup's frozen window and overlays) to end (default 300)", "SECS" },
        { "abort-backup", 0, 0, G_OPTION_ARG_NONE, &abort_backup, "stop a backup that holds the "
          "domain at once (it writes no backup, and says why), then migrate", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("DOMAIN DEST_URI - move a domain to another "
                                                          "libvirt host, after pre-checks");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsMigrateResult) r = NULL;
    Progress pr = { .tty = isatty(STDERR_FILENO) };
    VsMigrateOptions o;
    virConnectPtr conn;
    bool ok, parsed;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!(parsed = g_option_context_parse(octx, &argc, &argv, &err)) ||
        !check_ints(timeout, wait_s, &err) || argc != 3 || (live && offline)) {
        g_autofree char *msg = g_strdup_printf("%s%s (see virtsnap migrate --help)",
                                               err && parsed ? "" : "migrate: ",
                                               err ? err->message : (live && offline) ?
                                               "give --live or --offline, not both" : "give DOMAIN and DEST_URI");
        return vs_fail_with(2, msg, (json || vs_argv_has(argc, argv, "--json")) ? migrate_json(NULL, NULL, msg) : NULL);
    }
    vs_migrate_options_init(&o);
    o.mode = live ? VS_MIGRATE_LIVE : offline ? VS_MIGRATE_OFFLINE : VS_MIGRATE_AUTO;
    o.copy_storage = copy_storage;
    o.unsafe = unsafe;
    o.timeout_s = timeout;
    o.repo_path = vs_repo_arg(repo);
    o.state_dir = vs_cfg("VIRTSNAP_STATE_DIR", state_dir);
    o.source_uri = vs_default_uri(g->uri);
    o.lock_wait_s = wait_s;
    o.abort_backup = abort_backup;
    o.say = say_line;
    o.say_opaque = (void *)g;
    o.progress = on_progress;
    o.progress_opaque = &pr;
    if (!(conn = vs_conn_open(g->uri, &err))) {
        g_autofree char *msg = g_strdup_printf("migrate: %s", err->message);
        return vs_fail_with(1, msg, json ? migrate_json(NULL, NULL, msg) : NULL);
    }
    vs_interrupt_install();
    pr.samples = g_array_new(FALSE, FALSE, sizeof(VsMigrateProgress));
    ok = vs_migrate(conn, argv[1], argv[2], &o, &r, &err);
    vs_conn_close(conn);
    if (pr.tty && pr.samples->len)
        fputc('\n', stderr);
    if (json) {
        g_autofree char *text = migrate_json(r, &pr, ok ? NULL : err->message);
        fputs(text, stdout);
        if (!ok)
            fprintf(stderr, "virtsnap: %s\n", err->message);
    } else if (ok) {
        print_result(r, g->quiet);
    } else {
        vs_print_error("%s", err->message);
    }
    g_array_unref(pr.samples);
    if (!ok)
        return err->code == VS_ERROR_INVALID_ARG ? 2 : 1;
    return 0;
}
