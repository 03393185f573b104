/* snaprecord: a backup made of a storage snapshot, without libvirt, for the
 * tests of what a repository knows about its snapshots (snapshots-repo.sh):
 *   snaprecord --repo R --domain D --disk vda --path FILE
 *              (--snapshot-dir BASE | --hook PATH --pool POOL) [--copy]
 * takes a real snapshot of FILE through the block API (reflink into
 * BASE/virtsnap-snapshots, or the hook), then commits a manifest through the
 * vs_repo API recording it as `backup --storage-snapshot` does: with --copy
 * the disk's data read from the snapshot into the repository too (in_repo
 * true), else the snapshot alone (in_repo false, a --no-copy backup). Prints
 * the backup's id; errors as "snaprecord: MESSAGE", exit 1 (2: usage). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "vs-snapshot.h"

static char *opt_repo, *opt_domain, *opt_disk = "vda", *opt_path, *opt_base, *opt_hook, *opt_pool;
static gboolean opt_copy;

static const GOptionEntry entries[] = {
    {"repo", 0, 0, G_OPTION_ARG_FILENAME, &opt_repo, "repository", "DIR"},
    {"domain", 0, 0, G_OPTION_ARG_STRING, &opt_domain, "domain name", "NAME"},
    {"disk", 0, 0, G_OPTION_ARG_STRING, &opt_disk, "disk target (vda)", "TARGET"},
    {"path", 0, 0, G_OPTION_ARG_FILENAME, &opt_path, "the disk's file (raw)", "FILE"},
    {"snapshot-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_base, "reflink, snapshots below DIR", "DIR"},
    {"hook", 0, 0, G_OPTION_ARG_FILENAME, &opt_hook, "hook provider", "PATH"},
    {"pool", 0, 0, G_OPTION_ARG_STRING, &opt_pool, "libvirt pool the disk is in", "POOL"},
    {"copy", 0, 0, G_OPTION_ARG_NONE, &opt_copy, "copy the snapshot's data into the repository too", NULL},
    G_OPTION_ENTRY_NULL,
};

/* The snapshot's bytes into DISK's chunks, as the copy engine stores them. */
static bool
copy_in(VsRepo *repo, VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, VsManifestDisk *disk,
        GError **error)
{
    g_autoptr(VsSource) src = vs_snap_open(p, loc, handle, "raw", error);
    uint32_t cs = vs_repo_chunk_size(repo);
    g_autofree uint8_t *buf = g_malloc(cs);

    if (!src)
        return false;
    disk->virtual_size = vs_source_size(src);
    for (uint64_t off = 0; off < disk->virtual_size; off += cs) {
        VsChunkRef ref = { .offset = off, .length = (uint32_t)MIN((uint64_t)cs, disk->virtual_size - off) };

        if (!vs_source_pread(src, buf, ref.length, off, error))
            return false;
        if (vs_buffer_is_zero(buf, ref.length))
            continue;
        if (!vs_repo_put_chunk(repo, buf, ref.length, &ref.digest, NULL, error))
            return false;
        g_array_append_val(disk->chunks, ref);
    }
    return true;
}

static bool
record(GError **error)
{
    VsSnapHookConfig hook = { .path = opt_hook };
    g_autoptr(VsRepo) repo = vs_repo_open(opt_repo, false, true, 0, error);
    g_autoptr(VsManifest) m = vs_manifest_new();
    g_autoptr(VsSnapProvider) p = NULL;
    g_autofree char *name = g_strdup_printf("%s/%s", opt_domain, opt_disk);
    g_autofree char *label = NULL, *handle = NULL;
    VsSnapLocation loc = { .kind = VS_SNAP_LOC_FILE, .disk = name, .path = opt_path, .pool = opt_pool,
                           .iscsi_lun = -1 };
    VsManifestDomain *d;
    VsManifestDisk *disk;
    struct stat st;

    if (!repo || !vs_repo_lock_shared(repo, error))
        return false;
    p = opt_hook ? vs_snap_hook_new(&hook, error) : vs_snap_reflink_new(opt_base, error);
    label = g_strdup_printf("virtsnap-%s-%s", m->id, opt_disk);
    if (!p || !(handle = vs_snap_create(p, &loc, label, error)))
        return false;
    d = vs_manifest_add_domain(m, opt_domain);
    d->consistency = g_strdup("crash");
    disk = vs_manifest_domain_add_disk(d, opt_disk);
    disk->format = g_strdup("raw");
    disk->source = g_strdup(opt_path);
    disk->snapshot = vs_manifest_snapshot_new();
    disk->snapshot->provider = g_strdup(vs_snap_provider_name(p));
    disk->snapshot->handle = g_strdup(handle);
    disk->snapshot->kind = g_strdup("file");
    disk->snapshot->path = g_strdup(opt_path);
    disk->snapshot->snapshot_dir = g_strdup(opt_hook ? NULL : opt_base);
    disk->snapshot->pool = g_strdup(opt_pool);
    if (stat(opt_path, &st) == 0)
        disk->virtual_size = disk->snapshot->size = (uint64_t)st.st_size;
    disk->in_repo = opt_copy;
    if (opt_copy && !copy_in(repo, p, &loc, handle, disk, error))
        return false;
    if (!vs_repo_commit_manifest(repo, m, error))
        return false;
    printf("%s\n", m->id);
    return true;
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) octx = g_option_context_new("- a backup of a storage snapshot, for tests");
    g_autoptr(GError) err = NULL;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err) || !opt_repo || !opt_domain || !opt_path ||
        !(opt_base || opt_hook) || (opt_hook && !opt_pool)) {
        fprintf(stderr, "snaprecord: %s\n", err ? err->message : "give --repo, --domain, --path and "
                "--snapshot-dir or --hook with --pool");
        return 2;
    }
    if (!record(&err)) {
        fprintf(stderr, "snaprecord: %s\n", err->message);
        return 1;
    }
    return 0;
}
