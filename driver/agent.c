/* Freeze and thaw through qemu-guest-agent, every call bounded (the control
 * plane's freeze and thaw take the bound: libvirt's agent calls wait forever
 * unless told otherwise, and an oVirt freeze once blocked for 7.7 hours). A
 * freeze that timed out may still have frozen some file systems: callers thaw
 * on every path, and thawing a thawed guest is fine. */
#include "config.h"
#include "driver-internal.h"
#include "control.h"

#include <string.h>

int
vs_agent_freeze_count(virDomainPtr dom, int timeout_s, GError **error)
{
    const VsControlOps *c = vs_control();
    GError *cause = NULL;
    int n = c->fs_freeze(dom, timeout_s, &cause);

    if (n >= 0)
        return n;
    vs_control_error(error, cause, VS_ERROR_AGENT, "freeze: domain '%s'", c->domain_name(dom));
    return -1;
}

bool
vs_agent_freeze(virDomainPtr dom, int timeout_s, GError **error)
{
    return vs_agent_freeze_count(dom, timeout_s, error) >= 0;
}

bool
vs_agent_thaw(virDomainPtr dom, int timeout_s, GError **error)
{
    const VsControlOps *c = vs_control();
    g_autoptr(GError) refused = NULL;
    GError *cause = NULL;
    g_autofree char *reply = NULL;

    if (c->fs_thaw(dom, timeout_s, &refused))
        return true;
    /* libvirt's own thaw refuses when it believes nothing is frozen, e.g. in
     * a recovering process: ask the agent directly. */
    if ((reply = c->agent_command(dom, "{\"execute\":\"guest-fsfreeze-thaw\"}", timeout_s, &cause)))
        return true;
    vs_control_error(error, cause, VS_ERROR_AGENT, "thaw: domain '%s'", c->domain_name(dom));
    return false;
}

char *
vs_agent_freeze_status(virDomainPtr dom, int timeout_s, GError **error)
{
    const VsControlOps *c = vs_control();
    GError *cause = NULL;
    g_autofree char *reply = c->agent_command(dom, "{\"execute\":\"guest-fsfreeze-status\"}",
                                              timeout_s, &cause);

    if (!reply) {
        vs_control_error(error, cause, VS_ERROR_AGENT, "freeze status: domain '%s'",
                         c->domain_name(dom));
        return NULL;
    }
    if (strstr(reply, "\"frozen\""))
        return g_strdup("frozen");
    if (strstr(reply, "\"thawed\""))
        return g_strdup("thawed");
    g_set_error(error, VS_ERROR, VS_ERROR_AGENT, "freeze status: domain '%s': unexpected reply %s",
                c->domain_name(dom), reply);
    return NULL;
}

bool
vs_agent_thaw_confirmed(virDomainPtr dom, int timeout_s, GError **error)
{
    g_autoptr(GError) terr = NULL, serr = NULL;
    g_autofree char *status = NULL;

    /* A thaw that fails may still have worked: the guest's answer decides. */
    (void)vs_agent_thaw(dom, timeout_s, &terr);
    status = vs_agent_freeze_status(dom, timeout_s, &serr);
    if (g_strcmp0(status, "thawed") == 0)
        return true;
    if (terr || serr)
        g_propagate_error(error, terr ? g_steal_pointer(&terr) : g_steal_pointer(&serr));
    else
        g_set_error_literal(error, VS_ERROR, VS_ERROR_AGENT, "it still says frozen");
    return false;
}
