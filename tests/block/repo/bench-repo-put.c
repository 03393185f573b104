/* put_chunk throughput, the number that decides whether the repository or the
 * source limits a backup: 1 MiB chunks of random data (incompressible: the
 * worst case for zstd, the usual one for SHA-256) and of real files (shared
 * libraries, as compressible as a typical system disk), into a fresh repository
 * on one thread and on all CPUs; then, to justify the zstd level, ratio and speed
 * of levels 1, 3 and 6 on the real-file chunks, and SHA-256 alone. The time
 * includes the final vs_repo_flush: every chunk durable, as a commit needs.
 * usage: bench-repo-put [MIB] (default 256); the repository is made in $TMPDIR. */
#include "repo-test-util.h"

#include <zstd.h>

#define MIB (1024 * 1024)

typedef struct {
    VsRepo *repo;
    uint8_t **chunks;
    guint n;
    gint next;
    gint64 stored;
} Job;

static gpointer
worker(gpointer p)
{
    Job *job = p;
    gint i;

    while ((i = g_atomic_int_add(&job->next, 1)) < (gint)job->n) {
        g_autoptr(GError) err = NULL;
        uint64_t stored = 0;
        VsDigest d;

        if (!vs_repo_put_chunk(job->repo, job->chunks[i], MIB, &d, &stored, &err))
            g_error("%s", err->message);
        g_atomic_pointer_add(&job->stored, (gssize)stored);
    }
    return NULL;
}

static void
run(const char *what, uint8_t **chunks, guint n, guint nthreads)
{
    g_autofree char *dir = tu_tmpdir();
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) repo = vs_repo_open(dir, true, true, MIB, &err);
    Job job = { repo, chunks, n, 0, 0 };
    GThread *threads[64];
    gint64 t0;
    double secs;

    g_assert_no_error(err);
    t0 = g_get_monotonic_time();
    for (guint t = 0; t < nthreads; t++)
        threads[t] = g_thread_new("put", worker, &job);
    for (guint t = 0; t < nthreads; t++)
        g_thread_join(threads[t]);
    if (!vs_repo_flush(repo, &err))
        g_error("%s", err->message);
    secs = (double)(g_get_monotonic_time() - t0) / G_USEC_PER_SEC;
    g_print("put_chunk %-10s %u thread(s): %4u MiB in %.2f s = %6.0f MB/s (stored %.0f%%)\n", what, nthreads, n,
            secs, n * (double)MIB / 1e6 / secs, 100.0 * (double)job.stored / ((double)n * MIB));
    tu_rm_rf(dir);
}

/* Chunks cut from the shared libraries on this machine. */
static guint
real_chunks(uint8_t **chunks, guint max)
{
    g_autoptr(GDir) d = g_dir_open("/usr/lib/x86_64-linux-gnu", 0, NULL);
    const char *name;
    guint n = 0;
    size_t fill = 0;

    if (!d)
        return 0;
    chunks[0] = g_malloc(MIB);
    while (n < max && (name = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename("/usr/lib/x86_64-linux-gnu", name, NULL);
        g_autofree char *data = NULL;
        gsize len = 0, off = 0;

        if (!g_file_test(p, G_FILE_TEST_IS_REGULAR) || !g_file_get_contents(p, &data, &len, NULL))
            continue;
        while (off < len && n < max) {
            size_t take = MIN(len - off, (size_t)MIB - fill);

            memcpy(chunks[n] + fill, data + off, take);
            fill += take;
            off += take;
            if (fill == MIB) {
                fill = 0;
                if (++n < max)
                    chunks[n] = g_malloc(MIB);
            }
        }
    }
    if (n < max)
        g_free(chunks[n]);
    return n;
}

int
main(int argc, char **argv)
{
    guint n = argc > 1 ? (guint)atoi(argv[1]) : 256;
    guint cpus = MIN(g_get_num_processors(), 64);
    g_autofree uint8_t **rnd = g_new0(uint8_t *, n);
    g_autofree uint8_t **real = g_new0(uint8_t *, n);
    g_autofree uint8_t *zbuf = g_malloc(ZSTD_compressBound(MIB));
    guint nreal;

    for (guint i = 0; i < n; i++) {
        rnd[i] = g_malloc(MIB);
        tu_fill_random(rnd[i], MIB, i + 1);
    }
    nreal = real_chunks(real, n);
    g_print("%u CPUs\n", cpus);
    run("random", rnd, n, 1);
    run("random", rnd, n, cpus);
    if (nreal) {
        run("real-files", real, nreal, 1);
        run("real-files", real, nreal, cpus);
    }
    for (int level = 1; nreal && level <= 6; level += level == 1 ? 2 : 3) {
        ZSTD_CCtx *c = ZSTD_createCCtx();
        gint64 t0 = g_get_monotonic_time();
        double total = 0, secs;

        for (guint i = 0; i < nreal; i++)
            total += (double)ZSTD_compressCCtx(c, zbuf, ZSTD_compressBound(MIB), real[i], MIB, level);
        secs = (double)(g_get_monotonic_time() - t0) / G_USEC_PER_SEC;
        g_print("zstd level %d on real-file chunks: %6.0f MB/s, compressed to %.1f%%\n", level,
                nreal * (double)MIB / 1e6 / secs, 100.0 * total / (nreal * (double)MIB));
        ZSTD_freeCCtx(c);
    }
    {
        gint64 t0 = g_get_monotonic_time();
        VsDigest d;

        for (guint i = 0; i < n; i++)
            vs_digest_compute(rnd[i], MIB, &d);
        g_print("SHA-256 alone: %.0f MB/s\n",
                n * (double)MIB / 1e6 / ((double)(g_get_monotonic_time() - t0) / G_USEC_PER_SEC));
    }
    for (guint i = 0; i < n; i++)
        g_free(rnd[i]);
    for (guint i = 0; i < nreal; i++)
        g_free(real[i]);
    return 0;
}
