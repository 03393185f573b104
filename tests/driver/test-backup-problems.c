/* A backup's per-domain problems as values (driver/backup.c): the first
 * failure is the domain's error and keeps its code (a lock held elsewhere
 * stays VS_ERROR_BUSY, a commit's timeout VS_ERROR_TIMEOUT) so that nothing
 * downstream has to read it back out of the message; later failures do not
 * replace it; notes are a list in the order they were added. */
#include "config.h"
#include "backup-internal.h"

static DomJob *
new_job(void)
{
    DomJob *j = g_new0(DomJob, 1);

    j->name = g_strdup("vm1");
    j->lock_fd = -1;
    j->disks = g_ptr_array_new_with_free_func((GDestroyNotify)disk_job_free);
    j->notes = g_ptr_array_new_with_free_func(g_free);
    return j;
}

static void
test_printf_form(void)
{
    DomJob *j = new_job();

    dom_fail(j, "domain '%s' has no disk that can be backed up", j->name);
    dom_fail(j, "a later failure");
    g_assert_error(j->error, VS_ERROR, VS_ERROR_FAILED);
    g_assert_cmpstr(j->error->message, ==, "domain 'vm1' has no disk that can be backed up");
    dom_job_free(j);
}

static void
test_keeps_code(void)
{
    DomJob *j = new_job();
    g_autoptr(GError) busy = g_error_new(VS_ERROR, VS_ERROR_BUSY, "backup: domain 'vm1' is locked");
    g_autoptr(GError) io = g_error_new(VS_ERROR, VS_ERROR_IO, "copy: short read");

    dom_fail_error(j, busy);
    dom_fail_error(j, io);
    dom_fail(j, "and another");
    g_assert_error(j->error, VS_ERROR, VS_ERROR_BUSY);
    g_assert_cmpstr(j->error->message, ==, "backup: domain 'vm1' is locked");
    g_assert_true(j->error != busy);   /* a copy: the caller frees its own */
    dom_job_free(j);
}

static void
test_from_cause(void)
{
    DomJob *j = new_job();
    g_autoptr(GError) cause = g_error_new(VS_ERROR, VS_ERROR_TIMEOUT, "commit: vda did not converge");

    dom_fail_from(j, cause, "%s; `virtsnap recover` ends it", cause->message);
    dom_fail_from(j, cause, "not this one");
    g_assert_error(j->error, VS_ERROR, VS_ERROR_TIMEOUT);
    g_assert_cmpstr(j->error->message, ==, "commit: vda did not converge; `virtsnap recover` ends it");
    dom_job_free(j);
}

static void
test_notes_in_order(void)
{
    DomJob *j = new_job();

    add_note(j, "full backup: no earlier backup of this domain in this repository");
    add_note(j, "the guest paused for an I/O error (%d)", 5);
    g_assert_cmpuint(j->notes->len, ==, 2);
    g_assert_cmpstr(j->notes->pdata[0], ==, "full backup: no earlier backup of this domain in this repository");
    g_assert_cmpstr(j->notes->pdata[1], ==, "the guest paused for an I/O error (5)");
    g_assert_null(j->error);
    dom_job_free(j);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/backup/problems/printf-form", test_printf_form);
    g_test_add_func("/backup/problems/keeps-code", test_keeps_code);
    g_test_add_func("/backup/problems/from-cause", test_from_cause);
    g_test_add_func("/backup/problems/notes-in-order", test_notes_in_order);
    return g_test_run();
}
