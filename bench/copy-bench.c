/* copy-bench: how fast the copy engine backs up one image, next to the two
 * numbers that say whether that is good: a plain sequential read of the same
 * file (the ceiling for anything that reads it) and qemu-img convert -O qcow2
 * (what a user would otherwise run). It copies IMAGE into a temporary
 * repository through a file source (raw) or an image source (any other format,
 * via qemu-nbd), once or --repeat times, and prints throughput over the
 * virtual size and over the data actually read, bytes stored, and peak RSS
 * (VmHWM of this process for the engine; ru_maxrss of the child for qemu-img).
 * Page cache is left warm unless --drop-caches (root) empties it before each
 * measurement, so that all three see the same starting state. The engine's time
 * ends with vs_repo_flush: every chunk durable and in place, as before a manifest. */
#include "config.h"
#include "vs-source.h"
#include "vs-copy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1024.0 * 1024.0)

static gboolean drop_caches;
static char *format;
static char *dir;
static int threads;
static int readers;
static int inflight;
static int chunk_kib;
static int repeat = 1;
static gboolean skip_others;
static char *source_kind;

static GOptionEntry entries[] = {
    { "format", 'f', 0, G_OPTION_ARG_STRING, &format, "image format (default: raw: file source; "
      "anything else: image source through qemu-nbd)", "FMT" },
    { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &dir, "where the temporary repository and qcow2 go "
      "(default: $TMPDIR)", "DIR" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "engine workers (default: CPUs)", "N" },
    { "readers", 'R', 0, G_OPTION_ARG_INT, &readers, "engine reader threads on clones of the source "
      "(default: the engine's)", "N" },
    { "inflight", 'i', 0, G_OPTION_ARG_INT, &inflight, "chunks in flight (default: 16)", "N" },
    { "chunk-kib", 'c', 0, G_OPTION_ARG_INT, &chunk_kib, "repository chunk size in KiB "
      "(default: the repository's)", "KIB" },
    { "repeat", 'r', 0, G_OPTION_ARG_INT, &repeat, "engine runs (a fresh repository each)", "N" },
    { "drop-caches", 0, 0, G_OPTION_ARG_NONE, &drop_caches, "drop the page cache before each "
      "measurement (root)", NULL },
    { "engine-only", 0, 0, G_OPTION_ARG_NONE, &skip_others, "skip read and qemu-img", NULL },
    { "source", 's', 0, G_OPTION_ARG_STRING, &source_kind, "file, image (qemu-nbd) or mapped "
      "(qemu-img map + pread) (default: file for raw, else image)", "KIND" },
    G_OPTION_ENTRY_NULL,
};

static const char *
kind(const char *fmt)
{
    return source_kind ? source_kind : g_str_equal(fmt, "raw") ? "file" : "image";
}

static VsSource *
open_source(const char *path, const char *fmt, GError **error)
{
    if (g_str_equal(kind(fmt), "file"))
        return vs_source_open_file(path, error);
    if (g_str_equal(kind(fmt), "mapped"))
        return vs_source_open_mapped(path, fmt, error);
    return vs_source_open_image(path, fmt, error);
}

static void
drop(void)
{
    int fd;

    if (!drop_caches)
        return;
    sync();
    fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (fd < 0 || write(fd, "3\n", 2) != 2) {
        fprintf(stderr, "copy-bench: --drop-caches: %s\n", g_strerror(errno));
        exit(1);
    }
    close(fd);
}

static double
now(void)
{
    return (double)g_get_monotonic_time() / G_USEC_PER_SEC;
}

/* CPU seconds (user + system) of this process, or of its reaped children. */
static double
cpu_seconds(int who)
{
    struct rusage ru;

    getrusage(who, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Seconds this process's live threads have spent runnable but not running
 * (the second field of /proc/self/task/N/schedstat): on a shared machine, the
 * part of the wall time that is other jobs' CPU rather than our own waits.
 * Threads that have exited are not counted. */
static double
runqueue_seconds(void)
{
    g_autoptr(GDir) d = g_dir_open("/proc/self/task", 0, NULL);
    const char *tid;
    double sum = 0;

    while (d && (tid = g_dir_read_name(d))) {
        g_autofree char *path = g_strdup_printf("/proc/self/task/%s/schedstat", tid);
        g_autofree char *text = NULL;
        unsigned long long run = 0, wait = 0;

        if (g_file_get_contents(path, &text, NULL, NULL) && sscanf(text, "%llu %llu", &run, &wait) == 2)
            sum += wait / 1e9;
    }
    return sum;
}

static uint64_t
vm_hwm_kib(void)
{
    g_autofree char *status = NULL;
    const char *p;

    if (!g_file_get_contents("/proc/self/status", &status, NULL, NULL) ||
        !(p = strstr(status, "VmHWM:")))
        return 0;
    return g_ascii_strtoull(p + 6, NULL, 10);
}

static void
rm_rf(const char *path)
{
    g_autofree char *quoted = g_shell_quote(path);
    g_autofree char *cmd = g_strdup_printf("rm -rf %s", quoted);

    (void)g_spawn_command_line_sync(cmd, NULL, NULL, NULL, NULL);
}

static bool
bench_read(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_autofree char *buf = g_malloc(1 << 20);
    uint64_t total = 0;
    double t0;
    ssize_t n;

    if (fd < 0) {
        fprintf(stderr, "copy-bench: %s: %s\n", path, g_strerror(errno));
        return false;
    }
    drop();
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    t0 = now();
    while ((n = read(fd, buf, 1 << 20)) > 0)
        total += (uint64_t)n;
    close(fd);
    printf("plain read         %8.1f MiB/s  (%.0f MiB file, %.2f s)\n",
           total / MiB / (now() - t0), total / MiB, now() - t0);
    return true;
}

/* The source alone: its data extents read front to back into one buffer, the
 * ceiling for the engine's reading side. */
static bool
bench_source(const char *path, const char *fmt)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(GArray) ext = g_array_new(FALSE, FALSE, sizeof(VsExtent));
    g_autofree char *buf = g_malloc(1 << 20);
    uint64_t pos = 0, size, total = 0;
    double t0, t;

    drop();
    t0 = now();
    src = open_source(path, fmt, &err);
    if (!src)
        goto fail;
    size = vs_source_size(src);
    while (pos < size) {
        g_array_set_size(ext, 0);
        if (!vs_source_extents(src, pos, size - pos, ext, &err))
            goto fail;
        for (guint i = 0; i < ext->len; i++) {
            VsExtent *e = &g_array_index(ext, VsExtent, i);
            for (uint64_t off = e->offset; !e->zero && off < e->offset + e->length; off += 1 << 20) {
                size_t n = MIN(1 << 20, e->offset + e->length - off);
                if (!vs_source_pread(src, buf, n, off, &err))
                    goto fail;
                total += n;
            }
            pos = e->offset + e->length;
        }
    }
    t = now() - t0;
    printf("source read (%s) %7.1f MiB/s  (%.0f MiB of data, %.2f s)\n", src->ops->name,
           total / MiB / t, total / MiB, t);
    return true;
fail:
    fprintf(stderr, "copy-bench: %s\n", err->message);
    return false;
}

static bool
bench_qemu_img(const char *path, const char *fmt, const char *tmpdir, uint64_t size)
{
    g_autofree char *out = g_build_filename(tmpdir, "convert.qcow2", NULL);
    struct rusage ru;
    int status;
    double t0, t;
    pid_t pid;

    drop();
    t0 = now();
    pid = fork();
    if (pid == 0) {
        execlp("qemu-img", "qemu-img", "convert", "-f", fmt, "-O", "qcow2", path, out, (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "copy-bench: qemu-img convert failed\n");
        return false;
    }
    t = now() - t0;
    printf("qemu-img convert   %8.1f MiB/s  (%.2f s, CPU %.2f s, peak RSS %.1f MiB)\n",
           size / MiB / t, t, ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6, ru.ru_maxrss / 1024.0);
    unlink(out);
    return true;
}

static bool
bench_engine(const char *path, const char *fmt, const char *tmpdir, int run, uint64_t *size)
{
    g_autofree char *repo_dir = g_strdup_printf("%s/repo%d", tmpdir, run);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(VsRepo) repo = NULL;
    VsManifestDisk disk = { 0 };
    VsCopyOptions opts;
    double t0, t, tf, cpu0 = cpu_seconds(RUSAGE_SELF), ccpu0 = cpu_seconds(RUSAGE_CHILDREN);
    double rq0 = runqueue_seconds();

    drop();
    t0 = now();
    repo = vs_repo_open(repo_dir, true, true, (uint32_t)chunk_kib * 1024, &err);
    if (repo)
        src = open_source(path, fmt, &err);
    vs_copy_options_init(&opts);
    if (threads > 0)
        opts.threads = (unsigned)threads;
    if (readers > 0)
        opts.readers = (unsigned)readers;
    if (inflight > 0)
        opts.max_inflight = (unsigned)inflight;
    if (!src || !vs_copy_source_to_repo(src, repo, &disk, &opts, &err)) {
        fprintf(stderr, "copy-bench: %s\n", err->message);
        return false;
    }
    /* Every chunk durable and in place, as a backup needs before its manifest:
     * without it the engine would be timed without its writes' cost. */
    tf = now();
    if (!vs_repo_flush(repo, &err)) {
        fprintf(stderr, "copy-bench: %s\n", err->message);
        return false;
    }
    t = now() - t0;
    tf = now() - tf;
    *size = disk.virtual_size;
    g_array_unref(disk.chunks);
    /* Closing reaps the image source's qemu-nbd servers: their CPU counts too. */
    g_clear_pointer(&src, vs_source_close);
    g_clear_pointer(&repo, vs_repo_close);
    printf("engine (%s) %8.1f MiB/s  (%.2f s incl. final flush %.2f s, CPU %.2f s + servers %.2f s, "
           "runnable but not running %.2f s; data %.1f MiB/s, %.0f MiB read, %.0f MiB stored, "
           "peak RSS %.1f MiB)\n",
           kind(fmt), disk.virtual_size / MiB / t, t, tf,
           cpu_seconds(RUSAGE_SELF) - cpu0, cpu_seconds(RUSAGE_CHILDREN) - ccpu0,
           runqueue_seconds() - rq0,
           disk.bytes_read / MiB / t, disk.bytes_read / MiB, disk.bytes_stored / MiB,
           vm_hwm_kib() / 1024.0);
    rm_rf(repo_dir);
    return true;
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new("IMAGE");
    g_autoptr(GError) err = NULL;
    g_autofree char *tmpdir = NULL;
    uint64_t size = 0;
    bool ok = true;

    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_summary(ctx, "Backs IMAGE up into a temporary repository with the copy "
                                 "engine and compares with a plain read and qemu-img convert.");
    if (!g_option_context_parse(ctx, &argc, &argv, &err) || argc != 2) {
        fprintf(stderr, "copy-bench: %s\n", err ? err->message : "one IMAGE expected (--help)");
        return 2;
    }
    if (!format)
        format = g_strdup("raw");
    tmpdir = g_build_filename(dir ? dir : g_get_tmp_dir(), "copy-bench-XXXXXX", NULL);
    if (!g_mkdtemp(tmpdir)) {
        fprintf(stderr, "copy-bench: temporary directory: %s\n", g_strerror(errno));
        return 1;
    }
    if (!skip_others)
        ok = bench_read(argv[1]) && bench_source(argv[1], format);
    for (int i = 0; ok && i < MAX(repeat, 1); i++)
        ok = bench_engine(argv[1], format, tmpdir, i, &size);
    if (ok && !skip_others)
        ok = bench_qemu_img(argv[1], format, tmpdir, size);
    rm_rf(tmpdir);
    g_free(format);
    g_free(dir);
    return ok ? 0 : 1;
}
