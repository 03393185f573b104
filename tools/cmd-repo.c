/* The repository commands: init, list, verify, export, gc and prune. They read and
 * write the repository directly through the block layer's public API; no
 * libvirt connection is needed, so they also work on a machine that only holds
 * the backups. */
#include "config.h"
#include "virtsnap.h"
#include "vs-repo.h"
#include "vs-snapshot.h"
#include "vs-source.h"
#include "vs-copy.h"
#include "vs-restore.h"
#include "vs-interrupt.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

const char *
vs_repo_arg(const char *opt)
{
    return vs_cfg("VIRTSNAP_REPO", opt);
}

int
vs_open_repo(const char *cmd, const char *path, bool writable, VsRepo **out)
{
    g_autoptr(GError) err = NULL;

    if (!path || !*path) {
        vs_print_error("%s: no repository: give --repo DIR or set VIRTSNAP_REPO", cmd);
        return 2;
    }
    if (!(*out = vs_repo_open(path, false, writable, 0, &err))) {
        vs_print_error("%s: %s", cmd, err->message);
        return 1;
    }
    return 0;
}

/* Parses CMD's options; false (a usage error, printed) also when NO_ARGS and
 * any argument is left. */
static bool
parse(GOptionContext *octx, GOptionEntry *entries, const char *cmd, bool no_args, int *argc, char ***argv)
{
    g_autoptr(GError) err = NULL;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, argc, argv, &err)) {
        vs_print_error("%s: %s (see virtsnap %s --help)", cmd, err->message, cmd);
        return false;
    }
    if (no_args && *argc > 1) {
        vs_print_error("%s: takes no arguments, only options: '%s' (see virtsnap %s --help)", cmd,
                       (*argv)[1], cmd);
        return false;
    }
    return true;
}

int
vs_cmd_init(const VsGlobal *g, int argc, char **argv)
{
    char *repo = NULL, *group = NULL;
    gboolean fix = FALSE;
    int chunk_kib = VS_REPO_DEFAULT_CHUNK_SIZE / 1024;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory to create", "DIR" },
        { "chunk-size", 0, 0, G_OPTION_ARG_INT, &chunk_kib, "chunk size in KiB: a power of two from 64 to 16384 (default 1024)", "KIB" },
        { "group", 0, 0, G_OPTION_ARG_STRING, &group,
          "share the repository with group NAME (0750/0640; default: its owner's alone)", "NAME" },
        { "fix-permissions", 0, 0, G_OPTION_ARG_NONE, &fix,
          "give every file and directory in an existing repository its mode (0700/0600) and group", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("- create a repository");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    const char *path;
    uint64_t fixed = 0;
    bool regrouped = false;

    if (!parse(octx, entries, "init", false, &argc, &argv))
        return 2;
    path = vs_repo_arg(repo);
    if (!path || !*path || argc > 1) {
        vs_print_error("init: give the repository as --repo DIR");
        return 2;
    }
    if (chunk_kib < 64 || chunk_kib > 16384 || (chunk_kib & (chunk_kib - 1))) {
        vs_print_error("init: --chunk-size %d: give a power of two from 64 to 16384 (KiB)", chunk_kib);
        return 2;
    }
    if (group && !*group) {
        vs_print_error("init: --group needs a group name");
        return 2;
    }
    if (!(r = vs_repo_init(path, (uint32_t)chunk_kib * 1024, group, &regrouped, &err))) {
        vs_print_error("init: %s", err->message);
        return 1;
    }
    /* A repository just shared with a group has its entries changed too. */
    if ((fix || regrouped) && !vs_repo_fix_permissions(r, &fixed, &err)) {
        vs_print_error("init: %s (%" G_GUINT64_FORMAT " entries fixed before)", err->message, fixed);
        return 1;
    }
    if (!(fix || regrouped))
        vs_repo_check_permissions(r);   /* what every other command warns of */
    if (!g->quiet && (fix || regrouped))
        printf("repository %s: permissions fixed on %" G_GUINT64_FORMAT " entries (%s)\n", vs_repo_path(r),
               fixed, vs_repo_group(r) ? "0750/0640, group shared" : "0700/0600, private");
    if (!g->quiet)
        printf("repository %s ready (chunk size %u KiB%s%s)\n", vs_repo_path(r), vs_repo_chunk_size(r) / 1024,
               vs_repo_group(r) ? ", shared with group " : "", vs_repo_group(r) ? vs_repo_group(r) : "");
    return 0;
}

int
vs_cmd_list(const VsGlobal *g, int argc, char **argv)
{
    char *repo = NULL;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory", "DIR" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print a JSON array", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("- list the backups in a repository");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    g_autoptr(GPtrArray) backups = NULL;
    g_autoptr(JsonBuilder) b = json_builder_new();
    int rc = 0;

    (void)g;
    if (!parse(octx, entries, "list", true, &argc, &argv))
        return 2;
    if ((rc = vs_open_repo("list", vs_repo_arg(repo), false, &r)))
        return rc;
    /* Summaries, not manifests: a manifest holds every chunk reference. */
    if (!(backups = vs_repo_list_summaries(r, &err))) {
        vs_print_error("list: %s", err->message);
        return 1;
    }
    json_builder_begin_array(b);
    if (!json)
        printf("%-24s %-20s %-9s %10s %10s %10s  %s\n", "ID", "COMPLETED", "CONSIST.", "SIZE", "DATA",
               "NEW", "DOMAINS");
    for (guint i = 0; i < backups->len; i++) {
        const VsBackupSummary *m = backups->pdata[i];
        g_autoptr(GDateTime) t = NULL;
        g_autofree char *when = NULL;
        g_autoptr(GString) names = g_string_new(NULL), only = g_string_new(NULL);
        const char *consistency = "quiesced";
        uint64_t virt = m->virtual_bytes, data = m->data_bytes, stored = m->stored_bytes;

        if (m->problem) {
            vs_print_error("list: %s", m->problem);
            rc = 1;
            continue;
        }
        t = g_date_time_new_from_unix_utc(m->completed / G_USEC_PER_SEC);
        when = g_date_time_format(t, "%Y-%m-%d %H:%M:%S");
        for (guint k = 0; k < m->domains->len; k++) {
            const VsSummaryDomain *d = m->domains->pdata[k];
            g_string_append_printf(names, "%s%s", k ? "," : "", d->name);
            if (g_strcmp0(d->consistency, "quiesced") != 0)
                consistency = "crash";
            for (char **x = d->snapshot_only; x && *x; x++)
                g_string_append_printf(only, "%s%s/%s", only->len ? "," : "", d->name, *x);
        }
        if (json) {
            json_builder_begin_object(b);
            vs_json_add_str(b, "id", m->id);
            vs_json_add_str(b, "completed", when);
            vs_json_add_int_or_null(b, "group_freeze_ms", m->group_freeze_ms);
            vs_json_add_int(b, "virtual_bytes", virt);
            vs_json_add_int(b, "data_bytes", data);
            vs_json_add_int(b, "stored_bytes", stored);
            vs_json_add_bool(b, "snapshot_only", only->len > 0);
            json_builder_set_member_name(b, "domains");
            json_builder_begin_array(b);
            for (guint k = 0; k < m->domains->len; k++) {
                const VsSummaryDomain *d = m->domains->pdata[k];
                json_builder_begin_object(b);
                vs_json_add_str(b, "name", d->name);
                vs_json_add_str(b, "consistency", d->consistency);
                json_builder_set_member_name(b, "disks");
                json_builder_begin_array(b);
                for (char **x = d->disks; *x; x++)
                    json_builder_add_string_value(b, *x);
                json_builder_end_array(b);
                json_builder_set_member_name(b, "snapshot_only");
                json_builder_begin_array(b);
                for (char **x = d->snapshot_only; x && *x; x++)
                    json_builder_add_string_value(b, *x);
                json_builder_end_array(b);
                json_builder_end_object(b);
            }
            json_builder_end_array(b);
            json_builder_end_object(b);
        } else {
            g_autofree char *vs = g_format_size(virt), *ds = g_format_size(data), *ss = g_format_size(stored);
            /* Its data only in storage snapshots: not restorable from here. */
            printf("%-24s %-20s %-9s %10s %10s %10s  %s%s%s%s\n", m->id, when, consistency, vs, ds, ss, names->str,
                   only->len ? "  (snapshot-only: " : "", only->str, only->len ? ")" : "");
        }
    }
    json_builder_end_array(b);
    if (json) {
        g_autofree char *text = vs_json_builder_text(b, true);
        fputs(text, stdout);
    }
    return rc;
}

/* Prints verify's findings: the chunk problems, then what the storage
 * snapshots showed. True when nothing is wrong. */
static bool
print_verify(GPtrArray *problems, GPtrArray *notices)
{
    for (guint i = 0; notices && i < notices->len; i++)
        printf("notice: %s\n", (const char *)notices->pdata[i]);
    for (guint i = 0; problems && i < problems->len; i++) {
        const VsVerifyProblem *p = problems->pdata[i];

        /* A manifest that cannot be read names no chunk, domain or disk; a
         * snapshot gone names no chunk. */
        if (!p->digest_hex && !p->disk)
            printf("BAD manifest of backup %s: %s; none of its disks can be restored from it\n",
                   p->backup_id, p->problem);
        else if (!p->digest_hex)
            printf("BAD snapshot: backup %s, domain %s, disk %s: %s\n", p->backup_id, p->domain, p->disk,
                   p->problem);
        else
            printf("BAD chunk %s (offset %" G_GUINT64_FORMAT "): %s; breaks backup %s, domain %s, disk %s\n",
                   p->digest_hex, p->offset, p->problem, p->backup_id, p->domain ? p->domain : "?",
                   p->disk ? p->disk : "?");
    }
    return !problems || !problems->len;
}

int
vs_cmd_verify(const VsGlobal *g, int argc, char **argv)
{
    char *repo = NULL, *conf = NULL;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory", "DIR" },
        { "snapshot-config", 0, 0, G_OPTION_ARG_FILENAME, &conf, "the hooks recorded storage snapshots made by "
          "a hook are asked through (default " VS_SNAP_CONFIG_DEFAULT ")", "FILE" },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("[BACKUP] - re-read and re-hash every chunk, and ask "
                                                          "whether every recorded storage snapshot still exists");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    g_autoptr(VsSnapConfig) c = NULL;
    g_autoptr(GPtrArray) problems = NULL, notices = NULL;
    const char *id;
    uint64_t checked = 0;
    guint snaps = 0, unknown = 0;
    int rc;

    if (!parse(octx, entries, "verify", false, &argc, &argv))
        return 2;
    if (argc > 2) {
        vs_print_error("verify: at most one BACKUP (an id, a unique prefix, or latest)");
        return 2;
    }
    if (argc > 1 && !*argv[1]) {
        vs_print_error("verify: the BACKUP given is empty (an id, a unique prefix, or latest)");
        return 2;
    }
    id = argc > 1 ? argv[1] : NULL;
    if ((rc = vs_open_repo("verify", vs_repo_arg(repo), false, &r)) || (rc = vs_load_snap_config("verify", conf, &c)))
        return rc;
    if (!vs_repo_verify(r, id, &problems, &checked, &err) ||
        !vs_repo_verify_snapshots(r, id, c, &problems, &notices, &snaps, &unknown, &err)) {
        vs_print_error("verify: %s", err->message);
        return 1;
    }
    if (!print_verify(problems, notices)) {
        vs_print_error("verify: %u problem(s) found in %" G_GUINT64_FORMAT " chunks and %u storage snapshots "
                       "checked", problems->len, checked, snaps);
        return 1;
    }
    if (!g->quiet && unknown)
        printf("verify: OK, %" G_GUINT64_FORMAT " chunks checked; %u of %u storage snapshots recorded could not "
               "be asked (see the notices)\n", checked, unknown, snaps);
    else if (!g->quiet && snaps)
        printf("verify: OK, %" G_GUINT64_FORMAT " chunks checked, %u storage snapshots asked\n", checked, snaps);
    else if (!g->quiet)
        printf("verify: OK, %" G_GUINT64_FORMAT " chunks checked\n", checked);
    return 0;
}

/* export onto a LUN or a file on an NFS export, in place: the same storage a
 * backup read with --data-path=direct. */
static int
export_over(const VsGlobal *g, VsRepo *r, const VsManifest *m, const VsManifestDisk *k,
            const char *what, const char *url, const char *auth_file)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsIscsiAuth) auth = NULL;
    g_autoptr(VsSource) sink = NULL;

    if ((auth_file && !(auth = vs_iscsi_auth_load(auth_file, &err))) ||
        !(sink = vs_source_open_url(url, auth, true, &err)) ||
        !vs_copy_repo_to_sink(r, k, sink, false, &err)) {
        vs_print_error("export: %s", err->message);
        return 1;
    }
    if (!g->quiet)
        printf("wrote %s %s over %s\n", m->id, what, sink->description);
    return 0;
}

int
vs_cmd_export(const VsGlobal *g, int argc, char **argv)
{
    char *repo = NULL, *format = NULL, *auth_file = NULL, *state_dir = NULL;
    gboolean verify_hash = FALSE;
    VsExportControl ctl = { 0 };
    int sig;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory", "DIR" },
        { "format", 'f', 0, G_OPTION_ARG_FILENAME, &format, "raw or qcow2 (default: as backed up)", "FMT" },
        { "verify-hash", 0, 0, G_OPTION_ARG_NONE, &verify_hash, "re-hash every chunk with SHA-256 as it is "
          "written (default: its zstd checksum and size are checked)", NULL },
        { "iscsi-auth", 0, 0, G_OPTION_ARG_FILENAME, &auth_file, "CHAP credentials for an iscsi:// OUT: "
          "a file of user= and password= lines, root's (or yours) and mode 0600", "FILE" },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "where the journal that names the temp "
          "image lives, for recover (default /var/lib/virtsnap)", "DIR" },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("BACKUP DOMAIN DISK OUT - write a disk out of a backup "
                                                          "(BACKUP: an id, a unique prefix, or latest: the newest "
                                                          "that holds DOMAIN; OUT: a new file, or nfs:// or "
                                                          "iscsi:// written over in place)");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    g_autoptr(VsManifest) m = NULL;
    g_autofree char *what = NULL;
    const char *const names[] = { "BACKUP", "DOMAIN", "DISK", "OUT" };
    const VsManifestDomain *d;
    const VsManifestDisk *k;
    bool over;
    int rc;

    if (!parse(octx, entries, "export", false, &argc, &argv))
        return 2;
    if (argc != 5) {
        vs_print_error("export: needs BACKUP DOMAIN DISK OUT (see virtsnap export --help)");
        return 2;
    }
    for (int i = 1; i < 5; i++) {
        if (!*argv[i]) {
            vs_print_error("export: the %s given is empty (see virtsnap export --help)", names[i - 1]);
            return 2;
        }
    }
    over = g_str_has_prefix(argv[4], "nfs://") || g_str_has_prefix(argv[4], "iscsi://");
    if (format && strcmp(format, "raw") && strcmp(format, "qcow2")) {
        vs_print_error("export: --format %s: use raw or qcow2", format);
        return 2;
    }
    if (over && format && strcmp(format, "raw") != 0) {
        vs_print_error("export: --format %s: a disk is written over %s as raw", format, argv[4]);
        return 2;
    }
    if (auth_file && !g_str_has_prefix(argv[4], "iscsi://")) {
        vs_print_error("export: --iscsi-auth is for an OUT of iscsi://, not %s", argv[4]);
        return 2;
    }
    if ((rc = vs_open_repo("export", vs_repo_arg(repo), false, &r)))
        return rc;
    if (!(m = vs_repo_load_manifest_of(r, argv[1], argv[2], &err))) {
        vs_print_error("export: %s", err->message);
        return 1;
    }
    if (!(d = vs_manifest_lookup_domain(m, argv[2])) || !(k = vs_manifest_find_disk(d, argv[3]))) {
        vs_print_error("export: backup %s has no domain %s with a disk %s", m->id, argv[2], argv[3]);
        return 1;
    }
    what = g_strdup_printf("%s/%s", d->name, k->target);
    if (over)
        return export_over(g, r, m, k, what, argv[4], auth_file);
    ctl.verify_hash = verify_hash;
    /* Into a file: a signal stops it at the next chunk, its temp image removed
     * (written over in place, above, it is killed as before: nothing to remove). */
    vs_interrupt_install();
    if (!vs_export_file(r, m, d->name, k->target, argv[4], format, vs_cfg("VIRTSNAP_STATE_DIR", state_dir), &ctl, &err)) {
        vs_verify_problem_free(ctl.bad_chunk);
        vs_print_error("%s", err->message);   /* it names the export */
        return (sig = vs_interrupted()) ? vs_interrupt_exit_status(sig) : 1;
    }
    if (!g->quiet)
        printf("exported %s %s to %s\n", m->id, what, argv[4]);
    return 0;
}

int
vs_cmd_gc(const VsGlobal *g, int argc, char **argv)
{
    char *repo = NULL;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory", "DIR" },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("- delete chunks no backup references");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    uint64_t n = 0, bytes = 0;

    int rc;

    if (!parse(octx, entries, "gc", true, &argc, &argv))
        return 2;
    if ((rc = vs_open_repo("gc", vs_repo_arg(repo), true, &r)))
        return rc;
    if (!vs_repo_gc(r, &n, &bytes, &err)) {
        vs_print_error("gc: %s", err->message);
        return 1;
    }
    if (!g->quiet) {
        g_autofree char *s = g_format_size(bytes);
        printf("gc: removed %" G_GUINT64_FORMAT " chunks, %s\n", n, s);
    }
    return 0;
}

static void
print_decision(const VsPruneDecision *d, bool dry_run)
{
    g_autoptr(GDateTime) t = g_date_time_new_from_unix_local(d->completed / G_USEC_PER_SEC);
    g_autofree char *when = g_date_time_format(t, "%Y-%m-%d %H:%M:%S");
    g_autofree char *names = g_strjoinv(",", d->domains);

    printf("%-12s %-24s %-20s %s%s%s%s\n",
           d->keep ? "keep" : dry_run ? "would remove" : "remove", d->id, when, names,
           d->reasons ? "  (" : "", d->reasons ? d->reasons : "", d->reasons ? ")" : "");
}

static void
print_prune_json(GPtrArray *plan, bool dry_run, bool gc_ran, uint64_t chunks, uint64_t bytes, guint snapshots)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autofree char *text = NULL;

    json_builder_begin_object(b);
    vs_json_add_bool(b, "dry_run", dry_run);
    json_builder_set_member_name(b, "backups");
    json_builder_begin_array(b);
    for (guint i = 0; i < plan->len; i++) {
        const VsPruneDecision *d = plan->pdata[i];
        json_builder_begin_object(b);
        vs_json_add_str(b, "id", d->id);
        vs_json_add_bool(b, "keep", d->keep);
        vs_json_add_str(b, "reasons", d->reasons);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    vs_json_add_int(b, "snapshots_deleted", snapshots);
    json_builder_set_member_name(b, "gc");
    if (gc_ran) {
        json_builder_begin_object(b);
        vs_json_add_int(b, "chunks_removed", (gint64)chunks);
        vs_json_add_int(b, "bytes_freed", (gint64)bytes);
        json_builder_end_object(b);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_end_object(b);
    text = vs_json_builder_text(b, true);
    fputs(text, stdout);
}

int
vs_cmd_prune(const VsGlobal *g, int argc, char **argv)
{
    char *repo = NULL, *conf = NULL;
    int last = 0, daily = 0, weekly = 0, monthly = 0;
    gboolean dry_run = FALSE, json = FALSE;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory", "DIR" },
        { "keep-last", 0, 0, G_OPTION_ARG_INT, &last, "keep the N newest backups of each domain", "N" },
        { "keep-daily", 0, 0, G_OPTION_ARG_INT, &daily, "keep the newest backup of each of the last N days (per domain)", "N" },
        { "keep-weekly", 0, 0, G_OPTION_ARG_INT, &weekly, "... of the last N ISO weeks", "N" },
        { "keep-monthly", 0, 0, G_OPTION_ARG_INT, &monthly, "... of the last N months", "N" },
        { "dry-run", 'n', 0, G_OPTION_ARG_NONE, &dry_run, "say what would be removed, remove nothing", NULL },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print the decisions as JSON", NULL },
        { "snapshot-config", 0, 0, G_OPTION_ARG_FILENAME, &conf, "the hooks storage snapshots made by a hook are "
          "deleted through (default " VS_SNAP_CONFIG_DEFAULT ")", "FILE" },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("- remove the backups a retention policy does not keep, "
                                                          "their storage snapshots first, then free their chunks");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    g_autoptr(GPtrArray) plan = NULL, gone = NULL;
    g_autoptr(VsSnapConfig) c = NULL;
    VsPrunePolicy policy;
    guint snapshots = 0;
    int snap_rc = 0;
    uint64_t chunks = 0, bytes = 0;
    unsigned removed = 0;
    bool gc_ran = false;

    int rc;

    if (!parse(octx, entries, "prune", true, &argc, &argv))
        return 2;
    {
        const VsIntOption ints[] = {      /* as parsed */
            { "--keep-last", last, 0, VS_NO_MAX }, { "--keep-daily", daily, 0, VS_NO_MAX },
            { "--keep-weekly", weekly, 0, VS_NO_MAX }, { "--keep-monthly", monthly, 0, VS_NO_MAX },
        };
        if (!vs_check_int_options("prune", ints, G_N_ELEMENTS(ints), &err)) {
            vs_print_error("%s", err->message);
            return 2;
        }
    }
    policy = (VsPrunePolicy){ (unsigned)last, (unsigned)daily, (unsigned)weekly, (unsigned)monthly };
    if ((rc = vs_open_repo("prune", vs_repo_arg(repo), !dry_run, &r)) ||
        (rc = vs_load_snap_config("prune", conf, &c)))
        return rc;
    if (!(plan = vs_repo_prune_plan(r, &policy, &err))) {
        vs_print_error("%s", err->message);
        return err->code == VS_ERROR_INVALID_ARG ? 2 : 1;
    }
    /* Storage snapshots first: a backup one of whose snapshots cannot be
     * deleted is kept, so that no snapshot is left that no backup names. */
    if ((snap_rc = vs_prune_snapshots(r, c, plan, dry_run, !json && !g->quiet, &snapshots)) < 0)
        return 1;
    gone = g_ptr_array_new();
    for (guint i = 0; i < plan->len; i++) {
        const VsPruneDecision *d = plan->pdata[i];
        if (!json && !g->quiet)
            print_decision(d, dry_run);
        if (!d->keep && !dry_run)
            g_ptr_array_add(gone, d->id);
    }
    g_ptr_array_add(gone, NULL);
    if (!vs_repo_delete_many(r, (const char *const *)gone->pdata, &removed, &err)) {
        vs_print_error("prune: %s (%u backups removed before it; the rest kept)", err->message, removed);
        return 1;
    }
    if (removed) {
        gc_ran = vs_repo_gc(r, &chunks, &bytes, &err);
        if (!gc_ran && !g_error_matches(err, VS_ERROR, VS_ERROR_BUSY)) {
            vs_print_error("prune: removed %u backups, but freeing their chunks failed: %s "
                           "(run virtsnap gc to retry)", removed, err->message);
            return 1;
        }
    }
    if (json) {
        print_prune_json(plan, dry_run, gc_ran, chunks, bytes, snapshots);
    } else if (!g->quiet) {
        g_autofree char *size = g_format_size(bytes);
        if (dry_run)
            printf("prune: dry run: nothing removed\n");
        else if (!removed)
            printf("prune: every backup is kept\n");
        else if (gc_ran)
            printf("prune: removed %u backups; freed %" G_GUINT64_FORMAT " chunks, %s\n", removed, chunks, size);
        else
            printf("prune: removed %u backups; a backup is writing into the repository, so their "
                   "chunks are freed by the next virtsnap gc or prune\n", removed);
        if (snapshots)
            printf("prune: deleted %u storage snapshots\n", snapshots);
    }
    if (snap_rc) {
        vs_print_error("prune: backups whose storage snapshots could not be deleted were kept (see above): "
                       "fix what stopped the deletion and prune again");
        return 1;
    }
    return 0;
}
