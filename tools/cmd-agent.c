/* `virtsnap agent online|offline|monitor|clean|migrate DOMAIN`: the entry
 * points of a Veritas Cluster Server agent for a KVM guest (KVMGuest's), for
 * VCS to call as script entry points and for the OCF agent ocf:virtsnap:domain
 * to call in turn (one logic for both clusters; driver/cluster*.c). Attributes
 * come as VCS names them, from --attr K=V and --attr-file F. Monitor exits
 * with VCS's codes (110..101 online with a confidence, 100 offline, 200
 * intentional offline, 99 unknown) and prints the state and why; the other
 * verbs exit 0, 1 (failed), 2 (usage), 3 (not supported here) or 6 (the
 * domain or its definition is missing: a configuration error). Every verb is
 * bounded by --timeout (the attribute Timeout, default 300 s): the driver's
 * waits end there, and a watchdog ends the process should one libvirt call
 * hang past it. */
#include "config.h"
#include "virtsnap.h"
#include "vs-cluster.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef enum { VERB_ONLINE, VERB_OFFLINE, VERB_MONITOR, VERB_CLEAN, VERB_MIGRATE, VERB_NONE } Verb;

static const char *const verb_names[] = { "online", "offline", "monitor", "clean", "migrate" };

static Verb
verb_of(const char *word)
{
    for (int v = 0; v < VERB_NONE; v++)
        if (strcmp(word, verb_names[v]) == 0)
            return v;
    return VERB_NONE;
}

typedef struct {
    const char *verb;
    int seconds;
    int status;
    GPtrArray *notes;   /* what the verb has said so far */
} Watchdog;

/* The last resort behind the driver's own deadlines: a libvirt call that
 * never returns (a daemon stuck on a storage server) must not outlive the
 * cluster's timeout, after which the cluster would act on a verb still running. */
static gpointer
watchdog_run(gpointer data)
{
    const Watchdog *w = data;

    guint n;

    g_usleep(((gint64)w->seconds + 2) * G_USEC_PER_SEC);
    /* Read once: the verb may still be appending (pointers only ever added). */
    n = g_atomic_int_get((gint *)&w->notes->len);
    for (guint i = 0; i < n; i++)
        printf("%s\n", (const char *)w->notes->pdata[i]);
    fprintf(stderr, "virtsnap: agent: %s: a libvirt call did not return within the %d s timeout\n",
            w->verb, w->seconds);
    fflush(stdout);
    _exit(w->status);
}

static int
exit_for(const GError *err)
{
    switch (err->code) {
    case VS_ERROR_INVALID_ARG:
        return VS_CLUSTER_EXIT_USAGE;
    case VS_ERROR_NOT_FOUND:
    case VS_ERROR_XML:
        return VS_CLUSTER_EXIT_CONFIG;
    case VS_ERROR_UNSUPPORTED:
        return VS_CLUSTER_EXIT_UNSUPPORTED;
    default:
        return VS_CLUSTER_EXIT_FAILED;
    }
}

static void
print_notes(GPtrArray *notes)
{
    for (guint i = 0; i < notes->len; i++)
        printf("%s\n", (const char *)notes->pdata[i]);
}

static int
run_verb(Verb verb, const char *uri, const char *domain, const VsClusterAttrs *a, const char *target,
         GPtrArray *notes)
{
    g_autoptr(GError) err = NULL;
    VsClusterStatus st = { 0 };
    bool ok = false;
    int code;

    switch (verb) {
    case VERB_ONLINE: ok = vs_cluster_online(uri, domain, a, notes, &err); break;
    case VERB_OFFLINE: ok = vs_cluster_offline(uri, domain, a, notes, &err); break;
    case VERB_CLEAN: ok = vs_cluster_clean(uri, domain, a, notes, &err); break;
    case VERB_MONITOR:
        if (!vs_cluster_monitor(uri, domain, a, &st, &err)) {
            vs_print_error("%s", err->message);
            printf("UNKNOWN: %s\n", err->message);
            return vs_cluster_monitor_exit(VS_CLUSTER_UNKNOWN, 0);
        }
        code = vs_cluster_monitor_exit(st.state, st.confidence);
        if (st.state == VS_CLUSTER_ONLINE)
            printf("%s (confidence %d): %s\n", vs_cluster_state_string(st.state), st.confidence, st.why);
        else
            printf("%s: %s\n", vs_cluster_state_string(st.state), st.why);
        vs_cluster_status_clear(&st);
        return code;
    case VERB_MIGRATE: ok = vs_cluster_migrate(uri, domain, a, target, notes, &err); break;
    case VERB_NONE:
        break;
    }
    print_notes(notes);
    if (ok)
        return VS_CLUSTER_EXIT_OK;
    vs_print_error("%s", err->message);
    return exit_for(err);
}

int
vs_cmd_agent(const VsGlobal *g, int argc, char **argv)
{
    g_auto(GStrv) attrs = NULL;
    g_autofree char *attr_file = NULL, *uri = NULL, *target = NULL;
    int timeout = -1;
    GOptionEntry entries[] = {
        { "attr", 0, 0, G_OPTION_ARG_STRING_ARRAY, &attrs, "a VCS attribute (GuestName, "
          "GuestConfigFilePath, DelayAfterGuestOnline, DelayAfterGuestOffline, SyncDir, Timeout); repeatable", "K=V" },
        { "attr-file", 0, 0, G_OPTION_ARG_FILENAME, &attr_file, "KEY=VALUE lines of attributes "
          "(--attr wins)", "FILE" },
        { "uri", 0, 0, G_OPTION_ARG_STRING, &uri, "libvirt URI (default: -c, else as virsh)", "URI" },
        { "timeout", 0, 0, G_OPTION_ARG_INT, &timeout, "bound on the whole verb, seconds (default: "
          "the Timeout attribute, else 300)", "SECS" },
        { "target", 0, 0, G_OPTION_ARG_STRING, &target, "migrate: the destination's libvirt URI", "URI" },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new(
        "online|offline|monitor|clean|migrate [DOMAIN] - a cluster agent's entry points (VCS KVMGuest's)");
    g_autoptr(GError) err = NULL;
    VsClusterAttrs a;
    Verb verb;
    int status;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        vs_print_error("agent: %s (see virtsnap agent --help)", err->message);
        return VS_CLUSTER_EXIT_USAGE;
    }
    if (argc < 2 || argc > 3 || (verb = verb_of(argv[1])) == VERB_NONE) {
        vs_print_error("agent: give a verb (online, offline, monitor, clean or migrate) and the "
                       "domain (see virtsnap agent --help)");
        return VS_CLUSTER_EXIT_USAGE;
    }
    vs_cluster_attrs_init(&a);
    if (attr_file && !vs_cluster_attrs_load(&a, attr_file, &err))
        goto usage;
    for (size_t i = 0; attrs && attrs[i]; i++) {
        g_auto(GStrv) kv = g_strsplit(attrs[i], "=", 2);

        if (!kv[0] || !kv[1]) {
            g_set_error(&err, VS_ERROR, VS_ERROR_INVALID_ARG, "agent: --attr '%s': give KEY=VALUE", attrs[i]);
            goto usage;
        }
        if (!vs_cluster_attr_set(&a, kv[0], kv[1], &err))
            goto usage;
    }
    if (timeout != -1) {
        g_autofree char *t = g_strdup_printf("%d", timeout);

        if (!vs_cluster_attr_set(&a, "Timeout", t, &err))
            goto usage;
    }
    if (!a.state_dir && vs_cfg("VIRTSNAP_STATE_DIR", NULL))
        a.state_dir = g_strdup(vs_cfg("VIRTSNAP_STATE_DIR", NULL));
    {
        /* Static: the watchdog may outlive this frame (never main). */
        static Watchdog w;

        /* Preallocated: the watchdog reads it while the verb appends. */
        w = (Watchdog){ verb_names[verb], a.timeout_s,
                        verb == VERB_MONITOR ? vs_cluster_monitor_exit(VS_CLUSTER_UNKNOWN, 0)
                                             : VS_CLUSTER_EXIT_FAILED,
                        g_ptr_array_new_full(64, g_free) };
        g_thread_unref(g_thread_new("agent-watchdog", watchdog_run, &w));
        status = run_verb(verb, uri ? uri : g->uri, argc == 3 ? argv[2] : NULL, &a, target, w.notes);
    }
    vs_cluster_attrs_clear(&a);
    return status;
usage:
    vs_print_error("%s", err->message);
    vs_cluster_attrs_clear(&a);
    return VS_CLUSTER_EXIT_USAGE;
}
