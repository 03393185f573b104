/* The retention policy of `virtsnap prune` (vs_prune_select): which backups
 * --keep-last/-daily/-weekly/-monthly keep, per domain, on a made-up history
 * whose answer is worked out by hand in each test. The removal itself (manifests,
 * then gc) is exercised against real repositories by tests/integration/prune.sh. */
#include "config.h"
#include "vs-repo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A backup completed at local Y-M-D h:00 of DOMAINS (comma-separated). */
static VsPruneDecision *
backup(const char *id, int y, int mo, int d, int h, const char *domains)
{
    VsPruneDecision *b = g_new0(VsPruneDecision, 1);
    g_autoptr(GDateTime) t = g_date_time_new_local(y, mo, d, h, 0, 0);

    b->id = g_strdup(id);
    b->completed = g_date_time_to_unix(t) * G_USEC_PER_SEC;
    b->domains = g_strsplit(domains, ",", -1);
    return b;
}

static GPtrArray *
history(void)
{
    GPtrArray *h = g_ptr_array_new_with_free_func((GDestroyNotify)vs_prune_decision_free);

    /* web: twice a day for three days in one ISO week, and once a month before. */
    g_ptr_array_add(h, backup("w-0901", 2026, 9, 1, 12, "web"));
    g_ptr_array_add(h, backup("w-1001", 2026, 10, 1, 12, "web"));
    g_ptr_array_add(h, backup("w-1116", 2026, 11, 16, 2, "web"));   /* Monday, week 47 */
    g_ptr_array_add(h, backup("w-1116b", 2026, 11, 16, 14, "web"));
    g_ptr_array_add(h, backup("w-1117", 2026, 11, 17, 2, "web"));
    g_ptr_array_add(h, backup("w-1117b", 2026, 11, 17, 14, "web"));
    g_ptr_array_add(h, backup("w-1123", 2026, 11, 23, 2, "web"));   /* Monday, week 48 */
    g_ptr_array_add(h, backup("w-1123b", 2026, 11, 23, 14, "web,db"));
    /* db: one old backup of its own besides the group backup above. */
    g_ptr_array_add(h, backup("d-0601", 2026, 6, 1, 12, "db"));
    return h;
}

static const VsPruneDecision *
find(GPtrArray *h, const char *id)
{
    for (guint i = 0; i < h->len; i++)
        if (strcmp(((VsPruneDecision *)h->pdata[i])->id, id) == 0)
            return h->pdata[i];
    g_assert_not_reached();
}

/* The kept ids, newest first, joined with spaces. */
static char *
kept(GPtrArray *h, const VsPrunePolicy *p)
{
    g_autoptr(GError) err = NULL;
    GString *s = g_string_new(NULL);

    g_assert_true(vs_prune_select(h, p, &err));
    g_assert_no_error(err);
    for (guint i = 0; i < h->len; i++) {
        const VsPruneDecision *d = h->pdata[i];
        g_assert_true(d->keep == (d->reasons != NULL));
        if (d->keep)
            g_string_append_printf(s, "%s%s", s->len ? " " : "", d->id);
    }
    return g_string_free(s, FALSE);
}

static void
test_keep_last(void)
{
    g_autoptr(GPtrArray) h = history();
    VsPrunePolicy p = { .keep_last = 2 };
    g_autofree char *k = kept(h, &p);

    /* web's two newest; db's two: the group backup and its own old one. */
    g_assert_cmpstr(k, ==, "w-1123b w-1123 d-0601");
    g_assert_cmpstr(find(h, "w-1123b")->reasons, !=, NULL);
    g_assert_nonnull(strstr(find(h, "w-1123b")->reasons, "web: last"));
    g_assert_nonnull(strstr(find(h, "w-1123b")->reasons, "db: last"));
    g_assert_false(find(h, "w-0901")->keep);
}

static void
test_keep_periods(void)
{
    g_autoptr(GPtrArray) h = history();
    VsPrunePolicy daily = { .keep_daily = 2 }, weekly = { .keep_weekly = 2 },
                  monthly = { .keep_monthly = 3 };
    g_autofree char *d = kept(h, &daily);
    g_autofree char *w = NULL, *m = NULL;

    /* The newest of each of the two latest days; db: its two days. */
    g_assert_cmpstr(d, ==, "w-1123b w-1117b d-0601");
    g_assert_cmpstr(find(h, "w-1117b")->reasons, ==, "web: daily 2026-11-17");
    w = kept(h, &weekly);
    g_assert_cmpstr(w, ==, "w-1123b w-1117b d-0601");
    g_assert_cmpstr(find(h, "w-1117b")->reasons, ==, "web: weekly 2026-W47");
    m = kept(h, &monthly);
    g_assert_cmpstr(m, ==, "w-1123b w-1001 w-0901 d-0601");
    g_assert_cmpstr(find(h, "w-0901")->reasons, ==, "web: monthly 2026-09");
}

static void
test_union_and_errors(void)
{
    g_autoptr(GPtrArray) h = history();
    VsPrunePolicy p = { .keep_last = 1, .keep_monthly = 2 }, none = { 0 };
    g_autofree char *k = kept(h, &p);
    g_autoptr(GError) err = NULL;

    /* last 1: w-1123b (web and db); monthly 2: w-1123b, w-1001; db monthly: d-0601. */
    g_assert_cmpstr(k, ==, "w-1123b w-1001 d-0601");
    g_assert_false(vs_prune_select(h, &none, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "nothing is removed"));
}

/* Every failure of the plan names prune, the tool prints it as it is: here a
 * repository whose backups/ became a symbolic link under it. */
static void
test_plan_error(void)
{
    g_autofree char *dir = g_dir_make_tmp("vs-prune-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "repo", NULL);
    g_autofree char *backups = g_build_filename(path, "backups", NULL);
    g_autofree char *moved = g_build_filename(dir, "backups-moved", NULL);
    VsPrunePolicy p = { .keep_last = 1 };
    g_autoptr(VsRepo) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *cmd = NULL;

    r = vs_repo_open(path, true, true, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpint(rename(backups, moved), ==, 0);
    g_assert_cmpint(symlink(moved, backups), ==, 0);
    g_assert_null(vs_repo_prune_plan(r, &p, &err));
    g_assert_nonnull(err);
    g_assert_true(g_str_has_prefix(err->message, "prune: "));
    g_assert_false(g_str_has_prefix(err->message + strlen("prune: "), "prune: "));
    g_clear_pointer(&r, vs_repo_close);
    cmd = g_strdup_printf("rm -rf '%s'", dir);
    g_assert_cmpint(system(cmd), ==, 0);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/prune/keep-last", test_keep_last);
    g_test_add_func("/prune/periods", test_keep_periods);
    g_test_add_func("/prune/union-and-errors", test_union_and_errors);
    g_test_add_func("/prune/plan-error", test_plan_error);
    return g_test_run();
}
