/* A whole backup run (vs_backup_run's pipeline, driver/backup*.c and
 * method-*.c) against the scripted control plane: a real repository in a
 * temporary directory, real disk images (raw files, a qcow2 made by
 * qemu-img), real overlays, journal and push targets; only libvirt's side is
 * the fake's, each call in the order the run must make it (unordered only
 * among the per-domain threads of the frozen window, where the groups still
 * prove every freeze before any snapshot and every snapshot before any thaw).
 * The guardian is this program run again as `guardian ...` (scripted_guardian):
 * it speaks guardian.c's pipe protocol and writes down what it heard. The
 * domains are handed in as discovered (backup_run_discovered): discovery
 * resolves storage through libvirt's pool and volume calls, which are not on
 * the control plane. Each test checks what a user would: which domains are in
 * the backup, their data read back, the error and notes of those that are
 * not, the files left behind. The fixture is backup-fixture.c's. */
#include "config.h"
#include "backup-fixture.h"
#include "vs-fault.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* The tests                                                                  */

/* The snapshot of domain 2 of 3 fails: 1 and 3 are backed up (frozen,
 * snapshotted, thawed, committed back and pivoted, in that order for the
 * group), 2 fails with libvirt's error and leaves nothing (its overlay,
 * made before the freeze, removed once libvirt says nothing names it). */
static void
test_snapshot_fails_mid_group(Fixture *fx, gconstpointer data)
{
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *glog = NULL;
    VsBackupOptions o;
    VsBackupDomainResult *d2;

    (void)data;
    options(fx, &o);
    for (int i = 0; i < 3; i++)
        expect_plan(fx, i);
    vs_fake_any_order_begin(fx->fake);
    for (int i = 0; i < 3; i++)
        add(fx, "ok", "fs_freeze vm%d", i + 1);
    vs_fake_any_order_end(fx->fake);
    vs_fake_any_order_begin(fx->fake);
    for (int i = 0; i < 3; i++)
        add(fx, "1", "domain_is_active vm%d", i + 1);
    add(fx, "ok", "snapshot_create vm1");
    vs_fake_add_error(fx->fake, "snapshot_create vm2", VS_ERROR_LIBVIRT,
                      "internal error: unable to execute QEMU command 'transaction': "
                      "Could not open overlay");
    add(fx, "ok", "snapshot_create vm3");
    vs_fake_any_order_end(fx->fake);
    vs_fake_any_order_begin(fx->fake);
    for (int i = 0; i < 3; i++)
        add(fx, "ok", "fs_thaw vm%d", i + 1);
    vs_fake_any_order_end(fx->fake);
    /* Domain 2, not snapshotted: its overlay goes once libvirt says unused. */
    add(fx, "1", "conn_alive");
    expect_uses_nothing(fx, 1);
    expect_commit(fx, 0);
    expect_commit(fx, 2);

    r = backup(fx, (const int[]){ 0, 1, 2, -1 }, &o, &err);
    g_assert_no_error(err);
    g_assert_nonnull(r);
    g_assert_true(result_of(r, 0)->ok);
    g_assert_cmpstr(result_of(r, 0)->consistency, ==, "quiesced");
    g_assert_true(result_of(r, 2)->ok);
    d2 = result_of(r, 1);
    g_assert_false(d2->ok);
    g_assert_nonnull(strstr(d2->error->message, "snapshot: domain 'vm2': internal error: unable to "
                                       "execute QEMU command 'transaction'"));
    assert_backup(fx, r->id, (const int[]){ 0, 2, -1 });
    for (int i = 0; i < 3; i++) {
        g_autofree char *overlay = find_overlay(fx, i);
        g_assert_null(overlay);
    }
    assert_no_journal(fx);
    /* Armed for all three, told that all were thawed. */
    glog = guardian_log(fx);
    g_assert_cmpstr(glog, ==, "freeze thawed 3\n");
}

/* The journal cannot record the freeze of domain 2: domain 2 is not frozen
 * (nothing could undo a freeze the journal does not know of), fails saying
 * why, and leaves nothing; domain 1 is backed up as usual. */
static void
test_journal_fails_before_freeze(Fixture *fx, gconstpointer data)
{
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *glog = NULL;
    VsBackupOptions o;
    VsBackupDomainResult *d2;

    (void)data;
    options(fx, &o);
    g_setenv("VIRTSNAP_FAULT", "fail:journal-freeze:vm2", TRUE);
    expect_plan(fx, 0);
    expect_plan(fx, 1);
    add(fx, "ok", "fs_freeze vm1");
    add(fx, "1", "domain_is_active vm1");
    add(fx, "ok", "snapshot_create vm1");
    add(fx, "ok", "fs_thaw vm1");
    add(fx, "1", "conn_alive");
    expect_commit(fx, 0);

    r = backup(fx, (const int[]){ 0, 1, -1 }, &o, &err);
    g_assert_no_error(err);
    g_assert_true(result_of(r, 0)->ok);
    d2 = result_of(r, 1);
    g_assert_false(d2->ok);
    g_assert_nonnull(strstr(d2->error->message, "journal: writing "));
    g_assert_nonnull(strstr(d2->error->message, "injected fault journal-freeze"));
    assert_backup(fx, r->id, (const int[]){ 0, -1 });
    for (int i = 0; i < 2; i++) {
        g_autofree char *overlay = find_overlay(fx, i);
        g_assert_null(overlay);
    }
    assert_no_journal(fx);
    /* The fake saw no fs_freeze of vm2; the guardian was told all thawed. */
    glog = guardian_log(fx);
    g_assert_cmpstr(glog, ==, "freeze thawed 2\n");
}

/* The thaw of domain 1 fails: the guardian is not told "thawed" (end of file
 * makes it thaw at once) and its verdict is what the journal keeps; the
 * domain fails with the thaw's error all the same (its freeze outlasted what
 * virtsnap controls), and its overlay is committed back as usual: nothing is
 * left, frozen or on an overlay. */
static void
test_thaw_fails(Fixture *fx, gconstpointer data)
{
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *glog = NULL, *note = NULL;
    VsBackupOptions o;
    VsBackupDomainResult *d;

    (void)data;
    options(fx, &o);
    o.retry_count = 0;      /* a thaw that fails for good (test_retried: one that passes) */
    expect_plan(fx, 0);
    add(fx, "ok", "fs_freeze vm1");
    add(fx, "1", "domain_is_active vm1");
    add(fx, "ok", "snapshot_create vm1");
    vs_fake_add_error(fx->fake, "fs_thaw vm1", VS_ERROR_LIBVIRT,
                      "Guest agent is not responding: QEMU guest agent is not connected");
    vs_fake_add_error(fx->fake, "agent_command vm1 guest-fsfreeze-thaw", VS_ERROR_LIBVIRT,
                      "Guest agent is not responding: QEMU guest agent is not connected");
    add(fx, "1", "conn_alive");
    expect_commit(fx, 0);

    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    d = result_of(r, 0);
    g_assert_false(d->ok);
    g_assert_nonnull(strstr(d->error->message, "thaw: domain 'vm1': Guest agent is not responding"));
    g_assert_nonnull(strstr(d->error->message, "the guardian tries again at once"));
    note = notes_of(d);
    g_assert_nonnull(strstr(note, "the guardian confirmed it thawed"));
    g_assert_null(r->id);
    {
        g_autofree char *overlay = find_overlay(fx, 0);
        g_assert_null(overlay);
    }
    assert_no_journal(fx);
    /* Armed, then end of file without "thawed": the guardian's cue to thaw. */
    glog = guardian_log(fx);
    g_assert_cmpstr(glog, ==, "freeze 1\n");
}

/* KVM_CMD_RETRY_COUNT: the persistent XML read fails twice and the thaw
 * once, each with an error that may pass; both are tried again and succeed,
 * the domain is backed up quiesced, and each retried step is one note. */
static void
test_retried(Fixture *fx, gconstpointer data)
{
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *glog = NULL, *note = NULL, *xml = domain_xml(fx, 0, NULL);
    VsBackupOptions o;
    VsBackupDomainResult *d;

    (void)data;
    options(fx, &o);
    g_assert_cmpint(o.retry_count, ==, 3);
    add(fx, "vm1", "domain_lookup_uuid 11111111-1111-1111-1111-111111111111");
    add(fx, "running", "domain_state vm1");
    add(fx, "none", "job_stats vm1");
    for (int i = 0; i < 2; i++)
        vs_fake_add_error(fx->fake, "domain_xml vm1 inactive", VS_ERROR_LIBVIRT,
                          "Timed out during operation: cannot acquire state change lock");
    add(fx, xml, "domain_xml vm1 inactive");
    add(fx, "ok", "fs_freeze vm1");
    add(fx, "1", "domain_is_active vm1");
    add(fx, "ok", "snapshot_create vm1");
    vs_fake_add_error(fx->fake, "fs_thaw vm1", VS_ERROR_LIBVIRT, "Guest agent is not responding");
    vs_fake_add_error(fx->fake, "agent_command vm1 guest-fsfreeze-thaw", VS_ERROR_LIBVIRT,
                      "Guest agent is not responding");
    add(fx, "1", "conn_alive");
    add(fx, "ok", "fs_thaw vm1");
    expect_commit(fx, 0);

    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    d = result_of(r, 0);
    g_assert_true(d->ok);
    g_assert_cmpstr(d->consistency, ==, "quiesced");
    note = notes_of(d);
    g_test_message("notes: %s", note);
    g_assert_nonnull(strstr(note, "reading the persistent XML: retried 2 time(s) (KVM_CMD_RETRY_COUNT=3) after: "
                                  "Timed out during operation"));
    g_assert_nonnull(strstr(note, "thaw: retried 1 time(s)"));
    assert_backup(fx, r->id, (const int[]){ 0, -1 });
    assert_no_journal(fx);
    glog = guardian_log(fx);
    g_assert_cmpstr(glog, ==, "freeze thawed 1\n");
}

/* The guardian dies before it is armed: nothing is frozen or snapshotted,
 * each running domain fails saying so, and the overlays made for the
 * snapshot go once libvirt says nothing names them. */
static void
test_guardian_dies(Fixture *fx, gconstpointer data)
{
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    VsBackupOptions o;

    (void)data;
    options(fx, &o);
    g_setenv("FAKE_GUARDIAN_DIES", "1", TRUE);
    expect_plan(fx, 0);
    expect_plan(fx, 1);
    expect_uses_nothing(fx, 0);
    expect_uses_nothing(fx, 1);

    r = backup(fx, (const int[]){ 0, 1, -1 }, &o, &err);
    g_assert_no_error(err);
    for (int i = 0; i < 2; i++) {
        VsBackupDomainResult *d = result_of(r, i);
        g_autofree char *overlay = find_overlay(fx, i);

        g_assert_false(d->ok);
        g_assert_nonnull(strstr(d->error->message, "guardian: did not arm"));
        g_assert_nonnull(strstr(d->error->message, "nothing was frozen"));
        g_assert_null(overlay);
    }
    g_assert_null(r->id);
    assert_no_journal(fx);
}

/* ------------------------------------------------------------------------- */
/* A push-mode backup job of domain 1 (qcow2), its base's checkpoint gone     */

static char *
find_push_target(Fixture *fx)
{
    g_autoptr(GDir) dir = g_dir_open(fx->push_dir, 0, NULL);
    const char *name = dir ? g_dir_read_name(dir) : NULL;

    g_assert_nonnull(name);
    return g_build_filename(fx->push_dir, name, "vda.qcow2", NULL);
}

/* What QEMU does for a push job: the disk's point in time into our qcow2. */
static char *
reply_push(const char *call, gpointer data)
{
    Fixture *fx = data;
    g_autofree char *target = find_push_target(fx);

    (void)call;
    g_assert_true(g_file_test(target, G_FILE_TEST_EXISTS));
    run_tool((const char *const[]){ "qemu-img", "convert", "-q", "-f", "qcow2", "-O", "qcow2",
                                     fx->disk[0], target, NULL });
    return g_strdup("ok");
}

/* The checkpoint's description, named as the call asked. */
static char *
reply_checkpoint(const char *call, gpointer data)
{
    const char *name = strrchr(call, ' ') + 1;

    (void)data;
    return g_strdup_printf("<domaincheckpoint><name>%s</name><disks><disk name='vda' "
                           "checkpoint='bitmap'/></disks></domaincheckpoint>", name);
}

/* A push job from its begin to the checkpoints' upkeep; BASE_CP: the
 * checkpoint the plan finds gone, NULL for a full backup. */
static void
expect_push_run(Fixture *fx, const char *base_cp, const char *tag)
{
    g_autofree char *info = g_strdup_printf("%d %d", DISK_SIZE, DISK_SIZE);
    g_autofree char *save = g_strdup_printf("checkpoint_xml vm1 virtsnap-%s-*", tag);

    expect_plan(fx, 0);
    if (base_cp) {
        g_autofree char *call = g_strdup_printf("checkpoint_xml vm1 %s", base_cp);
        vs_fake_add_error(fx->fake, call, VS_ERROR_NOT_FOUND,
                          "Domain checkpoint not found: no domain checkpoint with matching name");
        vs_fake_add_error(fx->fake, "checkpoint_redefine vm1", VS_ERROR_LIBVIRT,
                          "operation failed: missing bitmap in image");
    }
    add(fx, info, "block_info vm1 vda");
    vs_fake_add_item_func(fx->fake, "backup_begin vm1", reply_push, fx);
    add(fx, "1", "conn_alive");
    add(fx, "none", "job_stats vm1");
    add(fx, "1", "domain_is_active vm1");
    add(fx, "completed backup", "job_stats vm1 completed");
    add(fx, "1", "conn_alive");
    add(fx, "running", "domain_state vm1");
    add(fx, "", "checkpoint_list vm1");
    vs_fake_add_item_func(fx->fake, save, reply_checkpoint, NULL);
}

/* --level=inc whose base checkpoint vanished from libvirt (and cannot be
 * redefined from the repository's copy): a full backup, with a note saying
 * why, its data verified. */
static void
test_incremental_base_vanished(Fixture *fx, gconstpointer data)
{
    g_autoptr(VsBackupResult) first = NULL, r = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *tag = NULL, *base_cp = NULL, *note = NULL;
    VsBackupOptions o;
    VsBackupDomainResult *d;

    (void)data;
    {
        g_autoptr(VsRepo) repo = vs_repo_open(fx->repo, true, true, 0, NULL);
        g_assert_nonnull(repo);
        tag = vs_repo_tag(repo);
    }
    options(fx, &o);
    o.quiesce = VS_QUIESCE_OFF;
    o.mode = VS_BACKUP_METHOD_BEGIN;
    o.push_dir = fx->push_dir;
    o.level = VS_BACKUP_LEVEL_FULL;
    expect_push_run(fx, NULL, tag);
    first = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    g_assert_true(result_of(first, 0)->ok);
    base_cp = vs_checkpoint_name(tag, first->id);

    /* The checkpoint vanished; its copy in the repository is refused. */
    o.level = VS_BACKUP_LEVEL_INC;
    expect_push_run(fx, base_cp, tag);
    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    d = result_of(r, 0);
    g_assert_true(d->ok);
    g_assert_cmpstr(d->level, ==, "full");
    g_assert_null(d->base);
    note = notes_of(d);
    g_test_message("note: %s", note);
    g_assert_nonnull(strstr(note, "full backup: the last backup"));
    g_assert_nonnull(strstr(note, "cannot be the base: checkpoint"));
    g_assert_nonnull(strstr(note, "no longer exists"));
    g_assert_nonnull(strstr(note, "missing bitmap in image"));
    assert_backup(fx, r->id, (const int[]){ 0, -1 });
    assert_no_journal(fx);
}

int
main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "guardian"))
        return scripted_guardian(argc, argv);
    /* As virtsnap does (tools/virtsnap.c): a guardian that died is an error
     * on its pipe, not the end of the backup. */
    signal(SIGPIPE, SIG_IGN);
    g_test_init(&argc, &argv, NULL);
#define ADD(path, func, data) \
    g_test_add(path, Fixture, GINT_TO_POINTER(data), setup, func, teardown)
    ADD("/backup-run/snapshot-fails-mid-group", test_snapshot_fails_mid_group, 0);
    ADD("/backup-run/journal-fails-before-freeze", test_journal_fails_before_freeze, 0);
    ADD("/backup-run/thaw-fails", test_thaw_fails, 0);
    ADD("/backup-run/retried", test_retried, 0);
    ADD("/backup-run/guardian-dies", test_guardian_dies, 0);
    ADD("/backup-run/incremental-base-vanished", test_incremental_base_vanished, 1);
    return g_test_run();
}
