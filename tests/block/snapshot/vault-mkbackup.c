/* vault-mkbackup: what `backup --no-copy` leaves in a repository, made without
 * libvirt for the vault tests: one storage snapshot per disk (reflink under
 * --reflink DIR, or rbd) taken now through the providers, and a committed
 * manifest recording each as a snapshot-only disk (in_repo false, no chunks,
 * the snapshot's provider, handle and location), as the driver records them.
 *   vault-mkbackup --repo R (--reflink DIR | --rbd --rbd-pool P) --domain NAME DISK...
 * DISK: TARGET=PATH for a file (reflink), TARGET=IMAGE for rbd. Prints the
 * backup's id. */
#include <stdio.h>
#include <string.h>
#include "vs-repo.h"
#include "vs-snapshot.h"

static char *opt_repo, *opt_reflink, *opt_domain = "vm1", *opt_rbd_pool, *opt_rbd_user;
static gboolean opt_rbd;
static int opt_chunk_kib = 1024;

static const GOptionEntry entries[] = {
    {"repo", 0, 0, G_OPTION_ARG_FILENAME, &opt_repo, "repository (created when missing)", "DIR"},
    {"chunk-kib", 0, 0, G_OPTION_ARG_INT, &opt_chunk_kib, "chunk size of a new repository", "KIB"},
    {"reflink", 0, 0, G_OPTION_ARG_FILENAME, &opt_reflink, "reflink snapshots below DIR", "DIR"},
    {"rbd", 0, 0, G_OPTION_ARG_NONE, &opt_rbd, "rbd snapshots", NULL},
    {"rbd-pool", 0, 0, G_OPTION_ARG_STRING, &opt_rbd_pool, NULL, "POOL"},
    {"rbd-user", 0, 0, G_OPTION_ARG_STRING, &opt_rbd_user, NULL, "USER"},
    {"domain", 0, 0, G_OPTION_ARG_STRING, &opt_domain, "domain name", "NAME"},
    G_OPTION_ENTRY_NULL,
};

static bool
add_disk(VsManifest *m, VsManifestDomain *d, VsSnapProvider *p, const char *spec, GError **error)
{
    g_auto(GStrv) kv = g_strsplit(spec, "=", 2);
    g_autofree char *label = NULL, *name = NULL, *handle = NULL;
    g_autoptr(VsSource) src = NULL;
    VsSnapLocation loc = { .iscsi_lun = -1 };
    VsManifestSnapshot *rec;
    VsManifestDisk *disk;

    if (!kv[0] || !kv[1]) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "disk \"%s\" is not TARGET=WHERE", spec);
        return false;
    }
    name = g_strdup_printf("%s/%s", opt_domain, kv[0]);
    label = g_strdup_printf("virtsnap-%s-%s", m->id, kv[0]);
    loc.disk = name;
    if (opt_rbd) {
        loc.kind = VS_SNAP_LOC_RBD;
        loc.rbd_pool = opt_rbd_pool;
        loc.rbd_image = kv[1];
        loc.rbd_user = opt_rbd_user;
    } else {
        loc.kind = VS_SNAP_LOC_FILE;
        loc.path = kv[1];
    }
    if (!(handle = vs_snap_create(p, &loc, label, error)) || !(src = vs_snap_open(p, &loc, handle, "raw", error)))
        return false;
    disk = vs_manifest_domain_add_disk(d, kv[0]);
    disk->format = g_strdup("raw");
    disk->source = opt_rbd ? g_strdup_printf("rbd:%s/%s", opt_rbd_pool, kv[1]) : g_strdup(kv[1]);
    disk->virtual_size = vs_source_size(src);
    disk->in_repo = false;
    rec = disk->snapshot = vs_manifest_snapshot_new();
    rec->provider = g_strdup(vs_snap_provider_name(p));
    rec->handle = g_strdup(handle);
    rec->kind = g_strdup(opt_rbd ? "rbd" : "file");
    rec->path = opt_rbd ? NULL : g_strdup(kv[1]);
    rec->snapshot_dir = g_strdup(opt_reflink);
    rec->rbd_pool = g_strdup(opt_rbd ? opt_rbd_pool : NULL);
    rec->rbd_image = g_strdup(opt_rbd ? kv[1] : NULL);
    rec->rbd_user = g_strdup(opt_rbd_user);
    rec->size = disk->virtual_size;
    return true;
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new("DISK... - a snapshot-only backup");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) repo = NULL;
    g_autoptr(VsManifest) m = NULL;
    g_autoptr(VsSnapProvider) p = NULL;
    VsManifestDomain *d;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err) || !opt_repo || argc < 2 || (!opt_reflink == !opt_rbd)) {
        fprintf(stderr, "vault-mkbackup: %s\n", err ? err->message : "see --help");
        return 2;
    }
    if (!(repo = vs_repo_open(opt_repo, true, true, (uint32_t)opt_chunk_kib * 1024, &err)) ||
        !(p = opt_rbd ? vs_snap_rbd_new(&err) : vs_snap_reflink_new(opt_reflink, &err)))
        goto fail;
    m = vs_manifest_new();
    d = vs_manifest_add_domain(m, opt_domain);
    d->uuid = g_strdup("6f1c0e2a-3b4d-4c5e-8f90-a1b2c3d4e5f6");
    d->xml = g_strdup("<domain type='kvm'><name>vm1</name></domain>");
    d->consistency = g_strdup("quiesced");
    for (int i = 1; i < argc; i++)
        if (!add_disk(m, d, p, argv[i], &err))
            goto fail;
    if (!vs_repo_commit_manifest(repo, m, &err))
        goto fail;
    printf("%s\n", m->id);
    return 0;
fail:
    fprintf(stderr, "vault-mkbackup: %s\n", err->message);
    return 1;
}
