/* The plumbing under every parser and formatter of the xml layer. libxml2
 * reports problems through process-wide callbacks that print to stderr by
 * default; a library must neither print nor lose them, so reading installs a
 * capturing handler for the duration of one parse and turns the first error into
 * a GError that names the document and line. Writing comes in two flavours: a
 * small escaping writer for the documents virtsnap generates from a model, and
 * in-place editing plus a libvirt-style serializer for domain documents, which
 * belong to the user and must come back with their layout intact. */
#include "xml-internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/parser.h>
#include <libxml/xmlerror.h>

typedef struct {
    bool set;
    int line;
    char *message;
} VsXmlCaptured;

#if LIBXML_VERSION >= 21200
static void
capture_error(void *data, const xmlError *err)
#else
static void
capture_error(void *data, xmlErrorPtr err)
#endif
{
    VsXmlCaptured *cap = data;

    /* Warnings do not make a document unusable; only the first real error
     * explains why the parse failed, later ones are usually its echoes. */
    if (cap->set || !err || err->level < XML_ERR_ERROR)
        return;
    cap->set = true;
    cap->line = err->line;
    cap->message = g_strdup(err->message ? err->message : "unknown libxml2 error");
    /* Some messages carry a second line (the offending bytes); keep the
     * error on one line like every other message. */
    g_strdelimit(g_strstrip(cap->message), "\n", ' ');
}

static void
discard_generic_error(void *ctx, const char *msg, ...)
{
}

const char *
vs_xml_doc_name(const char *filename)
{
    return filename && *filename ? filename : "(string)";
}

void
vs_xml_error(GError **error, const char *filename, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VS_ERROR, VS_ERROR_XML, "xml: %s: %s", vs_xml_doc_name(filename), msg);
}

xmlDoc *
vs_xml_read(const char *xml, const char *filename, const char *root_name,
            bool keep_blanks, GError **error)
{
    VsXmlCaptured cap = { 0 };
    g_autofree char *message = NULL;
    xmlParserCtxtPtr ctxt;
    g_autoptr(xmlDoc) doc = NULL;
    xmlStructuredErrorFunc old_serror;
    void *old_sctx;
    xmlGenericErrorFunc old_gerror;
    void *old_gctx;
    xmlNode *root;
    size_t len;
    int options = XML_PARSE_NONET;
    bool well_formed;

    if (!xml) {
        vs_xml_error(error, filename, "no XML given");
        return NULL;
    }
    len = strlen(xml);
    if (len > INT_MAX) {
        vs_xml_error(error, filename, "document is too large (%zu bytes)", len);
        return NULL;
    }
    if (!keep_blanks)
        options |= XML_PARSE_NOBLANKS;

    xmlInitParser();
    /* The handlers are per thread in libxml2, so swapping them around one parse
     * cannot disturb another thread's parse. */
    old_serror = xmlStructuredError;
    old_sctx = xmlStructuredErrorContext;
    old_gerror = xmlGenericError;
    old_gctx = xmlGenericErrorContext;
    xmlSetStructuredErrorFunc(&cap, capture_error);
    xmlSetGenericErrorFunc(NULL, discard_generic_error);

    ctxt = xmlNewParserCtxt();
    if (ctxt) {
        doc = xmlCtxtReadMemory(ctxt, xml, (int)len, NULL, NULL, options);
        well_formed = ctxt->wellFormed;
        xmlFreeParserCtxt(ctxt);
    } else {
        well_formed = false;
    }

    xmlSetStructuredErrorFunc(old_sctx, old_serror);
    xmlSetGenericErrorFunc(old_gctx, old_gerror);
    message = g_steal_pointer(&cap.message);

    if (!doc || !well_formed) {
        if (message && cap.line > 0)
            vs_xml_error(error, filename, "line %d: %s", cap.line, message);
        else if (message)
            vs_xml_error(error, filename, "%s", message);
        else
            vs_xml_error(error, filename, "not a well-formed XML document");
        return NULL;
    }

    /* libvirt never writes a DTD, and entities declared in one would make the
     * document expand (and round-trip) differently from what it looks like. */
    if (doc->intSubset || doc->extSubset) {
        vs_xml_error(error, filename, "<!DOCTYPE> is not allowed in libvirt XML; remove it");
        return NULL;
    }

    root = xmlDocGetRootElement(doc);
    if (!root) {
        vs_xml_error(error, filename, "no root element; expected <%s>", root_name);
        return NULL;
    }
    if (!xmlStrEqual(root->name, VS_XML_CHAR(root_name))) {
        vs_xml_error(error, filename, "expected <%s>, found <%s>", root_name,
                     (const char *)root->name);
        return NULL;
    }
    return g_steal_pointer(&doc);
}

bool
vs_xml_is(const xmlNode *node, const char *name)
{
    /* Namespaced elements belong to someone else (<metadata> content, qemu:
     * extensions) even when their local name collides with libvirt's. */
    return node && node->type == XML_ELEMENT_NODE && !node->ns &&
           xmlStrEqual(node->name, VS_XML_CHAR(name));
}

xmlNode *
vs_xml_first_element(const xmlNode *parent)
{
    for (xmlNode *cur = parent ? parent->children : NULL; cur; cur = cur->next) {
        if (cur->type == XML_ELEMENT_NODE)
            return cur;
    }
    return NULL;
}

xmlNode *
vs_xml_child(const xmlNode *parent, const char *name)
{
    for (xmlNode *cur = parent ? parent->children : NULL; cur; cur = cur->next) {
        if (vs_xml_is(cur, name))
            return cur;
    }
    return NULL;
}

xmlNode *
vs_xml_next(const xmlNode *node, const char *name)
{
    for (xmlNode *cur = node->next; cur; cur = cur->next) {
        if (vs_xml_is(cur, name))
            return cur;
    }
    return NULL;
}

static char *
take_xml_string(xmlChar *str)
{
    char *ret;

    if (!str)
        return NULL;
    ret = g_strdup((const char *)str);
    xmlFree(str);
    return ret;
}

char *
vs_xml_prop(const xmlNode *node, const char *name)
{
    if (!node)
        return NULL;
    return take_xml_string(xmlGetNoNsProp(node, VS_XML_CHAR(name)));
}

char *
vs_xml_text(const xmlNode *node)
{
    char *ret;

    if (!node)
        return NULL;
    ret = take_xml_string(xmlNodeGetContent(node));
    return ret ? ret : g_strdup("");
}

char *
vs_xml_child_text(const xmlNode *parent, const char *name)
{
    xmlNode *child = vs_xml_child(parent, name);

    return child ? vs_xml_text(child) : NULL;
}

char *
vs_xml_child_prop(const xmlNode *parent, const char *child, const char *name)
{
    return vs_xml_prop(vs_xml_child(parent, child), name);
}

bool
vs_xml_uuid_valid(const char *str)
{
    int digits = 0;

    if (!str)
        return false;
    while (g_ascii_isspace(*str))
        str++;
    for (; *str && !g_ascii_isspace(*str); str++) {
        if (g_ascii_isxdigit(*str))
            digits++;
        else if (*str != '-')
            return false;
    }
    while (g_ascii_isspace(*str))
        str++;
    return digits == 32 && !*str;
}

bool
vs_xml_name_valid(const char *str)
{
    return str && *str && !strchr(str, '/') && !strchr(str, '\n');
}

bool
vs_xml_parse_uint64(const char *str, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    unsigned long long val;

    /* strtoull would accept "-1", " 1" and "+1"; libvirt's XML does not. */
    if (!str || !g_ascii_isdigit(*str))
        return false;
    errno = 0;
    val = strtoull(str, &end, 10);
    if (errno || *end || val > max)
        return false;
    *out = val;
    return true;
}

bool
vs_xml_parse_int64(const char *str, int64_t *out)
{
    char *end = NULL;
    long long val;

    if (!str || !(g_ascii_isdigit(*str) || (*str == '-' && g_ascii_isdigit(str[1]))))
        return false;
    errno = 0;
    val = strtoll(str, &end, 10);
    if (errno || *end)
        return false;
    *out = val;
    return true;
}

/* libvirt's virScaleInteger: b/byte/bytes, k/KiB = 1024, KB = 1000, up to E. */
static bool
unit_scale(const char *unit, uint64_t *scale)
{
    uint64_t base;

    *scale = 1;
    if (!unit || !*unit || !g_ascii_strcasecmp(unit, "b") ||
        !g_ascii_strcasecmp(unit, "byte") || !g_ascii_strcasecmp(unit, "bytes"))
        return true;
    if (!unit[1] || !g_ascii_strcasecmp(unit + 1, "iB"))
        base = 1024;
    else if (g_ascii_tolower(unit[1]) == 'b' && !unit[2])
        base = 1000;
    else
        return false;
    switch (g_ascii_tolower(*unit)) {
    case 'e':
        *scale *= base;
        G_GNUC_FALLTHROUGH;
    case 'p':
        *scale *= base;
        G_GNUC_FALLTHROUGH;
    case 't':
        *scale *= base;
        G_GNUC_FALLTHROUGH;
    case 'g':
        *scale *= base;
        G_GNUC_FALLTHROUGH;
    case 'm':
        *scale *= base;
        G_GNUC_FALLTHROUGH;
    case 'k':
        *scale *= base;
        return true;
    default:
        return false;
    }
}

bool
vs_xml_parse_scaled(const xmlNode *node, const char *what, uint64_t *out, GError **error)
{
    g_autofree char *unit = vs_xml_prop(node, "unit");
    g_autofree char *text = vs_xml_text(node);
    uint64_t scale, val;

    g_strstrip(text);
    if (!vs_xml_parse_uint64(text, UINT64_MAX, &val)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<%s> '%s' is not a non-negative integer", what, text);
        return false;
    }
    if (!unit_scale(unit, &scale)) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<%s unit='%s'>: unknown unit; use bytes, KiB, MiB, GiB, TiB, PiB, EiB "
                    "(or KB, MB, ... for powers of 1000)", what, unit);
        return false;
    }
    if (val > UINT64_MAX / scale) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "<%s> %s %s does not fit in 64 bits of bytes", what, text, unit);
        return false;
    }
    *out = val * scale;
    return true;
}

VsHostDef *
vs_xml_parse_host(const xmlNode *node, bool allow_transport, GError **error)
{
    g_autoptr(VsHostDef) host = g_new0(VsHostDef, 1);
    bool is_unix;
    uint64_t port;

    if (allow_transport) {
        host->transport = vs_xml_prop(node, "transport");
        host->socket = vs_xml_prop(node, "socket");
    }
    if (host->transport && strcmp(host->transport, "tcp") != 0 &&
        strcmp(host->transport, "unix") != 0 && strcmp(host->transport, "rdma") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "unknown transport '%s'; expected tcp, unix or rdma", host->transport);
        return NULL;
    }
    is_unix = host->transport && !strcmp(host->transport, "unix");
    if (is_unix && !host->socket) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "transport='unix' needs a socket='/path' attribute");
        return NULL;
    }
    if (!is_unix && host->socket) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML,
                    "socket= needs transport='unix', not '%s'",
                    host->transport ? host->transport : "tcp");
        return NULL;
    }
    if (!is_unix) {
        host->name = vs_xml_prop(node, "name");
        host->port = vs_xml_prop(node, "port");
        if (!host->name || !*host->name) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML, "missing name= (host name or address)");
            return NULL;
        }
        if (host->port && !vs_xml_parse_uint64(host->port, 65535, &port)) {
            g_set_error(error, VS_ERROR, VS_ERROR_XML,
                        "port '%s' is not a port number (0-65535)", host->port);
            return NULL;
        }
    }
    return g_steal_pointer(&host);
}

/* Writing ----------------------------------------------------------------- */

void
vs_xml_indent(GString *buf, int indent)
{
    for (int i = 0; i < indent; i++)
        g_string_append_c(buf, ' ');
}

void
vs_xml_escape(GString *buf, const char *str, bool attr)
{
    for (const char *p = str; p && *p; p++) {
        switch (*p) {
        case '<': g_string_append(buf, "&lt;"); break;
        case '>': g_string_append(buf, "&gt;"); break;
        case '&': g_string_append(buf, "&amp;"); break;
        case '"': g_string_append(buf, "&quot;"); break;
        case '\'': g_string_append(buf, "&apos;"); break;
        case '\r': g_string_append(buf, "&#13;"); break;
        case '\n':
            if (attr)
                g_string_append(buf, "&#10;");
            else
                g_string_append_c(buf, *p);
            break;
        case '\t':
            if (attr)
                g_string_append(buf, "&#9;");
            else
                g_string_append_c(buf, *p);
            break;
        default:
            /* XML 1.0 cannot carry other control characters at all, not even
             * as references; libvirt drops them too. */
            if ((unsigned char)*p >= 0x20)
                g_string_append_c(buf, *p);
            break;
        }
    }
}

void
vs_xml_attr(GString *buf, const char *name, const char *value)
{
    if (!value)
        return;
    g_string_append_printf(buf, " %s='", name);
    vs_xml_escape(buf, value, true);
    g_string_append_c(buf, '\'');
}

void
vs_xml_text_element(GString *buf, int indent, const char *name, const char *text)
{
    if (!text)
        return;
    vs_xml_indent(buf, indent);
    g_string_append_printf(buf, "<%s>", name);
    vs_xml_escape(buf, text, false);
    g_string_append_printf(buf, "</%s>\n", name);
}

void
vs_xml_format_host(GString *buf, int indent, const VsHostDef *host)
{
    vs_xml_indent(buf, indent);
    g_string_append(buf, "<host");
    vs_xml_attr(buf, "transport", host->transport);
    vs_xml_attr(buf, "socket", host->socket);
    vs_xml_attr(buf, "name", host->name);
    vs_xml_attr(buf, "port", host->port);
    g_string_append(buf, "/>\n");
}

/* Editing ------------------------------------------------------------------ */

static bool
is_blank_text(const xmlNode *node)
{
    if (!node || node->type != XML_TEXT_NODE)
        return false;
    for (const xmlChar *p = node->content; p && *p; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    }
    return true;
}

/* The indentation of NODE when it starts a line of its own; false when the
 * document is not laid out around it. */
static bool
node_indent(const xmlNode *node, GString *out)
{
    const xmlNode *prev = node->prev;
    const char *text, *nl;

    if (node->parent && node->parent->type == XML_DOCUMENT_NODE) {
        g_string_truncate(out, 0);
        return true;
    }
    if (!prev || !is_blank_text(prev))
        return false;
    text = (const char *)prev->content;
    nl = strrchr(text, '\n');
    if (!nl)
        return false;
    g_string_assign(out, nl + 1);
    return true;
}

/* How much deeper than NODE its children sit: what NODE's own children do,
 * or what NODE does relative to its parent, or libvirt's two spaces. */
static void
child_indent(const xmlNode *node, const GString *own, GString *out)
{
    g_autoptr(GString) other = g_string_new(NULL);
    xmlNode *first = vs_xml_first_element(node);

    if (first && node_indent(first, out))
        return;
    g_string_assign(out, own->str);
    if (node->parent && node->parent->type == XML_ELEMENT_NODE &&
        node_indent(node->parent, other) && own->len > other->len &&
        g_str_has_prefix(own->str, other->str)) {
        g_string_append(out, own->str + other->len);
        return;
    }
    g_string_append(out, "  ");
}

static xmlNode *
new_blank(xmlDoc *doc, const GString *indent)
{
    g_autofree char *text = g_strconcat("\n", indent->str, NULL);

    return xmlNewDocText(doc, VS_XML_CHAR(text));
}

xmlNode *
vs_xml_insert_child(xmlNode *parent, xmlNode *after, const char *name)
{
    g_autoptr(GString) ws = g_string_new(NULL);
    g_autoptr(GString) inner = g_string_new(NULL);
    xmlNode *node = xmlNewDocNode(parent->doc, NULL, VS_XML_CHAR(name), NULL);
    xmlNode *first;
    bool only_blanks = true;

    /* Text nodes are inserted next to elements only, never next to other
     * text, because libxml2 merges adjacent text nodes and frees one. */
    if (after) {
        xmlAddNextSibling(after, node);
        if (node_indent(after, ws))
            xmlAddPrevSibling(node, new_blank(parent->doc, ws));
        return node;
    }
    first = vs_xml_first_element(parent);
    if (first) {
        xmlAddPrevSibling(first, node);
        if (node_indent(node, ws))
            xmlAddNextSibling(node, new_blank(parent->doc, ws));
        return node;
    }
    for (xmlNode *cur = parent->children; cur; cur = cur->next) {
        if (!is_blank_text(cur))
            only_blanks = false;
    }
    if (only_blanks && node_indent(parent, ws)) {
        child_indent(parent, ws, inner);
        while (parent->children) {
            xmlNode *blank = parent->children;
            xmlUnlinkNode(blank);
            xmlFreeNode(blank);
        }
        xmlAddChild(parent, new_blank(parent->doc, inner));
        xmlAddChild(parent, node);
        xmlAddChild(parent, new_blank(parent->doc, ws));
        return node;
    }
    xmlAddChild(parent, node);
    return node;
}

xmlNode *
vs_xml_append_child(xmlNode *parent, const char *name)
{
    xmlNode *last = NULL;

    for (xmlNode *cur = parent->children; cur; cur = cur->next) {
        if (cur->type == XML_ELEMENT_NODE)
            last = cur;
    }
    return vs_xml_insert_child(parent, last, name);
}

void
vs_xml_remove(xmlNode *node)
{
    xmlNode *parent = node->parent;
    xmlNode *prev = node->prev;
    bool only_blanks = true;

    if (is_blank_text(prev)) {
        xmlUnlinkNode(prev);
        xmlFreeNode(prev);
    }
    xmlUnlinkNode(node);
    xmlFreeNode(node);
    if (!parent || parent->type != XML_ELEMENT_NODE)
        return;
    /* A parent left with nothing but layout collapses to <parent/>, as
     * libvirt writes an element without content. */
    for (xmlNode *cur = parent->children; cur; cur = cur->next) {
        if (!is_blank_text(cur))
            only_blanks = false;
    }
    if (only_blanks)
        vs_xml_clear_children(parent);
}

void
vs_xml_remove_all(xmlNode *parent, const char *name)
{
    xmlNode *node;

    while ((node = vs_xml_child(parent, name)))
        vs_xml_remove(node);
}

void
vs_xml_clear_children(xmlNode *node)
{
    while (node->children) {
        xmlNode *child = node->children;
        xmlUnlinkNode(child);
        xmlFreeNode(child);
    }
}

void
vs_xml_clear(xmlNode *node)
{
    vs_xml_clear_children(node);
    while (node->properties)
        xmlRemoveProp(node->properties);
}

void
vs_xml_set_prop(xmlNode *node, const char *name, const char *value)
{
    if (value)
        xmlSetProp(node, VS_XML_CHAR(name), VS_XML_CHAR(value));
    else
        xmlUnsetProp(node, VS_XML_CHAR(name));
}

/* Serializing a kept document ------------------------------------------------- */

static void
append_qname(GString *out, const xmlNs *ns, const xmlChar *name)
{
    if (ns && ns->prefix)
        g_string_append_printf(out, "%s:", (const char *)ns->prefix);
    g_string_append(out, (const char *)name);
}

/* libvirt writes <metadata> content with xmlNodeDump() and no document, and
 * everything else itself; the two differ in quotes, escaping and the place of
 * namespace declarations. */
typedef enum {
    DUMP_LIBVIRT,
    DUMP_LIBXML2,
} DumpStyle;

/* xmlNodeDump's escaping: quotes only in attributes, whitespace kept as
 * references there, and (with no document encoding) non-ASCII attribute
 * characters as hexadecimal references. */
static void
escape_libxml2(GString *out, const char *str, bool attr)
{
    for (const char *p = str; p && *p;) {
        unsigned char c = *p;
        gunichar u;

        if (c == '<') {
            g_string_append(out, "&lt;");
        } else if (c == '>') {
            g_string_append(out, "&gt;");
        } else if (c == '&') {
            g_string_append(out, "&amp;");
        } else if (c == '\r') {
            g_string_append(out, "&#13;");
        } else if (attr && c == '"') {
            g_string_append(out, "&quot;");
        } else if (attr && c == '\n') {
            g_string_append(out, "&#10;");
        } else if (attr && c == '\t') {
            g_string_append(out, "&#9;");
        } else if (attr && c >= 0x80 && (gint32)(u = g_utf8_get_char_validated(p, -1)) > 0) {
            g_string_append_printf(out, "&#x%X;", u);
            p = g_utf8_next_char(p);
            continue;
        } else {
            g_string_append_c(out, *p);
        }
        p++;
    }
}

static void
dump_escape(GString *out, const char *str, bool attr, DumpStyle style)
{
    if (style == DUMP_LIBXML2)
        escape_libxml2(out, str, attr);
    else
        vs_xml_escape(out, str, attr);
}

static void
dump_attr_value(GString *out, const char *value, DumpStyle style)
{
    char quote = style == DUMP_LIBXML2 ? '"' : '\'';

    g_string_append_c(out, quote);
    dump_escape(out, value, true, style);
    g_string_append_c(out, quote);
}

static void
dump_ns_defs(GString *out, const xmlNode *node, DumpStyle style)
{
    for (xmlNs *ns = node->nsDef; ns; ns = ns->next) {
        /* libxml2 keeps a namespace URI as parsed except that each '&'
         * stays a "&#38;" reference; undo that before escaping. */
        g_autoptr(GString) href = g_string_new((const char *)ns->href);

        g_string_replace(href, "&#38;", "&", 0);
        g_string_append(out, " xmlns");
        if (ns->prefix)
            g_string_append_printf(out, ":%s", (const char *)ns->prefix);
        g_string_append_c(out, '=');
        dump_attr_value(out, href->str, style);
    }
}

static void
dump_attrs(GString *out, const xmlNode *node, DumpStyle style)
{
    for (xmlAttr *attr = node->properties; attr; attr = attr->next) {
        xmlChar *value = xmlNodeGetContent((xmlNode *)attr);

        g_string_append_c(out, ' ');
        append_qname(out, attr->ns, attr->name);
        g_string_append_c(out, '=');
        dump_attr_value(out, (const char *)value, style);
        xmlFree(value);
    }
}

static void
dump_node(GString *out, xmlNode *node, DumpStyle style)
{
    switch (node->type) {
    case XML_ELEMENT_NODE: {
        DumpStyle children = style;

        if (vs_xml_is(node, "metadata") && node->parent && node->parent->parent &&
            node->parent->parent->type == XML_DOCUMENT_NODE)
            children = DUMP_LIBXML2;
        g_string_append_c(out, '<');
        append_qname(out, node->ns, node->name);
        if (style == DUMP_LIBXML2) {
            dump_ns_defs(out, node, style);
            dump_attrs(out, node, style);
        } else {
            dump_attrs(out, node, style);
            dump_ns_defs(out, node, style);
        }
        if (!node->children) {
            g_string_append(out, "/>");
            return;
        }
        g_string_append_c(out, '>');
        for (xmlNode *child = node->children; child; child = child->next)
            dump_node(out, child, children);
        g_string_append(out, "</");
        append_qname(out, node->ns, node->name);
        g_string_append_c(out, '>');
        return;
    }
    case XML_TEXT_NODE:
        dump_escape(out, (const char *)node->content, false, style);
        return;
    case XML_CDATA_SECTION_NODE:
        g_string_append_printf(out, "<![CDATA[%s]]>", node->content ? (const char *)node->content : "");
        return;
    case XML_COMMENT_NODE:
        g_string_append_printf(out, "<!--%s-->", node->content ? (const char *)node->content : "");
        return;
    case XML_PI_NODE:
        g_string_append_printf(out, "<?%s", (const char *)node->name);
        if (node->content && *node->content)
            g_string_append_printf(out, " %s", (const char *)node->content);
        g_string_append(out, "?>");
        return;
    case XML_ENTITY_REF_NODE:
        g_string_append_printf(out, "&%s;", (const char *)node->name);
        return;
    default:
        return;
    }
}

char *
vs_xml_dump(xmlDoc *doc)
{
    GString *out = g_string_new(NULL);

    for (xmlNode *node = doc->children; node; node = node->next) {
        if (node->type != XML_ELEMENT_NODE && node->type != XML_COMMENT_NODE &&
            node->type != XML_PI_NODE)
            continue;
        dump_node(out, node, DUMP_LIBVIRT);
        g_string_append_c(out, '\n');
    }
    return g_string_free(out, FALSE);
}
