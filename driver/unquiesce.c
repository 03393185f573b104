/* `virtsnap unquiesce` and recover's part in quiesce. Unquiesce decides,
 * under the registry's lock, whether it came before the deadline (the token
 * becomes "unquiescing") or the guardian already thawed (then whatever
 * snapshot was taken meanwhile is crash-consistent only, and it says so);
 * it thaws every frozen guest and resumes every paused one, each on its own
 * thread, marks the token "unquiesced" (kept a while, so that a second
 * unquiesce says it was done) and waits for the guardian to let go of the
 * guests' locks. A guest that would not thaw leaves the token held: the
 * guardian keeps the deadline. Recover settles a token whose guardian is gone
 * while it held: its guests thawed and resumed, the token removed. */
#include "config.h"
#include "quiesce-internal.h"
#include "control.h"

#include <string.h>
#include <unistd.h>

static void
unquiesce_domain_free(VsUnquiesceDomain *d)
{
    if (!d)
        return;
    g_free(d->name);
    g_free(d->uuid);
    g_free(d->error);
    g_free(d);
}

static void
unquiesce_token_free(VsUnquiesceToken *t)
{
    if (!t)
        return;
    g_free(t->token);
    g_free(t->error);
    g_ptr_array_unref(t->domains);
    g_free(t);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsUnquiesceToken, unquiesce_token_free)

void
vs_unquiesce_result_free(VsUnquiesceResult *r)
{
    if (!r)
        return;
    g_ptr_array_unref(r->tokens);
    g_free(r);
}

typedef struct {
    const VsQuiesceDomain *q;
    VsUnquiesceDomain *u;
    virConnectPtr conn;
    int agent_timeout, retries;
} Undo;

/* One guest back as it was: resumed if the quiesce paused it, else thawed
 * until it says so. A guest that no longer runs is fine. */
static void
step_release(gpointer item, gpointer data)
{
    Undo *x = item;
    const VsControlOps *c = vs_control();
    g_autoptr(GError) err = NULL;
    GError *cause = NULL;
    virDomainPtr dom = c->domain_lookup_uuid(x->conn, x->q->uuid, &cause);
    bool resumed = false;

    (void)data;
    if (!dom) {
        if (!g_error_matches(cause, VS_ERROR, VS_ERROR_NOT_FOUND))
            vs_control_error(&err, cause, VS_ERROR_LIBVIRT, "unquiesce: domain '%s'", x->q->name);
        else
            g_error_free(cause);
    } else if (c->domain_is_active(dom) == 0) {
        /* Shut down meanwhile: neither frozen nor paused any more. */
    } else if (x->q->suspended) {
        if (vs_quiesce_resume(dom, x->retries, &resumed, &err))
            x->u->resumed = resumed;
    } else if (vs_quiesce_thaw(dom, x->agent_timeout, x->retries, &err)) {
        x->u->thawed = true;
    } else {
        g_prefix_error(&err, "unquiesce: domain '%s': thaw: ", x->q->name);
    }
    if (err)
        x->u->error = g_strdup(err->message);
    if (dom)
        c->domain_free(dom);
}

/* Every guest of T released at once, into OUT's domains; true when all are. */
static bool
release_all(virConnectPtr conn, const VsQuiesceToken *t, const VsQuiesceOptions *o,
            VsUnquiesceToken *out)
{
    g_autoptr(GPtrArray) undo = g_ptr_array_new_with_free_func(g_free);
    bool all = true;

    for (guint i = 0; i < t->domains->len; i++) {
        Undo *x = g_new0(Undo, 1);
        VsUnquiesceDomain *u = g_new0(VsUnquiesceDomain, 1);

        x->q = t->domains->pdata[i];
        u->name = g_strdup(x->q->name);
        u->uuid = g_strdup(x->q->uuid);
        x->u = u;
        x->conn = conn;
        x->agent_timeout = o->agent_timeout;
        x->retries = o->retry_count;
        g_ptr_array_add(out->domains, u);
        g_ptr_array_add(undo, x);
    }
    vs_each_parallel(undo, step_release, NULL);
    for (guint i = 0; i < out->domains->len; i++)
        all = all && !((VsUnquiesceDomain *)out->domains->pdata[i])->error;
    return all;
}

/* Under the lock, T as read now and what it says to do; the state written
 * for the unquiesce that begins. */
static VsQuiesceToken *
begin_unquiesce(const char *state_dir, const char *token, VsUnquiesceToken *out, GError **error)
{
    g_autoptr(VsQuiesceToken) t = NULL;
    int64_t now = g_get_real_time() / 1000;
    int lock = vs_quiesce_lock(state_dir, error);

    if (lock < 0)
        return NULL;
    if ((t = vs_quiesce_token_read(state_dir, token, error))) {
        out->deadline_at = t->deadline_at;
        if (t->state == VS_QSTATE_QUIESCED) {
            t->state = VS_QSTATE_UNQUIESCING;
            t->unquiesced_at = now;
            t->deadline_kept = now <= t->deadline_at;
            if (!vs_quiesce_token_write(state_dir, t, error))
                g_clear_pointer(&t, vs_quiesce_token_free);
        } else if (t->state == VS_QSTATE_FREEZING) {
            g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                        "unquiesce: token %s is still being frozen (its quiesce runs, or died: "
                        "then `virtsnap recover` settles it)", token);
            g_clear_pointer(&t, vs_quiesce_token_free);
        }
    }
    close(lock);
    return g_steal_pointer(&t);
}

/* The token's end, under the lock: "unquiesced" when every guest was
 * released; otherwise it stays held for the guardian's deadline. */
static void
end_unquiesce(const char *state_dir, const char *token, bool all, bool guardian_thawed,
              VsUnquiesceToken *out)
{
    g_autoptr(VsQuiesceToken) t = NULL;
    int lock = vs_quiesce_lock(state_dir, NULL);

    if (lock < 0)
        return;
    if ((t = vs_quiesce_token_read(state_dir, token, NULL))) {
        out->unquiesced_at = t->unquiesced_at;
        out->deadline_kept = t->deadline_kept && !guardian_thawed;
        t->state = all ? VS_QSTATE_UNQUIESCED : VS_QSTATE_QUIESCED;
        if (guardian_thawed) {
            t->guardian_thawed = true;
            t->state = VS_QSTATE_UNQUIESCED;
        }
        if (t->unquiesced_at < 0)
            t->unquiesced_at = out->unquiesced_at = g_get_real_time() / 1000;
        (void)vs_quiesce_token_write(state_dir, t, NULL);
    }
    close(lock);
}

/* The guardian lets go of the guests' locks once it sees the token settled:
 * waited for (bounded), so that a backup right after finds them free. */
static void
wait_guardian(const char *state_dir, const char *token)
{
    gint64 until = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    while (vs_quiesce_live(state_dir, token) && g_get_monotonic_time() < until)
        g_usleep(50 * 1000);
}

static VsUnquiesceToken *
unquiesce_one(virConnectPtr conn, const char *token, const VsQuiesceOptions *o, GError **error)
{
    VsUnquiesceToken *out = g_new0(VsUnquiesceToken, 1);
    g_autoptr(VsQuiesceToken) t = NULL;
    gint64 until = g_get_monotonic_time() + ((gint64)o->agent_timeout * 3 + 5) * G_USEC_PER_SEC;
    bool all;

    out->token = g_strdup(token);
    out->domains = g_ptr_array_new_with_free_func((GDestroyNotify)unquiesce_domain_free);
    out->deadline_at = out->unquiesced_at = -1;
    /* The guardian thawing right now: its verdict is waited for. */
    while ((t = begin_unquiesce(o->state_dir, token, out, error)) &&
           t->state == VS_QSTATE_GUARDIAN_THAWING && vs_quiesce_live(o->state_dir, token) &&
           g_get_monotonic_time() < until) {
        g_clear_pointer(&t, vs_quiesce_token_free);
        g_usleep(100 * 1000);
    }
    if (!t) {
        unquiesce_token_free(out);
        return NULL;
    }
    if (t->state == VS_QSTATE_UNQUIESCED) {
        out->already = true;
        out->deadline_kept = t->deadline_kept && !t->guardian_thawed;
        out->guardian_thawed = t->guardian_thawed;
        out->unquiesced_at = t->unquiesced_at;
        return out;
    }
    out->guardian_thawed = t->state == VS_QSTATE_GUARDIAN_THAWED ||
                           t->state == VS_QSTATE_GUARDIAN_THAWING;
    /* After the guardian too: a guest it could not settle gets another try. */
    all = release_all(conn, t, o, out);
    end_unquiesce(o->state_dir, token, all, out->guardian_thawed, out);
    if (all || out->guardian_thawed)
        wait_guardian(o->state_dir, token);
    return out;
}

VsUnquiesceResult *
vs_unquiesce(virConnectPtr conn, const char *token, const VsQuiesceOptions *opts, GError **error)
{
    g_autoptr(VsUnquiesceResult) r = g_new0(VsUnquiesceResult, 1);
    VsQuiesceOptions o = *opts;
    g_auto(GStrv) all = NULL;
    g_autoptr(GError) err = NULL;

    o.state_dir = vs_state_dir(opts->state_dir);
    r->tokens = g_ptr_array_new_with_free_func((GDestroyNotify)unquiesce_token_free);
    if (token) {
        VsUnquiesceToken *u;

        if (!vs_quiesce_token_valid(token)) {
            g_autofree char *shown = vs_printable(token, 80);
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "unquiesce: '%s' is not a token (lower-case letters, digits and '-', as "
                        "`virtsnap quiesce` prints it)", shown);
            return NULL;
        }
        if (!(u = unquiesce_one(conn, token, &o, &err))) {
            if (g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND))
                g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                            "unquiesce: no token %s in %s/quiesce (a token unquiesced is kept "
                            "there a week; is this the --state-dir quiesce had?)", token, o.state_dir);
            else
                g_propagate_error(error, g_steal_pointer(&err));
            return NULL;
        }
        g_ptr_array_add(r->tokens, u);
        return g_steal_pointer(&r);
    }
    all = vs_quiesce_token_list(o.state_dir);
    for (size_t i = 0; all[i]; i++) {
        g_autoptr(VsQuiesceToken) t = vs_quiesce_token_read(o.state_dir, all[i], NULL);
        VsUnquiesceToken *u;

        /* --all: what still holds, or what the guardian thawed and nobody reported. */
        if (!t || t->state == VS_QSTATE_UNQUIESCED || t->state == VS_QSTATE_FREEZING)
            continue;
        if (!(u = unquiesce_one(conn, all[i], &o, &err))) {
            u = g_new0(VsUnquiesceToken, 1);
            u->token = g_strdup(all[i]);
            u->domains = g_ptr_array_new_with_free_func((GDestroyNotify)unquiesce_domain_free);
            u->deadline_at = u->unquiesced_at = -1;
            u->error = g_strdup(err->message);
            g_clear_error(&err);
        }
        g_ptr_array_add(r->tokens, u);
    }
    return g_steal_pointer(&r);
}

bool
vs_quiesce_recover(virConnectPtr conn, const char *state_dir, GPtrArray *actions, GError **error)
{
    g_auto(GStrv) tokens = vs_quiesce_token_list(state_dir);
    VsQuiesceOptions o;
    bool ok = true;

    vs_quiesce_options_init(&o);
    o.state_dir = vs_state_dir(state_dir);
    for (size_t i = 0; tokens[i]; i++) {
        g_autoptr(VsQuiesceToken) t = vs_quiesce_token_read(state_dir, tokens[i], NULL);
        g_autoptr(VsUnquiesceToken) out = NULL;

        if (!t || !vs_quiesce_state_holds(t->state) || vs_quiesce_live(state_dir, t->token))
            continue;
        out = g_new0(VsUnquiesceToken, 1);
        out->domains = g_ptr_array_new_with_free_func((GDestroyNotify)unquiesce_domain_free);
        o.agent_timeout = t->agent_timeout;
        if (!release_all(conn, t, &o, out)) {
            for (guint k = 0; k < out->domains->len; k++) {
                VsUnquiesceDomain *u = out->domains->pdata[k];
                if (u->error && ok && error && !*error)
                    g_set_error(error, VS_ERROR, VS_ERROR_AGENT, "recover: quiesce token %s: %s "
                                "(run `virtsnap recover` again)", t->token, u->error);
                else if (u->error)
                    recover_act(actions, "recover: quiesce token %s: %s", t->token, u->error);
            }
            ok = false;
            continue;
        }
        for (guint k = 0; k < out->domains->len; k++) {
            VsUnquiesceDomain *u = out->domains->pdata[k];
            if (u->thawed || u->resumed)
                recover_act(actions, "%s domain '%s' (quiesce token %s, whose guardian is gone)",
                            u->resumed ? "resumed" : "thawed", u->name, t->token);
        }
        vs_quiesce_token_remove(state_dir, t->token);
        recover_act(actions, "settled quiesce token %s", t->token);
    }
    return ok;
}
