/* libvirt's XML as virtsnap needs it: domains (their disks and guest-agent
 * channel), storage pools and volumes, disk-only snapshots, checkpoints and
 * domain backups, each parsed into a plain C model and formatted back.
 *
 * Domain XML belongs to the user and to libvirt, and virtsnap saves it with every
 * backup and rewrites it on restore; so a parsed domain keeps its whole document,
 * and formatting applies the model's disk sources back onto that document. Every
 * element virtsnap does not model (addresses, boot order, iotune, seclabels, ...)
 * survives a round trip untouched. Pool, volume, snapshot, checkpoint and backup
 * XML are what virtsnap generates, so they are formatted from the model alone.
 *
 * Parsers never crash on bad input (fuzzed) and fail with a VS_ERROR_XML error
 * whose message names the document ("xml: FILENAME: ...") and the element or
 * attribute at fault. Strings in the models are owned by them; free with the
 * matching _free function or g_autoptr. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"

G_BEGIN_DECLS

/* ------------------------------------------------------------------------- */
/* Storage sources (a disk's <source>, and each <backingStore> below it)      */

typedef enum {
    VS_DISK_TYPE_FILE,
    VS_DISK_TYPE_BLOCK,
    VS_DISK_TYPE_DIR,
    VS_DISK_TYPE_NETWORK,
    VS_DISK_TYPE_VOLUME,
    VS_DISK_TYPE_NVME,
    VS_DISK_TYPE_VHOSTUSER,
    VS_DISK_TYPE_VHOSTVDPA,
    VS_DISK_TYPE_LAST
} VsDiskType;

typedef struct {
    char *name;        /* host name or address; NULL for a unix socket */
    char *port;        /* NULL: protocol default */
    char *transport;   /* tcp (default, NULL), unix, rdma */
    char *socket;      /* transport='unix' */
} VsHostDef;

typedef struct _VsStorageSource VsStorageSource;
struct _VsStorageSource {
    VsDiskType type;
    char *format;          /* raw, qcow2, ...: <driver type> on the disk, <format type> below */
    char *path;            /* file=, dev= or dir=, for file/block/dir */
    /* type='volume' */
    char *pool;
    char *volume;
    char *mode;            /* iscsi volumes: host|direct */
    /* type='network' */
    char *protocol;        /* nfs, iscsi, nbd, rbd, gluster, http, ... */
    char *name;            /* network source name: NFS "/export/path", iSCSI "iqn/lun" */
    GPtrArray *hosts;      /* of VsHostDef*, never NULL */
    char *initiator_iqn;   /* iSCSI <initiator><iqn name=/> */
    char *auth_username;   /* <auth username=> with its <secret> kept opaque in the document */
    int index;             /* index= attribute, 0 when absent */
    /* The backing chain: backing == NULL and backing_terminated means the XML said
     * <backingStore/> (chain known to end here); backing == NULL without it means
     * the chain below is unknown (inactive XML: libvirt probes it at start). */
    VsStorageSource *backing;
    bool backing_terminated;
};

VsStorageSource *vs_storage_source_new(VsDiskType type);
void vs_storage_source_free(VsStorageSource *src);
VsStorageSource *vs_storage_source_copy(const VsStorageSource *src);
VsHostDef *vs_host_def_new(const char *name, const char *port);
void vs_host_def_free(VsHostDef *host);

const char *vs_disk_type_to_string(VsDiskType type);
int vs_disk_type_from_string(const char *str);   /* -1 if unknown */

/* ------------------------------------------------------------------------- */
/* Domains                                                                   */

typedef enum {
    VS_DISK_DEVICE_DISK,
    VS_DISK_DEVICE_CDROM,
    VS_DISK_DEVICE_FLOPPY,
    VS_DISK_DEVICE_LUN,
    VS_DISK_DEVICE_LAST
} VsDiskDevice;

const char *vs_disk_device_to_string(VsDiskDevice device);
int vs_disk_device_from_string(const char *str);

typedef struct {
    VsDiskDevice device;
    char *target_dev;      /* vda, sdb, hdc, ... (required) */
    char *target_bus;      /* virtio, scsi, sata, ide, fdc, usb; NULL if unset */
    char *driver_name;     /* qemu */
    bool readonly;
    bool shareable;
    bool transient;
    char *alias;           /* <alias name=> of a running domain */
    VsStorageSource *src;  /* NULL only for an empty cdrom/floppy */
    void *node;            /* xmlNode* of this <disk> in the owning domain's document */
} VsDiskDef;

typedef enum {
    VS_CHANNEL_STATE_UNKNOWN,      /* inactive XML or no <target state=> */
    VS_CHANNEL_STATE_CONNECTED,
    VS_CHANNEL_STATE_DISCONNECTED,
} VsChannelState;

typedef struct {
    char *type;            /* kvm, qemu, ... */
    char *name;
    char *uuid;            /* as written in the XML, NULL if absent */
    int id;                /* -1 when not running */
    GPtrArray *disks;      /* of VsDiskDef*, in document order, never NULL */
    bool has_agent_channel;        /* <channel> with target name org.qemu.guest_agent.0 */
    VsChannelState agent_state;
    char *agent_socket;            /* its <source path=>, when given */
    void *doc;             /* xmlDoc*: the whole parsed document, owned */
} VsDomainDef;

void vs_disk_def_free(VsDiskDef *disk);

VsDomainDef *vs_domain_def_parse_string(const char *xml, const char *filename, GError **error);
VsDomainDef *vs_domain_def_parse_file(const char *path, GError **error);
/* The domain's XML with every disk's model written back into its <disk> element:
 * type attribute, <driver name type>, <source> (attributes, index, hosts,
 * initiator, <auth username>) and the <backingStore> chain. Other content is kept
 * as it was; so are device, target, readonly/shareable/transient and alias, which
 * are read-only in the model. Content the parser did not read (an <auth> without
 * username, a second <backingStore>) is never removed. All disks are checked
 * before any is written: on failure (a source the parser would refuse, a switch to
 * nvme/vhostuser/vhostvdpa, a disk without node) the document is unchanged. */
char *vs_domain_def_format(VsDomainDef *def, GError **error);
void vs_domain_def_free(VsDomainDef *def);
VsDiskDef *vs_domain_def_find_disk(const VsDomainDef *def, const char *target_dev);

/* ------------------------------------------------------------------------- */
/* Storage pools and volumes                                                 */

typedef enum {
    VS_POOL_DIR,
    VS_POOL_FS,
    VS_POOL_NETFS,
    VS_POOL_LOGICAL,
    VS_POOL_DISK,
    VS_POOL_ISCSI,
    VS_POOL_ISCSI_DIRECT,
    VS_POOL_SCSI,
    VS_POOL_MPATH,
    VS_POOL_RBD,
    VS_POOL_SHEEPDOG,
    VS_POOL_GLUSTER,
    VS_POOL_ZFS,
    VS_POOL_VSTORAGE,
    VS_POOL_LAST
} VsPoolType;

const char *vs_pool_type_to_string(VsPoolType type);   /* libvirt's spelling: "iscsi-direct" */
int vs_pool_type_from_string(const char *str);

typedef struct {
    VsPoolType type;
    char *name;
    char *uuid;
    uint64_t capacity, allocation, available;   /* bytes, 0 when absent */
    /* <source> */
    GPtrArray *hosts;          /* of VsHostDef*, never NULL (netfs, iscsi, iscsi-direct, rbd, gluster) */
    char *source_dir;          /* <dir path=>: NFS export, gluster dir */
    GPtrArray *devices;        /* of char* <device path=> (fs, logical PVs, disk, iscsi IQN), never NULL */
    char *source_name;         /* <name>: volume group, rbd pool, ... */
    char *source_format;       /* <format type=>: nfs, auto, ext4, lvm2, dos, ... */
    char *adapter_type;        /* scsi: <adapter type=> */
    char *adapter_name;        /* scsi: <adapter name=> */
    char *initiator_iqn;       /* iscsi-direct: <initiator><iqn name=/> */
    /* <target> */
    char *target_path;
    /* <source><auth>: CHAP (iscsi) or cephx (rbd), without which a recreated pool
     * cannot log in; the secret itself stays in libvirt, named by usage or uuid. */
    char *auth_type;           /* chap | ceph; NULL: no <auth> */
    char *auth_username;
    char *auth_secret_usage;
    char *auth_secret_uuid;
} VsPoolDef;

VsPoolDef *vs_pool_def_parse_string(const char *xml, const char *filename, GError **error);
VsPoolDef *vs_pool_def_parse_file(const char *path, GError **error);
char *vs_pool_def_format(const VsPoolDef *def);
void vs_pool_def_free(VsPoolDef *def);

typedef struct {
    char *name;
    char *key;
    char *type;                /* file, block, dir, network, netdir: NULL if absent */
    uint64_t capacity;         /* bytes */
    uint64_t allocation;       /* bytes */
    char *target_path;
    char *target_format;       /* raw, qcow2, ... */
    char *backing_path;        /* <backingStore><path> */
    char *backing_format;
} VsVolDef;

VsVolDef *vs_vol_def_parse_string(const char *xml, const char *filename, GError **error);
char *vs_vol_def_format(const VsVolDef *def);
void vs_vol_def_free(VsVolDef *def);

/* ------------------------------------------------------------------------- */
/* Disk-only snapshots                                                       */

typedef enum {
    VS_SNAPSHOT_LOCATION_DEFAULT,   /* attribute absent */
    VS_SNAPSHOT_LOCATION_NO,
    VS_SNAPSHOT_LOCATION_INTERNAL,
    VS_SNAPSHOT_LOCATION_EXTERNAL,
    VS_SNAPSHOT_LOCATION_MANUAL,
    VS_SNAPSHOT_LOCATION_LAST
} VsSnapshotLocation;

typedef struct {
    char *name;                    /* target dev */
    VsSnapshotLocation snapshot;
    VsStorageSource *src;          /* the overlay (file or block), NULL if not given */
} VsSnapshotDiskDef;

typedef struct {
    char *name;
    char *description;
    VsSnapshotLocation memory;     /* <memory snapshot=> */
    GPtrArray *disks;              /* of VsSnapshotDiskDef*, never NULL */
} VsSnapshotDef;

VsSnapshotDef *vs_snapshot_def_new(const char *name);
VsSnapshotDiskDef *vs_snapshot_def_add_disk(VsSnapshotDef *def, const char *name,
                                            VsSnapshotLocation snapshot);
VsSnapshotDef *vs_snapshot_def_parse_string(const char *xml, const char *filename, GError **error);
char *vs_snapshot_def_format(const VsSnapshotDef *def);
void vs_snapshot_def_free(VsSnapshotDef *def);

/* ------------------------------------------------------------------------- */
/* Checkpoints                                                               */

typedef struct {
    char *name;                    /* target dev */
    bool checkpoint;               /* checkpoint='bitmap' (true) or 'no' */
    char *bitmap;                  /* bitmap name, NULL: libvirt picks the checkpoint name */
    /* size= (libvirt's output with VIR_DOMAIN_CHECKPOINT_XML_SIZE only): bytes
     * written since the checkpoint. */
    uint64_t size;
    bool has_size;                 /* size= was there */
} VsCheckpointDiskDef;

typedef struct {
    char *name;
    char *description;
    char *parent;                  /* <parent><name> (output of libvirt only) */
    int64_t creation_time;         /* <creationTime>, 0 if absent */
    GPtrArray *disks;              /* of VsCheckpointDiskDef*, never NULL */
} VsCheckpointDef;

VsCheckpointDef *vs_checkpoint_def_new(const char *name);
VsCheckpointDiskDef *vs_checkpoint_def_add_disk(VsCheckpointDef *def, const char *name,
                                                bool checkpoint);
VsCheckpointDef *vs_checkpoint_def_parse_string(const char *xml, const char *filename, GError **error);
char *vs_checkpoint_def_format(const VsCheckpointDef *def);
void vs_checkpoint_def_free(VsCheckpointDef *def);

/* ------------------------------------------------------------------------- */
/* Domain backups (virDomainBackupBegin)                                     */

typedef enum { VS_BACKUP_MODE_PUSH, VS_BACKUP_MODE_PULL } VsBackupMode;

typedef struct {
    char *name;                    /* target dev */
    bool backup;                   /* backup='yes' (true) or 'no' */
    char *backupmode;              /* full | incremental, NULL if absent */
    char *incremental;             /* per-disk checkpoint name */
    VsDiskType type;               /* file or block: of target (push) or scratch (pull) */
    char *target;                  /* push: file/dev written */
    char *scratch;                 /* pull: scratch file/dev */
    char *format;                  /* <driver type> */
    char *export_name;             /* pull: exportname= */
    char *export_bitmap;           /* pull: exportbitmap= */
} VsBackupDiskDef;

typedef struct {
    VsBackupMode mode;
    char *incremental;             /* checkpoint name, NULL for a full backup */
    /* pull mode server */
    char *server_transport;        /* tcp (NULL) or unix */
    char *server_name;
    char *server_port;
    char *server_socket;
    GPtrArray *disks;              /* of VsBackupDiskDef*, never NULL */
} VsBackupDef;

VsBackupDef *vs_backup_def_new(VsBackupMode mode);
VsBackupDiskDef *vs_backup_def_add_disk(VsBackupDef *def, const char *name, bool backup);
VsBackupDef *vs_backup_def_parse_string(const char *xml, const char *filename, GError **error);
char *vs_backup_def_format(const VsBackupDef *def);
void vs_backup_def_free(VsBackupDef *def);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsStorageSource, vs_storage_source_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsHostDef, vs_host_def_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsDiskDef, vs_disk_def_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsDomainDef, vs_domain_def_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsPoolDef, vs_pool_def_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsVolDef, vs_vol_def_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsSnapshotDef, vs_snapshot_def_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsCheckpointDef, vs_checkpoint_def_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsBackupDef, vs_backup_def_free)

/* ------------------------------------------------------------------------- */
/* Editing a domain for restore (domain-edit.c)                               */

/* A name for a new domain that libvirt and file names take: letters, digits,
 * '.', '_', '+', '-', no "..", not starting with '.' or '-', at most 200. */
bool vs_domain_name_check(const char *name, GError **error);
/* Sets <name> (checked with vs_domain_name_check) in the document and model. */
bool vs_domain_def_set_name(VsDomainDef *def, const char *name, GError **error);
/* Sets <uuid>, or removes it when UUID is NULL (libvirt then makes one up). */
bool vs_domain_def_set_uuid(VsDomainDef *def, const char *uuid, GError **error);
/* Removes every <interface>'s <mac> so that libvirt generates new addresses;
 * returns how many were removed. */
guint vs_domain_def_clear_macs(VsDomainDef *def);
/* PATH for a domain renamed from OLD_NAME to NEW_NAME: whole-word occurrences
 * of OLD_NAME in the file name are replaced, else the file name gets the
 * prefix "NEW_NAME-"; the directory never changes. */
char *vs_domain_rename_path(const char *path, const char *old_name, const char *new_name);
/* Renames (vs_domain_rename_path) the host files a domain owns alone, so that a
 * copy beside the original shares none: <source path> of file, unix and pipe
 * serial/console/parallel/channel devices, their <log file>, and the <nvram>
 * store; a fixed <graphics> port becomes autoport. Disks are the caller's.
 * Appends a "WHAT OLD -> NEW" line per change to CHANGES (char*, may be NULL);
 * returns the number of changes. */
guint vs_domain_def_rename_files(VsDomainDef *def, const char *old_name, const char *new_name,
                                 GPtrArray *changes);
/* The <disk> element of TARGET_DEV as it stands in the document (call
 * vs_domain_def_format first for the model's changes to be in it), without
 * what only a running domain has (libvirt's alias, the probed <backingStore>
 * chain, the source index): the XML virDomainAttachDevice takes. */
char *vs_domain_def_disk_xml(VsDomainDef *def, const char *target_dev, GError **error);

G_END_DECLS
