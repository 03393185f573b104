/* `virtsnap snapshots`: every storage snapshot a repository's backups record
 * (issue 15), one per disk, and whether it still exists, as its provider says
 * now (reflink and btrfs look in the snapshot directory, rbd asks the cluster,
 * a hook is run with `exists`). A repository-only command like list and
 * verify: it reads the manifests through the block layer and needs no libvirt.
 * A snapshot whose provider cannot be asked (no hook configured for its pool,
 * Ceph down, a file system not mounted) is listed as unknown with the reason,
 * never as gone. */
#include "config.h"
#include "virtsnap.h"
#include "vs-repo.h"
#include "vs-snapshot.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

int
vs_load_snap_config(const char *cmd, const char *path, VsSnapConfig **out)
{
    g_autoptr(GError) err = NULL;

    path = vs_cfg("VIRTSNAP_SNAPSHOT_CONFIG", path);
    if (path && !*path) {
        vs_print_error("%s: --snapshot-config needs a file", cmd);
        return 2;
    }
    if (!(*out = vs_snap_config_load(path, &err))) {
        vs_print_error("%s: %s", cmd, err->message);
        return 1;
    }
    return 0;
}

static void
add_json(JsonBuilder *b, const VsRecordedSnapshot *r)
{
    const VsManifestSnapshot *s = r->snapshot;
    g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(r->completed / G_USEC_PER_SEC);
    g_autofree char *when = g_date_time_format(t, "%Y-%m-%d %H:%M:%S");

    json_builder_begin_object(b);
    vs_json_add_str(b, "backup", r->backup_id);
    vs_json_add_str(b, "completed", when);
    vs_json_add_str(b, "domain", r->domain);
    vs_json_add_str(b, "disk", r->disk);
    vs_json_add_str(b, "provider", s->provider);
    vs_json_add_str(b, "handle", s->handle);
    vs_json_add_str(b, "kind", s->kind);
    vs_json_add_str(b, "pool", s->pool);
    vs_json_add_int_or_null(b, "size", s->size ? (gint64)MIN(s->size, (uint64_t)G_MAXINT64) : -1);
    vs_json_add_bool(b, "in_repo", r->in_repo);
    json_builder_set_member_name(b, "exists");
    if (r->state == VS_SNAP_STATE_UNKNOWN)
        json_builder_add_null_value(b);
    else
        json_builder_add_boolean_value(b, r->state == VS_SNAP_STATE_EXISTS);
    vs_json_add_str(b, "exists_reason", r->reason);
    json_builder_end_object(b);
}

static void
print_text(GPtrArray *snaps)
{
    if (!snaps->len) {
        printf("no storage snapshots recorded\n");
        return;
    }
    printf("%-24s %-16s %-6s %-8s %-40s %10s %-8s %s\n", "BACKUP", "DOMAIN", "DISK", "PROVIDER", "HANDLE", "SIZE",
           "IN-REPO", "EXISTS");
    for (guint i = 0; i < snaps->len; i++) {
        const VsRecordedSnapshot *r = snaps->pdata[i];
        g_autofree char *size = r->snapshot->size ? g_format_size(r->snapshot->size) : g_strdup("-");

        printf("%-24s %-16s %-6s %-8s %-40s %10s %-8s %s%s%s\n", r->backup_id, r->domain, r->disk,
               r->snapshot->provider, r->snapshot->handle, size, r->in_repo ? "yes" : "no",
               vs_snap_state_name(r->state), r->reason ? ": " : "", r->reason ? r->reason : "");
    }
}

int
vs_cmd_snapshots(const VsGlobal *g, int argc, char **argv)
{
    char *repo = NULL, *conf = NULL;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory", "DIR" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print a JSON array", NULL },
        { "snapshot-config", 0, 0, G_OPTION_ARG_FILENAME, &conf, "the hooks snapshots made by a hook are asked "
          "through (default " VS_SNAP_CONFIG_DEFAULT ")", "FILE" },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("[DOMAIN...] - list the storage snapshots a repository's "
                                                          "backups record, and whether each still exists");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    g_autoptr(VsSnapConfig) c = NULL;
    g_autoptr(GPtrArray) snaps = NULL, unreadable = NULL;
    int rc;

    (void)g;
    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        vs_print_error("snapshots: %s (see virtsnap snapshots --help)", err->message);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (!*argv[i]) {
            vs_print_error("snapshots: a DOMAIN given is empty (see virtsnap snapshots --help)");
            return 2;
        }
    if ((rc = vs_open_repo("snapshots", vs_repo_arg(repo), false, &r)) ||
        (rc = vs_load_snap_config("snapshots", conf, &c)))
        return rc;
    if (!(snaps = vs_repo_list_snapshots(r, NULL, (const char *const *)argv + 1, c, true, &unreadable, &err))) {
        vs_print_error("snapshots: %s", err->message);
        return 1;
    }
    if (json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autofree char *text = NULL;

        json_builder_begin_array(b);
        for (guint i = 0; i < snaps->len; i++)
            add_json(b, snaps->pdata[i]);
        json_builder_end_array(b);
        text = vs_json_builder_text(b, true);
        fputs(text, stdout);
    } else {
        print_text(snaps);
    }
    fflush(stdout);
    /* The others are listed; what could not be read is said, and fails. */
    for (guint i = 0; unreadable && i < unreadable->len; i++)
        vs_print_error("snapshots: %s", (const char *)unreadable->pdata[i]);
    return unreadable && unreadable->len ? 1 : 0;
}

/* Who a recorded snapshot is, wherever it is recorded: two records of one
 * snapshot name the same provider, handle and place. */
static char *
snapshot_key(const VsManifestSnapshot *s)
{
    return g_strjoin("\n", s->provider, s->handle, s->snapshot_dir ? s->snapshot_dir : "",
                     s->rbd_pool ? s->rbd_pool : "", s->rbd_image ? s->rbd_image : "", s->pool ? s->pool : "",
                     s->path ? s->path : "", NULL);
}

static VsPruneDecision *
find_decision(GPtrArray *plan, const char *id)
{
    for (guint i = 0; i < plan->len; i++)
        if (!strcmp(((VsPruneDecision *)plan->pdata[i])->id, id))
            return plan->pdata[i];
    return NULL;
}

static void
keep_for(VsPruneDecision *d, const char *why)
{
    g_autofree char *old = d->reasons;

    d->keep = true;
    d->reasons = g_strdup_printf("%s%s%s", old ? old : "", old ? "; " : "", why);
}

int
vs_prune_snapshots(VsRepo *r, const VsSnapConfig *c, GPtrArray *plan, bool dry_run, bool say, guint *deleted)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) unreadable = NULL, snaps = NULL;
    g_autoptr(GHashTable) kept = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    bool removes = false;
    int rc = 0;

    *deleted = 0;
    /* Nothing goes: no manifest need be read (the plan read summaries only). */
    for (guint i = 0; i < plan->len && !removes; i++)
        removes = !((VsPruneDecision *)plan->pdata[i])->keep;
    if (!removes)
        return 0;
    if (!(snaps = vs_repo_list_snapshots(r, NULL, NULL, c, false, &unreadable, &err)) ||
        (unreadable && unreadable->len)) {
        vs_print_error("prune: nothing removed: %s", err ? err->message : (char *)unreadable->pdata[0]);
        return -1;
    }
    /* A snapshot a backup that stays records too stays with it. */
    for (guint i = 0; i < snaps->len; i++) {
        const VsRecordedSnapshot *s = snaps->pdata[i];
        const VsPruneDecision *d = find_decision(plan, s->backup_id);
        if (!d || d->keep)
            g_hash_table_add(kept, snapshot_key(s->snapshot));
    }
    for (guint i = 0; i < snaps->len; i++) {
        const VsRecordedSnapshot *s = snaps->pdata[i];
        VsPruneDecision *d = find_decision(plan, s->backup_id);
        g_autofree char *key = snapshot_key(s->snapshot), *name = NULL;
        g_autoptr(GError) derr = NULL;
        bool gone = false;

        /* Kept, or kept just now because an earlier snapshot of it failed. */
        if (!d || d->keep || g_hash_table_contains(kept, key))
            continue;
        if (dry_run) {
            if (say)
                printf("would delete storage snapshot %s %s (backup %s, %s/%s)\n", s->snapshot->provider,
                       s->snapshot->handle, s->backup_id, s->domain, s->disk);
            continue;
        }
        name = g_strdup_printf("%s/%s", s->domain, s->disk);
        if (!vs_snap_record_delete(c, s->snapshot, name, &gone, &derr)) {
            g_autofree char *why = g_strdup_printf("its storage snapshot %s %s (%s) cannot be deleted",
                                                   s->snapshot->provider, s->snapshot->handle, name);
            vs_print_error("prune: backup %s, domain %s, disk %s: its %s snapshot %s cannot be deleted, so the "
                           "backup is kept: %s", s->backup_id, s->domain, s->disk, s->snapshot->provider,
                           s->snapshot->handle, derr->message);
            keep_for(d, why);
            rc = 1;
            continue;
        }
        (*deleted)++;
        if (say)
            printf("deleted storage snapshot %s %s (backup %s, %s/%s)%s\n", s->snapshot->provider,
                   s->snapshot->handle, s->backup_id, s->domain, s->disk, gone ? ": it was gone already" : "");
    }
    return rc;
}
