/* `virtsnap quiesce` and `virtsnap unquiesce`: the freeze of a group of guests
 * around a snapshot an outside scheduler takes (an array snapshot). Quiesce
 * prints the token alone on its first line (a script takes it with
 * `head -1`), then a line per guest; with --json one object. Unquiesce says
 * per token whether the deadline was kept, and exits 1 when the guardian had
 * to thaw first (the snapshot is then crash-consistent only) or a guest
 * could not be released. The hidden `quiesce-guardian` command is the
 * detached guardian quiesce starts from this same executable. */
#include "config.h"
#include "virtsnap.h"
#include "vs-quiesce.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    double max_freeze;
    int agent_timeout;
    char *state_dir;
    gboolean json;
} CommonArgs;

/* An option the user did not give: the configuration (or the default) decides. */
#define UNSET_SECS -1.0
#define UNSET G_MININT

/* The options both commands take, the ones not given from the configuration
 * (option > environment > file, vs-config.h), checked: false on a usage error.
 * A failed freeze, thaw, suspend or resume is retried KVM_CMD_RETRY_COUNT times. */
static bool
common_check(const char *cmd, CommonArgs *a, VsQuiesceOptions *o, GError **error)
{
    const VsConfig *cfg = vs_cli_config();

    if (a->max_freeze == UNSET_SECS)
        a->max_freeze = vs_config_double(cfg, "VIRTSNAP_MAX_FREEZE", VS_QUIESCE_DEFAULT_MAX_FREEZE_MS / 1000.0);
    if (a->agent_timeout == UNSET)
        a->agent_timeout = vs_config_int(cfg, "VIRTSNAP_AGENT_TIMEOUT", 5);
    const VsIntOption ints[] = { { "--agent-timeout", a->agent_timeout, 1, 300 } };
    if (!(a->max_freeze > 0 && a->max_freeze <= 3600)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "%s: --max-freeze %g: give more than 0, at most 3600 (seconds)", cmd, a->max_freeze);
        return false;
    }
    if (!vs_check_int_options(cmd, ints, G_N_ELEMENTS(ints), error))
        return false;
    vs_quiesce_options_init(o);
    o->max_freeze_ms = (int)(a->max_freeze * 1000);
    o->agent_timeout = a->agent_timeout;
    o->state_dir = vs_cfg("VIRTSNAP_STATE_DIR", a->state_dir);
    o->retry_count = vs_config_int(cfg, "KVM_CMD_RETRY_COUNT", 3);
    return true;
}

static char *
quiesce_json(const VsQuiesceResult *r, const char *error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    vs_json_add_str(b, "token", r ? r->token : NULL);
    vs_json_add_int_or_null(b, "deadline_at", r ? r->deadline_at : -1);
    vs_json_add_int_or_null(b, "max_freeze_ms", r ? r->max_freeze_ms : -1);
    json_builder_set_member_name(b, "domains");
    json_builder_begin_array(b);
    for (guint i = 0; r && i < r->domains->len; i++) {
        const VsQuiesceDomain *d = r->domains->pdata[i];

        json_builder_begin_object(b);
        vs_json_add_str(b, "name", d->name);
        vs_json_add_str(b, "uuid", d->uuid);
        vs_json_add_bool(b, "frozen", d->frozen);
        vs_json_add_bool(b, "suspended", d->suspended);
        vs_json_add_int_or_null(b, "filesystems", d->filesystems);
        vs_json_add_int_or_null(b, "freeze_ms", d->freeze_ms);
        vs_json_add_int_or_null(b, "freeze_started_at", d->freeze_started_at);
        vs_json_add_int_or_null(b, "frozen_at", d->frozen_at);
        vs_json_add_str(b, "note", d->error);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    vs_json_add_str(b, "error", error);
    json_builder_end_object(b);
    return vs_json_builder_text(b, true);
}

static void
print_quiesce(const VsQuiesceResult *r, bool quiet)
{
    g_autoptr(GDateTime) dl = g_date_time_new_from_unix_utc(r->deadline_at / 1000);
    g_autofree char *at = g_date_time_format(dl, "%H:%M:%S UTC");

    printf("%s\n", r->token);
    if (quiet)
        return;
    for (guint i = 0; i < r->domains->len; i++) {
        const VsQuiesceDomain *d = r->domains->pdata[i];

        if (d->frozen)
            printf("frozen %s: %d file system(s) in %" G_GINT64_FORMAT " ms\n", d->name,
                   d->filesystems, d->freeze_ms);
        else
            printf("suspended %s: %s\n", d->name, d->error ? d->error : "paused");
    }
    printf("the guardian thaws them at %s (--max-freeze %d s) unless `virtsnap unquiesce %s` "
           "comes first\n", at, r->max_freeze_ms / 1000, r->token);
}

int
vs_cmd_quiesce(const VsGlobal *g, int argc, char **argv)
{
    CommonArgs a = { .max_freeze = UNSET_SECS, .agent_timeout = UNSET };
    gboolean suspend_fallback = FALSE;
    GOptionEntry entries[] = {
        { "max-freeze", 0, 0, G_OPTION_ARG_DOUBLE, &a.max_freeze, "the guardian thaws this long after "
          "the first freeze, seconds (default 30, at most 3600)", "SECS" },
        { "suspend-fallback", 0, 0, G_OPTION_ARG_NONE, &suspend_fallback, "pause a guest whose agent "
          "does not answer, instead of failing", NULL },
        { "agent-timeout", 0, 0, G_OPTION_ARG_INT, &a.agent_timeout, "bound on each guest-agent call, "
          "seconds (default 5, 1 to 300)", "SECS" },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &a.state_dir, "token registry, journal and "
          "guardian log (default /var/lib/virtsnap)", "DIR" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &a.json, "print the result as JSON", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("[DOMAIN...] - freeze guests together until unquiesce (none: KVM_VM_MAPPING's)");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsQuiesceResult) r = NULL;
    g_autofree char *state_dir = NULL;
    const char *const *names;
    VsQuiesceOptions o;
    virConnectPtr conn;
    bool parsed;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!(parsed = g_option_context_parse(octx, &argc, &argv, &err)) ||
        (argc < 2 && !vs_config_names(g->config, "KVM_VM_MAPPING")) ||
        !common_check("quiesce", &a, &o, &err)) {
        g_autofree char *msg = err ? g_strdup_printf("%s%s (see virtsnap quiesce --help)",
                                                     parsed ? "" : "quiesce: ", err->message)
                                   : g_strdup("quiesce: name the domains to freeze (see virtsnap quiesce --help)");
        state_dir = a.state_dir;
        return vs_fail_with(2, msg, (a.json || vs_argv_has(argc, argv, "--json")) ? quiesce_json(NULL, msg) : NULL);
    }
    state_dir = a.state_dir;
    o.uri = vs_default_uri(g->uri);
    o.suspend_fallback = suspend_fallback;
    if (!(conn = vs_conn_open(g->uri, &err))) {
        g_autofree char *msg = g_strdup_printf("quiesce: %s", err->message);
        return vs_fail_with(1, msg, a.json ? quiesce_json(NULL, msg) : NULL);
    }
    /* No names: KVM_VM_MAPPING's VMs, each of which must exist. */
    names = (const char *const *)(argv + 1);
    if (argc < 2 && !(names = vs_config_vms(conn, "KVM_VM_MAPPING", true, &err))) {
        vs_conn_close(conn);
        return vs_fail_with(err->code == VS_ERROR_INVALID_ARG ? 2 : 1, err->message,
                            a.json ? quiesce_json(NULL, err->message) : NULL);
    }
    r = vs_quiesce(conn, names, &o, &err);
    vs_conn_close(conn);
    if (!r)
        return vs_fail_with(err->code == VS_ERROR_INVALID_ARG ? 2 : 1, err->message,
                            a.json ? quiesce_json(NULL, err->message) : NULL);
    if (a.json) {
        g_autofree char *text = quiesce_json(r, NULL);
        fputs(text, stdout);
    } else {
        print_quiesce(r, g->quiet);
    }
    return 0;
}

static char *
unquiesce_json(const VsUnquiesceResult *r, const char *error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "tokens");
    json_builder_begin_array(b);
    for (guint i = 0; r && i < r->tokens->len; i++) {
        const VsUnquiesceToken *t = r->tokens->pdata[i];

        json_builder_begin_object(b);
        vs_json_add_str(b, "token", t->token);
        vs_json_add_bool(b, "already", t->already);
        vs_json_add_bool(b, "deadline_kept", t->deadline_kept);
        vs_json_add_bool(b, "guardian_thawed", t->guardian_thawed);
        vs_json_add_str(b, "consistency", t->deadline_kept ? "quiesced" : "crash-consistent");
        vs_json_add_int_or_null(b, "deadline_at", t->deadline_at);
        vs_json_add_int_or_null(b, "unquiesced_at", t->unquiesced_at);
        vs_json_add_str(b, "error", t->error);
        json_builder_set_member_name(b, "domains");
        json_builder_begin_array(b);
        for (guint k = 0; k < t->domains->len; k++) {
            const VsUnquiesceDomain *d = t->domains->pdata[k];

            json_builder_begin_object(b);
            vs_json_add_str(b, "name", d->name);
            vs_json_add_bool(b, "thawed", d->thawed);
            vs_json_add_bool(b, "resumed", d->resumed);
            vs_json_add_str(b, "error", d->error);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    vs_json_add_str(b, "error", error);
    json_builder_end_object(b);
    return vs_json_builder_text(b, true);
}

/* One token's report; false when it is not a success. */
static bool
print_token(const VsUnquiesceToken *t, bool quiet)
{
    bool ok = true;

    if (t->error) {
        vs_print_error("%s", t->error);
        return false;
    }
    if (t->already) {
        if (!quiet)
            printf("%s: already thawed (unquiesced before)\n", t->token);
        return true;
    }
    for (guint k = 0; k < t->domains->len; k++) {
        const VsUnquiesceDomain *d = t->domains->pdata[k];

        if (d->error) {
            vs_print_error("%s", d->error);
            ok = false;
        } else if (!quiet) {
            printf("%s %s\n", d->resumed ? "resumed" : d->thawed ? "thawed" : "released", d->name);
        }
    }
    if (t->guardian_thawed || (ok && !t->deadline_kept)) {
        vs_print_error("unquiesce: %s: %s: a snapshot taken meanwhile is crash-consistent only "
                       "(give quiesce a longer --max-freeze)", t->token,
                       t->guardian_thawed ? "the guardian had already thawed the guests at the deadline"
                                          : "the deadline had passed");
        return false;
    }
    if (!ok) {
        vs_print_error("unquiesce: %s: not every guest was released; its guardian thaws them by "
                       "the deadline", t->token);
        return false;
    }
    if (!quiet)
        printf("%s: unquiesced, deadline kept\n", t->token);
    return true;
}

int
vs_cmd_unquiesce(const VsGlobal *g, int argc, char **argv)
{
    CommonArgs a = { .max_freeze = 1, .agent_timeout = UNSET };
    gboolean all = FALSE;
    GOptionEntry entries[] = {
        { "all", 0, 0, G_OPTION_ARG_NONE, &all, "every token not yet unquiesced", NULL },
        { "agent-timeout", 0, 0, G_OPTION_ARG_INT, &a.agent_timeout, "bound on each guest-agent call, "
          "seconds (default 5, 1 to 300)", "SECS" },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &a.state_dir, "token registry (default "
          "/var/lib/virtsnap)", "DIR" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &a.json, "print the result as JSON", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("TOKEN|--all - thaw what quiesce froze");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsUnquiesceResult) r = NULL;
    g_autofree char *state_dir = NULL;
    VsQuiesceOptions o;
    virConnectPtr conn;
    bool ok = true, parsed;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!(parsed = g_option_context_parse(octx, &argc, &argv, &err)) || argc != (all ? 1 : 2) ||
        !common_check("unquiesce", &a, &o, &err) || (!all && !vs_quiesce_token_valid(argv[1]))) {
        g_autofree char *msg = err ? g_strdup_printf("%s%s (see virtsnap unquiesce --help)",
                                                     parsed ? "" : "unquiesce: ", err->message)
                               : argc == (all ? 1 : 2)
                               ? g_strdup("unquiesce: that is not a token (lower-case letters, digits "
                                          "and '-', as `virtsnap quiesce` prints it)")
                               : g_strdup("unquiesce: give one TOKEN, or --all");
        state_dir = a.state_dir;
        return vs_fail_with(2, msg, (a.json || vs_argv_has(argc, argv, "--json")) ? unquiesce_json(NULL, msg) : NULL);
    }
    state_dir = a.state_dir;
    if (!(conn = vs_conn_open(g->uri, &err))) {
        g_autofree char *msg = g_strdup_printf("unquiesce: %s", err->message);
        return vs_fail_with(1, msg, a.json ? unquiesce_json(NULL, msg) : NULL);
    }
    r = vs_unquiesce(conn, all ? NULL : argv[1], &o, &err);
    vs_conn_close(conn);
    if (!r)
        return vs_fail_with(1, err->message, a.json ? unquiesce_json(NULL, err->message) : NULL);
    for (guint i = 0; i < r->tokens->len; i++) {
        const VsUnquiesceToken *t = r->tokens->pdata[i];
        ok = print_token(t, g->quiet || a.json) && ok;
    }
    if (a.json) {
        g_autofree char *text = unquiesce_json(r, NULL);
        fputs(text, stdout);
    } else if (all && r->tokens->len == 0 && !g->quiet) {
        printf("nothing to unquiesce\n");
    }
    return ok ? 0 : 1;
}

int
vs_cmd_quiesce_guardian(const VsGlobal *g, int argc, char **argv)
{
    (void)g;
    return vs_quiesce_guardian_main(argc, argv);
}
