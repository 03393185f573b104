/* Domain backup XML (<domainbackup>), the job description handed to
 * virDomainBackupBegin. In push mode libvirt (QEMU) writes each disk into a
 * target file or device; in pull mode it exports the disks over NBD from a
 * <server> and keeps copy-on-write data in scratch files while virtsnap reads.
 * Parsing follows libvirt's rules (a <server> only in pull mode, nothing but the
 * name on a disk with backup='no') so that a job virtsnap stored and replays is
 * checked before libvirt sees it; output uses libvirt's attribute order. */
#include "xml-internal.h"

#include <string.h>

static void
backup_disk_free(VsBackupDiskDef *disk)
{
    if (!disk)
        return;
    g_free(disk->name);
    g_free(disk->backupmode);
    g_free(disk->incremental);
    g_free(disk->target);
    g_free(disk->scratch);
    g_free(disk->format);
    g_free(disk->export_name);
    g_free(disk->export_bitmap);
    g_free(disk);
}

VsBackupDef *
vs_backup_def_new(VsBackupMode mode)
{
    VsBackupDef *def = g_new0(VsBackupDef, 1);

    def->mode = mode;
    def->disks = g_ptr_array_new_with_free_func((GDestroyNotify)backup_disk_free);
    return def;
}

void
vs_backup_def_free(VsBackupDef *def)
{
    if (!def)
        return;
    g_free(def->incremental);
    g_free(def->server_transport);
    g_free(def->server_name);
    g_free(def->server_port);
    g_free(def->server_socket);
    if (def->disks)
        g_ptr_array_unref(def->disks);
    g_free(def);
}

VsBackupDiskDef *
vs_backup_def_add_disk(VsBackupDef *def, const char *name, bool backup)
{
    VsBackupDiskDef *disk = g_new0(VsBackupDiskDef, 1);

    disk->name = g_strdup(name);
    disk->backup = backup;
    disk->type = VS_DISK_TYPE_FILE;
    g_ptr_array_add(def->disks, disk);
    return disk;
}

static bool
server_parse(VsBackupDef *def, const xmlNode *node, GError **error)
{
    g_autoptr(VsHostDef) host = vs_xml_parse_host(node, true, error);

    if (!host) {
        vs_error_prefix(error, "<server>");
        return false;
    }
    if (!g_strcmp0(host->transport, "rdma")) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<server>: transport rdma is not supported; use tcp or unix");
        return false;
    }
    if (host->socket && !g_path_is_absolute(host->socket)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<server>: socket '%s' must be an absolute path", host->socket);
        return false;
    }
    def->server_transport = g_steal_pointer(&host->transport);
    def->server_name = g_steal_pointer(&host->name);
    def->server_port = g_steal_pointer(&host->port);
    def->server_socket = g_steal_pointer(&host->socket);
    return true;
}

static bool
backup_disk_parse(VsBackupDef *def, GHashTable *seen, const xmlNode *node, guint n,
                  GError **error)
{
    g_autofree char *name = vs_xml_prop(node, "name");
    g_autofree char *backup = vs_xml_prop(node, "backup");
    g_autofree char *type = vs_xml_prop(node, "type");
    g_autofree char *label = NULL;
    bool push = def->mode == VS_BACKUP_MODE_PUSH;
    xmlNode *store;
    VsBackupDiskDef *disk;

    if (!name || !*name) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<disks> <disk> %u: missing name= (the disk's target, e.g. vda)", n);
        return false;
    }
    label = g_strdup_printf("<disks> <disk> %u (name %s)", n, name);
    if (g_hash_table_contains(seen, name)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML, "%s: disk %s is listed twice", label, name);
        return false;
    }
    if (backup && strcmp(backup, "yes") != 0 && strcmp(backup, "no") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML, "%s: unknown backup='%s'; expected yes or no",
                    label, backup);
        return false;
    }
    disk = vs_backup_def_add_disk(def, name, g_strcmp0(backup, "no") != 0);
    g_hash_table_add(seen, disk->name);
    /* libvirt reads nothing else from a disk that is not backed up. */
    if (!disk->backup)
        return true;

    disk->backupmode = vs_xml_prop(node, "backupmode");
    if (disk->backupmode && strcmp(disk->backupmode, "full") != 0 &&
        strcmp(disk->backupmode, "incremental") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "%s: unknown backupmode='%s'; expected full or incremental",
                    label, disk->backupmode);
        return false;
    }
    disk->incremental = vs_xml_prop(node, "incremental");
    if (!push) {
        disk->export_name = vs_xml_prop(node, "exportname");
        disk->export_bitmap = vs_xml_prop(node, "exportbitmap");
    }
    if (type) {
        int t = vs_disk_type_from_string(type);

        if (t != VS_DISK_TYPE_FILE && t != VS_DISK_TYPE_BLOCK) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "%s: unsupported type='%s'; a backup %s is a file or a block device",
                        label, type, push ? "target" : "scratch");
            return false;
        }
        disk->type = t;
    }
    disk->format = vs_xml_child_prop(node, "driver", "type");
    store = vs_xml_child(node, push ? "target" : "scratch");
    if (store) {
        char *path = vs_xml_prop(store, disk->type == VS_DISK_TYPE_BLOCK ? "dev" : "file");

        if (path && !*path)
            g_clear_pointer(&path, g_free);
        if (push)
            disk->target = path;
        else
            disk->scratch = path;
    }
    return true;
}

static bool
backup_parse(VsBackupDef *def, const xmlNode *root, GError **error)
{
    g_autofree char *mode = vs_xml_prop(root, "mode");
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    xmlNode *server = vs_xml_child(root, "server");
    guint n = 0;

    if (mode) {
        if (!strcmp(mode, "push")) {
            def->mode = VS_BACKUP_MODE_PUSH;
        } else if (!strcmp(mode, "pull")) {
            def->mode = VS_BACKUP_MODE_PULL;
        } else {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<domainbackup mode='%s'>: unknown mode; expected push or pull", mode);
            return false;
        }
    }
    def->incremental = vs_xml_child_text(root, "incremental");
    if (def->incremental && !*def->incremental)
        g_clear_pointer(&def->incremental, g_free);

    if (server && def->mode != VS_BACKUP_MODE_PULL) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<server> requires <domainbackup mode='pull'>");
        return false;
    }
    if (!server && def->mode == VS_BACKUP_MODE_PULL) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "a pull backup needs a <server>, e.g. <server transport='unix' "
                    "socket='/run/virtsnap/vm.sock'/>");
        return false;
    }
    if (server && !server_parse(def, server, error))
        return false;

    vs_xml_foreach_child(node, vs_xml_child(root, "disks"), "disk") {
        if (!backup_disk_parse(def, seen, node, ++n, error))
            return false;
    }
    return true;
}

VsBackupDef *
vs_backup_def_parse_string(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsBackupDef) def = vs_backup_def_new(VS_BACKUP_MODE_PUSH);
    g_autoptr(xmlDoc) doc = vs_xml_read(xml, filename, "domainbackup", false, error);

    if (!doc)
        return NULL;
    if (!backup_parse(def, xmlDocGetRootElement(doc), error)) {
        vs_error_prefix(error, "xml: %s", vs_xml_doc_name(filename));
        return NULL;
    }
    return g_steal_pointer(&def);
}

static void
backup_disk_format(GString *buf, const VsBackupDiskDef *disk, bool push)
{
    const char *element = push ? "target" : "scratch";
    const char *path = push ? disk->target : disk->scratch;
    bool block = disk->type == VS_DISK_TYPE_BLOCK;

    g_string_append(buf, "    <disk");
    vs_xml_attr(buf, "name", disk->name);
    vs_xml_attr(buf, "backup", disk->backup ? "yes" : "no");
    if (!disk->backup) {
        g_string_append(buf, "/>\n");
        return;
    }
    vs_xml_attr(buf, "type", block ? "block" : "file");
    vs_xml_attr(buf, "backupmode", disk->backupmode);
    vs_xml_attr(buf, "incremental", disk->incremental);
    if (!push) {
        vs_xml_attr(buf, "exportname", disk->export_name);
        vs_xml_attr(buf, "exportbitmap", disk->export_bitmap);
    }
    if (!disk->format && !path) {
        g_string_append(buf, "/>\n");
        return;
    }
    g_string_append(buf, ">\n");
    if (disk->format) {
        g_string_append(buf, "      <driver");
        vs_xml_attr(buf, "type", disk->format);
        g_string_append(buf, "/>\n");
    }
    if (path) {
        g_string_append_printf(buf, "      <%s", element);
        vs_xml_attr(buf, block ? "dev" : "file", path);
        g_string_append(buf, "/>\n");
    }
    g_string_append(buf, "    </disk>\n");
}

char *
vs_backup_def_format(const VsBackupDef *def)
{
    GString *buf = g_string_new("<domainbackup");
    bool push = def->mode != VS_BACKUP_MODE_PULL;

    vs_xml_attr(buf, "mode", push ? "push" : "pull");
    g_string_append(buf, ">\n");
    vs_xml_text_element(buf, 2, "incremental", def->incremental);
    /* libvirt spells out transport='tcp' when it is the default. */
    if (!push && (def->server_transport || def->server_name || def->server_socket)) {
        g_string_append(buf, "  <server");
        vs_xml_attr(buf, "transport", def->server_transport ? def->server_transport : "tcp");
        vs_xml_attr(buf, "name", def->server_name);
        vs_xml_attr(buf, "port", def->server_port);
        vs_xml_attr(buf, "socket", def->server_socket);
        g_string_append(buf, "/>\n");
    }
    if (def->disks && def->disks->len) {
        g_string_append(buf, "  <disks>\n");
        for (guint i = 0; i < def->disks->len; i++)
            backup_disk_format(buf, g_ptr_array_index(def->disks, i), push);
        g_string_append(buf, "  </disks>\n");
    }
    g_string_append(buf, "</domainbackup>\n");
    return g_string_free(buf, FALSE);
}
