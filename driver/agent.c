/* Freeze and thaw through qemu-guest-agent, every call bounded (the control
 * plane's freeze and thaw take the bound: libvirt's agent calls wait forever
 * unless told otherwise, and an oVirt freeze once blocked for 7.7 hours). A
 * freeze that timed out may still have frozen some file systems: callers thaw
 * on every path, and thawing a thawed guest is fine. */
#include "config.h"
#include "driver-internal.h"
#include "control.h"

#include <string.h>

bool
vs_agent_freeze(virDomainPtr dom, int timeout_s, GError **error)
{
    const VsControlOps *c = vs_control();
    GError *cause = NULL;

    if (c->fs_freeze(dom, timeout_s, &cause))
        return true;
    vs_control_error(error, cause, VS_ERROR_AGENT, "freeze: domain '%s'", c->domain_name(dom));
    return false;
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
