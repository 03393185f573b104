/* What the source backends share and nothing outside block/ needs: building a
 * VsSource around a backend's private state. */
#pragma once

#include "vs-source.h"

G_BEGIN_DECLS

/* Takes ownership of PRIV (released by OPS->close); DESCRIPTION is copied. */
VsSource *vs_source_new(const VsSourceOps *ops, const char *description, void *priv);

G_END_DECLS
