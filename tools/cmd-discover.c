/* `virtsnap discover`: every domain (or those named), every disk, and where the
 * data lives, as text, JSON or the one-line mapping array-snapshot plug-ins
 * read. Domains that cannot be found or resolved are reported on stderr and
 * make the exit status 1, while everything else is still printed. */
#include "config.h"
#include "virtsnap.h"
#include "vs-snapshot.h"

#include <stdio.h>

int
vs_cmd_discover(const VsGlobal *g, int argc, char **argv)
{
    gboolean json = FALSE, mapping = FALSE, no_exports = FALSE;
    char *snap_conf = NULL;
    int agent_timeout = 2;
    GOptionEntry entries[] = {
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print a JSON array", NULL },
        { "mapping", 0, 0, G_OPTION_ARG_NONE, &mapping,
          "print one line VM:SERVER:/export/path;VM:PORTAL:IQN/LUN;...", NULL },
        { "agent-timeout", 0, 0, G_OPTION_ARG_INT, &agent_timeout,
          "seconds to wait for guest-ping (default 2, 0 to 300)", "SECS" },
        { "no-nfs-exports", 0, 0, G_OPTION_ARG_NONE, &no_exports,
          "do not ask NFS servers for their export lists", NULL },
        { "snapshot-config", 0, 0, G_OPTION_ARG_FILENAME, &snap_conf, "the storage snapshot configuration "
          "snapshot_provider is decided with (default " VS_SNAP_CONFIG_DEFAULT ", if it exists)", "FILE" },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("[DOMAIN...] - discover domains and their disks");
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) doms = NULL;
    g_autoptr(GPtrArray) problems = NULL;
    g_autofree char *out = NULL;
    g_autoptr(VsSnapConfig) snap = NULL;
    VsDiscoverOptions opts;
    bool config_bad = false;
    virConnectPtr conn;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        vs_print_error("discover: %s (see virtsnap discover --help)", err->message);
        return 2;
    }
    if (json && mapping) {
        vs_print_error("discover: --json and --mapping exclude each other: pick one");
        return 2;
    }
    {
        const VsIntOption ints[] = { { "--agent-timeout", agent_timeout, 0, 300 } };

        if (!vs_check_int_options("discover", ints, 1, &err)) {
            vs_print_error("%s", err->message);
            return 2;
        }
    }
    /* A configuration that cannot be read does not keep discovery from
     * reporting the rest: it is said, the answer decided without it, and the
     * exit status 1 (a backup would refuse it). */
    if (!(snap = vs_snap_config_load(snap_conf, &err))) {
        vs_print_error("discover: %s (snapshot_provider is decided without it)", err->message);
        g_clear_error(&err);
        config_bad = true;
    }
    vs_discover_options_init(&opts);
    opts.agent_timeout = agent_timeout;
    opts.probe_exports = !no_exports;
    opts.snapshot_config = snap;

    if (!(conn = vs_conn_open(g->uri, &err))) {
        vs_print_error("discover: %s", err->message);
        return 1;
    }
    doms = vs_discover(conn, (const char *const *)(argv + 1), &opts, &problems, &err);
    vs_conn_close(conn);
    if (!doms) {
        vs_print_error("%s", err->message);
        return 1;
    }
    if (json)
        out = vs_discover_to_json(doms, true);
    else if (mapping)
        out = vs_discover_to_mapping(doms);
    else
        out = vs_discover_to_text(doms);
    fputs(out, stdout);
    fflush(stdout);
    for (guint i = 0; problems && i < problems->len; i++)
        vs_print_error("%s", ((VsProblem *)problems->pdata[i])->error->message);
    return problems || config_bad ? 1 : 0;
}
