/* snapio: the storage snapshot providers (vs-snapshot.h) from the command line,
 * for the tests that drive them against real storage (an XFS loop file
 * system, the loopback iSCSI target through a hook, a single-node Ceph):
 *   snapio PROVIDER LOCATION OP ARGS
 * prints each result on stdout, an error as "snapio: MESSAGE" on stderr with
 * exit 1 (2 for usage). `provider` names the one chosen; `sha` reads a snapshot through vs_snap_open, `sha-url`
 * anything the sources read, both as "SHA256 SIZE". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vs-snapshot.h"

static char *opt_reflink, *opt_btrfs, *opt_hook, *opt_hook_config, *opt_kind = "file", *opt_disk = "vda";
static gboolean opt_rbd, opt_image;
static int opt_timeout, opt_retries, opt_lun = -1;
static VsSnapLocation loc;

static const GOptionEntry entries[] = {
    {"reflink", 0, 0, G_OPTION_ARG_FILENAME, &opt_reflink, "reflink provider, snapshots below DIR", "DIR"},
    {"btrfs", 0, 0, G_OPTION_ARG_FILENAME, &opt_btrfs, "btrfs provider, snapshots below DIR", "DIR"},
    {"hook", 0, 0, G_OPTION_ARG_FILENAME, &opt_hook, "hook provider", "PATH"},
    {"hook-config", 0, 0, G_OPTION_ARG_FILENAME, &opt_hook_config, "VIRTSNAP_HOOK_CONFIG", "FILE"},
    {"hook-timeout", 0, 0, G_OPTION_ARG_INT, &opt_timeout, "hook timeout", "MS"},
    {"hook-retries", 0, 0, G_OPTION_ARG_INT, &opt_retries, "hook retries", "N"},
    {"rbd", 0, 0, G_OPTION_ARG_NONE, &opt_rbd, "rbd provider", NULL},
    {"kind", 0, 0, G_OPTION_ARG_STRING, &opt_kind, "file, block, nfs, iscsi, rbd", "KIND"},
    {"disk", 0, 0, G_OPTION_ARG_STRING, &opt_disk, "disk name", "NAME"},
    {"path", 0, 0, G_OPTION_ARG_FILENAME, &loc.path, "file or device", "PATH"},
    {"pool", 0, 0, G_OPTION_ARG_STRING, &loc.pool, "libvirt pool", "POOL"},
    {"volume", 0, 0, G_OPTION_ARG_STRING, &loc.volume, "libvirt volume", "VOL"},
    {"nfs-server", 0, 0, G_OPTION_ARG_STRING, &loc.nfs_server, NULL, "HOST"},
    {"nfs-export", 0, 0, G_OPTION_ARG_STRING, &loc.nfs_export, NULL, "EXPORT"},
    {"nfs-path", 0, 0, G_OPTION_ARG_STRING, &loc.nfs_path, NULL, "PATH"},
    {"iscsi-portal", 0, 0, G_OPTION_ARG_STRING, &loc.iscsi_portal, NULL, "HOST:PORT"},
    {"iscsi-iqn", 0, 0, G_OPTION_ARG_STRING, &loc.iscsi_iqn, NULL, "IQN"},
    {"iscsi-lun", 0, 0, G_OPTION_ARG_INT, &opt_lun, NULL, "LUN"},
    {"wwid", 0, 0, G_OPTION_ARG_STRING, &loc.wwid, NULL, "WWID"},
    {"rbd-pool", 0, 0, G_OPTION_ARG_STRING, &loc.rbd_pool, NULL, "POOL"},
    {"rbd-image", 0, 0, G_OPTION_ARG_STRING, &loc.rbd_image, NULL, "IMAGE"},
    {"rbd-conf", 0, 0, G_OPTION_ARG_FILENAME, &loc.rbd_conf, NULL, "CONF"},
    {"rbd-user", 0, 0, G_OPTION_ARG_STRING, &loc.rbd_user, NULL, "USER"},
    {"image", 0, 0, G_OPTION_ARG_NONE, &opt_image, "sha-url: through qemu-nbd (raw)", NULL},
    G_OPTION_ENTRY_NULL,
};

static bool
print_sha(VsSource *src, GError **error)
{
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    uint64_t size = vs_source_size(src);
    g_autofree guint8 *buf = g_malloc(1 << 20);

    for (uint64_t off = 0; off < size; off += 1 << 20) {
        size_t n = MIN(size - off, (uint64_t)1 << 20);
        if (!vs_source_pread(src, buf, n, off, error))
            return false;
        g_checksum_update(sum, buf, n);
    }
    printf("%s %" G_GUINT64_FORMAT "\n", g_checksum_get_string(sum), size);
    return true;
}

static bool
print_diff(VsSnapProvider *p, const char *from, const char *to, GError **error)
{
    g_autoptr(GArray) out = g_array_new(FALSE, FALSE, sizeof(VsExtent));

    if (!vs_snap_diff(p, &loc, strcmp(from, "-") ? from : NULL, to, out, error))
        return false;
    for (guint i = 0; i < out->len; i++) {
        VsExtent *e = &g_array_index(out, VsExtent, i);
        printf("%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %s\n", e->offset, e->length, e->zero ? "zero" : "data");
    }
    return true;
}

static VsSnapProvider *
make_provider(GError **error)
{
    VsSnapHookConfig hook = {.path = opt_hook, .config_file = opt_hook_config, .timeout_ms = (unsigned)opt_timeout,
                             .retries = (unsigned)opt_retries, .retry_delay_ms = 100};

    if (opt_hook)
        return vs_snap_hook_new(&hook, error);
    if (opt_rbd)
        return vs_snap_rbd_new(error);
    if (opt_btrfs)
        return vs_snap_btrfs_new(opt_btrfs, error);
    return vs_snap_choose(&loc, NULL, opt_reflink, error);
}

static bool
run(VsSnapProvider *p, int argc, char **argv, GError **error)
{
    const char *op = argv[1];
    g_autofree char *s = NULL;
    bool b = false;

    if (!strcmp(op, "create") && argc == 3)
        s = vs_snap_create(p, &loc, argv[2], error);
    else if (!strcmp(op, "clone") && argc == 4)
        s = vs_snap_clone(p, &loc, argv[2], argv[3], error);
    else if (!strcmp(op, "expose") && argc == 3) {
        if ((s = vs_snap_expose(p, &loc, argv[2], &b, error)) && b)
            s = g_strconcat(g_steal_pointer(&s), " image", NULL);
    } else if (!strcmp(op, "delete") && argc == 3)
        return vs_snap_delete(p, &loc, argv[2], error);
    else if (!strcmp(op, "rollback") && argc == 3)
        return vs_snap_rollback(p, &loc, argv[2], error);
    else if (!strcmp(op, "exists") && argc == 3) {
        if (!vs_snap_exists(p, &loc, argv[2], &b, error))
            return false;
        s = g_strdup(b ? "yes" : "no");
    } else if (!strcmp(op, "provider") && argc == 2)
        s = g_strdup(vs_snap_provider_name(p));
    else if (!strcmp(op, "diff") && argc == 4)
        return print_diff(p, argv[2], argv[3], error);
    else if (!strcmp(op, "sha") && argc == 3) {
        g_autoptr(VsSource) src = vs_snap_open(p, &loc, argv[2], NULL, error);
        return src && print_sha(src, error);
    } else {
        fprintf(stderr, "snapio: unknown operation or wrong arguments: %s\n", op);
        exit(2);
    }
    if (s)
        printf("%s\n", s);
    return s != NULL;
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new("OP ARGS");
    g_autoptr(GError) error = NULL;
    g_autoptr(VsSnapProvider) p = NULL;
    bool ok;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &error) || argc < 2) {
        fprintf(stderr, "snapio: %s\n", error ? error->message : "no operation");
        return 2;
    }
    loc.disk = opt_disk;
    loc.iscsi_lun = opt_lun;
    for (int k = VS_SNAP_LOC_FILE; k <= VS_SNAP_LOC_RBD; k++)
        if (!strcmp(opt_kind, vs_snap_loc_kind_name(k)))
            loc.kind = k;
    if (!strcmp(argv[1], "sha-url") && argc == 3) {
        g_autoptr(VsSource) src = opt_image ? vs_source_open_image(argv[2], "raw", &error)
                                            : vs_source_open_url(argv[2], NULL, false, &error);
        ok = src && print_sha(src, &error);
    } else {
        ok = (p = make_provider(&error)) && run(p, argc, argv, &error);
    }
    if (!ok)
        fprintf(stderr, "snapio: %s\n", error->message);
    return ok ? 0 : 1;
}
