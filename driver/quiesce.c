/* `virtsnap quiesce`: the freeze of a group of guests for a snapshot someone
 * else takes. The domains are found and checked first (running, not held by
 * another token); then the journal records every freeze before it is tried,
 * the token is claimed in the registry, and a guardian is started that takes
 * each guest's per-domain lock and inherits the journal (and with it, for
 * recover, the run's liveness). Armed, every guest is frozen on a thread of
 * its own at once (the group's window is its slowest guest's); a guest whose
 * agent does not answer is paused instead with suspend_fallback, or else the
 * whole quiesce is undone: the others thawed, the token and journal gone.
 * Held, the guardian goes on alone, past this process, until unquiesce or the
 * deadline. */
#include "config.h"
#include "quiesce-internal.h"
#include "control.h"
#include "vs-temp.h"

#include <string.h>
#include <unistd.h>

void
vs_quiesce_options_init(VsQuiesceOptions *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->max_freeze_ms = VS_QUIESCE_DEFAULT_MAX_FREEZE_MS;
    opts->agent_timeout = 5;
}

void
vs_quiesce_result_free(VsQuiesceResult *r)
{
    if (!r)
        return;
    g_free(r->token);
    if (r->domains)
        g_ptr_array_unref(r->domains);
    g_free(r);
}

static int64_t
wall_ms(void)
{
    return g_get_real_time() / 1000;
}

/* One guest of the group while it is quiesced. */
typedef struct {
    VsQuiesceDomain *d;     /* the token's */
    virDomainPtr dom;
    GError *error;          /* the freeze's (or the thaw's) */
    const VsQuiesceOptions *o;
} Member;

static void
member_free(Member *m)
{
    if (m->dom)
        vs_control()->domain_free(m->dom);
    g_clear_error(&m->error);
    g_free(m);
}

/* The running domains NAMES into MEMBERS (and T's domains); false with *ERROR
 * for a name given twice, not found or not running. */
static bool
find_domains(virConnectPtr conn, const char *const *names, VsQuiesceToken *t, GPtrArray *members,
             const VsQuiesceOptions *o, GError **error)
{
    const VsControlOps *c = vs_control();
    GError *cause = NULL;
    g_autofree virDomainPtr *all = c->domain_list(conn, &cause);
    bool ok = true;
    size_t n = 0;

    if (!all) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "quiesce: listing the domains");
        return false;
    }
    while (all[n])
        n++;
    for (size_t i = 0; ok && names[i]; i++) {
        virDomainPtr found = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];

        for (size_t k = 0; k < i; k++)
            if (strcmp(names[k], names[i]) == 0) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                            "quiesce: domain '%s' is named twice", names[i]);
                ok = false;
            }
        for (size_t k = 0; ok && k < n && !found; k++)
            if (all[k] && strcmp(c->domain_name(all[k]), names[i]) == 0)
                found = all[k];
        if (ok && !found) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                        "quiesce: no domain '%s' (see `virtsnap discover`)", names[i]);
            ok = false;
        } else if (ok && c->domain_is_active(found) != 1) {
            g_set_error(error, VS_ERROR, VS_ERROR_STOPPED,
                        "quiesce: domain '%s' is not running: there is nothing to freeze", names[i]);
            ok = false;
        }
        if (ok) {
            Member *m = g_new0(Member, 1);
            VsQuiesceDomain *d = g_new0(VsQuiesceDomain, 1);

            c->domain_uuid(found, uuid);
            d->name = g_strdup(names[i]);
            d->uuid = g_strdup(uuid);
            d->filesystems = -1;
            d->freeze_started_at = d->frozen_at = d->freeze_ms = -1;
            g_ptr_array_add(t->domains, d);
            m->d = d;
            m->o = o;
            /* Handed over to the member: not freed with the list. */
            for (size_t k = 0; k < n; k++)
                if (all[k] == found)
                    all[k] = NULL;
            m->dom = found;
            g_ptr_array_add(members, m);
        }
    }
    for (size_t k = 0; k < n; k++)
        if (all[k])
            c->domain_free(all[k]);
    return ok;
}

/* Refused when a token that still holds guests has one of T's: named, with
 * what to do. */
static bool
check_conflicts(const char *state_dir, const VsQuiesceToken *t, GError **error)
{
    g_auto(GStrv) tokens = vs_quiesce_token_list(state_dir);

    for (size_t i = 0; tokens[i]; i++) {
        g_autoptr(VsQuiesceToken) other = vs_quiesce_token_read(state_dir, tokens[i], NULL);

        if (!other || !vs_quiesce_state_holds(other->state))
            continue;
        for (guint k = 0; k < other->domains->len; k++) {
            const VsQuiesceDomain *od = other->domains->pdata[k];

            for (guint m = 0; m < t->domains->len; m++) {
                const VsQuiesceDomain *d = t->domains->pdata[m];

                if (strcmp(od->uuid, d->uuid) != 0)
                    continue;
                if (vs_quiesce_live(state_dir, other->token))
                    g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                                "quiesce: domain '%s' is already quiesced by token %s; run "
                                "`virtsnap unquiesce %s` first", d->name, other->token, other->token);
                else
                    g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                                "quiesce: domain '%s' is held by token %s, whose guardian is gone; "
                                "run `virtsnap recover` first", d->name, other->token);
                return false;
            }
        }
    }
    return true;
}

/* T written as "freezing", unless a live token holds one of its guests. */
static bool
claim_token(const char *state_dir, const VsQuiesceToken *t, GError **error)
{
    int lock = vs_quiesce_lock(state_dir, error);
    bool ok;

    if (lock < 0)
        return false;
    ok = check_conflicts(state_dir, t, error) && vs_quiesce_token_write(state_dir, t, error);
    close(lock);
    return ok;
}

/* The journal of the quiesce: its start and every freeze, before any. */
static VsJournal *
journal_freezes(const char *state_dir, const VsQuiesceToken *t, GError **error)
{
    g_autofree char *id = vs_quiesce_journal_id(t->token);
    VsJournal *j = vs_journal_create(state_dir, id, error);
    bool ok = j && vs_journal_begin_temps(j, "quiesce", getpid(), vs_temp_host(), error);

    for (guint i = 0; ok && i < t->domains->len; i++) {
        const VsQuiesceDomain *d = t->domains->pdata[i];
        ok = vs_journal_freeze(j, d->name, d->uuid, error);
    }
    if (!ok && j) {
        vs_journal_finish(j);
        return NULL;
    }
    return j;
}

static VsGuardian *
start_guardian(const VsQuiesceOptions *o, const VsQuiesceToken *t, VsJournal *j, GError **error)
{
    g_autoptr(GPtrArray) uuids = g_ptr_array_new();
    const char *args[] = { "quiesce-guardian", vs_default_uri(o->uri), vs_state_dir(o->state_dir),
                           t->token, NULL };
    VsGuardian *g;

    for (guint i = 0; i < t->domains->len; i++)
        g_ptr_array_add(uuids, ((VsQuiesceDomain *)t->domains->pdata[i])->uuid);
    g_ptr_array_add(uuids, NULL);
    g = vs_guardian_spawn_args(o->guardian_exe, args, vs_journal_fd(j), true, o->uri,
                               (const char *const *)uuids->pdata, o->agent_timeout, error);
    if (g && !vs_guardian_arm(g, error)) {
        vs_guardian_stop(g, true);
        g_prefix_error(error, "quiesce: ");
        return NULL;
    }
    return g;
}

static void
step_freeze(gpointer item, gpointer data)
{
    Member *m = item;
    int64_t start = vs_now_ms();
    int n = -1;

    (void)data;
    m->d->freeze_started_at = wall_ms();
    for (int attempt = 0; n < 0; attempt++) {
        g_clear_error(&m->error);
        n = vs_agent_freeze_count(m->dom, m->o->agent_timeout, &m->error);
        if (n >= 0 || attempt >= m->o->retry_count)
            break;
        /* A freeze that timed out may have frozen some file systems. */
        (void)vs_agent_thaw(m->dom, m->o->agent_timeout, NULL);
        g_usleep((gulong)(200 * 1000) << MIN(attempt, 5));
    }
    m->d->freeze_ms = vs_now_ms() - start;
    if (n >= 0) {
        m->d->frozen = true;
        m->d->filesystems = n;
        m->d->frozen_at = wall_ms();
        vs_fault_point("after-freeze");
    }
}

/* T written in state S while the token is still being frozen; refused once
 * the guardian took over (the deadline passed before the group was held). */
static bool
write_if_freezing(const char *state_dir, VsQuiesceToken *t, VsQuiesceState s, GError **error)
{
    g_autoptr(VsQuiesceToken) now = NULL;
    int lock = vs_quiesce_lock(state_dir, error);
    bool ok = false;

    if (lock < 0)
        return false;
    now = vs_quiesce_token_read(state_dir, t->token, NULL);
    if (!now || now->state != VS_QSTATE_FREEZING) {
        g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                    "quiesce: the deadline (--max-freeze %d ms) passed before every guest was "
                    "frozen, and the guardian thawed them: give a longer --max-freeze or a shorter "
                    "--agent-timeout", t->max_freeze_ms);
    } else {
        t->state = s;
        ok = vs_quiesce_token_write(state_dir, t, error);
    }
    close(lock);
    return ok;
}

/* The guests whose agent did not freeze them, paused instead: the token says
 * so before each pause (the guardian and recover resume what it names). */
static bool
suspend_failed(const char *state_dir, VsQuiesceToken *t, GPtrArray *members, GError **error)
{
    const VsControlOps *c = vs_control();

    for (guint i = 0; i < members->len; i++) {
        Member *m = members->pdata[i];
        if (!m->d->frozen) {
            m->d->suspended = true;
            g_free(m->d->error);
            m->d->error = g_strdup_printf("its agent did not freeze it (%s): paused instead",
                                          m->error->message);
        }
    }
    if (!write_if_freezing(state_dir, t, VS_QSTATE_FREEZING, error))
        return false;
    for (guint i = 0; i < members->len; i++) {
        Member *m = members->pdata[i];
        GError *cause = NULL;
        bool ok = false;

        if (m->d->frozen)
            continue;
        for (int attempt = 0; !ok; attempt++) {
            ok = c->domain_suspend(m->dom, attempt >= m->o->retry_count ? &cause : NULL);
            if (!ok && attempt >= m->o->retry_count)
                break;
        }
        if (!ok) {
            m->d->suspended = false;
            g_clear_error(&m->error);
            vs_control_error(&m->error, cause, VS_ERROR_LIBVIRT, "suspend: domain '%s'", m->d->name);
            continue;
        }
        m->d->frozen_at = wall_ms();
    }
    return true;
}

/* Undoing a failed quiesce: every guest thawed (or resumed) on its own
 * thread; true when all are. */
static void
step_undo(gpointer item, gpointer data)
{
    Member *m = item;
    g_autoptr(GError) err = NULL;
    bool resumed;

    (void)data;
    if (m->d->suspended ? !vs_quiesce_resume(m->dom, m->o->retry_count, &resumed, &err)
                        : !vs_quiesce_thaw(m->dom, m->o->agent_timeout, m->o->retry_count, &err)) {
        /* A guest whose freeze failed is not held: its thaw failing too is no news. */
        if (m->d->frozen || m->d->suspended) {
            g_free(m->d->error);
            m->d->error = g_strdup(err->message);
        }
        return;
    }
    m->d->frozen = m->d->suspended = false;
}

/* The quiesce failed (FAILED, the first guest that could not be held, or
 * CAUSE): everything undone, nothing left frozen and no token left; else
 * the guardian does what could not be, and says so in its log. */
static void
undo(const char *state_dir, VsQuiesceToken *t, GPtrArray *members, VsGuardian *g, VsJournal *j)
{
    bool all = true;

    vs_each_parallel(members, step_undo, NULL);
    for (guint i = 0; i < members->len; i++) {
        Member *m = members->pdata[i];
        if (m->d->frozen || m->d->suspended)
            all = false;
        else
            (void)vs_journal_thawed(j, m->d->name, m->d->uuid, NULL);
    }
    /* What is still held, for the guardian (a guest never frozen is not its
     * business); unless it took over already. */
    if (!all)
        (void)write_if_freezing(state_dir, t, VS_QSTATE_FREEZING, NULL);
    if (vs_guardian_stop(g, all) && all) {
        vs_journal_finish(j);
        vs_quiesce_token_remove(state_dir, t->token);
    } else {
        /* The guardian thaws and resumes, then removes the token and the journal. */
        vs_journal_close(j);
    }
}

/* The freeze of the group, the fallback, and the outcome: true when every
 * guest is held and the token says so. */
static bool
hold_group(const VsQuiesceOptions *o, VsQuiesceToken *t, GPtrArray *members, GError **error)
{
    Member *failed = NULL;

    vs_each_parallel(members, step_freeze, NULL);
    for (guint i = 0; i < members->len && !failed; i++)
        if (!((Member *)members->pdata[i])->d->frozen)
            failed = members->pdata[i];
    if (failed && o->suspend_fallback) {
        if (!suspend_failed(o->state_dir, t, members, error))
            return false;
        failed = NULL;
        for (guint i = 0; i < members->len && !failed; i++) {
            Member *m = members->pdata[i];
            if (!m->d->frozen && !m->d->suspended)
                failed = m;
        }
    }
    if (failed) {
        g_set_error(error, VS_ERROR, VS_ERROR_AGENT, "quiesce: %s; %s", failed->error->message,
                    o->suspend_fallback ? "nothing was left frozen or paused"
                    : "nothing was left frozen (--suspend-fallback pauses a guest whose agent "
                      "does not answer instead)");
        return false;
    }
    return write_if_freezing(o->state_dir, t, VS_QSTATE_QUIESCED, error);
}

static VsQuiesceResult *
result_of(const VsQuiesceToken *t)
{
    VsQuiesceResult *r = g_new0(VsQuiesceResult, 1);

    r->token = g_strdup(t->token);
    r->deadline_at = t->deadline_at;
    r->max_freeze_ms = t->max_freeze_ms;
    r->domains = g_ptr_array_ref(t->domains);
    return r;
}

VsQuiesceResult *
vs_quiesce(virConnectPtr conn, const char *const *names, const VsQuiesceOptions *opts,
           GError **error)
{
    g_autoptr(GPtrArray) members = g_ptr_array_new_with_free_func((GDestroyNotify)member_free);
    g_autoptr(VsQuiesceToken) t = g_new0(VsQuiesceToken, 1);
    VsQuiesceOptions o = *opts;
    VsGuardian *g;
    VsJournal *j;

    if (!names || !names[0]) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "quiesce: name at least one domain");
        return NULL;
    }
    o.state_dir = vs_state_dir(opts->state_dir);
    t->token = vs_quiesce_token_new();
    t->state = VS_QSTATE_FREEZING;
    t->max_freeze_ms = o.max_freeze_ms;
    t->agent_timeout = o.agent_timeout;
    t->created_at = wall_ms();
    t->unquiesced_at = t->guardian_thawed_at = t->deadline_at = -1;
    t->domains = g_ptr_array_new_with_free_func((GDestroyNotify)vs_quiesce_domain_free);
    if (!find_domains(conn, names, t, members, &o, error))
        return NULL;
    /* The journal first: from the claim on, the token is live while it is locked. */
    if (!(j = journal_freezes(o.state_dir, t, error)))
        return NULL;
    if (!claim_token(o.state_dir, t, error)) {
        vs_journal_finish(j);
        return NULL;
    }
    if (!(g = start_guardian(&o, t, j, error))) {
        vs_journal_finish(j);
        vs_quiesce_token_remove(o.state_dir, t->token);
        return NULL;
    }
    t->deadline_at = wall_ms() + o.max_freeze_ms;
    if (!hold_group(&o, t, members, error)) {
        undo(o.state_dir, t, members, g, j);
        return NULL;
    }
    vs_guardian_release(g);
    vs_journal_close(j);
    return result_of(t);
}
