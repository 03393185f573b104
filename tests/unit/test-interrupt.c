/* Interrupts and temp names (util/vs-interrupt.c, util/vs-temp.c): a signal
 * sets the flag and no longer kills, the exit status is 128 + the signal, a
 * hang fault point ends on the interrupt (having dropped its mark); a temp name
 * carries its maker's pid and host, is recognised by recover's parser, and a
 * name that is not ours (or is cut short) is refused. */
#include "config.h"
#include "vs-interrupt.h"
#include "vs-fault.h"          /* internal: the fault points */
#include "vs-temp.h"
#include "vs-error.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void
test_temp_names(void)
{
    g_autofree char *path = vs_temp_path("/some/dir", "web1-vda.qcow2");
    g_autofree char *base = g_path_get_basename(path);
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *host = NULL;
    g_autofree char *long_base = g_strnfill(300, 'x');
    g_autofree char *long_path = vs_temp_path("/d", long_base);
    g_autofree char *long_name = g_path_get_basename(long_path);
    int pid = 0;

    g_assert_cmpstr(dir, ==, "/some/dir");
    g_assert_true(g_str_has_prefix(base, VS_TEMP_PREFIX));
    g_assert_true(g_str_has_suffix(base, "@web1-vda.qcow2"));
    g_assert_true(vs_temp_parse(base, &pid, &host));
    g_assert_cmpint(pid, ==, getpid());
    g_assert_cmpstr(host, ==, vs_temp_host());
    g_assert_cmpuint(strlen(long_name), <=, 255);
    g_assert_true(vs_temp_parse(long_name, NULL, NULL));

    /* not ours, or not whole */
    g_assert_false(vs_temp_parse("disk.qcow2", NULL, NULL));
    g_assert_false(vs_temp_parse(".virtsnap-tmp-", NULL, NULL));
    g_assert_false(vs_temp_parse(".virtsnap-tmp-12x-ab@h@b", NULL, NULL));
    g_assert_false(vs_temp_parse(".virtsnap-tmp-0-ab@h@b", NULL, NULL));
    g_assert_false(vs_temp_parse(".virtsnap-tmp-12-ab@h", NULL, NULL));
    g_assert_false(vs_temp_parse(".virtsnap-tmp-12-ab@@b", NULL, NULL));
    g_assert_false(vs_temp_parse(".disk.qcow2.virtsnap-restore-070b7d6d175a", NULL, NULL));

    /* the host name is safe inside a name */
    for (const char *p = vs_temp_host(); *p; p++)
        g_assert_true(g_ascii_isalnum(*p) || *p == '.' || *p == '_');
}

static void
test_maker_gone(void)
{
    pid_t child = fork();

    if (child == 0)
        _exit(0);
    g_assert_cmpint(child, >, 0);
    g_assert_cmpint(waitpid(child, NULL, 0), ==, child);
    g_assert_true(vs_temp_maker_gone(child, vs_temp_host()));
    g_assert_false(vs_temp_maker_gone(getpid(), vs_temp_host()));
    g_assert_false(vs_temp_maker_gone(child, "another-host"));
    g_assert_false(vs_temp_maker_gone(0, vs_temp_host()));
}

static void
test_signal(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("vs-interrupt-XXXXXX", NULL);
    g_autofree char *mark = g_build_filename(dir, "mark", NULL);
    pid_t child;
    int status = 0;

    g_assert_cmpint(vs_interrupted(), ==, 0);
    g_assert_true(vs_interrupt_check("test", &err));
    g_assert_cmpint(vs_interrupt_exit_status(SIGINT), ==, 130);
    g_assert_cmpint(vs_interrupt_exit_status(SIGTERM), ==, 143);
    g_assert_cmpint(vs_interrupt_exit_status(SIGHUP), ==, 129);

    /* In a child: a hang fault point that only the interrupt ends; the
     * child then exits with what the flag says, not killed by the signal. */
    child = fork();
    if (child == 0) {
        vs_interrupt_install();
        g_setenv("VIRTSNAP_FAULT", "hang:test-point", TRUE);
        g_setenv("VIRTSNAP_FAULT_MARK", mark, TRUE);
        vs_fault_point("test-point");
        _exit(vs_interrupt_check("test", NULL) ? 0 : vs_interrupt_exit_status(vs_interrupted()));
    }
    g_assert_cmpint(child, >, 0);
    for (int i = 0; i < 500 && !g_file_test(mark, G_FILE_TEST_EXISTS); i++)
        g_usleep(10 * 1000);
    g_assert_true(g_file_test(mark, G_FILE_TEST_EXISTS));
    kill(child, SIGTERM);
    /* a second signal changes nothing */
    kill(child, SIGINT);
    g_assert_cmpint(waitpid(child, &status, 0), ==, child);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 143);

    /* In this process: the flag and the error. */
    vs_interrupt_install();
    raise(SIGINT);
    g_assert_cmpint(vs_interrupted(), ==, SIGINT);
    g_assert_false(vs_interrupt_check("restore", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INTERRUPTED);
    g_assert_cmpstr(err->message, ==, "restore: interrupted by SIGINT");
    unlink(mark);
    rmdir(dir);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/interrupt/temp-names", test_temp_names);
    g_test_add_func("/interrupt/maker-gone", test_maker_gone);
    g_test_add_func("/interrupt/signal", test_signal);
    return g_test_run();
}
