/* Active commit and pivot (driver/blockjob.c) against the scripted control
 * plane: the pivot waits for the READY event; a commit that never gets there
 * is cancelled when its bound passes and says so; a pivot libvirt refuses
 * cancels the job (the guest stays on its overlay); a commit left by a killed
 * run is cancelled first, and another tool's block job is left alone; a base
 * still locked by a dying reader is waited for. */
#include "config.h"
#include "driver-internal.h"
#include "fake-control.h"

#define U1 VS_FAKE_U1

typedef VsFakeFixture Fixture;

static bool
commit(Fixture *fx, int timeout_ms, GError **error)
{
    return vs_blockcommit_pivot_limited(vs_fake_conn(fx->fake), fx->vm, "vda", timeout_ms, 0, error);
}

static void
test_commit_pivots_after_ready(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "none");
    vs_fake_add_item(fx->fake, "block_commit vm1 vda", "ok");
    vs_fake_add_event(fx->fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    vs_fake_add_item(fx->fake, "block_job_abort vm1 vda pivot", "ok");
    g_assert_true(commit(fx, 5000, &err));
    g_assert_no_error(err);
}

/* No READY within the bound: the job is cancelled (never pivoted) and the
 * error says that the commit did not converge, and within how long. */
static void
test_commit_never_ready(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    gint64 start = g_get_monotonic_time();

    (void)data;
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "none");
    vs_fake_add_item(fx->fake, "block_commit vm1 vda", "ok");
    /* At the bound, without an event: is the job still there at all? */
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "active-commit");
    vs_fake_add_item(fx->fake, "conn_alive", "1");
    vs_fake_add_item(fx->fake, "domain_is_active vm1", "1");
    vs_fake_add_item(fx->fake, "block_job_abort vm1 vda", "ok");
    g_assert_false(commit(fx, 200, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_TIMEOUT);
    g_assert_cmpstr(err->message, ==, "commit: domain 'vm1' disk vda did not converge within "
                    "0.2 s (the guest writes faster than the commit copies)");
    /* Bounded: the 0.2 s, not libvirt's patience. */
    g_assert_cmpint(g_get_monotonic_time() - start, <, 2 * G_USEC_PER_SEC);
}

/* The job ends by itself before READY: no pivot, said so. */
static void
test_commit_fails_before_ready(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "none");
    vs_fake_add_item(fx->fake, "block_commit vm1 vda", "ok");
    vs_fake_add_event(fx->fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_FAILED);
    vs_fake_add_item(fx->fake, "block_job_abort vm1 vda", "ok");
    g_assert_false(commit(fx, 5000, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "commit: domain 'vm1' disk vda: the commit job failed "
                    "before it was ready to pivot");
}

/* READY, but the pivot is refused: the job is cancelled, so that the guest
 * is left on its overlay rather than half-pivoted, and the error is the
 * pivot's. */
static void
test_pivot_fails(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "none");
    vs_fake_add_item(fx->fake, "block_commit vm1 vda", "ok");
    vs_fake_add_event(fx->fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    vs_fake_add_error(fx->fake, "block_job_abort vm1 vda pivot", VS_ERROR_LIBVIRT,
                      "block copy still active: disk 'vda' not ready for pivot yet");
    vs_fake_add_item(fx->fake, "block_job_abort vm1 vda", "ok");
    g_assert_false(commit(fx, 5000, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "commit: domain 'vm1' disk vda: pivot: block copy still "
                    "active: disk 'vda' not ready for pivot yet");
}

/* A commit an interrupted run left is cancelled (and its CANCELED event
 * awaited) before a new one starts. */
static void
test_leftover_commit_cancelled(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    gint64 start = g_get_monotonic_time();

    (void)data;
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "active-commit");
    vs_fake_add_item(fx->fake, "block_job_abort vm1 vda", "ok");
    vs_fake_add_event(fx->fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_CANCELED);
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "none");
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "none");
    vs_fake_add_item(fx->fake, "block_commit vm1 vda", "ok");
    vs_fake_add_event(fx->fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    vs_fake_add_item(fx->fake, "block_job_abort vm1 vda pivot", "ok");
    g_assert_true(commit(fx, 5000, &err));
    g_assert_no_error(err);
    /* The old job's CANCELED was not taken for the new one's end, nor waited
     * for when it had come. */
    g_assert_cmpint(g_get_monotonic_time() - start, <, G_USEC_PER_SEC);
}

/* The leftover commit cannot be cancelled and is still there: the error is
 * the cancel's own (main's code read libvirt's last error after the job-info
 * call that followed the abort had cleared it: "unknown libvirt error"). */
static void
test_leftover_commit_cancel_fails(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "active-commit");
    vs_fake_add_error(fx->fake, "block_job_abort vm1 vda", VS_ERROR_LIBVIRT,
                      "Timed out during operation: cannot acquire state change lock");
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "active-commit");
    g_assert_false(commit(fx, 5000, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "commit: domain 'vm1' disk vda: cancelling the commit an "
                    "interrupted run left: Timed out during operation: cannot acquire state "
                    "change lock");
}

static void
test_other_job_left_alone(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "copy");
    g_assert_false(commit(fx, 5000, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "commit: domain 'vm1' disk vda has another block job running "
                    "(type 2): wait for it or end it (virsh blockjob vm1 vda --abort), then run "
                    "this again");
}

/* The base is still locked by a reader that is going away: tried again. Any
 * other refusal is final. */
static void
test_locked_base_waited_for(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "none");
    vs_fake_add_error(fx->fake, "block_commit vm1 vda", VS_ERROR_BUSY,
                      "Failed to get \"write\" lock");
    vs_fake_add_item(fx->fake, "block_commit vm1 vda", "ok");
    vs_fake_add_event(fx->fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    vs_fake_add_item(fx->fake, "block_job_abort vm1 vda pivot", "ok");
    g_assert_true(commit(fx, 5000, &err));
    g_assert_no_error(err);

    vs_fake_add_item(fx->fake, "block_job_info vm1 vda", "none");
    vs_fake_add_error(fx->fake, "block_commit vm1 vda", VS_ERROR_LIBVIRT,
                      "Requested operation is not valid: disk 'vda' has no backing file");
    g_assert_false(commit(fx, 5000, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "commit: domain 'vm1' disk vda: Requested operation is not "
                    "valid: disk 'vda' has no backing file");
}

/* The job info of a dead connection: a connection error, not a libvirt one. */
static void
test_job_info_connection_closed(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_error(fx->fake, "block_job_info vm1 vda", VS_ERROR_LIBVIRT,
                      "internal error: client socket is closed");
    vs_fake_add_item(fx->fake, "conn_alive", "0");
    g_assert_false(commit(fx, 5000, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_CONNECTION);
    g_assert_cmpstr(err->message, ==, "commit: domain 'vm1' disk vda: its block jobs: internal "
                    "error: client socket is closed");
}

/* Instant restore's copy: no bound but the job's end; the pivot after READY. */
static void
test_copy_pivots_after_ready(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "block_copy vm1 vda", "ok");
    vs_fake_add_event(fx->fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    vs_fake_add_item(fx->fake, "block_job_abort vm1 vda pivot", "ok");
    g_assert_true(vs_blockcopy_pivot(vs_fake_conn(fx->fake), fx->vm, "vda", "/srv/vm/a&b.img", "raw",
                                     &err));
    g_assert_no_error(err);
    g_assert_cmpstr(vs_fake_last_xml(fx->fake), ==,
                    "<disk type='file'><source file='/srv/vm/a&amp;b.img'/><driver type='raw'/></disk>");

    vs_fake_add_item(fx->fake, "block_copy vm1 vda", "ok");
    vs_fake_add_event(fx->fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    vs_fake_add_error(fx->fake, "block_job_abort vm1 vda pivot", VS_ERROR_LIBVIRT, "I/O error");
    vs_fake_add_item(fx->fake, "block_job_abort vm1 vda", "ok");
    g_assert_false(vs_blockcopy_pivot(vs_fake_conn(fx->fake), fx->vm, "vda", "/srv/vm/b.img", "raw",
                                      &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "copy: domain 'vm1' disk vda: pivot to /srv/vm/b.img: I/O error");
}

/* The disk's current top image, from the live or the persistent XML. */
static void
test_disk_source(Fixture *fx, gconstpointer data)
{
    const char *xml = "<domain type='kvm'><name>vm1</name><uuid>" U1 "</uuid>"
                      "<memory>65536</memory><os><type>hvm</type></os><devices>"
                      "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                      "<source file='/srv/vm/disk.qcow2.virtsnap-ID.qcow2'/>"
                      "<target dev='vda' bus='virtio'/></disk></devices></domain>";
    g_autoptr(GError) err = NULL;
    g_autofree char *src = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "domain_xml vm1 live", xml);
    src = vs_domain_disk_source(fx->vm, "vda", false, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(src, ==, "/srv/vm/disk.qcow2.virtsnap-ID.qcow2");

    vs_fake_add_item(fx->fake, "domain_xml vm1 inactive", xml);
    g_assert_null(vs_domain_disk_source(fx->vm, "vdb", true, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_cmpstr(err->message, ==, "domain 'vm1' has no disk vdb");
    g_clear_error(&err);

    vs_fake_add_error(fx->fake, "domain_xml vm1 live", VS_ERROR_LIBVIRT, "client socket is closed");
    g_assert_null(vs_domain_disk_source(fx->vm, "vda", false, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "domain 'vm1': cannot read its XML: client socket is closed");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, vs_fake_fixture_setup, fn, vs_fake_fixture_teardown)
    ADD("/blockjob/commit-pivots-after-ready", test_commit_pivots_after_ready);
    ADD("/blockjob/commit-never-ready", test_commit_never_ready);
    ADD("/blockjob/commit-fails-before-ready", test_commit_fails_before_ready);
    ADD("/blockjob/pivot-fails", test_pivot_fails);
    ADD("/blockjob/leftover-commit-cancelled", test_leftover_commit_cancelled);
    ADD("/blockjob/leftover-commit-cancel-fails", test_leftover_commit_cancel_fails);
    ADD("/blockjob/other-job-left-alone", test_other_job_left_alone);
    ADD("/blockjob/locked-base-waited-for", test_locked_base_waited_for);
    ADD("/blockjob/job-info-connection-closed", test_job_info_connection_closed);
    ADD("/blockjob/copy-pivots-after-ready", test_copy_pivots_after_ready);
    ADD("/blockjob/disk-source", test_disk_source);
    return g_test_run();
}
