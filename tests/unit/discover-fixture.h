/* Hand-built discovery results for the unit tests of the output formats
 * (test-discover-format.c, test-sc-format.c): a disk and a domain with every
 * field a format reads set to a plain default, for the test to change. */
#pragma once

#include "virtsnap.h"

/* A qcow2 file disk TARGET at PATH in a pool of POOL_TYPE, not iSCSI. */
static inline VsDiscoveredDisk *
fixture_disk(const char *target, const char *path, const char *pool_type)
{
    VsDiscoveredDisk *d = g_new0(VsDiscoveredDisk, 1);

    d->target = g_strdup(target);
    d->device = g_strdup("disk");
    d->type = g_strdup("file");
    d->format = g_strdup("qcow2");
    d->path = g_strdup(path);
    d->pool_type = g_strdup(pool_type);
    d->iscsi_lun = -1;
    d->chain = g_ptr_array_new();
    return d;
}

/* A running, persistent domain NAME whose agent answers, without disks. */
static inline VsDiscoveredDomain *
fixture_domain(const char *name)
{
    VsDiscoveredDomain *dom = g_new0(VsDiscoveredDomain, 1);

    dom->name = g_strdup(name);
    dom->uuid = g_strdup("7b4a1c1e-0000-4000-8000-000000000001");
    dom->state = g_strdup("running");
    dom->id = 3;
    dom->persistent = true;
    dom->agent = VS_AGENT_RESPONDING;
    dom->disks = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_disk_free);
    dom->problems = g_ptr_array_new_with_free_func((GDestroyNotify)vs_problem_free);
    return dom;
}
