/* What the repository side knows about storage snapshots (issue 15), on
 * manifests written here through the vs_repo API: the snapshots a repository
 * records (block/snapshot/snapshot-records.c) listed with their state as
 * their provider says it (a reflink snapshot directory on any file system:
 * exists and delete need no reflink), unknown with the reason where the
 * provider cannot be asked, and nothing created on the way; deleted through
 * the provider (gone is fine, a hook that fails is not); verify's problem for
 * a snapshot-only disk whose snapshot is gone, and its notices; the refusals
 * of export and write back for a snapshot-only disk before anything is
 * written; summaries' snapshot_only (written, read back, hostile ones
 * refused); gc with disks that have no chunks. */
#include "repo-test-util.h"
#include "repo-internal.h"
#include "vs-snapshot.h"
#include "vs-copy.h"
#include "vs-source.h"

#include <glib/gstdio.h>
#include <stdio.h>

typedef struct {
    TuRepo t;
    char *base;        /* the snapshot directory's base: BASE/virtsnap-snapshots */
    char *snapdir;
    char *only_id;     /* web1: vda only in its snapshot, vdb in the repository and a snapshot */
    char *plain_id;    /* db1: chunks only */
    char *hook_id;     /* arr1: a hook's snapshot of a disk of pool "array" */
} Fx;

static VsManifestSnapshot *
reflink_record(const Fx *f, const char *handle, const char *disk)
{
    VsManifestSnapshot *s = vs_manifest_snapshot_new();

    s->provider = g_strdup("reflink");
    s->handle = g_strdup(handle);
    s->kind = g_strdup("file");
    s->path = g_build_filename(f->base, disk, NULL);
    s->snapshot_dir = g_strdup(f->base);
    s->pool = g_strdup("default");
    s->size = 4 * 65536;
    return s;
}

/* A snapshot "made" by hand where reflink keeps them: exists and delete only look there. */
static void
make_snapshot_file(const Fx *f, const char *handle)
{
    g_autofree char *p = g_build_filename(f->snapdir, handle, NULL);

    tu_write_file(p, "snapshot", 8);
}

static char *
commit(VsRepo *r, VsManifest *m)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vs_repo_commit_manifest(r, m, &err));
    g_assert_no_error(err);
    return g_strdup(m->id);
}

static void
fx_setup(Fx *f, gconstpointer data)
{
    g_autoptr(VsManifest) m = vs_manifest_new(), h = vs_manifest_new();
    g_autofree uint8_t *buf = g_malloc(65536);
    VsManifestDisk *vda, *vdb, *hk;
    VsChunkRef ref = { .offset = 0, .length = 65536 };

    tu_repo_setup(&f->t, data);
    f->base = g_build_filename(f->t.dir, "pool", NULL);
    f->snapdir = g_build_filename(f->base, "virtsnap-snapshots", NULL);
    g_assert_cmpint(g_mkdir_with_parents(f->snapdir, 0700), ==, 0);
    g_assert_cmpint(chmod(f->snapdir, 0700), ==, 0);

    vda = tu_add_disk(m, "web1", "vda");
    vda->format = g_strdup("raw");
    vda->virtual_size = 4 * 65536;
    vda->in_repo = false;
    vda->snapshot = reflink_record(f, "virtsnap-b1-vda", "web1-vda.img");
    vdb = vs_manifest_domain_add_disk(vs_manifest_find_domain(m, "web1"), "vdb");
    vdb->format = g_strdup("raw");
    vdb->virtual_size = 65536;
    tu_fill_data(buf, 65536, 3);
    tu_put(f->t.repo, buf, 65536, &ref.digest, NULL);
    g_array_append_val(vdb->chunks, ref);
    vdb->snapshot = reflink_record(f, "virtsnap-b1-vdb", "web1-vdb.img");
    make_snapshot_file(f, "virtsnap-b1-vda");
    make_snapshot_file(f, "virtsnap-b1-vdb");
    f->only_id = commit(f->t.repo, m);
    f->plain_id = tu_commit_backup(f->t.repo, "db1", "sda", 2, 9);

    hk = tu_add_disk(h, "arr1", "vda");
    hk->format = g_strdup("raw");
    hk->virtual_size = 65536;
    hk->in_repo = false;
    hk->snapshot = vs_manifest_snapshot_new();
    hk->snapshot->provider = g_strdup("hook");
    hk->snapshot->handle = g_strdup("array-snap-7");
    hk->snapshot->kind = g_strdup("iscsi");
    hk->snapshot->pool = g_strdup("array");
    hk->snapshot->iscsi_iqn = g_strdup("iqn.2026-01.test:t1");
    hk->snapshot->iscsi_lun = 1;
    f->hook_id = commit(f->t.repo, h);
}

static void
fx_teardown(Fx *f, gconstpointer data)
{
    g_free(f->base);
    g_free(f->snapdir);
    g_free(f->only_id);
    g_free(f->plain_id);
    g_free(f->hook_id);
    tu_repo_teardown(&f->t, data);
}

static const VsRecordedSnapshot *
find(GPtrArray *snaps, const char *domain, const char *disk)
{
    for (guint i = 0; i < snaps->len; i++) {
        const VsRecordedSnapshot *r = snaps->pdata[i];
        if (!strcmp(r->domain, domain) && !strcmp(r->disk, disk))
            return r;
    }
    return NULL;
}

/* A configuration file holding TEXT (0600), loaded. */
static VsSnapConfig *
config_with(const Fx *f, const char *text)
{
    g_autofree char *p = g_build_filename(f->t.dir, "snap.conf", NULL);
    g_autoptr(GError) err = NULL;
    VsSnapConfig *c;

    g_assert_true(g_file_set_contents_full(p, text, -1, G_FILE_SET_CONTENTS_NONE, 0600, &err));
    c = vs_snap_config_load(p, &err);
    g_assert_no_error(err);
    return c;
}

static char *
write_hook(const Fx *f, const char *body)
{
    char *p = g_build_filename(f->t.dir, "hook.sh", NULL);
    g_autofree char *text = g_strdup_printf("#!/bin/sh\n%s\n", body);
    g_autoptr(GError) err = NULL;

    g_assert_true(g_file_set_contents_full(p, text, -1, G_FILE_SET_CONTENTS_NONE, 0700, &err));
    return p;
}

static void
test_list(Fx *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) snaps = NULL, unreadable = NULL, web = NULL, db = NULL;
    const char *web1[] = { "web1", NULL }, *db1[] = { "db1", NULL };
    const VsRecordedSnapshot *r;

    snaps = vs_repo_list_snapshots(f->t.repo, NULL, NULL, NULL, true, &unreadable, &err);
    g_assert_no_error(err);
    g_assert_null(unreadable);
    g_assert_cmpuint(snaps->len, ==, 3);
    r = find(snaps, "web1", "vda");
    g_assert_nonnull(r);
    g_assert_cmpstr(r->backup_id, ==, f->only_id);
    g_assert_cmpstr(r->snapshot->provider, ==, "reflink");
    g_assert_cmpstr(r->snapshot->handle, ==, "virtsnap-b1-vda");
    g_assert_cmpuint(r->snapshot->size, ==, 4 * 65536);
    g_assert_false(r->in_repo);
    g_assert_cmpint(r->state, ==, VS_SNAP_STATE_EXISTS);
    g_assert_null(r->reason);
    r = find(snaps, "web1", "vdb");
    g_assert_true(r->in_repo);
    g_assert_cmpint(r->state, ==, VS_SNAP_STATE_EXISTS);
    /* no configuration names a hook for pool "array": unknown, and why */
    r = find(snaps, "arr1", "vda");
    g_assert_cmpint(r->state, ==, VS_SNAP_STATE_UNKNOWN);
    g_assert_nonnull(strstr(r->reason, "made by a hook"));
    g_assert_nonnull(strstr(r->reason, "pool array"));
    g_assert_cmpstr(vs_snap_state_name(r->state), ==, "unknown");

    web = vs_repo_list_snapshots(f->t.repo, NULL, web1, NULL, false, &unreadable, &err);
    g_assert_cmpuint(web->len, ==, 2);
    g_assert_cmpint(((VsRecordedSnapshot *)web->pdata[0])->state, ==, VS_SNAP_STATE_UNKNOWN);  /* not asked */
    db = vs_repo_list_snapshots(f->t.repo, f->plain_id, db1, NULL, true, &unreadable, &err);
    g_assert_cmpuint(db->len, ==, 0);
    g_assert_no_error(err);
}

/* One deleted by hand is "no"; a hook configured for the pool is asked. */
static void
test_state(Fx *f, gconstpointer data)
{
    g_autofree char *gone = g_build_filename(f->snapdir, "virtsnap-b1-vda", NULL);
    g_autofree char *hook = write_hook(f, "[ \"$VIRTSNAP_SNAP_HANDLE\" = array-snap-7 ] && echo exists=yes || "
                                          "echo exists=no");
    g_autofree char *text = g_strdup_printf("[pool:array]\nhook=%s\n", hook);
    g_autoptr(VsSnapConfig) c = config_with(f, text);
    g_autoptr(GPtrArray) snaps = NULL, unreadable = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(g_unlink(gone), ==, 0);
    snaps = vs_repo_list_snapshots(f->t.repo, NULL, NULL, c, true, &unreadable, &err);
    g_assert_no_error(err);
    g_assert_cmpint(find(snaps, "web1", "vda")->state, ==, VS_SNAP_STATE_GONE);
    g_assert_cmpint(find(snaps, "web1", "vdb")->state, ==, VS_SNAP_STATE_EXISTS);
    g_assert_cmpint(find(snaps, "arr1", "vda")->state, ==, VS_SNAP_STATE_EXISTS);
}

/* A snapshot directory whose base is missing (unmounted?) is unknown, not
 * gone; one whose virtsnap-snapshots is missing is gone; neither is made. */
static void
test_state_dirs(Fx *f, gconstpointer data)
{
    g_autoptr(VsManifestSnapshot) s = reflink_record(f, "virtsnap-x", "d.img");
    g_autofree char *reason = NULL, *other = g_build_filename(f->t.dir, "empty", NULL);
    g_autofree char *sub = g_build_filename(other, "virtsnap-snapshots", NULL);
    g_autoptr(GError) err = NULL;
    bool was_gone = false;

    g_free(s->snapshot_dir);
    s->snapshot_dir = g_build_filename(f->t.dir, "not-mounted", NULL);
    g_assert_cmpint(vs_snap_record_state(NULL, s, "vm/vda", &reason), ==, VS_SNAP_STATE_UNKNOWN);
    g_assert_nonnull(strstr(reason, "does not exist"));
    g_assert_false(g_file_test(s->snapshot_dir, G_FILE_TEST_EXISTS));
    /* prune must not take it for gone */
    g_assert_false(vs_snap_record_delete(NULL, s, "vm/vda", &was_gone, &err));
    g_assert_false(g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND));
    g_clear_error(&err);

    g_assert_cmpint(g_mkdir(other, 0700), ==, 0);
    g_free(s->snapshot_dir);
    s->snapshot_dir = g_strdup(other);
    g_clear_pointer(&reason, g_free);
    g_assert_cmpint(vs_snap_record_state(NULL, s, "vm/vda", &reason), ==, VS_SNAP_STATE_GONE);
    g_assert_true(vs_snap_record_delete(NULL, s, "vm/vda", &was_gone, &err));
    g_assert_true(was_gone);
    g_assert_false(g_file_test(sub, G_FILE_TEST_EXISTS));
}

static void
test_delete(Fx *f, gconstpointer data)
{
    g_autoptr(VsManifestSnapshot) s = reflink_record(f, "virtsnap-b1-vdb", "web1-vdb.img");
    g_autofree char *file = g_build_filename(f->snapdir, "virtsnap-b1-vdb", NULL);
    g_autofree char *hook = write_hook(f, "[ \"$1\" = delete ] && { echo 'array says no' >&2; exit 1; }; exit 0");
    g_autofree char *text = g_strdup_printf("[pool:array]\nhook=%s\nretries=0\n", hook);
    g_autoptr(VsSnapConfig) c = config_with(f, text);
    g_autoptr(VsManifest) m = NULL;
    g_autoptr(GError) err = NULL;
    bool was_gone = true;

    g_assert_true(vs_snap_record_delete(NULL, s, "web1/vdb", &was_gone, &err));
    g_assert_no_error(err);
    g_assert_false(was_gone);
    g_assert_false(g_file_test(file, G_FILE_TEST_EXISTS));
    /* again: gone is fine */
    g_assert_true(vs_snap_record_delete(NULL, s, "web1/vdb", &was_gone, &err));
    g_assert_true(was_gone);

    m = vs_repo_load_manifest(f->t.repo, f->hook_id, &err);
    g_assert_no_error(err);
    /* no hook configured: cannot be deleted */
    g_assert_false(vs_snap_record_delete(NULL, vs_manifest_find_disk(m->domains->pdata[0], "vda")->snapshot,
                                         "arr1/vda", NULL, &err));
    g_assert_nonnull(strstr(err->message, "configures no hook"));
    g_clear_error(&err);
    /* a hook that fails its delete: the error names it */
    g_assert_false(vs_snap_record_delete(c, vs_manifest_find_disk(m->domains->pdata[0], "vda")->snapshot,
                                         "arr1/vda", NULL, &err));
    g_assert_nonnull(strstr(err->message, "array says no"));
    g_assert_nonnull(strstr(err->message, "exit code 1"));
}

static void
test_verify(Fx *f, gconstpointer data)
{
    g_autofree char *vda = g_build_filename(f->snapdir, "virtsnap-b1-vda", NULL);
    g_autofree char *vdb = g_build_filename(f->snapdir, "virtsnap-b1-vdb", NULL);
    g_autoptr(GPtrArray) problems = NULL, notices = NULL;
    g_autoptr(GError) err = NULL;
    guint checked = 0, unknown = 0;
    const VsVerifyProblem *p;

    /* all there: only the hook's is a notice (it cannot be asked) */
    g_assert_true(vs_repo_verify_snapshots(f->t.repo, NULL, NULL, &problems, &notices, &checked, &unknown, &err));
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_cmpuint(checked, ==, 3);
    g_assert_cmpuint(unknown, ==, 1);
    g_assert_cmpuint(notices->len, ==, 1);
    g_assert_nonnull(strstr(notices->pdata[0], "could not be checked"));
    g_clear_pointer(&notices, g_ptr_array_unref);

    g_assert_cmpint(g_unlink(vda), ==, 0);
    g_assert_cmpint(g_unlink(vdb), ==, 0);
    g_assert_true(vs_repo_verify_snapshots(f->t.repo, f->only_id, NULL, &problems, &notices, &checked, &unknown,
                                           &err));
    g_assert_cmpuint(checked, ==, 2);
    g_assert_cmpuint(unknown, ==, 0);
    /* vda: its data was only there */
    g_assert_cmpuint(problems->len, ==, 1);
    p = problems->pdata[0];
    g_assert_cmpstr(p->backup_id, ==, f->only_id);
    g_assert_cmpstr(p->domain, ==, "web1");
    g_assert_cmpstr(p->disk, ==, "vda");
    g_assert_null(p->digest_hex);
    g_assert_nonnull(strstr(p->problem, "reflink snapshot virtsnap-b1-vda no longer exists"));
    g_assert_nonnull(strstr(p->problem, "cannot be restored"));
    /* vdb: in the repository too, a notice */
    g_assert_cmpuint(notices->len, ==, 1);
    g_assert_nonnull(strstr(notices->pdata[0], "disk vdb"));
    g_assert_nonnull(strstr(notices->pdata[0], "in the repository"));
}

/* export and write back refuse a snapshot-only disk, naming it and what to
 * do, before they write anything; a disk beside it exports. */
static void
test_refusals(Fx *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsManifest) m = vs_repo_load_manifest(f->t.repo, f->only_id, &err);
    g_autofree char *out = g_build_filename(f->t.dir, "vda.raw", NULL);
    g_autofree char *ok = g_build_filename(f->t.dir, "vdb.raw", NULL);
    g_autofree char *sinkf = g_build_filename(f->t.dir, "sink.raw", NULL);
    g_autofree char *want = g_strdup_printf("vault --repo %s %s`", vs_repo_path(f->t.repo), f->only_id);
    g_autofree char *after = NULL;
    g_autoptr(VsSource) sink = NULL;
    uint8_t pattern[4 * 65536];
    gsize len = 0;

    g_assert_no_error(err);
    g_assert_false(vs_repo_export_disk(f->t.repo, m, "web1", "vda", out, NULL, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_true(g_str_has_prefix(err->message, "export: backup "));
    g_assert_nonnull(strstr(err->message, f->only_id));
    g_assert_nonnull(strstr(err->message, "domain web1, disk vda"));
    g_assert_nonnull(strstr(err->message, "reflink virtsnap-b1-vda"));
    g_assert_nonnull(strstr(err->message, "restore it with `virtsnap restore --from-snapshot`"));
    g_assert_nonnull(strstr(err->message, want));
    g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
    g_clear_error(&err);
    g_assert_true(vs_repo_export_disk(f->t.repo, m, "web1", "vdb", ok, NULL, &err));
    g_assert_no_error(err);

    /* written over in place: the target keeps every byte */
    memset(pattern, 0x5a, sizeof(pattern));
    tu_write_file(sinkf, pattern, sizeof(pattern));
    sink = vs_source_open_url(sinkf, NULL, true, &err);
    g_assert_no_error(err);
    g_assert_false(vs_copy_repo_to_sink(f->t.repo, vs_manifest_find_disk(m->domains->pdata[0], "vda"), sink, false,
                                        &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_true(g_str_has_prefix(err->message, "write back: disk vda: its data is not in the repository"));
    g_clear_pointer(&sink, vs_source_close);
    g_assert_true(g_file_get_contents(sinkf, &after, &len, NULL));
    g_assert_cmpmem(after, len, pattern, sizeof(pattern));
}

/* Summaries say which disks are snapshot-only, from the file commit wrote
 * and from the manifest alike; a summary naming a disk the domain lacks is
 * not used. */
static void
test_summary(Fx *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) all = vs_repo_list_summaries(f->t.repo, &err);
    g_autofree char *file = g_strdup_printf("%s/backups/%s.summary", f->t.dir, f->only_id);
    g_autofree char *text = NULL, *bad = NULL;
    g_autoptr(VsBackupSummary) s = NULL;
    uint64_t mb = 0;
    bool seen = false;

    g_assert_no_error(err);
    for (guint i = 0; i < all->len; i++) {
        const VsBackupSummary *b = all->pdata[i];
        const VsSummaryDomain *d = b->domains->pdata[0];

        g_assert_null(b->problem);
        if (strcmp(b->id, f->only_id) == 0) {
            seen = true;
            g_assert_cmpuint(g_strv_length(d->snapshot_only), ==, 1);
            g_assert_cmpstr(d->snapshot_only[0], ==, "vda");
        } else if (strcmp(b->id, f->plain_id) == 0) {
            g_assert_cmpuint(g_strv_length(d->snapshot_only), ==, 0);
        }
    }
    g_assert_true(seen);
    g_assert_true(g_file_get_contents(file, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "\"snapshot_only\""));
    s = repo_summary_from_json(text, "t", &mb, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(((VsSummaryDomain *)s->domains->pdata[0])->snapshot_only[0], ==, "vda");
    g_clear_pointer(&s, vs_backup_summary_free);
    /* hostile: a disk it does not have, or one twice */
    bad = g_strdup(text);
    {
        char *at = strstr(bad, "\"snapshot_only\"");
        char *v = strstr(at, "\"vda\"");
        memcpy(v, "\"vdz\"", 5);
    }
    g_assert_null(repo_summary_from_json(bad, "t", &mb, &err));
    g_assert_nonnull(strstr(err->message, "snapshot_only[0]"));
    g_clear_error(&err);
    /* without the summary file: from the manifest, the same */
    g_assert_cmpint(g_unlink(file), ==, 0);
    s = repo_load_summary(f->t.repo, f->only_id, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(((VsSummaryDomain *)s->domains->pdata[0])->snapshot_only[0], ==, "vda");
}

/* gc keeps every chunk a backup beside a snapshot-only disk needs, and a
 * chunk-only verify finds nothing wrong. */
static void
test_gc(Fx *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) problems = NULL;
    uint64_t removed = 99, freed = 0, checked = 0;

    g_assert_true(vs_repo_gc(f->t.repo, &removed, &freed, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(removed, ==, 0);
    g_assert_true(vs_repo_verify(f->t.repo, NULL, &problems, &checked, &err));
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_cmpuint(checked, ==, 3);
}

#define FX_TEST(path, fn) g_test_add(path, Fx, NULL, fx_setup, fn, fx_teardown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    FX_TEST("/snapshots/list", test_list);
    FX_TEST("/snapshots/state", test_state);
    FX_TEST("/snapshots/state-dirs", test_state_dirs);
    FX_TEST("/snapshots/delete", test_delete);
    FX_TEST("/snapshots/verify", test_verify);
    FX_TEST("/snapshots/refusals", test_refusals);
    FX_TEST("/snapshots/summary", test_summary);
    FX_TEST("/snapshots/gc", test_gc);
    return g_test_run();
}
