/* The scripted control plane (fake-control.h): a queue of expected calls with
 * their answers, checked in order. The first call that differs from the head
 * of the queue ends the test at once with both named (g_error); a call left
 * in the queue fails it in vs_fake_finish. */
#include "config.h"
#include "fake-control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { ITEM_REPLY, ITEM_ERROR, ITEM_EVENT } ItemKind;

typedef struct {
    ItemKind kind;
    char *call;          /* ITEM_REPLY, ITEM_ERROR */
    char *reply;
    VsErrorCode code;
    char *domain, *disk; /* ITEM_EVENT */
    int status;
    int group;           /* > 0: taken in any order with its neighbours of the group */
    VsFakeReplyFunc func; /* makes the reply when the call comes (vs_fake_add_item_func) */
    gpointer func_data;
} Item;

typedef struct {
    char *name;
    char *uuid;
} FakeDomain;

typedef struct {
    int serial;
} FakeConn;

struct _VsFake {
    GMutex lock;
    GQueue items;        /* of Item* */
    GPtrArray *domains;  /* of FakeDomain* */
    GPtrArray *conns;    /* of FakeConn* */
    char *last_xml;
    int group;           /* the group items are added to now; 0: none */
    int groups;
};

static VsFake *fake;
/* Outlives each fake: blockjob.c watches a connection once for the life of
 * the process. */
static VsBlockJobEventFunc block_job_func;

static void
item_free(Item *it)
{
    g_free(it->call);
    g_free(it->reply);
    g_free(it->domain);
    g_free(it->disk);
    g_free(it);
}

/* CALL as queued matches MADE: the same, or its prefix when it ends in '*'. */
static bool
call_matches(const char *call, const char *made)
{
    size_t n = strlen(call);

    if (n && call[n - 1] == '*')
        return strncmp(call, made, n - 1) == 0;
    return strcmp(call, made) == 0;
}

static FakeDomain *
domain_by_name(const char *name)
{
    for (guint i = 0; i < fake->domains->len; i++) {
        FakeDomain *d = fake->domains->pdata[i];
        if (!strcmp(d->name, name))
            return d;
    }
    return NULL;
}

/* Delivers the events now at the head of the queue (the lock is not held:
 * the watcher takes its own). */
static void
deliver_events(void)
{
    for (;;) {
        Item *it;
        FakeDomain *d;

        g_mutex_lock(&fake->lock);
        it = g_queue_peek_head(&fake->items);
        if (!it || it->kind != ITEM_EVENT) {
            g_mutex_unlock(&fake->lock);
            return;
        }
        g_queue_pop_head(&fake->items);
        d = domain_by_name(it->domain);
        g_mutex_unlock(&fake->lock);
        g_assert_nonnull(d);
        g_assert_nonnull(block_job_func);
        /* type 0 (unknown): the commit and copy take an event of any type */
        block_job_func((virConnectPtr)fake->conns->pdata[0], (virDomainPtr)d, it->disk, 0, it->status);
        item_free(it);
    }
}

/* The answer to CALL: its reply (owned by the caller), or NULL with *error
 * (the queued error, or "unexpected call"). */
static char *
take(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static char *
take(GError **error, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *call = NULL;
    Item *it;
    char *reply = NULL;

    va_start(ap, fmt);
    call = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_test_message("fake: %s", call);
    g_mutex_lock(&fake->lock);
    it = g_queue_peek_head(&fake->items);
    if (it && it->group) {
        /* An unordered group: any of its items, as long as the group lasts. */
        for (GList *l = fake->items.head; l && ((Item *)l->data)->group == it->group; l = l->next) {
            Item *c = l->data;
            if (call_matches(c->call, call)) {
                g_queue_delete_link(&fake->items, l);
                g_queue_push_head(&fake->items, c);
                it = c;
                break;
            }
        }
    }
    if (!it || it->kind == ITEM_EVENT || !call_matches(it->call, call)) {
        /* At once: code that retries (the guardian for a day) would otherwise
         * go on against a refusing fake until the test's timeout. */
        g_error("fake: unexpected call '%s' (expected %s%s%s)", call, it ? "'" : "nothing more",
                it ? (it->kind == ITEM_EVENT ? "an event" : it->call) : "", it ? "'" : "");
    }
    g_queue_pop_head(&fake->items);
    g_mutex_unlock(&fake->lock);
    if (it->kind == ITEM_ERROR)
        g_set_error_literal(error, VS_ERROR, it->code, it->reply);
    else if (it->func)
        reply = it->func(call, it->func_data);
    else
        reply = g_strdup(it->reply);
    item_free(it);
    deliver_events();
    return reply;
}

static bool
take_ok(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static bool
take_ok(GError **error, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *call = NULL;
    g_autofree char *reply = NULL;

    va_start(ap, fmt);
    call = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    reply = take(error, "%s", call);
    return reply != NULL;
}

static int
take_int(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static int
take_int(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *call = NULL;
    g_autofree char *reply = NULL;

    va_start(ap, fmt);
    call = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    reply = take(NULL, "%s", call);
    return reply ? atoi(reply) : -1;
}

#define NAME(dom) (((FakeDomain *)(dom))->name)

static virConnectPtr
f_conn_open(const char *uri, GError **error)
{
    g_autofree char *reply = take(error, "conn_open %s", uri);
    FakeConn *c;

    if (!reply)
        return NULL;
    c = g_new0(FakeConn, 1);
    c->serial = (int)fake->conns->len;
    g_ptr_array_add(fake->conns, c);
    return (virConnectPtr)c;
}

static void
f_conn_close(virConnectPtr conn)
{
    (void)conn;
}

static int
f_conn_alive(virConnectPtr conn)
{
    (void)conn;
    return take_int("conn_alive");
}

static virDomainPtr
f_domain_lookup_uuid(virConnectPtr conn, const char *uuid, GError **error)
{
    g_autofree char *reply = take(error, "domain_lookup_uuid %s", uuid);
    FakeDomain *d;

    (void)conn;
    if (!reply)
        return NULL;
    d = domain_by_name(reply);
    g_assert_nonnull(d);
    return (virDomainPtr)d;
}

static void
f_domain_free(virDomainPtr dom)
{
    (void)dom;
}

static const char *
f_domain_name(virDomainPtr dom)
{
    return NAME(dom);
}

static void
f_domain_uuid(virDomainPtr dom, char *buf)
{
    g_strlcpy(buf, ((FakeDomain *)dom)->uuid, VIR_UUID_STRING_BUFLEN);
}

static virConnectPtr
f_domain_conn(virDomainPtr dom)
{
    (void)dom;
    return (virConnectPtr)fake->conns->pdata[0];
}

static int
f_domain_is_active(virDomainPtr dom)
{
    return take_int("domain_is_active %s", NAME(dom));
}

static bool
f_domain_state(virDomainPtr dom, int *state, int *reason, GError **error)
{
    static const char *const names[] = {
        [VIR_DOMAIN_RUNNING] = "running", [VIR_DOMAIN_PAUSED] = "paused",
        [VIR_DOMAIN_SHUTDOWN] = "shutdown", [VIR_DOMAIN_SHUTOFF] = "shutoff",
        [VIR_DOMAIN_CRASHED] = "crashed",
    };
    g_autofree char *reply = take(error, "domain_state %s", NAME(dom));
    char *space;

    if (!reply)
        return false;
    *reason = 0;
    /* "paused migration": the reason a migration paused it. */
    if ((space = strchr(reply, ' '))) {
        *space = '\0';
        g_assert_cmpstr(space + 1, ==, "migration");
        *reason = VIR_DOMAIN_PAUSED_MIGRATION;
    }
    for (int i = 0; i < (int)G_N_ELEMENTS(names); i++)
        if (names[i] && !strcmp(names[i], reply)) {
            *state = i;
            return true;
        }
    g_error("fake: domain_state: unknown state %s", reply);
}

static char *
f_domain_xml(virDomainPtr dom, bool inactive, GError **error)
{
    return take(error, "domain_xml %s %s", NAME(dom), inactive ? "inactive" : "live");
}

static int
f_fs_freeze(virDomainPtr dom, int timeout_s, GError **error)
{
    g_autofree char *reply = take(error, "fs_freeze %s", NAME(dom));

    (void)timeout_s;
    if (!reply)
        return -1;
    /* "ok": one file system; a number: that many. */
    return g_ascii_isdigit(reply[0]) ? atoi(reply) : 1;
}

static bool
f_fs_thaw(virDomainPtr dom, int timeout_s, GError **error)
{
    (void)timeout_s;
    return take_ok(error, "fs_thaw %s", NAME(dom));
}

static char *
f_agent_command(virDomainPtr dom, const char *command, int timeout_s, GError **error)
{
    const char *ex = strstr(command, "\"execute\":\"");
    g_autofree char *execute = ex ? g_strndup(ex + 11, strcspn(ex + 11, "\"")) : g_strdup(command);

    (void)timeout_s;
    return take(error, "agent_command %s %s", NAME(dom), execute);
}

static void
keep_xml(const char *xml)
{
    g_mutex_lock(&fake->lock);
    g_free(fake->last_xml);
    fake->last_xml = g_strdup(xml);
    g_mutex_unlock(&fake->lock);
}

static bool
f_snapshot_create(virDomainPtr dom, const char *xml, unsigned flags, GError **error)
{
    (void)flags;
    keep_xml(xml);
    return take_ok(error, "snapshot_create %s", NAME(dom));
}

static bool
f_block_job_watch(virConnectPtr conn, VsBlockJobEventFunc func, GError **error)
{
    (void)conn;
    (void)error;
    block_job_func = func;
    return true;
}

static bool
f_block_commit(virDomainPtr dom, const char *disk, unsigned long bandwidth, unsigned flags,
               GError **error)
{
    (void)bandwidth;
    (void)flags;
    return take_ok(error, "block_commit %s %s", NAME(dom), disk);
}

static bool
f_block_copy(virDomainPtr dom, const char *disk, const char *dest_xml, unsigned flags,
             GError **error)
{
    (void)flags;
    keep_xml(dest_xml);
    return take_ok(error, "block_copy %s %s", NAME(dom), disk);
}

static int
f_block_job_info(virDomainPtr dom, const char *disk, VsBlockJobInfo *info, GError **error)
{
    static const char *const types[] = {
        [VIR_DOMAIN_BLOCK_JOB_TYPE_PULL] = "pull", [VIR_DOMAIN_BLOCK_JOB_TYPE_COPY] = "copy",
        [VIR_DOMAIN_BLOCK_JOB_TYPE_COMMIT] = "commit",
        [VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT] = "active-commit",
        [VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP] = "backup",
    };
    g_autofree char *reply = take(error, "block_job_info %s %s", NAME(dom), disk);

    if (!reply)
        return -1;
    if (!strcmp(reply, "none"))
        return 0;
    memset(info, 0, sizeof *info);
    for (int i = 0; i < (int)G_N_ELEMENTS(types); i++)
        if (types[i] && !strcmp(types[i], reply)) {
            info->type = i;
            return 1;
        }
    g_error("fake: block_job_info: unknown job type %s", reply);
}

static bool
f_block_job_abort(virDomainPtr dom, const char *disk, bool pivot, GError **error)
{
    return take_ok(error, "block_job_abort %s %s%s", NAME(dom), disk, pivot ? " pivot" : "");
}

static bool
f_backup_begin(virDomainPtr dom, const char *backup_xml, const char *checkpoint_xml,
               bool reuse_external, GError **error)
{
    (void)checkpoint_xml;
    (void)reuse_external;
    keep_xml(backup_xml);
    return take_ok(error, "backup_begin %s", NAME(dom));
}

static bool
f_job_abort(virDomainPtr dom, GError **error)
{
    return take_ok(error, "job_abort %s", NAME(dom));
}

static bool
f_job_stats(virDomainPtr dom, bool completed, VsJobStats *st, GError **error)
{
    static const char *const types[] = {
        [VIR_DOMAIN_JOB_NONE] = "none", [VIR_DOMAIN_JOB_BOUNDED] = "bounded",
        [VIR_DOMAIN_JOB_UNBOUNDED] = "unbounded", [VIR_DOMAIN_JOB_COMPLETED] = "completed",
        [VIR_DOMAIN_JOB_FAILED] = "failed", [VIR_DOMAIN_JOB_CANCELLED] = "cancelled",
    };
    g_autofree char *reply = take(error, "job_stats %s%s", NAME(dom), completed ? " completed" : "");
    g_auto(GStrv) words = NULL;

    memset(st, 0, sizeof *st);
    st->operation = -1;
    if (!reply)
        return false;
    words = g_strsplit(reply, " ", 3);
    st->type = -1;
    for (int i = 0; i < (int)G_N_ELEMENTS(types); i++)
        if (types[i] && !strcmp(types[i], words[0]))
            st->type = i;
    g_assert_cmpint(st->type, >=, 0);
    if (words[1])
        st->operation = !strcmp(words[1], "backup") ? VIR_DOMAIN_JOB_OPERATION_BACKUP
                        : !strcmp(words[1], "migration-out") ? VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
                        : !strcmp(words[1], "migration-in") ? VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN
                                                            : VIR_DOMAIN_JOB_OPERATION_START;
    if (words[1] && words[2])
        st->errmsg = g_strdup(words[2]);
    return true;
}

static int
f_job_watch(virDomainPtr dom, VsJobCompletedFunc func, void *opaque, GDestroyNotify free_func)
{
    (void)dom;
    (void)func;
    if (free_func)
        free_func(opaque);
    return -1;
}

static void
f_job_unwatch(virDomainPtr dom, int id)
{
    (void)dom;
    (void)id;
}

static char **
f_checkpoint_list(virDomainPtr dom, GError **error)
{
    g_autofree char *reply = take(error, "checkpoint_list %s", NAME(dom));

    return reply ? g_strsplit_set(g_strstrip(reply), " ", -1) : NULL;
}

static char *
f_checkpoint_xml(virDomainPtr dom, const char *name, unsigned flags, GError **error)
{
    (void)flags;
    return take(error, "checkpoint_xml %s %s", NAME(dom), name);
}

static bool
f_checkpoint_redefine(virDomainPtr dom, const char *xml, GError **error)
{
    keep_xml(xml);
    return take_ok(error, "checkpoint_redefine %s", NAME(dom));
}

static bool
f_checkpoint_delete(virDomainPtr dom, const char *name, bool metadata_only, GError **error)
{
    return take_ok(error, "checkpoint_delete %s %s%s", NAME(dom), name,
                   metadata_only ? " metadata-only" : "");
}

static int
f_domain_is_persistent(virDomainPtr dom)
{
    return take_int("domain_is_persistent %s", NAME(dom));
}

static bool
f_domain_resume(virDomainPtr dom, GError **error)
{
    return take_ok(error, "domain_resume %s", NAME(dom));
}

static bool
f_domain_destroy(virDomainPtr dom, GError **error)
{
    return take_ok(error, "domain_destroy %s", NAME(dom));
}

static bool
f_domain_suspend(virDomainPtr dom, GError **error)
{
    return take_ok(error, "domain_suspend %s", NAME(dom));
}

static bool
f_block_info(virDomainPtr dom, const char *disk, VsBlockInfo *info, GError **error)
{
    g_autofree char *reply = take(error, "block_info %s %s", NAME(dom), disk);

    if (!reply)
        return false;
    if (sscanf(reply, "%llu %llu", &info->capacity, &info->allocation) != 2)
        g_error("fake: block_info: the reply is 'CAPACITY ALLOCATION', not '%s'", reply);
    return true;
}

static char *
f_conn_uri(virConnectPtr conn)
{
    (void)conn;
    return take(NULL, "conn_uri");
}

static virDomainPtr *
f_domain_list(virConnectPtr conn, GError **error)
{
    g_autofree char *reply = take(error, "domain_list");
    g_auto(GStrv) names = NULL;
    GPtrArray *doms;

    (void)conn;
    if (!reply)
        return NULL;
    names = g_strsplit_set(g_strstrip(reply), " ", -1);
    doms = g_ptr_array_new();
    for (size_t i = 0; names[i]; i++) {
        FakeDomain *d;

        if (!*names[i])
            continue;
        d = domain_by_name(names[i]);
        g_assert_nonnull(d);
        g_ptr_array_add(doms, d);
    }
    g_ptr_array_add(doms, NULL);
    return (virDomainPtr *)g_ptr_array_free(doms, false);
}

static char *
f_domain_xml_secure(virDomainPtr dom, GError **error)
{
    return take(error, "domain_xml_secure %s", NAME(dom));
}

static char *
f_volume_path(virDomainPtr dom, const char *pool, const char *volume, GError **error)
{
    return take(error, "volume_path %s %s %s", NAME(dom), pool, volume);
}

static bool
f_domain_define(virConnectPtr conn, const char *xml, GError **error)
{
    (void)conn;
    keep_xml(xml);
    return take_ok(error, "domain_define");
}

static char *
f_pool_xml(virConnectPtr conn, const char *name, GError **error)
{
    (void)conn;
    return take(error, "pool_xml %s", name);
}

static int
f_pool_is_active(virConnectPtr conn, const char *name, GError **error)
{
    g_autofree char *reply = take(error, "pool_is_active %s", name);

    (void)conn;
    return reply ? atoi(reply) : -1;
}

static bool
f_pool_define(virConnectPtr conn, const char *xml, GError **error)
{
    (void)conn;
    keep_xml(xml);
    return take_ok(error, "pool_define");
}

static bool
f_pool_start(virConnectPtr conn, const char *name, bool build, GError **error)
{
    (void)conn;
    return take_ok(error, "pool_start %s%s", name, build ? " build" : "");
}

static bool
f_pool_refresh(virConnectPtr conn, const char *name, GError **error)
{
    (void)conn;
    return take_ok(error, "pool_refresh %s", name);
}

static char *
f_pool_volume_path(virConnectPtr conn, const char *pool, const char *volume, GError **error)
{
    (void)conn;
    return take(error, "pool_volume_path %s %s", pool, volume);
}

static const VsControlOps fake_ops = {
    .conn_open = f_conn_open,
    .conn_close = f_conn_close,
    .conn_alive = f_conn_alive,
    .domain_lookup_uuid = f_domain_lookup_uuid,
    .domain_free = f_domain_free,
    .domain_name = f_domain_name,
    .domain_uuid = f_domain_uuid,
    .domain_conn = f_domain_conn,
    .domain_is_active = f_domain_is_active,
    .domain_state = f_domain_state,
    .domain_xml = f_domain_xml,
    .fs_freeze = f_fs_freeze,
    .fs_thaw = f_fs_thaw,
    .agent_command = f_agent_command,
    .snapshot_create = f_snapshot_create,
    .block_job_watch = f_block_job_watch,
    .block_commit = f_block_commit,
    .block_copy = f_block_copy,
    .block_job_info = f_block_job_info,
    .block_job_abort = f_block_job_abort,
    .backup_begin = f_backup_begin,
    .job_abort = f_job_abort,
    .job_stats = f_job_stats,
    .job_watch = f_job_watch,
    .job_unwatch = f_job_unwatch,
    .checkpoint_list = f_checkpoint_list,
    .checkpoint_xml = f_checkpoint_xml,
    .checkpoint_redefine = f_checkpoint_redefine,
    .checkpoint_delete = f_checkpoint_delete,
    .domain_is_persistent = f_domain_is_persistent,
    .domain_resume = f_domain_resume,
    .domain_suspend = f_domain_suspend,
    .block_info = f_block_info,
    .conn_uri = f_conn_uri,
    .domain_list = f_domain_list,
    .domain_xml_secure = f_domain_xml_secure,
    .volume_path = f_volume_path,
    .domain_define = f_domain_define,
    .pool_xml = f_pool_xml,
    .pool_is_active = f_pool_is_active,
    .pool_define = f_pool_define,
    .pool_start = f_pool_start,
    .pool_refresh = f_pool_refresh,
    .pool_volume_path = f_pool_volume_path,
    .domain_destroy = f_domain_destroy,
};

VsFake *
vs_fake_new(void)
{
    VsFake *f = g_new0(VsFake, 1);

    g_assert_null(fake);
    g_mutex_init(&f->lock);
    g_queue_init(&f->items);
    f->domains = g_ptr_array_new();
    f->conns = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(f->conns, g_new0(FakeConn, 1));
    fake = f;
    vs_control_set(&fake_ops);
    return f;
}

static void
fake_domain_free(FakeDomain *d)
{
    g_free(d->name);
    g_free(d->uuid);
    g_free(d);
}

void
vs_fake_finish(VsFake *f)
{
    g_autoptr(GString) left = g_string_new(NULL);

    vs_control_set(NULL);
    fake = NULL;
    for (GList *l = f->items.head; l; l = l->next) {
        Item *it = l->data;
        g_string_append_printf(left, "%s'%s'", left->len ? ", " : "",
                               it->kind == ITEM_EVENT ? "an event" : it->call);
    }
    if (left->len)
        g_test_message("fake: never called: %s", left->str);
    g_assert_cmpstr(left->str, ==, "");
    g_queue_clear_full(&f->items, (GDestroyNotify)item_free);
    g_ptr_array_foreach(f->domains, (GFunc)(void (*)(void))fake_domain_free, NULL);
    g_ptr_array_unref(f->domains);
    g_ptr_array_unref(f->conns);
    g_mutex_clear(&f->lock);
    g_free(f->last_xml);
    g_free(f);
}

virDomainPtr
vs_fake_domain(VsFake *f, const char *name, const char *uuid)
{
    FakeDomain *d = g_new0(FakeDomain, 1);

    d->name = g_strdup(name);
    d->uuid = g_strdup(uuid);
    g_ptr_array_add(f->domains, d);
    return (virDomainPtr)d;
}

virConnectPtr
vs_fake_conn(VsFake *f)
{
    return (virConnectPtr)f->conns->pdata[0];
}

static void
add(VsFake *f, Item *it)
{
    it->group = f->group;
    g_assert(!(it->group && it->kind == ITEM_EVENT));
    g_mutex_lock(&f->lock);
    g_queue_push_tail(&f->items, it);
    g_mutex_unlock(&f->lock);
}

void
vs_fake_add_item(VsFake *f, const char *call, const char *reply)
{
    Item *it = g_new0(Item, 1);

    it->kind = ITEM_REPLY;
    it->call = g_strdup(call);
    it->reply = g_strdup(reply);
    add(f, it);
}

void
vs_fake_add_error(VsFake *f, const char *call, VsErrorCode code, const char *message)
{
    Item *it = g_new0(Item, 1);

    it->kind = ITEM_ERROR;
    it->call = g_strdup(call);
    it->code = code;
    it->reply = g_strdup(message);
    add(f, it);
}

void
vs_fake_add_event(VsFake *f, const char *domain, const char *disk, int status)
{
    Item *it = g_new0(Item, 1);

    it->kind = ITEM_EVENT;
    it->domain = g_strdup(domain);
    it->disk = g_strdup(disk);
    it->status = status;
    add(f, it);
}

void
vs_fake_add_item_func(VsFake *f, const char *call, VsFakeReplyFunc func, gpointer data)
{
    Item *it = g_new0(Item, 1);

    it->kind = ITEM_REPLY;
    it->call = g_strdup(call);
    it->func = func;
    it->func_data = data;
    add(f, it);
}

void
vs_fake_any_order_begin(VsFake *f)
{
    g_assert(!f->group);
    f->group = ++f->groups;
}

void
vs_fake_any_order_end(VsFake *f)
{
    g_assert(f->group);
    f->group = 0;
}

const char *
vs_fake_last_xml(VsFake *f)
{
    return f->last_xml;
}

void
vs_fake_fixture_setup(VsFakeFixture *fx, gconstpointer data)
{
    (void)data;
    fx->fake = vs_fake_new();
    fx->vm = vs_fake_domain(fx->fake, "vm1", VS_FAKE_U1);
}

void
vs_fake_fixture_teardown(VsFakeFixture *fx, gconstpointer data)
{
    (void)data;
    vs_fake_finish(fx->fake);
}
