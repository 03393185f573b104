/* Storage sources: the <source> of a domain disk, every level of the
 * <backingStore> chain below it, and the overlay of a snapshot disk all share
 * libvirt's one storage-source grammar, so they share one reader here. Writing
 * comes in two forms: model-only output for snapshot documents, and applying a
 * (possibly changed) model onto a user's domain document in place, touching only
 * the attributes and elements the model describes so that seclabels, reservations,
 * cookies and whatever else libvirt grows later survive a restore. */
#include "xml-internal.h"

#include <string.h>

VS_ENUM_IMPL(vs_disk_type, VsDiskType, VS_DISK_TYPE_LAST,
    "file", "block", "dir", "network", "volume", "nvme", "vhostuser", "vhostvdpa")

/* libvirt 9.0's virStorageNetProtocol, minus "none". */
static const char *const net_protocols[] = {
    "nbd", "rbd", "sheepdog", "gluster", "iscsi", "http", "https", "ftp", "ftps",
    "tftp", "ssh", "vxhs", "nfs", NULL,
};

const char *
vs_disk_type_list(void)
{
    return "file, block, dir, network, volume, nvme, vhostuser or vhostvdpa";
}

VsHostDef *
vs_host_def_new(const char *name, const char *port)
{
    VsHostDef *host = g_new0(VsHostDef, 1);

    host->name = g_strdup(name);
    host->port = g_strdup(port);
    return host;
}

void
vs_host_def_free(VsHostDef *host)
{
    if (!host)
        return;
    g_free(host->name);
    g_free(host->port);
    g_free(host->transport);
    g_free(host->socket);
    g_free(host);
}

static VsHostDef *
host_copy(const VsHostDef *host)
{
    VsHostDef *copy = vs_host_def_new(host->name, host->port);

    copy->transport = g_strdup(host->transport);
    copy->socket = g_strdup(host->socket);
    return copy;
}

VsStorageSource *
vs_storage_source_new(VsDiskType type)
{
    VsStorageSource *src = g_new0(VsStorageSource, 1);

    src->type = type;
    src->hosts = g_ptr_array_new_with_free_func((GDestroyNotify)vs_host_def_free);
    return src;
}

static void
source_free_one(VsStorageSource *src)
{
    g_free(src->format);
    g_free(src->path);
    g_free(src->pool);
    g_free(src->volume);
    g_free(src->mode);
    g_free(src->protocol);
    g_free(src->name);
    if (src->hosts)
        g_ptr_array_unref(src->hosts);
    g_free(src->initiator_iqn);
    g_free(src->auth_username);
    g_free(src);
}

void
vs_storage_source_free(VsStorageSource *src)
{
    /* A loop rather than recursion: chains come from untrusted documents. */
    while (src) {
        VsStorageSource *next = src->backing;
        source_free_one(src);
        src = next;
    }
}

static VsStorageSource *
source_copy_one(const VsStorageSource *src)
{
    VsStorageSource *copy = vs_storage_source_new(src->type);

    copy->format = g_strdup(src->format);
    copy->path = g_strdup(src->path);
    copy->pool = g_strdup(src->pool);
    copy->volume = g_strdup(src->volume);
    copy->mode = g_strdup(src->mode);
    copy->protocol = g_strdup(src->protocol);
    copy->name = g_strdup(src->name);
    for (guint i = 0; src->hosts && i < src->hosts->len; i++)
        g_ptr_array_add(copy->hosts, host_copy(g_ptr_array_index(src->hosts, i)));
    copy->initiator_iqn = g_strdup(src->initiator_iqn);
    copy->auth_username = g_strdup(src->auth_username);
    copy->index = src->index;
    copy->backing_terminated = src->backing_terminated;
    return copy;
}

VsStorageSource *
vs_storage_source_copy(const VsStorageSource *src)
{
    VsStorageSource *head = NULL;
    VsStorageSource **tail = &head;

    for (; src; src = src->backing) {
        *tail = source_copy_one(src);
        tail = &(*tail)->backing;
    }
    return head;
}

/* Types whose <source> the model describes completely enough to write. */
static bool
type_is_modelled(VsDiskType type)
{
    return type == VS_DISK_TYPE_FILE || type == VS_DISK_TYPE_BLOCK ||
           type == VS_DISK_TYPE_DIR || type == VS_DISK_TYPE_NETWORK ||
           type == VS_DISK_TYPE_VOLUME;
}

static const char *
location_attr(VsDiskType type)
{
    switch (type) {
    case VS_DISK_TYPE_FILE: return "file";
    case VS_DISK_TYPE_BLOCK: return "dev";
    case VS_DISK_TYPE_DIR: return "dir";
    default: return NULL;
    }
}

static bool
protocol_known(const char *protocol)
{
    for (int i = 0; net_protocols[i]; i++) {
        if (!strcmp(protocol, net_protocols[i]))
            return true;
    }
    return false;
}

static bool
parse_index(const xmlNode *node, int *index, GError **error)
{
    g_autofree char *str = vs_xml_prop(node, "index");
    uint64_t val;

    if (!str)
        return true;
    if (!vs_xml_parse_uint64(str, G_MAXINT, &val)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "index='%s' is not a non-negative integer", str);
        return false;
    }
    *index = (int)val;
    return true;
}

bool
vs_storage_source_parse_xml(const xmlNode *source, VsStorageSource *src, bool top,
                            GError **error)
{
    const char *attr = location_attr(src->type);
    guint n = 0;

    if (!source)
        return true;
    if (top && !parse_index(source, &src->index, error)) {
        vs_error_prefix(error, "<source>");
        return false;
    }
    src->auth_username = vs_xml_child_prop(source, "auth", "username");

    if (attr) {
        src->path = vs_xml_prop(source, attr);
        /* libvirt reads file='' as "no media", for the tools that write it. */
        if (src->path && !*src->path)
            g_clear_pointer(&src->path, g_free);
        return true;
    }

    if (src->type == VS_DISK_TYPE_VOLUME) {
        src->pool = vs_xml_prop(source, "pool");
        src->volume = vs_xml_prop(source, "volume");
        src->mode = vs_xml_prop(source, "mode");
        if (!src->pool != !src->volume) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<source> needs both pool= and volume=, e.g. "
                        "<source pool='default' volume='vm.qcow2'/>");
            return false;
        }
        if (src->mode && strcmp(src->mode, "host") != 0 && strcmp(src->mode, "direct") != 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<source mode='%s'>: unknown mode; expected host or direct", src->mode);
            return false;
        }
        return true;
    }

    if (src->type != VS_DISK_TYPE_NETWORK)
        return true;

    src->protocol = vs_xml_prop(source, "protocol");
    src->name = vs_xml_prop(source, "name");
    if (!src->protocol) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<source> of a network disk needs protocol=, e.g. "
                    "<source protocol='nfs' name='/export/vm.qcow2'>");
        return false;
    }
    if (!protocol_known(src->protocol)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<source protocol='%s'>: unknown protocol; expected nbd, rbd, sheepdog, "
                    "gluster, iscsi, http, https, ftp, ftps, tftp, ssh, vxhs or nfs",
                    src->protocol);
        return false;
    }
    if (!src->name && strcmp(src->protocol, "nbd") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<source protocol='%s'> needs name= (the export, image or target)",
                    src->protocol);
        return false;
    }
    vs_xml_foreach_child(node, source, "host") {
        VsHostDef *host = vs_xml_parse_host(node, true, error);

        n++;
        if (!host) {
            vs_error_prefix(error, "<source> <host> %u", n);
            return false;
        }
        g_ptr_array_add(src->hosts, host);
    }
    src->initiator_iqn = vs_xml_child_prop(vs_xml_child(source, "initiator"), "iqn", "name");
    return true;
}

bool
vs_storage_source_is_empty(const VsStorageSource *src)
{
    switch (src->type) {
    case VS_DISK_TYPE_FILE:
    case VS_DISK_TYPE_BLOCK:
    case VS_DISK_TYPE_DIR:
        return !src->path;
    case VS_DISK_TYPE_VOLUME:
        return !src->pool;
    case VS_DISK_TYPE_NETWORK:
        return !src->protocol;
    default:
        return false;
    }
}

bool
vs_storage_source_parse_backing(const xmlNode *container, VsStorageSource *src,
                                GError **error)
{
    const xmlNode *node = container;
    int depth = 0;

    for (xmlNode *bs; (bs = vs_xml_child(node, "backingStore")); node = bs) {
        g_autofree char *type = vs_xml_prop(bs, "type");
        xmlNode *source;
        VsStorageSource *backing;
        int t;

        depth++;
        /* A <backingStore/> without a type is libvirt's end-of-chain marker. */
        if (!type) {
            src->backing_terminated = true;
            return true;
        }
        t = vs_disk_type_from_string(type);
        if (t < 0 || !type_is_modelled(t)) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<backingStore> at depth %d: unknown type '%s'; expected file, block, "
                        "dir, network or volume", depth, type);
            return false;
        }
        backing = vs_storage_source_new(t);
        src->backing = backing;
        src = backing;
        if (!parse_index(bs, &src->index, error)) {
            vs_error_prefix(error, "<backingStore> at depth %d", depth);
            return false;
        }
        src->format = vs_xml_child_prop(bs, "format", "type");
        if (!src->format) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<backingStore> at depth %d: missing <format type='...'/> "
                        "(raw, qcow2, ...)", depth);
            return false;
        }
        source = vs_xml_child(bs, "source");
        if (!source) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<backingStore> at depth %d: missing <source>", depth);
            return false;
        }
        if (!vs_storage_source_parse_xml(source, src, false, error)) {
            vs_error_prefix(error, "<backingStore> at depth %d", depth);
            return false;
        }
        if (vs_storage_source_is_empty(src)) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "<backingStore> at depth %d: <source> names no %s", depth,
                        location_attr(src->type) ? location_attr(src->type) : "pool and volume");
            return false;
        }
    }
    return true;
}

/* Model-only output --------------------------------------------------------- */

void
vs_storage_source_format_xml(GString *buf, int indent, const char *element,
                             const VsStorageSource *src)
{
    g_autoptr(GString) children = g_string_new(NULL);
    const char *attr = location_attr(src->type);

    vs_xml_indent(buf, indent);
    g_string_append_printf(buf, "<%s", element);
    if (attr) {
        vs_xml_attr(buf, attr, src->path);
    } else if (src->type == VS_DISK_TYPE_VOLUME) {
        vs_xml_attr(buf, "pool", src->pool);
        vs_xml_attr(buf, "volume", src->volume);
        vs_xml_attr(buf, "mode", src->mode);
    } else if (src->type == VS_DISK_TYPE_NETWORK) {
        vs_xml_attr(buf, "protocol", src->protocol);
        vs_xml_attr(buf, "name", src->name);
        for (guint i = 0; src->hosts && i < src->hosts->len; i++)
            vs_xml_format_host(children, indent + 2, g_ptr_array_index(src->hosts, i));
        if (src->initiator_iqn) {
            vs_xml_indent(children, indent + 2);
            g_string_append(children, "<initiator>\n");
            vs_xml_indent(children, indent + 4);
            g_string_append(children, "<iqn");
            vs_xml_attr(children, "name", src->initiator_iqn);
            g_string_append(children, "/>\n");
            vs_xml_indent(children, indent + 2);
            g_string_append(children, "</initiator>\n");
        }
    }
    /* <auth> is left out on purpose: its <secret> is not in the model, and an
     * <auth> without one is rejected by libvirt. */
    if (!children->len) {
        g_string_append(buf, "/>\n");
        return;
    }
    g_string_append(buf, ">\n");
    g_string_append_len(buf, children->str, children->len);
    vs_xml_indent(buf, indent);
    g_string_append_printf(buf, "</%s>\n", element);
}

/* Applying a model onto a kept document ---------------------------------------- */

static bool
check_host(const VsHostDef *host, GError **error)
{
    bool is_unix = !g_strcmp0(host->transport, "unix");
    uint64_t port;

    if (host->transport && !is_unix && strcmp(host->transport, "tcp") != 0 &&
        strcmp(host->transport, "rdma") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "unknown transport '%s'", host->transport);
        return false;
    }
    if (is_unix != (host->socket != NULL)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "a socket goes with transport unix, and only with it");
        return false;
    }
    if (!is_unix && !host->name) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "needs a name");
        return false;
    }
    if (!is_unix && host->port && !vs_xml_parse_uint64(host->port, 65535, &port)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "port '%s' is not a port number", host->port);
        return false;
    }
    return true;
}

static bool
check_one(const VsStorageSource *src, GError **error)
{
    const char *attr = location_attr(src->type);

    if ((unsigned)src->type >= VS_DISK_TYPE_LAST) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "invalid source type %d", src->type);
        return false;
    }
    if (attr && !src->path) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "a %s source needs a path (an empty cdrom has no source at all)",
                    vs_disk_type_to_string(src->type));
        return false;
    }
    if (src->type == VS_DISK_TYPE_VOLUME && (!src->pool || !src->volume)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "a volume source needs both a pool and a volume");
        return false;
    }
    if (src->type == VS_DISK_TYPE_VOLUME && src->mode && strcmp(src->mode, "host") != 0 &&
        strcmp(src->mode, "direct") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "volume mode '%s' is neither host nor direct", src->mode);
        return false;
    }
    if (src->type != VS_DISK_TYPE_NETWORK)
        return true;
    /* What the parser would refuse, refused before it is written. */
    if (!src->protocol || !protocol_known(src->protocol)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "a network source needs a known protocol, not '%s'",
                    src->protocol ? src->protocol : "(none)");
        return false;
    }
    if (!src->name && strcmp(src->protocol, "nbd") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "a %s source needs a name", src->protocol);
        return false;
    }
    for (guint i = 0; src->hosts && i < src->hosts->len; i++) {
        if (!check_host(g_ptr_array_index(src->hosts, i), error)) {
            vs_error_prefix(error, "host %u", i + 1);
            return false;
        }
    }
    return true;
}

static bool
check_chain(const xmlNode *disk, const VsStorageSource *src, GError **error)
{
    g_autofree char *old_type = vs_xml_prop(disk, "type");
    int depth = 0;

    if (!check_one(src, error))
        return false;
    if (!type_is_modelled(src->type) &&
        g_strcmp0(old_type ? old_type : "file", vs_disk_type_to_string(src->type)) != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "cannot turn a disk into type %s; only file, block, dir, network and "
                    "volume sources can be written", vs_disk_type_to_string(src->type));
        return false;
    }
    for (const VsStorageSource *b = src->backing; b; b = b->backing) {
        depth++;
        if (!check_one(b, error)) {
            vs_error_prefix(error, "backing store at depth %d", depth);
            return false;
        }
        if (!type_is_modelled(b->type)) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "backing store at depth %d: type %s cannot be a backing store",
                        depth, vs_disk_type_to_string(b->type));
            return false;
        }
        if (!b->format) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "backing store at depth %d needs a format (libvirt requires one)", depth);
            return false;
        }
    }
    return true;
}

static xmlNode *
last_child_named(const xmlNode *parent, const char *name)
{
    xmlNode *last = NULL;

    vs_xml_foreach_child(node, parent, name)
        last = node;
    return last;
}

static void
apply_hosts(xmlNode *source, const GPtrArray *hosts)
{
    g_autoptr(GPtrArray) existing = g_ptr_array_new();
    guint want = hosts ? hosts->len : 0;
    xmlNode *last = NULL;

    vs_xml_foreach_child(node, source, "host")
        g_ptr_array_add(existing, node);
    for (guint i = 0; i < MAX(want, existing->len); i++) {
        const VsHostDef *host = i < want ? g_ptr_array_index(hosts, i) : NULL;
        xmlNode *node = i < existing->len ? g_ptr_array_index(existing, i) : NULL;

        if (!host) {
            vs_xml_remove(node);
            continue;
        }
        if (!node)
            node = vs_xml_insert_child(source, last, "host");
        /* Attribute order of a new element follows libvirt's formatter. */
        vs_xml_set_prop(node, "transport", host->transport);
        vs_xml_set_prop(node, "socket", host->socket);
        vs_xml_set_prop(node, "name", host->name);
        vs_xml_set_prop(node, "port", host->port);
        last = node;
    }
}

static void
apply_initiator(xmlNode *source, const char *iqn)
{
    xmlNode *initiator = vs_xml_child(source, "initiator");
    xmlNode *iqn_node = vs_xml_child(initiator, "iqn");

    /* Only an initiator the model could read is the model's to drop. */
    if (!iqn) {
        if (iqn_node && xmlHasProp(iqn_node, VS_XML_CHAR("name")))
            vs_xml_remove_all(source, "initiator");
        return;
    }
    if (!initiator)
        initiator = vs_xml_append_child(source, "initiator");
    if (!iqn_node)
        iqn_node = vs_xml_append_child(initiator, "iqn");
    vs_xml_set_prop(iqn_node, "name", iqn);
}

xmlNode *
vs_storage_source_find_auth(const xmlNode *disk, const xmlNode *source)
{
    xmlNode *auth = vs_xml_child(source, "auth");

    return auth ? auth : vs_xml_child(disk, "auth");
}

/* An existing <auth> is updated where it is so that its <secret> stays; one
 * the model could not read (no username=) is not the model's to drop. */
static void
apply_auth(xmlNode *disk, xmlNode *source, const char *username)
{
    xmlNode *auth = vs_storage_source_find_auth(disk, source);

    if (!username) {
        if (auth && xmlHasProp(auth, VS_XML_CHAR("username"))) {
            vs_xml_remove_all(source, "auth");
            if (disk)
                vs_xml_remove_all(disk, "auth");
        }
        return;
    }
    if (!auth)
        auth = vs_xml_insert_child(source, last_child_named(source, "host"), "auth");
    vs_xml_set_prop(auth, "username", username);
}

/* Writes SRC's own <source> inside CONTAINER (a <disk> or a <backingStore>);
 * a source whose type changed starts afresh, since its old attributes and
 * children describe something else. */
static xmlNode *
apply_source(xmlNode *container, xmlNode *after, const VsStorageSource *src,
             bool type_changed, bool top)
{
    xmlNode *source = vs_xml_child(container, "source");
    g_autofree char *index = NULL;

    if (!type_is_modelled(src->type))
        return source;
    /* Replaced where it stands: another <source> further down must not
     * become the first one. */
    if (source && type_changed) {
        xmlNode *fresh = xmlNewDocNode(container->doc, NULL, VS_XML_CHAR("source"), NULL);

        xmlReplaceNode(source, fresh);
        xmlFreeNode(source);
        source = fresh;
    }
    if (!source)
        source = vs_xml_insert_child(container, after, "source");

    /* Only the attributes and children of SRC's own type: with the type
     * unchanged, anything else in the element was not read and stays. */
    switch (src->type) {
    case VS_DISK_TYPE_NETWORK:
        vs_xml_set_prop(source, "protocol", src->protocol);
        vs_xml_set_prop(source, "name", src->name);
        break;
    case VS_DISK_TYPE_VOLUME:
        vs_xml_set_prop(source, "pool", src->pool);
        vs_xml_set_prop(source, "volume", src->volume);
        vs_xml_set_prop(source, "mode", src->mode);
        break;
    default:
        vs_xml_set_prop(source, location_attr(src->type), src->path);
        break;
    }
    if (top) {
        if (src->index > 0)
            index = g_strdup_printf("%d", src->index);
        vs_xml_set_prop(source, "index", index);
    }
    if (src->type == VS_DISK_TYPE_NETWORK)
        apply_hosts(source, src->hosts);
    apply_auth(top ? container : NULL, source, src->auth_username);
    if (src->type == VS_DISK_TYPE_NETWORK)
        apply_initiator(source, src->initiator_iqn);
    return source;
}

static void
apply_backing(xmlNode *container, const VsStorageSource *src)
{
    /* Iterative, one <backingStore> level per round. */
    for (;;) {
        xmlNode *bs = vs_xml_child(container, "backingStore");
        const VsStorageSource *b = src->backing;
        xmlNode *after = vs_xml_child(container, "source");
        g_autofree char *old_type = NULL;
        g_autofree char *index = NULL;
        xmlNode *format;

        if (!after)
            after = vs_xml_child(container, "format");
        if (!after)
            after = vs_xml_child(container, "driver");

        if (!b) {
            if (src->backing_terminated) {
                /* An existing terminator (no type=) is left exactly as it is. */
                if (!bs)
                    vs_xml_insert_child(container, after, "backingStore");
                else if (xmlHasProp(bs, VS_XML_CHAR("type")))
                    vs_xml_clear(bs);
            } else if (bs) {
                vs_xml_remove_all(container, "backingStore");
            }
            return;
        }
        if (!bs)
            bs = vs_xml_insert_child(container, after, "backingStore");
        old_type = vs_xml_prop(bs, "type");
        vs_xml_set_prop(bs, "type", vs_disk_type_to_string(b->type));
        if (b->index > 0)
            index = g_strdup_printf("%d", b->index);
        vs_xml_set_prop(bs, "index", index);
        format = vs_xml_child(bs, "format");
        if (!format)
            format = vs_xml_insert_child(bs, NULL, "format");
        vs_xml_set_prop(format, "type", b->format);
        apply_source(bs, format, b, g_strcmp0(old_type, vs_disk_type_to_string(b->type)) != 0,
                     false);
        container = bs;
        src = b;
    }
}

bool
vs_storage_source_apply_xml(xmlNode *disk, const VsStorageSource *src, bool dry_run,
                            GError **error)
{
    g_autofree char *old_type = NULL;
    bool type_changed;

    if (!check_chain(disk, src, error))
        return false;
    if (dry_run)
        return true;

    old_type = vs_xml_prop(disk, "type");
    type_changed = g_strcmp0(old_type ? old_type : "file", vs_disk_type_to_string(src->type)) != 0;
    /* libvirt defaults a missing type to file; leave such a document alone. */
    if (old_type || src->type != VS_DISK_TYPE_FILE)
        vs_xml_set_prop(disk, "type", vs_disk_type_to_string(src->type));
    apply_source(disk, vs_xml_child(disk, "driver"), src, type_changed, true);
    apply_backing(disk, src);
    return true;
}
