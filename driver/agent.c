/* Freeze and thaw through qemu-guest-agent, every call bounded. libvirt's agent
 * calls wait forever unless the domain has a response timeout (an oVirt freeze
 * once blocked for 7.7 hours), so each call here sets one first and puts the
 * default back afterwards. A freeze that timed out may still have frozen some
 * file systems: callers thaw on every path, and thawing a thawed guest is fine. */
#include "config.h"
#include "driver-internal.h"

#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
#include <string.h>

static void
set_timeout(virDomainPtr dom, int timeout_s)
{
    /* Older daemons lack the call; the bound then rests on the guardian. */
    (void)virDomainAgentSetResponseTimeout(dom, timeout_s, 0);
}

static void
reset_timeout(virDomainPtr dom)
{
    (void)virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
}

/* Every public libvirt call, virDomainGetName included, clears the thread's
 * last error: names are read before the call whose error we report. */

bool
vs_agent_freeze(virDomainPtr dom, int timeout_s, GError **error)
{
    const char *name = virDomainGetName(dom);
    int r;

    set_timeout(dom, timeout_s);
    r = virDomainFSFreeze(dom, NULL, 0, 0);
    if (r < 0)
        vs_set_libvirt_error(error, VS_ERROR_AGENT, "freeze: domain '%s'", name);
    reset_timeout(dom);
    return r >= 0;
}

bool
vs_agent_thaw(virDomainPtr dom, int timeout_s, GError **error)
{
    const char *name = virDomainGetName(dom);
    int r;

    set_timeout(dom, timeout_s);
    r = virDomainFSThaw(dom, NULL, 0, 0);
    if (r < 0) {
        /* libvirt's own thaw refuses when it believes nothing is frozen, e.g.
         * in a recovering process: ask the agent directly. */
        char *reply = virDomainQemuAgentCommand(dom, "{\"execute\":\"guest-fsfreeze-thaw\"}",
                                                timeout_s, 0);
        if (reply) {
            free(reply);
            r = 0;
        } else {
            vs_set_libvirt_error(error, VS_ERROR_AGENT, "thaw: domain '%s'", name);
        }
    }
    reset_timeout(dom);
    return r >= 0;
}

char *
vs_agent_freeze_status(virDomainPtr dom, int timeout_s, GError **error)
{
    const char *name = virDomainGetName(dom);
    char *reply = virDomainQemuAgentCommand(dom, "{\"execute\":\"guest-fsfreeze-status\"}",
                                            timeout_s, 0);
    char *out = NULL;

    if (!reply) {
        vs_set_libvirt_error(error, VS_ERROR_AGENT, "freeze status: domain '%s'", name);
        return NULL;
    }
    if (strstr(reply, "\"frozen\""))
        out = g_strdup("frozen");
    else if (strstr(reply, "\"thawed\""))
        out = g_strdup("thawed");
    else
        g_set_error(error, VS_ERROR, VS_ERROR_AGENT, "freeze status: domain '%s': unexpected reply %s",
                    name, reply);
    free(reply);
    return out;
}
