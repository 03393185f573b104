/* `virtsnap recover` (driver/recover.c) against the scripted control plane:
 * each test writes the journal a killed run would have left (with the typed
 * writers of journal-records.h) into a temp state directory, next to the real
 * files that run made (overlays, scratch files), lets the fake answer for
 * libvirt, and checks what a user sees afterwards: which files are still
 * there, whether the journal is gone (the run counts as recovered), and what
 * recover said. The rule every case leans on: a file goes only when a lookup
 * on a live connection says no domain uses it. */
#include "config.h"
#include "driver-internal.h"
#include "vs-backup.h"
#include "vs-xml.h"
#include "vs-temp.h"
#include "fake-control.h"

#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#define U1 VS_FAKE_U1

typedef struct {
    VsFakeFixture fx;
    char *dir;          /* temp: the state directory and the run's files */
    char *original;     /* DIR/vm1.img, below the overlay */
    char *overlay;      /* DIR/vm1.overlay-1.qcow2, virtsnap's */
    char *journal;      /* DIR/journal/run1.jsonl, once written */
    GPtrArray *actions; /* what recover said */
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
    vs_fake_fixture_setup(&f->fx, data);
    f->dir = g_dir_make_tmp("vs-recover-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->original = g_build_filename(f->dir, "vm1.img", NULL);
    f->overlay = g_build_filename(f->dir, "vm1.overlay-1.qcow2", NULL);
    f->journal = g_build_filename(f->dir, "journal", "run1.jsonl", NULL);
    f->actions = g_ptr_array_new_with_free_func(g_free);
    g_assert_true(g_file_set_contents(f->original, "the guest's disk", -1, NULL));
    g_assert_true(g_file_set_contents(f->overlay, "written after the snapshot", -1, NULL));
}

static void
teardown(Fixture *f, gconstpointer data)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);

    vs_fake_fixture_teardown(&f->fx, data);
    g_assert_cmpint(system(cmd), ==, 0);
    g_free(f->dir);
    g_free(f->original);
    g_free(f->overlay);
    g_free(f->journal);
    g_ptr_array_unref(f->actions);
}

/* The journal of run "run1" so far, closed as a killed run leaves it (no
 * lock held). */
static VsJournal *
journal_open(Fixture *f)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *repo = g_build_filename(f->dir, "repo", NULL);
    VsJournal *j = vs_journal_create(f->dir, "run1", &err);

    g_assert_no_error(err);
    g_assert_cmpstr(vs_journal_path(j), ==, f->journal);
    /* pid 0: no temp files of the run to look for in the repository */
    g_assert_true(vs_journal_begin_backup(j, "run1", repo, 0, &err));
    return j;
}

/* The run got as far as the overlay on vm1's vda (frozen and thawed again). */
static void
journal_overlay(Fixture *f)
{
    g_autoptr(GError) err = NULL;
    VsJournal *j = journal_open(f);

    g_assert_true(vs_journal_freeze(j, "vm1", U1, &err));
    g_assert_true(vs_journal_overlay(j, "vm1", U1, "vda", f->overlay, f->original, "raw", &err));
    g_assert_true(vs_journal_thawed(j, "vm1", U1, &err));
    g_assert_no_error(err);
    vs_journal_close(j);
}

/* vm1's definition with vda on TOP (above BELOW, if given); with a VNC
 * password, which only the secure XML shows. */
static char *
domain_xml(const char *top, const char *below)
{
    g_autofree char *backing = below
        ? g_strdup_printf("<backingStore type='file'><format type='raw'/><source file='%s'/>"
                          "<backingStore/></backingStore>", below)
        : g_strdup("");

    return g_strdup_printf("<domain type='kvm'><name>vm1</name><uuid>" U1 "</uuid><devices>"
                           "<disk type='file' device='disk'><driver name='qemu' type='%s'/>"
                           "<source file='%s'/>%s<target dev='vda' bus='virtio'/></disk>"
                           "<graphics type='vnc' passwd='s3cret'/></devices></domain>",
                           below ? "qcow2" : "raw", top, backing);
}

/* Makes the fixture's files a real chain (1 MiB raw original, a qcow2
 * overlay on it) and writes 0x5a into the overlay's first 4 KiB, as the
 * guest would after the snapshot. False (the test skipped) without qemu-img. */
static bool
real_chain(Fixture *f)
{
    g_autofree char *create = NULL, *overlay = NULL, *write = NULL;

    if (!g_find_program_in_path("qemu-img") || !g_find_program_in_path("qemu-io")) {
        g_test_skip("needs qemu-img and qemu-io");
        return false;
    }
    create = g_strdup_printf("qemu-img create -q -f raw '%s' 1M", f->original);
    overlay = g_strdup_printf("qemu-img create -q -f qcow2 -b '%s' -F raw '%s'", f->original,
                              f->overlay);
    write = g_strdup_printf("qemu-io -f qcow2 -c 'write -q -P 0x5a 0 4k' '%s'", f->overlay);
    g_assert_cmpint(g_unlink(f->overlay), ==, 0);
    g_assert_cmpint(system(create), ==, 0);
    g_assert_cmpint(system(overlay), ==, 0);
    g_assert_cmpint(system(write), ==, 0);
    return true;
}

/* Whether the original holds what the guest wrote into the overlay. */
static bool
original_has_writes(Fixture *f)
{
    g_autofree char *data = NULL;
    gsize len = 0;

    g_assert_true(g_file_get_contents(f->original, &data, &len, NULL));
    g_assert_cmpuint(len, ==, 1024 * 1024);
    for (gsize i = 0; i < 4096; i++)
        if (data[i] != 0x5a)
            return false;
    return data[4096] == 0;
}

/* What recover asks first (vs_link_new, vs_link_revive): the URI to reopen,
 * and whether the connection is alive. */
static void
expect_start(Fixture *f)
{
    vs_fake_add_item(f->fx.fake, "conn_uri", "test:///recover");
    vs_fake_add_item(f->fx.fake, "conn_alive", "1");
}

/* Recovers the runs that touched vm1 (as a backup of vm1 does first; without
 * UUIDS, recover also looks at restore --instant's mount registry). */
static bool
recover(Fixture *f, GError **error)
{
    const char *const uuids[] = { U1, NULL };

    return vs_recover(vs_fake_conn(f->fx.fake), f->dir, uuids, f->actions, error);
}

static bool
said(Fixture *f, const char *msg)
{
    for (guint i = 0; i < f->actions->len; i++)
        if (!strcmp(f->actions->pdata[i], msg))
            return true;
    for (guint i = 0; i < f->actions->len; i++)
        g_test_message("said: %s", (char *)f->actions->pdata[i]);
    return false;
}

/* vs_domain_uses_file, asked before a file goes: vm1 runs and is persistent,
 * and neither definition names the overlay any more; on a live connection. */
static void
expect_uses_file_none(Fixture *f)
{
    g_autofree char *xml = domain_xml(f->original, NULL);

    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_is_persistent vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 live", xml);
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 inactive", xml);
    vs_fake_add_item(f->fx.fake, "conn_alive", "1");
}

/* (a) Killed after the snapshot, vm1 still on the overlay: recover commits
 * it back (READY, then the pivot), removes the overlay file, and the run is
 * recovered (its journal gone). */
static void
test_overlay_committed_and_removed(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *on_overlay = domain_xml(f->overlay, f->original);
    g_autofree char *msg = g_strdup_printf("committed overlay %s back into %s and pivoted domain "
                                           "'vm1' disk vda", f->overlay, f->original);

    (void)data;
    journal_overlay(f);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 live", on_overlay);
    vs_fake_add_item(f->fx.fake, "block_job_info vm1 vda", "none");
    vs_fake_add_item(f->fx.fake, "block_commit vm1 vda", "ok");
    vs_fake_add_event(f->fx.fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    vs_fake_add_item(f->fx.fake, "block_job_abort vm1 vda pivot", "ok");
    vs_fake_add_item(f->fx.fake, "domain_state vm1", "running");
    expect_uses_file_none(f);
    g_assert_true(recover(f, &err));
    g_assert_no_error(err);
    g_assert_true(said(f, msg));
    g_assert_true(said(f, "recovered interrupted run run1"));
    g_assert_false(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->original, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (a'') Committed and pivoted, but the persistent definition still names
 * the overlay: the file stays (a domain that starts from that definition
 * would need it), and recover says why. */
static void
test_overlay_still_named_kept(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *on_overlay = domain_xml(f->overlay, f->original);
    g_autofree char *on_original = domain_xml(f->original, NULL);
    g_autofree char *msg = NULL;

    (void)data;
    journal_overlay(f);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 live", on_overlay);
    vs_fake_add_item(f->fx.fake, "block_job_info vm1 vda", "none");
    vs_fake_add_item(f->fx.fake, "block_commit vm1 vda", "ok");
    vs_fake_add_event(f->fx.fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    vs_fake_add_item(f->fx.fake, "block_job_abort vm1 vda pivot", "ok");
    vs_fake_add_item(f->fx.fake, "domain_state vm1", "running");
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_is_persistent vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 live", on_original);
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 inactive", on_overlay);
    g_assert_false(recover(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_FAILED);
    msg = g_strdup_printf("recover: domain 'vm1' still names %s (in its definition or below its "
                          "disk): kept", f->overlay);
    g_assert_cmpstr(err->message, ==, msg);
    g_assert_true(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (a''') vm1 was shut down meanwhile, still defined on the overlay: the
 * overlay is committed offline (qemu-img), the definition is pointed back at
 * the original (its secrets kept: it is redefined from the secure XML), and
 * the overlay file goes. */
static void
test_shut_off_committed_offline(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *on_overlay = domain_xml(f->overlay, f->original);
    g_autofree char *on_original = domain_xml(f->original, NULL);
    g_autoptr(VsDomainDef) def = NULL;
    VsDiskDef *d;

    (void)data;
    if (!real_chain(f))
        return;
    journal_overlay(f);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "0");
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 inactive", on_overlay);
    vs_fake_add_item(f->fx.fake, "domain_xml_secure vm1", on_overlay);
    vs_fake_add_item(f->fx.fake, "domain_define", "ok");
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "0");
    vs_fake_add_item(f->fx.fake, "domain_is_persistent vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 inactive", on_original);
    vs_fake_add_item(f->fx.fake, "conn_alive", "1");
    g_assert_true(recover(f, &err));
    g_assert_no_error(err);
    g_assert_true(original_has_writes(f));
    g_assert_false(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->journal, G_FILE_TEST_EXISTS));
    def = vs_domain_def_parse_string(vs_fake_last_xml(f->fx.fake), "redefined", &err);
    g_assert_no_error(err);
    d = vs_domain_def_find_disk(def, "vda");
    g_assert_cmpstr(d->src->path, ==, f->original);
    g_assert_cmpstr(d->src->format, ==, "raw");
    g_assert_null(d->src->backing);
    g_assert_nonnull(strstr(vs_fake_last_xml(f->fx.fake), "s3cret"));
}

/* (a'''') libvirt cannot say whether vm1 runs (domain_is_active -1): that is
 * no "shut off". A qemu-img commit of an overlay a running QEMU may write to
 * (only its image lock would stop it) and a redefinition are no answer to
 * it: the overlay and the journal stay, and recover fails. */
static void
test_state_unknown_keeps_overlay(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *msg = NULL;

    (void)data;
    if (!real_chain(f))
        return;
    journal_overlay(f);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "-1");
    g_assert_false(recover(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_CONNECTION);
    msg = g_strdup_printf("recover: domain 'vm1': libvirt cannot say whether it runs: its overlay "
                          "%s is kept (run `virtsnap recover` again)", f->overlay);
    g_assert_cmpstr(err->message, ==, msg);
    g_assert_true(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_false(original_has_writes(f));
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (a') The pivot is refused: the guest stays on its overlay, so the file
 * and the journal stay, for the next recover. */
static void
test_pivot_refused_keeps_overlay(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *on_overlay = domain_xml(f->overlay, f->original);

    (void)data;
    journal_overlay(f);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 live", on_overlay);
    vs_fake_add_item(f->fx.fake, "block_job_info vm1 vda", "none");
    vs_fake_add_item(f->fx.fake, "block_commit vm1 vda", "ok");
    vs_fake_add_event(f->fx.fake, "vm1", "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    vs_fake_add_error(f->fx.fake, "block_job_abort vm1 vda pivot", VS_ERROR_LIBVIRT,
                      "block copy still active");
    vs_fake_add_item(f->fx.fake, "block_job_abort vm1 vda", "ok");
    g_assert_false(recover(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_LIBVIRT);
    g_assert_cmpstr(err->message, ==, "commit: domain 'vm1' disk vda: pivot: block copy still "
                    "active");
    g_assert_true(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (b) vm1 was undefined meanwhile (a live connection says no such domain),
 * and its overlay does not name the journaled original as its backing file
 * (here: not a qcow2 at all): recover says so and keeps both files; there is
 * nothing left it could do, so the run counts as recovered. */
static void
test_domain_gone_files_kept(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *msg = NULL;

    (void)data;
    journal_overlay(f);
    expect_start(f);
    vs_fake_add_error(f->fx.fake, "domain_lookup_uuid " U1, VS_ERROR_NOT_FOUND,
                      "Domain not found: no domain with matching uuid '" U1 "'");
    vs_fake_add_item(f->fx.fake, "conn_alive", "1");
    g_assert_true(recover(f, &err));
    g_assert_no_error(err);
    msg = g_strdup_printf("domain 'vm1' no longer exists: its overlay %s is kept (it holds writes "
                          "made after the backup's snapshot; commit it into its backing file "
                          "with qemu-img commit)", f->overlay);
    g_assert_true(said(f, msg));
    g_assert_true(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->original, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (b') vm1 is gone, and its overlay names the journaled original as its
 * backing file: what the guest wrote after the snapshot is committed into the
 * original offline, and only then does the overlay go. */
static void
test_domain_gone_committed_offline(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    if (!real_chain(f))
        return;
    journal_overlay(f);
    expect_start(f);
    vs_fake_add_error(f->fx.fake, "domain_lookup_uuid " U1, VS_ERROR_NOT_FOUND, "Domain not found");
    vs_fake_add_item(f->fx.fake, "conn_alive", "1");
    g_assert_true(recover(f, &err));
    g_assert_no_error(err);
    g_assert_true(original_has_writes(f));
    g_assert_false(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (c) The connection is dead when recover looks vm1 up: its "no such domain"
 * proves nothing. No file is removed, the journal stays, recover fails with a
 * connection error. */
static void
test_dead_connection_keeps_files(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    journal_overlay(f);
    expect_start(f);
    vs_fake_add_error(f->fx.fake, "domain_lookup_uuid " U1, VS_ERROR_NOT_FOUND,
                      "Domain not found: no domain with matching uuid '" U1 "'");
    vs_fake_add_item(f->fx.fake, "conn_alive", "0");
    g_assert_false(recover(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_CONNECTION);
    g_assert_cmpstr(err->message, ==, "recover: domain 'vm1': Domain not found: no domain with "
                    "matching uuid '" U1 "'");
    g_assert_true(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (c') Any other failed lookup is no answer either, alive or not. */
static void
test_failed_lookup_keeps_files(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    journal_overlay(f);
    expect_start(f);
    vs_fake_add_error(f->fx.fake, "domain_lookup_uuid " U1, VS_ERROR_LIBVIRT,
                      "internal error: client socket is closed");
    g_assert_false(recover(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_CONNECTION);
    g_assert_cmpstr(err->message, ==, "recover: domain 'vm1': internal error: client socket is "
                    "closed");
    g_assert_true(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* The run was killed while vm1 was frozen (FREEZE, no THAWED). */
static void
journal_frozen(Fixture *f)
{
    g_autoptr(GError) err = NULL;
    VsJournal *j = journal_open(f);

    g_assert_true(vs_journal_freeze(j, "vm1", U1, &err));
    g_assert_no_error(err);
    vs_journal_close(j);
}

#define FROZEN "{\"return\":\"frozen\"}"
#define THAWED "{\"return\":\"thawed\"}"

/* (d) Killed while frozen: recover asks the agent, thaws, and believes it
 * only when the agent then says thawed. */
static void
test_frozen_thawed(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    journal_frozen(f);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "agent_command vm1 guest-fsfreeze-status", FROZEN);
    vs_fake_add_item(f->fx.fake, "fs_thaw vm1", "ok");
    vs_fake_add_item(f->fx.fake, "agent_command vm1 guest-fsfreeze-status", THAWED);
    g_assert_true(recover(f, &err));
    g_assert_no_error(err);
    g_assert_true(said(f, "thawed domain 'vm1'"));
    g_assert_false(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (d') The agent still says frozen after the thaw: recover fails, and the
 * journal stays so that the next recover (or backup) thaws again. */
static void
test_still_frozen_kept(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    journal_frozen(f);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "agent_command vm1 guest-fsfreeze-status", FROZEN);
    vs_fake_add_item(f->fx.fake, "fs_thaw vm1", "ok");
    vs_fake_add_item(f->fx.fake, "agent_command vm1 guest-fsfreeze-status", FROZEN);
    g_assert_false(recover(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_AGENT);
    g_assert_cmpstr(err->message, ==, "recover: domain 'vm1' may still be frozen: its agent still "
                    "says frozen (run `virtsnap recover` again once its agent answers)");
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (d''') libvirt cannot say whether vm1 runs: it may be running, frozen.
 * The journal (the only record of the freeze) stays, and recover fails. */
static void
test_frozen_state_unknown_kept(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    (void)data;
    journal_frozen(f);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "-1");
    g_assert_false(recover(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_CONNECTION);
    g_assert_cmpstr(err->message, ==, "recover: domain 'vm1' may still be frozen: libvirt cannot "
                    "say whether it runs (run `virtsnap recover` again)");
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (d'') Killed in the commit's frozen retry (method-overlay.c's
 * commit_frozen): the journal says FREEZE, THAWED (the snapshot's window),
 * then FREEZE again, and the guest is frozen now. The THAWED before it does
 * not cover the second freeze: recover thaws, then deals with the overlay
 * (here already committed and pivoted: only the file is left). */
static void
test_frozen_again_in_commit_thawed(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *on_original = domain_xml(f->original, NULL);
    VsJournal *j = journal_open(f);

    (void)data;
    g_assert_true(vs_journal_freeze(j, "vm1", U1, &err));
    g_assert_true(vs_journal_overlay(j, "vm1", U1, "vda", f->overlay, f->original, "raw", &err));
    g_assert_true(vs_journal_thawed(j, "vm1", U1, &err));
    g_assert_true(vs_journal_commit(j, "vm1", U1, "vda", f->overlay, &err));
    g_assert_true(vs_journal_freeze(j, "vm1", U1, &err));
    g_assert_no_error(err);
    vs_journal_close(j);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "agent_command vm1 guest-fsfreeze-status", FROZEN);
    vs_fake_add_item(f->fx.fake, "fs_thaw vm1", "ok");
    vs_fake_add_item(f->fx.fake, "agent_command vm1 guest-fsfreeze-status", THAWED);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 live", on_original);
    expect_uses_file_none(f);
    g_assert_true(recover(f, &err));
    g_assert_no_error(err);
    g_assert_true(said(f, "thawed domain 'vm1'"));
    g_assert_false(g_file_test(f->overlay, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* A pull-mode run (--mode=begin) that died after its backup job began: its
 * scratch files and socket directory, and checkpoint CHECKPOINT. */
static void
journal_backup_job(Fixture *f, char **scratch, char **sockets)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *file = NULL;
    VsJournal *j = journal_open(f);

    *scratch = g_build_filename(f->dir, "scratch", NULL);
    *sockets = g_build_filename(f->dir, "sockets", NULL);
    g_assert_cmpint(g_mkdir(*scratch, 0700), ==, 0);
    g_assert_cmpint(g_mkdir(*sockets, 0700), ==, 0);
    file = g_build_filename(*scratch, "vda.scratch", NULL);
    g_assert_true(g_file_set_contents(file, "", 0, NULL));
    g_assert_true(vs_journal_backup_job(j, "vm1", U1, "virtsnap-t-1", *sockets, *scratch, &err));
    g_assert_no_error(err);
    vs_journal_close(j);
}

/* (e) The run's job is over but its manifest was never written: the
 * checkpoint it created marks a backup that does not exist, and goes; so do
 * the scratch files. */
static void
test_leftover_checkpoint_deleted(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *scratch = NULL, *sockets = NULL;

    (void)data;
    journal_backup_job(f, &scratch, &sockets);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "job_stats vm1", "none");
    vs_fake_add_item(f->fx.fake, "checkpoint_xml vm1 virtsnap-t-1",
                     "<domaincheckpoint><name>virtsnap-t-1</name></domaincheckpoint>");
    vs_fake_add_item(f->fx.fake, "checkpoint_delete vm1 virtsnap-t-1", "ok");
    g_assert_true(recover(f, &err));
    g_assert_no_error(err);
    g_assert_true(said(f, "deleted checkpoint virtsnap-t-1 of the interrupted run from domain "
                       "'vm1'"));
    g_assert_false(g_file_test(scratch, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(sockets, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (e') Killed after its manifest was written: the checkpoint is the chain's
 * newest and stays (no checkpoint call at all). */
static void
test_checkpoint_of_written_backup_kept(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *scratch = NULL, *sockets = NULL;
    g_autofree char *backups = g_build_filename(f->dir, "repo", "backups", NULL);
    g_autofree char *manifest = g_build_filename(backups, "run1.json", NULL);

    (void)data;
    journal_backup_job(f, &scratch, &sockets);
    expect_start(f);
    g_assert_cmpint(g_mkdir_with_parents(backups, 0700), ==, 0);
    g_assert_true(g_file_set_contents(manifest, "{}", -1, NULL));
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "job_stats vm1", "none");
    g_assert_true(recover(f, &err));
    g_assert_no_error(err);
    g_assert_false(g_file_test(scratch, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (e'') The job's domain cannot be looked up on a dead connection: its job
 * may still run, so its scratch files stay. */
static void
test_backup_job_dead_connection_keeps_scratch(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *scratch = NULL, *sockets = NULL;

    (void)data;
    journal_backup_job(f, &scratch, &sockets);
    expect_start(f);
    vs_fake_add_error(f->fx.fake, "domain_lookup_uuid " U1, VS_ERROR_NOT_FOUND,
                      "Domain not found");
    vs_fake_add_item(f->fx.fake, "conn_alive", "0");
    g_assert_false(recover(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_CONNECTION);
    g_assert_true(g_file_test(scratch, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(sockets, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (e''') libvirt cannot say whether the job still runs (its statistics, the
 * domain's state and whether it is active all unanswered): QEMU may still
 * write to the scratch files, so they stay, and so does the journal. */
static void
test_backup_job_state_unknown_keeps_scratch(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *scratch = NULL, *sockets = NULL;

    (void)data;
    journal_backup_job(f, &scratch, &sockets);
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_error(f->fx.fake, "job_stats vm1", VS_ERROR_LIBVIRT, "Timed out during operation");
    vs_fake_add_error(f->fx.fake, "domain_state vm1", VS_ERROR_LIBVIRT, "Timed out during operation");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "-1");
    g_assert_false(recover(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_CONNECTION);
    g_assert_cmpstr(err->message, ==, "recover: domain 'vm1': libvirt cannot say whether its "
                    "backup job still runs: its files are kept");
    g_assert_true(g_file_test(scratch, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(sockets, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* An export killed while it built its image: the temp journal (no domain
 * in it) naming the temp file, which exists. Returns the file's path. */
static char *
journal_temp(Fixture *f)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *run = g_build_filename(f->dir, "run", NULL);
    VsJournal *j = vs_temp_journal_create(f->dir, "export", &err);
    char *path;

    g_assert_no_error(err);
    path = vs_temp_claim(j, f->dir, "vda.qcow2", &err);
    g_assert_no_error(err);
    g_assert_true(g_file_set_contents(path, "half an image", -1, NULL));
    g_free(f->journal);
    f->journal = g_strdup(vs_journal_path(j));
    vs_journal_close(j);
    /* restore --instant's mount registry, which a plain recover also reads:
     * empty, and not the host's */
    g_assert_cmpint(g_mkdir(run, 0700), ==, 0);
    g_setenv("VIRTSNAP_RUN_DIR", run, true);
    return path;
}

/* A plain `virtsnap recover` (every journal, then the mount registry). */
static bool
recover_all(Fixture *f, GError **error)
{
    return vs_recover(vs_fake_conn(f->fx.fake), f->dir, NULL, f->actions, error);
}

/* (f) The temp image of an interrupted export that no domain uses (vm1,
 * the only one, names its own disk): removed. */
static void
test_temp_removed(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = journal_temp(f);
    g_autofree char *msg = g_strdup_printf("removed %s, the temp image of an interrupted export "
                                           "or restore", path);

    (void)data;
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_list", "vm1");
    expect_uses_file_none(f);
    vs_fake_add_item(f->fx.fake, "conn_alive", "1");     /* before the mount registry */
    g_assert_true(recover_all(f, &err));
    g_assert_no_error(err);
    g_assert_true(said(f, msg));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

/* (f') The temp image is a disk of vm1 now (someone attached it): left
 * alone, and said so. */
static void
test_temp_in_use_left_alone(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = journal_temp(f);
    g_autofree char *on_temp = domain_xml(path, NULL);
    g_autofree char *msg = g_strdup_printf("left alone: %s, an image an interrupted run was "
                                           "building, is a disk of domain 'vm1' now", path);

    (void)data;
    expect_start(f);
    vs_fake_add_item(f->fx.fake, "domain_list", "vm1");
    vs_fake_add_item(f->fx.fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(f->fx.fake, "domain_is_active vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_is_persistent vm1", "1");
    vs_fake_add_item(f->fx.fake, "domain_xml vm1 live", on_temp);
    vs_fake_add_item(f->fx.fake, "conn_alive", "1");
    g_assert_true(recover_all(f, &err));
    g_assert_no_error(err);
    g_assert_true(said(f, msg));
    g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
}

/* (f'') libvirt cannot list the domains: the temp image stays, and so does
 * its journal; recover fails with a connection error. */
static void
test_temp_list_fails_kept(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = journal_temp(f);
    g_autofree char *msg = g_strdup_printf("recover: listing the domains that may use %s: "
                                           "internal error: client socket is closed", path);

    (void)data;
    expect_start(f);
    vs_fake_add_error(f->fx.fake, "domain_list", VS_ERROR_LIBVIRT,
                      "internal error: client socket is closed");
    vs_fake_add_item(f->fx.fake, "conn_alive", "1");
    g_assert_false(recover_all(f, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_CONNECTION);
    g_assert_cmpstr(err->message, ==, msg);
    g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(f->journal, G_FILE_TEST_EXISTS));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, setup, fn, teardown)
    ADD("/recover/overlay/committed-and-removed", test_overlay_committed_and_removed);
    ADD("/recover/overlay/still-named", test_overlay_still_named_kept);
    ADD("/recover/overlay/shut-off", test_shut_off_committed_offline);
    ADD("/recover/overlay/state-unknown", test_state_unknown_keeps_overlay);
    ADD("/recover/overlay/pivot-refused", test_pivot_refused_keeps_overlay);
    ADD("/recover/overlay/domain-gone", test_domain_gone_files_kept);
    ADD("/recover/overlay/domain-gone-committed", test_domain_gone_committed_offline);
    ADD("/recover/overlay/dead-connection", test_dead_connection_keeps_files);
    ADD("/recover/overlay/failed-lookup", test_failed_lookup_keeps_files);
    ADD("/recover/freeze/thawed", test_frozen_thawed);
    ADD("/recover/freeze/still-frozen", test_still_frozen_kept);
    ADD("/recover/freeze/state-unknown", test_frozen_state_unknown_kept);
    ADD("/recover/freeze/frozen-again-in-commit", test_frozen_again_in_commit_thawed);
    ADD("/recover/backup-job/checkpoint-deleted", test_leftover_checkpoint_deleted);
    ADD("/recover/backup-job/checkpoint-kept", test_checkpoint_of_written_backup_kept);
    ADD("/recover/backup-job/dead-connection", test_backup_job_dead_connection_keeps_scratch);
    ADD("/recover/backup-job/state-unknown", test_backup_job_state_unknown_keeps_scratch);
    ADD("/recover/temp/removed", test_temp_removed);
    ADD("/recover/temp/in-use", test_temp_in_use_left_alone);
    ADD("/recover/temp/list-fails", test_temp_list_fails_kept);
#undef ADD
    return g_test_run();
}
