/* Storage pool and volume XML. virtsnap reads pools to find where a volume disk
 * really lives and to recreate a missing pool on restore, and reads volumes to
 * learn a volume's path, format and backing file; it writes both to define pools
 * and create volumes. What libvirt requires per pool type (a host for netfs, a
 * device for iscsi, an initiator for iscsi-direct, ...) is checked at parse time
 * so that a restore fails while reading the backup, not halfway through it.
 * Output follows libvirt's own element order, so that a document written here
 * compares cleanly with what virsh pool-dumpxml shows afterwards. */
#include "xml-internal.h"

#include <inttypes.h>
#include <string.h>

VS_ENUM_IMPL(vs_pool_type, VsPoolType, VS_POOL_LAST,
    "dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath",
    "rbd", "sheepdog", "gluster", "zfs", "vstorage")

void
vs_pool_def_free(VsPoolDef *def)
{
    if (!def)
        return;
    g_free(def->name);
    g_free(def->uuid);
    if (def->hosts)
        g_ptr_array_unref(def->hosts);
    g_free(def->source_dir);
    if (def->devices)
        g_ptr_array_unref(def->devices);
    g_free(def->source_name);
    g_free(def->source_format);
    g_free(def->adapter_type);
    g_free(def->adapter_name);
    g_free(def->initiator_iqn);
    g_free(def->target_path);
    g_free(def->auth_type);
    g_free(def->auth_username);
    g_free(def->auth_secret_usage);
    g_free(def->auth_secret_uuid);
    g_free(def);
}

/* Which parts of <source> and <target> libvirt insists on, per pool type
 * (libvirt's poolTypeInfo flags, narrowed to what its parser enforces). */
static bool
pool_needs_host(VsPoolType t)
{
    return t == VS_POOL_NETFS || t == VS_POOL_ISCSI || t == VS_POOL_ISCSI_DIRECT ||
           t == VS_POOL_RBD || t == VS_POOL_SHEEPDOG || t == VS_POOL_GLUSTER;
}

static bool
pool_needs_device(VsPoolType t)
{
    return t == VS_POOL_FS || t == VS_POOL_DISK || t == VS_POOL_ISCSI ||
           t == VS_POOL_ISCSI_DIRECT;
}

static bool
pool_needs_name(VsPoolType t)
{
    /* logical falls back to the pool's own name for its volume group. */
    return t == VS_POOL_RBD || t == VS_POOL_SHEEPDOG || t == VS_POOL_GLUSTER ||
           t == VS_POOL_ZFS || t == VS_POOL_VSTORAGE;
}

static bool
pool_needs_target(VsPoolType t)
{
    return t == VS_POOL_DIR || t == VS_POOL_FS || t == VS_POOL_NETFS || t == VS_POOL_DISK ||
           t == VS_POOL_ISCSI || t == VS_POOL_SCSI || t == VS_POOL_MPATH ||
           t == VS_POOL_VSTORAGE;
}

/* libvirt's virStorageAuthDefParse: a type, a user and a secret to name. */
static bool
pool_auth_parse(VsPoolDef *def, const xmlNode *auth, GError **error)
{
    xmlNode *secret = vs_xml_child(auth, "secret");

    if (!auth)
        return true;
    def->auth_type = vs_xml_prop(auth, "type");
    def->auth_username = vs_xml_prop(auth, "username");
    def->auth_secret_usage = vs_xml_prop(secret, "usage");
    def->auth_secret_uuid = vs_xml_prop(secret, "uuid");
    if (g_strcmp0(def->auth_type, "chap") != 0 && g_strcmp0(def->auth_type, "ceph") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<source> <auth type='%s'>: unknown type; expected chap or ceph",
                    def->auth_type ? def->auth_type : "");
        return false;
    }
    if (!def->auth_username || !*def->auth_username) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML, "<source> <auth> needs username=");
        return false;
    }
    if (!def->auth_secret_usage && !def->auth_secret_uuid) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<source> <auth> needs <secret usage='...'/> or <secret uuid='...'/>");
        return false;
    }
    if (def->auth_secret_uuid && !vs_xml_uuid_valid(def->auth_secret_uuid)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<source> <auth> <secret uuid='%s'> is not a UUID", def->auth_secret_uuid);
        return false;
    }
    return true;
}

static bool
pool_source_parse(VsPoolDef *def, const xmlNode *source, GError **error)
{
    guint n = 0;

    vs_xml_foreach_child(node, source, "host") {
        VsHostDef *host = vs_xml_parse_host(node, false, error);

        n++;
        if (!host) {
            vs_error_prefix(error, "<source> <host> %u", n);
            return false;
        }
        g_ptr_array_add(def->hosts, host);
    }
    n = 0;
    vs_xml_foreach_child(node, source, "device") {
        char *path = vs_xml_prop(node, "path");

        n++;
        if (!path || !*path) {
            g_free(path);
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<source> <device> %u: missing path=, e.g. <device path='/dev/sdb'/>", n);
            return false;
        }
        g_ptr_array_add(def->devices, path);
    }
    def->source_dir = vs_xml_child_prop(source, "dir", "path");
    def->source_name = vs_xml_child_text(source, "name");
    def->source_format = vs_xml_child_prop(source, "format", "type");
    def->adapter_type = vs_xml_child_prop(source, "adapter", "type");
    def->adapter_name = vs_xml_child_prop(source, "adapter", "name");
    def->initiator_iqn = vs_xml_child_prop(vs_xml_child(source, "initiator"), "iqn", "name");
    if (vs_xml_child(source, "adapter") && !def->adapter_type) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<source> <adapter> needs type=, e.g. <adapter type='scsi_host' name='host0'/>");
        return false;
    }
    return pool_auth_parse(def, vs_xml_child(source, "auth"), error);
}

static bool
pool_check(const VsPoolDef *def, GError **error)
{
    const char *type = vs_pool_type_to_string(def->type);

    if (pool_needs_host(def->type) && !def->hosts->len) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<pool type='%s'> needs <source><host name='...'/></source>", type);
        return false;
    }
    if (def->type == VS_POOL_NETFS && !def->source_dir) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<pool type='netfs'> needs <source><dir path='/export'/></source>");
        return false;
    }
    if (pool_needs_device(def->type) && !def->devices->len) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<pool type='%s'> needs <source><device path='...'/></source>", type);
        return false;
    }
    if (pool_needs_name(def->type) && !def->source_name) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<pool type='%s'> needs <source><name>...</name></source>", type);
        return false;
    }
    if (def->type == VS_POOL_SCSI && !def->adapter_type) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<pool type='scsi'> needs <source><adapter type='scsi_host' name='host0'/></source>");
        return false;
    }
    if (def->type == VS_POOL_ISCSI_DIRECT && !def->initiator_iqn) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<pool type='iscsi-direct'> needs <source><initiator><iqn name='...'/>"
                    "</initiator></source>");
        return false;
    }
    if (pool_needs_target(def->type) && !def->target_path) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<pool type='%s'> needs <target><path>...</path></target>", type);
        return false;
    }
    return true;
}

static bool
scaled_child(const xmlNode *parent, const char *name, uint64_t *out, GError **error)
{
    xmlNode *node = vs_xml_child(parent, name);

    return !node || vs_xml_parse_scaled(node, name, out, error);
}

static bool
pool_parse(VsPoolDef *def, const xmlNode *root, GError **error)
{
    g_autofree char *type = vs_xml_prop(root, "type");
    xmlNode *source;
    int val;

    if (!type) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<pool> needs a type= attribute, e.g. <pool type='dir'>");
        return false;
    }
    if ((val = vs_pool_type_from_string(type)) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "unknown pool type '%s'; expected dir, fs, netfs, logical, disk, iscsi, "
                    "iscsi-direct, scsi, mpath, rbd, sheepdog, gluster, zfs or vstorage", type);
        return false;
    }
    def->type = val;
    def->name = vs_xml_child_text(root, "name");
    if (!def->name || !*def->name) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "missing <name>; a pool needs one, e.g. <name>default</name>");
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
                    "<uuid> '%s' is not a UUID; expected 32 hex digits", def->uuid);
        return false;
    }
    if (!scaled_child(root, "capacity", &def->capacity, error) ||
        !scaled_child(root, "allocation", &def->allocation, error) ||
        !scaled_child(root, "available", &def->available, error))
        return false;
    if ((source = vs_xml_child(root, "source")) && !pool_source_parse(def, source, error))
        return false;
    def->target_path = vs_xml_child_text(vs_xml_child(root, "target"), "path");
    if (def->target_path)
        g_strstrip(def->target_path);
    return pool_check(def, error);
}

static VsPoolDef *
pool_def_new(void)
{
    VsPoolDef *def = g_new0(VsPoolDef, 1);

    def->hosts = g_ptr_array_new_with_free_func((GDestroyNotify)vs_host_def_free);
    def->devices = g_ptr_array_new_with_free_func(g_free);
    return def;
}

VsPoolDef *
vs_pool_def_parse_string(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsPoolDef) def = pool_def_new();
    g_autoptr(xmlDoc) doc = vs_xml_read(xml, filename, "pool", false, error);

    if (!doc)
        return NULL;
    if (!pool_parse(def, xmlDocGetRootElement(doc), error)) {
        vs_error_prefix(error, "xml: %s", vs_xml_doc_name(filename));
        return NULL;
    }
    return g_steal_pointer(&def);
}

VsPoolDef *
vs_pool_def_parse_file(const char *path, GError **error)
{
    g_autofree char *xml = NULL;
    g_autoptr(GError) local = NULL;

    if (!g_file_get_contents(path, &xml, NULL, &local)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "xml: %s", local->message);
        return NULL;
    }
    return vs_pool_def_parse_string(xml, path, error);
}

static void
format_bytes(GString *buf, int indent, const char *name, uint64_t value)
{
    vs_xml_indent(buf, indent);
    g_string_append_printf(buf, "<%s unit='bytes'>%" PRIu64 "</%s>\n", name, value, name);
}

char *
vs_pool_def_format(const VsPoolDef *def)
{
    GString *buf = g_string_new(NULL);

    g_string_append(buf, "<pool");
    vs_xml_attr(buf, "type", vs_pool_type_to_string(def->type));
    g_string_append(buf, ">\n");
    vs_xml_text_element(buf, 2, "name", def->name);
    vs_xml_text_element(buf, 2, "uuid", def->uuid);
    format_bytes(buf, 2, "capacity", def->capacity);
    format_bytes(buf, 2, "allocation", def->allocation);
    format_bytes(buf, 2, "available", def->available);

    /* libvirt writes <source> even when it is empty (a dir pool's), and in
     * this order. */
    g_string_append(buf, "  <source>\n");
    for (guint i = 0; def->hosts && i < def->hosts->len; i++) {
        const VsHostDef *host = g_ptr_array_index(def->hosts, i);

        g_string_append(buf, "    <host");
        vs_xml_attr(buf, "name", host->name);
        vs_xml_attr(buf, "port", host->port);
        g_string_append(buf, "/>\n");
    }
    for (guint i = 0; def->devices && i < def->devices->len; i++) {
        g_string_append(buf, "    <device");
        vs_xml_attr(buf, "path", g_ptr_array_index(def->devices, i));
        g_string_append(buf, "/>\n");
    }
    if (def->source_dir) {
        g_string_append(buf, "    <dir");
        vs_xml_attr(buf, "path", def->source_dir);
        g_string_append(buf, "/>\n");
    }
    if (def->adapter_type) {
        g_string_append(buf, "    <adapter");
        vs_xml_attr(buf, "type", def->adapter_type);
        vs_xml_attr(buf, "name", def->adapter_name);
        g_string_append(buf, "/>\n");
    }
    vs_xml_text_element(buf, 4, "name", def->source_name);
    if (def->initiator_iqn) {
        g_string_append(buf, "    <initiator>\n      <iqn");
        vs_xml_attr(buf, "name", def->initiator_iqn);
        g_string_append(buf, "/>\n    </initiator>\n");
    }
    if (def->source_format) {
        g_string_append(buf, "    <format");
        vs_xml_attr(buf, "type", def->source_format);
        g_string_append(buf, "/>\n");
    }
    if (def->auth_type) {
        g_string_append(buf, "    <auth");
        vs_xml_attr(buf, "type", def->auth_type);
        vs_xml_attr(buf, "username", def->auth_username);
        g_string_append(buf, ">\n      <secret");
        /* libvirt prefers the uuid when both are known. */
        if (def->auth_secret_uuid)
            vs_xml_attr(buf, "uuid", def->auth_secret_uuid);
        else
            vs_xml_attr(buf, "usage", def->auth_secret_usage);
        g_string_append(buf, "/>\n    </auth>\n");
    }
    g_string_append(buf, "  </source>\n");

    if (def->target_path) {
        g_string_append(buf, "  <target>\n");
        vs_xml_text_element(buf, 4, "path", def->target_path);
        g_string_append(buf, "  </target>\n");
    }
    g_string_append(buf, "</pool>\n");
    return g_string_free(buf, FALSE);
}

/* Volumes ------------------------------------------------------------------- */

static const char *const vol_types[] = {
    "file", "block", "dir", "network", "netdir", "ploop", NULL,
};

void
vs_vol_def_free(VsVolDef *def)
{
    if (!def)
        return;
    g_free(def->name);
    g_free(def->key);
    g_free(def->type);
    g_free(def->target_path);
    g_free(def->target_format);
    g_free(def->backing_path);
    g_free(def->backing_format);
    g_free(def);
}

static bool
vol_parse(VsVolDef *def, const xmlNode *root, GError **error)
{
    xmlNode *target = vs_xml_child(root, "target");
    xmlNode *backing = vs_xml_child(root, "backingStore");
    xmlNode *capacity = vs_xml_child(root, "capacity");
    bool known = false;

    def->type = vs_xml_prop(root, "type");
    for (int i = 0; def->type && vol_types[i]; i++)
        known = known || !strcmp(def->type, vol_types[i]);
    if (def->type && !known) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "unknown volume type '%s'; expected file, block, dir, network, netdir "
                    "or ploop", def->type);
        return false;
    }
    def->name = vs_xml_child_text(root, "name");
    if (!def->name || !*def->name) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "missing <name>; a volume needs one, e.g. <name>vm.qcow2</name>");
        return false;
    }
    if (!vs_xml_name_valid(def->name)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<name> '%s' must not contain '/' or a newline", def->name);
        return false;
    }
    def->key = vs_xml_child_text(root, "key");
    if (backing) {
        def->backing_path = vs_xml_child_text(backing, "path");
        def->backing_format = vs_xml_child_prop(backing, "format", "type");
        if (def->backing_path)
            g_strstrip(def->backing_path);
        if (!def->backing_path || !*def->backing_path) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<backingStore> needs a <path>, e.g. "
                        "<path>/var/lib/libvirt/images/base.qcow2</path>");
            return false;
        }
    }
    /* libvirt takes the size of a volume with a backing store from the
     * backing file when no capacity is given. */
    if (!capacity && !backing) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "missing <capacity>, e.g. <capacity unit='GiB'>20</capacity>");
        return false;
    }
    if (capacity && !vs_xml_parse_scaled(capacity, "capacity", &def->capacity, error))
        return false;
    if (!scaled_child(root, "allocation", &def->allocation, error))
        return false;
    def->target_path = vs_xml_child_text(target, "path");
    if (def->target_path)
        g_strstrip(def->target_path);
    def->target_format = vs_xml_child_prop(target, "format", "type");
    return true;
}

VsVolDef *
vs_vol_def_parse_string(const char *xml, const char *filename, GError **error)
{
    g_autoptr(VsVolDef) def = g_new0(VsVolDef, 1);
    g_autoptr(xmlDoc) doc = vs_xml_read(xml, filename, "volume", false, error);

    if (!doc)
        return NULL;
    if (!vol_parse(def, xmlDocGetRootElement(doc), error)) {
        vs_error_prefix(error, "xml: %s", vs_xml_doc_name(filename));
        return NULL;
    }
    return g_steal_pointer(&def);
}

char *
vs_vol_def_format(const VsVolDef *def)
{
    GString *buf = g_string_new(NULL);

    g_string_append(buf, "<volume");
    vs_xml_attr(buf, "type", def->type);
    g_string_append(buf, ">\n");
    vs_xml_text_element(buf, 2, "name", def->name);
    vs_xml_text_element(buf, 2, "key", def->key);
    format_bytes(buf, 2, "capacity", def->capacity);
    format_bytes(buf, 2, "allocation", def->allocation);
    if (def->target_path || def->target_format) {
        g_string_append(buf, "  <target>\n");
        vs_xml_text_element(buf, 4, "path", def->target_path);
        if (def->target_format) {
            g_string_append(buf, "    <format");
            vs_xml_attr(buf, "type", def->target_format);
            g_string_append(buf, "/>\n");
        }
        g_string_append(buf, "  </target>\n");
    }
    if (def->backing_path) {
        g_string_append(buf, "  <backingStore>\n");
        vs_xml_text_element(buf, 4, "path", def->backing_path);
        if (def->backing_format) {
            g_string_append(buf, "    <format");
            vs_xml_attr(buf, "type", def->backing_format);
            g_string_append(buf, "/>\n");
        }
        g_string_append(buf, "  </backingStore>\n");
    }
    g_string_append(buf, "</volume>\n");
    return g_string_free(buf, FALSE);
}
