/* Freeze, thaw and the guardian's thaw loop (driver/agent.c, guardian.c)
 * against the scripted control plane: a thaw libvirt refuses goes to the
 * agent directly; a guest counts as thawed only when guest-fsfreeze-status
 * says so, whatever the thaw call answered, and the guardian keeps trying
 * until it does; an agent that times out in the middle of a group holds up
 * only its own guest; a connection that died is reopened, and a "no such
 * domain" from a dead connection proves nothing. Each try is in
 * STATE_DIR/guardian.log, which the tests read as a user would. */
#include "config.h"
#include "driver-internal.h"
#include "fake-control.h"

#include <glib/gstdio.h>
#include <string.h>

#define U1 "11111111-1111-1111-1111-111111111111"
#define U2 "22222222-2222-2222-2222-222222222222"
#define U3 "33333333-3333-3333-3333-333333333333"
#define FROZEN "{\"return\":\"frozen\"}"
#define THAWED "{\"return\":\"thawed\"}"

typedef struct {
    VsFake *fake;
    char *state_dir;
    VsThawPlan plan;
} Fixture;

static void
setup(Fixture *fx, gconstpointer data)
{
    (void)data;
    fx->fake = vs_fake_new();
    fx->state_dir = g_dir_make_tmp("vs-guardian-XXXXXX", NULL);
    g_assert_nonnull(fx->state_dir);
    vs_fake_domain(fx->fake, "vm1", U1);
    vs_fake_domain(fx->fake, "vm2", U2);
    vs_fake_domain(fx->fake, "vm3", U3);
    fx->plan = (VsThawPlan){ .uri = "test:///fake", .state_dir = fx->state_dir, .id = "B1",
                             .agent_timeout = 5, .first_pause_ms = 1, .max_pause_ms = 4,
                             .persist_s = 5, .detach = false };
}

static void
teardown(Fixture *fx, gconstpointer data)
{
    g_autofree char *log = g_build_filename(fx->state_dir, "guardian.log", NULL);

    (void)data;
    if (fx->fake)
        vs_fake_finish(fx->fake);
    g_unlink(log);
    g_rmdir(fx->state_dir);
    g_free(fx->state_dir);
}

static char *
guardian_log(Fixture *fx)
{
    g_autofree char *path = g_build_filename(fx->state_dir, "guardian.log", NULL);
    char *text = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return text;
}

/* One guest's part of a try: found, running, thawed, asked. */
static void
expect_thaw(VsFake *f, const char *uuid, const char *name, const char *status)
{
    g_autofree char *lookup = g_strdup_printf("domain_lookup_uuid %s", uuid);
    g_autofree char *active = g_strdup_printf("domain_is_active %s", name);
    g_autofree char *thaw = g_strdup_printf("fs_thaw %s", name);
    g_autofree char *ask = g_strdup_printf("agent_command %s guest-fsfreeze-status", name);

    vs_fake_add_item(f, lookup, name);
    vs_fake_add_item(f, active, "1");
    vs_fake_add_item(f, thaw, "ok");
    vs_fake_add_item(f, ask, status);
}

static int
thaw_all(Fixture *fx, char **uuids)
{
    virConnectPtr conn = vs_fake_conn(fx->fake);

    return vs_guardian_thaw_all(&conn, &fx->plan, uuids, (int)g_strv_length(uuids));
}

/* libvirt's thaw refuses (it thinks nothing is frozen): the agent's own
 * command is sent; when that fails too, the error names the domain. */
static void
test_thaw_falls_back_to_agent(Fixture *fx, gconstpointer data)
{
    virDomainPtr vm1 = vs_fake_domain(fx->fake, "vm9", U1);
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_error(fx->fake, "fs_thaw vm9", VS_ERROR_LIBVIRT, "domain is not frozen");
    vs_fake_add_item(fx->fake, "agent_command vm9 guest-fsfreeze-thaw", "{\"return\":2}");
    g_assert_true(vs_agent_thaw(vm1, 5, &err));
    g_assert_no_error(err);

    vs_fake_add_error(fx->fake, "fs_thaw vm9", VS_ERROR_LIBVIRT, "domain is not frozen");
    vs_fake_add_error(fx->fake, "agent_command vm9 guest-fsfreeze-thaw", VS_ERROR_LIBVIRT,
                      "Guest agent is not responding: Guest agent not available for now");
    g_assert_false(vs_agent_thaw(vm1, 5, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_AGENT);
    g_assert_cmpstr(err->message, ==, "thaw: domain 'vm9': Guest agent is not responding: "
                    "Guest agent not available for now");
}

/* A freeze that fails says so, naming the domain, as an agent error; the
 * freeze status is read from the agent's reply, and an odd reply is an error. */
static void
test_freeze_and_status(Fixture *fx, gconstpointer data)
{
    virDomainPtr vm = vs_fake_domain(fx->fake, "vm9", U1);
    g_autoptr(GError) err = NULL;
    g_autofree char *st = NULL;

    (void)data;
    vs_fake_add_error(fx->fake, "fs_freeze vm9", VS_ERROR_LIBVIRT,
                      "Guest agent is not responding: QEMU guest agent is not connected");
    g_assert_false(vs_agent_freeze(vm, 5, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_AGENT);
    g_assert_cmpstr(err->message, ==, "freeze: domain 'vm9': Guest agent is not responding: "
                    "QEMU guest agent is not connected");
    g_clear_error(&err);

    vs_fake_add_item(fx->fake, "agent_command vm9 guest-fsfreeze-status", FROZEN);
    st = vs_agent_freeze_status(vm, 5, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(st, ==, "frozen");
    g_clear_pointer(&st, g_free);
    vs_fake_add_item(fx->fake, "agent_command vm9 guest-fsfreeze-status", "{\"return\":7}");
    st = vs_agent_freeze_status(vm, 5, &err);
    g_assert_null(st);
    g_assert_error(err, VS_ERROR, VS_ERROR_AGENT);
    g_assert_cmpstr(err->message, ==, "freeze status: domain 'vm9': unexpected reply {\"return\":7}");
}

/* The thaw call fails, then succeeds while the guest still says frozen: the
 * guardian goes on until guest-fsfreeze-status says thawed. */
static void
test_thaw_retried_until_confirmed(Fixture *fx, gconstpointer data)
{
    char *uuids[] = { U1, NULL };
    g_autofree char *log = NULL;

    (void)data;
    /* Try 1: the thaw fails and the guest is still frozen. */
    vs_fake_add_item(fx->fake, "conn_alive", "1");
    vs_fake_add_item(fx->fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(fx->fake, "domain_is_active vm1", "1");
    vs_fake_add_error(fx->fake, "fs_thaw vm1", VS_ERROR_LIBVIRT, "agent busy");
    vs_fake_add_error(fx->fake, "agent_command vm1 guest-fsfreeze-thaw", VS_ERROR_LIBVIRT,
                      "Guest agent is not responding: Guest agent not available for now");
    vs_fake_add_item(fx->fake, "agent_command vm1 guest-fsfreeze-status", FROZEN);
    /* Try 2: the thaw call says yes, the guest says otherwise: not done. */
    vs_fake_add_item(fx->fake, "conn_alive", "1");
    expect_thaw(fx->fake, U1, "vm1", FROZEN);
    /* Try 3: confirmed. */
    vs_fake_add_item(fx->fake, "conn_alive", "1");
    expect_thaw(fx->fake, U1, "vm1", THAWED);

    g_assert_cmpint(thaw_all(fx, uuids), ==, 0);
    log = guardian_log(fx);
    g_assert_nonnull(strstr(log, "B1 try 1: domain 'vm1' is not thawed yet: thaw: domain 'vm1': "
                                 "Guest agent is not responding"));
    g_assert_nonnull(strstr(log, "B1 try 2: domain 'vm1' is not thawed yet: it still says frozen"));
    g_assert_nonnull(strstr(log, "B1 thawed domain 'vm1' (it says thawed)"));
}

/* Three guests; the second's agent times out in the first round: the third
 * is thawed in that same round, the second in the next. */
static void
test_agent_timeout_mid_group(Fixture *fx, gconstpointer data)
{
    char *uuids[] = { U1, U2, U3, NULL };
    const char *timeout = "Guest agent is not responding: Guest agent not available for now";
    g_autofree char *log = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "conn_alive", "1");
    expect_thaw(fx->fake, U1, "vm1", THAWED);
    vs_fake_add_item(fx->fake, "domain_lookup_uuid " U2, "vm2");
    vs_fake_add_item(fx->fake, "domain_is_active vm2", "1");
    vs_fake_add_error(fx->fake, "fs_thaw vm2", VS_ERROR_LIBVIRT, timeout);
    vs_fake_add_error(fx->fake, "agent_command vm2 guest-fsfreeze-thaw", VS_ERROR_LIBVIRT, timeout);
    vs_fake_add_error(fx->fake, "agent_command vm2 guest-fsfreeze-status", VS_ERROR_LIBVIRT, timeout);
    expect_thaw(fx->fake, U3, "vm3", THAWED);
    vs_fake_add_item(fx->fake, "conn_alive", "1");
    expect_thaw(fx->fake, U2, "vm2", THAWED);

    g_assert_cmpint(thaw_all(fx, uuids), ==, 0);
    log = guardian_log(fx);
    g_assert_nonnull(strstr(log, "try 1: domain 'vm2' is not thawed yet: thaw: domain 'vm2': "
                                 "Guest agent is not responding"));
    g_assert_nonnull(strstr(log, "thawed domain 'vm3'"));
}

/* The guardian's connection died: reopened (after a refused first attempt);
 * a "no such domain" on a dead connection keeps the guest pending, one on a
 * live connection lets it go. */
static void
test_connection_dies(Fixture *fx, gconstpointer data)
{
    char *uuids[] = { U1, U2, NULL };
    g_autofree char *log = NULL;

    (void)data;
    /* Try 1: dead; reopening fails. Nothing else can be asked. */
    vs_fake_add_item(fx->fake, "conn_alive", "0");
    vs_fake_add_error(fx->fake, "conn_open test:///fake", VS_ERROR_LIBVIRT,
                      "Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused");
    /* Try 2: reopened; vm1 "not found" but the connection died again. */
    vs_fake_add_item(fx->fake, "conn_open test:///fake", "ok");
    vs_fake_add_error(fx->fake, "domain_lookup_uuid " U1, VS_ERROR_NOT_FOUND, "no domain");
    vs_fake_add_item(fx->fake, "conn_alive", "0");
    vs_fake_add_error(fx->fake, "domain_lookup_uuid " U2, VS_ERROR_LIBVIRT,
                      "internal error: client socket is closed");
    /* Try 3: reopened; vm1 is thawed, vm2 is gone for good. */
    vs_fake_add_item(fx->fake, "conn_alive", "0");
    vs_fake_add_item(fx->fake, "conn_open test:///fake", "ok");
    expect_thaw(fx->fake, U1, "vm1", THAWED);
    vs_fake_add_error(fx->fake, "domain_lookup_uuid " U2, VS_ERROR_NOT_FOUND, "no domain");
    vs_fake_add_item(fx->fake, "conn_alive", "1");

    g_assert_cmpint(thaw_all(fx, uuids), ==, 0);
    log = guardian_log(fx);
    g_assert_nonnull(strstr(log, "try 1: connect: cannot open test:///fake: Failed to connect"));
    g_assert_nonnull(strstr(log, "try 2: domain " U1 ": no domain"));
    g_assert_nonnull(strstr(log, "try 2: domain " U2 ": internal error: client socket is closed"));
    g_assert_nonnull(strstr(log, "thawed domain 'vm1'"));
    g_assert_nonnull(strstr(log, "domain " U2 " no longer exists"));
}

/* A guest that stopped needs no thaw; one that never answers is given up
 * when the bound passes, and the log says what to do. */
static void
test_stopped_and_give_up(Fixture *fx, gconstpointer data)
{
    char *uuids[] = { U1, U2, NULL };
    g_autofree char *log = NULL;

    (void)data;
    fx->plan.persist_s = 0;
    vs_fake_add_item(fx->fake, "conn_alive", "1");
    vs_fake_add_item(fx->fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(fx->fake, "domain_is_active vm1", "0");
    expect_thaw(fx->fake, U2, "vm2", FROZEN);

    g_assert_cmpint(thaw_all(fx, uuids), ==, 1);
    log = guardian_log(fx);
    g_assert_nonnull(strstr(log, "domain 'vm1' no longer runs"));
    g_assert_nonnull(strstr(log, "gave up after 1 tries: 1 domain(s) may still be frozen; "
                                 "`virtsnap recover` thaws them"));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, setup, fn, teardown)
    ADD("/agent/thaw-falls-back-to-agent", test_thaw_falls_back_to_agent);
    ADD("/agent/freeze-and-status", test_freeze_and_status);
    ADD("/guardian/thaw-retried-until-confirmed", test_thaw_retried_until_confirmed);
    ADD("/guardian/agent-timeout-mid-group", test_agent_timeout_mid_group);
    ADD("/guardian/connection-dies", test_connection_dies);
    ADD("/guardian/stopped-and-give-up", test_stopped_and_give_up);
    return g_test_run();
}
