/* Helpers shared by the parsers and formatters of the xml layer: reading a
 * document with libxml2's diagnostics captured instead of printed, walking
 * libvirt's (namespace-less) elements, strict number parsing, a small writer for
 * the documents formatted from a model, and the editing primitives that let the
 * domain formatter change a user's document without disturbing its layout.
 * Nothing here is part of the public API. */
#pragma once

#include <libxml/tree.h>
#include "vs-xml.h"
#include "vs-enum.h"

G_BEGIN_DECLS

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)

#define VS_XML_CHAR(s) ((const xmlChar *)(s))

/* Reading ----------------------------------------------------------------- */

/* Parses XML (a NUL-terminated string) and checks that its root element is
 * ROOT_NAME. KEEP_BLANKS keeps whitespace text so that a document written back
 * looks as it did. FILENAME only names the document in messages. */
xmlDoc *vs_xml_read(const char *xml, const char *filename, const char *root_name,
                    bool keep_blanks, GError **error);

/* The name a message uses for a document parsed from a string. */
const char *vs_xml_doc_name(const char *filename);

/* Sets a VS_ERROR_XML error "xml: FILENAME: MESSAGE". */
void vs_xml_error(GError **error, const char *filename, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* A libvirt element (no namespace) named NAME? */
bool vs_xml_is(const xmlNode *node, const char *name);
/* First/next libvirt element child named NAME, or NULL. */
xmlNode *vs_xml_child(const xmlNode *parent, const char *name);
xmlNode *vs_xml_next(const xmlNode *node, const char *name);
/* First element child of any name, or NULL. */
xmlNode *vs_xml_first_element(const xmlNode *parent);

#define vs_xml_foreach_child(var, parent, name) \
    for (xmlNode *var = vs_xml_child((parent), (name)); var; var = vs_xml_next(var, (name)))

/* Attribute value (g_malloc'd), NULL when absent. */
char *vs_xml_prop(const xmlNode *node, const char *name);
/* Text content (g_malloc'd) of NODE, or of its child NAME (NULL when absent). */
char *vs_xml_text(const xmlNode *node);
char *vs_xml_child_text(const xmlNode *parent, const char *name);
/* Attribute NAME of the first child CHILD, NULL when either is absent. */
char *vs_xml_child_prop(const xmlNode *parent, const char *child, const char *name);

/* libvirt's UUID syntax: 32 hex digits, dashes anywhere between them. */
bool vs_xml_uuid_valid(const char *str);
/* Names virtsnap may use in file names: non-empty, no '/' or newline. */
bool vs_xml_name_valid(const char *str);

/* Whole-string number parsing: no sign, no trailing garbage, no overflow. */
bool vs_xml_parse_uint64(const char *str, uint64_t max, uint64_t *out);
bool vs_xml_parse_int64(const char *str, int64_t *out);

/* A <capacity unit='GiB'>10</capacity>-style element in bytes, with libvirt's
 * unit suffixes. WHAT names the element in messages. */
bool vs_xml_parse_scaled(const xmlNode *node, const char *what, uint64_t *out, GError **error);

/* A <host name port transport socket> element, as libvirt checks it. */
VsHostDef *vs_xml_parse_host(const xmlNode *node, bool allow_transport, GError **error);

/* Writing documents from a model ---------------------------------------------- */

void vs_xml_indent(GString *buf, int indent);
/* Appends STR escaped as libvirt does (quotes too); ATTR also protects the
 * whitespace characters an attribute value would lose to normalisation. */
void vs_xml_escape(GString *buf, const char *str, bool attr);
/* " NAME='VALUE'", nothing when VALUE is NULL. */
void vs_xml_attr(GString *buf, const char *name, const char *value);
/* INDENT<NAME>TEXT</NAME>\n, nothing when TEXT is NULL. */
void vs_xml_text_element(GString *buf, int indent, const char *name, const char *text);
/* INDENT<host .../>\n */
void vs_xml_format_host(GString *buf, int indent, const VsHostDef *host);

/* Editing a kept document ---------------------------------------------------- */

/* Sets attribute NAME to VALUE, or removes it when VALUE is NULL; an existing
 * attribute keeps its position. */
void vs_xml_set_prop(xmlNode *node, const char *name, const char *value);
/* A new empty element NAME placed after the element AFTER (or first, when
 * AFTER is NULL) among PARENT's children, indented like its siblings. */
xmlNode *vs_xml_insert_child(xmlNode *parent, xmlNode *after, const char *name);
/* The same, placed after PARENT's last element child. */
xmlNode *vs_xml_append_child(xmlNode *parent, const char *name);
/* Unlinks and frees NODE together with the indentation in front of it. */
void vs_xml_remove(xmlNode *node);
/* Removes every libvirt element child of PARENT named NAME: taking away only
 * the first would make the parser read the next one instead. */
void vs_xml_remove_all(xmlNode *parent, const char *name);
/* Removes every child of NODE; vs_xml_clear also every attribute. */
void vs_xml_clear_children(xmlNode *node);

void vs_xml_clear(xmlNode *node);

/* The document as libvirt would write it: no XML declaration, single quotes,
 * and <metadata> content as libxml2 writes it (which is what libvirt does). */
char *vs_xml_dump(xmlDoc *doc);

/* Storage sources (storage-source.c) ------------------------------------------ */

const char *vs_disk_type_list(void);

/* Fills SRC (whose type is set) from a <source> element; SOURCE may be NULL.
 * TOP reads the index= attribute of a disk's own source. */
bool vs_storage_source_parse_xml(const xmlNode *source, VsStorageSource *src, bool top,
                                 GError **error);
/* Whether SRC names no media: no location at all. */
bool vs_storage_source_is_empty(const VsStorageSource *src);
/* The <auth> element a disk's source uses: in <source> (libvirt >= 3.9), else
 * directly in <disk>; NULL if neither. */
xmlNode *vs_storage_source_find_auth(const xmlNode *disk, const xmlNode *source);
/* Reads the <backingStore> chain below CONTAINER into SRC. */
bool vs_storage_source_parse_backing(const xmlNode *container, VsStorageSource *src,
                                     GError **error);
/* INDENT<ELEMENT ...>...</ELEMENT>\n for a model-only document. */
void vs_storage_source_format_xml(GString *buf, int indent, const char *element,
                                  const VsStorageSource *src);
/* Writes SRC into the <disk> element DISK of a kept document: type attribute,
 * <source> (with <auth>) and the <backingStore> chain; <driver> is the
 * caller's. DRY_RUN only checks that SRC can be written, so that a caller can
 * check every disk before changing any. */
bool vs_storage_source_apply_xml(xmlNode *disk, const VsStorageSource *src, bool dry_run,
                                 GError **error);

G_END_DECLS
