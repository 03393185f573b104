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
 * not, the files left behind. */
#include "config.h"
#include "backup-internal.h"
#include "fake-control.h"
#include "vs-fault.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DISK_SIZE (2 * 1024 * 1024)

static const char *const uuids[] = {
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
};

typedef struct {
    char *dir;                   /* everything of the test, removed at teardown */
    char *repo, *state, *push_dir;
    VsFake *fake;
    virDomainPtr vm[3];
    char *disk[3];               /* the domain's image */
    char *ref[3];                /* its data, raw: what a backup must hold */
    bool qcow2;
} Fixture;

/* ------------------------------------------------------------------------- */
/* The guardian                                                               */

/* EXE guardian URI DEADLINE_MS AGENT_TIMEOUT STATE_DIR ID UUID...: armed at once
 * ("ready"), then whatever the backup says until end of file, written to
 * STATE_DIR/fake-guardian.log as one line ("freeze thawed" when all went
 * well). It thaws nothing: the tests check that the backup did. With
 * $FAKE_GUARDIAN_DIES set it dies before it is armed, as a guardian that
 * cannot open its connection does. */
static int
scripted_guardian(int argc, char **argv)
{
    g_autoptr(GString) heard = g_string_new(NULL);
    g_autofree char *log = NULL;
    g_autofree char *before = NULL;
    g_autofree char *text = NULL;
    char buf[64];
    ssize_t r;

    if (argc < 8)
        return 2;
    if (g_getenv("FAKE_GUARDIAN_DIES"))
        return 1;
    if (write(STDOUT_FILENO, "ready\n", 6) != 6)
        return 1;
    close(STDOUT_FILENO);
    while ((r = read(STDIN_FILENO, buf, sizeof buf)) > 0)
        g_string_append_len(heard, buf, r);
    g_strdelimit(heard->str, "\n", ' ');
    g_strstrip(heard->str);
    log = g_build_filename(argv[5], "fake-guardian.log", NULL);
    (void)g_file_get_contents(log, &before, NULL, NULL);
    text = g_strdup_printf("%s%s %d\n", before ? before : "", heard->str, argc - 7);
    return g_file_set_contents(log, text, -1, NULL) ? 0 : 1;
}

static char *
guardian_log(Fixture *fx)
{
    g_autofree char *path = g_build_filename(fx->state, "fake-guardian.log", NULL);
    char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return g_strdup("");
    return text;
}

/* ------------------------------------------------------------------------- */
/* Domains and their disks                                                    */

static void
run_tool(const char *const *argv)
{
    g_autofree char *err = NULL;
    int status = 0;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                               G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                               NULL, &err, &status, NULL));
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("%s failed: %s", argv[0], err);
}

/* Domain I's data: a pattern of its own, with a hole, so that each disk's
 * chunks are its own. */
static void
make_disk(Fixture *fx, int i)
{
    g_autofree guint8 *data = g_malloc0(DISK_SIZE);
    g_autofree char *name = g_strdup_printf("vm%d.img", i + 1);

    for (size_t k = 0; k < DISK_SIZE; k++)
        data[k] = k >= DISK_SIZE / 4 && k < DISK_SIZE / 2 ? 0 : (guint8)(k * (i + 3) + k / 4099);
    fx->ref[i] = g_build_filename(fx->dir, name, NULL);
    g_assert_true(g_file_set_contents(fx->ref[i], (const char *)data, DISK_SIZE, NULL));
    if (!fx->qcow2) {
        fx->disk[i] = g_strdup(fx->ref[i]);
        return;
    }
    fx->disk[i] = g_strdup_printf("%s.qcow2", fx->ref[i]);
    run_tool((const char *const[]){ "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
                                     fx->ref[i], fx->disk[i], NULL });
}

/* Domain I's XML with its disk on SOURCE (NULL: its own image). */
static char *
domain_xml(Fixture *fx, int i, const char *source)
{
    return g_strdup_printf(
        "<domain type='kvm'><name>vm%d</name><uuid>%s</uuid><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='%s'/>"
        "<source file='%s'/><target dev='vda' bus='virtio'/></disk>"
        "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' "
        "state='connected'/></channel></devices></domain>",
        i + 1, uuids[i], source ? "qcow2" : fx->qcow2 ? "qcow2" : "raw",
        source ? source : fx->disk[i]);
}

/* What discovery would have found of domain I: running, with an agent, its
 * one disk a local file. */
static VsDiscoveredDomain *
discovered(Fixture *fx, int i)
{
    VsDiscoveredDomain *d = g_new0(VsDiscoveredDomain, 1);
    VsDiscoveredDisk *disk = g_new0(VsDiscoveredDisk, 1);

    d->name = g_strdup_printf("vm%d", i + 1);
    d->uuid = g_strdup(uuids[i]);
    d->state = g_strdup("running");
    d->id = i + 1;
    d->persistent = true;
    d->agent = VS_AGENT_RESPONDING;
    d->xml = domain_xml(fx, i, NULL);
    d->def = vs_domain_def_parse_string(d->xml, d->name, NULL);
    g_assert_nonnull(d->def);
    d->problems = g_ptr_array_new_with_free_func((GDestroyNotify)vs_problem_free);
    d->disks = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_disk_free);
    disk->target = g_strdup("vda");
    disk->device = g_strdup("disk");
    disk->type = g_strdup("file");
    disk->format = g_strdup(fx->qcow2 ? "qcow2" : "raw");
    disk->path = g_strdup(fx->disk[i]);
    disk->pool_type = g_strdup("none");
    disk->iscsi_lun = -1;
    disk->chain = g_ptr_array_new();
    disk->chain_complete = true;
    g_ptr_array_add(d->disks, disk);
    return d;
}

static void
setup(Fixture *fx, gconstpointer data)
{
    g_autofree char *locks = NULL, *run = NULL;

    fx->qcow2 = GPOINTER_TO_INT(data);
    fx->dir = g_dir_make_tmp("vs-backup-run-XXXXXX", NULL);
    fx->repo = g_build_filename(fx->dir, "repo", NULL);
    fx->state = g_build_filename(fx->dir, "state", NULL);
    fx->push_dir = g_build_filename(fx->dir, "push", NULL);
    g_assert_cmpint(g_mkdir(fx->push_dir, 0700), ==, 0);
    locks = g_build_filename(fx->dir, "locks", NULL);
    run = g_build_filename(fx->dir, "run", NULL);
    g_setenv("VIRTSNAP_LOCK_DIR", locks, TRUE);
    g_setenv("VIRTSNAP_RUN_DIR", run, TRUE);
    g_unsetenv("VIRTSNAP_FAULT");
    fx->fake = vs_fake_new();
    for (int i = 0; i < 3; i++) {
        g_autofree char *name = g_strdup_printf("vm%d", i + 1);
        fx->vm[i] = vs_fake_domain(fx->fake, name, uuids[i]);
        make_disk(fx, i);
    }
}

static void
teardown(Fixture *fx, gconstpointer data)
{
    const char *argv[] = { "rm", "-rf", fx->dir, NULL };

    (void)data;
    g_unsetenv("VIRTSNAP_FAULT");
    g_unsetenv("FAKE_GUARDIAN_DIES");
    vs_fake_finish(fx->fake);
    run_tool(argv);
    for (int i = 0; i < 3; i++) {
        g_free(fx->disk[i]);
        g_free(fx->ref[i]);
    }
    g_free(fx->repo); g_free(fx->state); g_free(fx->push_dir); g_free(fx->dir);
}

static void
options(Fixture *fx, VsBackupOptions *o)
{
    vs_backup_options_init(o);
    o->repo_path = fx->repo;
    o->init_repo = true;
    o->state_dir = fx->state;
    o->uri = "test:///fake";
    o->copy_nice = 0;
    o->agent_timeout = 1;
}

/* Backs up the domains of N (indexes, -1 ends) with O. */
static VsBackupResult *
backup(Fixture *fx, const int *n, const VsBackupOptions *o, GError **error)
{
    GPtrArray *doms = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_domain_free);

    for (; *n >= 0; n++)
        g_ptr_array_add(doms, discovered(fx, *n));
    return backup_run_discovered(vs_fake_conn(fx->fake), doms, o, error);
}

/* ------------------------------------------------------------------------- */
/* What the run asks of libvirt, step by step                                 */

static void
add(Fixture *fx, const char *reply, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
add(Fixture *fx, const char *reply, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *call = NULL;

    va_start(ap, fmt);
    call = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    vs_fake_add_item(fx->fake, call, reply);
}

/* The overlay the run made beside domain I's disk (its name has the run's
 * id), or NULL. */
static char *
find_overlay(Fixture *fx, int i)
{
    g_autofree char *base = g_path_get_basename(fx->disk[i]);
    g_autofree char *prefix = g_strdup_printf("%s.virtsnap-", base);
    g_autoptr(GDir) dir = g_dir_open(fx->dir, 0, NULL);
    const char *name;

    while ((name = g_dir_read_name(dir)))
        if (g_str_has_prefix(name, prefix))
            return g_build_filename(fx->dir, name, NULL);
    return NULL;
}

typedef struct {
    Fixture *fx;
    int i;
} DomRef;

static DomRef refs[3];

/* The live XML of domain I while its disk runs on this run's overlay. */
static char *
reply_on_overlay(const char *call, gpointer data)
{
    DomRef *r = data;
    g_autofree char *overlay = find_overlay(r->fx, r->i);

    (void)call;
    g_assert_nonnull(overlay);
    return domain_xml(r->fx, r->i, overlay);
}

/* The plan of domain I: found, running, its persistent definition kept. */
static void
expect_plan(Fixture *fx, int i)
{
    g_autofree char *name = g_strdup_printf("vm%d", i + 1);
    g_autofree char *xml = domain_xml(fx, i, NULL);

    add(fx, name, "domain_lookup_uuid %s", uuids[i]);
    add(fx, "running", "domain_state vm%d", i + 1);
    add(fx, xml, "domain_xml vm%d inactive", i + 1);
}

/* vs_domain_uses_file of domain I, whose definitions name only its image. */
static void
expect_uses_nothing(Fixture *fx, int i)
{
    g_autofree char *name = g_strdup_printf("vm%d", i + 1);
    g_autofree char *xml = domain_xml(fx, i, NULL);

    add(fx, name, "domain_lookup_uuid %s", uuids[i]);
    add(fx, "1", "domain_is_active vm%d", i + 1);
    add(fx, "1", "domain_is_persistent vm%d", i + 1);
    add(fx, xml, "domain_xml vm%d live", i + 1);
    add(fx, xml, "domain_xml vm%d inactive", i + 1);
    add(fx, "1", "conn_alive");
}

/* Domain I's overlay committed back: the disk on the overlay, no leftover
 * job, the commit, READY, the pivot, the disk on its image again, the
 * overlay named by nothing (then removed), the guest not paused. */
static void
expect_commit(Fixture *fx, int i)
{
    g_autofree char *xml = domain_xml(fx, i, NULL);
    g_autofree char *name = g_strdup_printf("vm%d", i + 1);
    g_autofree char *call = g_strdup_printf("domain_xml vm%d live", i + 1);

    refs[i] = (DomRef){ fx, i };
    add(fx, "1", "conn_alive");
    add(fx, "1", "domain_is_active vm%d", i + 1);
    add(fx, "1", "conn_alive");
    vs_fake_add_item_func(fx->fake, call, reply_on_overlay, &refs[i]);
    add(fx, "none", "block_job_info vm%d vda", i + 1);
    add(fx, "ok", "block_commit vm%d vda", i + 1);
    vs_fake_add_event(fx->fake, name, "vda", VIR_DOMAIN_BLOCK_JOB_READY);
    add(fx, "ok", "block_job_abort vm%d vda pivot", i + 1);
    add(fx, xml, "domain_xml vm%d live", i + 1);
    expect_uses_nothing(fx, i);
    add(fx, "1", "conn_alive");
    add(fx, "running", "domain_state vm%d", i + 1);
}

/* ------------------------------------------------------------------------- */
/* What a user checks                                                         */

/* D's notes, joined as the tool prints them (a new string). */
static char *
notes_of(const VsBackupDomainResult *d)
{
    g_autoptr(GPtrArray) v = g_ptr_array_new();

    for (guint k = 0; d->notes && k < d->notes->len; k++)
        g_ptr_array_add(v, d->notes->pdata[k]);
    g_ptr_array_add(v, NULL);
    return g_strjoinv("; ", (char **)v->pdata);
}

static VsBackupDomainResult *
result_of(VsBackupResult *r, int i)
{
    g_autofree char *name = g_strdup_printf("vm%d", i + 1);

    for (guint k = 0; k < r->domains->len; k++) {
        VsBackupDomainResult *d = r->domains->pdata[k];
        if (!g_strcmp0(d->name, name))
            return d;
    }
    return NULL;
}

/* Backup ID holds exactly the domains of IN (-1 ends), verified, each disk
 * read back equal to its domain's data; the others are not in it. */
static void
assert_backup(Fixture *fx, const char *id, const int *in)
{
    g_autoptr(VsRepo) repo = vs_repo_open(fx->repo, false, false, 0, NULL);
    g_autoptr(VsManifest) m = NULL;
    g_autoptr(GPtrArray) problems = NULL;
    guint n = 0;

    g_assert_nonnull(repo);
    g_assert_nonnull(id);
    m = vs_repo_load_manifest(repo, id, NULL);
    g_assert_nonnull(m);
    g_assert_true(vs_repo_verify(repo, id, &problems, NULL, NULL));
    g_assert_true(!problems || problems->len == 0);
    for (; *in >= 0; in++, n++) {
        g_autofree char *name = g_strdup_printf("vm%d", *in + 1);
        g_autofree char *out = g_build_filename(fx->dir, "exported.raw", NULL);
        g_autofree char *got = NULL, *want = NULL;
        gsize got_len = 0, want_len = 0;

        g_assert_nonnull(vs_manifest_find_domain(m, name));
        g_unlink(out);
        g_assert_true(vs_repo_export_disk(repo, m, name, "vda", out, "raw", NULL));
        g_assert_true(g_file_get_contents(out, &got, &got_len, NULL));
        g_assert_true(g_file_get_contents(fx->ref[*in], &want, &want_len, NULL));
        g_assert_cmpmem(got, got_len, want, want_len);
        g_unlink(out);
    }
    g_assert_cmpuint(m->domains->len, ==, n);
}

/* No journal left in the state directory: nothing for recover. */
static void
assert_no_journal(Fixture *fx)
{
    g_auto(GStrv) journals = vs_journal_list(fx->state);

    g_assert_cmpuint(g_strv_length(journals), ==, 0);
}

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
    ADD("/backup-run/guardian-dies", test_guardian_dies, 0);
    ADD("/backup-run/incremental-base-vanished", test_incremental_base_vanished, 1);
    return g_test_run();
}
