/* The block layer's public face, one header per role, each usable alone:
 * vs-probe.h (what discovery asks of images, NFS servers and block devices),
 * vs-source.h (where data is read from and restored to), vs-copy.h (the copy
 * engine between sources and the repository), vs-repo.h (the chunk repository)
 * and vs-qcow2.h (the qcow2 image writer). Everything else under block/ is
 * private to it; see block/meson.build. */
#pragma once

#include "vs-probe.h"
#include "vs-source.h"
#include "vs-copy.h"
#include "vs-repo.h"
#include "vs-qcow2.h"
#include "vs-snapshot.h"
