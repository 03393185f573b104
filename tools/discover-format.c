/* The ways `virtsnap discover` prints what it found. JSON is the stable,
 * documented interface for scripts (every key always present, null where it
 * does not apply); the mapping is the single line array-snapshot plug-ins know,
 * escaped, or unescaped in the shape of Snap Creator's KVM_VM_MAPPING; text is
 * for people. */
#include "config.h"
#include "virtsnap.h"

#include <json-glib/json-glib.h>
#include <string.h>

static void
add_disk(JsonBuilder *b, const VsDiscoveredDisk *d)
{
    json_builder_begin_object(b);
    vs_json_add_str(b, "target", d->target);
    vs_json_add_str(b, "device", d->device);
    vs_json_add_str(b, "type", d->type);
    vs_json_add_str(b, "format", d->format);
    vs_json_add_str(b, "path", d->path);
    vs_json_add_str(b, "pool", d->pool);
    vs_json_add_str(b, "pool_type", d->pool_type);
    vs_json_add_str(b, "volume", d->volume);

    json_builder_set_member_name(b, "nfs");
    if (d->nfs_server || d->nfs_export) {
        json_builder_begin_object(b);
        vs_json_add_str(b, "server", d->nfs_server);
        vs_json_add_str(b, "export", d->nfs_export);
        vs_json_add_str(b, "path", d->nfs_path);
        json_builder_end_object(b);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "iscsi");
    if (d->iscsi_iqn || d->iscsi_portal) {
        json_builder_begin_object(b);
        vs_json_add_str(b, "portal", d->iscsi_portal);
        vs_json_add_str(b, "iqn", d->iscsi_iqn);
        vs_json_add_int_or_null(b, "lun", d->iscsi_lun);
        json_builder_end_object(b);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "rbd");
    if (d->rbd_pool) {
        json_builder_begin_object(b);
        vs_json_add_str(b, "pool", d->rbd_pool);
        vs_json_add_str(b, "image", d->rbd_image);
        vs_json_add_str(b, "user", d->rbd_user);
        json_builder_end_object(b);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "block");
    if (d->block_device) {
        json_builder_begin_object(b);
        vs_json_add_str(b, "device", d->block_device);
        vs_json_add_str(b, "wwid", d->wwid);
        json_builder_end_object(b);
    } else {
        json_builder_add_null_value(b);
    }

    json_builder_set_member_name(b, "backing_chain");
    json_builder_begin_array(b);
    for (guint i = 0; i < d->chain->len; i++) {
        const VsChainElem *e = d->chain->pdata[i];
        json_builder_begin_object(b);
        vs_json_add_str(b, "path", e->path);
        vs_json_add_str(b, "format", e->format);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    vs_json_add_bool(b, "backing_chain_complete", d->chain_complete);
    if (!d->skipped) {
        const char *why = NULL;
        bool inc = vs_disk_holds_bitmaps(d->format, d->path, &why);
        vs_json_add_bool(b, "incremental", inc);
        vs_json_add_str(b, "incremental_note", inc ? "dirty bitmaps (backup --mode=begin reads only "
                   "what changed)" : why);
    }
    vs_json_add_str(b, "snapshot_provider", d->snapshot_provider);
    vs_json_add_str(b, "snapshot_provider_reason", d->snapshot_reason);
    vs_json_add_str(b, "skipped", d->skipped);
    vs_json_add_str(b, "error", d->error);
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
        vs_json_add_str(b, "name", dom->name);
        vs_json_add_str(b, "uuid", dom->uuid);
        vs_json_add_str(b, "state", dom->state);
        vs_json_add_int_or_null(b, "id", dom->id);
        vs_json_add_bool(b, "persistent", dom->persistent);
        vs_json_add_str(b, "agent", vs_agent_status_to_string(dom->agent));
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

void
vs_disk_sc_location(const VsDiscoveredDisk *d, char **controller, char **volume)
{
    if (d->controller && d->controller_volume) {
        *controller = g_strdup(d->controller);
        *volume = g_strdup(d->controller_volume);
    } else if (d->nfs_server) {
        *controller = g_strdup(d->nfs_server);
        *volume = g_strconcat(d->nfs_export ? d->nfs_export : "", d->nfs_path ? d->nfs_path : "", NULL);
    } else if (d->iscsi_iqn) {
        *controller = g_strdup(d->iscsi_portal ? d->iscsi_portal : "");
        *volume = g_strdup_printf("%s/%d", d->iscsi_iqn, d->iscsi_lun >= 0 ? d->iscsi_lun : 0);
    } else {
        *controller = g_strdup("localhost");
        *volume = g_strdup(d->path ? d->path : "");
    }
}

/* Whether S can stand in a field of the guide's mapping unescaped: no entry
 * separator, no line break, and (NAME) no field separator nor '%' either, so
 * that a reader can take the VM name as what precedes the first ':' and
 * percent-decode it as it would the escaped format. */
static bool
sc_field_ok(const char *s, bool name)
{
    for (const char *p = s; *p; p++)
        if (*p == ';' || g_ascii_iscntrl(*p) || (name && (*p == ':' || *p == '%')))
            return false;
    return *s != '\0';
}

char *
vs_discover_to_sc_mapping(GPtrArray *domains, GError **error)
{
    g_autoptr(GString) s = g_string_new(NULL);

    for (guint i = 0; i < domains->len; i++) {
        const VsDiscoveredDomain *dom = domains->pdata[i];

        if (!sc_field_ok(dom->name, true)) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "discover: domain '%s': a name with ':', ';' or '%%' cannot be written in Snap "
                        "Creator's mapping: use --mapping (escaped) or rename the domain", dom->name);
            return NULL;
        }
        for (guint j = 0; j < dom->disks->len; j++) {
            const VsDiscoveredDisk *d = dom->disks->pdata[j];
            g_autofree char *controller = NULL, *volume = NULL;

            if (d->skipped)
                continue;
            vs_disk_sc_location(d, &controller, &volume);
            if (!sc_field_ok(controller, false) || !sc_field_ok(volume, false)) {
                g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                            "discover: domain '%s': disk %s: its controller or volume is empty or holds a ';' "
                            "or a control character, which Snap Creator's mapping cannot hold: use --mapping "
                            "(escaped)", dom->name, d->target);
                return NULL;
            }
            g_string_append_printf(s, "%s:%s:%s;", dom->name, controller, volume);
        }
    }
    g_string_append_c(s, '\n');
    return g_string_free(g_steal_pointer(&s), FALSE);
}

char *
vs_discover_to_text(GPtrArray *domains)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < domains->len; i++) {
        const VsDiscoveredDomain *dom = domains->pdata[i];

        g_string_append_printf(s, "%s  %s  agent: %s  %s\n", dom->name, dom->state,
                               vs_agent_status_to_string(dom->agent),
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
            if (d->rbd_pool)
                g_string_append_printf(s, "        rbd: pool %s, image %s\n", d->rbd_pool,
                                       d->rbd_image ? d->rbd_image : "?");
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
            if (d->snapshot_provider)
                g_string_append_printf(s, "        storage snapshot: %s\n", d->snapshot_provider);
            else
                g_string_append_printf(s, "        storage snapshot: %s\n", d->snapshot_reason);
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
