/* The batched write path against real files: put_chunk leaves a chunk pending
 * (an unsynced temp file) until a flush makes every pending chunk durable with
 * one syncfs and renames them into place. Dedup within the pending set, reading
 * pending chunks (get, has, verify), the automatic flush at the threshold, close
 * discarding what was never flushed, commit flushing, eight threads putting
 * while flushes run, two processes writing the same chunks, and failing flushes
 * (syncfs, rename, a tmpfs out of space or inodes): the error is clear and no
 * chunk file under a final name is ever one whose content was not made durable
 * first (every one re-hashes right). */
#include "repo-test-util.h"
#include "repo-internal.h"

#include <stdlib.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#define CS (64 * 1024)

static char *self_exe;

/* Puts CS random bytes of SEED. */
static uint64_t
put_random(VsRepo *r, guint32 seed, VsDigest *d)
{
    g_autofree uint8_t *buf = g_malloc(CS);
    uint64_t stored = 0;

    tu_fill_random(buf, CS, seed);
    tu_put(r, buf, CS, d, &stored);
    return stored;
}

static guint
count_in(const char *dir, const char *sub)
{
    g_autofree char *p = g_build_filename(dir, sub, NULL);

    return tu_count_files(p);
}

/* A manifest with one disk holding DIGESTS at consecutive offsets. */
static VsManifest *
manifest_of(const VsDigest *digests, guint n)
{
    VsManifest *m = vs_manifest_new();
    VsManifestDisk *k = tu_add_disk(m, "dom", "vda");

    k->format = g_strdup("raw");
    k->virtual_size = (uint64_t)MAX(n, 1) * CS;
    for (guint i = 0; i < n; i++) {
        VsChunkRef ref = { .offset = (uint64_t)i * CS, .length = CS, .digest = digests[i] };

        g_array_append_val(k->chunks, ref);
    }
    return m;
}

static bool
commit_digests(VsRepo *r, const VsDigest *digests, guint n, GError **error)
{
    g_autoptr(VsManifest) m = manifest_of(digests, n);

    return vs_repo_commit_manifest(r, m, error);
}

/* Every file under a final chunk name in DIR, read through a fresh read-only
 * VsRepo (nothing pending), decompresses to bytes with its name's SHA-256.
 * Returns how many there are. */
static guint
assert_final_chunks_good(const char *dir)
{
    g_autofree char *chunks = g_build_filename(dir, "chunks", NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = vs_repo_open(dir, false, false, 0, &err);
    g_autoptr(GDir) top = NULL;
    const char *sub;
    guint n = 0;

    g_assert_no_error(err);
    top = g_dir_open(chunks, 0, &err);
    g_assert_no_error(err);
    while ((sub = g_dir_read_name(top))) {
        g_autofree char *p = g_build_filename(chunks, sub, NULL);
        g_autoptr(GDir) d = g_dir_open(p, 0, NULL);
        const char *name;

        if (!d)
            continue;
        while ((name = g_dir_read_name(d))) {
            g_autofree void *data = NULL;
            VsDigest digest;
            size_t len = 0;

            g_assert_true(vs_digest_from_hex(name, &digest));
            data = vs_repo_get_chunk(r, &digest, &len, &err);
            g_assert_no_error(err);
            g_assert_cmpuint(len, >, 0);
            n++;
        }
    }
    return n;
}

/* ------------------------------------------------------------------------- */

static void
test_dedup_pending(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autoptr(GError) err = NULL;
    VsDigest a, b;

    g_assert_cmpuint(put_random(r, 1, &a), >, CS / 2);
    /* the same bytes again before any flush: pending, so nothing stored */
    g_assert_cmpuint(put_random(r, 1, &b), ==, 0);
    g_assert_cmpmem(a.bytes, 32, b.bytes, 32);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 1);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 0);
    g_assert_true(vs_repo_flush(r, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 1);
    /* and after it, under its final name */
    g_assert_cmpuint(put_random(r, 1, &b), ==, 0);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    /* a flush with nothing pending does nothing */
    g_assert_true(vs_repo_flush(r, &err));
    g_assert_no_error(err);
}

static void
test_read_pending(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    g_autofree char *tmp = g_build_filename(dir, "tmp", NULL);
    VsRepo *r = fixture->repo;
    g_autofree uint8_t *buf = g_malloc(CS);
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(VsManifest) m = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *json = NULL, *mpath = NULL;
    VsDigest d[4], missing;
    uint64_t checked = 0;
    size_t len = 0;

    for (guint i = 0; i < 4; i++) {
        tu_fill_data(buf, CS, 10 + i);
        tu_put(r, buf, i == 3 ? 1000 : CS, &d[i], NULL);
    }
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 0);
    for (guint i = 0; i < 4; i++) {
        g_autofree void *back = NULL;

        g_assert_true(vs_repo_has_chunk(r, &d[i]));
        back = vs_repo_get_chunk(r, &d[i], &len, &err);
        g_assert_no_error(err);
        tu_fill_data(buf, CS, 10 + i);
        g_assert_cmpmem(back, len, buf, i == 3 ? 1000 : CS);
    }
    vs_digest_compute("nothing", 7, &missing);
    g_assert_false(vs_repo_has_chunk(r, &missing));

    /* verify reads pending chunks too: a manifest naming them (written by
     * hand; commit would flush them first) checks clean */
    m = manifest_of(d, 3);
    m->chunk_size = CS;
    m->completed = g_get_real_time();
    json = vs_manifest_to_json(m);
    mpath = g_strdup_printf("%s/backups/%s.json", dir, m->id);
    tu_write_file(mpath, json, strlen(json));
    g_assert_true(vs_repo_verify(r, NULL, &problems, &checked, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_cmpuint(checked, ==, 3);
    g_clear_pointer(&problems, g_ptr_array_unref);

    /* ... and really reads the temp files: damage them all */
    {
        g_autoptr(GDir) td = g_dir_open(tmp, 0, NULL);
        const char *name;

        while ((name = g_dir_read_name(td))) {
            g_autofree char *p = g_build_filename(tmp, name, NULL);

            tu_write_file(p, "garbage", 7);
        }
    }
    g_assert_true(vs_repo_verify(r, NULL, &problems, &checked, &err));
    g_assert_cmpuint(problems->len, ==, 3);
    for (guint i = 0; i < problems->len; i++)
        g_assert_true(g_str_has_prefix(((VsVerifyProblem *)problems->pdata[i])->problem, "corrupt"));
    g_assert_null(vs_repo_get_chunk(r, &d[0], &len, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_nonnull(strstr(err->message, "is corrupt"));
    g_clear_error(&err);
}

static void
test_threshold(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autoptr(GError) err = NULL;
    VsDigest d;

    /* random chunks compress to a little over CS: the fourth crosses 3.5 CS */
    repo_test_set_flush(r, 7 * CS / 2, 0, 0);
    for (guint i = 0; i < 3; i++)
        put_random(r, 100 + i, &d);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 3);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 0);
    put_random(r, 103, &d);
    /* the fourth put started a flush on the flusher thread */
    repo_test_wait_flusher(r);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 4);
    for (guint i = 0; i < 2; i++)
        put_random(r, 200 + i, &d);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 2);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 4);
    g_assert_true(vs_repo_flush(r, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 6);
    g_assert_cmpuint(assert_final_chunks_good(dir), ==, 6);
}

/* However compressible, the pending table holds at most REPO_FLUSH_CHUNKS
 * (lowered to 50 here). */
static void
test_threshold_count(void)
{
    g_autofree char *dir = tu_tmpdir();
    g_autoptr(VsRepo) r = tu_open_new(dir, 4096);
    uint8_t buf[4096] = { 0 };
    VsDigest d;

    repo_test_set_flush(r, 0, 50, 0);
    for (guint i = 1; i <= 2 * 50 + 10; i++) {
        memcpy(buf, &i, sizeof(i));
        tu_put(r, buf, sizeof(buf), &d, NULL);
        repo_test_wait_flusher(r);
    }
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 10);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 2 * 50);
    tu_rm_rf(dir);
}

static void
test_close_discards(void)
{
    g_autofree char *dir = tu_tmpdir();
    VsRepo *r = tu_open_new(dir, CS);
    g_autoptr(GError) err = NULL;
    VsDigest d[8];

    for (guint i = 0; i < 8; i++)
        put_random(r, 300 + i, &d[i]);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 8);
    vs_repo_close(r);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 0);
    r = vs_repo_open(dir, false, false, 0, &err);
    g_assert_no_error(err);
    for (guint i = 0; i < 8; i++)
        g_assert_false(vs_repo_has_chunk(r, &d[i]));
    vs_repo_close(r);

    /* flushed chunks stay; only the pending rest goes */
    r = tu_open_new(dir, CS);
    for (guint i = 0; i < 4; i++)
        put_random(r, 300 + i, &d[i]);
    g_assert_true(vs_repo_flush(r, &err));
    for (guint i = 4; i < 8; i++)
        put_random(r, 300 + i, &d[i]);
    vs_repo_close(r);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(assert_final_chunks_good(dir), ==, 4);
    tu_rm_rf(dir);
}

static void
test_commit_flushes(void)
{
    g_autofree char *dir = tu_tmpdir();
    VsRepo *r = tu_open_new(dir, CS);
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GError) err = NULL;
    VsDigest d[6];
    uint64_t checked = 0;

    for (guint i = 0; i < 6; i++)
        put_random(r, 400 + i, &d[i]);
    g_assert_true(commit_digests(r, d, 6, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 6);
    vs_repo_close(r);
    g_assert_cmpuint(assert_final_chunks_good(dir), ==, 6);
    r = vs_repo_open(dir, false, false, 0, &err);
    g_assert_no_error(err);
    g_assert_true(vs_repo_verify(r, NULL, &problems, &checked, &err));
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_cmpuint(checked, ==, 6);
    vs_repo_close(r);
    tu_rm_rf(dir);
}

/* Eight threads put (16 chunks all share, 32 of their own) while automatic
 * flushes and a ninth thread's explicit ones run: nothing put is lost. */
#define NTHREADS 8
#define NSHARED 16
#define NOWN 32

typedef struct {
    VsRepo *repo;
    guint index;
    VsDigest digests[NSHARED + NOWN];
} PutArg;

static gpointer
put_thread(gpointer p)
{
    PutArg *a = p;
    g_autofree uint8_t *buf = g_malloc(CS);

    for (guint i = 0; i < NSHARED + NOWN; i++) {
        guint j = (i + a->index * 7) % (NSHARED + NOWN);
        g_autoptr(GError) err = NULL;

        tu_fill_random(buf, CS, j < NSHARED ? 1000 + j : 2000 + a->index * 100 + j);
        if (!vs_repo_put_chunk(a->repo, buf, CS, &a->digests[j], NULL, &err))
            g_error("put_chunk: %s", err->message);
    }
    return NULL;
}

typedef struct {
    VsRepo *repo;
    gint stop;
    guint flushes;
} FlushArg;

static gpointer
flush_thread(gpointer p)
{
    FlushArg *f = p;

    while (!g_atomic_int_get(&f->stop)) {
        g_autoptr(GError) err = NULL;

        if (!vs_repo_flush(f->repo, &err))
            g_error("flush: %s", err->message);
        f->flushes++;
        g_usleep(500);
    }
    return NULL;
}

static void
test_threads(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autoptr(GArray) all = g_array_new(FALSE, FALSE, sizeof(VsDigest));
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GError) err = NULL;
    PutArg *args = g_new0(PutArg, NTHREADS);
    FlushArg f = { r, 0, 0 };
    GThread *threads[NTHREADS], *flusher;
    uint64_t checked = 0;

    repo_test_set_flush(r, 5 * CS, 0, 0);
    flusher = g_thread_new("flush", flush_thread, &f);
    for (guint t = 0; t < NTHREADS; t++) {
        args[t] = (PutArg){ .repo = r, .index = t };
        threads[t] = g_thread_new("put", put_thread, &args[t]);
    }
    for (guint t = 0; t < NTHREADS; t++)
        g_thread_join(threads[t]);
    g_atomic_int_set(&f.stop, 1);
    g_thread_join(flusher);
    g_test_message("%u explicit flushes", f.flushes);
    for (guint t = 0; t < NTHREADS; t++)
        g_array_append_vals(all, args[t].digests, NSHARED + NOWN);
    g_assert_true(commit_digests(r, (VsDigest *)all->data, all->len, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, NSHARED + NTHREADS * NOWN);
    g_assert_true(vs_repo_verify(r, NULL, &problems, &checked, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_cmpuint(checked, ==, NSHARED + NTHREADS * NOWN);
    g_free(args);
}

/* Two processes put the same 48 chunks (in opposite orders, flushing every
 * few chunks) and commit. */
static int
child_same_chunks(const char *dir, int reverse)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = vs_repo_open(dir, false, true, 0, &err);
    VsDigest d[48];

    if (!r || !vs_repo_lock_shared(r, &err))
        return 1;
    repo_test_set_flush(r, 3 * CS, 0, 0);
    for (guint i = 0; i < 48; i++) {
        guint j = reverse ? 47 - i : i;
        g_autofree uint8_t *buf = g_malloc(CS);

        tu_fill_random(buf, CS, 7000 + j);
        if (!vs_repo_put_chunk(r, buf, CS, &d[j], NULL, &err))
            return 2;
    }
    return commit_digests(r, d, 48, &err) ? 0 : 3;
}

static void
test_processes(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) ids = NULL;
    uint64_t checked = 0;
    pid_t pids[2];

    for (int i = 0; i < 2; i++) {
        char *const args[] = { self_exe, (char *)"--same-chunks-child", dir, (char *)(i ? "1" : "0"), NULL };

        pids[i] = tu_spawn(self_exe, args);
    }
    for (int i = 0; i < 2; i++)
        tu_wait_ok(pids[i]);
    ids = vs_repo_list(r, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(g_strv_length(ids), ==, 2);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 48);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_true(vs_repo_verify(r, NULL, &problems, &checked, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_cmpuint(checked, ==, 48);
    g_assert_cmpuint(assert_final_chunks_good(dir), ==, 48);
}

/* syncfs fails: nothing of the batch gets a final name, the temp files go,
 * commit says what is missing, and the repository works on afterwards. */
static void
test_sync_failure(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autoptr(GError) err = NULL;
    g_autofree char *expect = NULL;
    VsDigest d[5];

    for (guint i = 0; i < 4; i++)
        put_random(r, 500 + i, &d[i]);
    repo_test_set_flush(r, 0, 0, EIO);
    g_assert_false(vs_repo_flush(r, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    expect = g_strdup_printf("repo: %s: flushing chunks: syncing %s/tmp: %s", dir, dir, g_strerror(EIO));
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 0);
    for (guint i = 0; i < 4; i++)
        g_assert_false(vs_repo_has_chunk(r, &d[i]));
    g_assert_false(commit_digests(r, d, 4, &err));
    g_assert_nonnull(strstr(err->message, "is not in the repository"));
    g_clear_error(&err);
    g_assert_cmpuint(count_in(dir, "backups"), ==, 0);

    /* a background flush that fails fails every later put, and the next
     * vs_repo_flush reports it (once) */
    repo_test_set_flush(r, 2 * CS, 0, EIO);
    put_random(r, 600, &d[4]);
    put_random(r, 601, &d[4]);
    repo_test_wait_flusher(r);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 0);
    {
        g_autofree uint8_t *buf = g_malloc(CS);

        tu_fill_random(buf, CS, 602);
        g_assert_false(vs_repo_put_chunk(r, buf, CS, &d[4], NULL, &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_IO);
        g_assert_nonnull(strstr(err->message, "flushing chunks"));
        g_clear_error(&err);
    }
    repo_test_set_flush(r, 2 * CS, 0, 0);
    g_assert_false(vs_repo_flush(r, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_nonnull(strstr(err->message, "flushing chunks"));
    g_clear_error(&err);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 0);

    /* the disk is back: the same chunks are put again and commit */
    repo_test_set_flush(r, 0, 0, 0);
    for (guint i = 0; i < 4; i++)
        g_assert_cmpuint(put_random(r, 500 + i, &d[i]), >, 0);
    g_assert_true(commit_digests(r, d, 4, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(assert_final_chunks_good(dir), ==, 4);
}

/* Without syncfs, each temp file is fdatasynced. */
static void
test_fdatasync_fallback(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autoptr(GError) err = NULL;
    VsDigest d[3];

    repo_test_set_flush(r, 0, 0, ENOSYS);
    for (guint i = 0; i < 3; i++)
        put_random(r, 700 + i, &d[i]);
    g_assert_true(commit_digests(r, d, 3, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(assert_final_chunks_good(dir), ==, 3);
}

/* A rename that fails (the fan-out directory is a file): that chunk is gone,
 * the others of the batch are placed, the error names it. */
static void
test_rename_failure(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autoptr(GError) err = NULL;
    g_autofree char *blocker = NULL;
    char hex[VS_DIGEST_HEX_LEN];
    uint8_t used[256] = { 0 };
    VsDigest d[4];
    guint n = 0;

    /* four chunks in four different fan-out directories */
    for (guint32 seed = 800; n < 4; seed++) {
        g_autofree uint8_t *buf = g_malloc(CS);
        VsDigest x;

        tu_fill_random(buf, CS, seed);
        vs_digest_compute(buf, CS, &x);
        if (used[x.bytes[0]])
            continue;
        used[x.bytes[0]] = 1;
        tu_put(r, buf, CS, &d[n++], NULL);
    }
    blocker = g_strdup_printf("%s/chunks/%02x", dir, d[0].bytes[0]);
    tu_write_file(blocker, "x", 1);
    g_assert_false(vs_repo_flush(r, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    vs_digest_to_hex(&d[0], hex);
    g_assert_nonnull(strstr(err->message, "flushing chunks: placing chunk "));
    g_assert_nonnull(strstr(err->message, hex));
    g_assert_true(g_str_has_suffix(err->message, g_strerror(ENOTDIR)));
    g_clear_error(&err);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_false(vs_repo_has_chunk(r, &d[0]));
    for (guint i = 1; i < 4; i++)
        g_assert_true(vs_repo_has_chunk(r, &d[i]));
    g_assert_cmpint(unlink(blocker), ==, 0);
    g_assert_cmpuint(assert_final_chunks_good(dir), ==, 3);
}

/* A 2 MiB tmpfs filling up while chunks are put and flushed every 4 chunks:
 * the put that finds no space says so and leaves nothing, whatever was put
 * before is whole and goes into place. */
static void
test_enospc_put(void)
{
    g_autofree char *mnt = tu_tmpdir();
    g_autofree char *dir = g_build_filename(mnt, "repo", NULL);
    g_autoptr(GArray) ok = g_array_new(FALSE, FALSE, sizeof(VsDigest));
    g_autofree uint8_t *buf = g_malloc(CS);
    g_autoptr(GError) err = NULL;
    VsRepo *r;
    guint i, pending;

    if (!tu_mount_tmpfs(mnt, "2M")) {
        tu_rm_rf(mnt);
        return;
    }
    r = tu_open_new(dir, CS);
    repo_test_set_flush(r, 4 * CS, 0, 0);
    for (i = 0; i < 100; i++) {
        VsDigest d;

        tu_fill_random(buf, CS, 900 + i);
        if (!vs_repo_put_chunk(r, buf, CS, &d, NULL, &err))
            break;
        g_array_append_val(ok, d);
    }
    g_assert_cmpuint(i, <, 100);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_test_message("%s", err->message);
    g_assert_true(g_str_has_prefix(err->message, "repo: "));
    g_assert_nonnull(strstr(err->message, "writing chunk "));
    g_assert_true(g_str_has_suffix(err->message, ": No space left on device"));
    g_clear_error(&err);
    /* A flush handed to the flusher thread may still be running (or queued):
     * count what it leaves behind, not what it has yet to move. */
    repo_test_wait_flusher(r);
    pending = count_in(dir, "tmp");
    g_assert_cmpuint(pending, <, 4);
    g_assert_cmpuint(count_in(dir, "chunks") + pending, ==, ok->len);
    for (guint j = 0; j < ok->len; j++) {
        size_t len = 0;
        g_autofree void *data = vs_repo_get_chunk(r, &g_array_index(ok, VsDigest, j), &len, &err);

        g_assert_no_error(err);
        g_assert_nonnull(data);
        g_assert_cmpuint(len, ==, CS);
    }
    g_assert_true(vs_repo_flush(r, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    vs_repo_close(r);
    g_assert_cmpuint(assert_final_chunks_good(dir), ==, ok->len);
    tu_umount(mnt);
    tu_rm_rf(mnt);
}

/* A tmpfs out of inodes when the flush makes the fan-out directories: the flush
 * fails with ENOSPC, no chunk of the batch gets a final name, no temp is left. */
static void
test_enospc_flush(void)
{
    g_autofree char *mnt = tu_tmpdir();
    g_autofree char *dir = g_build_filename(mnt, "repo", NULL);
    g_autoptr(GError) err = NULL;
    uint8_t used[256] = { 0 };
    struct statvfs sv;
    VsRepo *r;
    guint n = 0, want;

    if (!tu_mount_tmpfs(mnt, "4M,nr_inodes=24")) {
        tu_rm_rf(mnt);
        return;
    }
    r = tu_open_new(dir, CS);
    g_assert_cmpint(statvfs(dir, &sv), ==, 0);
    /* more chunks, each in a directory of its own, than inodes left after
     * their temp files */
    want = (guint)sv.f_ffree / 2 + 1;
    g_test_message("%lu inodes free, %u chunks", (unsigned long)sv.f_ffree, want);
    g_assert_cmpuint(want, >=, 2);
    for (guint32 seed = 1100; n < want; seed++) {
        g_autofree uint8_t *buf = g_malloc(CS);
        VsDigest x;

        tu_fill_random(buf, CS, seed);
        vs_digest_compute(buf, CS, &x);
        if (used[x.bytes[0]])
            continue;
        used[x.bytes[0]] = 1;
        tu_put(r, buf, CS, &x, NULL);
        n++;
    }
    g_assert_false(vs_repo_flush(r, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, "flushing chunks: creating "));
    g_assert_true(g_str_has_suffix(err->message, ": No space left on device"));
    g_clear_error(&err);
    g_assert_cmpuint(count_in(dir, "tmp"), ==, 0);
    g_assert_cmpuint(count_in(dir, "chunks"), ==, 0);
    vs_repo_close(r);
    g_assert_cmpuint(assert_final_chunks_good(dir), ==, 0);
    tu_umount(mnt);
    tu_rm_rf(mnt);
}

int
main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--same-chunks-child") == 0)
        return child_same_chunks(argv[2], atoi(argv[3]));
    self_exe = g_file_read_link("/proc/self/exe", NULL);
    tu_private_mounts();
    g_test_init(&argc, &argv, NULL);
    TU_REPO_TEST("/flush/dedup-pending", test_dedup_pending);
    TU_REPO_TEST("/flush/read-pending", test_read_pending);
    TU_REPO_TEST("/flush/threshold", test_threshold);
    g_test_add_func("/flush/threshold-count", test_threshold_count);
    g_test_add_func("/flush/close-discards", test_close_discards);
    g_test_add_func("/flush/commit", test_commit_flushes);
    TU_REPO_TEST("/flush/threads", test_threads);
    TU_REPO_TEST("/flush/processes", test_processes);
    TU_REPO_TEST("/flush/fault/sync", test_sync_failure);
    TU_REPO_TEST("/flush/fault/fdatasync-fallback", test_fdatasync_fallback);
    TU_REPO_TEST("/flush/fault/rename", test_rename_failure);
    g_test_add_func("/flush/fault/enospc-put", test_enospc_put);
    g_test_add_func("/flush/fault/enospc-flush", test_enospc_flush);
    {
        int rc = g_test_run();

        g_free(self_exe);
        return rc;
    }
}
