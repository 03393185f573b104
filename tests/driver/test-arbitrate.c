/* Backups and migrations arbitrate (driver/arbitrate.c): a migration waits,
 * bounded, for the backup that holds the domain and names it; with
 * --abort-backup the backup (a child process holding the lock, as a real
 * backup does, with the interrupt handlers installed) gets SIGTERM, finds the
 * request naming the migration, lets go, and the migration takes the lock; a
 * backup of a domain a virtsnap migrate holds, or that libvirt migrates (the
 * scripted control plane's job and state), is refused naming the migration.
 * The locks live in a directory of the test's own ($VIRTSNAP_LOCK_DIR). */
#include "config.h"
#include "driver-internal.h"
#include "arbitrate.h"
#include "fake-control.h"
#include "vs-interrupt.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define UUID "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
#define DEST "qemu+tcp://10.213.0.2/system"

static char *tmpdir;

static void
collect(const char *line, gpointer data)
{
    g_ptr_array_add(data, g_strdup(line));
}

/* A child holding UUID's lock as "backup" until SIGTERM; on it, it writes what
 * vs_backup_abort_request says to the pipe and lets go. Returns its pid once
 * the lock is held; *RFD reads the child's report. */
static pid_t
start_backup(int *rfd)
{
    int ready[2], report[2];
    char c;
    pid_t pid;

    g_assert_cmpint(pipe(ready), ==, 0);
    g_assert_cmpint(pipe(report), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        g_autofree char *why = NULL;
        int fd;

        vs_interrupt_install();
        fd = vs_domain_lock("/srv/state", UUID, "web1", "backup", 0, NULL);
        if (fd < 0)
            _exit(3);
        (void)!write(ready[1], "r", 1);
        while (!vs_interrupted())
            g_usleep(20 * 1000);
        /* A backup unwinding takes a moment: the migration waits for it. */
        g_usleep(300 * 1000);
        why = vs_backup_abort_request(UUID);
        (void)!write(report[1], why ? why : "none", strlen(why ? why : "none"));
        vs_domain_unlock(fd);
        _exit(vs_interrupted() == SIGTERM ? 0 : 4);
    }
    close(ready[1]);
    close(report[1]);
    g_assert_cmpint(read(ready[0], &c, 1), ==, 1);
    close(ready[0]);
    *rfd = report[0];
    return pid;
}

static void
test_wait_bounded(void)
{
    g_autoptr(GPtrArray) said = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    int rfd, status;
    pid_t pid = start_backup(&rfd);
    gint64 t0 = g_get_monotonic_time();

    g_assert_cmpint(vs_migrate_lock("/srv/m", UUID, "web1", DEST, 1, false, collect, said, &err), ==, -1);
    g_assert_cmpint(g_get_monotonic_time() - t0, >=, G_USEC_PER_SEC);
    g_assert_error(err, VS_ERROR, VS_ERROR_BUSY);
    g_assert_nonnull(strstr(err->message, "migrate: lock: domain 'web1' is still in use by another run after 1 s: virtsnap backup, pid"));
    g_assert_nonnull(strstr(err->message, "--abort-backup"));
    g_assert_cmpuint(said->len, ==, 1);
    g_assert_nonnull(strstr(said->pdata[0], "is in use by virtsnap backup, pid"));
    g_assert_nonnull(strstr(said->pdata[0], "waiting up to 1 s"));
    /* The backup was not asked to stop: no request for it to find. */
    g_assert_null(vs_backup_abort_request(UUID));
    kill(pid, SIGINT);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    close(rfd);
}

static void
test_abort_backup(void)
{
    g_autoptr(GPtrArray) said = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *lockfile = g_build_filename(tmpdir, "locks", UUID ".lock", NULL);
    g_autofree char *reqfile = g_build_filename(tmpdir, "locks", UUID ".abort", NULL);
    g_autofree char *text = NULL;
    char report[512];
    ssize_t n;
    int rfd, status, fd;
    pid_t pid = start_backup(&rfd);

    fd = vs_migrate_lock("/srv/m", UUID, "web1", DEST, 10, true, collect, said, &err);
    g_assert_no_error(err);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    n = read(rfd, report, sizeof report - 1);
    close(rfd);
    g_assert_cmpint(n, >, 0);
    report[n] = '\0';
    g_assert_nonnull(strstr(report, "a migration (virtsnap migrate --abort-backup to " DEST ", pid"));
    g_assert_cmpuint(said->len, ==, 1);
    g_assert_nonnull(strstr(said->pdata[0], "stopping the backup that holds it (virtsnap backup"));
    g_assert_true(g_file_get_contents(lockfile, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "\ncommand=migrate\n"));

    /* While it migrates, a backup is refused at once, the migration named. */
    g_assert_false(vs_backup_check_migrate_holder(UUID, "web1", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_BUSY);
    g_assert_nonnull(strstr(err->message, "backup: domain 'web1' is migrating (virtsnap migrate, pid"));
    g_clear_error(&err);

    vs_migrate_unlock(fd, UUID);
    g_assert_false(g_file_test(reqfile, G_FILE_TEST_EXISTS));
    g_assert_true(vs_backup_check_migrate_holder(UUID, "web1", &err));
    g_assert_no_error(err);
}

/* A holder killed with -9 left its name in the file: not a live holder. */
static void
test_dead_holder(void)
{
    g_autofree char *lockfile = g_build_filename(tmpdir, "locks", UUID ".lock", NULL);
    g_autoptr(GError) err = NULL;

    g_assert_true(g_file_set_contents(lockfile, "pid=1\nstart=1\ncommand=migrate\n", -1, NULL));
    g_assert_null(vs_domain_lock_holder(UUID, &err));
    g_assert_no_error(err);
    g_assert_true(vs_backup_check_migrate_holder(UUID, "web1", &err));
    g_assert_true(g_file_set_contents(lockfile, "", -1, NULL));
}

static void
test_libvirt_migration(VsFakeFixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "job_stats vm1", "unbounded migration-out");
    g_assert_false(vs_backup_check_migration_job(fx->vm, "vm1", VIR_DOMAIN_RUNNING, 0, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_BUSY);
    g_assert_nonnull(strstr(err->message, "backup: domain 'vm1' is migrating (libvirt's outgoing migration job"));
    g_clear_error(&err);

    vs_fake_add_item(fx->fake, "job_stats vm1", "unbounded migration-in");
    g_assert_false(vs_backup_check_migration_job(fx->vm, "vm1", VIR_DOMAIN_PAUSED,
                                                 VIR_DOMAIN_PAUSED_MIGRATION, &err));
    g_assert_nonnull(strstr(err->message, "incoming migration job"));
    g_clear_error(&err);

    /* No job, but paused by a migration that never finished. */
    vs_fake_add_item(fx->fake, "job_stats vm1", "none");
    g_assert_false(vs_backup_check_migration_job(fx->vm, "vm1", VIR_DOMAIN_PAUSED,
                                                 VIR_DOMAIN_PAUSED_MIGRATION, &err));
    g_assert_nonnull(strstr(err->message, "virtsnap recover"));
    g_clear_error(&err);

    /* A backup job of its own, a user's pause, no job: no migration. */
    vs_fake_add_item(fx->fake, "job_stats vm1", "unbounded backup");
    g_assert_true(vs_backup_check_migration_job(fx->vm, "vm1", VIR_DOMAIN_RUNNING, 0, &err));
    vs_fake_add_item(fx->fake, "job_stats vm1", "none");
    g_assert_true(vs_backup_check_migration_job(fx->vm, "vm1", VIR_DOMAIN_PAUSED,
                                                VIR_DOMAIN_PAUSED_USER, &err));
    vs_fake_add_error(fx->fake, "job_stats vm1", VS_ERROR_LIBVIRT, "cannot say");
    g_assert_true(vs_backup_check_migration_job(fx->vm, "vm1", VIR_DOMAIN_RUNNING, 0, &err));
    g_assert_no_error(err);
}

int
main(int argc, char **argv)
{
    g_autofree char *locks = NULL;
    int rc;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("vs-arbitrate-XXXXXX", NULL);
    locks = g_build_filename(tmpdir, "locks", NULL);
    g_setenv("VIRTSNAP_LOCK_DIR", locks, TRUE);
    g_test_add_func("/arbitrate/wait-bounded", test_wait_bounded);
    g_test_add_func("/arbitrate/abort-backup", test_abort_backup);
    g_test_add_func("/arbitrate/dead-holder", test_dead_holder);
    g_test_add("/arbitrate/libvirt-migration", VsFakeFixture, NULL, vs_fake_fixture_setup,
               test_libvirt_migration, vs_fake_fixture_teardown);
    rc = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
        (void)!system(cmd);
    }
    g_free(tmpdir);
    return rc;
}
