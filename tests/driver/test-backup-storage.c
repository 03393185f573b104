/* `backup --storage-snapshot` (driver/method-storage.c) as a whole run against
 * the scripted control plane, with backup-fixture.c's domains, disks and
 * repository, and a real hook provider: a shell script (hook.sh) that plays
 * an array by copying the disk file into a snapshot directory (create: cp and
 * handle=...; expose: path=...; delete: rm; exists), named by a snapshot
 * configuration file (provider=hook, hook=, hook-config=) as an administrator
 * writes one. The hook and the fake's replies write one shared log, so the
 * tests see the order of the steps across both: the freeze, the overlays'
 * snapshot and the thaw, then the storage snapshot of each disk, then the
 * overlays committed, then the copy (the hook's expose), then the delete. The
 * commit writes into the live disk what the guest wrote meanwhile, so a
 * backup that read the live disk instead of the snapshot differs from the
 * point in time. Each test checks what a user would: the data in the
 * repository, the snapshots left in the directory, the result's per disk
 * snapshot record, the errors and the journal. */
#include "config.h"
#include "backup-fixture.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a commit brings back into the base: the guest's writes after the
 * point in time, over the first 64 KiB. */
#define WRITTEN_AFTER 0xee
#define WRITTEN_LEN (64 * 1024)

static const char hook_script[] =
    "#!/bin/sh\n"
    "# A storage array for the tests: a snapshot is a copy of the disk file.\n"
    ". \"$VIRTSNAP_HOOK_CONFIG\"\n"
    "echo \"$1 $VIRTSNAP_DISK\" >> \"$LOG\"\n"
    "case \"$1\" in\n"
    "create)\n"
    "    if [ \"$VIRTSNAP_DISK\" = \"$FAIL_DISK\" ]; then\n"
    "        echo \"array: snapshot reserve of $VIRTSNAP_DISK_PATH is full\" >&2; exit 1\n"
    "    fi\n"
    "    cp \"$VIRTSNAP_DISK_PATH\" \"$SNAPDIR/arr.$VIRTSNAP_SNAP_LABEL\" || exit 1\n"
    "    echo \"handle=arr.$VIRTSNAP_SNAP_LABEL\" ;;\n"
    "expose) echo \"path=$SNAPDIR/$VIRTSNAP_SNAP_HANDLE\" ;;\n"
    "delete) rm -f \"$SNAPDIR/$VIRTSNAP_SNAP_HANDLE\" ;;\n"
    "exists) if [ -e \"$SNAPDIR/$VIRTSNAP_SNAP_HANDLE\" ]; then echo exists=yes; else echo exists=no; fi ;;\n"
    "*) exit 3 ;;\n"
    "esac\n";

typedef struct {
    Fixture fx;
    char *snapdir;      /* the "array": one file per snapshot */
    char *log;          /* the hook's and the fake's steps, one a line */
    char *config;       /* the snapshot configuration (--snapshot-config) */
    char *hook_config;  /* the hook's own settings */
} StorageFixture;

static void
write_hook_config(StorageFixture *s, const char *fail_disk)
{
    g_autofree char *text = g_strdup_printf("SNAPDIR='%s'\nLOG='%s'\nFAIL_DISK='%s'\n", s->snapdir, s->log,
                                            fail_disk ? fail_disk : "");

    g_assert_true(g_file_set_contents(s->hook_config, text, -1, NULL));
}

/* Each domain's reference data apart from its image (the commit changes the
 * image), the hook, its configuration and the snapshot configuration. */
static void
storage_setup(StorageFixture *s, gconstpointer data)
{
    Fixture *fx = &s->fx;
    g_autofree char *hook = NULL, *text = NULL;

    setup(fx, data);
    for (int i = 0; i < 3; i++) {
        g_autofree char *ref = g_strdup_printf("%s.ref", fx->disk[i]);
        run_tool((const char *const[]){ "cp", fx->disk[i], ref, NULL });
        g_free(fx->ref[i]);
        fx->ref[i] = g_steal_pointer(&ref);
    }
    s->snapdir = g_build_filename(fx->dir, "array", NULL);
    g_assert_cmpint(g_mkdir(s->snapdir, 0700), ==, 0);
    s->log = g_build_filename(fx->dir, "steps.log", NULL);
    g_assert_true(g_file_set_contents(s->log, "", 0, NULL));
    s->hook_config = g_build_filename(fx->dir, "array.conf", NULL);
    write_hook_config(s, NULL);
    hook = g_build_filename(fx->dir, "hook.sh", NULL);
    g_assert_true(g_file_set_contents(hook, hook_script, -1, NULL));
    g_assert_cmpint(chmod(hook, 0755), ==, 0);
    s->config = g_build_filename(fx->dir, "snapshots.conf", NULL);
    text = g_strdup_printf("[defaults]\nprovider=hook\nhook=%s\nhook-config=%s\ntimeout=20\nretries=0\n", hook,
                           s->hook_config);
    g_assert_true(g_file_set_contents(s->config, text, -1, NULL));
    g_assert_cmpint(chmod(s->config, 0600), ==, 0);
}

static void
storage_teardown(StorageFixture *s, gconstpointer data)
{
    teardown(&s->fx, data);
    g_free(s->snapdir);
    g_free(s->log);
    g_free(s->config);
    g_free(s->hook_config);
}

static void
storage_options(StorageFixture *s, VsBackupOptions *o)
{
    options(&s->fx, o);
    o->storage_snapshot = "hook";
    o->snapshot_config = s->config;
}

/* ------------------------------------------------------------------------- */
/* The fake's side of the log                                                 */

static void
log_step(StorageFixture *s, const char *step)
{
    g_autofree char *text = NULL;
    g_autofree char *more = NULL;

    g_assert_true(g_file_get_contents(s->log, &text, NULL, NULL));
    more = g_strdup_printf("%s%s\n", text, step);
    g_assert_true(g_file_set_contents(s->log, more, -1, NULL));
}

static char *
steps(StorageFixture *s)
{
    char *text = NULL;

    g_assert_true(g_file_get_contents(s->log, &text, NULL, NULL));
    return text;
}

/* "fs_freeze vm1" logged as "fs_freeze vm1", answered ok. */
static char *
reply_logged(const char *call, gpointer data)
{
    log_step(data, call);
    return g_strdup("ok");
}

/* "block_commit vm1 vda": logged as "commit vm1/vda"; the overlay's content
 * (the guest's writes since the point in time) lands in the disk. */
static char *
reply_commit(const char *call, gpointer data)
{
    StorageFixture *s = data;
    g_auto(GStrv) w = g_strsplit(call, " ", 3);
    g_autofree char *step = g_strdup_printf("commit %s/%s", w[1], w[2]);
    int i = w[1][2] - '1';
    const char *path = !strcmp(w[2], "vdb") ? s->fx.disk2[i] : s->fx.disk[i];
    g_autofree char *data_ = g_malloc(WRITTEN_LEN);
    FILE *f;

    log_step(s, step);
    memset(data_, WRITTEN_AFTER, WRITTEN_LEN);
    g_assert_nonnull(f = fopen(path, "r+"));
    g_assert_cmpuint(fwrite(data_, 1, WRITTEN_LEN, f), ==, WRITTEN_LEN);
    g_assert_cmpint(fclose(f), ==, 0);
    return g_strdup("ok");
}

static void
add_logged(StorageFixture *s, const char *call)
{
    vs_fake_add_item_func(s->fx.fake, call, reply_logged, s);
}

/* The window of domain I alone: freeze, overlays' snapshot, thaw. */
static void
expect_window(StorageFixture *s, int i)
{
    g_autofree char *freeze = g_strdup_printf("fs_freeze vm%d", i + 1);
    g_autofree char *snap = g_strdup_printf("snapshot_create vm%d", i + 1);
    g_autofree char *thaw = g_strdup_printf("fs_thaw vm%d", i + 1);

    add_logged(s, freeze);
    add(&s->fx, "1", "domain_is_active vm%d", i + 1);
    add_logged(s, snap);
    add_logged(s, thaw);
}

/* ------------------------------------------------------------------------- */
/* What a user checks                                                         */

static gint
by_name(gconstpointer a, gconstpointer b)
{
    return g_strcmp0(*(const char *const *)a, *(const char *const *)b);
}

/* The snapshots in the array, sorted, space-separated ("" when none). */
static char *
snapshots_left(StorageFixture *s)
{
    g_autoptr(GDir) dir = g_dir_open(s->snapdir, 0, NULL);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;

    while ((name = g_dir_read_name(dir)))
        g_ptr_array_add(names, g_strdup(name));
    g_ptr_array_sort(names, by_name);
    g_ptr_array_add(names, NULL);
    return g_strjoinv(" ", (char **)names->pdata);
}

/* The handle the hook gives disk TARGET's snapshot in backup ID. */
static char *
handle_of(const char *id, const char *target)
{
    return g_strdup_printf("arr.virtsnap-%s-%s", id, target);
}

/* Whether FILE holds PATH's bytes (the point in time). */
static bool
same_file(const char *a, const char *b)
{
    g_autofree char *x = NULL, *y = NULL;
    gsize xl = 0, yl = 0;

    g_assert_true(g_file_get_contents(a, &x, &xl, NULL));
    g_assert_true(g_file_get_contents(b, &y, &yl, NULL));
    return xl == yl && !memcmp(x, y, xl);
}

/* The run's journal, if kept: its path (else NULL). */
G_GNUC_UNUSED static char *
journal_left(Fixture *fx)
{
    g_auto(GStrv) journals = vs_journal_list(fx->state);

    return journals[0] ? g_strdup(journals[0]) : NULL;
}

/* ------------------------------------------------------------------------- */
/* The tests                                                                  */

/* The order a user relies on: freeze, the overlays' snapshot, thaw; then the
 * storage snapshot of the disk while it is stable under its overlay; then the
 * overlay committed back (the guest on its disk again, and the disk no longer
 * the point in time); only then the copy, read from the snapshot: the
 * repository holds the point in time, not the disk as committed. The
 * snapshot goes afterwards; the result says what was made. */
static void
test_order(StorageFixture *s, gconstpointer data)
{
    Fixture *fx = &s->fx;
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *log = NULL, *want = NULL, *left = NULL, *handle = NULL;
    VsBackupOptions o;
    VsBackupDomainResult *d;
    VsBackupDiskResult *disk;

    (void)data;
    storage_options(s, &o);
    fx->on_commit = reply_commit;
    fx->on_commit_data = s;
    expect_plan(fx, 0);
    expect_window(s, 0);
    expect_commit(fx, 0);

    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    d = result_of(r, 0);
    g_assert_nonnull(d);
    if (d->error)
        g_test_message("vm1: %s", d->error->message);
    g_assert_true(d->ok);
    g_assert_cmpstr(d->mode, ==, "storage-snapshot");
    g_assert_cmpint(d->overlay_ms, >=, 0);
    /* The repository: the point in time; the disk: what the guest wrote since. */
    assert_backup(fx, r->id, (const int[]){ 0, -1 });
    g_assert_false(same_file(fx->disk[0], fx->ref[0]));
    log = steps(s);
    want = g_strdup("fs_freeze vm1\nsnapshot_create vm1\nfs_thaw vm1\ncreate vm1/vda\ncommit vm1/vda\n"
                    "expose vm1/vda\ndelete vm1/vda\n");
    g_assert_cmpstr(log, ==, want);
    disk = d->disks->pdata[0];
    handle = handle_of(r->id, "vda");
    g_assert_cmpstr(disk->snapshot_provider, ==, "hook");
    g_assert_cmpstr(disk->snapshot_handle, ==, handle);
    g_assert_false(disk->snapshot_kept);
    g_assert_cmpstr(disk->data_path, ==, "snapshot");
    g_assert_cmpuint(disk->bytes_read, >, 0);
    left = snapshots_left(s);
    g_assert_cmpstr(left, ==, "");
    {
        g_autofree char *overlay = find_overlay(fx, 0);
        g_assert_null(overlay);
    }
    assert_no_journal(fx);
}

/* The hook fails for vm1's second disk: vm1's overlays are committed all the
 * same (the guest back on its own disks), vm1 fails with the hook's own
 * words, the snapshot its first disk got is deleted, and nothing is left for
 * recover; vm2, of the same run, is backed up from its snapshot. */
static void
test_hook_fails_one_disk(StorageFixture *s, gconstpointer data)
{
    Fixture *fx = &s->fx;
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *log = NULL, *left = NULL;
    VsBackupOptions o;
    VsBackupDomainResult *d1, *d2;

    (void)data;
    storage_options(s, &o);
    add_second_disk(fx, 0);
    write_hook_config(s, "vm1/vdb");
    fx->on_commit = reply_commit;
    fx->on_commit_data = s;
    expect_plan(fx, 0);
    expect_plan(fx, 1);
    vs_fake_any_order_begin(fx->fake);
    add(fx, "ok", "fs_freeze vm1");
    add(fx, "ok", "fs_freeze vm2");
    vs_fake_any_order_end(fx->fake);
    vs_fake_any_order_begin(fx->fake);
    for (int i = 0; i < 2; i++) {
        add(fx, "1", "domain_is_active vm%d", i + 1);
        add(fx, "ok", "snapshot_create vm%d", i + 1);
    }
    vs_fake_any_order_end(fx->fake);
    vs_fake_any_order_begin(fx->fake);
    add(fx, "ok", "fs_thaw vm1");
    add(fx, "ok", "fs_thaw vm2");
    vs_fake_any_order_end(fx->fake);
    expect_commit_disk(fx, 0, "vda");
    expect_commit_disk(fx, 0, "vdb");
    expect_resume_check(fx, 0);
    expect_commit(fx, 1);

    r = backup(fx, (const int[]){ 0, 1, -1 }, &o, &err);
    g_assert_no_error(err);
    log = steps(s);
    g_assert_cmpstr(log, ==, "create vm1/vda\ncreate vm1/vdb\ncommit vm1/vda\ncommit vm1/vdb\n"
                             "create vm2/vda\ncommit vm2/vda\nexpose vm2/vda\ndelete vm1/vda\ndelete vm2/vda\n");
    d1 = result_of(r, 0);
    g_assert_false(d1->ok);
    g_test_message("vm1: %s", d1->error->message);
    g_assert_nonnull(strstr(d1->error->message, "snapshot: vm1/vdb: hook "));
    g_assert_nonnull(strstr(d1->error->message, "snapshot reserve of "));
    g_assert_nonnull(strstr(d1->error->message, " is full"));
    /* vda's snapshot was made, and deleted; vdb's never was. */
    g_assert_cmpstr(((VsBackupDiskResult *)d1->disks->pdata[0])->snapshot_provider, ==, "hook");
    g_assert_false(((VsBackupDiskResult *)d1->disks->pdata[0])->snapshot_kept);
    g_assert_null(((VsBackupDiskResult *)d1->disks->pdata[1])->snapshot_handle);
    d2 = result_of(r, 1);
    g_assert_true(d2->ok);
    assert_backup(fx, r->id, (const int[]){ 1, -1 });
    left = snapshots_left(s);
    g_assert_cmpstr(left, ==, "");
    for (int k = 0; k < 2; k++) {
        g_autofree char *overlay = find_overlay_of(fx, k ? fx->disk2[0] : fx->disk[0]);
        g_autofree char *overlay2 = find_overlay(fx, 1);
        g_assert_null(overlay);
        g_assert_null(overlay2);
    }
    assert_no_journal(fx);
}

/* --no-copy: the backup is the snapshots. Each disk is recorded in the
 * manifest as not in the repository, with its snapshot (provider, handle,
 * where the disk lives); nothing is read; the snapshots stay, holding the
 * point in time; the run leaves no journal. */
static void
test_no_copy(StorageFixture *s, gconstpointer data)
{
    Fixture *fx = &s->fx;
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) repo = NULL;
    g_autoptr(VsManifest) m = NULL;
    g_autofree char *log = NULL, *left = NULL, *want = NULL, *ha = NULL, *hb = NULL;
    g_autofree char *snap_a = NULL, *snap_b = NULL, *ref_b = NULL;
    VsBackupOptions o;
    VsBackupDomainResult *d;
    const VsManifestDomain *md;

    (void)data;
    storage_options(s, &o);
    o.no_copy = true;
    add_second_disk(fx, 0);
    ref_b = g_strdup_printf("%s.ref", fx->disk2[0]);
    run_tool((const char *const[]){ "cp", fx->disk2[0], ref_b, NULL });
    fx->on_commit = reply_commit;
    fx->on_commit_data = s;
    expect_plan(fx, 0);
    expect_window(s, 0);
    expect_commit_disk(fx, 0, "vda");
    expect_commit_disk(fx, 0, "vdb");
    expect_resume_check(fx, 0);

    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    d = result_of(r, 0);
    if (d->error)
        g_test_message("vm1: %s", d->error->message);
    g_assert_true(d->ok);
    g_assert_nonnull(r->id);
    log = steps(s);
    g_assert_cmpstr(log, ==, "fs_freeze vm1\nsnapshot_create vm1\nfs_thaw vm1\ncreate vm1/vda\ncreate vm1/vdb\n"
                             "commit vm1/vda\ncommit vm1/vdb\n");
    ha = handle_of(r->id, "vda");
    hb = handle_of(r->id, "vdb");
    for (guint k = 0; k < 2; k++) {
        VsBackupDiskResult *dr = d->disks->pdata[k];
        g_assert_cmpuint(dr->bytes_read, ==, 0);
        g_assert_cmpstr(dr->snapshot_provider, ==, "hook");
        g_assert_cmpstr(dr->snapshot_handle, ==, k ? hb : ha);
        g_assert_true(dr->snapshot_kept);
    }
    repo = vs_repo_open(fx->repo, false, false, 0, NULL);
    g_assert_nonnull(repo);
    m = vs_repo_load_manifest(repo, r->id, &err);
    g_assert_no_error(err);
    md = vs_manifest_find_domain(m, "vm1");
    g_assert_nonnull(md);
    g_assert_cmpuint(md->disks->len, ==, 2);
    for (guint k = 0; k < 2; k++) {
        const VsManifestDisk *mk = md->disks->pdata[k];
        g_assert_false(mk->in_repo);
        g_assert_nonnull(mk->snapshot);
        g_assert_cmpstr(mk->snapshot->provider, ==, "hook");
        g_assert_cmpstr(mk->snapshot->handle, ==, k ? hb : ha);
        g_assert_cmpstr(mk->snapshot->kind, ==, "file");
        g_assert_cmpstr(mk->snapshot->path, ==, k ? fx->disk2[0] : fx->disk[0]);
    }
    /* The snapshots stay and hold the point in time. */
    left = snapshots_left(s);
    want = g_strdup_printf("%s %s", ha, hb);
    g_assert_cmpstr(left, ==, want);
    snap_a = g_build_filename(s->snapdir, ha, NULL);
    snap_b = g_build_filename(s->snapdir, hb, NULL);
    g_assert_true(same_file(snap_a, fx->ref[0]));
    g_assert_true(same_file(snap_b, ref_b));
    g_assert_false(same_file(fx->disk[0], fx->ref[0]));
    assert_no_journal(fx);
}

/* The copy of a --keep-snapshot backup that lands: the data in the
 * repository and the snapshot recorded beside it, which stays. */
static void
test_keep_snapshot(StorageFixture *s, gconstpointer data)
{
    Fixture *fx = &s->fx;
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) repo = NULL;
    g_autoptr(VsManifest) m = NULL;
    g_autofree char *log = NULL, *left = NULL, *handle = NULL;
    VsBackupOptions o;
    VsBackupDiskResult *dr;
    const VsManifestDisk *mk;

    (void)data;
    storage_options(s, &o);
    o.keep_snapshot = true;
    fx->on_commit = reply_commit;
    fx->on_commit_data = s;
    expect_plan(fx, 0);
    expect_window(s, 0);
    expect_commit(fx, 0);

    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    g_assert_true(result_of(r, 0)->ok);
    log = steps(s);
    g_assert_cmpstr(log, ==, "fs_freeze vm1\nsnapshot_create vm1\nfs_thaw vm1\ncreate vm1/vda\ncommit vm1/vda\n"
                             "expose vm1/vda\n");
    assert_backup(fx, r->id, (const int[]){ 0, -1 });
    handle = handle_of(r->id, "vda");
    dr = result_of(r, 0)->disks->pdata[0];
    g_assert_cmpstr(dr->snapshot_handle, ==, handle);
    g_assert_true(dr->snapshot_kept);
    repo = vs_repo_open(fx->repo, false, false, 0, NULL);
    m = vs_repo_load_manifest(repo, r->id, NULL);
    mk = vs_manifest_find_disk(vs_manifest_find_domain(m, "vm1"), "vda");
    g_assert_true(mk->in_repo);
    g_assert_nonnull(mk->snapshot);
    g_assert_cmpstr(mk->snapshot->handle, ==, handle);
    left = snapshots_left(s);
    g_assert_cmpstr(left, ==, handle);
    assert_no_journal(fx);
}

/* As reply_commit, and the repository's backups/ becomes a file: the
 * manifest cannot be committed (root or not). */
static char *
reply_commit_break_repo(const char *call, gpointer data)
{
    StorageFixture *s = data;
    g_autofree char *backups = g_build_filename(s->fx.repo, "backups", NULL);
    g_autofree char *away = g_build_filename(s->fx.repo, "backups.away", NULL);

    g_assert_cmpint(g_rename(backups, away), ==, 0);
    g_assert_true(g_file_set_contents(backups, "not a directory", -1, NULL));
    return reply_commit(call, data);
}

/* --keep-snapshot whose manifest is not committed: no backup records the
 * snapshot, so it is deleted rather than left on the array for nobody. */
static void
test_keep_snapshot_manifest_fails(StorageFixture *s, gconstpointer data)
{
    Fixture *fx = &s->fx;
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *log = NULL, *left = NULL;
    VsBackupOptions o;
    VsBackupDomainResult *d;
    VsBackupDiskResult *dr;

    (void)data;
    storage_options(s, &o);
    o.keep_snapshot = true;
    fx->on_commit = reply_commit_break_repo;
    fx->on_commit_data = s;
    expect_plan(fx, 0);
    expect_window(s, 0);
    expect_commit(fx, 0);

    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    d = result_of(r, 0);
    g_assert_false(d->ok);
    g_test_message("vm1: %s", d->error->message);
    g_assert_nonnull(strstr(d->error->message, "writing manifest"));
    g_assert_null(r->id);
    log = steps(s);
    g_assert_cmpstr(log, ==, "fs_freeze vm1\nsnapshot_create vm1\nfs_thaw vm1\ncreate vm1/vda\ncommit vm1/vda\n"
                             "expose vm1/vda\ndelete vm1/vda\n");
    left = snapshots_left(s);
    g_assert_cmpstr(left, ==, "");
    dr = d->disks->pdata[0];
    g_assert_cmpstr(dr->snapshot_provider, ==, "hook");
    g_assert_false(dr->snapshot_kept);
    assert_no_journal(fx);
}

/* ------------------------------------------------------------------------- */
/* Recovery of the snapshots a killed run left (driver/recover-snapshots.c)   */

/* The journal a run of backup ID killed after its storage snapshot of vm1's
 * vda leaves: the intent (the label for a handle) and, when MADE, the record
 * with the hook's handle, each naming the snapshot configuration; repository
 * REPO. */
static void
journal_killed_run(StorageFixture *s, const char *id, const char *repo, bool made)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsManifestSnapshot) rec = vs_manifest_snapshot_new();
    g_autofree char *json = NULL;
    VsJournal *j;

    g_assert_cmpint(g_mkdir_with_parents(s->fx.state, 0700), ==, 0);
    j = vs_journal_create(s->fx.state, id, &err);
    g_assert_no_error(err);
    g_assert_true(vs_journal_begin_backup(j, id, repo, 0, &err));
    rec->provider = g_strdup("hook");
    rec->kind = g_strdup("file");
    rec->path = g_strdup(s->fx.disk[0]);
    rec->handle = g_strdup_printf("virtsnap-%s-vda", id);
    json = vs_manifest_snapshot_to_json(rec);
    g_assert_true(vs_journal_storage_snapshot(j, "vm1", uuids[0], "vda", json, s->config, &err));
    if (made) {
        g_free(rec->handle);
        rec->handle = handle_of(id, "vda");
        g_free(json);
        json = vs_manifest_snapshot_to_json(rec);
        g_assert_true(vs_journal_snapshot_made(j, "vm1", uuids[0], "vda", json, s->config, &err));
    }
    g_assert_no_error(err);
    vs_journal_close(j);
}

static void
make_repo(StorageFixture *s)
{
    g_autoptr(VsRepo) repo = vs_repo_open(s->fx.repo, true, true, 0, NULL);

    g_assert_nonnull(repo);
}

/* The snapshot the hook would have made for backup ID: the disk's copy. */
static char *
array_snapshot(StorageFixture *s, const char *id)
{
    g_autofree char *handle = handle_of(id, "vda");
    char *path = g_build_filename(s->snapdir, handle, NULL);

    run_tool((const char *const[]){ "cp", s->fx.disk[0], path, NULL });
    return path;
}

/* `virtsnap recover` of vm1's runs (as a backup of vm1 runs it first). */
static bool
recover_vm1(StorageFixture *s, GPtrArray *actions, GError **error)
{
    const char *const u[] = { uuids[0], NULL };

    add(&s->fx, "test:///fake", "conn_uri");
    add(&s->fx, "1", "conn_alive");
    return vs_recover(vs_fake_conn(s->fx.fake), s->fx.state, u, actions, error);
}

static char *
joined(GPtrArray *actions)
{
    g_ptr_array_add(actions, NULL);
    return g_strjoinv("\n", (char **)actions->pdata);
}

/* Killed after the snapshot was made, before any manifest: nobody's, so
 * recover deletes it through the hook the run used; the run is recovered. */
static void
test_recover_deletes_orphan(StorageFixture *s, gconstpointer data)
{
    const char *id = "20261207T120000Z-0a0b0c";
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *snap = NULL, *log = NULL, *said = NULL, *want = NULL;

    (void)data;
    make_repo(s);
    journal_killed_run(s, id, s->fx.repo, true);
    snap = array_snapshot(s, id);

    g_assert_true(recover_vm1(s, actions, &err));
    g_assert_no_error(err);
    said = joined(actions);
    g_test_message("recover: %s", said);
    want = g_strdup_printf("deleted storage snapshot arr.virtsnap-%s-vda of vm1/vda, left by an interrupted "
                           "backup", id);
    g_assert_nonnull(strstr(said, want));
    log = steps(s);
    g_assert_cmpstr(log, ==, "delete vm1/vda\n");
    g_assert_false(g_file_test(snap, G_FILE_TEST_EXISTS));
    assert_no_journal(&s->fx);
}

/* Killed after its manifest was committed (the journal not yet removed): the
 * --no-copy backup is its snapshot, so recover keeps it. The backup is a real
 * run's, the journal the one it wrote up to its snapshot. */
static void
test_recover_keeps_recorded(StorageFixture *s, gconstpointer data)
{
    Fixture *fx = &s->fx;
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *log = NULL, *said = NULL, *want = NULL, *handle = NULL, *left = NULL;
    VsBackupOptions o;

    (void)data;
    storage_options(s, &o);
    o.no_copy = true;
    expect_plan(fx, 0);
    expect_window(s, 0);
    expect_commit(fx, 0);
    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    g_assert_true(result_of(r, 0)->ok);
    g_assert_true(g_file_set_contents(s->log, "", 0, NULL));
    journal_killed_run(s, r->id, fx->repo, true);

    g_assert_true(recover_vm1(s, actions, &err));
    g_assert_no_error(err);
    said = joined(actions);
    g_test_message("recover: %s", said);
    handle = handle_of(r->id, "vda");
    want = g_strdup_printf("kept storage snapshot %s of vm1/vda: backup %s records it", handle, r->id);
    g_assert_nonnull(strstr(said, want));
    log = steps(s);
    g_assert_cmpstr(log, ==, "");
    left = snapshots_left(s);
    g_assert_cmpstr(left, ==, handle);
    assert_no_journal(fx);
}

/* The manifest's commit met an existing id and drew new random digits for it
 * (same second): the journal names the first id, the backup is under its
 * sibling, and its snapshot is still the backup's. */
static void
test_recover_keeps_sibling(StorageFixture *s, gconstpointer data)
{
    Fixture *fx = &s->fx;
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *said = NULL, *handle = NULL, *left = NULL, *text = NULL, *sibling = NULL;
    g_autofree char *from = NULL, *to = NULL, *summary = NULL, *fixed = NULL;
    VsBackupOptions o;

    (void)data;
    storage_options(s, &o);
    o.no_copy = true;
    expect_plan(fx, 0);
    expect_window(s, 0);
    expect_commit(fx, 0);
    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    g_assert_true(result_of(r, 0)->ok);
    g_assert_true(g_file_set_contents(s->log, "", 0, NULL));
    /* The backup as if its id had been redrawn: same second, other digits. */
    sibling = g_strdup_printf("%.*sffffff", (int)(strrchr(r->id, '-') - r->id + 1), r->id);
    from = g_strdup_printf("%s/backups/%s.json", fx->repo, r->id);
    to = g_strdup_printf("%s/backups/%s.json", fx->repo, sibling);
    summary = g_strdup_printf("%s/backups/%s.summary", fx->repo, r->id);
    g_assert_true(g_file_get_contents(from, &text, NULL, NULL));
    {
        g_autofree char *old_id = g_strdup_printf("\"id\": \"%s\"", r->id);
        g_autofree char *new_id = g_strdup_printf("\"id\": \"%s\"", sibling);
        g_autoptr(GString) t = g_string_new(text);

        g_assert_cmpuint(g_string_replace(t, old_id, new_id, 1), ==, 1);
        fixed = g_string_free(g_steal_pointer(&t), FALSE);
    }
    g_assert_true(g_file_set_contents(to, fixed, -1, NULL));
    g_assert_cmpint(g_unlink(from), ==, 0);
    (void)g_unlink(summary);
    journal_killed_run(s, r->id, fx->repo, true);

    g_assert_true(recover_vm1(s, actions, &err));
    g_assert_no_error(err);
    said = joined(actions);
    g_test_message("recover: %s", said);
    handle = handle_of(r->id, "vda");
    g_assert_nonnull(strstr(said, "kept storage snapshot"));
    left = snapshots_left(s);
    g_assert_cmpstr(left, ==, handle);
    assert_no_journal(fx);
}

/* The repository cannot be read (not mounted): whether the snapshot is a
 * backup's cannot be known, so it stays, and so does the journal, with an
 * error saying why. */
static void
test_recover_repo_unreadable(StorageFixture *s, gconstpointer data)
{
    const char *id = "20261207T120000Z-0d0e0f";
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *snap = NULL, *log = NULL, *gone = g_build_filename(s->fx.dir, "unmounted", "repo", NULL);
    g_autofree char *want = NULL;
    g_auto(GStrv) journals = NULL;

    (void)data;
    journal_killed_run(s, id, gone, true);
    snap = array_snapshot(s, id);

    g_assert_false(recover_vm1(s, actions, &err));
    g_assert_nonnull(err);
    g_test_message("recover: %s", err->message);
    want = g_strdup_printf("recover: cannot tell whether snapshot arr.virtsnap-%s-vda is backup %s's: ", id, id);
    g_assert_true(g_str_has_prefix(err->message, want));
    g_assert_nonnull(strstr(err->message, gone));
    log = steps(s);
    g_assert_cmpstr(log, ==, "");
    g_assert_true(g_file_test(snap, G_FILE_TEST_EXISTS));
    journals = vs_journal_list(s->fx.state);
    g_assert_cmpuint(g_strv_length(journals), ==, 1);
}

/* Killed while the hook was making the snapshot: only the label is known (a
 * hook names its snapshots itself), so recover says what to look for on the
 * array and does not ask the hook to delete a handle it never gave. */
static void
test_recover_hook_intent_only(StorageFixture *s, gconstpointer data)
{
    const char *id = "20261207T120000Z-101112";
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *log = NULL, *said = NULL, *want = NULL;

    (void)data;
    make_repo(s);
    journal_killed_run(s, id, s->fx.repo, false);

    g_assert_true(recover_vm1(s, actions, &err));
    g_assert_no_error(err);
    said = joined(actions);
    g_test_message("recover: %s", said);
    want = g_strdup_printf("storage snapshot of vm1/vda: the hook was asked to make one labelled virtsnap-%s-vda "
                           "and the run died before it answered: if the array has it, delete it there", id);
    g_assert_nonnull(strstr(said, want));
    log = steps(s);
    g_assert_cmpstr(log, ==, "");
    assert_no_journal(&s->fx);
}

/* "domain_state vm1" once the overlays are committed: "running", and the
 * run's journal as it stands then is copied aside (to FX->dir/NAME.captured),
 * as a kill from here to the snapshot's delete would leave it. */
static char *
reply_state_capture(const char *call, gpointer data)
{
    StorageFixture *s = data;
    g_auto(GStrv) journals = vs_journal_list(s->fx.state);
    g_autofree char *base = NULL, *aside = NULL;

    (void)call;
    g_assert_nonnull(journals[0]);
    base = g_path_get_basename(journals[0]);
    aside = g_strdup_printf("%s/%s.captured", s->fx.dir, base);
    run_tool((const char *const[]){ "cp", journals[0], aside, NULL });
    return g_strdup("running");
}

/* A run killed after its manifest was committed and before it deleted its
 * snapshot (which no backup records: it was to be deleted once copied),
 * recovered from the journal the run itself wrote: recover finds the hook in
 * the snapshot configuration the run was given, and deletes the snapshot. */
static void
test_recover_run_journal(StorageFixture *s, gconstpointer data)
{
    Fixture *fx = &s->fx;
    g_autoptr(VsBackupResult) r = NULL;
    g_autoptr(GPtrArray) actions = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *log = NULL, *said = NULL, *want = NULL, *captured = NULL, *journal = NULL, *snap = NULL;
    VsBackupOptions o;

    (void)data;
    storage_options(s, &o);
    fx->on_commit = reply_commit;
    fx->on_commit_data = s;
    expect_plan(fx, 0);
    expect_window(s, 0);
    expect_commit_disk(fx, 0, "vda");
    add(fx, "1", "conn_alive");
    vs_fake_add_item_func(fx->fake, "domain_state vm1", reply_state_capture, s);
    r = backup(fx, (const int[]){ 0, -1 }, &o, &err);
    g_assert_no_error(err);
    g_assert_true(result_of(r, 0)->ok);
    assert_no_journal(fx);
    /* Back as the kill left them: the journal, and the snapshot not deleted. */
    journal = g_strdup_printf("%s/journal/%s.jsonl", fx->state, r->id);
    captured = g_strdup_printf("%s/%s.jsonl.captured", fx->dir, r->id);
    run_tool((const char *const[]){ "cp", captured, journal, NULL });
    snap = array_snapshot(s, r->id);
    g_assert_true(g_file_set_contents(s->log, "", 0, NULL));

    g_assert_true(recover_vm1(s, actions, &err));
    g_assert_no_error(err);
    said = joined(actions);
    g_test_message("recover: %s", said);
    want = g_strdup_printf("deleted storage snapshot arr.virtsnap-%s-vda of vm1/vda", r->id);
    g_assert_nonnull(strstr(said, want));
    log = steps(s);
    g_assert_cmpstr(log, ==, "delete vm1/vda\n");
    g_assert_false(g_file_test(snap, G_FILE_TEST_EXISTS));
    assert_no_journal(fx);
}

int
main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "guardian"))
        return scripted_guardian(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    g_test_init(&argc, &argv, NULL);
#define ADD(path, func) \
    g_test_add(path, StorageFixture, NULL, storage_setup, func, storage_teardown)
    ADD("/backup-storage/order", test_order);
    ADD("/backup-storage/hook-fails-one-disk", test_hook_fails_one_disk);
    ADD("/backup-storage/no-copy", test_no_copy);
    ADD("/backup-storage/keep-snapshot", test_keep_snapshot);
    ADD("/backup-storage/keep-snapshot-manifest-fails", test_keep_snapshot_manifest_fails);
    ADD("/backup-storage/recover/deletes-orphan", test_recover_deletes_orphan);
    ADD("/backup-storage/recover/keeps-recorded", test_recover_keeps_recorded);
    ADD("/backup-storage/recover/keeps-sibling", test_recover_keeps_sibling);
    ADD("/backup-storage/recover/repo-unreadable", test_recover_repo_unreadable);
    ADD("/backup-storage/recover/hook-intent-only", test_recover_hook_intent_only);
    ADD("/backup-storage/recover/run-journal", test_recover_run_journal);
    return g_test_run();
}
