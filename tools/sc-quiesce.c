/* `virtsnap sc-plugin -quiesce` and `-unquiesce`: every VM of KVM_VM_MAPPING
 * frozen at once through vs_quiesce (vs-quiesce.h: in parallel, a guardian
 * thawing them by the deadline whatever happens; a VM only suspended when its
 * agent does not answer), and thawed by vs_unquiesce once the framework has
 * taken its array snapshot. The framework runs the two as separate processes
 * and hands nothing from one to the other, so the token is kept in
 * STATE/sc-plugin/token (0600 in a 0700 directory). If the guardian had to
 * thaw first, -unquiesce fails: the snapshot taken meanwhile is
 * crash-consistent only, and the framework must hear it. */
#include "config.h"
#include "sc-plugin.h"
#include "vs-quiesce.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* The retries KVM_CMD_RETRY_COUNT gives when unset (the guide's default). */
#define SC_RETRY_DEFAULT 3

static char *
token_dir(const ScRun *r)
{
    return g_build_filename(sc_state_dir(r), "sc-plugin", NULL);
}

static char *
token_path(const ScRun *r)
{
    g_autofree char *dir = token_dir(r);

    return g_build_filename(dir, "token", NULL);
}

static void
options(const ScRun *r, VsQuiesceOptions *o)
{
    double max_freeze = vs_config_double(vs_cli_config(), "VIRTSNAP_MAX_FREEZE", 0);

    vs_quiesce_options_init(o);
    o->state_dir = sc_state_dir(r);
    o->uri = r->g->uri;
    o->suspend_fallback = true;
    o->retry_count = vs_config_int(vs_cli_config(), "KVM_CMD_RETRY_COUNT", SC_RETRY_DEFAULT);
    if (max_freeze > 0)
        o->max_freeze_ms = (int)(max_freeze * 1000);
}

/* TOKEN into STATE/sc-plugin/token, atomically (a crash leaves the old file
 * or the new one), 0600 in a 0700 directory. */
static bool
save_token(const ScRun *r, const char *token, GError **error)
{
    g_autofree char *dir = token_dir(r), *path = token_path(r);
    g_autofree char *text = g_strdup_printf("%s\n", token);

    if (g_mkdir_with_parents(dir, 0700) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "-quiesce: cannot make %s: %s", dir, g_strerror(errno));
        return false;
    }
    if (!g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error)) {
        vs_error_prefix(error, "-quiesce: cannot keep the token");
        return false;
    }
    return true;
}

/* The token a -quiesce kept: NULL when there is none (*ERROR unset) or it
 * cannot be read or is not a token (*ERROR set). */
static char *
load_token(const ScRun *r, GError **error)
{
    g_autofree char *path = token_path(r), *text = NULL;
    g_autoptr(GError) err = NULL;

    if (!g_file_get_contents(path, &text, NULL, &err)) {
        if (!g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "cannot read %s: %s", path, err->message);
        return NULL;
    }
    g_strstrip(text);
    if (!vs_quiesce_token_valid(text)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "%s does not hold a quiesce token: remove it, and "
                    "run `virtsnap unquiesce --all` if VMs stay frozen", path);
        return NULL;
    }
    return g_steal_pointer(&text);
}

static void
forget_token(const ScRun *r)
{
    g_autofree char *path = token_path(r);

    unlink(path);
}

static void
say_quiesced(const VsQuiesceResult *res)
{
    g_autofree char *deadline = vs_sc_time(res->deadline_at / 1000);
    int64_t first = G_MAXINT64, last = 0;

    for (guint i = 0; i < res->domains->len; i++) {
        const VsQuiesceDomain *d = res->domains->pdata[i];

        first = MIN(first, d->freeze_started_at);
        last = MAX(last, d->frozen_at);
        if (d->frozen)
            sc_say(VS_SC_INFO, "%s: frozen (%d file systems) in %" G_GINT64_FORMAT " ms", d->name, d->filesystems,
                   d->freeze_ms);
        else if (d->suspended)
            sc_say(VS_SC_WARN, "%s: suspended instead of frozen%s%s", d->name, d->error ? ": " : "",
                   d->error ? d->error : "");
    }
    sc_say(VS_SC_INFO, "%u VMs quiesced together, the last %" G_GINT64_FORMAT " ms after the first freeze call; "
           "token %s; the guardian thaws them at %s if -unquiesce has not come", res->domains->len,
           last - first, res->token, deadline);
}

int
sc_quiesce(const ScRun *r)
{
    const char *const *names = sc_mapped_vms(r, "-quiesce");
    g_autoptr(VsQuiesceResult) res = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *held = NULL;
    VsQuiesceOptions o;
    virConnectPtr conn;

    if (!names)
        return SC_EXIT_FAILED;
    options(r, &o);
    if ((held = load_token(r, &err)) || err) {
        if (held)
            sc_say(VS_SC_ERROR, "-quiesce: the VMs of an earlier -quiesce (token %s) were not unquiesced: run "
                   "-unquiesce first", held);
        else
            sc_say(VS_SC_ERROR, "-quiesce: %s", err->message);
        return SC_EXIT_FAILED;
    }
    {
        g_autoptr(GError) cerr = NULL;

        if (!(conn = vs_conn_open(r->g->uri, &cerr))) {
            sc_say(VS_SC_ERROR, "-quiesce: %s", cerr->message);
            return SC_EXIT_FAILED;
        }
    }
    res = vs_quiesce(conn, names, &o, &err);
    if (res && !save_token(r, res->token, &err)) {
        /* without the token -unquiesce could not find them: thaw now (what
         * fails here the guardian still thaws by the deadline) */
        vs_unquiesce_result_free(vs_unquiesce(conn, res->token, &o, NULL));
        g_clear_pointer(&res, vs_quiesce_result_free);
    }
    vs_conn_close(conn);
    if (!res) {
        sc_say(VS_SC_ERROR, "%s", err->message);
        return SC_EXIT_FAILED;
    }
    say_quiesced(res);
    return SC_EXIT_OK;
}

/* The lines of one token's unquiesce; false when it failed or the snapshot
 * is crash-consistent only. */
static bool
say_unquiesced(const VsUnquiesceToken *t)
{
    g_autofree char *deadline = vs_sc_time(t->deadline_at / 1000);
    bool ok = true;

    for (guint i = 0; i < t->domains->len; i++) {
        const VsUnquiesceDomain *d = t->domains->pdata[i];

        if (d->error) {
            sc_say(VS_SC_ERROR, "%s: %s", d->name, d->error);
            ok = false;
        } else if (d->thawed || d->resumed) {
            sc_say(VS_SC_INFO, "%s: %s", d->name, d->thawed ? "thawed" : "resumed");
        }
    }
    if (t->guardian_thawed) {
        sc_say(VS_SC_ERROR, "-unquiesce: the guardian thawed the VMs at the deadline (%s), before -unquiesce "
               "came: the snapshot taken meanwhile is crash-consistent only (raise VIRTSNAP_MAX_FREEZE, or take "
               "the snapshot sooner)", deadline);
        return false;
    }
    if (t->already)
        sc_say(VS_SC_WARN, "-unquiesce: token %s was unquiesced before: nothing to do", t->token);
    else if (ok)
        sc_say(VS_SC_INFO, "-unquiesce: token %s thawed %" G_GINT64_FORMAT " ms before its deadline", t->token,
               t->deadline_at - t->unquiesced_at);
    return ok;
}

int
sc_unquiesce(const ScRun *r)
{
    g_autoptr(VsUnquiesceResult) res = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *token = load_token(r, &err);
    g_autofree char *path = token_path(r);
    VsQuiesceOptions o;
    virConnectPtr conn;
    bool ok = true, thawed_by_guardian = false;

    if (!token && err) {
        sc_say(VS_SC_ERROR, "-unquiesce: %s", err->message);
        return SC_EXIT_FAILED;
    }
    if (!token) {
        /* the framework calls -unquiesce after a failed -quiesce too */
        sc_say(VS_SC_INFO, "-unquiesce: nothing is quiesced by this plug-in (no %s)", path);
        return SC_EXIT_OK;
    }
    options(r, &o);
    if (!(conn = vs_conn_open(r->g->uri, &err))) {
        sc_say(VS_SC_ERROR, "-unquiesce: %s", err->message);
        return SC_EXIT_FAILED;
    }
    res = vs_unquiesce(conn, token, &o, &err);
    vs_conn_close(conn);
    if (!res) {
        sc_say(VS_SC_ERROR, "-unquiesce: token %s: %s", token, err->message);
        /* a token the registry does not know is not coming back */
        if (g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND))
            forget_token(r);
        return SC_EXIT_FAILED;
    }
    for (guint i = 0; i < res->tokens->len; i++) {
        const VsUnquiesceToken *t = res->tokens->pdata[i];

        ok = say_unquiesced(t) && ok;
        thawed_by_guardian = thawed_by_guardian || t->guardian_thawed;
    }
    /* A VM that failed to thaw keeps the token (its guardian keeps the
     * deadline) so that -unquiesce again retries it; once thawed, by us or
     * by the guardian, it is done. */
    if (ok || thawed_by_guardian)
        forget_token(r);
    return ok ? SC_EXIT_OK : SC_EXIT_FAILED;
}
