/* Everything virtsnap asks of libvirt, behind one header for the tools: opening
 * a connection the way virsh does, and discovering every domain, every disk and
 * where each disk's data really lives (pool, NFS export, iSCSI LUN, block
 * device). Later issues add freeze/thaw, snapshots, commit, backup jobs and the
 * crash-recovery journal here. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <libvirt/libvirt.h>
#include "vs-error.h"
#include "vs-xml.h"

G_BEGIN_DECLS

/* ------------------------------------------------------------------------- */
/* Connections                                                               */

/* The URI virsh would use: URI if given, else $LIBVIRT_DEFAULT_URI, else
 * qemu:///system. */
const char *vs_default_uri(const char *uri);

/* Opens a read-write connection; libvirt's own error printing is silenced for
 * the whole process (virtsnap reports every error once, through GError). */
virConnectPtr vs_conn_open(const char *uri, GError **error);
void vs_conn_close(virConnectPtr conn);
/* Whether CONN has a domain named (or with the UUID) NAME: 1, 0, or -1 with
 * *ERROR when libvirt cannot say. For a configuration naming VMs (KVM_VM_MAPPING)
 * checked before anything is done. */
int vs_domain_exists(virConnectPtr conn, const char *name, GError **error);

/* Whether DIR is libvirt's own directory of domain definitions,
 * /etc/libvirt/qemu, however named (Snap Creator's default KVM_VM_CONFIG_DIR):
 * libvirt writes the files there itself, and one written behind its back would
 * be read at its next start, so virtsnap writes none there (dirs.c). */
bool vs_dir_is_libvirts_own(const char *dir);
/* Writes domain NAME's definition XML as DIR/NAME.xml, mode 0600 (it may name
 * secrets' users and paths), atomically; a symlink at that name is replaced,
 * not followed. A NAME that cannot be a file name is VS_ERROR_INVALID_ARG
 * ("'NAME' cannot be a file name"); the caller says which directory (dirs.c). */
bool vs_definition_write(const char *dir, const char *name, const char *xml, GError **error);

/* ------------------------------------------------------------------------- */
/* Discovery                                                                 */

typedef enum {
    VS_AGENT_NONE,        /* no org.qemu.guest_agent.0 channel */
    VS_AGENT_CONFIGURED,  /* a channel, but nobody answered guest-ping (or not running) */
    VS_AGENT_RESPONDING,  /* guest-ping answered */
    VS_AGENT_LAST
} VsAgentStatus;

/* "none", "configured", "responding" (discover.c, VS_ENUM_IMPL); from: -1 for another word. */
const char *vs_agent_status_to_string(VsAgentStatus value);
int vs_agent_status_from_string(const char *str);

typedef struct {
    char *path;           /* file/device path or protocol URL */
    char *format;         /* NULL if unknown */
} VsChainElem;

typedef struct {
    char *target;         /* vda */
    char *device;         /* disk, cdrom, floppy, lun */
    char *type;           /* file, block, network, volume, dir, ... */
    char *format;         /* raw, qcow2, ... */
    char *path;           /* local path, or nfs:// / iscsi:// URL for network disks */
    char *pool;           /* storage pool name, NULL if none */
    char *pool_type;      /* dir, fs, netfs, logical, disk, iscsi, iscsi-direct, mpath, network, none */
    char *volume;         /* volume name within the pool */
    /* NFS (netfs pools and protocol='nfs' disks) */
    char *nfs_server, *nfs_export, *nfs_path;
    /* iSCSI (iscsi/iscsi-direct pools and protocol='iscsi' disks) */
    char *iscsi_portal, *iscsi_iqn;
    int iscsi_lun;        /* -1 if not iSCSI */
    /* block and multipath devices */
    char *block_device, *wwid;
    /* Ceph RBD (rbd pools and protocol='rbd' disks): the cluster's pool, the image,
     * the cephx user (without "client.") when the XML names one */
    char *rbd_pool, *rbd_image, *rbd_user;
    GPtrArray *chain;     /* of VsChainElem*: backing images below the top, nearest first */
    bool chain_complete;  /* the chain is known to end (not cut off by an unreadable image) */
    char *skipped;        /* why this disk is not backed up, or NULL */
    char *error;          /* what could not be resolved for this disk, or NULL */
    VsErrorCode error_code;  /* with error: VS_ERROR_NOT_FOUND (a pool or volume), ... */
    /* The storage snapshot provider `auto` would use for this disk ("reflink",
     * "btrfs", "rbd", "hook"; static), asked without creating anything (its snapshot
     * directory taken to be the disk's own directory); NULL with the reason when
     * none would do (issue 15). */
    const char *snapshot_provider;
    char *snapshot_reason;
    /* With VsDiscoverOptions.locate: the storage controller and volume the
     * hook configured for the disk's pool names for it (its `locate`
     * operation, docs/snapshots.md); NULL without a hook or where it cannot say. */
    char *controller, *controller_volume;
} VsDiscoveredDisk;

/* Something discovery could not resolve. DISK NULL: the domain itself, which
 * was not found (VS_ERROR_NOT_FOUND; DOMAIN as it was named) or could not be
 * read; otherwise one of its disks, the others still discovered. DOMAIN NULL
 * too: the host's (its storage pools cannot be listed). */
typedef struct {
    char *domain;
    char *disk;           /* the target ("vda"), or NULL */
    GError *error;        /* its code, and the whole message ("discover: domain 'x': ...") */
} VsProblem;

void vs_problem_free(VsProblem *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsProblem, vs_problem_free)

typedef struct {
    char *name;
    char *uuid;
    char *state;
    int id;               /* -1 if not running */
    bool persistent;
    VsAgentStatus agent;
    char *xml;            /* the domain XML that was read (live XML when running) */
    VsDomainDef *def;     /* XML parsed, carried on so that nobody parses it again; NULL
                           * when it could not be read or parsed (see problems) */
    GPtrArray *disks;     /* of VsDiscoveredDisk* */
    GPtrArray *problems;  /* of VsProblem*: what could not be resolved in this domain */
} VsDiscoveredDomain;

typedef struct {
    int agent_timeout;    /* seconds for guest-ping (default 2) */
    int nfs_timeout_ms;   /* for asking an NFS server for its exports (default 3000) */
    bool probe_exports;   /* ask NFS servers for exports to split network NFS paths (default on) */
    /* The storage snapshot configuration (vs-snapshot.h) snapshot_provider is
     * decided with: a hook for a disk's pool, provider=none, snapshot-dir.
     * NULL: none (no hooks, each disk's own directory). Borrowed. */
    const struct _VsSnapConfig *snapshot_config;
    /* Ask the hook configured for each disk's pool (snapshot_config) where the
     * disk lives in the storage's own words: VsDiscoveredDisk.controller. A
     * hook that fails is a problem of the disk (default off: no hook runs). */
    bool locate;
    /* The hypervisor is another host (vs_uri_remote_host): its disk paths are
     * not looked at here, no image header read (the chain is what libvirt
     * says) and no file system asked for a snapshot provider. Default off. */
    bool remote;
} VsDiscoverOptions;

void vs_discover_options_init(VsDiscoverOptions *opts);

/* Discovers NAMES (NULL or empty: every domain, running or shut off, persistent or
 * transient, sorted by name). Each name that cannot be found, and each domain or
 * disk that cannot be resolved, is reported in *PROBLEMS (VsProblem*, set only when
 * there are any) while the others are still discovered. Returns an array of
 * VsDiscoveredDomain*, or NULL with *error set when nothing at all can be listed. */
GPtrArray *vs_discover(virConnectPtr conn, const char *const *names,
                       const VsDiscoverOptions *opts, GPtrArray **problems, GError **error);

void vs_discovered_domain_free(VsDiscoveredDomain *dom);
void vs_discovered_disk_free(VsDiscoveredDisk *disk);
/* Can a disk of FORMAT whose top image is PATH (a local path, or NULL / a URL for a
 * network disk) hold the dirty bitmaps of backup --mode=begin? If not, *WHY (static)
 * says why: it is then read whole at every backup (deduplicated all the same). */
/* driver/remote.c: the host of URI when it is another machine (not a loopback
 * name or address, not one of this host's own addresses), else NULL (no host:
 * a local daemon). Its disk paths are then the hypervisor's, not ours. */
char *vs_uri_remote_host(const char *uri);
bool vs_disk_holds_bitmaps(const char *format, const char *path, const char **why);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsDiscoveredDomain, vs_discovered_domain_free)

G_END_DECLS
