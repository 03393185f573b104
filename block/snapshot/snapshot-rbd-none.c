/* The rbd provider when virtsnap was built without librbd (librbd-dev absent):
 * choosing it says so and how to get it. */
#include "snapshot-internal.h"

VsSnapProvider *
vs_snap_rbd_new(GError **error)
{
    g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                "snapshot: rbd: virtsnap was built without librbd: install librbd-dev and rebuild");
    return NULL;
}

bool
snap_rbd_built(void)
{
    return false;
}
