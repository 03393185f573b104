/* recover of a migration whose virtsnap was killed (driver/recover-migrate.c):
 * the decision table over what the two hosts say, and the settling on the
 * scripted control plane: a guest paused by the migration on both hosts is
 * resumed on the source and only then, confirmed running, its stale copy on
 * the destination destroyed; a guest running on one host is left alone; a
 * host that does not answer settles nothing. The destination's copy is the
 * fake's domain "vm2" (the fake names domains, not hosts). */
#include "config.h"
#include "driver-internal.h"
#include "recover-migrate.h"
#include "fake-control.h"

#include <string.h>

#define SRC "qemu:///system"
#define DST "qemu+tcp://10.213.0.2/system"

static void
test_plan_table(void)
{
    VsMigPlan p;

    /* Running on one host only: nothing to do. */
    p = vs_migration_settle_plan(VS_MIG_ABSENT, VS_MIG_RUNNING);
    g_assert_true(p.settled);
    g_assert_cmpint(p.keep, ==, VS_HOST_DEST);
    g_assert_cmpint(p.resume, ==, VS_HOST_NONE);
    g_assert_cmpint(p.destroy, ==, VS_HOST_NONE);
    p = vs_migration_settle_plan(VS_MIG_RUNNING, VS_MIG_ABSENT);
    g_assert_true(p.settled);
    g_assert_cmpint(p.keep, ==, VS_HOST_SOURCE);
    g_assert_cmpint(p.destroy, ==, VS_HOST_NONE);
    /* Running on one, paused by the migration on the other: that copy goes. */
    p = vs_migration_settle_plan(VS_MIG_PAUSED_MIGRATION, VS_MIG_RUNNING);
    g_assert_true(p.settled);
    g_assert_cmpint(p.keep, ==, VS_HOST_DEST);
    g_assert_cmpint(p.resume, ==, VS_HOST_NONE);
    g_assert_cmpint(p.destroy, ==, VS_HOST_SOURCE);
    p = vs_migration_settle_plan(VS_MIG_RUNNING, VS_MIG_PAUSED_MIGRATION);
    g_assert_cmpint(p.destroy, ==, VS_HOST_DEST);
    /* A copy paused by someone else is never destroyed. */
    p = vs_migration_settle_plan(VS_MIG_RUNNING, VS_MIG_PAUSED_OTHER);
    g_assert_true(p.settled);
    g_assert_cmpint(p.destroy, ==, VS_HOST_NONE);
    /* Paused on both: the source's resumes, the destination's goes after. */
    p = vs_migration_settle_plan(VS_MIG_PAUSED_MIGRATION, VS_MIG_PAUSED_MIGRATION);
    g_assert_true(p.settled);
    g_assert_cmpint(p.resume, ==, VS_HOST_SOURCE);
    g_assert_cmpint(p.keep, ==, VS_HOST_SOURCE);
    g_assert_cmpint(p.destroy, ==, VS_HOST_DEST);
    p = vs_migration_settle_plan(VS_MIG_PAUSED_MIGRATION, VS_MIG_ABSENT);
    g_assert_cmpint(p.resume, ==, VS_HOST_SOURCE);
    g_assert_cmpint(p.destroy, ==, VS_HOST_NONE);
    /* The destination's paused copy is the only one: it runs. */
    p = vs_migration_settle_plan(VS_MIG_SHUTOFF, VS_MIG_PAUSED_MIGRATION);
    g_assert_true(p.settled);
    g_assert_cmpint(p.resume, ==, VS_HOST_DEST);
    g_assert_cmpint(p.destroy, ==, VS_HOST_NONE);
    /* On neither: nothing to resume, nothing to destroy. */
    p = vs_migration_settle_plan(VS_MIG_ABSENT, VS_MIG_SHUTOFF);
    g_assert_true(p.settled);
    g_assert_cmpint(p.keep, ==, VS_HOST_NONE);
    g_assert_cmpint(p.resume, ==, VS_HOST_NONE);
    /* Not settled: unknown, still migrating, post-copy, both running, unclear pauses. */
    const VsMigSide unsettled[][2] = {
        { VS_MIG_UNKNOWN, VS_MIG_RUNNING }, { VS_MIG_PAUSED_MIGRATION, VS_MIG_UNKNOWN },
        { VS_MIG_MIGRATING, VS_MIG_PAUSED_MIGRATION }, { VS_MIG_RUNNING, VS_MIG_MIGRATING },
        { VS_MIG_POSTCOPY, VS_MIG_PAUSED_MIGRATION }, { VS_MIG_RUNNING, VS_MIG_RUNNING },
        { VS_MIG_PAUSED_MIGRATION, VS_MIG_PAUSED_OTHER }, { VS_MIG_PAUSED_OTHER, VS_MIG_PAUSED_MIGRATION },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(unsettled); i++) {
        p = vs_migration_settle_plan(unsettled[i][0], unsettled[i][1]);
        g_assert_false(p.settled);
        g_assert_cmpint(p.resume, ==, VS_HOST_NONE);
        g_assert_cmpint(p.destroy, ==, VS_HOST_NONE);
        g_assert_nonnull(p.finding);
    }
}

static void
expect_side(VsFakeFixture *fx, const char *dom, const char *state, const char *job)
{
    g_autofree char *call = g_strdup_printf("domain_state %s", dom);
    g_autofree char *jcall = g_strdup_printf("job_stats %s", dom);

    vs_fake_add_item(fx->fake, "domain_lookup_uuid " VS_FAKE_U1, dom);
    vs_fake_add_item(fx->fake, call, state);
    if (job)
        vs_fake_add_item(fx->fake, jcall, job);
}

static gboolean
has_action(GPtrArray *actions, const char *text)
{
    for (guint i = 0; i < actions->len; i++)
        if (strstr(actions->pdata[i], text))
            return TRUE;
    return FALSE;
}

static void
test_paused_both(VsFakeFixture *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_domain(fx->fake, "vm2", VS_FAKE_U1);
    vs_fake_add_item(fx->fake, "conn_uri", SRC);
    vs_fake_add_item(fx->fake, "conn_open " DST, "");
    expect_side(fx, "vm1", "paused migration", "none");
    /* libvirt gives job statistics on the source only */
    expect_side(fx, "vm2", "paused migration", NULL);
    vs_fake_add_error(fx->fake, "job_stats vm2", VS_ERROR_LIBVIRT,
                      "Operation not supported: migration statistics are available only on the source host");
    vs_fake_add_item(fx->fake, "domain_resume vm1", "ok");
    vs_fake_add_item(fx->fake, "domain_state vm1", "running");
    vs_fake_add_item(fx->fake, "domain_state vm2", "paused migration");
    vs_fake_add_item(fx->fake, "domain_destroy vm2", "ok");
    g_assert_true(vs_recover_migration(vs_fake_conn(fx->fake), "vm1", VS_FAKE_U1, NULL, DST, actions, &err));
    g_assert_no_error(err);
    g_assert_true(has_action(actions, "paused by the migration on the source, paused by the migration on the destination"));
    g_assert_true(has_action(actions, "resumed it on " SRC));
    g_assert_true(has_action(actions, "destroyed its stale copy paused by the migration on " DST));
}

/* The resume did not take: the destination's copy stays. */
static void
test_resume_unconfirmed(VsFakeFixture *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_domain(fx->fake, "vm2", VS_FAKE_U1);
    vs_fake_add_item(fx->fake, "conn_uri", SRC);
    vs_fake_add_item(fx->fake, "conn_open " DST, "");
    expect_side(fx, "vm1", "paused migration", "none");
    expect_side(fx, "vm2", "paused migration", "none");
    vs_fake_add_item(fx->fake, "domain_resume vm1", "ok");
    vs_fake_add_item(fx->fake, "domain_state vm1", "paused");
    g_assert_false(vs_recover_migration(vs_fake_conn(fx->fake), "vm1", VS_FAKE_U1, SRC, DST, actions, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_FAILED);
    g_assert_nonnull(strstr(err->message, "its paused copy on " DST " is left"));
}

static void
test_running_on_dest(VsFakeFixture *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_domain(fx->fake, "vm2", VS_FAKE_U1);
    vs_fake_add_item(fx->fake, "conn_uri", SRC);
    vs_fake_add_item(fx->fake, "conn_open " DST, "");
    vs_fake_add_error(fx->fake, "domain_lookup_uuid " VS_FAKE_U1, VS_ERROR_NOT_FOUND, "no domain");
    vs_fake_add_item(fx->fake, "domain_list", "");
    expect_side(fx, "vm2", "running", "none");
    g_assert_true(vs_recover_migration(vs_fake_conn(fx->fake), "vm1", VS_FAKE_U1, NULL, DST, actions, &err));
    g_assert_no_error(err);
    g_assert_true(has_action(actions, "absent on the source, running on the destination: running on one host only"));
    g_assert_cmpuint(actions->len, ==, 1);
}

static void
test_dest_unreachable(VsFakeFixture *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "conn_uri", SRC);
    vs_fake_add_error(fx->fake, "conn_open " DST, VS_ERROR_CONNECTION, "unable to connect to server");
    expect_side(fx, "vm1", "paused migration", "none");
    g_assert_false(vs_recover_migration(vs_fake_conn(fx->fake), "vm1", VS_FAKE_U1, NULL, DST, actions, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_BUSY);
    g_assert_nonnull(strstr(err->message, "not settled: one host cannot be asked"));
    g_assert_nonnull(strstr(err->message, "unable to connect to server"));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/recover-migrate/plan-table", test_plan_table);
    g_test_add("/recover-migrate/paused-both", VsFakeFixture, NULL, vs_fake_fixture_setup,
               test_paused_both, vs_fake_fixture_teardown);
    g_test_add("/recover-migrate/resume-unconfirmed", VsFakeFixture, NULL, vs_fake_fixture_setup,
               test_resume_unconfirmed, vs_fake_fixture_teardown);
    g_test_add("/recover-migrate/running-on-dest", VsFakeFixture, NULL, vs_fake_fixture_setup,
               test_running_on_dest, vs_fake_fixture_teardown);
    g_test_add("/recover-migrate/dest-unreachable", VsFakeFixture, NULL, vs_fake_fixture_setup,
               test_dest_unreachable, vs_fake_fixture_teardown);
    return g_test_run();
}
