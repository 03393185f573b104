/* Retention: which backups a policy keeps (--keep-last/-daily/-weekly/-monthly),
 * decided per domain so that one domain's many backups never push another
 * domain's only backup out, and the removal of the others. A backup is kept
 * when any domain in it keeps it. Removing is done in the order that can never
 * lose data: manifests first (each an atomic unlink: a backup is whole or
 * gone), then garbage collection, which itself runs under the exclusive
 * repository lock and keeps every chunk any remaining manifest names. Killed at
 * any moment, a prune leaves fewer backups and possibly unreferenced chunks for
 * the next gc, never a backup missing a chunk. Periods are the local calendar's
 * days, ISO weeks and months, as an administrator reading `virtsnap list`
 * counts them. */
#include "config.h"
#include "repo-internal.h"

#include <string.h>

void
vs_prune_decision_free(VsPruneDecision *d)
{
    if (!d)
        return;
    g_free(d->id);
    g_strfreev(d->domains);
    g_free(d->reasons);
    g_free(d);
}

static void
add_reason(VsPruneDecision *d, const char *domain, const char *rule, const char *period)
{
    g_autofree char *old = d->reasons;

    d->keep = true;
    d->reasons = g_strdup_printf("%s%s%s: %s%s%s", old ? old : "", old ? "; " : "", domain, rule,
                                 period ? " " : "", period ? period : "");
}

/* Applies one period rule (daily, weekly, monthly) to BACKUPS, newest first:
 * the newest backup of each of the N most recent periods that have one. */
static void
keep_periods(GPtrArray *backups, const char *domain, unsigned n, const char *rule, const char *fmt)
{
    g_autofree char *last = NULL;
    unsigned kept = 0;

    for (guint i = 0; i < backups->len && kept < n; i++) {
        VsPruneDecision *d = backups->pdata[i];
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_local(d->completed / G_USEC_PER_SEC);
        g_autofree char *period = g_date_time_format(t, fmt);

        if (last && strcmp(last, period) == 0)
            continue;
        add_reason(d, domain, rule, period);
        g_free(last);
        last = g_steal_pointer(&period);
        kept++;
    }
}

static gint
newest_first(gconstpointer a, gconstpointer b)
{
    const VsPruneDecision *x = *(VsPruneDecision *const *)a, *y = *(VsPruneDecision *const *)b;

    if (x->completed != y->completed)
        return x->completed > y->completed ? -1 : 1;
    return -strcmp(x->id, y->id);
}

bool
vs_prune_select(GPtrArray *decisions, const VsPrunePolicy *policy, GError **error)
{
    g_autoptr(GHashTable) domains = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTableIter it;
    gpointer name;

    if (!policy->keep_last && !policy->keep_daily && !policy->keep_weekly && !policy->keep_monthly) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "prune: no --keep-last, --keep-daily, --keep-weekly or --keep-monthly given: "
                    "nothing would be kept, so nothing is removed");
        return false;
    }
    g_ptr_array_sort(decisions, newest_first);
    for (guint i = 0; i < decisions->len; i++) {
        VsPruneDecision *d = decisions->pdata[i];
        d->keep = false;
        g_clear_pointer(&d->reasons, g_free);
        for (char **n = d->domains; n && *n; n++)
            g_hash_table_add(domains, *n);
    }
    g_hash_table_iter_init(&it, domains);
    while (g_hash_table_iter_next(&it, &name, NULL)) {
        g_autoptr(GPtrArray) mine = g_ptr_array_new();

        for (guint i = 0; i < decisions->len; i++) {
            VsPruneDecision *d = decisions->pdata[i];
            if (d->domains && g_strv_contains((const char *const *)d->domains, name))
                g_ptr_array_add(mine, d);
        }
        for (guint i = 0; i < mine->len && i < policy->keep_last; i++)
            add_reason(mine->pdata[i], name, "last", NULL);
        keep_periods(mine, name, policy->keep_daily, "daily", "%Y-%m-%d");
        keep_periods(mine, name, policy->keep_weekly, "weekly", "%G-W%V");
        keep_periods(mine, name, policy->keep_monthly, "monthly", "%Y-%m");
    }
    return true;
}

GPtrArray *
vs_repo_prune_plan(VsRepo *repo, const VsPrunePolicy *policy, GError **error)
{
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func((GDestroyNotify)vs_prune_decision_free);
    /* A backup's time and domain names are all a decision needs: its summary,
     * not its whole manifest (vs_repo_list_summaries). */
    g_autoptr(GPtrArray) backups = vs_repo_list_summaries(repo, error);

    if (!backups) {
        vs_error_prefix(error, "prune");
        return NULL;
    }
    for (guint i = 0; i < backups->len; i++) {
        const VsBackupSummary *m = backups->pdata[i];
        VsPruneDecision *d;

        /* One unreadable manifest and we cannot know which backups its domains
         * keep: decide nothing rather than guess. */
        if (m->problem) {
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "prune: nothing removed: %s", m->problem);
            return NULL;
        }
        d = g_new0(VsPruneDecision, 1);
        d->id = g_strdup(m->id);
        d->completed = m->completed;
        d->domains = g_new0(char *, m->domains->len + 1);
        for (guint k = 0; k < m->domains->len; k++)
            d->domains[k] = g_strdup(((VsSummaryDomain *)m->domains->pdata[k])->name);
        g_ptr_array_add(out, d);
    }
    if (!vs_prune_select(out, policy, error))
        return NULL;
    return g_steal_pointer(&out);
}
