/* Disk-only snapshot XML (<domainsnapshot>). virtsnap writes these to put an
 * external overlay on every disk it backs up, so that the base images stay still
 * while they are copied, and reads them back from libvirt to learn where the
 * overlays went. Only the disk-related parts are modelled; the <domain>, <state>,
 * <parent> and <creationTime> that libvirt adds to its own output are skipped
 * when reading, since virtsnap's own document always says what it needs. */
#include "xml-internal.h"

#include <string.h>

/* Value 0 is "not given": it has no spelling. */
VS_ENUM_IMPL_STATIC(location, VsSnapshotLocation, VS_SNAPSHOT_LOCATION_LAST,
    NULL, "no", "internal", "external", "manual")

static void
snapshot_disk_free(VsSnapshotDiskDef *disk)
{
    if (!disk)
        return;
    g_free(disk->name);
    vs_storage_source_free(disk->src);
    g_free(disk);
}

VsSnapshotDef *
vs_snapshot_def_new(const char *name)
{
    VsSnapshotDef *def = g_new0(VsSnapshotDef, 1);

    def->name = g_strdup(name);
    def->disks = g_ptr_array_new_with_free_func((GDestroyNotify)snapshot_disk_free);
    return def;
}

void
vs_snapshot_def_free(VsSnapshotDef *def)
{
    if (!def)
        return;
    g_free(def->name);
    g_free(def->description);
    if (def->disks)
        g_ptr_array_unref(def->disks);
    g_free(def);
}

VsSnapshotDiskDef *
vs_snapshot_def_add_disk(VsSnapshotDef *def, const char *name, VsSnapshotLocation snapshot)
{
    VsSnapshotDiskDef *disk = g_new0(VsSnapshotDiskDef, 1);

    disk->name = g_strdup(name);
    disk->snapshot = snapshot;
    g_ptr_array_add(def->disks, disk);
    return disk;
}

static bool
parse_location(const xmlNode *node, const char *attr, VsSnapshotLocation *out, GError **error)
{
    g_autofree char *str = vs_xml_prop(node, attr);
    int val;

    if (!str)
        return true;
    if ((val = location_from_string(str)) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "unknown %s='%s'; expected no, internal, external or manual", attr, str);
        return false;
    }
    *out = val;
    return true;
}

static bool
snapshot_disk_parse(VsSnapshotDef *def, GHashTable *seen, const xmlNode *node, guint n,
                    GError **error)
{
    g_autofree char *name = vs_xml_prop(node, "name");
    g_autofree char *type = vs_xml_prop(node, "type");
    g_autofree char *format = vs_xml_child_prop(node, "driver", "type");
    xmlNode *source = vs_xml_child(node, "source");
    VsSnapshotDiskDef *disk;
    int t = VS_DISK_TYPE_FILE;

    if (!name || !*name) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<disks> <disk> %u: missing name= (the disk's target, e.g. vda)", n);
        return false;
    }
    if (g_hash_table_contains(seen, name)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<disks> <disk> %u (name %s): disk %s is listed twice", n, name, name);
        return false;
    }
    disk = vs_snapshot_def_add_disk(def, name, VS_SNAPSHOT_LOCATION_DEFAULT);
    g_hash_table_add(seen, disk->name);
    if (!parse_location(node, "snapshot", &disk->snapshot, error)) {
        vs_error_prefix(error, "<disks> <disk> %u (name %s)", n, name);
        return false;
    }
    if (type) {
        t = vs_disk_type_from_string(type);
        if (t != VS_DISK_TYPE_FILE && t != VS_DISK_TYPE_BLOCK && t != VS_DISK_TYPE_NETWORK) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<disks> <disk> %u (name %s): unsupported type='%s'; a snapshot overlay is "
                        "file, block or network", n, name, type);
            return false;
        }
    }
    if (!type && !source && !format)
        return true;
    disk->src = vs_storage_source_new(t);
    disk->src->format = g_steal_pointer(&format);
    if (!vs_storage_source_parse_xml(source, disk->src, false, error)) {
        vs_error_prefix(error, "<disks> <disk> %u (name %s)", n, name);
        return false;
    }
    return true;
}

static bool
snapshot_parse(VsSnapshotDef *def, const xmlNode *root, GError **error)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    guint n = 0;

    def->name = vs_xml_child_text(root, "name");
    if (def->name && !vs_xml_name_valid(def->name)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<name> '%s' must be non-empty, without '/' or a newline", def->name);
        return false;
    }
    def->description = vs_xml_child_text(root, "description");
    if (!parse_location(vs_xml_child(root, "memory"), "snapshot", &def->memory, error)) {
        vs_error_prefix(error, "<memory>");
        return false;
    }
    vs_xml_foreach_child(node, vs_xml_child(root, "disks"), "disk") {
        if (!snapshot_disk_parse(def, seen, node, ++n, error))
            return false;
    }
    return true;
}

VsSnapshotDef *
vs_snapshot_def_parse_string(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsSnapshotDef) def = vs_snapshot_def_new(NULL);
    g_autoptr(xmlDoc) doc = vs_xml_read(xml, filename, "domainsnapshot", false, error);

    if (!doc)
        return NULL;
    if (!snapshot_parse(def, xmlDocGetRootElement(doc), error)) {
        vs_error_prefix(error, "xml: %s", vs_xml_doc_name(filename));
        return NULL;
    }
    return g_steal_pointer(&def);
}

static void
snapshot_disk_format(GString *buf, const VsSnapshotDiskDef *disk)
{
    const VsStorageSource *src = disk->src;

    g_string_append(buf, "    <disk");
    vs_xml_attr(buf, "name", disk->name);
    vs_xml_attr(buf, "snapshot", location_to_string(disk->snapshot));
    /* Like libvirt: a disk without an overlay location or format is a bare
     * element, with no type. */
    if (!src || (vs_storage_source_is_empty(src) && !src->format)) {
        g_string_append(buf, "/>\n");
        return;
    }
    vs_xml_attr(buf, "type", vs_disk_type_to_string(src->type));
    g_string_append(buf, ">\n");
    if (src->format) {
        g_string_append(buf, "      <driver");
        vs_xml_attr(buf, "type", src->format);
        g_string_append(buf, "/>\n");
    }
    if (!vs_storage_source_is_empty(src))
        vs_storage_source_format_xml(buf, 6, "source", src);
    g_string_append(buf, "    </disk>\n");
}

char *
vs_snapshot_def_format(const VsSnapshotDef *def)
{
    GString *buf = g_string_new("<domainsnapshot>\n");

    vs_xml_text_element(buf, 2, "name", def->name);
    vs_xml_text_element(buf, 2, "description", def->description);
    if (def->memory != VS_SNAPSHOT_LOCATION_DEFAULT) {
        g_string_append(buf, "  <memory");
        vs_xml_attr(buf, "snapshot", location_to_string(def->memory));
        g_string_append(buf, "/>\n");
    }
    if (def->disks && def->disks->len) {
        g_string_append(buf, "  <disks>\n");
        for (guint i = 0; i < def->disks->len; i++)
            snapshot_disk_format(buf, g_ptr_array_index(def->disks, i));
        g_string_append(buf, "  </disks>\n");
    }
    g_string_append(buf, "</domainsnapshot>\n");
    return g_string_free(buf, FALSE);
}
