/* Running one step for every member of a group at once, each on a thread of
 * its own, and waiting for all: how a backup's window and a quiesce freeze,
 * snapshot and thaw a group of guests, so that the group's frozen window is
 * its slowest guest's rather than the sum of all. */
#include "config.h"
#include "driver-internal.h"

typedef struct {
    VsEachFunc func;
    gpointer item, data;
} EachArg;

static gpointer
each_thread(gpointer p)
{
    EachArg *a = p;

    a->func(a->item, a->data);
    return NULL;
}

void
vs_each_parallel(GPtrArray *items, VsEachFunc func, gpointer data)
{
    g_autoptr(GPtrArray) threads = g_ptr_array_new();
    g_autofree EachArg *args = g_new0(EachArg, items->len ? items->len : 1);

    for (guint i = 0; i < items->len; i++) {
        args[i] = (EachArg){ func, items->pdata[i], data };
        g_ptr_array_add(threads, g_thread_new("virtsnap-dom", each_thread, &args[i]));
    }
    for (guint i = 0; i < threads->len; i++)
        g_thread_join(threads->pdata[i]);
}
