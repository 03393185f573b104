/* The cluster agent's decisions, apart from libvirt so that unit tests reach
 * every one: the VCS attributes (from --attr K=V and a file), the state a
 * domain is in as VCS names it (from libvirt's state and reason and what the
 * agent remembers of its own last verb on this host), and the exit codes VCS
 * reads. The memory is one word per domain in STATE/cluster/NAME: "online"
 * after an online, "offline" after an offline or clean, "migrated" after a
 * migration away. It is what tells a guest that crashed (FAULTED: it was
 * meant to run) from one nobody started (OFFLINE) once libvirt has forgotten
 * a transient domain. */
#include "config.h"
#include "vs-cluster.h"
#include "driver-internal.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <stdlib.h>
#include <string.h>

const char *
vs_cluster_state_string(VsClusterState state)
{
    switch (state) {
    case VS_CLUSTER_ONLINE: return "ONLINE";
    case VS_CLUSTER_OFFLINE: return "OFFLINE";
    case VS_CLUSTER_FAULTED: return "FAULTED";
    case VS_CLUSTER_INTENTIONAL_OFFLINE: return "INTENTIONAL OFFLINE";
    case VS_CLUSTER_UNKNOWN: break;
    }
    return "UNKNOWN";
}

int
vs_cluster_monitor_exit(VsClusterState state, int confidence)
{
    switch (state) {
    case VS_CLUSTER_ONLINE:
        return 100 + CLAMP((confidence + 9) / 10, 1, 10);
    case VS_CLUSTER_OFFLINE:
    case VS_CLUSTER_FAULTED:
        return 100;
    case VS_CLUSTER_INTENTIONAL_OFFLINE:
        return 200;
    case VS_CLUSTER_UNKNOWN:
        break;
    }
    return 99;
}

void
vs_cluster_attrs_init(VsClusterAttrs *a)
{
    *a = (VsClusterAttrs){ .delay_online_s = 5, .delay_offline_s = 30, .timeout_s = 300 };
}

void
vs_cluster_attrs_clear(VsClusterAttrs *a)
{
    g_free(a->guest_name);
    g_free(a->sync_dir);
    g_free(a->config_path);
    g_free(a->state_dir);
    vs_cluster_attrs_init(a);
}

static bool
parse_secs(const char *key, const char *value, int max, int *out, GError **error)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < 0 || v > max) {
        g_autofree char *shown = vs_printable(value, 64);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "agent: %s '%s': give whole seconds, 0 to %d", key, shown, max);
        return false;
    }
    *out = (int)v;
    return true;
}

static void
set_str(char **slot, const char *value)
{
    g_free(*slot);
    *slot = *value ? g_strdup(value) : NULL;
}

bool
vs_cluster_attr_set(VsClusterAttrs *a, const char *key, const char *value, GError **error)
{
    if (strcmp(key, "GuestName") == 0)
        set_str(&a->guest_name, value);
    else if (strcmp(key, "SyncDir") == 0)
        set_str(&a->sync_dir, value);
    else if (strcmp(key, "GuestConfigFilePath") == 0)
        set_str(&a->config_path, value);
    else if (strcmp(key, "StateDir") == 0)
        set_str(&a->state_dir, value);
    else if (strcmp(key, "DelayAfterGuestOnline") == 0)
        return parse_secs(key, value, 3600, &a->delay_online_s, error);
    else if (strcmp(key, "DelayAfterGuestOffline") == 0)
        return parse_secs(key, value, 3600, &a->delay_offline_s, error);
    else if (strcmp(key, "Timeout") == 0) {
        if (!parse_secs(key, value, 86400, &a->timeout_s, error))
            return false;
        if (a->timeout_s == 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "agent: Timeout 0: give 1 or more seconds");
            return false;
        }
    } else {
        g_autofree char *shown = vs_printable(key, 64);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "agent: unknown attribute '%s' (known: GuestName, GuestConfigFilePath, "
                    "DelayAfterGuestOnline, DelayAfterGuestOffline, SyncDir, Timeout, StateDir)", shown);
        return false;
    }
    return true;
}

bool
vs_cluster_attrs_load(VsClusterAttrs *a, const char *path, GError **error)
{
    g_autofree char *text = NULL;
    g_autoptr(GError) cause = NULL;
    g_auto(GStrv) lines = NULL;

    if (!g_file_get_contents(path, &text, NULL, &cause)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "agent: attribute file: %s", cause->message);
        return false;
    }
    lines = g_strsplit(text, "\n", -1);
    for (size_t i = 0; lines[i]; i++) {
        char *line = g_strstrip(lines[i]);
        char *eq = strchr(line, '=');
        char *key, *value;
        size_t n;

        if (!*line || *line == '#')
            continue;
        if (!eq) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "agent: %s:%zu: not KEY=VALUE", path, i + 1);
            return false;
        }
        *eq = '\0';
        key = g_strstrip(line);
        value = g_strstrip(eq + 1);
        n = strlen(value);
        if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
            value[n - 1] = '\0';
            value++;
        }
        if (!vs_cluster_attr_set(a, key, value, &cause)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "agent: %s:%zu: %s", path, i + 1,
                        cause->message + strlen("agent: "));
            return false;
        }
    }
    return true;
}

/* Running states: how sure the domain is doing its work. */
static VsClusterState
classify_active(int state, int reason, int *confidence, const char **why)
{
    switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
    case VIR_DOMAIN_PMSUSPENDED:
        *confidence = 100;
        *why = "running";
        return VS_CLUSTER_ONLINE;
    case VIR_DOMAIN_PAUSED:
        /* A pause for a disk error, a full disk or a guest panic is still a
         * domain here, but not one doing its work; any other pause (a
         * backup's fallback, an administrator's suspend, a migration's end)
         * is meant. */
        if (reason == VIR_DOMAIN_PAUSED_IOERROR || reason == VIR_DOMAIN_PAUSED_CRASHED ||
            reason == VIR_DOMAIN_PAUSED_WATCHDOG) {
            *confidence = 50;
            *why = "paused by an error (I/O error, watchdog or guest panic)";
        } else {
            *confidence = 100;
            *why = "paused";
        }
        return VS_CLUSTER_ONLINE;
    case VIR_DOMAIN_SHUTDOWN:
        *confidence = 30;
        *why = "shutting down";
        return VS_CLUSTER_ONLINE;
    case VIR_DOMAIN_CRASHED:
        *why = "crashed (kept for a dump)";
        return VS_CLUSTER_FAULTED;
    default:
        *why = "in a state libvirt does not name";
        return VS_CLUSTER_UNKNOWN;
    }
}

VsClusterState
vs_cluster_classify(bool exists, int state, int reason, const char *memory, int *confidence,
                    const char **why)
{
    bool meant_online = memory && strcmp(memory, "online") == 0;

    *confidence = 0;
    if (memory && strcmp(memory, "migrated") == 0 && (!exists || state == VIR_DOMAIN_SHUTOFF)) {
        *why = "migrated away by the agent";
        return VS_CLUSTER_INTENTIONAL_OFFLINE;
    }
    if (!exists) {
        *why = meant_online ? "gone from this host while meant to run (a transient domain whose QEMU died)"
                            : "not defined on this host";
        return meant_online ? VS_CLUSTER_FAULTED : VS_CLUSTER_OFFLINE;
    }
    if (state != VIR_DOMAIN_SHUTOFF)
        return classify_active(state, reason, confidence, why);
    /* After the agent's own offline or clean, however the domain went down
     * before (a crash the cluster then cleaned up), it is simply offline. */
    if (memory && strcmp(memory, "offline") == 0 && reason != VIR_DOMAIN_SHUTOFF_MIGRATED) {
        *why = "stopped by the agent";
        return VS_CLUSTER_OFFLINE;
    }
    switch (reason) {
    case VIR_DOMAIN_SHUTOFF_MIGRATED:
        *why = "shut off here by a migration to another host";
        return VS_CLUSTER_INTENTIONAL_OFFLINE;
    case VIR_DOMAIN_SHUTOFF_SHUTDOWN:
        *why = meant_online ? "shut down gracefully outside the cluster" : "shut down";
        return meant_online ? VS_CLUSTER_INTENTIONAL_OFFLINE : VS_CLUSTER_OFFLINE;
    case VIR_DOMAIN_SHUTOFF_CRASHED:
    case VIR_DOMAIN_SHUTOFF_FAILED:
        *why = reason == VIR_DOMAIN_SHUTOFF_CRASHED ? "crashed (its QEMU died)" : "failed to start";
        return VS_CLUSTER_FAULTED;
    default:
        *why = meant_online ? "shut off while meant to run (destroyed outside the cluster)" : "shut off";
        return meant_online ? VS_CLUSTER_FAULTED : VS_CLUSTER_OFFLINE;
    }
}

void
vs_cluster_status_clear(VsClusterStatus *s)
{
    g_clear_pointer(&s->why, g_free);
}

char *
vs_cluster_name_from_file(const char *path, GError **error)
{
    g_autoptr(VsDomainDef) def = vs_domain_def_parse_file(path, error);

    if (!def)
        return NULL;
    if (!def->name || !*def->name) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML, "agent: %s names no domain (<name>)", path);
        return NULL;
    }
    return g_strdup(def->name);
}
