/* The journal's records: the names the crash-safety contract writes down
 * (kinds and members) and their one mapping to VsJournalRecord, both ways.
 * The member lists below are the on-disk format: each writer emits its kind's
 * members in list order, and the reader takes those of a record's kind, so a
 * name can only be spelt here. Every value is a JSON string or null, pid
 * included (a decimal string), as virtsnap has always written it. */
#include "config.h"
#include "driver-internal.h"
#include "journal-records.h"

#include <stddef.h>
#include <string.h>

typedef struct {
    const char *key;
    size_t offset;           /* of a char * in VsJournalRecord, or of pid */
} Member;

static const Member members[] = {
    { "domain", offsetof(VsJournalRecord, domain) },
    { "uuid", offsetof(VsJournalRecord, uuid) },
    { "disk", offsetof(VsJournalRecord, disk) },
    { "overlay", offsetof(VsJournalRecord, overlay) },
    { "original", offsetof(VsJournalRecord, original) },
    { "format", offsetof(VsJournalRecord, format) },
    { "checkpoint", offsetof(VsJournalRecord, checkpoint) },
    { "socket_dir", offsetof(VsJournalRecord, socket_dir) },
    { "scratch_dir", offsetof(VsJournalRecord, scratch_dir) },
    { "id", offsetof(VsJournalRecord, id) },
    { "repo", offsetof(VsJournalRecord, repo) },
    { "kind", offsetof(VsJournalRecord, run_kind) },
    { "host", offsetof(VsJournalRecord, host) },
    { "pid", offsetof(VsJournalRecord, pid) },
    { "path", offsetof(VsJournalRecord, path) },
    { "snapshot", offsetof(VsJournalRecord, snapshot) },
    { "config", offsetof(VsJournalRecord, config) },
    { "source", offsetof(VsJournalRecord, source) },
    { "dest", offsetof(VsJournalRecord, dest) },
};

#define DOMAIN_KEYS "domain", "uuid"

typedef struct {
    const char *name;
    const char *keys[8];     /* NULL-terminated, in the order written */
} Kind;

static const Kind kinds[] = {
    [VS_JOURNAL_UNKNOWN] = { NULL, { NULL } },
    /* A backup's begin writes id, repo, pid; an export's or restore's kind, pid, host. */
    [VS_JOURNAL_BEGIN] = { "begin", { "id", "repo", "pid", "kind", "host", NULL } },
    [VS_JOURNAL_FREEZE] = { "freeze", { DOMAIN_KEYS, NULL } },
    [VS_JOURNAL_THAWED] = { "thawed", { DOMAIN_KEYS, NULL } },
    [VS_JOURNAL_OVERLAY] = { "overlay", { DOMAIN_KEYS, "disk", "overlay", "original", "format", NULL } },
    [VS_JOURNAL_COMMIT] = { "commit", { DOMAIN_KEYS, "disk", "overlay", NULL } },
    [VS_JOURNAL_COMMITTED] = { "committed", { DOMAIN_KEYS, "disk", NULL } },
    [VS_JOURNAL_BACKUP_JOB] = { "backup-job", { DOMAIN_KEYS, "checkpoint", "socket_dir", "scratch_dir", NULL } },
    [VS_JOURNAL_JOB_ENDED] = { "job-ended", { DOMAIN_KEYS, NULL } },
    [VS_JOURNAL_INCOMPLETE] = { "incomplete", { NULL } },
    [VS_JOURNAL_TEMP] = { "temp", { "path", NULL } },
    [VS_JOURNAL_TEMP_DONE] = { "temp-done", { "path", NULL } },
    [VS_JOURNAL_STORAGE_SNAPSHOT] = { "storage-snapshot", { DOMAIN_KEYS, "disk", "snapshot", "config", NULL } },
    [VS_JOURNAL_SNAPSHOT_MADE] = { "snapshot-made", { DOMAIN_KEYS, "disk", "snapshot", "config", NULL } },
    [VS_JOURNAL_SNAPSHOT_DELETED] = { "snapshot-deleted", { DOMAIN_KEYS, "disk", NULL } },
    [VS_JOURNAL_MIGRATE] = { "migrate", { DOMAIN_KEYS, "source", "dest", NULL } },
};

static const char *const begin_backup_keys[] = { "id", "repo", "pid", NULL };
static const char *const begin_temps_keys[] = { "kind", "pid", "host", NULL };

const char *
vs_journal_kind_name(VsJournalKind kind)
{
    return (size_t)kind < G_N_ELEMENTS(kinds) ? kinds[kind].name : NULL;
}

static const Member *
member_of(const char *key)
{
    for (size_t i = 0; i < G_N_ELEMENTS(members); i++)
        if (strcmp(members[i].key, key) == 0)
            return &members[i];
    return NULL;
}

static bool
is_pid(const Member *m)
{
    return m->offset == offsetof(VsJournalRecord, pid);
}

static char **
string_slot(VsJournalRecord *r, const Member *m)
{
    return (char **)((char *)r + m->offset);
}

void
vs_journal_record_free(VsJournalRecord *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < G_N_ELEMENTS(members); i++)
        if (!is_pid(&members[i]))
            g_free(*string_slot(r, &members[i]));
    g_free(r->op);
    g_free(r);
}

/* Appends R, of kind R->kind, with its KEYS' members in that order. */
static bool
write_record(VsJournal *j, const VsJournalRecord *r, const char *const *keys, GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "op");
    json_builder_add_string_value(b, kinds[r->kind].name);
    json_builder_set_member_name(b, "time");
    json_builder_add_int_value(b, g_get_real_time());
    for (size_t i = 0; keys[i]; i++) {
        const Member *m = member_of(keys[i]);
        g_autofree char *pid = NULL;
        const char *val;

        g_assert(m);
        if (is_pid(m))
            val = pid = r->pid > 0 ? g_strdup_printf("%d", r->pid) : NULL;
        else
            val = *string_slot((VsJournalRecord *)r, m);
        json_builder_set_member_name(b, keys[i]);
        if (val)
            json_builder_add_string_value(b, val);
        else
            json_builder_add_null_value(b);
    }
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, NULL);
    return vs_journal_write_line(j, text, error);
}

static bool
write_kind(VsJournal *j, const VsJournalRecord *r, GError **error)
{
    return write_record(j, r, kinds[r->kind].keys, error);
}

bool
vs_journal_begin_backup(VsJournal *j, const char *id, const char *repo, int pid, GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_BEGIN, .id = (char *)id, .repo = (char *)repo, .pid = pid };

    return write_record(j, &r, begin_backup_keys, error);
}

bool
vs_journal_begin_temps(VsJournal *j, const char *run_kind, int pid, const char *host, GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_BEGIN, .run_kind = (char *)run_kind, .pid = pid,
                          .host = (char *)host };

    return write_record(j, &r, begin_temps_keys, error);
}

static bool
write_domain(VsJournal *j, VsJournalKind kind, const char *domain, const char *uuid, GError **error)
{
    VsJournalRecord r = { .kind = kind, .domain = (char *)domain, .uuid = (char *)uuid };

    return write_kind(j, &r, error);
}

bool
vs_journal_freeze(VsJournal *j, const char *domain, const char *uuid, GError **error)
{
    g_autofree char *point = g_strdup_printf("journal-freeze:%s", domain);

    if (!vs_fault_fail("journal-freeze", error) || !vs_fault_fail(point, error)) {
        g_prefix_error(error, "journal: writing %s: ", vs_journal_path(j));
        return false;
    }
    return write_domain(j, VS_JOURNAL_FREEZE, domain, uuid, error);
}

bool
vs_journal_thawed(VsJournal *j, const char *domain, const char *uuid, GError **error)
{
    return write_domain(j, VS_JOURNAL_THAWED, domain, uuid, error);
}

bool
vs_journal_job_ended(VsJournal *j, const char *domain, const char *uuid, GError **error)
{
    return write_domain(j, VS_JOURNAL_JOB_ENDED, domain, uuid, error);
}

bool
vs_journal_overlay(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                   const char *overlay, const char *original, const char *format, GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_OVERLAY, .domain = (char *)domain, .uuid = (char *)uuid,
                          .disk = (char *)disk, .overlay = (char *)overlay,
                          .original = (char *)original, .format = (char *)format };

    return write_kind(j, &r, error);
}

bool
vs_journal_commit(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                  const char *overlay, GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_COMMIT, .domain = (char *)domain, .uuid = (char *)uuid,
                          .disk = (char *)disk, .overlay = (char *)overlay };

    return write_kind(j, &r, error);
}

bool
vs_journal_committed(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                     GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_COMMITTED, .domain = (char *)domain, .uuid = (char *)uuid,
                          .disk = (char *)disk };

    return write_kind(j, &r, error);
}

bool
vs_journal_backup_job(VsJournal *j, const char *domain, const char *uuid, const char *checkpoint,
                      const char *socket_dir, const char *scratch_dir, GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_BACKUP_JOB, .domain = (char *)domain, .uuid = (char *)uuid,
                          .checkpoint = (char *)checkpoint, .socket_dir = (char *)socket_dir,
                          .scratch_dir = (char *)scratch_dir };

    return write_kind(j, &r, error);
}

bool
vs_journal_incomplete(VsJournal *j, GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_INCOMPLETE };

    return write_kind(j, &r, error);
}

bool
vs_journal_temp(VsJournal *j, const char *path, GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_TEMP, .path = (char *)path };

    return write_kind(j, &r, error);
}

bool
vs_journal_temp_done(VsJournal *j, const char *path, GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_TEMP_DONE, .path = (char *)path };

    return write_kind(j, &r, error);
}

static bool
write_snapshot(VsJournal *j, VsJournalKind kind, const char *domain, const char *uuid, const char *disk,
               const char *snapshot, const char *config, GError **error)
{
    VsJournalRecord r = { .kind = kind, .domain = (char *)domain, .uuid = (char *)uuid,
                          .disk = (char *)disk, .snapshot = (char *)snapshot, .config = (char *)config };

    return write_kind(j, &r, error);
}

bool
vs_journal_storage_snapshot(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                            const char *snapshot, const char *config, GError **error)
{
    return write_snapshot(j, VS_JOURNAL_STORAGE_SNAPSHOT, domain, uuid, disk, snapshot, config, error);
}

bool
vs_journal_snapshot_made(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                         const char *snapshot, const char *config, GError **error)
{
    return write_snapshot(j, VS_JOURNAL_SNAPSHOT_MADE, domain, uuid, disk, snapshot, config, error);
}

bool
vs_journal_snapshot_deleted(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                            GError **error)
{
    return write_snapshot(j, VS_JOURNAL_SNAPSHOT_DELETED, domain, uuid, disk, NULL, NULL, error);
}

bool
vs_journal_migrate(VsJournal *j, const char *domain, const char *uuid, const char *source,
                   const char *dest, GError **error)
{
    VsJournalRecord r = { .kind = VS_JOURNAL_MIGRATE, .domain = (char *)domain, .uuid = (char *)uuid,
                          .source = (char *)source, .dest = (char *)dest };

    return write_kind(j, &r, error);
}

static VsJournalKind
kind_of(const char *op)
{
    for (size_t k = 1; k < G_N_ELEMENTS(kinds); k++)
        if (strcmp(kinds[k].name, op) == 0)
            return (VsJournalKind)k;
    return VS_JOURNAL_UNKNOWN;
}

/* A string member of O, or NULL (absent, null, or not a string). */
static const char *
string_member(JsonObject *o, const char *key)
{
    JsonNode *n = json_object_get_member(o, key);

    return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
           ? json_node_get_string(n) : NULL;
}

/* A pid as written ("123"): anything but a positive decimal number is none. */
static int
parse_pid(const char *text)
{
    gint64 v = 0;

    if (!text || !g_ascii_string_to_signed(text, 10, 1, G_MAXINT, &v, NULL))
        return 0;
    return (int)v;
}

static VsJournalRecord *
parse_line(const char *line)
{
    g_autoptr(JsonParser) p = json_parser_new();
    JsonNode *root, *time;
    JsonObject *o;
    VsJournalRecord *r;
    const char *op;

    if (!json_parser_load_from_data(p, line, -1, NULL) || !(root = json_parser_get_root(p)) ||
        !JSON_NODE_HOLDS_OBJECT(root))
        return NULL;
    o = json_node_get_object(root);
    if (!(op = string_member(o, "op")))
        return NULL;
    r = g_new0(VsJournalRecord, 1);
    r->kind = kind_of(op);
    r->op = g_strdup(op);
    time = json_object_get_member(o, "time");
    if (time && JSON_NODE_HOLDS_VALUE(time) && json_node_get_value_type(time) == G_TYPE_INT64)
        r->time_us = json_node_get_int(time);
    for (size_t i = 0; kinds[r->kind].keys[i]; i++) {
        const char *key = kinds[r->kind].keys[i];
        const Member *m = member_of(key);

        if (is_pid(m))
            r->pid = parse_pid(string_member(o, key));
        else
            *string_slot(r, m) = g_strdup(string_member(o, key));
    }
    return r;
}

GPtrArray *
vs_journal_parse(const char *text)
{
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)vs_journal_record_free);
    g_auto(GStrv) lines = g_strsplit(text ? text : "", "\n", -1);

    for (size_t i = 0; lines[i]; i++) {
        VsJournalRecord *r;

        if (*lines[i] && (r = parse_line(lines[i])))
            g_ptr_array_add(out, r);
    }
    return out;
}
