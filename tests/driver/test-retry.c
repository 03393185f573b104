/* The retry loop of KVM_CMD_RETRY_COUNT (driver/retry.c) around a fake step
 * that fails a given number of times: it succeeds on the try after the last
 * failure when retries are left, gives up with the step's own error when they
 * are not, never retries an error that will not pass (NOT_FOUND,
 * INVALID_ARG), waits twice as long each time, and leaves one note per
 * retried step. The fault point fail:POINT:N (util/vs-fault.c) fails its
 * first N calls only. */
#include "config.h"
#include "retry.h"
#include "vs-error.h"
#include "vs-fault.h"

#include <string.h>

typedef struct {
    int fails;        /* fail this many times, then succeed */
    int code;
    int calls;
} Step;

static bool
step(Step *s, GError **error)
{
    s->calls++;
    if (s->calls <= s->fails) {
        g_set_error(error, VS_ERROR, s->code, "step failed (call %d)", s->calls);
        return false;
    }
    return true;
}

/* Runs STEP under COUNT retries (waits of 1 ms); its NOTES. */
static bool
run(Step *s, int count, GPtrArray *notes, GError **error)
{
    VsRetry r = VS_RETRY_INIT(count);
    bool ok;

    r.delay_ms = 1;
    while (!(ok = step(s, error)) && vs_retry_again(&r, error))
        ;
    vs_retry_note(&r, "the step", notes);
    return ok;
}

static void
test_succeeds_after_failures(void)
{
    Step s = { .fails = 2, .code = VS_ERROR_LIBVIRT };
    g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;

    g_assert_true(run(&s, 3, notes, &err));
    g_assert_no_error(err);
    g_assert_cmpint(s.calls, ==, 3);
    g_assert_cmpuint(notes->len, ==, 1);
    g_assert_cmpstr(notes->pdata[0], ==, "the step: retried 2 time(s) (KVM_CMD_RETRY_COUNT=3) after: "
                                         "step failed (call 1)");
}

static void
test_gives_up(void)
{
    Step s = { .fails = 2, .code = VS_ERROR_AGENT };
    g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;

    g_assert_false(run(&s, 1, notes, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_AGENT);
    g_assert_cmpstr(err->message, ==, "step failed (call 2)");
    g_assert_cmpint(s.calls, ==, 2);
    g_assert_cmpuint(notes->len, ==, 1);
    g_clear_error(&err);

    /* 0: no retry, no note */
    s.calls = 0;
    g_ptr_array_set_size(notes, 0);
    g_assert_false(run(&s, 0, notes, &err));
    g_assert_cmpint(s.calls, ==, 1);
    g_assert_cmpuint(notes->len, ==, 0);
}

static void
test_not_transient(void)
{
    const int codes[] = { VS_ERROR_NOT_FOUND, VS_ERROR_INVALID_ARG, VS_ERROR_STOPPED, VS_ERROR_CONNECTION,
                          VS_ERROR_INTERRUPTED };

    for (size_t i = 0; i < G_N_ELEMENTS(codes); i++) {
        Step s = { .fails = 1, .code = codes[i] };
        g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) err = NULL;

        g_assert_false(run(&s, 3, notes, &err));
        g_assert_error(err, VS_ERROR, codes[i]);
        g_assert_cmpint(s.calls, ==, 1);
        g_assert_cmpuint(notes->len, ==, 0);
    }
}

/* The first wait is VS_RETRY_FIRST_MS, and each wait is really waited, then
 * doubled (started at 20 ms here, to keep the test short). */
static void
test_backoff(void)
{
    VsRetry r = VS_RETRY_INIT(2);
    g_autoptr(GError) err = NULL;
    gint64 t0;

    g_assert_cmpint(r.delay_ms, ==, VS_RETRY_FIRST_MS);
    r.delay_ms = 20;
    for (int wait = 20; wait <= 40; wait *= 2) {
        g_set_error(&err, VS_ERROR, VS_ERROR_LIBVIRT, "busy");
        t0 = g_get_monotonic_time();
        g_assert_true(vs_retry_again(&r, &err));
        g_assert_cmpint(g_get_monotonic_time() - t0, >=, wait * 1000);
        g_assert_null(err);
        g_assert_cmpint(r.delay_ms, ==, wait * 2);
    }
    g_set_error(&err, VS_ERROR, VS_ERROR_LIBVIRT, "busy");
    g_assert_false(vs_retry_again(&r, &err));     /* both used */
    g_assert_nonnull(err);
    vs_retry_note(&r, "x", NULL);
}

static void
test_fault_counted(void)
{
    g_autoptr(GError) err = NULL;

    g_setenv("VIRTSNAP_FAULT", "fail:domain-xml:2", TRUE);
    g_assert_true(vs_fault_fail("domain-lookup", &err));    /* another point */
    for (int i = 0; i < 2; i++) {
        g_assert_false(vs_fault_fail("domain-xml", &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_IO);
        g_clear_error(&err);
    }
    g_assert_true(vs_fault_fail("domain-xml", &err));
    g_assert_true(vs_fault_fail("domain-xml", &err));
    /* without a count: every call */
    g_setenv("VIRTSNAP_FAULT", "fail:journal-freeze:vm1", TRUE);
    g_assert_false(vs_fault_fail("journal-freeze:vm1", &err));
    g_clear_error(&err);
    g_assert_false(vs_fault_fail("journal-freeze:vm1", &err));
    g_clear_error(&err);
    g_unsetenv("VIRTSNAP_FAULT");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/retry/succeeds-after-failures", test_succeeds_after_failures);
    g_test_add_func("/retry/gives-up", test_gives_up);
    g_test_add_func("/retry/not-transient", test_not_transient);
    g_test_add_func("/retry/backoff", test_backoff);
    g_test_add_func("/retry/fault-counted", test_fault_counted);
    return g_test_run();
}
