/* The three ways `virtsnap discover` prints what it found. JSON is the stable,
 * documented interface for scripts (every key always present, null where it
 * does not apply); the mapping is the single line array-snapshot plug-ins know;
 * text is for people. */
#include "config.h"
#include "virtsnap.h"

#include <json-glib/json-glib.h>
#include <string.h>

static void
add_string(JsonBuilder *b, const char *key, const char *val)
{
    json_builder_set_member_name(b, key);
    if (val)
        json_builder_add_string_value(b, val);
    else
        json_builder_add_null_value(b);
}

static void
add_disk(JsonBuilder *b, const VsDiscoveredDisk *d)
{
    json_builder_begin_object(b);
    add_string(b, "target", d->target);
    add_string(b, "device", d->device);
    add_string(b, "type", d->type);
    add_string(b, "format", d->format);
    add_string(b, "path", d->path);
    add_string(b, "pool", d->pool);
    add_string(b, "pool_type", d->pool_type);
    add_string(b, "volume", d->volume);

    json_builder_set_member_name(b, "nfs");
    if (d->nfs_server || d->nfs_export) {
        json_builder_begin_object(b);
        add_string(b, "server", d->nfs_server);
        add_string(b, "export", d->nfs_export);
        add_string(b, "path", d->nfs_path);
        json_builder_end_object(b);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "iscsi");
    if (d->iscsi_iqn || d->iscsi_portal) {
        json_builder_begin_object(b);
        add_string(b, "portal", d->iscsi_portal);
        add_string(b, "iqn", d->iscsi_iqn);
        json_builder_set_member_name(b, "lun");
        if (d->iscsi_lun >= 0)
            json_builder_add_int_value(b, d->iscsi_lun);
        else
            json_builder_add_null_value(b);
        json_builder_end_object(b);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "block");
    if (d->block_device) {
        json_builder_begin_object(b);
        add_string(b, "device", d->block_device);
        add_string(b, "wwid", d->wwid);
        json_builder_end_object(b);
    } else {
        json_builder_add_null_value(b);
    }

    json_builder_set_member_name(b, "backing_chain");
    json_builder_begin_array(b);
    for (guint i = 0; i < d->chain->len; i++) {
        const VsChainElem *e = d->chain->pdata[i];
        json_builder_begin_object(b);
        add_string(b, "path", e->path);
        add_string(b, "format", e->format);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "backing_chain_complete");
    json_builder_add_boolean_value(b, d->chain_complete);
    if (!d->skipped) {
        const char *why = NULL;
        bool inc = vs_disk_holds_bitmaps(d->format, d->path, &why);
        json_builder_set_member_name(b, "incremental");
        json_builder_add_boolean_value(b, inc);
        add_string(b, "incremental_note", inc ? "dirty bitmaps (backup --mode=begin reads only "
                   "what changed)" : why);
    }
    add_string(b, "skipped", d->skipped);
    add_string(b, "error", d->error);
    json_builder_end_object(b);
}

char *
vs_discover_to_json(GPtrArray *domains, bool pretty)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_array(b);
    for (guint i = 0; i < domains->len; i++) {
        const VsDiscoveredDomain *dom = domains->pdata[i];
        json_builder_begin_object(b);
        add_string(b, "name", dom->name);
        add_string(b, "uuid", dom->uuid);
        add_string(b, "state", dom->state);
        json_builder_set_member_name(b, "id");
        if (dom->id >= 0)
            json_builder_add_int_value(b, dom->id);
        else
            json_builder_add_null_value(b);
        json_builder_set_member_name(b, "persistent");
        json_builder_add_boolean_value(b, dom->persistent);
        add_string(b, "agent", vs_agent_status_string(dom->agent));
        json_builder_set_member_name(b, "disks");
        json_builder_begin_array(b);
        for (guint j = 0; j < dom->disks->len; j++)
            add_disk(b, dom->disks->pdata[j]);
        json_builder_end_array(b);
        json_builder_set_member_name(b, "errors");
        json_builder_begin_array(b);
        for (guint j = 0; j < dom->problems->len; j++)
            json_builder_add_string_value(b, ((VsProblem *)dom->problems->pdata[j])->error->message);
        json_builder_end_array(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    return vs_json_builder_text(b, pretty);
}

char *
vs_json_node_text(JsonNode *root, bool pretty)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, pretty);
    text = json_generator_to_data(gen, NULL);
    return g_strconcat(text, "\n", NULL);
}

char *
vs_json_builder_text(JsonBuilder *b, bool pretty)
{
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    return vs_json_node_text(root, pretty);
}

/* ':' separates the fields and ';' the entries, so both (and '%') are
 * percent-encoded wherever they occur inside a field. */
static void
append_escaped(GString *s, const char *field)
{
    for (const char *p = field ? field : ""; *p; p++) {
        if (*p == ':' || *p == ';' || *p == '%')
            g_string_append_printf(s, "%%%02X", (unsigned char)*p);
        else
            g_string_append_c(s, *p);
    }
}

char *
vs_discover_to_mapping(GPtrArray *domains)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < domains->len; i++) {
        const VsDiscoveredDomain *dom = domains->pdata[i];
        for (guint j = 0; j < dom->disks->len; j++) {
            const VsDiscoveredDisk *d = dom->disks->pdata[j];
            g_autofree char *where = NULL;

            if (d->skipped)
                continue;
            append_escaped(s, dom->name);
            g_string_append_c(s, ':');
            if (d->nfs_server) {
                /* SERVER:/export/path: the whole path on the server */
                append_escaped(s, d->nfs_server);
                g_string_append_c(s, ':');
                where = g_strconcat(d->nfs_export ? d->nfs_export : "",
                                    d->nfs_path ? d->nfs_path : "", NULL);
                append_escaped(s, where);
            } else if (d->iscsi_iqn) {
                /* PORTAL:IQN/LUN; the portal is HOST%3APORT */
                append_escaped(s, d->iscsi_portal);
                g_string_append_c(s, ':');
                append_escaped(s, d->iscsi_iqn);
                g_string_append_printf(s, "/%d", d->iscsi_lun >= 0 ? d->iscsi_lun : 0);
            } else {
                append_escaped(s, "localhost");
                g_string_append_c(s, ':');
                append_escaped(s, d->path);
            }
            g_string_append_c(s, ';');
        }
    }
    g_string_append_c(s, '\n');
    return g_string_free(s, FALSE);
}

char *
vs_discover_to_text(GPtrArray *domains)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < domains->len; i++) {
        const VsDiscoveredDomain *dom = domains->pdata[i];

        g_string_append_printf(s, "%s  %s  agent: %s  %s\n", dom->name, dom->state,
                               vs_agent_status_string(dom->agent),
                               dom->persistent ? "persistent" : "transient");
        for (guint j = 0; j < dom->disks->len; j++) {
            const VsDiscoveredDisk *d = dom->disks->pdata[j];

            g_string_append_printf(s, "  %-5s %-6s %-7s %-6s %s", d->target, d->device, d->type,
                                   d->format ? d->format : "-", d->path ? d->path : "-");
            if (d->skipped) {
                g_string_append_printf(s, "  [skipped: %s]\n", d->skipped);
                continue;
            }
            if (d->pool)
                g_string_append_printf(s, "  pool %s (%s)", d->pool, d->pool_type);
            else
                g_string_append_printf(s, "  (%s)", d->pool_type);
            g_string_append_c(s, '\n');
            if (d->nfs_server)
                g_string_append_printf(s, "        nfs: server %s, export %s, path %s\n",
                                       d->nfs_server, d->nfs_export ? d->nfs_export : "?",
                                       d->nfs_path ? d->nfs_path : "?");
            if (d->iscsi_iqn)
                g_string_append_printf(s, "        iscsi: portal %s, iqn %s, lun %d\n",
                                       d->iscsi_portal ? d->iscsi_portal : "?", d->iscsi_iqn, d->iscsi_lun);
            if (d->block_device)
                g_string_append_printf(s, "        block: %s, wwid %s\n", d->block_device,
                                       d->wwid ? d->wwid : "(none exposed)");
            for (guint k = 0; k < d->chain->len; k++) {
                const VsChainElem *e = d->chain->pdata[k];
                g_string_append_printf(s, "        backing: %s (%s)\n", e->path,
                                       e->format ? e->format : "format unknown");
            }
            {
                const char *why = NULL;
                if (vs_disk_holds_bitmaps(d->format, d->path, &why))
                    g_string_append(s, "        incremental: dirty bitmaps (--mode=begin)\n");
                else
                    g_string_append_printf(s, "        incremental: no: %s\n", why);
            }
            if (d->error)
                g_string_append_printf(s, "        error: %s\n", d->error);
        }
        for (guint j = 0; j < dom->problems->len; j++) {
            const VsProblem *p = dom->problems->pdata[j];

            /* disk errors were printed beside their disk */
            if (!p->disk)
                g_string_append_printf(s, "  error: %s\n", p->error->message);
        }
    }
    return g_string_free(s, FALSE);
}
