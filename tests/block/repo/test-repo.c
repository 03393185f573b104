/* The repository's storage and bookkeeping against real files: opening and
 * initialising (and refusing what is not a repository, or is newer), chunks in
 * and out with dedup and zero skipping, many threads and two forked processes
 * writing at once, the backups/ directory (list, latest, prefixes, delete),
 * commit's own checks, gc and its lock, and the faults a backup target really
 * has: a disk that fills up mid-write (a 2 MiB tmpfs) and a read-only mount. */
#include "repo-test-util.h"
#include "repo-internal.h"
#include "vs-temp.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <utime.h>
#include <zstd.h>

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ZSTD_CCtx, ZSTD_freeCCtx)

#define CS (64 * 1024)

static char *self_exe;

static void
flush(VsRepo *r)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vs_repo_flush(r, &err));
    g_assert_no_error(err);
}

/* ------------------------------------------------------------------------- */

static void
test_digest(void)
{
    static const char abc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    char hex[VS_DIGEST_HEX_LEN];
    VsDigest d, e;

    vs_digest_compute("abc", 3, &d);
    vs_digest_to_hex(&d, hex);
    g_assert_cmpstr(hex, ==, abc);
    g_assert_true(vs_digest_from_hex(abc, &e));
    g_assert_cmpmem(d.bytes, 32, e.bytes, 32);
    g_assert_false(vs_digest_from_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", &e));
    g_assert_false(vs_digest_from_hex("ba78", &e));
    g_assert_false(vs_digest_from_hex(NULL, &e));
    g_assert_false(vs_digest_from_hex("za7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", &e));
    g_assert_false(vs_digest_from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", &e));
}

static void
test_is_zero(void)
{
    g_autofree uint8_t *b = g_malloc0(CS);

    g_assert_true(vs_buffer_is_zero(b, 0));
    g_assert_true(vs_buffer_is_zero(b, 1));
    g_assert_true(vs_buffer_is_zero(b, 17));
    g_assert_true(vs_buffer_is_zero(b, CS));
    b[CS - 1] = 1;
    g_assert_false(vs_buffer_is_zero(b, CS));
    g_assert_true(vs_buffer_is_zero(b, CS - 1));
    b[CS - 1] = 0;
    b[3] = 1;
    g_assert_false(vs_buffer_is_zero(b, 4));
    g_assert_true(vs_buffer_is_zero(b, 3));
}

static void
test_open_create(void)
{
    g_autofree char *top = tu_tmpdir();
    g_autofree char *dir = g_build_filename(top, "a", "b", "repo", NULL);
    g_autofree char *marker = g_build_filename(dir, "virtsnap-repo.json", NULL);
    g_autofree char *text = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL, r2 = NULL;
    struct stat st;

    r = tu_open_new(dir, CS);
    g_assert_cmpuint(vs_repo_chunk_size(r), ==, CS);
    g_assert_cmpstr(vs_repo_path(r), ==, dir);
    g_assert_true(g_file_get_contents(marker, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "\"format\": \"virtsnap-repository\""));
    g_assert_nonnull(strstr(text, "\"version\": 1"));
    g_assert_nonnull(strstr(text, "\"chunk_size\": 65536"));
    g_assert_nonnull(strstr(text, "\"created\": \""));
    for (const char *const *s = (const char *const[]){ "chunks", "backups", "tmp", "lock", NULL }; *s; s++) {
        g_autofree char *p = g_build_filename(dir, *s, NULL);

        g_assert_true(g_file_test(p, G_FILE_TEST_EXISTS));
    }
    g_assert_cmpint(stat(dir, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0700);
    /* the probe write leaves nothing behind */
    {
        g_autofree char *tmp = g_build_filename(dir, "tmp", NULL);

        g_assert_cmpuint(tu_count_files(tmp), ==, 0);
    }
    /* an existing repository keeps its chunk size */
    r2 = vs_repo_open(dir, true, false, 1024 * 1024, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vs_repo_chunk_size(r2), ==, CS);
    /* invalid chunk sizes */
    g_clear_pointer(&r2, vs_repo_close);
    r2 = vs_repo_open(dir, true, true, 100000, &err);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_null(r2);
    g_clear_error(&err);
    /* default chunk size, in an existing empty directory */
    {
        g_autofree char *empty = g_build_filename(top, "empty", NULL);
        g_autoptr(VsRepo) r3 = NULL;

        g_autofree char *lf = g_build_filename(empty, "lost+found", NULL);

        /* a freshly made file system mounted there */
        g_assert_cmpint(mkdir(empty, 0755), ==, 0);
        g_assert_cmpint(mkdir(lf, 0700), ==, 0);
        r3 = tu_open_new(empty, 0);
        g_assert_cmpuint(vs_repo_chunk_size(r3), ==, VS_REPO_DEFAULT_CHUNK_SIZE);
    }
    tu_rm_rf(top);
}

static void
test_open_errors(void)
{
    g_autofree char *top = tu_tmpdir();
    g_autofree char *missing = g_build_filename(top, "missing", NULL);
    g_autofree char *other = g_build_filename(top, "other", NULL);
    g_autofree char *file = g_build_filename(other, "data.img", NULL);
    g_autofree char *newer = g_build_filename(top, "newer", NULL);
    g_autofree char *nmarker = g_build_filename(newer, "virtsnap-repo.json", NULL);
    g_autofree char *expect = NULL;
    g_autoptr(GError) err = NULL;
    VsRepo *r;

    r = vs_repo_open(missing, false, false, 0, &err);
    g_assert_null(r);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_true(g_str_has_prefix(err->message, "repo: "));
    g_assert_nonnull(strstr(err->message, missing));
    g_clear_error(&err);

    /* a directory that holds something else is never taken over */
    g_assert_cmpint(mkdir(other, 0755), ==, 0);
    tu_write_file(file, "x", 1);
    for (int create = 0; create < 2; create++) {
        r = vs_repo_open(other, create, true, 0, &err);
        g_assert_null(r);
        g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
        expect = g_strdup_printf("repo: %s is not a virtsnap repository (no virtsnap-repo.json) and "
                                 "holds other files: ", other);
        g_assert_true(g_str_has_prefix(err->message, expect));
        g_clear_pointer(&expect, g_free);
        g_clear_error(&err);
    }
    g_assert_cmpuint(tu_count_files(other), ==, 1);

    /* empty, without create: not found; the problem, then the command that makes one */
    {
        g_autofree char *empty = g_build_filename(top, "empty", NULL);

        g_assert_cmpint(mkdir(empty, 0755), ==, 0);
        r = vs_repo_open(empty, false, false, 0, &err);
        g_assert_null(r);
        g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
        expect = g_strdup_printf("repo: %s is not a virtsnap repository (it is empty); create one "
                                 "with virtsnap init --repo %s", empty, empty);
        g_assert_cmpstr(err->message, ==, expect);
        g_clear_pointer(&expect, g_free);
        g_clear_error(&err);
    }

    /* a file, not a directory */
    r = vs_repo_open(file, true, true, 0, &err);
    g_assert_null(r);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);

    /* a newer format */
    g_assert_cmpint(mkdir(newer, 0755), ==, 0);
    {
        static const char *newer_marker = "{\"format\": \"virtsnap-repository\", \"version\": 2, "
            "\"chunk_size\": 65536, \"created\": \"2030-01-01T00:00:00Z\", \"encryption\": \"aes\"}";

        tu_write_file(nmarker, newer_marker, strlen(newer_marker));
    }
    r = vs_repo_open(newer, true, true, 0, &err);
    g_assert_null(r);
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(err->message, nmarker));
    g_assert_nonnull(strstr(err->message, "format version 2 is newer than this virtsnap supports (1)"));
    g_clear_error(&err);

    /* a damaged marker */
    {
        static const char *bad = "{\"format\": \"virtsnap-repository\", \"version\": 1, \"chunk_size\": \"big\", "
                                 "\"created\": \"2030-01-01T00:00:00Z\"}";

        tu_write_file(nmarker, bad, strlen(bad));
        r = vs_repo_open(newer, false, false, 0, &err);
        g_assert_null(r);
        g_assert_nonnull(strstr(err->message, "chunk_size: expected a non-negative integer"));
        g_clear_error(&err);
    }
    tu_rm_rf(top);
}

/* The XXH64 of raw frames against the one zstd itself puts in a frame's
 * checksum (its low 32 bits), at every length up to 100 bytes (all the tail
 * paths) and a few longer ones. */
static void
test_xxh64(void)
{
    uint8_t data[4099], frame[4099 + 64];
    g_autoptr(ZSTD_CCtx) c = ZSTD_createCCtx();
    static const size_t longer[] = { 128, 1000, 4096, 4099 };

    tu_fill_random(data, sizeof(data), 11);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    for (size_t i = 0; i < 100 + G_N_ELEMENTS(longer); i++) {
        size_t len = i < 100 ? i : longer[i - 100];
        size_t n = ZSTD_compress2(c, frame, sizeof(frame), data, len);
        uint32_t sum;

        g_assert_false(ZSTD_isError(n));
        memcpy(&sum, frame + n - 4, 4);
        g_assert_cmphex(GUINT32_FROM_LE(sum), ==, (uint32_t)repo_xxh64(data, len));
    }
    g_assert_cmphex(repo_xxh64("", 0), ==, 0xEF46DB3751D8E999ULL);
}

/* The chunk file of DIGEST, decompressed with plain libzstd (which checks the
 * frame's XXH64): it must be DATA, and the file *FSIZE bytes. */
static void
assert_chunk_file(const char *dir, const VsDigest *d, const void *data, size_t len, size_t *fsize)
{
    char hex[VS_DIGEST_HEX_LEN];
    g_autofree char *path = NULL, *z = NULL;
    g_autofree uint8_t *out = g_malloc(len + 1);
    g_autoptr(GError) err = NULL;
    gsize zlen = 0;
    size_t n;

    vs_digest_to_hex(d, hex);
    path = g_strdup_printf("%s/chunks/%.2s/%s", dir, hex, hex);
    g_assert_true(g_file_get_contents(path, &z, &zlen, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ZSTD_getFrameContentSize(z, zlen), ==, len);
    g_assert_cmpuint(ZSTD_findFrameCompressedSize(z, zlen), ==, zlen);
    n = ZSTD_decompress(out, len + 1, z, zlen);
    g_assert_false(ZSTD_isError(n));
    g_assert_cmpmem(out, n, data, len);
    *fsize = zlen;
}

/* Puts BUF and checks it was stored in raw blocks (the frame: 9 bytes of
 * header, 3 per block of at most 128 KiB, 4 of checksum) and reads back. */
static void
put_expect_raw(VsRepo *r, const char *dir, const uint8_t *buf, size_t len, VsDigest *d)
{
    size_t fsize = 0, blen = 0, blocks = (len + 128 * 1024 - 1) / (128 * 1024);
    g_autofree void *back = NULL;
    g_autoptr(GError) err = NULL;
    uint64_t stored = 0;

    tu_put(r, buf, len, d, &stored);
    flush(r);
    assert_chunk_file(dir, d, buf, len, &fsize);
    g_assert_cmpuint(fsize, ==, len + 9 + 3 * blocks + 4);
    g_assert_cmpuint(stored, ==, fsize);
    back = vs_repo_get_chunk(r, d, &blen, &err);
    g_assert_no_error(err);
    g_assert_cmpmem(back, blen, buf, len);
}

/* Puts BUF, compressible, and checks it was stored compressed. */
static void
put_expect_compressed(VsRepo *r, const char *dir, const uint8_t *buf, size_t len, VsDigest *d)
{
    size_t fsize = 0;

    tu_put(r, buf, len, d, NULL);
    flush(r);
    assert_chunk_file(dir, d, buf, len, &fsize);
    g_assert_cmpuint(fsize, <, len * 6 / 10);
}

/* Random chunks are stored in raw zstd blocks (the frame: 9 bytes of header, 3
 * per block of at most 128 KiB, 4 of checksum), which any zstd reads and
 * checks; a chunk that compresses at its sample points is compressed. */
static void
test_chunk_raw(void)
{
    static const size_t sizes[] = { CS, 1024 * 1024, 1024 * 1024 - 13, 1024 * 1024 - 1000 };

    for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
        uint32_t cs = sizes[i] > CS ? 1024 * 1024 : CS;
        size_t len = sizes[i];
        g_autofree char *dir = tu_tmpdir();
        g_autoptr(VsRepo) r = tu_open_new(dir, cs);
        g_autofree uint8_t *buf = g_malloc(len);
        VsDigest d;

        tu_fill_random(buf, len, 40 + (guint32)i);
        put_expect_raw(r, dir, buf, len, &d);

        /* compressible at half the sample points: compressed whole */
        tu_fill_data(buf, len, 50 + (guint32)i);
        put_expect_compressed(r, dir, buf, len, &d);
        tu_rm_rf(dir);
    }
}

/* With compression off (backup --compress=off) a compressible chunk is stored
 * in raw blocks too, reads back and checks; a chunk already there is not
 * rewritten when compression is back on, and new ones are compressed again. */
static void
test_chunk_compress_off(TuRepo *fixture, gconstpointer test_data)
{
    size_t len = CS;
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autofree uint8_t *buf = g_malloc(len);
    uint64_t stored = 0;
    VsDigest d;

    vs_repo_set_compression(r, false);
    tu_fill_data(buf, len, 77);
    put_expect_raw(r, dir, buf, len, &d);

    vs_repo_set_compression(r, true);
    tu_put(r, buf, len, &d, &stored);
    g_assert_cmpuint(stored, ==, 0);
    tu_fill_data(buf, len, 78);
    put_expect_compressed(r, dir, buf, len, &d);
}

/* A chunk file as virtsnap wrote them before raw blocks (ZSTD_compress2, level
 * 1, checksum, content size: whatever the data) still reads and verifies. */
static void
test_chunk_old_frames(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autoptr(ZSTD_CCtx) c = ZSTD_createCCtx();
    g_autofree uint8_t *buf = g_malloc(CS);
    g_autofree uint8_t *z = g_malloc(ZSTD_compressBound(CS));

    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
    for (guint32 seed = 60; seed < 62; seed++) {
        g_autofree char *fan = NULL, *path = NULL;
        g_autofree void *back = NULL;
        g_autoptr(GError) err = NULL;
        char hex[VS_DIGEST_HEX_LEN];
        size_t zlen, blen = 0;
        VsDigest d;

        if (seed == 60)
            tu_fill_random(buf, CS, seed);
        else
            tu_fill_data(buf, CS, seed);
        zlen = ZSTD_compress2(c, z, ZSTD_compressBound(CS), buf, CS);
        g_assert_false(ZSTD_isError(zlen));
        vs_digest_compute(buf, CS, &d);
        vs_digest_to_hex(&d, hex);
        fan = g_strdup_printf("%s/chunks/%.2s", dir, hex);
        path = g_strdup_printf("%s/%s", fan, hex);
        g_assert_cmpint(g_mkdir_with_parents(fan, 0755), ==, 0);
        tu_write_file(path, z, zlen);
        g_assert_true(vs_repo_has_chunk(r, &d));
        back = vs_repo_get_chunk(r, &d, &blen, &err);
        g_assert_no_error(err);
        g_assert_cmpmem(back, blen, buf, CS);
    }
}

/* A chunk's name held by something other than a regular file (someone else
 * wrote the repository): every read fails at once, naming the chunk and its
 * file, and never blocks on a FIFO or follows a symlink. */
static void
test_chunk_not_regular(void)
{
    static const char *const kinds[] = { "fifo", "dir", "symlink", NULL };
    g_autofree char *dir = tu_tmpdir();
    g_autoptr(VsRepo) r = tu_open_new(dir, CS);
    g_autofree uint8_t *buf = g_malloc(CS);
    g_autofree char *path = NULL, *moved = g_build_filename(dir, "moved", NULL);
    char hex[VS_DIGEST_HEX_LEN];
    VsDigest d;

    tu_fill_data(buf, CS, 11);
    tu_put(r, buf, CS, &d, NULL);
    flush(r);
    vs_digest_to_hex(&d, hex);
    path = g_strdup_printf("%s/chunks/%.2s/%s", dir, hex, hex);
    g_assert_cmpint(rename(path, moved), ==, 0);
    for (size_t i = 0; kinds[i]; i++) {
        g_autoptr(GError) err = NULL;
        size_t len = 0;

        g_test_message("%s in place of a chunk", kinds[i]);
        if (i == 0)
            g_assert_cmpint(mkfifo(path, 0600), ==, 0);
        else if (i == 1)
            g_assert_cmpint(mkdir(path, 0700), ==, 0);
        else
            g_assert_cmpint(symlink(moved, path), ==, 0);
        g_assert_null(vs_repo_get_chunk(r, &d, &len, &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_IO);
        g_assert_nonnull(strstr(err->message, hex));
        g_assert_nonnull(strstr(err->message, path));
        g_assert_nonnull(strstr(err->message, "is not a regular file"));
        g_assert_cmpint(i == 1 ? rmdir(path) : unlink(path), ==, 0);
    }
}

static void
test_chunk_round_trip(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    VsRepo *r = fixture->repo;
    g_autofree uint8_t *buf = g_malloc(CS);
    g_autofree char *path = NULL, *tmp = g_build_filename(dir, "tmp", NULL);
    g_autoptr(GError) err = NULL;
    char hex[VS_DIGEST_HEX_LEN];
    uint64_t stored = 99;
    VsDigest d, d2, expect;
    size_t len = 0;
    void *back;

    tu_fill_data(buf, CS, 7);
    tu_put(r, buf, CS, &d, &stored);
    vs_digest_compute(buf, CS, &expect);
    g_assert_cmpmem(d.bytes, 32, expect.bytes, 32);
    g_assert_cmpuint(stored, >, 0);
    g_assert_cmpuint(stored, <, CS);          /* half of it is a pattern */
    vs_digest_to_hex(&d, hex);
    path = g_strdup_printf("%s/chunks/%.2s/%s", dir, hex, hex);
    /* pending: a temp file until the flush, found all the same */
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_cmpuint(tu_count_files(tmp), ==, 1);
    g_assert_true(vs_repo_has_chunk(r, &d));
    flush(r);
    g_assert_true(g_file_test(path, G_FILE_TEST_IS_REGULAR));
    g_assert_cmpuint(tu_count_files(tmp), ==, 0);
    g_assert_true(vs_repo_has_chunk(r, &d));

    back = vs_repo_get_chunk(r, &d, &len, &err);
    g_assert_no_error(err);
    g_assert_cmpmem(back, len, buf, CS);
    g_free(back);

    /* dedup: the second put stores nothing */
    tu_put(r, buf, CS, &d2, &stored);
    g_assert_cmpuint(stored, ==, 0);
    g_assert_cmpmem(d.bytes, 32, d2.bytes, 32);

    /* a short (last) chunk */
    tu_put(r, buf, 1000, &d2, &stored);
    g_assert_cmpuint(stored, >, 0);
    back = vs_repo_get_chunk(r, &d2, &len, &err);
    g_assert_no_error(err);
    g_assert_cmpmem(back, len, buf, 1000);
    g_free(back);
    flush(r);

    /* sizes a chunk cannot have */
    g_assert_false(vs_repo_put_chunk(r, buf, 0, &d2, &stored, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);
    {
        g_autofree uint8_t *big = g_malloc0(CS + 1);

        big[0] = 1;
        g_assert_false(vs_repo_put_chunk(r, big, CS + 1, &d2, &stored, &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
        g_clear_error(&err);
    }

    /* a chunk that is not there */
    vs_digest_compute("nothing", 7, &d2);
    g_assert_false(vs_repo_has_chunk(r, &d2));
    g_assert_null(vs_repo_get_chunk(r, &d2, &len, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "is missing"));
    g_clear_error(&err);

    /* a corrupt one: flip a byte */
    {
        g_autofree char *data = NULL;
        gsize flen = 0;

        g_assert_true(g_file_get_contents(path, &data, &flen, NULL));
        data[flen / 2] ^= 0x40;
        tu_write_file(path, data, flen);
        g_assert_null(vs_repo_get_chunk(r, &d, &len, &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_IO);
        g_assert_nonnull(strstr(err->message, "is corrupt"));
        g_clear_error(&err);
        /* a frame claiming more than a chunk */
        tu_write_file(path, "garbage", 7);
        g_assert_null(vs_repo_get_chunk(r, &d, &len, &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_IO);
        g_clear_error(&err);
    }
    g_assert_cmpuint(tu_count_files(tmp), ==, 0);
}

static void
test_zero_chunks(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    g_autofree char *chunks = g_build_filename(dir, "chunks", NULL);
    VsRepo *r = fixture->repo;
    g_autofree uint8_t *zeros = g_malloc0(CS);
    g_autofree uint8_t *data = g_malloc(CS);
    g_autoptr(VsManifest) m = vs_manifest_new();
    g_autoptr(VsManifest) back = NULL;
    VsManifestDisk *k = vs_manifest_domain_add_disk(vs_manifest_add_domain(m, "dom"), "vda");
    g_autoptr(GError) err = NULL;
    VsChunkRef refs[3] = { { 0, CS, { { 0 } } }, { CS, CS, { { 0 } } }, { 2 * CS, 100, { { 0 } } } };
    uint64_t stored = 1;
    VsDigest expect;

    tu_put(r, zeros, CS, &refs[0].digest, &stored);
    g_assert_cmpuint(stored, ==, 0);
    vs_digest_compute(zeros, CS, &expect);
    g_assert_cmpmem(refs[0].digest.bytes, 32, expect.bytes, 32);
    tu_put(r, zeros, 100, &refs[2].digest, &stored);
    g_assert_cmpuint(stored, ==, 0);
    g_assert_cmpuint(tu_count_files(chunks), ==, 0);

    /* a careless caller lists zero chunks: commit drops them */
    tu_fill_data(data, CS, 1);
    tu_put(r, data, CS, &refs[1].digest, &stored);
    k->format = g_strdup("raw");
    k->virtual_size = 2 * CS + 100;
    g_array_append_vals(k->chunks, refs, 3);
    g_assert_true(vs_repo_commit_manifest(r, m, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(k->chunks->len, ==, 1);
    back = vs_repo_load_manifest(r, "latest", &err);
    g_assert_no_error(err);
    k = vs_manifest_find_disk(vs_manifest_find_domain(back, "dom"), "vda");
    g_assert_cmpuint(k->chunks->len, ==, 1);
    /* nobody said the guest was frozen */
    g_assert_cmpstr(vs_manifest_find_domain(back, "dom")->consistency, ==, "crash");
    g_assert_cmpuint(g_array_index(k->chunks, VsChunkRef, 0).offset, ==, CS);
    g_assert_cmpuint(tu_count_files(chunks), ==, 1);
}

/* Many threads on one VsRepo: every thread puts the same 16 chunks and 16 of
 * its own, in different orders. */
#define NTHREADS 8
#define NSHARED 16
#define NOWN 16

typedef struct {
    VsRepo *repo;
    guint index;
    uint64_t stored_shared;
    VsDigest own[NOWN];
} ThreadArg;

static gpointer
put_thread(gpointer p)
{
    ThreadArg *a = p;
    g_autofree uint8_t *buf = g_malloc(CS);

    for (guint i = 0; i < NSHARED + NOWN; i++) {
        guint j = (i + a->index * 5) % (NSHARED + NOWN);
        g_autoptr(GError) err = NULL;
        uint64_t stored = 0;
        VsDigest d;

        tu_fill_random(buf, CS, j < NSHARED ? 1000 + j : 2000 + a->index * 100 + j);
        if (!vs_repo_put_chunk(a->repo, buf, CS, &d, &stored, &err))
            g_error("put_chunk: %s", err->message);
        if (j < NSHARED)
            a->stored_shared += stored;
        else
            a->own[j - NSHARED] = d;
    }
    return NULL;
}

static void
test_threads(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    g_autofree char *chunks = g_build_filename(dir, "chunks", NULL), *tmp = g_build_filename(dir, "tmp", NULL);
    VsRepo *r = fixture->repo;
    ThreadArg args[NTHREADS];
    GThread *threads[NTHREADS];
    uint64_t shared_total = 0;

    for (guint t = 0; t < NTHREADS; t++) {
        args[t] = (ThreadArg){ .repo = r, .index = t };
        threads[t] = g_thread_new("put", put_thread, &args[t]);
    }
    for (guint t = 0; t < NTHREADS; t++) {
        g_thread_join(threads[t]);
        shared_total += args[t].stored_shared;
    }
    flush(r);
    g_assert_cmpuint(tu_count_files(chunks), ==, NSHARED + NTHREADS * NOWN);
    g_assert_cmpuint(tu_count_files(tmp), ==, 0);
    /* random data: each shared chunk costs about its size once, however
     * many threads raced to write it (a racer may write it too, never less) */
    g_assert_cmpuint(shared_total, >=, (uint64_t)NSHARED * CS);
    for (guint t = 0; t < NTHREADS; t++)
        for (guint i = 0; i < NOWN; i++) {
            g_autoptr(GError) err = NULL;
            size_t len = 0;
            g_autofree void *data = vs_repo_get_chunk(r, &args[t].own[i], &len, &err);

            g_assert_no_error(err);
            g_assert_nonnull(data);
            g_assert_cmpuint(len, ==, CS);
        }
}

/* Two processes back up into one repository at once, sharing half their data. */
static int
child_backup(const char *dir, guint32 seed)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = vs_repo_open(dir, false, true, 0, &err);
    g_autoptr(VsManifest) m = vs_manifest_new();
    VsManifestDisk *k = tu_add_disk(m, "dom", "vda");
    g_autofree uint8_t *buf = g_malloc(CS);

    if (!r || !vs_repo_lock_shared(r, &err))
        return 1;
    k->format = g_strdup("raw");
    k->virtual_size = 64 * CS;
    for (guint i = 0; i < 64; i++) {
        VsChunkRef ref = { .offset = (uint64_t)i * CS, .length = CS };

        /* even chunks shared by both processes, odd ones their own */
        tu_fill_random(buf, CS, i % 2 ? seed + i : 5000 + i);
        if (!vs_repo_put_chunk(r, buf, CS, &ref.digest, NULL, &err))
            return 2;
        g_array_append_val(k->chunks, ref);
    }
    return vs_repo_commit_manifest(r, m, &err) ? 0 : 3;
}

static void
test_processes(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    g_autofree char *chunks = g_build_filename(dir, "chunks", NULL);
    VsRepo *r = fixture->repo;
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) ids = NULL;
    uint64_t checked = 0;
    pid_t pids[2];

    for (int i = 0; i < 2; i++) {
        g_autofree char *seed = g_strdup_printf("%d", 100000 * (i + 1));
        char *const args[] = { self_exe, (char *)"--backup-child", dir, seed, NULL };

        pids[i] = tu_spawn(self_exe, args);
    }
    for (int i = 0; i < 2; i++)
        tu_wait_ok(pids[i]);
    ids = vs_repo_list(r, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(g_strv_length(ids), ==, 2);
    g_assert_cmpuint(tu_count_files(chunks), ==, 32 + 2 * 32);
    g_assert_true(vs_repo_verify(r, NULL, &problems, &checked, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_cmpuint(checked, ==, 96);
}

static void
test_list(TuRepo *fixture, gconstpointer test_data)
{
    VsRepo *r = fixture->repo;
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) ids = NULL;
    g_autofree char *a = NULL, *b = NULL, *c = NULL, *prefix = NULL;
    g_autoptr(VsManifest) m = NULL;
    GRegex *re;

    ids = vs_repo_list(r, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(g_strv_length(ids), ==, 0);
    g_clear_pointer(&ids, g_strfreev);
    g_assert_null(vs_repo_load_manifest(r, "latest", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);

    /* three backups within a second or two: "latest" is still the last */
    a = tu_commit_backup(r, "dom", "vda", 2, 1);
    b = tu_commit_backup(r, "dom", "vda", 2, 1);
    c = tu_commit_backup(r, "dom", "vda", 2, 3);
    re = g_regex_new("^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$", 0, 0, NULL);
    g_assert_true(g_regex_match(re, a, 0, NULL));
    g_regex_unref(re);

    ids = vs_repo_list(r, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(g_strv_length(ids), ==, 3);
    g_assert_cmpstr(ids[0], ==, a);
    g_assert_cmpstr(ids[1], ==, b);
    g_assert_cmpstr(ids[2], ==, c);

    m = vs_repo_load_manifest(r, "latest", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(m->id, ==, c);
    g_clear_pointer(&m, vs_manifest_free);

    m = vs_repo_load_manifest(r, a, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(m->id, ==, a);
    g_assert_cmpuint(m->chunk_size, ==, CS);
    g_clear_pointer(&m, vs_manifest_free);

    /* a prefix that is unique: everything up to the last random digit */
    prefix = g_strndup(c, strlen(c) - 1);
    if (!g_str_has_prefix(a, prefix) && !g_str_has_prefix(b, prefix)) {
        m = vs_repo_load_manifest(r, prefix, &err);
        g_assert_no_error(err);
        g_assert_cmpstr(m->id, ==, c);
        g_clear_pointer(&m, vs_manifest_free);
    }
    /* "2" matches all three */
    g_assert_null(vs_repo_load_manifest(r, "2", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "ambiguous"));
    g_assert_nonnull(strstr(err->message, a));
    g_assert_nonnull(strstr(err->message, b));
    g_assert_nonnull(strstr(err->message, c));
    g_clear_error(&err);
    g_assert_null(vs_repo_load_manifest(r, "1999", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_null(vs_repo_load_manifest(r, "../../etc/passwd", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);

    /* delete wants the full id */
    g_assert_false(vs_repo_delete(r, "2", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_false(vs_repo_delete(r, "latest", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_true(vs_repo_delete(r, b, &err));
    g_assert_no_error(err);
    g_clear_pointer(&ids, g_strfreev);
    ids = vs_repo_list(r, &err);
    g_assert_cmpuint(g_strv_length(ids), ==, 2);
    g_assert_cmpstr(ids[0], ==, a);
    g_assert_cmpstr(ids[1], ==, c);

    /* several at once stop at the first that fails, and say how many went */
    {
        const char *gone[] = { a, b, c, NULL };
        guint removed = 99;

        g_assert_false(vs_repo_delete_many(r, gone, &removed, &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
        g_assert_nonnull(strstr(err->message, b));
        g_clear_error(&err);
        g_assert_cmpuint(removed, ==, 1);
        g_clear_pointer(&ids, g_strfreev);
        ids = vs_repo_list(r, &err);
        g_assert_cmpuint(g_strv_length(ids), ==, 1);
        g_assert_cmpstr(ids[0], ==, c);
        gone[0] = c;
        gone[1] = NULL;
        g_assert_true(vs_repo_delete_many(r, gone, &removed, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(removed, ==, 1);
        g_clear_pointer(&ids, g_strfreev);
        ids = vs_repo_list(r, &err);
        g_assert_cmpuint(g_strv_length(ids), ==, 0);
    }
}

static void
test_commit_checks(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    g_autofree char *backups = g_build_filename(dir, "backups", NULL), *tmp = g_build_filename(dir, "tmp", NULL);
    VsRepo *r = fixture->repo;
    g_autoptr(VsManifest) m = vs_manifest_new();
    VsManifestDisk *k = tu_add_disk(m, "web1", "vda");
    g_autofree uint8_t *buf = g_malloc(CS);
    g_autoptr(GError) err = NULL;
    VsChunkRef ref = { .offset = 0, .length = CS };

    k->format = g_strdup("raw");
    k->virtual_size = 2 * CS;
    tu_fill_data(buf, CS, 42);
    vs_digest_compute(buf, CS, &ref.digest);   /* hashed, never put */
    g_array_append_val(k->chunks, ref);
    g_assert_false(vs_repo_commit_manifest(r, m, &err));
    g_assert_nonnull(strstr(err->message, "is not in the repository"));
    g_assert_nonnull(strstr(err->message, "web1"));
    g_clear_error(&err);

    /* Its name taken by a symlink (someone else's repository): the chunk
     * cannot be placed, and the error says what is in its way. */
    {
        char hex[VS_DIGEST_HEX_LEN];
        g_autofree char *fan = NULL, *file = NULL, *elsewhere = g_build_filename(dir, "elsewhere", NULL);

        vs_digest_to_hex(&ref.digest, hex);
        fan = g_strdup_printf("%s/chunks/%.2s", dir, hex);
        file = g_strdup_printf("%s/%s", fan, hex);
        g_assert_cmpint(g_mkdir_with_parents(fan, 0755), ==, 0);
        g_assert_cmpint(symlink(elsewhere, file), ==, 0);
        tu_put(r, buf, CS, &ref.digest, NULL);
        g_assert_false(vs_repo_commit_manifest(r, m, &err));
        g_assert_nonnull(strstr(err->message, "is not in the repository"));
        g_assert_nonnull(strstr(err->message, "is not a regular file"));
        g_assert_false(g_file_test(elsewhere, G_FILE_TEST_EXISTS));
        g_clear_error(&err);
        g_assert_cmpint(unlink(file), ==, 0);
    }

    tu_put(r, buf, CS, &ref.digest, NULL);
    g_array_index(k->chunks, VsChunkRef, 0).offset = 100;
    g_assert_false(vs_repo_commit_manifest(r, m, &err));
    g_assert_nonnull(strstr(err->message, "domains[0].disks[0].chunks[0]: offset is not a multiple of chunk_size"));
    g_clear_error(&err);
    g_assert_cmpuint(tu_count_files(backups), ==, 0);
    g_assert_cmpuint(tu_count_files(tmp), ==, 0);

    /* a disk whose format nobody stated */
    {
        g_autoptr(VsManifest) m2 = vs_manifest_new();

        tu_add_disk(m2, "web2", "vda");
        g_assert_false(vs_repo_commit_manifest(r, m2, &err));
        g_assert_nonnull(strstr(err->message, "domains[0].disks[0].format: missing or empty"));
        g_clear_error(&err);
    }
    g_assert_cmpuint(tu_count_files(backups), ==, 0);

    g_array_index(k->chunks, VsChunkRef, 0).offset = CS;
    g_assert_true(vs_repo_commit_manifest(r, m, &err));
    g_assert_no_error(err);
    /* the manifest and its summary */
    g_assert_cmpuint(tu_count_files(backups), ==, 2);
}

static void
test_gc(TuRepo *fixture, gconstpointer test_data)
{
    char *dir = fixture->dir;
    g_autofree char *chunks = g_build_filename(dir, "chunks", NULL);
    g_autofree char *old_tmp = g_build_filename(dir, "tmp", "chunk-1-dead.tmp", NULL);
    g_autofree char *new_tmp = g_build_filename(dir, "tmp", "chunk-2-live.tmp", NULL);
    g_autofree char *junk = g_build_filename(dir, "chunks", "README", NULL);
    g_autofree char *gone_tmp = NULL, *mine_tmp = NULL, *other_host_tmp = NULL;
    VsRepo *r = fixture->repo;
    pid_t dead;
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *a = NULL, *b = NULL;
    struct utimbuf old = { 0, 0 };
    uint64_t removed = 0, freed = 0;

    /* A: seeds 1..4; B: seeds 3..6 (two shared) */
    a = tu_commit_backup(r, "dom", "vda", 4, 1);
    b = tu_commit_backup(r, "dom", "vda", 4, 3);
    g_assert_cmpuint(tu_count_files(chunks), ==, 6);
    tu_write_file(old_tmp, "x", 1);
    tu_write_file(new_tmp, "x", 1);
    tu_write_file(junk, "not a chunk", 11);
    g_assert_cmpint(utime(old_tmp, &old), ==, 0);
    /* Fresh temp files named by their maker: of a process of this host that
     * is gone (removed at once), of a live one and of another host (the hour). */
    if ((dead = fork()) == 0)
        _exit(0);
    g_assert_cmpint(dead, >, 0);
    g_assert_cmpint(waitpid(dead, NULL, 0), ==, dead);
    gone_tmp = g_strdup_printf("%s/tmp/chunk-%d-0123456789abcdef@%s.tmp", dir, (int)dead, vs_temp_host());
    mine_tmp = g_strdup_printf("%s/tmp/chunk-%d-0123456789abcdef@%s.tmp", dir, (int)getpid(), vs_temp_host());
    other_host_tmp = g_strdup_printf("%s/tmp/chunk-%d-0123456789abcdef@not-%s.tmp", dir, (int)dead,
                                     vs_temp_host());
    tu_write_file(gone_tmp, "x", 1);
    tu_write_file(mine_tmp, "x", 1);
    tu_write_file(other_host_tmp, "x", 1);

    g_assert_true(vs_repo_gc(r, &removed, &freed, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(removed, ==, 0);
    g_assert_false(g_file_test(old_tmp, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(new_tmp, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(gone_tmp, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(mine_tmp, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(other_host_tmp, G_FILE_TEST_EXISTS));

    g_assert_true(vs_repo_delete(r, a, &err));
    g_assert_true(vs_repo_gc(r, &removed, &freed, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(removed, ==, 2);
    g_assert_cmpuint(freed, >, 0);
    g_assert_cmpuint(tu_count_files(chunks), ==, 4 + 1);
    g_assert_true(g_file_test(junk, G_FILE_TEST_EXISTS));
    g_assert_true(vs_repo_verify(r, NULL, &problems, NULL, &err));
    g_assert_cmpuint(problems->len, ==, 0);

    /* an unreadable manifest stops gc before it deletes anything */
    g_assert_true(vs_repo_delete(r, b, &err));
    {
        g_autofree char *bad = g_build_filename(dir, "backups", "20200101T000000Z-000000.json", NULL);

        tu_write_file(bad, "{", 1);
        g_assert_false(vs_repo_gc(r, &removed, &freed, &err));
        g_assert_nonnull(strstr(err->message, "nothing was deleted"));
        g_clear_error(&err);
        g_assert_cmpuint(tu_count_files(chunks), ==, 4 + 1);
        g_assert_cmpint(unlink(bad), ==, 0);
    }
    g_assert_true(vs_repo_gc(r, &removed, &freed, &err));
    g_assert_cmpuint(removed, ==, 4);
    g_assert_cmpuint(tu_count_files(chunks), ==, 1);
}

static gpointer
lock_thread(gpointer p)
{
    GError *err = NULL;

    return GINT_TO_POINTER(vs_repo_lock_shared(p, &err) ? 1 : (g_error_free(err), 0));
}

static void
test_gc_lock(void)
{
    g_autofree char *dir = tu_tmpdir();
    g_autofree char *lock = g_build_filename(dir, "lock", NULL);
    g_autoptr(VsRepo) writer = tu_open_new(dir, CS);
    g_autoptr(VsRepo) other = tu_open_new(dir, CS);
    g_autoptr(GError) err = NULL;
    g_autofree char *expect = NULL;
    GThread *t;
    int fd;

    g_assert_true(vs_repo_lock_shared(writer, &err));
    g_assert_true(vs_repo_lock_shared(writer, &err));   /* idempotent */
    expect = g_strdup_printf("repo: %s: a backup is running (lock held); run gc later", dir);
    g_assert_false(vs_repo_gc(other, NULL, NULL, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_BUSY);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    /* not even the writer's own VsRepo may collect under its backup */
    g_assert_false(vs_repo_gc(writer, NULL, NULL, &err));
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    /* two writers share */
    g_assert_true(vs_repo_lock_shared(other, &err));
    vs_repo_unlock(other);
    vs_repo_unlock(writer);
    g_assert_true(vs_repo_gc(other, NULL, NULL, &err));
    g_assert_no_error(err);

    /* a writer waits for a running gc */
    fd = open(lock, O_RDWR);
    g_assert_cmpint(flock(fd, LOCK_EX), ==, 0);
    t = g_thread_new("lock", lock_thread, writer);
    g_usleep(300 * 1000);
    close(fd);
    g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(t)), ==, 1);
    tu_rm_rf(dir);
}

/* A 2 MiB tmpfs filled mid-write: the error says so, and neither a partial
 * chunk nor a manifest is visible afterwards. */
static void
test_enospc(void)
{
    g_autofree char *mnt = tu_tmpdir();
    g_autofree char *dir = g_build_filename(mnt, "repo", NULL);
    g_autofree char *chunks = g_build_filename(dir, "chunks", NULL), *tmp = g_build_filename(dir, "tmp", NULL);
    g_autofree char *backups = g_build_filename(dir, "backups", NULL);
    g_autofree char *filler = g_build_filename(mnt, "filler", NULL);
    g_autofree uint8_t *buf = g_malloc(CS);
    g_autoptr(VsManifest) m = vs_manifest_new();
    VsManifestDisk *k = tu_add_disk(m, "dom", "vda");
    g_autoptr(GError) err = NULL;
    VsRepo *r;
    guint i, stored_chunks;
    int fd;

    if (!tu_mount_tmpfs(mnt, "2M")) {
        tu_rm_rf(mnt);
        return;
    }
    r = tu_open_new(dir, CS);
    k->format = g_strdup("raw");
    for (i = 0; i < 100; i++) {
        VsChunkRef ref = { .offset = (uint64_t)i * CS, .length = CS };

        tu_fill_random(buf, CS, 77 + i);
        if (!vs_repo_put_chunk(r, buf, CS, &ref.digest, NULL, &err))
            break;
        g_array_append_val(k->chunks, ref);
    }
    g_assert_cmpuint(i, <, 100);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_true(g_str_has_prefix(err->message, "repo: "));
    g_assert_nonnull(strstr(err->message, "writing chunk "));
    g_assert_true(g_str_has_suffix(err->message, ": No space left on device"));
    g_clear_error(&err);
    stored_chunks = k->chunks->len;
    /* the chunks before are pending, whole; the failed one left nothing */
    g_assert_cmpuint(tu_count_files(chunks), ==, 0);
    g_assert_cmpuint(tu_count_files(tmp), ==, stored_chunks);
    /* a flush needs no space: everything goes into place */
    g_assert_true(vs_repo_flush(r, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(tu_count_files(chunks), ==, stored_chunks);
    g_assert_cmpuint(tu_count_files(tmp), ==, 0);
    for (guint j = 0; j < k->chunks->len; j++) {
        size_t len = 0;
        g_autofree void *data = vs_repo_get_chunk(r, &g_array_index(k->chunks, VsChunkRef, j).digest, &len, &err);

        g_assert_no_error(err);
        g_assert_nonnull(data);
    }

    /* fill what is left, then try to commit */
    fd = open(filler, O_WRONLY | O_CREAT, 0644);
    memset(buf, 0xa5, CS);
    while (write(fd, buf, 4096) == 4096)
        ;
    close(fd);
    k->virtual_size = (uint64_t)stored_chunks * CS;
    g_assert_false(vs_repo_commit_manifest(r, m, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_true(g_str_has_suffix(err->message, ": No space left on device"));
    g_assert_nonnull(strstr(err->message, "writing manifest"));
    g_clear_error(&err);
    g_assert_cmpuint(tu_count_files(backups), ==, 0);
    g_assert_cmpuint(tu_count_files(tmp), ==, 0);
    vs_repo_close(r);

    /* opening for writing on a full disk says so too */
    r = vs_repo_open(dir, false, true, 0, &err);
    g_assert_null(r);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_nonnull(strstr(err->message, "No space left on device"));
    g_clear_error(&err);

    /* room again: the backup completes */
    g_assert_cmpint(unlink(filler), ==, 0);
    r = tu_open_new(dir, 0);
    g_assert_true(vs_repo_commit_manifest(r, m, &err));
    g_assert_no_error(err);
    vs_repo_close(r);
    tu_umount(mnt);
    tu_rm_rf(mnt);
}

static void
test_read_only(void)
{
    g_autofree char *top = tu_tmpdir();
    g_autofree char *dir = g_build_filename(top, "repo", NULL);
    g_autofree char *ro = g_build_filename(top, "ro", NULL);
    g_autofree char *id = NULL, *expect = NULL;
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *buf = g_malloc(CS);
    VsRepo *r = tu_open_new(dir, CS);
    g_autoptr(VsManifest) m = NULL;
    VsDigest d;

    id = tu_commit_backup(r, "dom", "vda", 3, 9);
    vs_repo_close(r);
    g_assert_cmpint(mkdir(ro, 0755), ==, 0);
    if (!tu_mount_ro(dir, ro)) {
        tu_rm_rf(top);
        return;
    }
    r = vs_repo_open(ro, false, true, 0, &err);
    g_assert_null(r);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    expect = g_strdup_printf("repo: %s is read-only: Read-only file system", ro);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    r = vs_repo_open(ro, true, true, 0, &err);
    g_assert_null(r);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);

    /* reading works */
    r = vs_repo_open(ro, false, false, 0, &err);
    g_assert_no_error(err);
    m = vs_repo_load_manifest(r, "latest", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(m->id, ==, id);
    g_assert_true(vs_repo_verify(r, NULL, &problems, NULL, &err));
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_true(vs_repo_lock_shared(r, &err));
    vs_repo_unlock(r);
    tu_fill_data(buf, CS, 1);
    g_assert_false(vs_repo_put_chunk(r, buf, CS, &d, NULL, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "read-only"));
    g_clear_error(&err);
    vs_repo_close(r);
    tu_umount(ro);
    tu_rm_rf(top);
}

int
main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--backup-child") == 0)
        return child_backup(argv[2], (guint32)atoi(argv[3]));
    self_exe = g_file_read_link("/proc/self/exe", NULL);
    tu_private_mounts();
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repo/digest", test_digest);
    g_test_add_func("/repo/is-zero", test_is_zero);
    g_test_add_func("/repo/open/create", test_open_create);
    g_test_add_func("/repo/open/errors", test_open_errors);
    TU_REPO_TEST("/repo/chunk/round-trip", test_chunk_round_trip);
    g_test_add_func("/repo/chunk/not-regular", test_chunk_not_regular);
    g_test_add_func("/repo/chunk/xxh64", test_xxh64);
    g_test_add_func("/repo/chunk/raw", test_chunk_raw);
    TU_REPO_TEST("/repo/chunk/compress-off", test_chunk_compress_off);
    TU_REPO_TEST("/repo/chunk/old-frames", test_chunk_old_frames);
    TU_REPO_TEST("/repo/chunk/zero", test_zero_chunks);
    TU_REPO_TEST("/repo/chunk/processes", test_processes);
    TU_REPO_TEST("/repo/chunk/threads", test_threads);
    TU_REPO_TEST("/repo/backups/list", test_list);
    TU_REPO_TEST("/repo/backups/commit-checks", test_commit_checks);
    TU_REPO_TEST("/repo/gc", test_gc);
    g_test_add_func("/repo/gc/lock", test_gc_lock);
    g_test_add_func("/repo/fault/enospc", test_enospc);
    g_test_add_func("/repo/fault/read-only", test_read_only);
    {
        int rc = g_test_run();

        g_free(self_exe);
        return rc;
    }
}
