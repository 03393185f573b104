/* The driver's private pieces of restore --instant (instant.c), which restore
 * and recover share and no tool calls: the overlay on an export, the copy that
 * makes it stand alone, and recover's finishing of an interrupted run. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <libvirt/libvirt.h>
#include "vs-restore.h"

G_BEGIN_DECLS

/* For `virtsnap recover`: finishes what an interrupted restore --instant left
 * (its exports outlive it on purpose, so that the guest keeps reading): a disk
 * still on its export gets its copy finished (a block pull while its domain
 * runs, qemu-img rebase while it does not), then the export is stopped; an
 * export nothing reads any more is stopped. Each step is added to ACTIONS.
 * false (the first failure in ERROR) if one could not be finished. */
bool vs_instant_recover(virConnectPtr conn, GPtrArray *actions, GError **error);

/* A qcow2 PATH (mode 0600) of SIZE bytes backed by the raw NBD export URI. */
bool vs_instant_overlay(const char *path, const char *uri, uint64_t size, GError **error);
/* Copies the backing data into PATH (qemu-img rebase -b ''): PATH stands alone. */
bool vs_instant_finish_offline(const char *path, GError **error);
/* The same for a disk restored in another format: the overlay OVERLAY (backed by
 * the export) is converted into the existing DEST as FORMAT, the definition of
 * the shut-off DOM then names DEST for disk TARGET, and OVERLAY is removed. */
bool vs_instant_finish_offline_copy(virDomainPtr dom, const char *target, const char *overlay,
                                    const char *dest, const char *format, GError **error);

typedef enum {
    VS_PULL_RUNNING,
    VS_PULL_DONE,                 /* the disk has no backing image any more */
    VS_PULL_FAILED,               /* error says why; the job may still run (stall) */
    VS_PULL_STOPPED,              /* the domain stopped before the copy finished */
} VsPullState;

typedef struct {
    virDomainPtr dom;             /* borrowed */
    const char *disk;             /* target */
    VsPullState state;
    char *error;
    uint64_t cur, end;            /* progress seen last */
    int64_t done_ms;              /* monotonic ms when it finished */
    gint64 last_change;           /* private */
    bool adopt;                   /* a pull already runs on the disk: wait for it */
} VsPullJob;

/* Starts a block pull (base: none) on every job's disk and waits until each is
 * done, failed, stalled for STALL_S seconds, or its domain stopped. PROGRESS
 * gets a line every 15 s per running job. */
void vs_blockpull_run(virConnectPtr conn, VsPullJob *jobs, guint n, int stall_s,
                      void (*progress)(const char *message, void *opaque), void *opaque);

G_END_DECLS
