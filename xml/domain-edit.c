/* Editing a parsed domain for restore: a new name, no UUID (or another one),
 * no MAC addresses, per-domain file paths renamed so that two domains never
 * share a console log or a socket, and one disk's element taken out as the XML
 * a live attach needs. Every edit is made on the kept document, so that the rest
 * of the user's definition comes back exactly as it was saved. */
#include "xml-internal.h"

#include <string.h>

/* Devices whose <source path=> and <log file=> belong to one domain. */
static const char *const chardev_elements[] = { "serial", "console", "parallel", "channel" };
/* Chardev types whose path is a host file or socket of the domain's own. */
static const char *const chardev_file_types[] = { "file", "unix", "pipe" };

bool
vs_domain_name_check(const char *name, GError **error)
{
    const char *why = NULL;
    g_autofree char *bad = NULL, *shown = NULL;

    if (!name || !*name)
        why = "it is empty";
    else if (strlen(name) > 200)
        why = "it is longer than 200 characters";
    else if (strchr(name, '/'))
        why = "it contains '/'";
    else if (strstr(name, ".."))
        why = "it contains '..'";
    else if (name[0] == '.' || name[0] == '-')
        why = "it starts with '.' or '-'";
    for (const char *p = name; !why && *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("._+-", *p)) {
            /* Name the character as the user typed it: a whole UTF-8 sequence. */
            const char *end = g_utf8_validate(p, -1, NULL) ? g_utf8_next_char(p) : p + 1;
            g_autofree char *c = g_strndup(p, (gsize)(end - p));
            g_autofree char *c_shown = g_utf8_validate(c, -1, NULL) ? g_strdup(c) : g_strescape(c, NULL);
            bad = g_strdup_printf("it contains '%s': only ASCII letters, digits, '.', '_', '+' and "
                                  "'-' may be used", c_shown);
            why = bad;
        }
    }
    if (why) {
        /* A name that is not UTF-8 is shown with its bytes escaped. */
        shown = !name ? g_strdup("") : g_utf8_validate(name, -1, NULL) ? g_strdup(name)
                                                                         : g_strescape(name, NULL);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "'%s' cannot be a domain name: %s (it also names the disk files: "
                    "NAME-vda.qcow2)", shown, why);
        return false;
    }
    return true;
}

static xmlNode *
root_of(VsDomainDef *def, const char *what, GError **error)
{
    xmlNode *root = def->doc ? xmlDocGetRootElement(def->doc) : NULL;

    if (!root)
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "xml: %s: no parsed document to edit", what);
    return root;
}

static void
set_text(xmlNode *node, const char *text)
{
    vs_xml_clear_children(node);
    /* xmlNodeAddContent takes the text literally (no entity parsing). */
    xmlNodeAddContent(node, VS_XML_CHAR(text));
}

bool
vs_domain_def_set_name(VsDomainDef *def, const char *name, GError **error)
{
    xmlNode *root = root_of(def, "set name", error);
    xmlNode *node;

    if (!root)
        return false;
    if (!vs_domain_name_check(name, error)) {
        vs_error_prefix(error, "xml: set name");
        return false;
    }
    if (!(node = vs_xml_child(root, "name")))
        node = vs_xml_insert_child(root, NULL, "name");
    set_text(node, name);
    g_free(def->name);
    def->name = g_strdup(name);
    return true;
}

bool
vs_domain_def_set_uuid(VsDomainDef *def, const char *uuid, GError **error)
{
    xmlNode *root = root_of(def, "set uuid", error);
    xmlNode *node;

    if (!root)
        return false;
    node = vs_xml_child(root, "uuid");
    if (!uuid) {
        if (node)
            vs_xml_remove(node);
        g_clear_pointer(&def->uuid, g_free);
        return true;
    }
    if (!vs_xml_uuid_valid(uuid)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "xml: set uuid: '%s' is not a UUID", uuid);
        return false;
    }
    if (!node)
        node = vs_xml_insert_child(root, vs_xml_child(root, "name"), "uuid");
    set_text(node, uuid);
    g_free(def->uuid);
    def->uuid = g_strdup(uuid);
    return true;
}

guint
vs_domain_def_clear_macs(VsDomainDef *def)
{
    xmlNode *root = def->doc ? xmlDocGetRootElement(def->doc) : NULL;
    xmlNode *devices = vs_xml_child(root, "devices");
    guint n = 0;

    vs_xml_foreach_child(iface, devices, "interface") {
        xmlNode *mac;

        while ((mac = vs_xml_child(iface, "mac"))) {
            vs_xml_remove(mac);
            n++;
        }
    }
    return n;
}

static bool
is_word_char(char c)
{
    return g_ascii_isalnum(c);
}

/* BASE with every whole-word occurrence of OLD replaced by NEW, or NULL when
 * there is none. "Whole word": not inside a longer run of letters and digits,
 * so that a domain "db" does not rename "mydbx.log" (but does "db_VARS.fd"). */
static char *
replace_word(const char *base, const char *old_name, const char *new_name)
{
    g_autoptr(GString) out = g_string_new(NULL);
    size_t olen = strlen(old_name);
    bool hit = false;
    const char *p = base;

    while (*p) {
        if (olen && strncmp(p, old_name, olen) == 0 &&
            (p == base || !is_word_char(p[-1]) || !is_word_char(old_name[0])) &&
            (!is_word_char(p[olen]) || !is_word_char(old_name[olen - 1]))) {
            g_string_append(out, new_name);
            p += olen;
            hit = true;
        } else {
            g_string_append_c(out, *p++);
        }
    }
    return hit ? g_string_free(g_steal_pointer(&out), FALSE) : NULL;
}

char *
vs_domain_rename_path(const char *path, const char *old_name, const char *new_name)
{
    g_autofree char *dir = NULL, *base = NULL, *renamed = NULL;

    if (!path || !*path)
        return NULL;
    dir = g_path_get_dirname(path);
    base = g_path_get_basename(path);
    if (!(renamed = replace_word(base, old_name, new_name)))
        renamed = g_strdup_printf("%s-%s", new_name, base);
    if (!strchr(path, '/'))
        return g_steal_pointer(&renamed);
    return g_build_filename(dir, renamed, NULL);
}

static void
rename_attr(xmlNode *node, const char *attr, const char *what, const char *old_name,
            const char *new_name, GPtrArray *changes, guint *n)
{
    g_autofree char *val = vs_xml_prop(node, attr);
    g_autofree char *renamed = NULL;

    if (!val || !*val)
        return;
    renamed = vs_domain_rename_path(val, old_name, new_name);
    vs_xml_set_prop(node, attr, renamed);
    (*n)++;
    if (changes)
        g_ptr_array_add(changes, g_strdup_printf("%s %s -> %s", what, val, renamed));
}

static bool
in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        if (!strcmp(s, list[i]))
            return true;
    return false;
}

guint
vs_domain_def_rename_files(VsDomainDef *def, const char *old_name, const char *new_name,
                           GPtrArray *changes)
{
    xmlNode *root = def->doc ? xmlDocGetRootElement(def->doc) : NULL;
    xmlNode *devices = vs_xml_child(root, "devices");
    xmlNode *os = vs_xml_child(root, "os");
    guint n = 0;

    if (!root || !old_name || !new_name)
        return 0;
    for (size_t e = 0; e < G_N_ELEMENTS(chardev_elements); e++) {
        vs_xml_foreach_child(dev, devices, chardev_elements[e]) {
            g_autofree char *type = vs_xml_prop(dev, "type");
            g_autofree char *what = g_strdup_printf("<%s type='%s'>", chardev_elements[e],
                                                    type ? type : "");
            g_autofree char *logwhat = g_strdup_printf("<%s> log", chardev_elements[e]);

            if (in_list(type, chardev_file_types, G_N_ELEMENTS(chardev_file_types))) {
                vs_xml_foreach_child(src, dev, "source")
                    rename_attr(src, "path", what, old_name, new_name, changes, &n);
            }
            vs_xml_foreach_child(log, dev, "log")
                rename_attr(log, "file", logwhat, old_name, new_name, changes, &n);
        }
    }
    /* UEFI variables: one store per domain. A path libvirt made up follows the
     * name; a store elsewhere gets a renamed copy's name (libvirt fills it from
     * the template when it does not exist). */
    vs_xml_foreach_child(nvram, os, "nvram") {
        g_autofree char *path = vs_xml_text(nvram);
        g_autofree char *renamed = NULL;
        xmlNode *src = vs_xml_child(nvram, "source");

        if (src) {
            rename_attr(src, "file", "<nvram>", old_name, new_name, changes, &n);
            continue;
        }
        g_strstrip(path);
        if (!*path)
            continue;
        renamed = vs_domain_rename_path(path, old_name, new_name);
        set_text(nvram, renamed);
        n++;
        if (changes)
            g_ptr_array_add(changes, g_strdup_printf("<nvram> %s -> %s", path, renamed));
    }
    /* A fixed VNC/SPICE port would be taken by the original: let libvirt pick. */
    vs_xml_foreach_child(gfx, devices, "graphics") {
        g_autofree char *autoport = vs_xml_prop(gfx, "autoport");
        g_autofree char *port = vs_xml_prop(gfx, "port");

        if (!port || !strcmp(port, "-1") || !strcmp(port, "0") || !g_strcmp0(autoport, "yes"))
            continue;
        vs_xml_set_prop(gfx, "port", NULL);
        vs_xml_set_prop(gfx, "tlsPort", NULL);
        vs_xml_set_prop(gfx, "websocket", NULL);
        vs_xml_set_prop(gfx, "autoport", "yes");
        n++;
        if (changes)
            g_ptr_array_add(changes, g_strdup_printf("<graphics> port %s -> autoport", port));
    }
    return n;
}

char *
vs_domain_def_disk_xml(VsDomainDef *def, const char *target_dev, GError **error)
{
    VsDiskDef *disk = vs_domain_def_find_disk(def, target_dev);
    g_autoptr(xmlDoc) doc = NULL;
    xmlNode *copy, *child, *source;

    if (!disk || !disk->node) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "xml: domain '%s' has no disk %s",
                    def->name ? def->name : "(unnamed)", target_dev ? target_dev : "(none)");
        return NULL;
    }
    doc = xmlNewDoc(VS_XML_CHAR("1.0"));
    copy = xmlDocCopyNode(disk->node, doc, 1);
    if (!copy) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "xml: copying disk %s: out of memory", target_dev);
        return NULL;
    }
    xmlDocSetRootElement(doc, copy);
    /* Live-only state: a device alias libvirt assigned, the probed chain and
     * the node index libvirt gave the image. The address stays: the disk comes
     * back where it was. */
    if ((child = vs_xml_child(copy, "alias"))) {
        g_autofree char *alias = vs_xml_prop(child, "name");

        if (!g_str_has_prefix(alias ? alias : "", "ua-"))
            vs_xml_remove(child);
    }
    while ((child = vs_xml_child(copy, "backingStore")))
        vs_xml_remove(child);
    if ((source = vs_xml_child(copy, "source")))
        vs_xml_set_prop(source, "index", NULL);
    return vs_xml_dump(doc);
}
