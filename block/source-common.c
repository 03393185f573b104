/* The part of a source that is the same for every backend: allocation, close,
 * and the wrappers through which callers reach the vtable so that optional
 * entries (extents, clone) get one meaning everywhere instead of a NULL check in
 * every caller. */
#include "config.h"
#include "source-internal.h"

VsSource *
vs_source_new(const VsSourceOps *ops, const char *description, void *priv)
{
    VsSource *src = g_new0(VsSource, 1);

    src->ops = ops;
    src->description = g_strdup(description);
    src->priv = priv;
    return src;
}

void
vs_source_close(VsSource *src)
{
    if (!src)
        return;
    if (src->ops && src->ops->close)
        src->ops->close(src);
    g_free(src->description);
    g_free(src);
}

uint64_t
vs_source_size(VsSource *src)
{
    return src->ops->size(src);
}

bool
vs_source_extents(VsSource *src, uint64_t offset, uint64_t length, GArray *out, GError **error)
{
    uint64_t size = vs_source_size(src);

    if (offset >= size || length == 0)
        return true;
    length = MIN(length, size - offset);
    if (!src->ops->extents) {
        VsExtent e = { .offset = offset, .length = length, .zero = false };
        g_array_append_val(out, e);
        return true;
    }
    return src->ops->extents(src, offset, length, out, error);
}

bool
vs_source_pread(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error)
{
    return src->ops->pread(src, buf, len, offset, error);
}

VsSource *
vs_source_clone(VsSource *src, GError **error)
{
    if (!src->ops->clone) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "%s: %s: this kind of source cannot be opened twice",
                    src->ops->name, src->description);
        return NULL;
    }
    return src->ops->clone(src, error);
}
