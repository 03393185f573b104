/* CHAP credentials of a network iSCSI disk, from the libvirt secret its <auth>
 * names, so that virtsnap logs in to the LUN itself (--data-path=direct, restore
 * in place) with what QEMU uses. The password lives only in a VsIscsiAuth, which
 * wipes it when freed; it is never put in a message, a URL or the repository. */
#include "config.h"
#include "driver-internal.h"
#include "vs-source.h"

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <string.h>

/* The value of XPATH (an attribute) in DOC, or NULL. */
static char *
xpath_string(xmlDocPtr doc, const char *xpath)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathObjectPtr obj = ctx ? xmlXPathEvalExpression((const xmlChar *)xpath, ctx) : NULL;
    char *out = NULL;

    if (obj && obj->nodesetval && obj->nodesetval->nodeNr > 0) {
        xmlChar *v = xmlNodeGetContent(obj->nodesetval->nodeTab[0]);
        if (v && *v)
            out = g_strdup((const char *)v);
        xmlFree(v);
    }
    xmlXPathFreeObject(obj);
    xmlXPathFreeContext(ctx);
    return out;
}

VsIscsiAuth *
vs_disk_iscsi_auth(virConnectPtr conn, const char *domain_xml, const char *target, GError **error)
{
    g_autofree char *base = g_strdup_printf("//devices/disk[target/@dev='%s']/source/auth", target);
    g_autofree char *user = NULL, *usage = NULL, *uuid = NULL;
    g_autoptr(VsIscsiAuth) auth = NULL;
    virSecretPtr secret = NULL;
    unsigned char *value = NULL;
    size_t size = 0;
    xmlDocPtr doc;

    if (strchr(target, '\'') || !domain_xml)
        return NULL;
    doc = xmlReadMemory(domain_xml, (int)strlen(domain_xml), "domain.xml", NULL, XML_PARSE_NONET);
    if (!doc)
        return NULL;
    {
        g_autofree char *pu = g_strconcat(base, "/@username", NULL);
        g_autofree char *ps = g_strconcat(base, "/secret/@usage", NULL);
        g_autofree char *pi = g_strconcat(base, "/secret/@uuid", NULL);
        user = xpath_string(doc, pu);
        usage = xpath_string(doc, ps);
        uuid = xpath_string(doc, pi);
    }
    xmlFreeDoc(doc);
    if (!user)
        return NULL;          /* no CHAP */
    secret = uuid ? virSecretLookupByUUIDString(conn, uuid)
                  : usage ? virSecretLookupByUsage(conn, VIR_SECRET_USAGE_TYPE_ISCSI, usage) : NULL;
    if (!secret || !(value = virSecretGetValue(secret, &size, 0))) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "disk %s: the CHAP secret %s%s of its <auth> "
                             "(libvirt hands out no private='yes' secret: give --iscsi-auth FILE, or "
                             "--data-path=host)", target, uuid ? "uuid " : "usage ",
                             uuid ? uuid : usage ? usage : "(none)");
        if (secret)
            virSecretFree(secret);
        return NULL;
    }
    virSecretFree(secret);
    auth = g_new0(VsIscsiAuth, 1);
    auth->user = g_steal_pointer(&user);
    auth->password = g_strndup((const char *)value, size);
    explicit_bzero(value, size);
    free(value);
    return g_steal_pointer(&auth);
}
