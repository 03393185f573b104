/* The cluster agent's decisions against golden files in tests/unit/cluster-golden/
 * (CLUSTER_GOLDEN): every libvirt state and shut-off reason, with and without the
 * agent's memory of its last verb, to the VCS state and the exit code VCS reads
 * (monitor.txt); and the attributes as --attr and an attribute file give them,
 * bad ones refused naming the key. VS_UPDATE_GOLDEN=1 rewrites the golden files
 * (review the diff). */
#include "config.h"
#include "vs-cluster.h"

#include <glib/gstdio.h>
#include <libvirt/libvirt.h>

static void
golden(const char *name, const char *actual)
{
    g_autofree char *path = g_build_filename(g_getenv("CLUSTER_GOLDEN"), name, NULL);
    g_autofree char *want = NULL;
    g_autoptr(GError) err = NULL;

    if (g_strcmp0(g_getenv("VS_UPDATE_GOLDEN"), "1") == 0) {
        g_assert_true(g_file_set_contents(path, actual, -1, &err));
        return;
    }
    g_assert_true(g_file_get_contents(path, &want, NULL, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(actual, ==, want);
}

typedef struct {
    const char *label;
    int state, reason;
} StateCase;

static const StateCase states[] = {
    { "running", VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_BOOTED },
    { "blocked", VIR_DOMAIN_BLOCKED, 0 },
    { "paused/user", VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER },
    { "paused/ioerror", VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_IOERROR },
    { "paused/crashed", VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_CRASHED },
    { "pmsuspended", VIR_DOMAIN_PMSUSPENDED, 0 },
    { "shutdown", VIR_DOMAIN_SHUTDOWN, 0 },
    { "crashed", VIR_DOMAIN_CRASHED, VIR_DOMAIN_CRASHED_PANICKED },
    { "shutoff/unknown", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_UNKNOWN },
    { "shutoff/shutdown", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_SHUTDOWN },
    { "shutoff/destroyed", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DESTROYED },
    { "shutoff/crashed", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_CRASHED },
    { "shutoff/migrated", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_MIGRATED },
    { "shutoff/failed", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_FAILED },
    { "nostate", VIR_DOMAIN_NOSTATE, 0 },
};

static void
test_monitor_table(void)
{
    const char *memories[] = { NULL, "online", "offline", "migrated" };
    g_autoptr(GString) out = g_string_new(NULL);

    for (size_t m = 0; m < G_N_ELEMENTS(memories); m++) {
        const char *mem = memories[m] ? memories[m] : "-";
        int conf;
        const char *why;
        VsClusterState st = vs_cluster_classify(false, VIR_DOMAIN_NOSTATE, 0, memories[m], &conf, &why);

        g_string_append_printf(out, "%-8s %-18s -> %-19s exit %3d  %s\n", mem, "(not defined)",
                               vs_cluster_state_string(st), vs_cluster_monitor_exit(st, conf), why);
        for (size_t i = 0; i < G_N_ELEMENTS(states); i++) {
            st = vs_cluster_classify(true, states[i].state, states[i].reason, memories[m], &conf, &why);
            g_string_append_printf(out, "%-8s %-18s -> %-19s exit %3d  %s\n", mem, states[i].label,
                                   vs_cluster_state_string(st), vs_cluster_monitor_exit(st, conf), why);
        }
    }
    golden("monitor.txt", out->str);
}

/* The exit codes themselves, independent of the table above. */
static void
test_exit_codes(void)
{
    g_assert_cmpint(vs_cluster_monitor_exit(VS_CLUSTER_ONLINE, 100), ==, 110);
    g_assert_cmpint(vs_cluster_monitor_exit(VS_CLUSTER_ONLINE, 10), ==, 101);
    g_assert_cmpint(vs_cluster_monitor_exit(VS_CLUSTER_ONLINE, 0), ==, 101);
    g_assert_cmpint(vs_cluster_monitor_exit(VS_CLUSTER_ONLINE, 55), ==, 106);
    g_assert_cmpint(vs_cluster_monitor_exit(VS_CLUSTER_OFFLINE, 0), ==, 100);
    g_assert_cmpint(vs_cluster_monitor_exit(VS_CLUSTER_FAULTED, 0), ==, 100);
    g_assert_cmpint(vs_cluster_monitor_exit(VS_CLUSTER_INTENTIONAL_OFFLINE, 0), ==, 200);
    g_assert_cmpint(vs_cluster_monitor_exit(VS_CLUSTER_UNKNOWN, 0), ==, 99);
}

static void
test_attrs(void)
{
    g_autofree char *dir = g_dir_make_tmp("vs-cluster-XXXXXX", NULL);
    g_autofree char *file = g_build_filename(dir, "attrs", NULL);
    g_autoptr(GError) err = NULL;
    VsClusterAttrs a;

    vs_cluster_attrs_init(&a);
    g_assert_cmpint(a.delay_online_s, ==, 5);
    g_assert_cmpint(a.delay_offline_s, ==, 30);
    g_assert_cmpint(a.timeout_s, ==, 300);
    g_assert_true(g_file_set_contents(file,
        "# main.cf style\nGuestName = \"vm1\"\nSyncDir=/srv/sync\n\nDelayAfterGuestOnline = 0\n"
        "GuestConfigFilePath=\"/etc/vm1.xml\"\nTimeout=45\n", -1, NULL));
    g_assert_true(vs_cluster_attrs_load(&a, file, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(a.guest_name, ==, "vm1");
    g_assert_cmpstr(a.sync_dir, ==, "/srv/sync");
    g_assert_cmpstr(a.config_path, ==, "/etc/vm1.xml");
    g_assert_cmpint(a.delay_online_s, ==, 0);
    g_assert_cmpint(a.timeout_s, ==, 45);
    /* --attr after the file wins; an empty value unsets. */
    g_assert_true(vs_cluster_attr_set(&a, "SyncDir", "", &err));
    g_assert_null(a.sync_dir);

    g_assert_false(vs_cluster_attr_set(&a, "DelayAfterGuestOffline", "ten", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_cmpstr(err->message, ==, "agent: DelayAfterGuestOffline 'ten': give whole seconds, 0 to 3600");
    g_clear_error(&err);
    g_assert_false(vs_cluster_attr_set(&a, "Timeout", "0", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);
    g_assert_false(vs_cluster_attr_set(&a, "GuestNmae", "x", &err));
    g_assert_true(g_str_has_prefix(err->message, "agent: unknown attribute 'GuestNmae'"));
    g_clear_error(&err);

    g_assert_true(g_file_set_contents(file, "GuestName vm1\n", -1, NULL));
    g_assert_false(vs_cluster_attrs_load(&a, file, &err));
    g_assert_true(g_str_has_suffix(err->message, ":1: not KEY=VALUE"));
    g_clear_error(&err);
    g_assert_true(g_file_set_contents(file, "\nTimeout=-3\n", -1, NULL));
    g_assert_false(vs_cluster_attrs_load(&a, file, &err));
    g_assert_true(g_str_has_suffix(err->message, ":2: Timeout '-3': give whole seconds, 0 to 86400"));
    vs_cluster_attrs_clear(&a);
    g_unlink(file);
    g_rmdir(dir);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cluster/monitor-table", test_monitor_table);
    g_test_add_func("/cluster/exit-codes", test_exit_codes);
    g_test_add_func("/cluster/attrs", test_attrs);
    return g_test_run();
}
