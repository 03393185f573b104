/* Block-job events, in one table for every job virtsnap waits on (the commit
 * and copy of blockjob.c, the pull of restore --instant in instant.c). A job's
 * end and its READY state are only known for sure from libvirt's events:
 * polling the job's progress races (a job gone from the job info may not have
 * sent its event yet, and a mirror is not ready to pivot just because its
 * counters match). So each connection that runs jobs gets one callback, which
 * records the last event of each "uuid/disk" with its job type and wakes the
 * waiters; they look up the disk they wait for. */
#include "config.h"
#include "driver-internal.h"
#include "blockjob-events.h"
#include "control.h"

typedef struct {
    int type;
    int status;
} Event;

static GMutex lock;
static GCond cond;
static GHashTable *events;        /* "uuid/disk" -> Event* */
/* virConnectPtr with our callback. A pointer key is safe: libvirt's registration
 * holds a reference on the connection (virObjectEventCallbackListAddID) and
 * nothing deregisters it, so a watched connection is never freed before the
 * process ends, even after virConnectClose, and no later connection can get its
 * address and be taken for watched. Deregistering would need its entry removed. */
static GHashTable *conns;

char *
vs_block_event_key(virDomainPtr dom, const char *disk)
{
    char uuid[VIR_UUID_STRING_BUFLEN] = "";

    vs_control()->domain_uuid(dom, uuid);
    return g_strdup_printf("%s/%s", uuid, disk);
}

static void
on_block_job(virConnectPtr conn, virDomainPtr dom, const char *disk, int type, int status)
{
    Event *ev = g_new(Event, 1);

    (void)conn;
    ev->type = type;
    ev->status = status;
    g_mutex_lock(&lock);
    g_hash_table_insert(events, vs_block_event_key(dom, disk), ev);
    g_cond_broadcast(&cond);
    g_mutex_unlock(&lock);
}

bool
vs_block_events_watch(virConnectPtr conn, const char *op, GError **error)
{
    bool ok = true;

    g_mutex_lock(&lock);
    if (!events) {
        events = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        conns = g_hash_table_new(NULL, NULL);
    }
    if (!g_hash_table_contains(conns, conn)) {
        GError *cause = NULL;

        if (!vs_control()->block_job_watch(conn, on_block_job, &cause)) {
            vs_control_error(error, cause, VS_ERROR_LIBVIRT, "%s: cannot watch block-job events", op);
            ok = false;
        } else {
            g_hash_table_add(conns, conn);
        }
    }
    g_mutex_unlock(&lock);
    return ok;
}

void
vs_block_event_forget(const char *key)
{
    g_mutex_lock(&lock);
    if (events)
        g_hash_table_remove(events, key);
    g_mutex_unlock(&lock);
}

/* With the lock held. */
static int
status_locked(const char *key, int type)
{
    const Event *ev = events ? g_hash_table_lookup(events, key) : NULL;

    if (!ev || (type != VS_BLOCK_JOB_ANY_TYPE && ev->type != type))
        return -1;
    return ev->status;
}

int
vs_block_event_status(const char *key, int type)
{
    int st;

    g_mutex_lock(&lock);
    st = status_locked(key, type);
    g_mutex_unlock(&lock);
    return st;
}

int
vs_block_event_wait(const char *key, int type, int seen, gint64 until)
{
    int st;

    g_mutex_lock(&lock);
    /* Compared under the lock: an event between the caller's look and this
     * wait is not slept through. */
    if (status_locked(key, type) == seen)
        g_cond_wait_until(&cond, &lock, until);
    st = status_locked(key, type);
    g_mutex_unlock(&lock);
    return st;
}

void
vs_block_events_wait_any(gint64 until)
{
    g_mutex_lock(&lock);
    g_cond_wait_until(&cond, &lock, until);
    g_mutex_unlock(&lock);
}
