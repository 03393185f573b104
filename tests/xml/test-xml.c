/* Golden tests of the xml layer, in the manner of libvirt's genericxml2xmltest:
 * every tests/xml/<kind>/<case>.xml is parsed, formatted, and compared with
 * <case>.out.xml, then the output is parsed and formatted once more and must come
 * back unchanged (a formatter that loses what its parser reads shows up there).
 * Cases are found by listing the directories at run time, so adding a case is
 * adding files. tests/xml/bad/<kind>-<case>.xml must fail with VS_ERROR_XML and
 * a message containing the text of <case>.err. The model/ goldens come from
 * documents built or edited through the C model. VIRTSNAP_TEST_REGENERATE=1
 * rewrites the .out.xml files instead of comparing; review the diff. */
#include <string.h>
#include "vs-xml.h"

typedef char *(*RoundTripFunc)(const char *xml, const char *filename, GError **error);

typedef struct {
    const char *kind;
    RoundTripFunc round_trip;
} Kind;

typedef struct {
    const Kind *kind;
    char *input;
    char *expected;   /* .out.xml for golden cases, .err for bad ones */
} Case;

static GPtrArray *all_cases;

static char *
domain_round_trip(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsDomainDef) def = vs_domain_def_parse_string(xml, filename, error);

    return def ? vs_domain_def_format(def, error) : NULL;
}

static char *
pool_round_trip(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsPoolDef) def = vs_pool_def_parse_string(xml, filename, error);

    return def ? vs_pool_def_format(def) : NULL;
}

static char *
vol_round_trip(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsVolDef) def = vs_vol_def_parse_string(xml, filename, error);

    return def ? vs_vol_def_format(def) : NULL;
}

static char *
snapshot_round_trip(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsSnapshotDef) def = vs_snapshot_def_parse_string(xml, filename, error);

    return def ? vs_snapshot_def_format(def) : NULL;
}

static char *
checkpoint_round_trip(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsCheckpointDef) def = vs_checkpoint_def_parse_string(xml, filename, error);

    return def ? vs_checkpoint_def_format(def) : NULL;
}

static char *
backup_round_trip(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsBackupDef) def = vs_backup_def_parse_string(xml, filename, error);

    return def ? vs_backup_def_format(def) : NULL;
}

static const Kind kinds[] = {
    { "domain", domain_round_trip },
    { "pool", pool_round_trip },
    { "vol", vol_round_trip },
    { "snapshot", snapshot_round_trip },
    { "checkpoint", checkpoint_round_trip },
    { "backup", backup_round_trip },
};

static const Kind *
kind_by_name(const char *name)
{
    for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++) {
        if (!strcmp(kinds[i].kind, name))
            return &kinds[i];
    }
    return NULL;
}

static bool
regenerate(void)
{
    return !g_strcmp0(g_getenv("VIRTSNAP_TEST_REGENERATE"), "1");
}

static char *
read_file(const char *path)
{
    g_autoptr(GError) error = NULL;
    char *contents = NULL;

    g_file_get_contents(path, &contents, NULL, &error);
    g_assert_no_error(error);
    return contents;
}

/* Compares ACTUAL with the golden file PATH, or rewrites it when regenerating. */
static void
check_golden(const char *path, const char *actual)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *expected = NULL;
    g_auto(GStrv) want = NULL;
    g_auto(GStrv) got = NULL;
    guint line;

    if (regenerate()) {
        g_file_set_contents(path, actual, -1, &error);
        g_assert_no_error(error);
        g_test_message("regenerated %s", path);
        return;
    }
    if (!g_file_get_contents(path, &expected, NULL, &error)) {
        g_test_message("%s; run with VIRTSNAP_TEST_REGENERATE=1 to create it", error->message);
        g_test_fail();
        return;
    }
    if (!strcmp(expected, actual))
        return;
    want = g_strsplit(expected, "\n", -1);
    got = g_strsplit(actual, "\n", -1);
    for (line = 0; want[line] && got[line] && !strcmp(want[line], got[line]); line++)
        ;
    g_test_message("%s differs at line %u:\n  expected: %s\n  actual:   %s\nfull output:\n%s",
                   path, line + 1, want[line] ? want[line] : "(end of file)",
                   got[line] ? got[line] : "(end of output)", actual);
    g_test_fail();
}

static void
test_golden(gconstpointer data)
{
    const Case *c = data;
    g_autoptr(GError) error = NULL;
    g_autofree char *input = read_file(c->input);
    g_autofree char *name = g_path_get_basename(c->input);
    g_autofree char *out = c->kind->round_trip(input, name, &error);
    g_autofree char *again = NULL;

    g_assert_no_error(error);
    g_assert_nonnull(out);
    check_golden(c->expected, out);

    again = c->kind->round_trip(out, name, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(again, ==, out);
}

static void
test_bad(gconstpointer data)
{
    const Case *c = data;
    g_autoptr(GError) error = NULL;
    g_autofree char *input = read_file(c->input);
    g_autofree char *want = read_file(c->expected);
    g_autofree char *name = g_path_get_basename(c->input);
    g_autofree char *out = c->kind->round_trip(input, name, &error);

    g_strstrip(want);
    g_assert_null(out);
    g_assert_error(error, VS_ERROR, VS_ERROR_XML);
    g_test_message("%s", error->message);
    g_assert_true(g_str_has_prefix(error->message, "xml: "));
    if (!strstr(error->message, want)) {
        g_test_message("error \"%s\" lacks \"%s\"", error->message, want);
        g_test_fail();
    }
}

static Case *
case_new(const Kind *kind, char *input, char *expected)
{
    Case *c = g_new0(Case, 1);

    c->kind = kind;
    c->input = input;
    c->expected = expected;
    g_ptr_array_add(all_cases, c);
    return c;
}

static void
case_free(Case *c)
{
    g_free(c->input);
    g_free(c->expected);
    g_free(c);
}

static GPtrArray *
list_inputs(const char *dir)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GDir) d = g_dir_open(dir, 0, &error);
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *name;

    g_assert_no_error(error);
    while ((name = g_dir_read_name(d))) {
        if (g_str_has_suffix(name, ".xml") && !g_str_has_suffix(name, ".out.xml"))
            g_ptr_array_add(names, g_strdup(name));
    }
    return names;
}

static gint
compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static guint
add_golden_cases(const Kind *kind)
{
    g_autofree char *dir = g_test_build_filename(G_TEST_DIST, kind->kind, NULL);
    g_autoptr(GPtrArray) names = list_inputs(dir);

    g_ptr_array_sort(names, compare_names);
    for (guint i = 0; i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        g_autofree char *stem = g_strndup(name, strlen(name) - strlen(".xml"));
        g_autofree char *path = g_strdup_printf("/xml/%s/%s", kind->kind, stem);
        g_autofree char *out = g_strdup_printf("%s.out.xml", stem);
        Case *c = case_new(kind, g_build_filename(dir, name, NULL),
                           g_build_filename(dir, out, NULL));

        g_test_add_data_func(path, c, test_golden);
    }
    return names->len;
}

static guint
add_bad_cases(void)
{
    g_autofree char *dir = g_test_build_filename(G_TEST_DIST, "bad", NULL);
    g_autoptr(GPtrArray) names = list_inputs(dir);

    g_ptr_array_sort(names, compare_names);
    for (guint i = 0; i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        g_autofree char *stem = g_strndup(name, strlen(name) - strlen(".xml"));
        g_autofree char *kind_name = g_strndup(stem, strcspn(stem, "-"));
        g_autofree char *path = g_strdup_printf("/xml/bad/%s", stem);
        g_autofree char *err = g_strdup_printf("%s.err", stem);
        const Kind *kind = kind_by_name(kind_name);
        Case *c;

        if (!kind)
            g_error("%s: the name must start with a kind (domain-, pool-, ...)", name);
        c = case_new(kind, g_build_filename(dir, name, NULL), g_build_filename(dir, err, NULL));
        g_test_add_data_func(path, c, test_bad);
    }
    return names->len;
}

/* Documents built or edited through the model ------------------------------ */

static char *
model_golden_path(const char *name)
{
    g_autofree char *file = g_strdup_printf("%s.out.xml", name);

    return g_test_build_filename(G_TEST_DIST, "model", file, NULL);
}

/* Checks OUT against model/NAME.out.xml and that it parses back to itself. */
static void
check_model(const char *name, const char *kind_name, const char *out)
{
    const Kind *kind = kind_by_name(kind_name);
    g_autofree char *path = model_golden_path(name);
    g_autoptr(GError) error = NULL;
    g_autofree char *again = NULL;

    check_golden(path, out);
    again = kind->round_trip(out, name, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(again, ==, out);
}

static VsStorageSource *
file_source(VsDiskType type, const char *path, const char *format)
{
    VsStorageSource *src = vs_storage_source_new(type);

    src->path = g_strdup(path);
    src->format = g_strdup(format);
    return src;
}

static void
test_model_snapshot(void)
{
    g_autoptr(VsSnapshotDef) def = vs_snapshot_def_new("virtsnap-20240301T120000");
    VsSnapshotDiskDef *disk;
    VsStorageSource *src;
    g_autofree char *out = NULL;

    def->description = g_strdup("virtsnap overlay for 'web01' & friends");
    def->memory = VS_SNAPSHOT_LOCATION_NO;
    disk = vs_snapshot_def_add_disk(def, "vda", VS_SNAPSHOT_LOCATION_EXTERNAL);
    disk->src = file_source(VS_DISK_TYPE_FILE,
                            "/var/lib/libvirt/images/web01.virtsnap-20240301T120000", "qcow2");
    disk = vs_snapshot_def_add_disk(def, "vdb", VS_SNAPSHOT_LOCATION_EXTERNAL);
    disk->src = file_source(VS_DISK_TYPE_BLOCK, "/dev/vg0/web01-vdb-overlay", "qcow2");
    disk = vs_snapshot_def_add_disk(def, "vdc", VS_SNAPSHOT_LOCATION_EXTERNAL);
    /* libvirt's schema wants no <driver> on a network overlay. */
    disk->src = src = vs_storage_source_new(VS_DISK_TYPE_NETWORK);
    src->protocol = g_strdup("gluster");
    src->name = g_strdup("gv0/overlays/web01-vdc.qcow2");
    g_ptr_array_add(src->hosts, vs_host_def_new("gluster1.example.com", "24007"));
    vs_snapshot_def_add_disk(def, "sda", VS_SNAPSHOT_LOCATION_NO);
    vs_snapshot_def_add_disk(def, "vdd", VS_SNAPSHOT_LOCATION_DEFAULT);

    out = vs_snapshot_def_format(def);
    check_model("snapshot-built", "snapshot", out);
}

static void
test_model_checkpoint(void)
{
    g_autoptr(VsCheckpointDef) def = vs_checkpoint_def_new("virtsnap-20240302T120000");
    VsCheckpointDiskDef *disk;
    g_autofree char *out = NULL;

    def->description = g_strdup("nightly <incremental> base");
    vs_checkpoint_def_add_disk(def, "vda", true);
    disk = vs_checkpoint_def_add_disk(def, "vdb", true);
    disk->bitmap = g_strdup("vdb-nightly");
    vs_checkpoint_def_add_disk(def, "sda", false);
    out = vs_checkpoint_def_format(def);
    check_model("checkpoint-built", "checkpoint", out);

    /* What libvirt reports back: a parent and a creation time. */
    g_clear_pointer(&out, g_free);
    def->parent = g_strdup("virtsnap-20240301T120000");
    def->creation_time = 1709380800;
    out = vs_checkpoint_def_format(def);
    check_model("checkpoint-built-parent", "checkpoint", out);
}

static void
test_model_backup_push(void)
{
    g_autoptr(VsBackupDef) def = vs_backup_def_new(VS_BACKUP_MODE_PUSH);
    VsBackupDiskDef *disk;
    g_autofree char *out = NULL;

    def->incremental = g_strdup("virtsnap-20240301T120000");
    disk = vs_backup_def_add_disk(def, "vda", true);
    disk->backupmode = g_strdup("incremental");
    disk->target = g_strdup("/srv/virtsnap/web01/20240302/vda.qcow2");
    disk->format = g_strdup("qcow2");
    disk = vs_backup_def_add_disk(def, "vdb", true);
    disk->type = VS_DISK_TYPE_BLOCK;
    disk->backupmode = g_strdup("full");
    disk->target = g_strdup("/dev/backupvg/web01-vdb");
    disk->format = g_strdup("raw");
    /* Pull-only fields are not written for a push backup. */
    disk->export_name = g_strdup("ignored");
    vs_backup_def_add_disk(def, "sda", false);
    out = vs_backup_def_format(def);
    check_model("backup-push-built", "backup", out);
}

static void
test_model_backup_pull(void)
{
    g_autoptr(VsBackupDef) tcp = vs_backup_def_new(VS_BACKUP_MODE_PULL);
    g_autoptr(VsBackupDef) unix_def = vs_backup_def_new(VS_BACKUP_MODE_PULL);
    VsBackupDiskDef *disk;
    g_autofree char *out = NULL;

    tcp->server_name = g_strdup("localhost");
    tcp->server_port = g_strdup("10809");
    disk = vs_backup_def_add_disk(tcp, "vda", true);
    disk->scratch = g_strdup("/var/lib/virtsnap/scratch/web01-vda.qcow2");
    disk->format = g_strdup("qcow2");
    disk->export_name = g_strdup("vda");
    disk->export_bitmap = g_strdup("virtsnap-vda");
    disk->target = g_strdup("/ignored/in/pull/mode");
    vs_backup_def_add_disk(tcp, "vdb", true);
    out = vs_backup_def_format(tcp);
    check_model("backup-pull-tcp-built", "backup", out);
    g_clear_pointer(&out, g_free);

    unix_def->server_transport = g_strdup("unix");
    unix_def->server_socket = g_strdup("/run/virtsnap/web01.sock");
    unix_def->incremental = g_strdup("virtsnap-20240301T120000");
    disk = vs_backup_def_add_disk(unix_def, "vda", true);
    disk->type = VS_DISK_TYPE_BLOCK;
    disk->scratch = g_strdup("/dev/scratchvg/web01-vda");
    disk->export_name = g_strdup("vda");
    out = vs_backup_def_format(unix_def);
    check_model("backup-pull-unix-built", "backup", out);
}

static void
test_model_pool_vol(void)
{
    g_autoptr(VsPoolDef) pool = g_new0(VsPoolDef, 1);
    g_autoptr(VsVolDef) vol = g_new0(VsVolDef, 1);
    g_autofree char *out = NULL;

    pool->type = VS_POOL_NETFS;
    pool->name = g_strdup("virtsnap-restore");
    pool->hosts = g_ptr_array_new_with_free_func((GDestroyNotify)vs_host_def_free);
    pool->devices = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(pool->hosts, vs_host_def_new("nfs1.example.com", NULL));
    pool->source_dir = g_strdup("/export/restore");
    pool->source_format = g_strdup("nfs");
    pool->target_path = g_strdup("/var/lib/libvirt/virtsnap-restore");
    out = vs_pool_def_format(pool);
    check_model("pool-built", "pool", out);
    g_clear_pointer(&out, g_free);

    vol->name = g_strdup("web01-restored.qcow2");
    vol->type = g_strdup("file");
    vol->capacity = 21474836480;
    vol->target_format = g_strdup("qcow2");
    vol->backing_path = g_strdup("/var/lib/libvirt/images/debian-12-base.qcow2");
    vol->backing_format = g_strdup("qcow2");
    out = vs_vol_def_format(vol);
    check_model("vol-built", "vol", out);
}

static VsDomainDef *
load_domain(const char *name)
{
    g_autofree char *path = g_test_build_filename(G_TEST_DIST, "domain", name, NULL);
    g_autoptr(GError) error = NULL;
    VsDomainDef *def = vs_domain_def_parse_file(path, &error);

    g_assert_no_error(error);
    g_assert_nonnull(def);
    return def;
}

static VsDiskDef *
disk_of(VsDomainDef *def, const char *target)
{
    VsDiskDef *disk = vs_domain_def_find_disk(def, target);

    g_assert_nonnull(disk);
    return disk;
}

static void
check_domain_model(VsDomainDef *def, const char *name)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *out = vs_domain_def_format(def, &error);

    g_assert_no_error(error);
    check_model(name, "domain", out);
}

/* The restore case: the disk now lives elsewhere, flattened to raw. */
static void
test_domain_modify_path(void)
{
    g_autoptr(VsDomainDef) def = load_domain("backing-chain-3.xml");
    VsDiskDef *disk = disk_of(def, "vda");

    g_free(disk->src->path);
    disk->src->path = g_strdup("/srv/restore/chain3-vda.raw");
    g_free(disk->src->format);
    disk->src->format = g_strdup("raw");
    vs_storage_source_free(disk->src->backing);
    disk->src->backing = NULL;
    disk->src->backing_terminated = true;
    check_domain_model(def, "domain-modify-path");
}

static void
test_domain_modify_types(void)
{
    g_autoptr(VsDomainDef) def = load_domain("inactive-kvm.xml");
    VsDiskDef *vda = disk_of(def, "vda");
    VsDiskDef *vdb = disk_of(def, "vdb");
    VsStorageSource *src;

    /* file -> block, keeping driver name and cache settings */
    vs_storage_source_free(vda->src);
    vda->src = file_source(VS_DISK_TYPE_BLOCK, "/dev/vg0/db01-os", "raw");

    /* file -> network NFS with a one-level backing chain */
    src = vs_storage_source_new(VS_DISK_TYPE_NETWORK);
    src->protocol = g_strdup("nfs");
    src->name = g_strdup("/export/restore/db01-data.qcow2");
    src->format = g_strdup("qcow2");
    g_ptr_array_add(src->hosts, vs_host_def_new("nfs1.example.com", NULL));
    src->backing = file_source(VS_DISK_TYPE_FILE, "/srv/pgdata/db01-data.raw", "raw");
    src->backing->backing_terminated = true;
    vs_storage_source_free(vdb->src);
    vdb->src = src;
    check_domain_model(def, "domain-modify-types");
}

static void
test_domain_modify_cdrom(void)
{
    g_autoptr(VsDomainDef) def = load_domain("cdrom-floppy.xml");

    /* Eject the medium of hdc, insert one into the empty hdd and fdb. */
    g_clear_pointer(&disk_of(def, "hdc")->src, vs_storage_source_free);
    disk_of(def, "hdd")->src = file_source(VS_DISK_TYPE_BLOCK, "/dev/sr0", "raw");
    disk_of(def, "fdb")->src = file_source(VS_DISK_TYPE_FILE, "/var/lib/libvirt/images/fd.img", NULL);
    check_domain_model(def, "domain-modify-cdrom");
}

static void
test_domain_modify_iscsi(void)
{
    g_autoptr(VsDomainDef) def = load_domain("network-iscsi.xml");
    VsStorageSource *sda = disk_of(def, "sda")->src;
    VsStorageSource *sdb = disk_of(def, "sdb")->src;
    VsHostDef *host;

    /* Another portal, a new initiator, and the CHAP user gone (with its
     * secret). */
    host = g_ptr_array_index(sda->hosts, 0);
    g_free(host->name);
    host->name = g_strdup("192.168.124.10");
    g_free(sda->initiator_iqn);
    sda->initiator_iqn = g_strdup("iqn.2024-01.com.example:hv02");
    g_clear_pointer(&sda->auth_username, g_free);
    /* A CHAP user and an initiator added, the port moved. */
    host = g_ptr_array_index(sdb->hosts, 0);
    g_free(host->port);
    host->port = g_strdup("3261");
    sdb->auth_username = g_strdup("new-chap");
    sdb->initiator_iqn = g_strdup("iqn.2024-01.com.example:hv02");
    check_domain_model(def, "domain-modify-iscsi");
}

static void
test_domain_modify_hosts(void)
{
    g_autoptr(VsDomainDef) def = load_domain("network-nbd-rbd-gluster.xml");
    VsStorageSource *vdb = disk_of(def, "vdb")->src;
    VsStorageSource *vdc = disk_of(def, "vdc")->src;
    VsStorageSource *vdd = disk_of(def, "vdd")->src;
    VsHostDef *host;

    /* NBD from a unix socket to TCP. */
    host = g_ptr_array_index(vdb->hosts, 0);
    g_clear_pointer(&host->transport, g_free);
    g_clear_pointer(&host->socket, g_free);
    host->name = g_strdup("nbd2.example.com");
    host->port = g_strdup("10810");
    vdb->name = g_strdup("vdb-export");
    /* One Ceph monitor gone, the user kept (and its secret with it). */
    g_ptr_array_remove_index(vdc->hosts, 1);
    /* A third gluster server; all hosts of a disk gone is a valid edit too. */
    g_ptr_array_add(vdd->hosts, vs_host_def_new("gluster3.example.com", "24007"));
    g_ptr_array_set_size(disk_of(def, "sda")->src->hosts, 0);
    check_domain_model(def, "domain-modify-hosts");
}

static void
test_domain_modify_chain(void)
{
    g_autoptr(VsDomainDef) def = load_domain("unknown-chain-encryption.xml");
    VsStorageSource *vda = disk_of(def, "vda")->src;
    VsStorageSource *vdb = disk_of(def, "vdb")->src;

    /* An unknown chain becomes a known two-level chain; the encryption
     * element of the top image stays. */
    vda->backing = file_source(VS_DISK_TYPE_FILE, "/var/lib/libvirt/images/secure01-base.qcow2",
                               "qcow2");
    vda->backing->index = 2;
    vda->backing->backing = file_source(VS_DISK_TYPE_BLOCK, "/dev/vg0/golden", "raw");
    vda->backing->backing->backing_terminated = true;
    /* A terminated chain becomes unknown. */
    vdb->backing_terminated = false;
    check_domain_model(def, "domain-modify-chain");
}

static void
test_domain_modify_volume(void)
{
    g_autoptr(VsDomainDef) def = load_domain("iscsi-direct-volume.xml");
    VsStorageSource *sda = disk_of(def, "sda")->src;
    VsStorageSource *sdb = disk_of(def, "sdb")->src;

    g_free(sda->pool);
    sda->pool = g_strdup("iscsi-direct-dr");
    g_clear_pointer(&sda->mode, g_free);
    /* volume -> block: a LUN stays a LUN */
    vs_storage_source_free(sdb);
    disk_of(def, "sdb")->src = file_source(VS_DISK_TYPE_BLOCK, "/dev/mapper/erp01-sdb", "raw");
    check_domain_model(def, "domain-modify-volume");
}

static void
test_domain_modify_compact(void)
{
    g_autoptr(VsDomainDef) def = load_domain("compact.xml");
    VsDiskDef *vda = disk_of(def, "vda");

    vda->src->backing->backing = file_source(VS_DISK_TYPE_FILE, "/base.raw", "raw");
    vda->src->backing->backing->backing_terminated = true;
    disk_of(def, "sda")->src = file_source(VS_DISK_TYPE_FILE, "/isos/x.iso", "raw");
    check_domain_model(def, "domain-modify-compact");
}

static void
test_domain_format_errors(void)
{
    g_autoptr(VsDomainDef) def = load_domain("running-kvm.xml");
    g_autoptr(GError) error = NULL;
    g_autofree char *before = vs_domain_def_format(def, &error);
    g_autofree char *after = NULL;
    g_autofree char *out = NULL;
    VsDiskDef *vda = disk_of(def, "vda");
    VsDiskDef *sda = disk_of(def, "sda");
    g_autofree char *saved_path = NULL;

    g_assert_no_error(error);

    /* A valid change to vda and an invalid one to sda: nothing may be
     * written, vda included. */
    saved_path = g_steal_pointer(&vda->src->path);
    vda->src->path = g_strdup("/elsewhere.qcow2");
    sda->src = vs_storage_source_new(VS_DISK_TYPE_FILE);
    out = vs_domain_def_format(def, &error);
    g_assert_null(out);
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, "disk sda: a file source needs a path"));
    g_clear_error(&error);
    g_clear_pointer(&sda->src, vs_storage_source_free);
    g_free(vda->src->path);
    vda->src->path = g_steal_pointer(&saved_path);

    /* Sources the model cannot describe cannot be switched to. */
    vda->src->type = VS_DISK_TYPE_NVME;
    out = vs_domain_def_format(def, &error);
    g_assert_null(out);
    g_assert_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(error->message, "disk vda: cannot turn a disk into type nvme"));
    g_clear_error(&error);
    vda->src->type = VS_DISK_TYPE_FILE;

    /* libvirt needs the format of every backing store. */
    g_clear_pointer(&vda->src->backing->format, g_free);
    out = vs_domain_def_format(def, &error);
    g_assert_null(out);
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, "backing store at depth 1 needs a format"));
    g_clear_error(&error);
    vda->src->backing->format = g_strdup("qcow2");

    /* What the parser would refuse is refused before it is written. */
    {
        g_autoptr(VsDomainDef) net = load_domain("network-nfs.xml");
        VsHostDef *host = g_ptr_array_index(disk_of(net, "vda")->src->hosts, 0);

        host->transport = g_strdup("unix");
        out = vs_domain_def_format(net, &error);
        g_assert_null(out);
        g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARG);
        g_assert_nonnull(strstr(error->message, "disk vda: host 1: a socket goes with transport unix"));
        g_clear_error(&error);
    }

    /* A disk without an element cannot be written. */
    vda->node = NULL;
    out = vs_domain_def_format(def, &error);
    g_assert_null(out);
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, "disks cannot be added through the model"));
    g_clear_error(&error);

    /* A disk dropped from the model is left as it is in the document. */
    g_ptr_array_remove(def->disks, vda);
    after = vs_domain_def_format(def, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(after, ==, before);
}

static void
test_domain_fields(void)
{
    g_autoptr(VsDomainDef) running = load_domain("running-kvm.xml");
    g_autoptr(VsDomainDef) inactive = load_domain("inactive-kvm.xml");
    g_autoptr(VsDomainDef) net = load_domain("network-nbd-rbd-gluster.xml");
    g_autoptr(VsDomainDef) nfs = load_domain("network-nfs.xml");
    g_autoptr(VsDomainDef) vol = load_domain("iscsi-direct-volume.xml");
    g_autoptr(VsDomainDef) legacy = load_domain("transient-legacy-auth.xml");
    VsDiskDef *disk;
    VsHostDef *host;

    g_assert_cmpstr(running->type, ==, "kvm");
    g_assert_cmpstr(running->name, ==, "web01");
    g_assert_cmpstr(running->uuid, ==, "8c1a7f6e-3b2d-4e5f-9a0b-1c2d3e4f5a6b");
    g_assert_cmpint(running->id, ==, 3);
    g_assert_cmpuint(running->disks->len, ==, 2);
    g_assert_true(running->has_agent_channel);
    g_assert_cmpint(running->agent_state, ==, VS_CHANNEL_STATE_CONNECTED);
    g_assert_cmpstr(running->agent_socket, ==,
                    "/run/libvirt/qemu/channel/3-web01/org.qemu.guest_agent.0");
    disk = disk_of(running, "vda");
    g_assert_cmpint(disk->device, ==, VS_DISK_DEVICE_DISK);
    g_assert_cmpstr(disk->target_bus, ==, "virtio");
    g_assert_cmpstr(disk->driver_name, ==, "qemu");
    g_assert_cmpstr(disk->alias, ==, "virtio-disk0");
    g_assert_cmpint(disk->src->type, ==, VS_DISK_TYPE_FILE);
    g_assert_cmpstr(disk->src->format, ==, "qcow2");
    g_assert_cmpint(disk->src->index, ==, 2);
    g_assert_nonnull(disk->src->backing);
    g_assert_cmpint(disk->src->backing->index, ==, 3);
    g_assert_cmpstr(disk->src->backing->path, ==, "/var/lib/libvirt/images/debian-12-base.qcow2");
    g_assert_true(disk->src->backing->backing_terminated);
    g_assert_null(disk->src->backing->backing);
    disk = disk_of(running, "sda");
    g_assert_cmpint(disk->device, ==, VS_DISK_DEVICE_CDROM);
    g_assert_true(disk->readonly);
    g_assert_null(disk->src);
    g_assert_null(vs_domain_def_find_disk(running, "vdz"));

    g_assert_cmpint(inactive->id, ==, -1);
    g_assert_true(inactive->has_agent_channel);
    g_assert_cmpint(inactive->agent_state, ==, VS_CHANNEL_STATE_UNKNOWN);
    g_assert_null(inactive->agent_socket);
    disk = disk_of(inactive, "vda");
    g_assert_null(disk->alias);
    g_assert_null(disk->src->backing);
    g_assert_false(disk->src->backing_terminated);
    g_assert_cmpstr(disk_of(inactive, "sda")->src->path, ==,
                    "/var/lib/libvirt/isos/debian-12.5.0-amd64-netinst.iso");

    g_assert_cmpint(nfs->agent_state, ==, VS_CHANNEL_STATE_DISCONNECTED);
    disk = disk_of(nfs, "vda");
    g_assert_cmpstr(disk->src->protocol, ==, "nfs");
    g_assert_cmpstr(disk->src->name, ==, "/export/vms/nfs-guest.qcow2");
    g_assert_cmpuint(disk->src->hosts->len, ==, 1);
    g_assert_true(disk->src->backing_terminated);

    disk = disk_of(net, "vdb");
    host = g_ptr_array_index(disk->src->hosts, 0);
    g_assert_cmpstr(host->transport, ==, "unix");
    g_assert_cmpstr(host->socket, ==, "/run/nbd/mixed-net.sock");
    g_assert_null(host->name);
    g_assert_null(disk->src->name);
    disk = disk_of(net, "vdc");
    g_assert_cmpuint(disk->src->hosts->len, ==, 3);
    g_assert_cmpstr(disk->src->auth_username, ==, "libvirt");
    host = g_ptr_array_index(disk->src->hosts, 2);
    g_assert_cmpstr(host->name, ==, "mon3.ceph.example.com");
    g_assert_cmpstr(host->port, ==, "6789");
    g_assert_false(net->has_agent_channel);

    disk = disk_of(vol, "sda");
    g_assert_cmpint(disk->src->type, ==, VS_DISK_TYPE_VOLUME);
    g_assert_cmpstr(disk->src->pool, ==, "iscsi-direct-san");
    g_assert_cmpstr(disk->src->volume, ==, "unit:0:0:1");
    g_assert_cmpstr(disk->src->mode, ==, "direct");
    disk = disk_of(vol, "sdb");
    g_assert_cmpint(disk->device, ==, VS_DISK_DEVICE_LUN);
    g_assert_true(disk->shareable);

    g_assert_true(disk_of(legacy, "vda")->transient);
    g_assert_cmpstr(disk_of(legacy, "vdb")->src->auth_username, ==, "legacy-user");
}

static void
test_pool_fields(void)
{
    g_autofree char *path = g_test_build_filename(G_TEST_DIST, "pool", "units.xml", NULL);
    g_autofree char *iscsi_path = g_test_build_filename(G_TEST_DIST, "pool", "iscsi-direct.xml", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(VsPoolDef) units = vs_pool_def_parse_file(path, &error);
    g_autoptr(VsPoolDef) iscsi = NULL;
    g_autoptr(VsPoolDef) missing = NULL;

    g_assert_no_error(error);
    g_assert_cmpuint(units->capacity, ==, G_GUINT64_CONSTANT(100) << 30);
    g_assert_cmpuint(units->allocation, ==, 1500000000);
    g_assert_cmpuint(units->available, ==, 42 * 1024);
    iscsi = vs_pool_def_parse_file(iscsi_path, &error);
    g_assert_no_error(error);
    g_assert_cmpint(iscsi->type, ==, VS_POOL_ISCSI_DIRECT);
    g_assert_cmpstr(iscsi->initiator_iqn, ==, "iqn.2024-01.com.example:hv01-direct");
    g_assert_cmpstr(g_ptr_array_index(iscsi->devices, 0), ==,
                    "iqn.2024-01.com.example:storage.target02");
    g_assert_null(iscsi->target_path);

    missing = vs_pool_def_parse_file("/nonexistent/virtsnap/pool.xml", &error);
    g_assert_null(missing);
    g_assert_error(error, VS_ERROR, VS_ERROR_IO);
    g_assert_true(g_str_has_prefix(error->message, "xml: "));
}

static void
test_parse_file_missing(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VsDomainDef) def = vs_domain_def_parse_file("/nonexistent/virtsnap/d.xml", &error);

    g_assert_null(def);
    g_assert_error(error, VS_ERROR, VS_ERROR_IO);
    g_assert_nonnull(strstr(error->message, "/nonexistent/virtsnap/d.xml"));
}

static void
test_parse_string_edge(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VsDomainDef) def = vs_domain_def_parse_string("<domain", NULL, &error);
    g_autoptr(VsPoolDef) pool = NULL;

    g_assert_null(def);
    g_assert_error(error, VS_ERROR, VS_ERROR_XML);
    g_assert_true(g_str_has_prefix(error->message, "xml: (string): line 1: "));
    g_clear_error(&error);

    pool = vs_pool_def_parse_string(NULL, "p.xml", &error);
    g_assert_null(pool);
    g_assert_error(error, VS_ERROR, VS_ERROR_XML);
}

static void
test_source_copy(void)
{
    g_autoptr(VsDomainDef) def = load_domain("backing-chain-mixed.xml");
    VsStorageSource *orig = disk_of(def, "vda")->src;
    g_autoptr(VsStorageSource) copy = vs_storage_source_copy(orig);
    const VsStorageSource *a = orig, *b = copy;
    int depth = 0;

    for (; a && b; a = a->backing, b = b->backing, depth++) {
        g_assert_true(a != b);
        g_assert_cmpint(a->type, ==, b->type);
        g_assert_cmpstr(a->format, ==, b->format);
        g_assert_cmpstr(a->path, ==, b->path);
        g_assert_cmpstr(a->protocol, ==, b->protocol);
        g_assert_cmpstr(a->name, ==, b->name);
        g_assert_cmpuint(a->hosts->len, ==, b->hosts->len);
        g_assert_cmpint(a->index, ==, b->index);
        g_assert_cmpint(a->backing_terminated, ==, b->backing_terminated);
    }
    g_assert_null(a);
    g_assert_null(b);
    g_assert_cmpint(depth, ==, 3);
    g_assert_null(vs_storage_source_copy(NULL));
}

static void
test_enums(void)
{
    for (int i = 0; i < VS_DISK_TYPE_LAST; i++)
        g_assert_cmpint(vs_disk_type_from_string(vs_disk_type_to_string(i)), ==, i);
    for (int i = 0; i < VS_DISK_DEVICE_LAST; i++)
        g_assert_cmpint(vs_disk_device_from_string(vs_disk_device_to_string(i)), ==, i);
    for (int i = 0; i < VS_POOL_LAST; i++)
        g_assert_cmpint(vs_pool_type_from_string(vs_pool_type_to_string(i)), ==, i);
    g_assert_cmpstr(vs_pool_type_to_string(VS_POOL_ISCSI_DIRECT), ==, "iscsi-direct");
    g_assert_cmpint(vs_disk_type_from_string("tape"), ==, -1);
    g_assert_cmpint(vs_disk_type_from_string(NULL), ==, -1);
    g_assert_cmpint(vs_disk_device_from_string("tape"), ==, -1);
    g_assert_cmpint(vs_pool_type_from_string("nfs"), ==, -1);
    g_assert_null(vs_disk_type_to_string(VS_DISK_TYPE_LAST));
    g_assert_null(vs_pool_type_to_string(VS_POOL_LAST));
}

int
main(int argc, char **argv)
{
    guint golden = 0, bad;
    int ret;

    g_test_init(&argc, &argv, NULL);
    all_cases = g_ptr_array_new_with_free_func((GDestroyNotify)case_free);

    for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++)
        golden += add_golden_cases(&kinds[i]);
    bad = add_bad_cases();
    /* A wrong G_TEST_SRCDIR must not pass as "nothing to test". */
    if (golden < 40 || bad < 15)
        g_error("found only %u golden and %u bad cases under %s", golden, bad,
                g_test_get_dir(G_TEST_DIST));

    g_test_add_func("/xml/model/snapshot", test_model_snapshot);
    g_test_add_func("/xml/model/checkpoint", test_model_checkpoint);
    g_test_add_func("/xml/model/backup-push", test_model_backup_push);
    g_test_add_func("/xml/model/backup-pull", test_model_backup_pull);
    g_test_add_func("/xml/model/pool-vol", test_model_pool_vol);
    g_test_add_func("/xml/model/domain-modify-path", test_domain_modify_path);
    g_test_add_func("/xml/model/domain-modify-types", test_domain_modify_types);
    g_test_add_func("/xml/model/domain-modify-cdrom", test_domain_modify_cdrom);
    g_test_add_func("/xml/model/domain-modify-iscsi", test_domain_modify_iscsi);
    g_test_add_func("/xml/model/domain-modify-hosts", test_domain_modify_hosts);
    g_test_add_func("/xml/model/domain-modify-chain", test_domain_modify_chain);
    g_test_add_func("/xml/model/domain-modify-volume", test_domain_modify_volume);
    g_test_add_func("/xml/model/domain-modify-compact", test_domain_modify_compact);
    g_test_add_func("/xml/model/domain-format-errors", test_domain_format_errors);
    g_test_add_func("/xml/fields/domain", test_domain_fields);
    g_test_add_func("/xml/fields/pool", test_pool_fields);
    g_test_add_func("/xml/api/parse-file-missing", test_parse_file_missing);
    g_test_add_func("/xml/api/parse-string-edge", test_parse_string_edge);
    g_test_add_func("/xml/api/source-copy", test_source_copy);
    g_test_add_func("/xml/api/enums", test_enums);

    ret = g_test_run();
    g_ptr_array_unref(all_cases);
    return ret;
}
