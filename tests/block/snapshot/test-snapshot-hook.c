/* The hook provider's contract (vs-snapshot.h) with real executables (sh
 * scripts written per test): the environment it gets and what it must not get
 * (a secret of ours), the timeout that kills the hook's whole process group,
 * retries and their count, exit code 3, and what is refused from its output:
 * garbage, a hostile handle, a relative path, an unknown URL scheme. Also the
 * handle rule itself, as a repository's hostile content would meet it; an
 * interrupt that stops the retries. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>
#include "vs-interrupt.h"
#include "vs-snapshot.h"

static char *tmpdir;

static const VsSnapLocation loc = {
    .kind = VS_SNAP_LOC_ISCSI, .disk = "vm1/vda", .pool = "lunpool", .volume = "unit:0:0:1",
    .iscsi_portal = "127.0.0.1:3261", .iscsi_iqn = "iqn.2024-01.test:t1", .iscsi_lun = 1,
};

/* A hook made of BODY (sh); its path. */
static char *
make_hook(const char *name, const char *body)
{
    char *path = g_build_filename(tmpdir, name, NULL);
    g_autofree char *text = g_strdup_printf("#!/bin/sh\nD=%s\n%s\n", tmpdir, body);

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    g_assert_cmpint(chmod(path, 0755), ==, 0);
    return path;
}

static VsSnapProvider *
hook_provider(const char *path, unsigned timeout_ms, unsigned retries)
{
    VsSnapHookConfig cfg = {.path = path, .config_file = "/etc/virtsnap/array.conf", .timeout_ms = timeout_ms,
                            .retries = retries, .retry_delay_ms = 10};
    g_autoptr(GError) error = NULL;
    VsSnapProvider *p = vs_snap_hook_new(&cfg, &error);

    g_assert_no_error(error);
    return p;
}

static char *
slurp(const char *name)
{
    g_autofree char *path = g_build_filename(tmpdir, name, NULL);
    char *text = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return text;
}

static void
test_env(void)
{
    g_autofree char *hook = make_hook("env", "env > $D/env.out; echo \"argv=$1\" >> $D/env.out; echo handle=snap-1");
    g_autoptr(VsSnapProvider) p = hook_provider(hook, 5000, 0);
    g_autoptr(GError) error = NULL;
    g_autofree char *handle = NULL, *env = NULL;

    g_setenv("VS_TEST_SECRET", "s3cr3t-do-not-pass", TRUE);
    handle = vs_snap_create(p, &loc, "backup-1-vda", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(handle, ==, "snap-1");
    env = slurp("env.out");
    for (const char *want = "VIRTSNAP_SNAP_OP=create\nVIRTSNAP_SNAP_LABEL=backup-1-vda\nVIRTSNAP_DISK=vm1/vda\n"
                            "VIRTSNAP_DISK_KIND=iscsi\nVIRTSNAP_POOL=lunpool\nVIRTSNAP_VOLUME=unit:0:0:1\n"
                            "VIRTSNAP_ISCSI_PORTAL=127.0.0.1:3261\nVIRTSNAP_ISCSI_IQN=iqn.2024-01.test:t1\n"
                            "VIRTSNAP_ISCSI_LUN=1\nVIRTSNAP_SNAP_ATTEMPT=1\n"
                            "VIRTSNAP_HOOK_CONFIG=/etc/virtsnap/array.conf\nargv=create\n";
         *want;) {
        const char *nl = strchr(want, '\n');
        g_autofree char *line = g_strndup(want, nl - want);
        g_assert_nonnull(strstr(env, line));
        want = nl + 1;
    }
    g_assert_null(strstr(env, "s3cr3t"));
    g_assert_null(strstr(env, "VIRTSNAP_DISK_PATH="));   /* unknown: unset, not empty */
    g_assert_null(strstr(env, "VIRTSNAP_SNAP_HANDLE="));
    g_unsetenv("VS_TEST_SECRET");
}

static bool
pid_gone(pid_t pid)
{
    g_autofree char *stat_path = g_strdup_printf("/proc/%d/stat", pid);
    g_autofree char *stat = NULL;

    for (int i = 0; i < 100; i++) {
        /* gone, or a zombie waiting for a reaper that is not us */
        if (kill(pid, 0) < 0 || (g_file_get_contents(stat_path, &stat, NULL, NULL) && strstr(stat, ") Z ")))
            return true;
        g_clear_pointer(&stat, g_free);
        g_usleep(20000);
    }
    return false;
}

static void
test_hang(void)
{
    g_autofree char *hook = make_hook("hang", "sleep 1000 & echo $! > $D/child.pid; echo $$ > $D/hook.pid; "
                                              "echo handle=never; sleep 1000");
    g_autoptr(VsSnapProvider) p = hook_provider(hook, 400, 1);
    g_autoptr(GError) error = NULL;
    gint64 t0 = g_get_monotonic_time();
    g_autofree char *handle = vs_snap_create(p, &loc, "l1", &error);
    g_autofree char *child = slurp("child.pid"), *self = slurp("hook.pid");

    g_assert_null(handle);
    g_assert_error(error, VS_ERROR, VS_ERROR_TIMEOUT);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 3 * G_USEC_PER_SEC);   /* 2 attempts of 0.4 s */
    g_assert_nonnull(strstr(error->message, "snapshot: vm1/vda: hook "));
    g_assert_nonnull(strstr(error->message, "killed with its process group after 400 ms (timeout) (attempt 2 of 2)"));
    g_assert_true(pid_gone(atoi(child)));
    g_assert_true(pid_gone(atoi(self)));
}

/* A hook that leaves a child holding its stdout: its answer is taken shortly
 * after it exits, not at the timeout. */
static void
test_child_holds_stdout(void)
{
    g_autofree char *hook = make_hook("daemonish", "sleep 30 & echo $! > $D/bg.pid; echo handle=snap-7");
    g_autoptr(VsSnapProvider) p = hook_provider(hook, 20000, 0);
    g_autoptr(GError) error = NULL;
    gint64 t0 = g_get_monotonic_time();
    g_autofree char *handle = vs_snap_create(p, &loc, "l1", &error);
    g_autofree char *bg = slurp("bg.pid");

    g_assert_no_error(error);
    g_assert_cmpstr(handle, ==, "snap-7");
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 5 * G_USEC_PER_SEC);
    kill(atoi(bg), SIGKILL);
}

static void
test_fail_retries(void)
{
    g_autofree char *hook = make_hook("fail", "echo x >> $D/attempts; printf '\\033[31mboom\\r\\n' >&2; "
                                              "head -c 20000 /dev/zero | tr '\\0' y >&2; exit 7");
    g_autoptr(VsSnapProvider) p = hook_provider(hook, 5000, 2);
    g_autoptr(GError) error = NULL;
    g_autofree char *attempts = NULL;

    g_assert_false(vs_snap_delete(p, &loc, "snap-1", &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_FAILED);
    g_assert_nonnull(strstr(error->message, "delete: exit code 7 (attempt 3 of 3); stderr: \"\\033[31mboom\\r\\nyyy"));
    g_assert_null(strchr(error->message, '\033'));
    g_assert_null(strchr(error->message, '\n'));
    g_assert_cmpuint(strlen(error->message), <, 1000);
    attempts = slurp("attempts");
    g_assert_cmpstr(attempts, ==, "x\nx\nx\n");
}

static void
test_retry_succeeds(void)
{
    g_autofree char *hook = make_hook("flaky", "[ \"$VIRTSNAP_SNAP_ATTEMPT\" = 2 ] || exit 1; echo exists=yes");
    g_autoptr(VsSnapProvider) p = hook_provider(hook, 5000, 3);
    g_autoptr(GError) error = NULL;
    bool exists = false;

    g_assert_true(vs_snap_exists(p, &loc, "snap-1", &exists, &error));
    g_assert_no_error(error);
    g_assert_true(exists);
}

static void
test_unsupported(void)
{
    g_autofree char *hook = make_hook("unsup", "echo x >> $D/unsup.count; exit 3");
    g_autoptr(VsSnapProvider) p = hook_provider(hook, 5000, 4);
    g_autoptr(GError) error = NULL;
    g_autofree char *count = NULL;

    g_assert_false(vs_snap_rollback(p, &loc, "snap-1", &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(error->message, "does not support this operation (attempt 1 of 5)"));
    count = slurp("unsup.count");
    g_assert_cmpstr(count, ==, "x\n");
}

/* Each BODY must make create fail with NEEDLE in the message. */
static void
expect_create_fails(const char *body, const char *needle)
{
    g_autofree char *hook = make_hook("bad", body);
    g_autoptr(VsSnapProvider) p = hook_provider(hook, 5000, 0);
    g_autoptr(GError) error = NULL;
    g_autofree char *handle = vs_snap_create(p, &loc, "l1", &error);

    g_assert_null(handle);
    g_assert_nonnull(error);
    if (!strstr(error->message, needle))
        g_error("'%s' not in: %s", needle, error->message);
    g_assert_null(strchr(error->message, '\n'));
}

static void
test_garbage(void)
{
    expect_create_fails("echo 'Snapshot created OK'", "not a new key=value: \"Snapshot created OK\"");
    expect_create_fails("echo ok=1", "no handle=... line");
    expect_create_fails("echo handle=a; echo handle=b", "not a new key=value: \"handle=b\"");
    expect_create_fails("printf 'handle=a\\0b\\n'", "a NUL byte");
    expect_create_fails("head -c 70000 /dev/zero | tr '\\0' a", "more than 65536 bytes on stdout");
    expect_create_fails("echo handle=x; kill -9 $$", "killed by signal 9");
}

static void
test_hostile_handle(void)
{
    expect_create_fails("echo handle=../../etc/passwd", "handle \"../../etc/passwd\" is not valid (byte \"/\")");
    expect_create_fails("echo handle=a/b", "is not valid (byte \"/\")");
    expect_create_fails("echo handle=-rf", "not starting with '.' or '-'");
    expect_create_fails("printf 'handle=a\\033]0;x\\n'", "(byte \"\\033\")");
    expect_create_fails("echo \"handle=$(head -c 300 /dev/zero | tr '\\0' a)\"", "1..200 of");
    expect_create_fails("echo 'handle=a b'", "(byte \" \")");
}

static void
test_expose(void)
{
    g_autofree char *good = make_hook("expose", "echo url=iscsi://127.0.0.1:3261/iqn.x:t/2; echo image_only=0");
    g_autofree char *rel = make_hook("rel", "echo path=snaps/x.img");
    g_autofree char *dots = make_hook("dots", "echo path=/var/lib/../../etc/shadow");
    g_autofree char *http = make_hook("http", "echo url=http://evil.example/x");
    g_autoptr(VsSnapProvider) p = hook_provider(good, 5000, 0);
    g_autoptr(GError) error = NULL;
    bool image_only = true;
    g_autofree char *where = vs_snap_expose(p, &loc, "snap-1", &image_only, &error);

    g_assert_no_error(error);
    g_assert_cmpstr(where, ==, "iscsi://127.0.0.1:3261/iqn.x:t/2");
    g_assert_false(image_only);
    for (const char *const *h = (const char *const[]){rel, dots, http, NULL}; *h; h++) {
        g_autoptr(VsSnapProvider) bad = hook_provider(*h, 5000, 0);
        g_autoptr(GError) err = NULL;
        g_autofree char *w = vs_snap_expose(bad, &loc, "snap-1", &image_only, &err);
        g_assert_null(w);
        g_assert_nonnull(strstr(err->message, "wanted one absolute path=... or url="));
    }
}

/* locate: the controller and volume as printed, the operation named in the
 * environment with no handle; each bad answer refused, naming what is wrong;
 * exit 3 is "cannot say". A provider without the entry cannot say either. */
static void
test_locate(void)
{
    g_autofree char *good = make_hook("locate", "env > $D/locate.env; echo controller=array1; "
                                      "echo volume=/vol/vol1/lun1");
    g_autofree char *unsup = make_hook("locate-unsup", "exit 3");
    g_autoptr(VsSnapProvider) p = hook_provider(good, 5000, 0);
    g_autoptr(VsSnapProvider) u = hook_provider(unsup, 5000, 2);
    g_autoptr(GError) error = NULL;
    g_autofree char *controller = NULL, *volume = NULL, *env = NULL;
    const char *const bad[][2] = {
        {"echo controller=array1", "no volume=... line"},
        {"echo volume=/vol/v", "no controller=... line"},
        {"echo controller=; echo volume=/vol/v", "printed a bad controller"},
        {"echo controller=a; echo 'volume=/vol/v;vm2:x:y'", "printed a bad volume"},
        {"printf 'controller=a\033[31m\nvolume=/v\n'", "printed a bad controller"},
        {"echo controller=$(head -c 300 /dev/zero | tr '\\0' a); echo volume=/v", "printed a bad controller"},
    };

    g_assert_true(vs_snap_locate(p, &loc, &controller, &volume, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(controller, ==, "array1");
    g_assert_cmpstr(volume, ==, "/vol/vol1/lun1");
    env = slurp("locate.env");
    g_assert_nonnull(strstr(env, "VIRTSNAP_SNAP_OP=locate\n"));
    g_assert_nonnull(strstr(env, "VIRTSNAP_ISCSI_IQN=iqn.2024-01.test:t1\n"));
    g_assert_null(strstr(env, "VIRTSNAP_SNAP_HANDLE="));
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *h = make_hook("locate-bad", bad[i][0]);
        g_autoptr(VsSnapProvider) b = hook_provider(h, 5000, 0);
        g_autoptr(GError) err = NULL;
        g_autofree char *c = NULL, *v = NULL;

        g_assert_false(vs_snap_locate(b, &loc, &c, &v, &err));
        g_assert_null(c);
        if (!strstr(err->message, bad[i][1]))
            g_error("'%s' not in: %s", bad[i][1], err->message);
    }
    g_clear_pointer(&controller, g_free);
    g_clear_pointer(&volume, g_free);
    g_assert_false(vs_snap_locate(u, &loc, &controller, &volume, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_clear_error(&error);
    {
        g_autofree char *dir = g_build_filename(tmpdir, "reflink-base", NULL);
        g_autoptr(VsSnapProvider) r = NULL;

        g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
        r = vs_snap_reflink_new(dir, &error);
        g_assert_no_error(error);
        g_assert_false(vs_snap_locate(r, &loc, &controller, &volume, &error));
        g_assert_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED);
    }
}

static void
test_handle_rule(void)
{
    static const char *const bad[] = {"", ".", "..", ".hidden", "-x", "a/b", "a\nb", "a b", "a\\b", "$(x)", "a;b"};
    g_autoptr(GError) error = NULL;
    g_autofree char *hook = make_hook("never", "echo x >> $D/never.count; echo exists=yes");
    g_autoptr(VsSnapProvider) p = hook_provider(hook, 5000, 0);
    bool exists;

    g_assert_true(vs_snap_handle_check("backup-2026-12-07T14:30:00Z.vda+1@pool=x", &error));
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_clear_error(&error);
        g_assert_false(vs_snap_handle_check(bad[i], &error));
        g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARG);
        /* The wrappers check before the provider runs: the hook never sees it. */
        g_clear_error(&error);
        g_assert_false(vs_snap_exists(p, &loc, bad[i], &exists, &error));
    }
    g_autofree char *count = g_build_filename(tmpdir, "never.count", NULL);
    g_assert_false(g_file_test(count, G_FILE_TEST_EXISTS));
    g_clear_error(&error);
    g_assert_false(vs_snap_name_check("label", "a:b", &error));
}

/* Last: the interrupt flag cannot be reset. A SIGINT during an attempt lets
 * that attempt end and starts no other, though retries are left. */
static void
test_interrupt_stops_retries(void)
{
    g_autofree char *hook = make_hook("intr", "echo x >> $D/intr.count; kill -INT $PPID; sleep 0.2; exit 1");
    g_autoptr(VsSnapProvider) p = hook_provider(hook, 5000, 3);
    g_autoptr(GError) error = NULL;
    g_autofree char *count = NULL;

    vs_interrupt_install();
    g_assert_false(vs_snap_delete(p, &loc, "snap-1", &error));
    g_assert_cmpint(vs_interrupted(), ==, SIGINT);
    g_assert_nonnull(strstr(error->message, "exit code 1 (attempt 1 of 4)"));
    count = slurp("intr.count");
    g_assert_cmpstr(count, ==, "x\n");
}

static void
test_not_executable(void)
{
    VsSnapHookConfig cfg = {.path = "relative/hook"};
    g_autoptr(GError) error = NULL;

    g_assert_null(vs_snap_hook_new(&cfg, &error));
    g_assert_nonnull(strstr(error->message, "snapshot: hook relative/hook: not an executable"));
}

int
main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("vs-snap-hook-XXXXXX", NULL);
    g_test_add_func("/snapshot-hook/env", test_env);
    g_test_add_func("/snapshot-hook/hang", test_hang);
    g_test_add_func("/snapshot-hook/child-holds-stdout", test_child_holds_stdout);
    g_test_add_func("/snapshot-hook/fail-retries", test_fail_retries);
    g_test_add_func("/snapshot-hook/retry-succeeds", test_retry_succeeds);
    g_test_add_func("/snapshot-hook/unsupported", test_unsupported);
    g_test_add_func("/snapshot-hook/garbage", test_garbage);
    g_test_add_func("/snapshot-hook/hostile-handle", test_hostile_handle);
    g_test_add_func("/snapshot-hook/expose", test_expose);
    g_test_add_func("/snapshot-hook/locate", test_locate);
    g_test_add_func("/snapshot-hook/handle-rule", test_handle_rule);
    g_test_add_func("/snapshot-hook/not-executable", test_not_executable);
    g_test_add_func("/snapshot-hook/interrupt-stops-retries", test_interrupt_stops_retries);
    rc = g_test_run();
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        g_printerr("could not remove %s\n", tmpdir);
    return rc;
}
