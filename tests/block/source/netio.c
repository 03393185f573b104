/* netio: reads, writes and backs up a source given by URL, for the network
 * source tests (tests/block/source/net-sources.sh) and bench/net-bench.sh,
 * which start the real targets around it. It is a thin shell over the public
 * API (vs_source_open_url, pread/pwrite/flush, the copy engine, the
 * repository), so that what it shows is what a caller gets: the bytes, the
 * error text on stderr and the exit status (0, or 1 with the GError's message).
 * --at-half CMD runs a shell command once, half way through (kill a server
 * in the middle of a read, restart it in the background): deterministic where
 * a timer racing the copy would not be.
 *
 *   netio read URL OUT        OUT: a file, or - to discard (throughput)
 *   netio write URL IN        IN's bytes over the start of the sink, then flush
 *   netio backup URL REPO     the copy engine into REPO (created), one backup
 *                             with domain "net", disk "vda"
 *   netio size URL
 *   netio extents URL         "OFFSET LENGTH data|zero" lines, merged
 * Prints "bytes=N secs=S MBps=M" on stdout for read/backup. */
#include "config.h"
#include "source-internal.h"   /* vs_url_strip_credentials */
#include "vs-copy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK ((size_t)4 << 20)

static char *at_half;
static char *auth_file;
static int readers;
static gboolean writable;

static GOptionEntry entries[] = {
    { "at-half", 0, 0, G_OPTION_ARG_STRING, &at_half, "shell command run once half way", "CMD" },
    { "auth-file", 0, 0, G_OPTION_ARG_FILENAME, &auth_file, "CHAP credentials (user=, password=)",
      "PATH" },
    { "readers", 'R', 0, G_OPTION_ARG_INT, &readers, "engine reader threads (backup)", "N" },
    { "writable", 'w', 0, G_OPTION_ARG_NONE, &writable, "open writable (read, size)", NULL },
    G_OPTION_ENTRY_NULL,
};

static bool half_done;

static void
maybe_half(uint64_t done, uint64_t total)
{
    if (!at_half || half_done || done < total / 2)
        return;
    half_done = true;
    fprintf(stderr, "netio: at %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes: %s\n", done,
            total, at_half);
    if (system(at_half) != 0)
        fprintf(stderr, "netio: --at-half command failed\n");
}

static void
report(uint64_t bytes, gint64 t0)
{
    double secs = (double)(g_get_monotonic_time() - t0) / 1e6;

    printf("bytes=%" G_GUINT64_FORMAT " secs=%.3f MBps=%.1f\n", bytes, secs,
           (double)bytes / 1e6 / (secs > 0 ? secs : 1e-9));
}

static bool
do_read(VsSource *src, const char *out, GError **error)
{
    uint64_t size = vs_source_size(src);
    g_autofree char *buf = g_malloc(BLOCK);
    FILE *f = strcmp(out, "-") ? fopen(out, "wb") : NULL;
    gint64 t0 = g_get_monotonic_time();

    if (strcmp(out, "-") && !f) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "netio: %s: %s", out, g_strerror(errno));
        return false;
    }
    for (uint64_t at = 0; at < size;) {
        g_autoptr(GArray) ext = g_array_new(FALSE, FALSE, sizeof(VsExtent));
        if (!vs_source_extents(src, at, size - at, ext, error))
            goto fail;
        for (guint i = 0; i < ext->len; i++) {
            VsExtent *e = &g_array_index(ext, VsExtent, i);
            for (uint64_t p = e->offset; p < e->offset + e->length; p += BLOCK) {
                size_t n = (size_t)MIN((uint64_t)BLOCK, e->offset + e->length - p);
                if (e->zero)
                    memset(buf, 0, n);
                else if (!vs_source_pread(src, buf, n, p, error))
                    goto fail;
                if (f && fwrite(buf, 1, n, f) != n) {
                    g_set_error(error, VS_ERROR, VS_ERROR_IO, "netio: %s: short write", out);
                    goto fail;
                }
                maybe_half(p + n, size);
            }
            at = e->offset + e->length;
        }
    }
    if (f && fclose(f) != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "netio: %s: %s", out, g_strerror(errno));
        return false;
    }
    report(size, t0);
    return true;
fail:
    if (f)
        fclose(f);
    return false;
}

static bool
do_write(VsSource *src, const char *in, GError **error)
{
    g_autofree char *data = NULL;
    gsize len = 0;

    if (!g_file_get_contents(in, &data, &len, error) || !vs_sink_check_size(src, len, error))
        return false;
    for (gsize at = 0; at < len; at += BLOCK) {
        size_t n = MIN(BLOCK, len - at);
        if (!vs_source_pwrite(src, data + at, n, at, error))
            return false;
        maybe_half(at + n, len);
    }
    return vs_source_flush(src, error);
}

static bool
do_extents(VsSource *src, GError **error)
{
    uint64_t size = vs_source_size(src), start = 0, at = 0;
    int kind = -1;

    while (at < size) {
        g_autoptr(GArray) ext = g_array_new(FALSE, FALSE, sizeof(VsExtent));
        if (!vs_source_extents(src, at, size - at, ext, error))
            return false;
        for (guint i = 0; i < ext->len; i++) {
            VsExtent *e = &g_array_index(ext, VsExtent, i);
            if (kind >= 0 && kind != e->zero) {
                printf("%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %s\n", start, e->offset - start,
                       kind ? "zero" : "data");
                start = e->offset;
            }
            kind = e->zero;
            at = e->offset + e->length;
        }
    }
    if (kind >= 0)
        printf("%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %s\n", start, size - start,
               kind ? "zero" : "data");
    return true;
}

static void
progress(uint64_t done, uint64_t total, void *opaque)
{
    maybe_half(done, total);
}

static bool
do_backup(VsSource *src, const char *url, const char *repo_path, GError **error)
{
    g_autoptr(VsRepo) repo = vs_repo_open(repo_path, true, true, 0, error);
    g_autoptr(VsManifest) m = vs_manifest_new();
    VsManifestDomain *dom = vs_manifest_add_domain(m, "net");
    VsManifestDisk *disk = vs_manifest_domain_add_disk(dom, "vda");
    VsCopyOptions opts;
    gint64 t0 = g_get_monotonic_time();

    if (!repo)
        return false;
    vs_copy_options_init(&opts);
    opts.readers = (unsigned)readers;
    opts.progress = progress;
    disk->format = g_strdup("raw");
    disk->source = vs_url_strip_credentials(url);
    if (!vs_copy_source_to_repo(src, repo, disk, &opts, error))
        return false;
    report(disk->virtual_size, t0);
    return vs_repo_commit_manifest(repo, m, error);
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new("read|write|backup|size|extents URL [ARG]");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsIscsiAuth) auth = NULL;
    g_autoptr(VsSource) src = NULL;
    const char *cmd, *url;
    bool ok = false;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err) || argc < 3) {
        fprintf(stderr, "usage: netio [OPTION...] read|write|backup|size|extents URL [ARG]%s%s\n",
                err ? ": " : "", err ? err->message : "");
        return 2;
    }
    cmd = argv[1];
    url = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (auth_file && !(auth = vs_iscsi_auth_load(auth_file, &err)))
        goto out;
    src = vs_source_open_url(url, auth, writable || g_str_equal(cmd, "write"), &err);
    if (!src)
        goto out;
    if (g_str_equal(cmd, "size")) {
        printf("%" G_GUINT64_FORMAT "\n", vs_source_size(src));
        ok = true;
    } else if (g_str_equal(cmd, "extents")) {
        ok = do_extents(src, &err);
    } else if (g_str_equal(cmd, "read") && argc == 4) {
        ok = do_read(src, argv[3], &err);
    } else if (g_str_equal(cmd, "write") && argc == 4) {
        ok = do_write(src, argv[3], &err);
    } else if (g_str_equal(cmd, "backup") && argc == 4) {
        ok = do_backup(src, url, argv[3], &err);
    } else {
        fprintf(stderr, "netio: unknown command or wrong arguments: %s\n", cmd);
        return 2;
    }
out:
    if (!ok) {
        fprintf(stderr, "%s\n", err ? err->message : "failed");
        return 1;
    }
    return 0;
}
