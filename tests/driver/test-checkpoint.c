/* Checkpoints and backup jobs (driver/checkpoint.c) against the scripted
 * control plane: retention deletes exactly this repository's checkpoints
 * other than the two kept (never another chain's, never one of another
 * tool), falls back to dropping only libvirt's record of one whose bitmap
 * cannot be merged, and reports those it could not delete at all; the
 * newest full backup's checkpoint is found by its description; a checkpoint
 * that vanished is unusable (the caller takes a full backup) unless the copy
 * kept in the repository redefines it; a backup job is aborted only when it
 * is a backup job, and a push job's own error is reported. The decision to
 * fall back to a full backup lives in backup.c: its half here is
 * vs_checkpoint_usable and vs_checkpoint_redefine. */
#include "config.h"
#include "driver-internal.h"
#include "fake-control.h"

#include <glib/gstdio.h>
#include <string.h>

#define U1 VS_FAKE_U1
#define TAG "0a1b2c3d"
#define CP(id) "virtsnap-" TAG "-" id

typedef VsFakeFixture Fixture;

static char *
checkpoint_xml(const char *name, const char *description)
{
    return g_strdup_printf("<domaincheckpoint><name>%s</name><description>%s</description>"
                           "<disks><disk name='vda' checkpoint='bitmap'/></disks>"
                           "</domaincheckpoint>", name, description);
}

/* Keeps the new checkpoint and the chain's full one; deletes the rest of
 * this chain; leaves other chains and other tools' checkpoints alone. */
static void
test_retention(Fixture *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) failed = g_ptr_array_new_with_free_func(g_free);

    (void)data;
    vs_fake_add_item(fx->fake, "checkpoint_list vm1",
                     CP("20261201-000000") " " CP("20261202-000000") " virtsnap-ffffffff-20261202-000000 "
                     "nightly " CP("20261203-000000") " " CP("20261204-000000") " " CP("20261205-000000"));
    /* 01 is the chain's full, 05 the new one: kept. */
    vs_fake_add_item(fx->fake, "checkpoint_delete vm1 " CP("20261202-000000"), "ok");
    /* A bitmap QEMU could not store cannot be merged: only the record goes. */
    vs_fake_add_error(fx->fake, "checkpoint_delete vm1 " CP("20261203-000000"), VS_ERROR_LIBVIRT,
                      "internal error: unable to merge bitmap");
    vs_fake_add_item(fx->fake, "checkpoint_delete vm1 " CP("20261203-000000") " metadata-only", "ok");
    vs_fake_add_error(fx->fake, "checkpoint_delete vm1 " CP("20261204-000000"), VS_ERROR_LIBVIRT,
                      "internal error: client socket is closed");
    vs_fake_add_error(fx->fake, "checkpoint_delete vm1 " CP("20261204-000000") " metadata-only",
                      VS_ERROR_LIBVIRT, "internal error: client socket is closed");

    g_assert_cmpuint(vs_checkpoints_prune(fx->vm, TAG, CP("20261205-000000"), CP("20261201-000000"),
                                          failed), ==, 2);
    g_assert_cmpuint(failed->len, ==, 1);
    g_assert_cmpstr(failed->pdata[0], ==, CP("20261204-000000"));
}

/* One that is gone by the time it is deleted is neither deleted nor failed;
 * a domain without checkpoints costs one question. */
static void
test_retention_gone_meanwhile(Fixture *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) failed = g_ptr_array_new_with_free_func(g_free);

    (void)data;
    vs_fake_add_item(fx->fake, "checkpoint_list vm1", CP("1") " " CP("2"));
    vs_fake_add_error(fx->fake, "checkpoint_delete vm1 " CP("1"), VS_ERROR_NOT_FOUND,
                      "Domain checkpoint not found");
    g_assert_cmpuint(vs_checkpoints_prune(fx->vm, TAG, CP("2"), NULL, failed), ==, 0);
    g_assert_cmpuint(failed->len, ==, 0);

    vs_fake_add_item(fx->fake, "checkpoint_list vm1", "");
    g_assert_cmpuint(vs_checkpoints_prune(fx->vm, TAG, CP("2"), NULL, failed), ==, 0);

    /* Deleting one that does not exist is done; one that cannot be deleted is not. */
    vs_fake_add_error(fx->fake, "checkpoint_delete vm1 " CP("3"), VS_ERROR_NOT_FOUND, "not found");
    g_assert_true(vs_checkpoint_delete(fx->vm, CP("3")));
    vs_fake_add_error(fx->fake, "checkpoint_delete vm1 " CP("3"), VS_ERROR_LIBVIRT, "busy");
    vs_fake_add_error(fx->fake, "checkpoint_delete vm1 " CP("3") " metadata-only", VS_ERROR_LIBVIRT,
                      "busy");
    g_assert_false(vs_checkpoint_delete(fx->vm, CP("3")));
}

/* A differential counts from the newest checkpoint of this chain that a full
 * backup made, as its description says; only candidates are described. */
static void
test_chain_full(Fixture *fx, gconstpointer data)
{
    g_autofree char *full1 = checkpoint_xml(CP("20261201"), "virtsnap full backup");
    g_autofree char *incr = checkpoint_xml(CP("20261203"), "virtsnap incremental backup since x");
    g_autofree char *full2 = checkpoint_xml(CP("20261202"), "virtsnap full backup: nightly");
    g_autofree char *found = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "checkpoint_list vm1",
                     CP("20261201") " " CP("20261203") " virtsnap-ffffffff-20261209 " CP("20261202"));
    vs_fake_add_item(fx->fake, "checkpoint_xml vm1 " CP("20261201"), full1);
    vs_fake_add_item(fx->fake, "checkpoint_xml vm1 " CP("20261203"), incr);
    vs_fake_add_item(fx->fake, "checkpoint_xml vm1 " CP("20261202"), full2);
    found = vs_checkpoint_chain_full(fx->vm, TAG);
    g_assert_cmpstr(found, ==, CP("20261202"));
}

/* The incremental's checkpoint vanished (the domain was defined anew): not
 * usable; redefined from the copy in the repository when that copy is this
 * checkpoint's; a refusal says why. */
static void
test_vanished_checkpoint(Fixture *fx, gconstpointer data)
{
    g_autofree char *repo = g_dir_make_tmp("vs-checkpoint-XXXXXX", NULL);
    g_autofree char *dir = g_build_filename(repo, "checkpoints", TAG, NULL);
    g_autofree char *file = g_build_filename(dir, U1 ".xml", NULL);
    g_autofree char *saved = checkpoint_xml(CP("20261201"), "virtsnap full backup");
    g_autofree char *why = NULL;

    (void)data;
    vs_fake_add_error(fx->fake, "checkpoint_xml vm1 " CP("20261201"), VS_ERROR_NOT_FOUND,
                      "Domain checkpoint not found: no domain checkpoint with matching name");
    g_assert_false(vs_checkpoint_usable(fx->vm, CP("20261201"), &why));
    g_assert_nonnull(strstr(why, "checkpoint " CP("20261201") " no longer exists"));
    g_clear_pointer(&why, g_free);

    /* Nothing kept: nothing to redefine, nothing to say, nothing asked. */
    g_assert_false(vs_checkpoint_redefine(fx->vm, CP("20261201"), repo, TAG, U1, &why));
    g_assert_null(why);

    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    g_assert_true(g_file_set_contents(file, saved, -1, NULL));
    /* A copy of a newer chain's checkpoint is not this one. */
    g_assert_false(vs_checkpoint_redefine(fx->vm, CP("20261130"), repo, TAG, U1, &why));
    g_assert_null(why);

    vs_fake_add_item(fx->fake, "checkpoint_redefine vm1", "ok");
    g_assert_true(vs_checkpoint_redefine(fx->vm, CP("20261201"), repo, TAG, U1, &why));
    g_assert_cmpstr(vs_fake_last_xml(fx->fake), ==, saved);

    vs_fake_add_error(fx->fake, "checkpoint_redefine vm1", VS_ERROR_LIBVIRT,
                      "invalid argument: parent checkpoint not found");
    g_assert_false(vs_checkpoint_redefine(fx->vm, CP("20261201"), repo, TAG, U1, &why));
    g_assert_nonnull(why);
    g_assert_true(g_str_has_suffix(why, "failed: invalid argument: parent checkpoint not found"));

    g_unlink(file);
    g_rmdir(dir);
    g_autofree char *parent = g_path_get_dirname(dir);
    g_rmdir(parent);
    g_rmdir(repo);
}

/* Only a backup job is aborted; none is nothing to do; a failed abort of a
 * job that is still there is an error naming domjobabort. */
static void
test_backup_job_abort(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "job_stats vm1", "none");
    g_assert_true(vs_backup_job_abort(fx->vm, "vm1", &err));

    /* A migration is somebody else's. */
    vs_fake_add_item(fx->fake, "job_stats vm1", "unbounded other");
    g_assert_true(vs_backup_job_abort(fx->vm, "vm1", &err));

    vs_fake_add_item(fx->fake, "job_stats vm1", "unbounded backup");
    vs_fake_add_item(fx->fake, "job_abort vm1", "ok");
    g_assert_true(vs_backup_job_abort(fx->vm, "vm1", &err));

    vs_fake_add_item(fx->fake, "job_stats vm1", "unbounded backup");
    vs_fake_add_error(fx->fake, "job_abort vm1", VS_ERROR_LIBVIRT, "operation failed: no job");
    vs_fake_add_item(fx->fake, "job_stats vm1", "unbounded backup");
    g_assert_false(vs_backup_job_abort(fx->vm, "vm1", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "backup-end: domain 'vm1': domjobabort: operation failed: no job");
    g_clear_error(&err);

    /* libvirt cannot say (a dead connection): never taken for "no job". */
    vs_fake_add_error(fx->fake, "job_stats vm1", VS_ERROR_LIBVIRT, "client socket is closed");
    vs_fake_add_error(fx->fake, "domain_state vm1", VS_ERROR_LIBVIRT, "client socket is closed");
    vs_fake_add_item(fx->fake, "domain_is_active vm1", "-1");
    vs_fake_add_error(fx->fake, "job_stats vm1", VS_ERROR_LIBVIRT, "client socket is closed");
    vs_fake_add_item(fx->fake, "conn_alive", "0");
    g_assert_false(vs_backup_job_abort(fx->vm, "vm1", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_CONNECTION);
    g_assert_cmpstr(err->message, ==, "backup-end: domain 'vm1': the connection to libvirtd closed "
                    "(libvirtd restarted or stopped): client socket is closed");
}

/* A push job that ended by itself: its own error is the backup's. */
static void
test_push_job_failed(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "job_stats vm1", "none");
    vs_fake_add_item(fx->fake, "domain_is_active vm1", "1");
    vs_fake_add_item(fx->fake, "job_stats vm1 completed", "failed backup No space left on device");
    g_assert_false(vs_push_job_wait(fx->vm, "vm1", NULL, NULL, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "backup-push: domain 'vm1': the push-mode backup job failed: "
                    "No space left on device");
    g_clear_error(&err);

    vs_fake_add_item(fx->fake, "job_stats vm1", "none");
    vs_fake_add_item(fx->fake, "domain_is_active vm1", "1");
    vs_fake_add_item(fx->fake, "job_stats vm1 completed", "completed backup");
    g_assert_true(vs_push_job_wait(fx->vm, "vm1", NULL, NULL, &err));
    g_assert_no_error(err);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, vs_fake_fixture_setup, fn, vs_fake_fixture_teardown)
    ADD("/checkpoint/retention", test_retention);
    ADD("/checkpoint/retention-gone-meanwhile", test_retention_gone_meanwhile);
    ADD("/checkpoint/chain-full", test_chain_full);
    ADD("/checkpoint/vanished", test_vanished_checkpoint);
    ADD("/backup-job/abort", test_backup_job_abort);
    ADD("/backup-job/push-failed", test_push_job_failed);
    return g_test_run();
}
