/* The host-wide per-domain lock (driver/journal.c): one lock whatever the state
 * directory, a second taker refused at once or after its --lock-wait with the
 * holder named, a wait that ends when the holder lets go, and a lock directory
 * or UUID that could lead the lock file elsewhere refused. Runs in a directory
 * of its own through $VIRTSNAP_LOCK_DIR; flock locks belong to an open file
 * description, so two takers in one process conflict as two processes would. */
#include "config.h"
#include "driver-internal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UUID "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"

static char *tmpdir;

/* A lock directory of the test's own, not there yet: vs_domain_lock makes it. */
static char *
fresh_lock_dir(const char *name)
{
    char *dir = g_build_filename(tmpdir, name, NULL);

    g_setenv("VIRTSNAP_LOCK_DIR", dir, TRUE);
    return dir;
}

static void
test_busy(void)
{
    g_autofree char *dir = fresh_lock_dir("busy");
    g_autofree char *path = g_build_filename(dir, UUID ".lock", NULL);
    g_autofree char *text = NULL;
    g_autofree char *pid = g_strdup_printf("pid %d ", (int)getpid());
    g_autofree char *pid_line = g_strdup_printf("pid=%d\n", (int)getpid());
    g_autoptr(GError) err = NULL;
    struct stat st;
    gint64 t0;
    int fd, fd2;

    fd = vs_domain_lock("/srv/stateA", UUID, "web1", "backup", 0, &err);
    g_assert_no_error(err);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(stat(dir, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0700);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, pid_line));
    g_assert_nonnull(strstr(text, "\nstart="));
    g_assert_nonnull(strstr(text, "\nstate_dir=/srv/stateA\n"));
    g_assert_nonnull(strstr(text, "\ncommand=backup\n"));
    g_assert_nonnull(strstr(text, "\ntime=20"));

    /* Another state directory changes nothing: refused at once. */
    t0 = g_get_monotonic_time();
    fd2 = vs_domain_lock("/srv/stateB", UUID, "web1", "backup", 0, &err);
    g_assert_cmpint(fd2, ==, -1);
    g_assert_error(err, VS_ERROR, VS_ERROR_BUSY);
    g_test_message("%s", err->message);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC);
    g_assert_true(g_str_has_prefix(err->message, "lock: domain 'web1' "));
    g_assert_nonnull(strstr(err->message, pid));
    g_assert_nonnull(strstr(err->message, "state dir /srv/stateA"));
    g_assert_nonnull(strstr(err->message, "--lock-wait"));
    g_clear_error(&err);

    /* A bounded wait that runs out says so. */
    t0 = g_get_monotonic_time();
    fd2 = vs_domain_lock("/srv/stateB", UUID, "web1", "restore", 1, &err);
    g_assert_cmpint(fd2, ==, -1);
    g_assert_error(err, VS_ERROR, VS_ERROR_BUSY);
    g_test_message("%s", err->message);
    g_assert_cmpint(g_get_monotonic_time() - t0, >=, G_USEC_PER_SEC);
    g_assert_nonnull(strstr(err->message, "after 1 s"));
    g_assert_nonnull(strstr(err->message, pid));
    g_clear_error(&err);

    /* Released: the next one takes it and names itself; the file stays. */
    vs_domain_unlock(fd);
    fd = vs_domain_lock("/srv/stateB", UUID, "web1", "restore", 0, &err);
    g_assert_no_error(err);
    g_assert_cmpint(fd, >=, 0);
    g_clear_pointer(&text, g_free);
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "\nstate_dir=/srv/stateB\n"));
    g_assert_nonnull(strstr(text, "\ncommand=restore\n"));
    vs_domain_unlock(fd);
}

/* The lock file is anyone's to scribble in who can write it: what a waiter
 * prints from it is bounded and printable. */
static void
test_untrusted_holder(void)
{
    g_autofree char *dir = fresh_lock_dir("untrusted");
    g_autofree char *path = g_build_filename(dir, UUID ".lock", NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(GString) junk = g_string_new("pid=66\x1b[2J\nstate_dir=/x\r\x07\n");
    int fd, w;

    fd = vs_domain_lock("/srv/stateA", UUID, "web1", "backup", 0, &err);
    g_assert_no_error(err);
    for (int i = 0; i < 4096; i++)
        g_string_append_c(junk, 'A');
    w = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    g_assert_cmpint(w, >=, 0);
    g_assert_cmpint(write(w, junk->str, junk->len), ==, (ssize_t)junk->len);
    close(w);
    g_assert_cmpint(vs_domain_lock("/srv/stateB", UUID, "web1", "backup", 0, &err), ==, -1);
    g_assert_error(err, VS_ERROR, VS_ERROR_BUSY);
    g_assert_nonnull(strstr(err->message, "pid 66?[2J "));
    g_assert_nonnull(strstr(err->message, "state dir /x??"));
    g_assert_cmpuint(strlen(err->message), <, 1024);
    for (const char *c = err->message; *c; c++)
        g_assert_true(g_ascii_isprint(*c));
    vs_domain_unlock(fd);
}

static gpointer
release_later(gpointer data)
{
    g_usleep(300 * 1000);
    vs_domain_unlock(GPOINTER_TO_INT(data));
    return NULL;
}

static void
test_wait(void)
{
    g_autoptr(GError) err = NULL;
    GThread *th;
    gint64 t0, waited;
    int fd, fd2;

    g_free(fresh_lock_dir("wait"));
    fd = vs_domain_lock("/srv/stateA", UUID, "web1", "backup", 0, &err);
    g_assert_no_error(err);
    th = g_thread_new("release", release_later, GINT_TO_POINTER(fd));
    t0 = g_get_monotonic_time();
    fd2 = vs_domain_lock("/srv/stateB", UUID, "web1", "backup", 2, &err);
    waited = g_get_monotonic_time() - t0;
    g_thread_join(th);
    g_assert_no_error(err);
    g_assert_cmpint(fd2, >=, 0);
    g_assert_cmpint(waited, >=, 250 * 1000);
    g_assert_cmpint(waited, <, 2 * G_USEC_PER_SEC);
    vs_domain_unlock(fd2);
}

static void
test_symlink(void)
{
    g_autofree char *real = g_build_filename(tmpdir, "real", NULL);
    g_autofree char *link = g_build_filename(tmpdir, "link", NULL);
    g_autofree char *in_real = g_build_filename(real, UUID ".lock", NULL);
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(mkdir(real, 0700), ==, 0);
    g_assert_cmpint(symlink(real, link), ==, 0);
    g_setenv("VIRTSNAP_LOCK_DIR", link, TRUE);
    g_assert_cmpint(vs_domain_lock("/srv/stateA", UUID, "web1", "backup", 0, &err), ==, -1);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_nonnull(strstr(err->message, link));
    g_assert_nonnull(strstr(err->message, "symbolic link"));
    g_assert_false(g_file_test(in_real, G_FILE_TEST_EXISTS));
}

static void
test_lock_file_symlink(void)
{
    g_autofree char *dir = fresh_lock_dir("filelink");
    g_autofree char *path = g_build_filename(dir, UUID ".lock", NULL);
    g_autofree char *target = g_build_filename(tmpdir, "elsewhere", NULL);
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(mkdir(dir, 0700), ==, 0);
    g_assert_cmpint(symlink(target, path), ==, 0);
    g_assert_cmpint(vs_domain_lock("/srv/stateA", UUID, "web1", "backup", 0, &err), ==, -1);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_false(g_file_test(target, G_FILE_TEST_EXISTS));
}

/* Someone else's directory or file could be held or rewritten by them. Only
 * root can make such a thing for the test. */
static void
test_foreign_owner(void)
{
    g_autofree char *dir = fresh_lock_dir("foreign");
    g_autofree char *path = g_build_filename(dir, UUID ".lock", NULL);
    g_autoptr(GError) err = NULL;
    int fd;

    if (geteuid() != 0) {
        g_test_skip("needs root to give files away");
        return;
    }
    g_assert_cmpint(mkdir(dir, 0700), ==, 0);
    g_assert_cmpint(chown(dir, 65534, 65534), ==, 0);
    g_assert_cmpint(vs_domain_lock("/srv/stateA", UUID, "web1", "backup", 0, &err), ==, -1);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_nonnull(strstr(err->message, "not owned by root"));
    g_clear_error(&err);

    g_assert_cmpint(chown(dir, 0, 0), ==, 0);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    g_assert_cmpint(chown(path, 65534, 65534), ==, 0);
    g_assert_cmpint(vs_domain_lock("/srv/stateA", UUID, "web1", "backup", 0, &err), ==, -1);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_nonnull(strstr(err->message, path));
}

static void
test_bad_uuid(void)
{
    const char *bad[] = {
        "", "4dea22b3", "../../../../etc/shadow", "4dea22b3-1d52-d8f3-2516-782e98ab3fa",
        "4dea22b3-1d52-d8f3-2516-782e98ab3fa0x", "4dea22b3/1d52-d8f3-2516-782e98ab3fa0",
        "4dea22b3-1d52-d8f3-2516-782e98ab3fg0", "4dea22b3-1d52-d8f3-2516-782e98ab3\n00",
    };
    g_autofree char *dir = fresh_lock_dir("baduuid");

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) err = NULL;

        g_assert_cmpint(vs_domain_lock("/srv/stateA", bad[i], "web1", "backup", 0, &err), ==, -1);
        g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
        g_assert_nonnull(strstr(err->message, "web1"));
        g_assert_null(strchr(err->message, '\n'));
    }
    {
        g_autoptr(GError) err = NULL;

        g_assert_cmpint(vs_domain_lock("/srv/stateA", NULL, "web1", "backup", 0, &err), ==, -1);
        g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    }
    g_assert_false(g_file_test(dir, G_FILE_TEST_EXISTS));
}

int
main(int argc, char **argv)
{
    int rc;
    g_autoptr(GError) err = NULL;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("vs-lock-XXXXXX", &err);
    g_assert_no_error(err);
    g_test_add_func("/lock/busy", test_busy);
    g_test_add_func("/lock/untrusted-holder", test_untrusted_holder);
    g_test_add_func("/lock/symlink-dir", test_symlink);
    g_test_add_func("/lock/symlink-file", test_lock_file_symlink);
    g_test_add_func("/lock/foreign-owner", test_foreign_owner);
    g_test_add_func("/lock/bad-uuid", test_bad_uuid);
    /* Last: the others set $VIRTSNAP_LOCK_DIR, which is not for after a thread. */
    g_test_add_func("/lock/wait", test_wait);
    rc = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf %s", tmpdir);
        (void)!system(cmd);
    }
    g_free(tmpdir);
    return rc;
}
