/* Backup summaries: what `list` and `prune` need of a backup (times, domains,
 * consistency, disk targets, byte totals), without its chunk list. A manifest
 * of a large disk is megabytes of chunk references, so describing every backup
 * from its manifest made `list` cost as much as reading the whole repository.
 * Commit therefore writes backups/ID.summary next to backups/ID.json (the
 * manifest first: the manifest alone makes a backup exist). The summary is a
 * cache, never the truth: backups are listed by their manifests, so a summary
 * without one is ignored, and a manifest without a usable summary (a repository
 * written before summaries, a crash between the two renames, a summary that is
 * damaged, of another version, or that names another manifest size) is
 * described from the manifest itself, as before (and gc, which reads every
 * manifest anyway, writes the summary it lacks). Summaries are read as hostile
 * input like everything in a repository: strictly, every field checked. */
#include "config.h"
#include "repo-internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUMMARY_FORMAT "virtsnap-summary"
#define SUMMARY_VERSION 1

static void
summary_domain_free(VsSummaryDomain *d)
{
    if (!d)
        return;
    g_free(d->name);
    g_free(d->consistency);
    g_strfreev(d->disks);
    g_strfreev(d->snapshot_only);
    g_free(d);
}

static VsBackupSummary *
summary_new(const char *id)
{
    VsBackupSummary *s = g_new0(VsBackupSummary, 1);

    s->id = g_strdup(id);
    s->group_freeze_ms = -1;
    s->domains = g_ptr_array_new_with_free_func((GDestroyNotify)summary_domain_free);
    return s;
}

void
vs_backup_summary_free(VsBackupSummary *s)
{
    if (!s)
        return;
    g_free(s->id);
    g_clear_pointer(&s->domains, g_ptr_array_unref);
    g_free(s->problem);
    g_free(s);
}

VsBackupSummary *
repo_summary_of_manifest(const VsManifest *m)
{
    VsBackupSummary *s = summary_new(m->id);

    s->started = m->started;
    s->completed = m->completed;
    s->group_freeze_ms = m->group_freeze_ms;
    for (guint i = 0; i < m->domains->len; i++) {
        const VsManifestDomain *d = g_ptr_array_index(m->domains, i);
        VsSummaryDomain *sd = g_new0(VsSummaryDomain, 1);

        sd->name = g_strdup(d->name);
        sd->consistency = g_strdup(d->consistency);
        sd->disks = g_new0(char *, d->disks->len + 1);
        sd->snapshot_only = g_new0(char *, d->disks->len + 1);
        for (guint k = 0, n = 0; k < d->disks->len; k++) {
            const VsManifestDisk *disk = g_ptr_array_index(d->disks, k);

            sd->disks[k] = g_strdup(disk->target);
            if (!disk->in_repo)
                sd->snapshot_only[n++] = g_strdup(disk->target);
            s->virtual_bytes += disk->virtual_size;
            s->stored_bytes += disk->bytes_stored;
            for (guint c = 0; c < disk->chunks->len; c++)
                s->data_bytes += g_array_index(disk->chunks, VsChunkRef, c).length;
        }
        g_ptr_array_add(s->domains, sd);
    }
    return s;
}

/* ------------------------------------------------------------------------- */
/* JSON                                                                      */

static void
add_time(JsonBuilder *b, const char *name, int64_t us)
{
    g_autofree char *iso = repo_time_to_iso(us);

    json_builder_set_member_name(b, name);
    json_builder_add_string_value(b, iso);
}

static void
add_uint(JsonBuilder *b, const char *name, uint64_t v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, (gint64)MIN(v, (uint64_t)G_MAXINT64));
}

char *
repo_summary_to_json(const VsBackupSummary *s, uint64_t manifest_bytes)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "format");
    json_builder_add_string_value(b, SUMMARY_FORMAT);
    add_uint(b, "version", SUMMARY_VERSION);
    json_builder_set_member_name(b, "id");
    json_builder_add_string_value(b, s->id);
    add_uint(b, "manifest_bytes", manifest_bytes);
    add_time(b, "started", s->started);
    add_time(b, "completed", s->completed);
    json_builder_set_member_name(b, "group_freeze_ms");
    if (s->group_freeze_ms >= 0)
        json_builder_add_int_value(b, s->group_freeze_ms);
    else
        json_builder_add_null_value(b);
    add_uint(b, "virtual_bytes", s->virtual_bytes);
    add_uint(b, "data_bytes", s->data_bytes);
    add_uint(b, "stored_bytes", s->stored_bytes);
    json_builder_set_member_name(b, "domains");
    json_builder_begin_array(b);
    for (guint i = 0; i < s->domains->len; i++) {
        const VsSummaryDomain *d = g_ptr_array_index(s->domains, i);

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, d->name);
        json_builder_set_member_name(b, "consistency");
        json_builder_add_string_value(b, d->consistency);
        json_builder_set_member_name(b, "disks");
        json_builder_begin_array(b);
        for (char **t = d->disks; t && *t; t++)
            json_builder_add_string_value(b, *t);
        json_builder_end_array(b);
        /* Only when there are any: a summary as before otherwise. */
        if (d->snapshot_only && *d->snapshot_only) {
            json_builder_set_member_name(b, "snapshot_only");
            json_builder_begin_array(b);
            for (char **t = d->snapshot_only; *t; t++)
                json_builder_add_string_value(b, *t);
            json_builder_end_array(b);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    return json_generator_to_data(gen, NULL);
}

static bool
name_ok(JsonCheck *c, const char *path, const char *name, const char *s)
{
    if (!*s || !g_utf8_validate(s, -1, NULL)) {
        jc_fail(c, VS_ERROR_FAILED, path, name, "empty or not valid UTF-8");
        return false;
    }
    return true;
}

/* "snapshot_only": optional, a list of targets among the domain's disks, each once. */
static bool
parse_snapshot_only(JsonCheck *c, JsonObject *o, const char *path, VsSummaryDomain *d)
{
    JsonArray *a;
    guint n;

    if (!json_object_has_member(o, "snapshot_only")) {
        d->snapshot_only = g_new0(char *, 1);
        return true;
    }
    if (!(a = jc_array(c, o, path, "snapshot_only")))
        return false;
    n = json_array_get_length(a);
    d->snapshot_only = g_new0(char *, n + 1);
    for (guint i = 0; i < n; i++) {
        JsonNode *e = json_array_get_element(a, i);
        g_autofree char *p = g_strdup_printf("%s.snapshot_only[%u]", path, i);

        if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING) {
            jc_fail(c, VS_ERROR_FAILED, p, NULL, "expected a string");
            return false;
        }
        /* Entries 0..i-1 are the NULL-terminated list so far. */
        if (g_strv_contains((const char *const *)d->snapshot_only, json_node_get_string(e)) ||
            !g_strv_contains((const char *const *)d->disks, json_node_get_string(e))) {
            jc_fail(c, VS_ERROR_FAILED, p, NULL, "\"%s\" is not one of the domain's disks, or appears twice",
                    json_node_get_string(e));
            return false;
        }
        d->snapshot_only[i] = g_strdup(json_node_get_string(e));
    }
    return true;
}

static bool
parse_domain(JsonCheck *c, JsonObject *o, const char *path, VsSummaryDomain *d)
{
    static const char *const members[] = { "name", "consistency", "disks", "snapshot_only", NULL };
    JsonArray *disks;
    guint n;

    if (!jc_members(c, o, path, members) || !jc_string(c, o, path, "name", false, &d->name) ||
        !name_ok(c, path, "name", d->name) || !jc_string(c, o, path, "consistency", false, &d->consistency) ||
        !(disks = jc_array(c, o, path, "disks")))
        return false;
    if (strcmp(d->consistency, "quiesced") != 0 && strcmp(d->consistency, "crash") != 0) {
        jc_fail(c, VS_ERROR_FAILED, path, "consistency", "\"%s\" is not \"quiesced\" or \"crash\"", d->consistency);
        return false;
    }
    n = json_array_get_length(disks);
    d->disks = g_new0(char *, n + 1);
    for (guint i = 0; i < n; i++) {
        JsonNode *e = json_array_get_element(disks, i);
        g_autofree char *p = g_strdup_printf("%s.disks[%u]", path, i);

        if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING) {
            jc_fail(c, VS_ERROR_FAILED, p, NULL, "expected a string");
            return false;
        }
        d->disks[i] = g_strdup(json_node_get_string(e));
        if (!name_ok(c, p, NULL, d->disks[i]))
            return false;
        for (guint j = 0; j < i; j++)
            if (strcmp(d->disks[j], d->disks[i]) == 0) {
                jc_fail(c, VS_ERROR_FAILED, p, NULL, "disk \"%s\" appears twice", d->disks[i]);
                return false;
            }
    }
    return parse_snapshot_only(c, o, path, d);
}

VsBackupSummary *
repo_summary_from_json(const char *json, const char *what, uint64_t *manifest_bytes, GError **error)
{
    static const char *const members[] = { "format", "version", "id", "manifest_bytes", "started", "completed",
                                           "group_freeze_ms", "virtual_bytes", "data_bytes", "stored_bytes",
                                           "domains", NULL };
    g_autofree char *where = g_strdup_printf("summary: %s", what ? what : "(text)");
    JsonCheck c = { where, error };
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) jerr = NULL;
    g_autoptr(VsBackupSummary) s = summary_new(NULL);
    g_autofree char *format = NULL;
    JsonObject *o;
    JsonArray *domains;
    uint64_t version;

    if (!json_parser_load_from_data(parser, json, -1, &jerr)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "%s: not valid JSON: %s", where, jerr->message);
        return NULL;
    }
    if (!(o = jc_root_object(&c, parser)) || !jc_string(&c, o, NULL, "format", false, &format))
        return NULL;
    if (strcmp(format, SUMMARY_FORMAT) != 0) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, "format", "\"%s\" is not \"%s\"", format, SUMMARY_FORMAT);
        return NULL;
    }
    if (!jc_uint(&c, o, NULL, "version", &version))
        return NULL;
    if (version != SUMMARY_VERSION) {
        jc_fail(&c, VS_ERROR_UNSUPPORTED, NULL, "version", "%" G_GUINT64_FORMAT " is not %d", version,
                SUMMARY_VERSION);
        return NULL;
    }
    if (!jc_members(&c, o, NULL, members) || !jc_string(&c, o, NULL, "id", false, &s->id) ||
        !jc_uint(&c, o, NULL, "manifest_bytes", manifest_bytes) ||
        !jc_time(&c, o, NULL, "started", &s->started) || !jc_time(&c, o, NULL, "completed", &s->completed) ||
        !jc_ms(&c, o, NULL, "group_freeze_ms", &s->group_freeze_ms) ||
        !jc_uint(&c, o, NULL, "virtual_bytes", &s->virtual_bytes) ||
        !jc_uint(&c, o, NULL, "data_bytes", &s->data_bytes) ||
        !jc_uint(&c, o, NULL, "stored_bytes", &s->stored_bytes) || !(domains = jc_array(&c, o, NULL, "domains")))
        return NULL;
    if (!repo_id_valid(s->id)) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, "id", "not a backup id");
        return NULL;
    }
    if (s->started < 0 || s->completed < 0) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, NULL, "negative time");
        return NULL;
    }
    /* Every chunk lies within its disk's virtual size. */
    if (s->data_bytes > s->virtual_bytes) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, "data_bytes", "larger than virtual_bytes");
        return NULL;
    }
    for (guint i = 0; i < json_array_get_length(domains); i++) {
        g_autofree char *dp = g_strdup_printf("domains[%u]", i);
        JsonObject *dobj = jc_element_object(&c, domains, "domains", i);
        VsSummaryDomain *d;

        if (!dobj)
            return NULL;
        d = g_new0(VsSummaryDomain, 1);
        g_ptr_array_add(s->domains, d);
        if (!parse_domain(&c, dobj, dp, d))
            return NULL;
        for (guint j = 0; j < i; j++)
            if (strcmp(((VsSummaryDomain *)g_ptr_array_index(s->domains, j))->name, d->name) == 0) {
                jc_fail(&c, VS_ERROR_FAILED, dp, "name", "domain \"%s\" appears twice", d->name);
                return NULL;
            }
    }
    return g_steal_pointer(&s);
}

/* ------------------------------------------------------------------------- */
/* backups/ID.summary                                                        */

static char *
summary_path(VsRepo *repo, const char *id)
{
    return g_strdup_printf("%s/%s.summary", repo->backups_dir, id);
}

/* The summary file of ID when it is there, parses, and describes exactly the
 * manifest that is there now (same id, same size); NULL otherwise. */
static VsBackupSummary *
load_summary_file(VsRepo *repo, const char *id)
{
    g_autofree char *file = summary_path(repo, id);
    g_autofree char *manifest = g_strdup_printf("%s/%s.json", repo->backups_dir, id);
    g_autofree char *text = NULL;
    g_autoptr(VsBackupSummary) s = NULL;
    uint64_t bytes = 0;
    struct stat st, mst;
    size_t len;

    /* A summary is a few hundred bytes a domain: anything past a megabyte is
     * not one of ours, and not worth reading. */
    if (lstat(file, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > 1024 * 1024 ||
        lstat(manifest, &mst) < 0 || !S_ISREG(mst.st_mode) ||
        repo_read_regular(AT_FDCWD, file, &text, &len) != 0 || strlen(text) != len)
        return NULL;
    s = repo_summary_from_json(text, file, &bytes, NULL);
    if (!s || strcmp(s->id, id) != 0 || bytes != (uint64_t)mst.st_size)
        return NULL;
    return g_steal_pointer(&s);
}

VsBackupSummary *
repo_load_summary(VsRepo *repo, const char *id, GError **error)
{
    VsBackupSummary *s;
    g_autoptr(VsManifest) m = NULL;

    if (!repo_id_valid(id)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s: \"%s\" is not a backup id",
                    repo->path, id ? id : "");
        return NULL;
    }
    if ((s = load_summary_file(repo, id)))
        return s;
    if (!(m = repo_load_manifest_exact(repo, id, error)))
        return NULL;
    return repo_summary_of_manifest(m);
}

void
repo_write_summary(VsRepo *repo, const VsManifest *m, uint64_t manifest_bytes)
{
    g_autoptr(VsBackupSummary) s = repo_summary_of_manifest(m);
    g_autofree char *json = repo_summary_to_json(s, manifest_bytes);
    g_autofree char *tmp = NULL, *file = summary_path(repo, m->id);

    /* Best effort: without it (or with a torn one after a crash) the backup
     * is described from its manifest. Renamed over a stale summary of the
     * same id, which can only be a leftover: the manifest's rename, which
     * never replaces, made this id ours. */
    if (repo_write_temp(&repo->perms, repo->tmp_dir, "summary", json, strlen(json), &tmp) == 0 &&
        rename(tmp, file) < 0)
        unlink(tmp);
}

void
repo_summary_repair(VsRepo *repo, const VsManifest *m)
{
    g_autoptr(VsBackupSummary) s = load_summary_file(repo, m->id);
    g_autofree char *manifest = NULL;
    struct stat st;

    if (s)
        return;
    /* The size of the file M was just parsed from. */
    manifest = g_strdup_printf("%s/%s.json", repo->backups_dir, m->id);
    if (lstat(manifest, &st) == 0 && S_ISREG(st.st_mode))
        repo_write_summary(repo, m, (uint64_t)st.st_size);
}

void
repo_delete_summary(VsRepo *repo, int backups_fd, const char *id)
{
    g_autofree char *file = g_strdup_printf("%s.summary", id);

    (void)unlinkat(backups_fd, file, 0);
}

GPtrArray *
vs_repo_list_summaries(VsRepo *repo, GError **error)
{
    g_auto(GStrv) ids = repo_list_ids(repo, error);
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func((GDestroyNotify)vs_backup_summary_free);

    if (!ids)
        return NULL;
    for (guint i = 0; ids[i]; i++) {
        g_autoptr(GError) err = NULL;
        VsBackupSummary *s = repo_load_summary(repo, ids[i], &err);

        /* A backup nothing can describe is listed with its problem: never
         * hidden. */
        if (!s) {
            s = summary_new(ids[i]);
            s->problem = g_strdup(err->message);
        }
        g_ptr_array_add(out, s);
    }
    return g_steal_pointer(&out);
}
