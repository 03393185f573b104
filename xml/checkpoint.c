/* Checkpoint XML (<domaincheckpoint>). A checkpoint is the dirty-bitmap mark
 * that lets the next backup be incremental; virtsnap creates one with every
 * backup and reads libvirt's list back to find the chain an incremental backup
 * starts from. libvirt's own output embeds the whole <domain> as it was at the
 * checkpoint; that copy is skipped, the live domain is what virtsnap works on. */
#include "xml-internal.h"

#include <inttypes.h>
#include <string.h>

static void
checkpoint_disk_free(VsCheckpointDiskDef *disk)
{
    if (!disk)
        return;
    g_free(disk->name);
    g_free(disk->bitmap);
    g_free(disk);
}

VsCheckpointDef *
vs_checkpoint_def_new(const char *name)
{
    VsCheckpointDef *def = g_new0(VsCheckpointDef, 1);

    def->name = g_strdup(name);
    def->disks = g_ptr_array_new_with_free_func((GDestroyNotify)checkpoint_disk_free);
    return def;
}

void
vs_checkpoint_def_free(VsCheckpointDef *def)
{
    if (!def)
        return;
    g_free(def->name);
    g_free(def->description);
    g_free(def->parent);
    if (def->disks)
        g_ptr_array_unref(def->disks);
    g_free(def);
}

VsCheckpointDiskDef *
vs_checkpoint_def_add_disk(VsCheckpointDef *def, const char *name, bool checkpoint)
{
    VsCheckpointDiskDef *disk = g_new0(VsCheckpointDiskDef, 1);

    disk->name = g_strdup(name);
    disk->checkpoint = checkpoint;
    g_ptr_array_add(def->disks, disk);
    return disk;
}

static bool
checkpoint_disk_parse(VsCheckpointDef *def, GHashTable *seen, const xmlNode *node, guint n,
                      GError **error)
{
    g_autofree char *name = vs_xml_prop(node, "name");
    g_autofree char *checkpoint = vs_xml_prop(node, "checkpoint");
    g_autofree char *size = vs_xml_prop(node, "size");
    VsCheckpointDiskDef *disk;
    uint64_t bytes = 0;

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
    if (checkpoint && strcmp(checkpoint, "bitmap") != 0 && strcmp(checkpoint, "no") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<disks> <disk> %u (name %s): unknown checkpoint='%s'; expected bitmap or no",
                    n, name, checkpoint);
        return false;
    }
    if (size && !vs_xml_parse_uint64(size, UINT64_MAX, &bytes)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<disks> <disk> %u (name %s): size='%s' is not a number of bytes", n, name, size);
        return false;
    }
    /* An absent checkpoint= means bitmap, libvirt's default. */
    disk = vs_checkpoint_def_add_disk(def, name, g_strcmp0(checkpoint, "no") != 0);
    disk->size = bytes;
    disk->has_size = size != NULL;
    g_hash_table_add(seen, disk->name);
    if (disk->checkpoint)
        disk->bitmap = vs_xml_prop(node, "bitmap");
    return true;
}

static bool
checkpoint_parse(VsCheckpointDef *def, const xmlNode *root, GError **error)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    g_autofree char *created = NULL;
    guint n = 0;

    def->name = vs_xml_child_text(root, "name");
    if (def->name && !vs_xml_name_valid(def->name)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<name> '%s' must be non-empty, without '/' or a newline", def->name);
        return false;
    }
    def->description = vs_xml_child_text(root, "description");
    def->parent = vs_xml_child_text(vs_xml_child(root, "parent"), "name");
    if ((created = vs_xml_child_text(root, "creationTime"))) {
        g_strstrip(created);
        if (!vs_xml_parse_int64(created, &def->creation_time)) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<creationTime> '%s' is not a number of seconds since the epoch",
                        created);
            return false;
        }
    }
    vs_xml_foreach_child(node, vs_xml_child(root, "disks"), "disk") {
        if (!checkpoint_disk_parse(def, seen, node, ++n, error))
            return false;
    }
    return true;
}

VsCheckpointDef *
vs_checkpoint_def_parse_string(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsCheckpointDef) def = vs_checkpoint_def_new(NULL);
    g_autoptr(xmlDoc) doc = vs_xml_read(xml, filename, "domaincheckpoint", false, error);

    if (!doc)
        return NULL;
    if (!checkpoint_parse(def, xmlDocGetRootElement(doc), error)) {
        vs_error_prefix(error, "xml: %s", vs_xml_doc_name(filename));
        return NULL;
    }
    return g_steal_pointer(&def);
}

char *
vs_checkpoint_def_format(const VsCheckpointDef *def)
{
    GString *buf = g_string_new("<domaincheckpoint>\n");

    vs_xml_text_element(buf, 2, "name", def->name);
    vs_xml_text_element(buf, 2, "description", def->description);
    if (def->parent) {
        g_string_append(buf, "  <parent>\n");
        vs_xml_text_element(buf, 4, "name", def->parent);
        g_string_append(buf, "  </parent>\n");
    }
    if (def->creation_time)
        g_string_append_printf(buf, "  <creationTime>%" PRId64 "</creationTime>\n",
                               def->creation_time);
    if (def->disks && def->disks->len) {
        g_string_append(buf, "  <disks>\n");
        for (guint i = 0; i < def->disks->len; i++) {
            const VsCheckpointDiskDef *disk = g_ptr_array_index(def->disks, i);

            g_string_append(buf, "    <disk");
            vs_xml_attr(buf, "name", disk->name);
            vs_xml_attr(buf, "checkpoint", disk->checkpoint ? "bitmap" : "no");
            if (disk->checkpoint)
                vs_xml_attr(buf, "bitmap", disk->bitmap);
            if (disk->has_size)
                g_string_append_printf(buf, " size='%" G_GUINT64_FORMAT "'", disk->size);
            g_string_append(buf, "/>\n");
        }
        g_string_append(buf, "  </disks>\n");
    }
    g_string_append(buf, "</domaincheckpoint>\n");
    return g_string_free(buf, FALSE);
}
