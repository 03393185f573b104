/* The typed journal (driver/journal-records.h): every kind written by its
 * writer comes back from the reader with what was written; a record torn by a
 * crash, a kind this version does not know and a journal of an older version
 * are read as recover needs them; and the journals virtsnap wrote before the
 * records were typed (captured from real runs killed at fault points, in
 * journals/, see journals/README) are read, and written again byte for byte
 * but for the time stamps. */
#include "config.h"
#include "driver-internal.h"

#include <string.h>
#include <unistd.h>

static char *tmpdir;
static const char *data_dir;

/* A journal of the test's own, closed (as a killed run leaves it): its path. */
typedef void (*Fill)(VsJournal *j);

static char *
journal_of(const char *id, Fill fill)
{
    g_autoptr(GError) err = NULL;
    VsJournal *j = vs_journal_create(tmpdir, id, &err);
    char *path;

    g_assert_no_error(err);
    fill(j);
    path = g_strdup(vs_journal_path(j));
    vs_journal_close(j);
    return path;
}

static GPtrArray *
read_journal(const char *path)
{
    g_autoptr(GError) err = NULL;
    GPtrArray *recs = vs_journal_read(path, false, NULL, &err);

    g_assert_no_error(err);
    g_assert_nonnull(recs);
    return recs;
}

static VsJournalRecord *
rec(GPtrArray *recs, guint i)
{
    g_assert_cmpuint(i, <, recs->len);
    return recs->pdata[i];
}

#define DOM "web1"
#define UUID "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"

static void
fill_every_kind(VsJournal *j)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vs_journal_begin_backup(j, "20261207T101112Z-ab12", "/srv/repo", 4242, &err));
    g_assert_true(vs_journal_begin_temps(j, "restore", 77, "host-a", &err));
    g_assert_true(vs_journal_freeze(j, DOM, UUID, &err));
    g_assert_true(vs_journal_overlay(j, DOM, UUID, "vda", "/s/o.qcow2", "/img/web1.qcow2", "qcow2", &err));
    g_assert_true(vs_journal_backup_job(j, DOM, UUID, "virtsnap-1a2b3c4d-x", NULL, "/s/scratch/x", &err));
    g_assert_true(vs_journal_thawed(j, DOM, UUID, &err));
    g_assert_true(vs_journal_commit(j, DOM, UUID, "vda", "/s/o.qcow2", &err));
    g_assert_true(vs_journal_committed(j, DOM, UUID, "vda", &err));
    g_assert_true(vs_journal_job_ended(j, DOM, UUID, &err));
    g_assert_true(vs_journal_temp(j, "/img/.web1.qcow2.virtsnap-tmp", &err));
    g_assert_true(vs_journal_temp_done(j, "/img/.web1.qcow2.virtsnap-tmp", &err));
    g_assert_true(vs_journal_incomplete(j, &err));
    g_assert_no_error(err);
}

static void
assert_domain(const VsJournalRecord *r, VsJournalKind kind)
{
    g_assert_cmpint(r->kind, ==, kind);
    g_assert_cmpstr(r->op, ==, vs_journal_kind_name(kind));
    g_assert_cmpstr(r->domain, ==, DOM);
    g_assert_cmpstr(r->uuid, ==, UUID);
}

static void
test_round_trip(void)
{
    g_autofree char *path = journal_of("round-trip", fill_every_kind);
    g_autoptr(GPtrArray) recs = read_journal(path);
    gint64 now = g_get_real_time();
    VsJournalRecord *r;

    g_assert_cmpuint(recs->len, ==, 12);
    for (guint i = 0; i < recs->len; i++) {
        g_assert_cmpint(rec(recs, i)->time_us, >, now - 60 * G_USEC_PER_SEC);
        g_assert_cmpint(rec(recs, i)->time_us, <=, now);
    }
    r = rec(recs, 0);
    g_assert_cmpint(r->kind, ==, VS_JOURNAL_BEGIN);
    g_assert_cmpstr(r->id, ==, "20261207T101112Z-ab12");
    g_assert_cmpstr(r->repo, ==, "/srv/repo");
    g_assert_cmpint(r->pid, ==, 4242);
    g_assert_null(r->run_kind);
    r = rec(recs, 1);
    g_assert_cmpint(r->kind, ==, VS_JOURNAL_BEGIN);
    g_assert_cmpstr(r->run_kind, ==, "restore");
    g_assert_cmpint(r->pid, ==, 77);
    g_assert_cmpstr(r->host, ==, "host-a");
    g_assert_null(r->repo);
    assert_domain(rec(recs, 2), VS_JOURNAL_FREEZE);
    r = rec(recs, 3);
    assert_domain(r, VS_JOURNAL_OVERLAY);
    g_assert_cmpstr(r->disk, ==, "vda");
    g_assert_cmpstr(r->overlay, ==, "/s/o.qcow2");
    g_assert_cmpstr(r->original, ==, "/img/web1.qcow2");
    g_assert_cmpstr(r->format, ==, "qcow2");
    r = rec(recs, 4);
    assert_domain(r, VS_JOURNAL_BACKUP_JOB);
    g_assert_cmpstr(r->checkpoint, ==, "virtsnap-1a2b3c4d-x");
    g_assert_null(r->socket_dir);            /* push mode: written as null */
    g_assert_cmpstr(r->scratch_dir, ==, "/s/scratch/x");
    assert_domain(rec(recs, 5), VS_JOURNAL_THAWED);
    r = rec(recs, 6);
    assert_domain(r, VS_JOURNAL_COMMIT);
    g_assert_cmpstr(r->disk, ==, "vda");
    g_assert_cmpstr(r->overlay, ==, "/s/o.qcow2");
    g_assert_null(r->original);
    r = rec(recs, 7);
    assert_domain(r, VS_JOURNAL_COMMITTED);
    g_assert_cmpstr(r->disk, ==, "vda");
    g_assert_null(r->overlay);
    assert_domain(rec(recs, 8), VS_JOURNAL_JOB_ENDED);
    r = rec(recs, 9);
    g_assert_cmpint(r->kind, ==, VS_JOURNAL_TEMP);
    g_assert_cmpstr(r->path, ==, "/img/.web1.qcow2.virtsnap-tmp");
    g_assert_null(r->domain);
    r = rec(recs, 10);
    g_assert_cmpint(r->kind, ==, VS_JOURNAL_TEMP_DONE);
    g_assert_cmpstr(r->path, ==, "/img/.web1.qcow2.virtsnap-tmp");
    r = rec(recs, 11);
    g_assert_cmpint(r->kind, ==, VS_JOURNAL_INCOMPLETE);
    g_assert_cmpstr(r->op, ==, "incomplete");
}

static void
fill_two(VsJournal *j)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vs_journal_begin_backup(j, "id-1", "/srv/repo", 10, &err));
    g_assert_true(vs_journal_freeze(j, DOM, UUID, &err));
}

/* The run died while writing its overlay record: only the two before it count. */
static void
test_torn_last_line(void)
{
    g_autofree char *path = journal_of("torn", fill_two);
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) recs = NULL;
    g_autofree char *text = NULL;
    g_autofree char *torn = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    torn = g_strconcat(text, "{\"op\":\"overlay\",\"time\":1,\"domain\":\"web1\",\"uu", NULL);
    g_assert_true(g_file_set_contents(path, torn, -1, &err));
    recs = read_journal(path);
    g_assert_cmpuint(recs->len, ==, 2);
    g_assert_cmpint(rec(recs, 0)->kind, ==, VS_JOURNAL_BEGIN);
    assert_domain(rec(recs, 1), VS_JOURNAL_FREEZE);
}

/* A later version's kind is kept by name, with nothing that could be acted on;
 * lines that are no record at all are skipped; the rest reads as usual. */
static void
test_unknown_kind(void)
{
    const char *text =
        "{\"op\":\"begin\",\"time\":5,\"id\":\"id-2\",\"repo\":\"/r\",\"pid\":\"9\"}\n"
        "{\"op\":\"array-snapshot\",\"time\":6,\"domain\":\"web1\",\"uuid\":\"" UUID "\","
        "\"path\":\"/dev/x\",\"disk\":\"vda\"}\n"
        "[\"op\",\"freeze\"]\n"
        "{\"time\":7,\"domain\":\"web1\"}\n"
        "{\"op\":42}\n"
        "{\"op\":\"thawed\",\"time\":8,\"domain\":\"web1\",\"uuid\":\"" UUID "\"}\n";
    g_autoptr(GPtrArray) recs = vs_journal_parse(text);
    VsJournalRecord *r;

    g_assert_cmpuint(recs->len, ==, 3);
    g_assert_cmpint(rec(recs, 0)->kind, ==, VS_JOURNAL_BEGIN);
    g_assert_cmpint(rec(recs, 0)->pid, ==, 9);
    r = rec(recs, 1);
    g_assert_cmpint(r->kind, ==, VS_JOURNAL_UNKNOWN);
    g_assert_cmpstr(r->op, ==, "array-snapshot");
    g_assert_cmpint(r->time_us, ==, 6);
    g_assert_null(r->domain);
    g_assert_null(r->uuid);
    g_assert_null(r->path);
    g_assert_null(r->disk);
    g_assert_null(vs_journal_kind_name(r->kind));
    assert_domain(rec(recs, 2), VS_JOURNAL_THAWED);
    g_assert_cmpint(rec(recs, 2)->time_us, ==, 8);
}

/* What the first versions wrote, a backup's begin without the pid (recover
 * then leaves the repository's temp files alone); and what a damaged or a
 * later version's journal may hold: no time, a pid that is not one, a member
 * of another type (none), members this version does not know (ignored). */
static void
test_older_version(void)
{
    const char *text =
        "{\"op\":\"begin\",\"time\":1700000000000000,\"id\":\"20231114T221320Z-0001\",\"repo\":\"/srv/repo\"}\n"
        "{\"op\":\"freeze\",\"domain\":\"web1\",\"uuid\":\"" UUID "\"}\n"
        "{\"op\":\"overlay\",\"time\":1700000000000001,\"domain\":\"web1\",\"uuid\":\"" UUID "\","
        "\"disk\":\"vda\",\"overlay\":\"/s/o.qcow2\",\"original\":\"/img/web1.qcow2\",\"format\":null}\n"
        "{\"op\":\"begin\",\"time\":2,\"id\":\"x\",\"repo\":\"/r\",\"pid\":\"12abc\"}\n"
        "{\"op\":\"committed\",\"time\":3,\"domain\":\"web1\",\"uuid\":\"" UUID "\",\"disk\":\"vda\","
        "\"bytes\":\"123\",\"format\":\"raw\"}\n"
        "{\"op\":\"thawed\",\"time\":4,\"domain\":\"web1\",\"uuid\":5}\n";
    g_autoptr(GPtrArray) recs = vs_journal_parse(text);
    VsJournalRecord *r;

    g_assert_cmpuint(recs->len, ==, 6);
    r = rec(recs, 0);
    g_assert_cmpint(r->kind, ==, VS_JOURNAL_BEGIN);
    g_assert_cmpstr(r->id, ==, "20231114T221320Z-0001");
    g_assert_cmpstr(r->repo, ==, "/srv/repo");
    g_assert_cmpint(r->pid, ==, 0);
    g_assert_cmpint(r->time_us, ==, 1700000000000000);
    r = rec(recs, 1);
    assert_domain(r, VS_JOURNAL_FREEZE);
    g_assert_cmpint(r->time_us, ==, 0);
    r = rec(recs, 2);
    assert_domain(r, VS_JOURNAL_OVERLAY);
    g_assert_cmpstr(r->original, ==, "/img/web1.qcow2");
    g_assert_null(r->format);
    g_assert_cmpint(rec(recs, 3)->pid, ==, 0);   /* not a pid: none */
    r = rec(recs, 4);
    assert_domain(r, VS_JOURNAL_COMMITTED);
    g_assert_cmpstr(r->disk, ==, "vda");
    g_assert_null(r->format);                    /* not a member of committed */
    r = rec(recs, 5);
    g_assert_cmpint(r->kind, ==, VS_JOURNAL_THAWED);
    g_assert_null(r->uuid);
}

/* A record written again by this version's writer of its kind. */
static bool
rewrite(VsJournal *j, const VsJournalRecord *r, GError **error)
{
    switch (r->kind) {
    case VS_JOURNAL_BEGIN:
        return r->run_kind ? vs_journal_begin_temps(j, r->run_kind, r->pid, r->host, error)
                           : vs_journal_begin_backup(j, r->id, r->repo, r->pid, error);
    case VS_JOURNAL_FREEZE:
        return vs_journal_freeze(j, r->domain, r->uuid, error);
    case VS_JOURNAL_THAWED:
        return vs_journal_thawed(j, r->domain, r->uuid, error);
    case VS_JOURNAL_OVERLAY:
        return vs_journal_overlay(j, r->domain, r->uuid, r->disk, r->overlay, r->original, r->format,
                                  error);
    case VS_JOURNAL_COMMIT:
        return vs_journal_commit(j, r->domain, r->uuid, r->disk, r->overlay, error);
    case VS_JOURNAL_COMMITTED:
        return vs_journal_committed(j, r->domain, r->uuid, r->disk, error);
    case VS_JOURNAL_BACKUP_JOB:
        return vs_journal_backup_job(j, r->domain, r->uuid, r->checkpoint, r->socket_dir,
                                     r->scratch_dir, error);
    case VS_JOURNAL_JOB_ENDED:
        return vs_journal_job_ended(j, r->domain, r->uuid, error);
    case VS_JOURNAL_INCOMPLETE:
        return vs_journal_incomplete(j, error);
    case VS_JOURNAL_TEMP:
        return vs_journal_temp(j, r->path, error);
    case VS_JOURNAL_TEMP_DONE:
        return vs_journal_temp_done(j, r->path, error);
    case VS_JOURNAL_STORAGE_SNAPSHOT:
        return vs_journal_storage_snapshot(j, r->domain, r->uuid, r->disk, r->snapshot, r->config, error);
    case VS_JOURNAL_SNAPSHOT_MADE:
        return vs_journal_snapshot_made(j, r->domain, r->uuid, r->disk, r->snapshot, r->config, error);
    case VS_JOURNAL_SNAPSHOT_DELETED:
        return vs_journal_snapshot_deleted(j, r->domain, r->uuid, r->disk, error);
    case VS_JOURNAL_MIGRATE:
        return vs_journal_migrate(j, r->domain, r->uuid, r->source, r->dest, error);
    case VS_JOURNAL_UNKNOWN:
        break;
    }
    g_assert_not_reached();
}

/* TEXT with every "time":N as "time":0. */
static char *
timeless(const char *text)
{
    g_autoptr(GRegex) re = g_regex_new("\"time\":[0-9]+", 0, 0, NULL);

    return g_regex_replace_literal(re, text, -1, 0, "\"time\":0", 0, NULL);
}

/* A migration's journal, as `virtsnap migrate` writes it before the move: the
 * on-disk text is the contract with recover (journal-records.h), so the line
 * is compared whole; and a journal without the members reads them as NULL. */
static void
test_migrate(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *text = NULL, *t = NULL;
    g_autoptr(GPtrArray) recs = NULL;
    VsJournal *j = vs_journal_create(tmpdir, "migrate-test", &err);
    VsJournalRecord *r;

    g_assert_no_error(err);
    g_assert_true(vs_journal_begin_temps(j, "migrate", 4242, "hv1", &err));
    g_assert_true(vs_journal_migrate(j, "web1", UUID, "qemu:///system", "qemu+tcp://10.213.0.2/system", &err));
    g_assert_no_error(err);
    g_assert_true(g_file_get_contents(vs_journal_path(j), &text, NULL, NULL));
    vs_journal_finish(j);
    t = timeless(text);
    g_assert_cmpstr(t, ==,
                    "{\"op\":\"begin\",\"time\":0,\"kind\":\"migrate\",\"pid\":\"4242\",\"host\":\"hv1\"}\n"
                    "{\"op\":\"migrate\",\"time\":0,\"domain\":\"web1\",\"uuid\":\"" UUID "\","
                    "\"source\":\"qemu:///system\",\"dest\":\"qemu+tcp://10.213.0.2/system\"}\n");
    recs = vs_journal_parse(text);
    g_assert_cmpuint(recs->len, ==, 2);
    g_assert_cmpstr(rec(recs, 0)->run_kind, ==, "migrate");
    r = rec(recs, 1);
    assert_domain(r, VS_JOURNAL_MIGRATE);
    g_assert_cmpstr(r->op, ==, "migrate");
    g_assert_cmpstr(r->source, ==, "qemu:///system");
    g_assert_cmpstr(r->dest, ==, "qemu+tcp://10.213.0.2/system");
    g_assert_null(r->disk);
    g_clear_pointer(&recs, g_ptr_array_unref);
    recs = vs_journal_parse("{\"op\":\"migrate\",\"time\":1,\"domain\":\"web1\",\"uuid\":\"" UUID "\"}\n");
    g_assert_cmpint(rec(recs, 0)->kind, ==, VS_JOURNAL_MIGRATE);
    g_assert_null(rec(recs, 0)->dest);
}

/* The captured journal NAME (journals/NAME.jsonl): its records, each
 * checked to be written again exactly as the old code wrote it. */
static GPtrArray *
captured(const char *name)
{
    g_autofree char *file = g_strconcat(name, ".jsonl", NULL);
    g_autofree char *path = g_build_filename(data_dir, file, NULL);
    g_autofree char *id = g_strconcat("again-", name, NULL);
    g_autofree char *old = NULL, *new = NULL, *old_t = NULL, *new_t = NULL;
    g_autoptr(GError) err = NULL;
    GPtrArray *recs = read_journal(path);
    VsJournal *j = vs_journal_create(tmpdir, id, &err);

    g_assert_no_error(err);
    for (guint i = 0; i < recs->len; i++) {
        g_assert_cmpint(rec(recs, i)->kind, !=, VS_JOURNAL_UNKNOWN);
        g_assert_true(rewrite(j, recs->pdata[i], &err));
        g_assert_no_error(err);
    }
    g_assert_true(g_file_get_contents(path, &old, NULL, NULL));
    g_assert_true(g_file_get_contents(vs_journal_path(j), &new, NULL, NULL));
    vs_journal_finish(j);
    old_t = timeless(old);
    new_t = timeless(new);
    g_assert_cmpstr(new_t, ==, old_t);
    return recs;
}

/* The kinds of RECS, as "begin freeze overlay ...". */
static char *
kinds(GPtrArray *recs)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < recs->len; i++)
        g_string_append_printf(s, "%s%s", i ? " " : "", rec(recs, i)->op);
    return g_string_free(s, FALSE);
}

static void
assert_backup_begin(const VsJournalRecord *r)
{
    g_assert_cmpint(r->kind, ==, VS_JOURNAL_BEGIN);
    g_assert_nonnull(r->id);
    g_assert_true(g_str_has_suffix(r->repo, "/repo"));
    g_assert_cmpint(r->pid, >, 0);
    g_assert_cmpint(r->time_us, >, 0);
}

static void
test_captured_overlay(void)
{
    g_autoptr(GPtrArray) recs = captured("overlay-after-commit");
    g_autofree char *k = kinds(recs);
    VsJournalRecord *o;

    g_assert_cmpstr(k, ==, "begin freeze overlay thawed commit committed");
    assert_backup_begin(rec(recs, 0));
    g_assert_nonnull(rec(recs, 1)->uuid);
    g_assert_nonnull(rec(recs, 1)->domain);
    o = rec(recs, 2);
    g_assert_cmpstr(o->uuid, ==, rec(recs, 1)->uuid);
    g_assert_cmpstr(o->disk, ==, "vda");
    g_assert_true(g_str_has_suffix(o->original, "/disk.qcow2"));
    g_assert_cmpstr(o->format, ==, "qcow2");
    g_assert_cmpstr(rec(recs, 4)->overlay, ==, o->overlay);
    g_assert_cmpstr(rec(recs, 5)->disk, ==, "vda");
}

static void
test_captured_snapshot(void)
{
    g_autoptr(GPtrArray) recs = captured("overlay-after-snapshot");
    g_autofree char *k = kinds(recs);

    g_assert_cmpstr(k, ==, "begin freeze overlay");
    g_assert_nonnull(rec(recs, 2)->overlay);
}

static void
test_captured_pull(void)
{
    g_autoptr(GPtrArray) recs = captured("pull-before-manifest");
    g_autofree char *k = kinds(recs);
    VsJournalRecord *b;

    g_assert_cmpstr(k, ==, "begin freeze backup-job thawed");
    assert_backup_begin(rec(recs, 0));
    b = rec(recs, 2);
    g_assert_true(g_str_has_prefix(b->checkpoint, "virtsnap-"));
    g_assert_nonnull(b->socket_dir);
    g_assert_nonnull(b->scratch_dir);
}

static void
test_captured_push(void)
{
    g_autoptr(GPtrArray) recs = captured("push-before-manifest");
    g_autofree char *k = kinds(recs);
    VsJournalRecord *b;

    g_assert_cmpstr(k, ==, "begin freeze backup-job thawed");
    b = rec(recs, 2);
    g_assert_true(g_str_has_prefix(b->checkpoint, "virtsnap-"));
    g_assert_null(b->socket_dir);
    g_assert_nonnull(b->scratch_dir);
}

static void
test_captured_export(void)
{
    g_autoptr(GPtrArray) recs = captured("export-writing");
    g_autofree char *k = kinds(recs);

    g_assert_cmpstr(k, ==, "begin temp");
    g_assert_cmpstr(rec(recs, 0)->run_kind, ==, "export");
    g_assert_cmpint(rec(recs, 0)->pid, >, 0);
    g_assert_nonnull(rec(recs, 0)->host);
    g_assert_null(rec(recs, 0)->repo);
    g_assert_true(g_path_is_absolute(rec(recs, 1)->path));
}

static void
test_captured_restore(void)
{
    g_autoptr(GPtrArray) recs = captured("restore-instant-running");
    g_autofree char *k = kinds(recs);

    g_assert_cmpstr(k, ==, "begin temp temp-done");
    g_assert_cmpstr(rec(recs, 0)->run_kind, ==, "restore");
    g_assert_cmpstr(rec(recs, 2)->path, ==, rec(recs, 1)->path);
}

int
main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    data_dir = g_getenv("JOURNAL_DATA");
    g_assert_nonnull(data_dir);
    tmpdir = g_dir_make_tmp("vs-journal-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
    g_test_add_func("/journal/round-trip", test_round_trip);
    g_test_add_func("/journal/torn-last-line", test_torn_last_line);
    g_test_add_func("/journal/unknown-kind", test_unknown_kind);
    g_test_add_func("/journal/older-version", test_older_version);
    g_test_add_func("/journal/migrate", test_migrate);
    g_test_add_func("/journal/captured/overlay", test_captured_overlay);
    g_test_add_func("/journal/captured/snapshot", test_captured_snapshot);
    g_test_add_func("/journal/captured/pull", test_captured_pull);
    g_test_add_func("/journal/captured/push", test_captured_push);
    g_test_add_func("/journal/captured/export", test_captured_export);
    g_test_add_func("/journal/captured/restore", test_captured_restore);
    rc = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
        (void)!system(cmd);
    }
    return rc;
}
