/* A source read only where it changed: another source (a storage snapshot)
 * seen through the list of ranges its storage says differ from an earlier
 * snapshot (vs_snap_diff), for an incremental copy without a libvirt
 * checkpoint. It is a delta source, like a push-mode incremental target: the
 * ranges outside the list are `unchanged` and never read, so the copy engine
 * takes a chunk with no changed byte from the previous backup's manifest and
 * builds a chunk changed in part from the previous chunk with the changed
 * ranges read over it; what is read from the storage is the changed bytes and
 * nothing else. Inside the list the inner source's own extents tell data from
 * holes; a range the diff reports discarded reads as zeros. */
#include "config.h"
#include "source-internal.h"

#include <string.h>

/* Extents handed out per call at most: the engine asks again from the end. */
#define MAX_EXTENTS_PER_CALL 4096

typedef struct {
    VsSource *inner;
    GArray *changed;       /* VsExtent, sorted, merged, inside the size; shared by clones */
} Changed;

static uint64_t
changed_size(VsSource *src)
{
    Changed *c = src->priv;

    return vs_source_size(c->inner);
}

/* The first changed range that ends after OFFSET (or the length: none). */
static guint
first_after(GArray *changed, uint64_t offset)
{
    guint lo = 0, hi = changed->len;

    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        const VsExtent *e = &g_array_index(changed, VsExtent, mid);

        if (e->offset + e->length <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The inner source's extents over [from, to), appended to OUT as changed. */
static bool
inner_extents(Changed *c, uint64_t from, uint64_t to, GArray *out, GError **error)
{
    while (from < to) {
        g_autoptr(GArray) got = g_array_new(FALSE, FALSE, sizeof(VsExtent));
        uint64_t at = from;

        if (!vs_source_extents(c->inner, from, to - from, got, error))
            return false;
        for (guint i = 0; i < got->len && at < to; i++) {
            const VsExtent *e = &g_array_index(got, VsExtent, i);
            uint64_t end = MIN(e->offset + e->length, to);

            if (e->offset != at || end <= at)
                break;
            vs_extent_add(out, at, end - at, e->zero);
            at = end;
        }
        if (at == from) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: no extents reported at offset %" G_GUINT64_FORMAT,
                        c->inner->description, from);
            return false;
        }
        from = at;
    }
    return true;
}

static bool
changed_extents(VsSource *src, uint64_t offset, uint64_t length, GArray *out, GError **error)
{
    Changed *c = src->priv;
    uint64_t end = offset + length, at = offset;
    guint start = out->len;

    for (guint i = first_after(c->changed, offset); at < end && out->len - start < MAX_EXTENTS_PER_CALL; i++) {
        const VsExtent *e = i < c->changed->len ? &g_array_index(c->changed, VsExtent, i) : NULL;
        uint64_t lo = e ? MAX(e->offset, at) : end, hi;

        if (lo > at) {
            VsExtent same = { .offset = at, .length = MIN(lo, end) - at, .unchanged = true };
            g_array_append_val(out, same);
            at = MIN(lo, end);
        }
        if (!e || at >= end)
            break;
        hi = MIN(e->offset + e->length, end);
        if (e->zero)
            vs_extent_add(out, at, hi - at, true);
        else if (!inner_extents(c, at, hi, out, error))
            return false;
        at = hi;
    }
    return true;
}

static bool
changed_pread(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error)
{
    Changed *c = src->priv;

    return vs_source_pread(c->inner, buf, len, offset, error);
}

static VsSource *changed_wrap(VsSource *inner, GArray *changed);

static VsSource *
changed_clone(VsSource *src, GError **error)
{
    Changed *c = src->priv;
    VsSource *inner = vs_source_clone(c->inner, error);

    return inner ? changed_wrap(inner, g_array_ref(c->changed)) : NULL;
}

static void
changed_close(VsSource *src)
{
    Changed *c = src->priv;

    vs_source_close(c->inner);
    g_array_unref(c->changed);
    g_free(c);
}

static const VsSourceOps changed_ops = {
    .name = "changed",
    .size = changed_size,
    .extents = changed_extents,
    .pread = changed_pread,
    .clone = changed_clone,
    .close = changed_close,
};

static VsSource *
changed_wrap(VsSource *inner, GArray *changed)
{
    Changed *c = g_new0(Changed, 1);
    g_autofree char *what = g_strdup_printf("%s (changed ranges)", inner->description);
    VsSource *src;

    c->inner = inner;
    c->changed = changed;
    src = vs_source_new(&changed_ops, what, c);
    src->delta = true;
    return src;
}

static int
cmp_offset(gconstpointer a, gconstpointer b)
{
    const VsExtent *x = a, *y = b;

    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

VsSource *
vs_source_open_changed(VsSource *inner, const GArray *changed, GError **error)
{
    uint64_t size = vs_source_size(inner);
    GArray *list = g_array_new(FALSE, FALSE, sizeof(VsExtent));

    (void)error;
    /* Sorted and merged, whatever order the storage reported them in; two
     * overlapping ranges of which one is data are data (read, not guessed). */
    for (guint i = 0; i < changed->len; i++) {
        VsExtent e = g_array_index(changed, VsExtent, i);

        if (e.offset >= size || e.length == 0)
            continue;
        e.length = MIN(e.length, size - e.offset);
        e.unchanged = false;
        g_array_append_val(list, e);
    }
    g_array_sort(list, cmp_offset);
    guint out = 0;
    for (guint i = 0; i < list->len; i++) {
        VsExtent e = g_array_index(list, VsExtent, i);
        VsExtent *last = out ? &g_array_index(list, VsExtent, out - 1) : NULL;

        if (last && e.offset <= last->offset + last->length && (last->zero == e.zero ||
                                                                 e.offset < last->offset + last->length)) {
            uint64_t end = MAX(last->offset + last->length, e.offset + e.length);
            last->zero = last->zero && e.zero;
            last->length = end - last->offset;
            continue;
        }
        g_array_index(list, VsExtent, out++) = e;
    }
    g_array_set_size(list, out);
    return changed_wrap(inner, list);
}
