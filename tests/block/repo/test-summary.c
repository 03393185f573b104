/* What keeps the repository commands linear: the digest set gc and verify
 * mark chunks into (checked against a GHashTable of the same digests, with
 * digests that agree in all but their last bytes), and backup summaries:
 * their strict parser's refusals, and in a real repository that a summary
 * is used only when it matches its manifest, that one which does not (or a
 * manifest without one) is described from the manifest, that a summary never
 * lists a backup whose manifest is gone and never hides one whose manifest is
 * there, that delete removes it and that gc writes one a backup lacks. */
#include "repo-test-util.h"
#include "repo-internal.h"

#include <stdio.h>
#include <sys/stat.h>

#define CS 65536u

/* ------------------------------------------------------------------------- */
/* The digest set                                                            */

static guint
ref_hash(gconstpointer k)
{
    guint h;

    memcpy(&h, (const uint8_t *)k + 28, sizeof(h));
    return h;
}

static gboolean
ref_equal(gconstpointer a, gconstpointer b)
{
    return memcmp(a, b, sizeof(VsDigest)) == 0;
}

static void
check_against_table(guint n, guint distinct, bool shared_prefix)
{
    g_autoptr(RepoDigestSet) s = repo_digest_set_new();
    g_autoptr(GHashTable) ref = g_hash_table_new_full(ref_hash, ref_equal, g_free, NULL);
    g_autoptr(GRand) rnd = g_rand_new_with_seed(7);

    for (guint i = 0; i < n; i++) {
        VsDigest d;
        guint v = g_rand_int_range(rnd, 0, (gint32)distinct), idx = G_MAXUINT, again = G_MAXUINT;
        gpointer seen_idx = NULL;
        bool known;

        /* D is a function of V: duplicates come back as the same digest */
        memset(&d, shared_prefix ? 0xab : 0, sizeof(d));
        if (!shared_prefix) {
            g_autoptr(GRand) dr = g_rand_new_with_seed(v);

            for (guint w = 0; w < 8; w++) {
                guint32 x = g_rand_int(dr);
                memcpy(d.bytes + 4 * w, &x, 4);
            }
        }
        memcpy(d.bytes + 28, &v, sizeof(v));
        known = g_hash_table_lookup_extended(ref, &d, NULL, &seen_idx);
        g_assert_cmpint(repo_digest_set_add(s, &d, &idx), ==, !known);
        if (known) {
            g_assert_cmpuint(idx, ==, GPOINTER_TO_UINT(seen_idx));
        } else {
            /* indices are dense, in order of first insertion */
            g_assert_cmpuint(idx, ==, g_hash_table_size(ref));
            g_hash_table_insert(ref, g_memdup2(&d, sizeof(d)), GUINT_TO_POINTER(idx));
        }
        g_assert_true(repo_digest_set_find(s, &d, &again));
        g_assert_cmpuint(again, ==, idx);
        g_assert_cmpmem(repo_digest_set_get(s, idx), sizeof(d), &d, sizeof(d));
    }
    g_assert_cmpuint(repo_digest_set_size(s), ==, g_hash_table_size(ref));
    /* digests never added are not found */
    for (guint i = 0; i < 1000; i++) {
        VsDigest d;
        guint v = distinct + i;

        memset(&d, shared_prefix ? 0xab : 0x5c, sizeof(d));
        memcpy(d.bytes + 28, &v, sizeof(v));
        g_assert_false(repo_digest_set_find(s, &d, NULL));
    }
}

static void
test_set_random(void)
{
    /* many references to fewer chunks, across several growths of the table */
    check_against_table(200000, 50000, false);
}

static void
test_set_shared_prefix(void)
{
    /* digests equal in their first 28 bytes: the hash must use all of them */
    check_against_table(20000, 5000, true);
}

/* ------------------------------------------------------------------------- */
/* Summary JSON                                                              */

static const char *good_json(void);

static VsBackupSummary *
sample(void)
{
    g_autoptr(VsManifest) m = vs_manifest_new();
    VsManifestDisk *k = tu_add_disk(m, "web1", "vda");
    VsManifestDisk *k2 = vs_manifest_domain_add_disk(vs_manifest_find_domain(m, "web1"), "vdb");
    VsManifestDisk *k3 = tu_add_disk(m, "db \"prod\" é", "sda");
    VsChunkRef r = { .offset = 0, .length = CS };

    g_free(m->id);
    m->id = g_strdup("20261123T141600Z-3f9a2c");
    m->started = 1795443360123456;
    m->completed = 1795443421000001;
    m->group_freeze_ms = 77;
    g_free(vs_manifest_find_domain(m, "web1")->consistency);
    vs_manifest_find_domain(m, "web1")->consistency = g_strdup("quiesced");
    k->virtual_size = 10 * CS;
    k->bytes_stored = 1000;
    g_array_append_val(k->chunks, r);
    r.offset = 3 * CS;
    g_array_append_val(k->chunks, r);
    k2->virtual_size = CS + 5;
    k2->bytes_stored = 7;
    r.offset = CS;
    r.length = 5;
    g_array_append_val(k2->chunks, r);
    k3->virtual_size = 4 * CS;
    return repo_summary_of_manifest(m);
}

static void
test_summary_round_trip(void)
{
    g_autoptr(VsBackupSummary) s = sample();
    g_autofree char *json = repo_summary_to_json(s, 12345);
    g_autoptr(VsBackupSummary) back = NULL;
    g_autoptr(GError) err = NULL;
    uint64_t bytes = 0;
    VsSummaryDomain *d;

    g_assert_cmpuint(s->virtual_bytes, ==, 15 * CS + 5);
    g_assert_cmpuint(s->data_bytes, ==, 2 * CS + 5);
    g_assert_cmpuint(s->stored_bytes, ==, 1007);
    back = repo_summary_from_json(json, "x", &bytes, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(bytes, ==, 12345);
    g_assert_cmpstr(back->id, ==, s->id);
    g_assert_cmpint(back->started, ==, s->started);
    g_assert_cmpint(back->completed, ==, s->completed);
    g_assert_cmpint(back->group_freeze_ms, ==, 77);
    g_assert_cmpuint(back->virtual_bytes, ==, s->virtual_bytes);
    g_assert_cmpuint(back->data_bytes, ==, s->data_bytes);
    g_assert_cmpuint(back->stored_bytes, ==, s->stored_bytes);
    g_assert_cmpuint(back->domains->len, ==, 2);
    d = back->domains->pdata[0];
    g_assert_cmpstr(d->name, ==, "web1");
    g_assert_cmpstr(d->consistency, ==, "quiesced");
    g_assert_cmpuint(g_strv_length(d->disks), ==, 2);
    g_assert_cmpstr(d->disks[1], ==, "vdb");
    d = back->domains->pdata[1];
    g_assert_cmpstr(d->name, ==, "db \"prod\" é");
    g_assert_cmpstr(d->consistency, ==, "crash");
    g_assert_null(back->problem);
}

static const char *
good_json(void)
{
    static char *json;

    if (!json) {
        g_autoptr(VsBackupSummary) s = sample();

        json = repo_summary_to_json(s, 12345);
    }
    return json;
}

static char *
edit(const char *from, const char *to)
{
    g_autofree char *esc = g_regex_escape_string(from, -1);
    g_autoptr(GRegex) re = g_regex_new(esc, 0, 0, NULL);
    char *out = g_regex_replace_literal(re, good_json(), -1, 0, to, 0, NULL);

    g_assert_cmpstr(out, !=, good_json());
    return out;
}

static void
test_summary_hostile(void)
{
    static const struct {
        const char *from, *to, *expect;
    } cases[] = {
        { "\"virtsnap-summary\"", "\"virtsnap-manifest\"", "summary: x: format: " },
        { "\"version\" : 1", "\"version\" : 2", "summary: x: version: 2 is not 1" },
        { "\"version\" : 1", "\"version\" : \"1\"", "summary: x: version: expected a non-negative integer" },
        { "\"id\" : \"20261123T141600Z-3f9a2c\"", "\"id\" : \"../../etc/passwd\"", "summary: x: id: not a backup id" },
        { "\"id\" : \"20261123T141600Z-3f9a2c\"", "\"id\" : null", "summary: x: id: " },
        { "\"manifest_bytes\" : 12345", "\"manifest_bytes\" : -1", "summary: x: manifest_bytes: " },
        { "\"manifest_bytes\" : 12345", "\"manifest_bytes\" : 1.5", "summary: x: manifest_bytes: " },
        { "\"manifest_bytes\" : 12345,", "", "summary: x: manifest_bytes: missing" },
        { "\"manifest_bytes\" : 12345", "\"manifest_bytes\" : 12345, \"extra\" : 1", "summary: x: extra: unknown member" },
        { "\"started\" : \"", "\"started\" : \"yesterday", "summary: x: started: " },
        { "\"group_freeze_ms\" : 77", "\"group_freeze_ms\" : -77", "summary: x: group_freeze_ms: " },
        { "\"data_bytes\" : 131077", "\"data_bytes\" : 983046", "summary: x: data_bytes: larger than virtual_bytes" },
        { "\"consistency\" : \"quiesced\"", "\"consistency\" : \"complete\"", "summary: x: domains[0].consistency: " },
        { "\"name\" : \"db \\\"prod\\\" é\"", "\"name\" : \"web1\"", "summary: x: domains[1].name: domain \"web1\" appears twice" },
        { "\"name\" : \"web1\"", "\"name\" : \"\"", "summary: x: domains[0].name: empty" },
        { "\"name\" : \"web1\"", "\"name\" : \"\\u0000x\"", "summary: x: domains[0].name: empty" },
        { "\"vdb\"", "\"vda\"", "summary: x: domains[0].disks[1]: disk \"vda\" appears twice" },
        { "\"vdb\"", "7", "summary: x: domains[0].disks[1]: expected a string" },
        { "\"vdb\"", "\"\"", "summary: x: domains[0].disks[1]: empty" },
        { "\"domains\" : [", "\"domains\" : [ 1,", "summary: x: domains[0]: expected an object" },
        { "\"disks\" : [", "\"disks\" : 1, \"d\" : [", "summary: x: domains[0].d: unknown member" },
        { "{", "[", "summary: x: not valid JSON" },
    };

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *json = edit(cases[i].from, cases[i].to);
        g_autoptr(GError) err = NULL;
        g_autoptr(VsBackupSummary) s = NULL;
        uint64_t bytes = 0;

        s = repo_summary_from_json(json, "x", &bytes, &err);
        if (s || !err || !g_str_has_prefix(err->message, cases[i].expect))
            g_error("case %u (%s -> %s): %s, expected \"%s...\"", i, cases[i].from, cases[i].to,
                    err ? err->message : "accepted", cases[i].expect);
    }
    /* not a JSON object at all, and an empty file */
    {
        g_autoptr(GError) err = NULL;
        uint64_t bytes;

        g_assert_null(repo_summary_from_json("[]", "x", &bytes, &err));
        g_assert_nonnull(strstr(err->message, "not a JSON object"));
        g_clear_error(&err);
        g_assert_null(repo_summary_from_json("", "x", &bytes, &err));
        g_assert_nonnull(err);
    }
}

/* ------------------------------------------------------------------------- */
/* Summaries in a repository                                                 */

static GPtrArray *
list(VsRepo *r)
{
    g_autoptr(GError) err = NULL;
    GPtrArray *all = vs_repo_list_summaries(r, &err);

    g_assert_no_error(err);
    return all;
}

static const VsBackupSummary *
find(GPtrArray *all, const char *id)
{
    for (guint i = 0; i < all->len; i++)
        if (strcmp(((VsBackupSummary *)all->pdata[i])->id, id) == 0)
            return all->pdata[i];
    return NULL;
}

/* Rewrites the summary file of ID with the text it has, FROM replaced by TO. */
static void
edit_file(const char *file, const char *from, const char *to)
{
    g_autofree char *text = NULL, *out = NULL, *esc = g_regex_escape_string(from, -1);
    g_autoptr(GRegex) re = g_regex_new(esc, 0, 0, NULL);

    g_assert_true(g_file_get_contents(file, &text, NULL, NULL));
    out = g_regex_replace_literal(re, text, -1, 0, to, 0, NULL);
    g_assert_cmpstr(out, !=, text);
    tu_write_file(file, out, strlen(out));
}

/* A repository with two backups: A (web1, 3 chunks) and B (web2, 2 chunks),
 * both with the summary commit wrote. */
typedef struct {
    TuRepo base;
    char *a, *b;
    char *sa, *sb;     /* their summaries */
    char *ma;          /* A's manifest */
} SummaryRepo;

static void
summary_repo_setup(SummaryRepo *f, gconstpointer data)
{
    tu_repo_setup(&f->base, data);
    f->a = tu_commit_backup(f->base.repo, "web1", "vda", 3, 1);
    f->b = tu_commit_backup(f->base.repo, "web2", "vda", 2, 10);
    f->sa = g_strdup_printf("%s/backups/%s.summary", f->base.dir, f->a);
    f->sb = g_strdup_printf("%s/backups/%s.summary", f->base.dir, f->b);
    f->ma = g_strdup_printf("%s/backups/%s.json", f->base.dir, f->a);
}

static void
summary_repo_teardown(SummaryRepo *f, gconstpointer data)
{
    tu_repo_teardown(&f->base, data);
    g_free(f->a);
    g_free(f->b);
    g_free(f->sa);
    g_free(f->sb);
    g_free(f->ma);
}

/* Backup ID as list describes it now (*ALL, replaced, holds the list),
 * asserting that both backups are listed. */
static const VsBackupSummary *
find_listed(VsRepo *r, GPtrArray **all, const char *id)
{
    const VsBackupSummary *s;

    g_clear_pointer(all, g_ptr_array_unref);
    *all = list(r);
    g_assert_cmpuint((*all)->len, ==, 2);
    s = find(*all, id);
    g_assert_nonnull(s);
    return s;
}

/* commit wrote both summaries; list describes the backups from them */
static void
test_summary_listed(SummaryRepo *f, gconstpointer data)
{
    g_autoptr(GPtrArray) all = NULL;
    const VsBackupSummary *s = find_listed(f->base.repo, &all, f->a);

    g_assert_true(g_file_test(f->sa, G_FILE_TEST_IS_REGULAR));
    g_assert_true(g_file_test(f->sb, G_FILE_TEST_IS_REGULAR));
    g_assert_null(s->problem);
    g_assert_cmpuint(s->data_bytes, ==, 3 * CS);
    g_assert_cmpuint(s->stored_bytes, ==, 0);
    g_assert_cmpstr(((VsSummaryDomain *)s->domains->pdata[0])->name, ==, "web1");
}

/* The summary is what list reads (a figure changed in it, manifest size
 * unchanged, shows); a summary is a cache of the manifest, so the lie is the
 * repository's, as it would be in the manifest itself. One that claims another
 * manifest size, or is another backup's, is ignored: the manifest is read. */
static void
test_summary_used_when_matching(SummaryRepo *f, gconstpointer data)
{
    g_autoptr(GPtrArray) all = NULL;
    g_autofree char *other = NULL;
    const VsBackupSummary *s;
    gsize len;

    edit_file(f->sa, "\"stored_bytes\" : 0", "\"stored_bytes\" : 43");
    g_assert_cmpuint(find_listed(f->base.repo, &all, f->a)->stored_bytes, ==, 43);

    edit_file(f->sa, "\"manifest_bytes\" : ", "\"manifest_bytes\" : 1");
    g_assert_cmpuint(find_listed(f->base.repo, &all, f->a)->stored_bytes, ==, 0);

    g_assert_true(g_file_get_contents(f->sb, &other, &len, NULL));
    tu_write_file(f->sa, other, len);
    s = find_listed(f->base.repo, &all, f->a);
    g_assert_cmpstr(((VsSummaryDomain *)s->domains->pdata[0])->name, ==, "web1");
    g_assert_cmpuint(s->data_bytes, ==, 3 * CS);
}

/* Garbage, a FIFO (must not hang), a directory, a symlink to a valid summary,
 * no summary at all: each described from the manifest. The valid summary says
 * stored_bytes 43, so that following the symlink would show. */
static void
test_summary_odd_files(SummaryRepo *f, gconstpointer data)
{
    g_autofree char *good = g_strdup_printf("%s/good", f->base.dir);
    g_autofree char *text = NULL;
    g_autoptr(GPtrArray) all = NULL;
    const char *kinds[] = { "garbage", "fifo", "dir", "symlink", "none" };

    edit_file(f->sa, "\"stored_bytes\" : 0", "\"stored_bytes\" : 43");
    g_assert_true(g_file_get_contents(f->sa, &text, NULL, NULL));
    tu_write_file(good, text, strlen(text));
    for (guint i = 0; i < G_N_ELEMENTS(kinds); i++) {
        const VsBackupSummary *s;

        g_assert_cmpint(remove(f->sa), ==, 0);
        if (i == 0)
            tu_write_file(f->sa, "{\"format\": ", 11);
        else if (i == 1)
            g_assert_cmpint(mkfifo(f->sa, 0600), ==, 0);
        else if (i == 2)
            g_assert_cmpint(mkdir(f->sa, 0700), ==, 0);
        else if (i == 3)
            g_assert_cmpint(symlink(good, f->sa), ==, 0);
        s = find_listed(f->base.repo, &all, f->a);
        g_assert_null(s->problem);
        g_assert_cmpuint(s->data_bytes, ==, 3 * CS);
        /* the manifest's figure, not the summary text's 43 */
        g_assert_cmpuint(s->stored_bytes, ==, 0);
    }
}

/* gc writes the summary a backup lacks (a repository from before summaries),
 * and leaves a valid one as it is */
static void
test_summary_gc_writes(SummaryRepo *f, gconstpointer data)
{
    g_autofree char *btext = NULL, *again = NULL;
    g_autoptr(GPtrArray) all = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_true(g_file_get_contents(f->sb, &btext, NULL, NULL));
    g_assert_cmpint(remove(f->sa), ==, 0);
    g_assert_true(vs_repo_gc(f->base.repo, NULL, NULL, &err));
    g_assert_no_error(err);
    g_assert_true(g_file_test(f->sa, G_FILE_TEST_IS_REGULAR));
    g_assert_true(g_file_get_contents(f->sb, &again, NULL, NULL));
    g_assert_cmpstr(again, ==, btext);
    /* and it is the one list reads */
    edit_file(f->sa, "\"stored_bytes\" : 0", "\"stored_bytes\" : 44");
    g_assert_cmpuint(find_listed(f->base.repo, &all, f->a)->stored_bytes, ==, 44);
}

/* a summary without its manifest lists nothing */
static void
test_summary_orphan(SummaryRepo *f, gconstpointer data)
{
    g_autofree char *orphan = g_strdup_printf("%s/backups/20991231T000000Z-000000.summary", f->base.dir);
    g_autofree char *text = NULL;
    g_autoptr(GPtrArray) all = NULL;

    g_assert_true(g_file_get_contents(f->sa, &text, NULL, NULL));
    tu_write_file(orphan, text, strlen(text));
    all = list(f->base.repo);
    g_assert_cmpuint(all->len, ==, 2);
}

/* a damaged manifest is not hidden by its (valid, but now stale) summary:
 * listed, with the manifest's error */
static void
test_summary_damaged_manifest(SummaryRepo *f, gconstpointer data)
{
    g_autofree char *mtext = NULL;
    g_autoptr(GPtrArray) all = NULL;
    const VsBackupSummary *s;
    gsize len;

    g_assert_true(g_file_get_contents(f->ma, &mtext, &len, NULL));
    tu_write_file(f->ma, mtext, len - 10);
    s = find_listed(f->base.repo, &all, f->a);
    g_assert_nonnull(s->problem);
    g_assert_nonnull(strstr(s->problem, f->a));
    g_assert_cmpuint(s->domains->len, ==, 0);
}

/* delete removes the summary with the manifest */
static void
test_summary_delete(SummaryRepo *f, gconstpointer data)
{
    g_autoptr(GPtrArray) all = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_true(vs_repo_delete(f->base.repo, f->a, &err));
    g_assert_no_error(err);
    g_assert_false(g_file_test(f->sa, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->ma, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->sb, G_FILE_TEST_IS_REGULAR));
    all = list(f->base.repo);
    g_assert_cmpuint(all->len, ==, 1);
    g_assert_cmpstr(((VsBackupSummary *)all->pdata[0])->id, ==, f->b);
}

#define SUMMARY_REPO_TEST(path, fn) \
    g_test_add(path, SummaryRepo, NULL, summary_repo_setup, fn, summary_repo_teardown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/digest-set/random", test_set_random);
    g_test_add_func("/digest-set/shared-prefix", test_set_shared_prefix);
    g_test_add_func("/summary/round-trip", test_summary_round_trip);
    g_test_add_func("/summary/hostile", test_summary_hostile);
    SUMMARY_REPO_TEST("/summary/repo/listed", test_summary_listed);
    SUMMARY_REPO_TEST("/summary/repo/used-when-matching", test_summary_used_when_matching);
    SUMMARY_REPO_TEST("/summary/repo/odd-files", test_summary_odd_files);
    SUMMARY_REPO_TEST("/summary/repo/gc-writes", test_summary_gc_writes);
    SUMMARY_REPO_TEST("/summary/repo/orphan", test_summary_orphan);
    SUMMARY_REPO_TEST("/summary/repo/damaged-manifest", test_summary_damaged_manifest);
    SUMMARY_REPO_TEST("/summary/repo/delete", test_summary_delete);
    return g_test_run();
}
