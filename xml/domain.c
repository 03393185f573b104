/* Domain XML: the disks and the guest-agent channel that virtsnap acts on, read
 * from the document libvirt gives us; the document itself is kept whole because
 * it is the user's VM definition, saved with every backup and defined again on
 * restore. Formatting writes each disk's model back into its own <disk> element
 * and serializes the rest exactly as it came, so a restore that only moves a disk
 * produces a diff of only that disk. Checks mirror what libvirt 9.0 itself
 * rejects when parsing, so that virtsnap never refuses a domain libvirt runs. */
#include "xml-internal.h"

#include <string.h>

#define AGENT_CHANNEL_NAME "org.qemu.guest_agent.0"

VS_ENUM_IMPL(vs_disk_device, VsDiskDevice, VS_DISK_DEVICE_LAST,
    "disk", "cdrom", "floppy", "lun")

void
vs_disk_def_free(VsDiskDef *disk)
{
    if (!disk)
        return;
    g_free(disk->target_dev);
    g_free(disk->target_bus);
    g_free(disk->driver_name);
    g_free(disk->alias);
    vs_storage_source_free(disk->src);
    g_free(disk);
}

void
vs_domain_def_free(VsDomainDef *def)
{
    if (!def)
        return;
    g_free(def->type);
    g_free(def->name);
    g_free(def->uuid);
    if (def->disks)
        g_ptr_array_unref(def->disks);
    g_free(def->agent_socket);
    if (def->doc)
        xmlFreeDoc(def->doc);
    g_free(def);
}

static VsDiskDef *
disk_parse(xmlNode *node, guint n, GError **error)
{
    g_autoptr(VsDiskDef) disk = g_new0(VsDiskDef, 1);
    g_autofree char *label = NULL;
    g_autofree char *device = NULL;
    g_autofree char *type = NULL;
    xmlNode *target = vs_xml_child(node, "target");
    xmlNode *driver = vs_xml_child(node, "driver");
    xmlNode *source = vs_xml_child(node, "source");
    int val;

    disk->node = node;
    disk->target_dev = vs_xml_prop(target, "dev");
    disk->target_bus = vs_xml_prop(target, "bus");
    if (!disk->target_dev || !*disk->target_dev) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<disk> %u: missing <target dev>; every disk needs one, "
                    "e.g. <target dev='vda' bus='virtio'/>", n);
        return NULL;
    }
    label = g_strdup_printf("<disk> %u (target %s)", n, disk->target_dev);

    device = vs_xml_prop(node, "device");
    if (device) {
        if ((val = vs_disk_device_from_string(device)) < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "%s: unknown device='%s'; expected disk, cdrom, floppy or lun",
                        label, device);
            return NULL;
        }
        disk->device = val;
    }

    type = vs_xml_prop(node, "type");
    if ((val = type ? vs_disk_type_from_string(type) : VS_DISK_TYPE_FILE) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML, "%s: unknown type='%s'; expected %s",
                    label, type, vs_disk_type_list());
        return NULL;
    }

    disk->driver_name = vs_xml_prop(driver, "name");
    disk->readonly = vs_xml_child(node, "readonly") != NULL;
    disk->shareable = vs_xml_child(node, "shareable") != NULL;
    disk->transient = vs_xml_child(node, "transient") != NULL;
    disk->alias = vs_xml_child_prop(node, "alias", "name");

    disk->src = vs_storage_source_new(val);
    disk->src->format = vs_xml_prop(driver, "type");
    if (!vs_storage_source_parse_xml(source, disk->src, true, error)) {
        vs_error_prefix(error, "%s", label);
        return NULL;
    }
    /* The same <auth> the formatter will update: <source>'s, else the
     * pre-3.9 one directly in <disk>. */
    if (!vs_xml_child(source, "auth"))
        disk->src->auth_username = vs_xml_child_prop(node, "auth", "username");

    if (!source || vs_storage_source_is_empty(disk->src)) {
        if (disk->device != VS_DISK_DEVICE_CDROM && disk->device != VS_DISK_DEVICE_FLOPPY) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "%s: missing <source>; only a cdrom or floppy may be empty, "
                        "a %s needs e.g. <source file='/var/lib/libvirt/images/vm.qcow2'/>",
                        label, vs_disk_device_to_string(disk->device));
            return NULL;
        }
        g_clear_pointer(&disk->src, vs_storage_source_free);
        return g_steal_pointer(&disk);
    }
    if (!vs_storage_source_parse_backing(node, disk->src, error)) {
        vs_error_prefix(error, "%s", label);
        return NULL;
    }
    return g_steal_pointer(&disk);
}

static bool
agent_channel_parse(VsDomainDef *def, const xmlNode *devices, GError **error)
{
    vs_xml_foreach_child(channel, devices, "channel") {
        xmlNode *target = vs_xml_child(channel, "target");
        g_autofree char *name = vs_xml_prop(target, "name");
        g_autofree char *state = NULL;

        if (g_strcmp0(name, AGENT_CHANNEL_NAME) != 0)
            continue;
        def->has_agent_channel = true;
        def->agent_socket = vs_xml_child_prop(channel, "source", "path");
        state = vs_xml_prop(target, "state");
        if (!state) {
            def->agent_state = VS_CHANNEL_STATE_UNKNOWN;
        } else if (!strcmp(state, "connected")) {
            def->agent_state = VS_CHANNEL_STATE_CONNECTED;
        } else if (!strcmp(state, "disconnected")) {
            def->agent_state = VS_CHANNEL_STATE_DISCONNECTED;
        } else {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<channel> %s: unknown <target state='%s'>; expected connected or "
                        "disconnected", AGENT_CHANNEL_NAME, state);
            return false;
        }
        return true;
    }
    return true;
}

static bool
domain_parse(VsDomainDef *def, xmlNode *root, GError **error)
{
    g_autofree char *id = vs_xml_prop(root, "id");
    g_autoptr(GHashTable) targets = g_hash_table_new(g_str_hash, g_str_equal);
    xmlNode *devices;
    guint n = 0;
    int64_t val;

    def->type = vs_xml_prop(root, "type");
    if (!def->type || !*def->type) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<domain> needs a type= attribute, e.g. <domain type='kvm'>");
        return false;
    }
    if (id) {
        if (!vs_xml_parse_int64(id, &val) || val < -1 || val > G_MAXINT) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<domain id='%s'>: not a domain id (an integer, -1 or more)", id);
            return false;
        }
        def->id = (int)val;
    }
    def->name = vs_xml_child_text(root, "name");
    if (!def->name || !*def->name) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "missing <name>; a domain needs one, e.g. <name>vm1</name>");
        return false;
    }
    if (!vs_xml_name_valid(def->name)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<name> '%s' must not contain '/' or a newline", def->name);
        return false;
    }
    def->uuid = vs_xml_child_text(root, "uuid");
    if (def->uuid && !vs_xml_uuid_valid(def->uuid)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<uuid> '%s' is not a UUID; expected 32 hex digits like "
                    "4dea22b3-1d52-d8f3-2516-782e98ab3fa0", def->uuid);
        return false;
    }

    devices = vs_xml_child(root, "devices");
    vs_xml_foreach_child(node, devices, "disk") {
        VsDiskDef *disk = disk_parse(node, ++n, error);
        gpointer first;

        if (!disk)
            return false;
        g_ptr_array_add(def->disks, disk);
        if ((first = g_hash_table_lookup(targets, disk->target_dev))) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<disk> %u (target %s): target %s is already used by <disk> %u",
                        n, disk->target_dev, disk->target_dev, GPOINTER_TO_UINT(first));
            return false;
        }
        g_hash_table_insert(targets, disk->target_dev, GUINT_TO_POINTER(n));
    }
    return agent_channel_parse(def, devices, error);
}

VsDomainDef *
vs_domain_def_parse_string(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsDomainDef) def = g_new0(VsDomainDef, 1);

    def->id = -1;
    def->disks = g_ptr_array_new_with_free_func((GDestroyNotify)vs_disk_def_free);
    if (!(def->doc = vs_xml_read(xml, filename, "domain", true, error)))
        return NULL;
    if (!domain_parse(def, xmlDocGetRootElement(def->doc), error)) {
        vs_error_prefix(error, "xml: %s", vs_xml_doc_name(filename));
        return NULL;
    }
    return g_steal_pointer(&def);
}

VsDomainDef *
vs_domain_def_parse_file(const char *path, GError **error)
{
    g_autofree char *xml = NULL;
    g_autoptr(GError) local = NULL;

    if (!g_file_get_contents(path, &xml, NULL, &local)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "xml: %s", local->message);
        return NULL;
    }
    return vs_domain_def_parse_string(xml, path, error);
}

VsDiskDef *
vs_domain_def_find_disk(const VsDomainDef *def, const char *target_dev)
{
    for (guint i = 0; target_dev && i < def->disks->len; i++) {
        VsDiskDef *disk = g_ptr_array_index(def->disks, i);

        if (!g_strcmp0(disk->target_dev, target_dev))
            return disk;
    }
    return NULL;
}

static void
apply_driver(xmlNode *node, const char *name, const VsStorageSource *src)
{
    xmlNode *driver = vs_xml_child(node, "driver");
    bool was_empty;

    if (!driver) {
        if (!name && !(src && src->format))
            return;
        driver = vs_xml_insert_child(node, NULL, "driver");
    }
    was_empty = !driver->properties && !driver->children;
    vs_xml_set_prop(driver, "name", name);
    /* An empty cdrom keeps whatever format its drive was given. */
    if (src)
        vs_xml_set_prop(driver, "type", src->format);
    /* Dropped when the model emptied it, unless another <driver> would then
     * be read in its place. */
    if (!was_empty && !driver->properties && !driver->children && !vs_xml_next(driver, "driver"))
        vs_xml_remove(driver);
}

/* Whether the disk's <source> names media, judged exactly as the parser
 * judges it, so that what the parser saw as empty is left alone. */
static bool
source_has_location(const xmlNode *disk, const xmlNode *source)
{
    g_autofree char *type = vs_xml_prop(disk, "type");
    int t = type ? vs_disk_type_from_string(type) : VS_DISK_TYPE_FILE;
    g_autoptr(VsStorageSource) src = NULL;

    if (t < 0)
        return false;
    src = vs_storage_source_new(t);
    return !vs_storage_source_parse_xml(source, src, true, NULL) ||
           !vs_storage_source_is_empty(src);
}

static void
apply_disk(const VsDiskDef *disk)
{
    xmlNode *node = disk->node;
    xmlNode *child;

    apply_driver(node, disk->driver_name, disk->src);
    if (disk->src) {
        /* Checked beforehand with dry_run, so this cannot fail. */
        vs_storage_source_apply_xml(node, disk->src, false, NULL);
        return;
    }
    /* Ejected media takes its backing chain along. A <source> with only
     * startupPolicy and the like already means "empty", and then nothing
     * here was read into the model, so nothing is the model's to drop. */
    if (!(child = vs_xml_child(node, "source")) || !source_has_location(node, child))
        return;
    vs_xml_remove_all(node, "source");
    vs_xml_remove_all(node, "backingStore");
}

char *
vs_domain_def_format(VsDomainDef *def, GError **error)
{
    const char *name = def->name ? def->name : "(unnamed)";

    if (!def->doc) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "xml: format domain '%s': no parsed document to write into", name);
        return NULL;
    }
    /* Every disk is checked before any is written, so that a failure leaves
     * the document as it was. */
    for (guint i = 0; i < def->disks->len; i++) {
        const VsDiskDef *disk = g_ptr_array_index(def->disks, i);
        const char *target = disk->target_dev ? disk->target_dev : "(no target)";
        xmlNode *node = disk->node;

        if (!node || node->doc != def->doc || !vs_xml_is(node, "disk")) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "xml: format domain '%s': disk %s has no <disk> element in the "
                        "document; disks cannot be added through the model", name, target);
            return NULL;
        }
        if (!disk->src && disk->device != VS_DISK_DEVICE_CDROM &&
            disk->device != VS_DISK_DEVICE_FLOPPY) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "xml: format domain '%s': disk %s: only a cdrom or floppy may be "
                        "without a source", name, target);
            return NULL;
        }
        if (disk->src && !vs_storage_source_apply_xml(node, disk->src, true, error)) {
            vs_error_prefix(error, "xml: format domain '%s': disk %s", name, target);
            return NULL;
        }
    }
    for (guint i = 0; i < def->disks->len; i++)
        apply_disk(g_ptr_array_index(def->disks, i));
    return vs_xml_dump(def->doc);
}
