/* repo-gen: makes a large synthetic repository for bench/repo-scale.sh, fast.
 * The chunks are real (DISTINCT random chunks put through vs_repo_put_chunk,
 * so verify reads and hashes real files); the manifests are synthetic: BACKUPS
 * backups of one small domain each, every disk REFS chunk references long,
 * each backup's window over the distinct chunks shifted by one so that
 * consecutive backups share almost all their chunks, as daily backups of one
 * disk do. The manifests are written with vs_manifest_to_json straight into
 * backups/ (without commit's fsyncs and per-chunk checks, which would make a
 * 10,000-backup repository take minutes to build, not seconds), each with the
 * summary commit writes beside it (--no-summary: none, as a repository written
 * before summaries). Backups are
 * an hour apart, or TIES to a second (several backups started within one
 * second, the case that made list re-read every manifest of that second). */
#include "config.h"
#include "vs-repo.h"
#include "repo-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int backups = 100;
static int refs = 100;
static int distinct = 1024;
static int ties = 1;
static int chunk_kib = 4;
static gboolean no_summary;

static GOptionEntry entries[] = {
    { "backups", 'n', 0, G_OPTION_ARG_INT, &backups, "number of backups (default 100)", "N" },
    { "refs", 0, 0, G_OPTION_ARG_INT, &refs, "chunk references per backup (default 100)", "R" },
    { "distinct", 0, 0, G_OPTION_ARG_INT, &distinct, "distinct real chunks (default 1024)", "D" },
    { "ties", 0, 0, G_OPTION_ARG_INT, &ties, "backups per second of id (default 1: all distinct)", "K" },
    { "chunk-kib", 0, 0, G_OPTION_ARG_INT, &chunk_kib, "chunk size of a new repository, KiB (default 4)", "KIB" },
    { "no-summary", 0, 0, G_OPTION_ARG_NONE, &no_summary, "write manifests only (a repository from before summaries)", NULL },
    G_OPTION_ENTRY_NULL
};

/* A domain XML of realistic size (what a manifest carries besides chunks). */
static char *
domain_xml(int b)
{
    GString *s = g_string_new("<domain type='kvm'>\n  <name>vm1</name>\n");

    g_string_append_printf(s, "  <description>synthetic backup %d</description>\n", b);
    for (int i = 0; i < 24; i++)
        g_string_append_printf(s, "  <!-- device %02d --><interface type='network'><source network='n%d'/>"
                               "<model type='virtio'/></interface>\n", i, i);
    g_string_append(s, "</domain>\n");
    return g_string_free(s, FALSE);
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) octx = g_option_context_new("REPO - make a synthetic repository");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) repo = NULL;
    g_autofree VsDigest *digests = NULL;
    g_autofree char *backups_dir = NULL;
    g_autofree char *xml = domain_xml(0);
    GRand *rnd = g_rand_new_with_seed(13);
    uint32_t cs;
    /* 2025-01-01T00:00:00Z */
    const int64_t base = 1735689600;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err) || argc != 2 || backups < 1 || refs < 1 ||
        distinct < 1 || ties < 1 || backups > 0xffffff) {
        fprintf(stderr, "repo-gen: %s\n", err ? err->message : "give REPO; counts of 1 or more");
        return 2;
    }
    if (!(repo = vs_repo_open(argv[1], true, true, (uint32_t)chunk_kib * 1024, &err)) ||
        !vs_repo_lock_shared(repo, &err)) {
        fprintf(stderr, "repo-gen: %s\n", err->message);
        return 1;
    }
    cs = vs_repo_chunk_size(repo);
    digests = g_new(VsDigest, distinct);
    {
        g_autofree uint32_t *buf = g_malloc(cs);

        for (int i = 0; i < distinct; i++) {
            for (uint32_t w = 0; w < cs / 4; w++)
                buf[w] = g_rand_int(rnd);
            if (!vs_repo_put_chunk(repo, buf, cs, &digests[i], NULL, &err)) {
                fprintf(stderr, "repo-gen: %s\n", err->message);
                return 1;
            }
        }
    }
    if (!vs_repo_flush(repo, &err)) {
        fprintf(stderr, "repo-gen: %s\n", err->message);
        return 1;
    }
    backups_dir = g_build_filename(argv[1], "backups", NULL);
    for (int b = 0; b < backups; b++) {
        g_autoptr(VsManifest) m = vs_manifest_new();
        int64_t sec = base + (int64_t)(b / ties) * (ties > 1 ? 1 : 3600);
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(sec);
        g_autofree char *stamp = g_date_time_format(t, "%Y%m%dT%H%M%SZ");
        g_autofree char *json = NULL, *file = NULL;
        VsManifestDomain *d;
        VsManifestDisk *disk;
        VsManifestImage *img;

        g_free(m->id);
        /* The suffix is random in real ids; here a hash of B, so that ids of one
         * second do not sort in start order. */
        m->id = g_strdup_printf("%s-%06x", stamp, (unsigned)((b * 2654435761u) & 0xffffff));
        m->started = sec * G_USEC_PER_SEC + (b % ties) * 1000;
        m->completed = m->started + 900 * 1000;
        m->chunk_size = cs;
        d = vs_manifest_add_domain(m, "vm1");
        d->uuid = g_strdup("6f1c7a52-3c1e-4a55-9d1a-2f7d0f3b9a10");
        d->consistency = g_strdup(b % 2 ? "crash" : "quiesced");
        d->freeze_ms = 42;
        d->xml = g_strdup(xml);
        disk = vs_manifest_domain_add_disk(d, "vda");
        disk->format = g_strdup("qcow2");
        disk->virtual_size = (uint64_t)refs * cs;
        disk->source = g_strdup("/var/lib/libvirt/images/vm1.qcow2");
        img = g_new0(VsManifestImage, 1);
        img->path = g_strdup(disk->source);
        img->format = g_strdup("qcow2");
        g_ptr_array_add(disk->chain, img);
        disk->bytes_read = (uint64_t)refs * cs;
        disk->bytes_stored = (uint64_t)cs;
        g_array_set_size(disk->chunks, refs);
        for (int j = 0; j < refs; j++) {
            VsChunkRef *r = &g_array_index(disk->chunks, VsChunkRef, j);

            r->offset = (uint64_t)j * cs;
            r->length = cs;
            r->digest = digests[((int64_t)b + j) % distinct];
        }
        json = vs_manifest_to_json(m);
        file = g_strdup_printf("%s/%s.json", backups_dir, m->id);
        if (!g_file_set_contents(file, json, -1, &err)) {
            fprintf(stderr, "repo-gen: %s\n", err->message);
            return 1;
        }
        if (!no_summary)
            repo_write_summary(repo, m, strlen(json));
    }
    g_rand_free(rnd);
    return 0;
}
