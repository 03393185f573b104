/* `virtsnap discover`: every domain (or those named), every disk, and where the
 * data lives, as text, JSON or the one-line mapping array-snapshot plug-ins
 * read (escaped, or in Snap Creator's shape; or written into a configuration
 * file's KVM_VM_MAPPING). Domains that cannot be found or resolved are reported on stderr and
 * make the exit status 1, while everything else is still printed. */
#include "config.h"
#include "config-rewrite.h"
#include "virtsnap.h"
#include "vs-snapshot.h"

#include <stdio.h>
#include <string.h>

/* --mapping=FORMAT taken out of ARGV before GOption sees it (an optional
 * argument would swallow the domain in `--mapping web1`): *FORMAT set (NULL
 * for plain --mapping); false for a FORMAT that is not "sc". */
static bool
take_mapping_format(int *argc, char **argv, char **format)
{
    for (int i = 1; i < *argc && strcmp(argv[i], "--") != 0; i++) {
        if (!g_str_has_prefix(argv[i], "--mapping="))
            continue;
        g_free(*format);
        *format = g_strdup(argv[i] + strlen("--mapping="));
        if (strcmp(*format, "sc") != 0 && strcmp(*format, "escaped") != 0)
            return false;
        argv[i] = (char *)"--mapping";
    }
    return true;
}

/* --update-config: FILE's KVM_VM_MAPPING set to MAPPING (its line). Not when
 * discovery had PROBLEMS: a mapping without a domain that could not be read
 * would drop it from the VMs the plug-in quiesces. Returns 0 or 1 (said). */
static int
update_mapping(const char *file, char *mapping, bool problems)
{
    g_autoptr(GError) err = NULL;

    if (problems) {
        vs_print_error("discover: %s not updated: discovery had errors (above), and a mapping without what "
                       "failed would leave those VMs out", file);
        return 1;
    }
    g_strchomp(mapping);
    if (!vs_config_file_set(file, "KVM_VM_MAPPING", mapping, &err)) {
        vs_print_error("discover: %s", err->message);
        return 1;
    }
    return 0;
}

int
vs_cmd_discover(const VsGlobal *g, int argc, char **argv)
{
    gboolean json = FALSE, mapping = FALSE, no_exports = FALSE;
    char *snap_conf = NULL;
    g_autofree char *format = NULL, *update_config = NULL;
    int agent_timeout = 2;
    GOptionEntry entries[] = {
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print a JSON array", NULL },
        { "mapping", 0, 0, G_OPTION_ARG_NONE, &mapping,
          "print one line VM:SERVER:/export/path;VM:PORTAL:IQN/LUN;... (fields %-escaped); "
          "--mapping=sc: unescaped as Snap Creator's KVM_VM_MAPPING, with a storage hook's controller "
          "and volume", NULL },
        { "update-config", 0, 0, G_OPTION_ARG_FILENAME, &update_config, "with --mapping: set KVM_VM_MAPPING "
          "in FILE to it (the line replaced or added, every other byte kept) instead of printing it", "FILE" },
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
    if (!take_mapping_format(&argc, argv, &format)) {
        vs_print_error("discover: --mapping=%s: the formats are --mapping (escaped) and --mapping=sc", format);
        return 2;
    }
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        vs_print_error("discover: %s (see virtsnap discover --help)", err->message);
        return 2;
    }
    if (json && mapping) {
        vs_print_error("discover: --json and --mapping exclude each other: pick one");
        return 2;
    }
    if (update_config && !mapping) {
        vs_print_error("discover: --update-config needs --mapping (it writes the mapping into the file)");
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
    if (!(snap = vs_snap_config_load(vs_cfg("VIRTSNAP_SNAPSHOT_CONFIG", snap_conf), &err))) {
        vs_print_error("discover: %s (snapshot_provider is decided without it)", err->message);
        g_clear_error(&err);
        config_bad = true;
    }
    vs_discover_options_init(&opts);
    opts.agent_timeout = agent_timeout;
    opts.probe_exports = !no_exports;
    opts.snapshot_config = snap;
    /* the guide's shape names the array's controller and volume where a
     * hook can say them */
    opts.locate = g_strcmp0(format, "sc") == 0;
    {
        g_autofree char *remote = vs_uri_remote_host(vs_default_uri(g->uri));
        opts.remote = remote != NULL;
    }

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
    else if (mapping && g_strcmp0(format, "sc") == 0)
        out = vs_discover_to_sc_mapping(doms, &err);
    else if (mapping)
        out = vs_discover_to_mapping(doms);
    else
        out = vs_discover_to_text(doms);
    for (guint i = 0; problems && i < problems->len; i++)
        vs_print_error("%s", ((VsProblem *)problems->pdata[i])->error->message);
    if (!out) {
        vs_print_error("%s", err->message);
        return 1;
    }
    if (update_config)
        return update_mapping(update_config, out, problems != NULL) || config_bad ? 1 : 0;
    fputs(out, stdout);
    fflush(stdout);
    return problems || config_bad ? 1 : 0;
}
