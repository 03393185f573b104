/* What vault is built of, without storage that snapshots itself:
 * vs_repo_replace_manifest (a snapshot-only backup's manifest replaced by one
 * holding chunks: only for a backup that exists, validated as commit does, old
 * manifest intact on any refusal, times kept, list's summary following) and
 * vs_source_open_changed with the copy engine (the incremental read a storage
 * diff allows: the same chunks as a full copy of the new content, with only
 * the changed bytes read). vault itself on real snapshots: the vault-reflink
 * and vault-rbd integration tests. */
#include "repo-test-util.h"
#include "repo-internal.h"
#include "vs-copy.h"
#include "vs-source.h"

#define CS (64u * 1024)

typedef struct {
    char *dir;
    VsRepo *repo;
} Fixture;

static void
fx_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = NULL;

    (void)data;
    f->dir = tu_tmpdir();
    path = g_build_filename(f->dir, "repo", NULL);
    f->repo = vs_repo_open(path, true, true, CS, &err);
    g_assert_no_error(err);
}

static void
fx_teardown(Fixture *f, gconstpointer data)
{
    (void)data;
    vs_repo_close(f->repo);
    tu_rm_rf(f->dir);
    g_free(f->dir);
}

/* A committed snapshot-only backup of one disk vm1/vda (reflink record). */
static VsManifest *
commit_snapshot_only(VsRepo *repo, uint64_t size)
{
    g_autoptr(GError) err = NULL;
    VsManifest *m = vs_manifest_new();
    VsManifestDisk *disk = tu_add_disk(m, "vm1", "vda");
    VsManifestSnapshot *s = vs_manifest_snapshot_new();

    disk->format = g_strdup("raw");
    disk->virtual_size = size;
    disk->in_repo = false;
    s->provider = g_strdup("reflink");
    s->handle = g_strdup_printf("virtsnap-%s-vda", m->id);
    s->kind = g_strdup("file");
    s->path = g_strdup("/srv/vm/vm1-vda.img");
    s->snapshot_dir = g_strdup("/srv/vm");
    disk->snapshot = s;
    g_assert_true(vs_repo_commit_manifest(repo, m, &err));
    g_assert_no_error(err);
    return m;
}

static char *
manifest_text(VsRepo *repo, const char *id)
{
    g_autofree char *file = g_strdup_printf("%s/backups/%s.json", vs_repo_path(repo), id);
    char *text = NULL;

    g_assert_true(g_file_get_contents(file, &text, NULL, NULL));
    return text;
}

static const VsBackupSummary *
summary_of(GPtrArray *all, const char *id)
{
    for (guint i = 0; i < all->len; i++)
        if (!strcmp(((VsBackupSummary *)all->pdata[i])->id, id))
            return all->pdata[i];
    return NULL;
}

static void
test_replace(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsManifest) m = commit_snapshot_only(f->repo, 4 * CS);
    g_autoptr(VsManifest) back = NULL;
    g_autoptr(GPtrArray) sums = NULL;
    g_autofree char *path = g_build_filename(f->dir, "vda.raw", NULL);
    g_autofree char *before = manifest_text(f->repo, m->id);
    g_autofree char *before_again = NULL, *out = NULL, *id = g_strdup(m->id);
    VsManifestDisk *disk = g_ptr_array_index(((VsManifestDomain *)m->domains->pdata[0])->disks, 0);
    int64_t completed = m->completed, started = m->started;
    g_autoptr(GPtrArray) problems = NULL;

    (void)data;
    tu_make_image(path, 4 * CS, CS, 0xb, 7);   /* chunks 0, 1, 3: data */
    /* Chunks for the disk, but in_repo left false: the rules refuse it, the old manifest stays. */
    tu_backup_file(f->repo, disk, path);
    g_assert_false(vs_repo_replace_manifest(f->repo, m, &err));
    g_assert_nonnull(strstr(err->message, "false, but the disk has chunks"));
    g_clear_error(&err);
    before_again = manifest_text(f->repo, id);
    g_assert_cmpstr(before_again, ==, before);

    /* A backup that is not there is not made by a replace. */
    g_free(m->id);
    m->id = g_strdup("20200101T000000Z-abcdef");
    disk->in_repo = true;
    g_assert_false(vs_repo_replace_manifest(f->repo, m, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    {
        g_autofree char *made = g_strdup_printf("%s/backups/20200101T000000Z-abcdef.json", vs_repo_path(f->repo));
        g_assert_false(g_file_test(made, G_FILE_TEST_EXISTS));
    }
    {
        g_auto(GStrv) ids = vs_repo_list(f->repo, &err);
        g_assert_cmpuint(g_strv_length(ids), ==, 1);
    }
    g_free(m->id);
    m->id = g_strdup("latest");
    g_assert_false(vs_repo_replace_manifest(f->repo, m, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);

    /* The real one: chunks in, in_repo true, times kept, summary and export follow. */
    g_free(m->id);
    m->id = g_strdup(id);
    g_assert_true(vs_repo_replace_manifest(f->repo, m, &err));
    g_assert_no_error(err);
    back = vs_repo_load_manifest(f->repo, id, &err);
    g_assert_no_error(err);
    disk = g_ptr_array_index(((VsManifestDomain *)back->domains->pdata[0])->disks, 0);
    g_assert_true(disk->in_repo);
    g_assert_nonnull(disk->snapshot);
    g_assert_cmpuint(disk->chunks->len, ==, 3);
    g_assert_cmpint(back->completed, ==, completed);
    g_assert_cmpint(back->started, ==, started);
    sums = vs_repo_list_summaries(f->repo, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(sums->len, ==, 1);
    g_assert_null(summary_of(sums, id)->problem);
    g_assert_cmpuint(summary_of(sums, id)->data_bytes, ==, 3 * CS);
    out = g_build_filename(f->dir, "out.raw", NULL);
    g_assert_true(vs_repo_export_disk(f->repo, back, "vm1", "vda", out, "raw", &err));
    g_assert_no_error(err);
    {
        g_autofree char *a = NULL, *b = NULL;
        gsize na, nb;
        g_assert_true(g_file_get_contents(path, &a, &na, NULL));
        g_assert_true(g_file_get_contents(out, &b, &nb, NULL));
        g_assert_cmpmem(a, na, b, nb);
    }
    g_assert_true(vs_repo_verify(f->repo, id, &problems, NULL, &err));
    g_assert_cmpuint(problems->len, ==, 0);
    /* Nothing left in tmp/: the old manifest went with the exchange. */
    {
        g_autofree char *tmp = g_build_filename(vs_repo_path(f->repo), "tmp", NULL);
        g_autoptr(GDir) dir = g_dir_open(tmp, 0, NULL);
        g_assert_null(g_dir_read_name(dir));
    }
}

/* A chunk missing from the repository: refused before anything is replaced. */
static void
test_replace_missing_chunk(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsManifest) m = commit_snapshot_only(f->repo, 4 * CS);
    g_autofree char *before = manifest_text(f->repo, m->id), *after = NULL;
    VsManifestDisk *disk = g_ptr_array_index(((VsManifestDomain *)m->domains->pdata[0])->disks, 0);
    VsChunkRef ref = { .offset = 0, .length = CS };

    (void)data;
    memset(ref.digest.bytes, 0x5a, sizeof ref.digest.bytes);
    g_array_append_val(disk->chunks, ref);
    disk->in_repo = true;
    g_assert_false(vs_repo_replace_manifest(f->repo, m, &err));
    g_assert_nonnull(strstr(err->message, "is not in the repository"));
    after = manifest_text(f->repo, m->id);
    g_assert_cmpstr(after, ==, before);
}

static void
copy_file(VsRepo *repo, VsSource *src, VsManifestDisk *disk, const VsManifestDisk *previous)
{
    g_autoptr(GError) err = NULL;
    VsCopyOptions opts;

    vs_copy_options_init(&opts);
    opts.previous = previous;
    g_assert_true(vs_copy_source_to_repo(src, repo, disk, &opts, &err));
    g_assert_no_error(err);
}

static void
add_change(GArray *changed, uint64_t offset, uint64_t length, bool zero)
{
    VsExtent e = { .offset = offset, .length = length, .zero = zero };

    g_array_append_val(changed, e);
}

/* The storage's diff and the copy engine: only the changed bytes are read,
 * and the chunk list is what a full copy of the new content gives. */
static void
test_changed_source(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = g_build_filename(f->dir, "disk.raw", NULL);
    g_autofree uint8_t *buf = g_malloc(16 * CS);
    g_autoptr(GArray) changed = g_array_new(FALSE, FALSE, sizeof(VsExtent));
    VsManifestDisk *old = vs_manifest_disk_new("vda"), *full = vs_manifest_disk_new("vda");
    VsManifestDisk *incr = vs_manifest_disk_new("vda");
    VsSource *src;
    uint64_t want_read = 0;

    (void)data;
    tu_fill_data(buf, 16 * CS, 3);
    memset(buf + 12 * CS, 0, 2 * CS);                   /* chunks 12, 13: zeros */
    tu_write_file(path, buf, 16 * CS);
    src = vs_source_open_file(path, &err);
    g_assert_no_error(err);
    copy_file(f->repo, src, old, NULL);
    vs_source_close(src);

    /* The changes, reported out of order and in overlapping pieces as a diff may:
     * 4 KiB inside chunk 1, chunk 5 whole, 10 KiB across chunks 7/8, data into the
     * zero chunk 12, and chunk 3 discarded. */
    tu_fill_random(buf + CS + 8192, 4096, 11);
    tu_fill_random(buf + 5 * CS, CS, 12);
    tu_fill_random(buf + 8 * CS - 5120, 10240, 13);
    tu_fill_random(buf + 12 * CS + 100, 900, 14);
    memset(buf + 3 * CS, 0, CS);
    tu_write_file(path, buf, 16 * CS);
    add_change(changed, 8 * CS - 5120, 6000, false);
    add_change(changed, 5 * CS, CS, false);
    add_change(changed, CS + 8192, 4096, false);
    add_change(changed, 12 * CS + 100, 900, false);
    add_change(changed, 8 * CS - 1000, 6120, false);   /* overlaps the first */
    add_change(changed, 3 * CS, CS, true);
    add_change(changed, 40 * CS, CS, false);            /* beyond the end: ignored */
    want_read = 10240 + CS + 4096 + 900;

    src = vs_source_open_file(path, &err);
    g_assert_no_error(err);
    copy_file(f->repo, src, full, NULL);
    src = vs_source_open_changed(src, changed, &err);
    g_assert_no_error(err);
    g_assert_true(src->delta);
    copy_file(f->repo, src, incr, old);
    vs_source_close(src);

    g_assert_cmpuint(incr->bytes_read, ==, want_read);
    g_assert_cmpuint(incr->virtual_size, ==, full->virtual_size);
    g_assert_cmpuint(incr->chunks->len, ==, full->chunks->len);
    for (guint i = 0; i < full->chunks->len; i++) {
        VsChunkRef *a = &g_array_index(full->chunks, VsChunkRef, i), *b = &g_array_index(incr->chunks, VsChunkRef, i);
        g_assert_cmpuint(a->offset, ==, b->offset);
        g_assert_cmpuint(a->length, ==, b->length);
        g_assert_cmpmem(a->digest.bytes, 32, b->digest.bytes, 32);
    }
    /* Chunk 3 (discarded) is gone from the list, chunk 12 is in it again. */
    g_assert_cmpuint(full->chunks->len, ==, 16 - 2 - 1 + 1);
    vs_manifest_disk_free(old);
    vs_manifest_disk_free(full);
    vs_manifest_disk_free(incr);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/vault/replace", Fixture, NULL, fx_setup, test_replace, fx_teardown);
    g_test_add("/vault/replace-missing-chunk", Fixture, NULL, fx_setup, test_replace_missing_chunk, fx_teardown);
    g_test_add("/vault/changed-source", Fixture, NULL, fx_setup, test_changed_source, fx_teardown);
    return g_test_run();
}
