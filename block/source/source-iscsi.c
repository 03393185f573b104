/* The iSCSI source: one LUN read (and, for restore, written) through libiscsi's
 * asynchronous READ16/WRITE16 tasks, several in flight on one session, driven
 * by the shared request loop (source-net.c), data read straight into the
 * caller's buffer. libiscsi's own reconnect is switched off (it retries forever
 * and replays tasks itself, behind the loop's back); a dropped session is
 * replaced by a fresh login within a bounded time and the unfinished tasks are
 * issued again. Holes come from GET LBA STATUS where the LUN is thin
 * provisioned (LBPME in READ CAPACITY 16), else everything is data. CHAP
 * credentials come in a VsIscsiAuth, or as user%password@ in the URL; either
 * way the description (every message) is the URL without them. */
#include "config.h"
#include "source-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tasks of at most this size, this many in flight. tgt on loopback, 1 GiB in
 * 4 MiB preads: 512 KiB tasks 1.9-2.3 GB/s, 256 KiB 1.3-1.9, 128 KiB and 1 MiB
 * about 1.0 (a pread's tasks all in flight at once either way). */
#define PIECE_MAX ((size_t)512 << 10)
#define MAX_INFLIGHT 16
#define INITIATOR_IQN "iqn.2024-01.org.virtsnap:initiator"
/* Descriptors asked for per GET LBA STATUS. */
#define LBA_STATUS_MAX 128
/* A credentials file is two short lines. */
#define CREDENTIALS_MAX 4096

enum { OP_READ, OP_WRITE, OP_SYNC, OP_LBA_STATUS };

typedef struct {
    char *portal;
    char *target;
    int lun;
    char *user;
    char *password;            /* wiped at close */
    bool writable;
    struct iscsi_context *iscsi;
    uint64_t size;
    uint32_t block_size;
    bool thin;                 /* LBPME: GET LBA STATUS means something */
    VsNetConn conn;
} IscsiSource;

static const VsSourceOps iscsi_ops;
static const VsNetOps iscsi_net_ops;

static void
is_disconnect(void *be)
{
    IscsiSource *is = be;

    /* Cancels the tasks in flight: their callbacks run now and are ignored. */
    if (is->iscsi)
        iscsi_destroy_context(is->iscsi);
    is->iscsi = NULL;
}

/* Whether the target says LUN is none of its logical units: asked again after
 * a login whose unit check failed, for the sense data the connect keeps. */
static bool
lun_missing(struct iscsi_context *iscsi, int lun)
{
    struct scsi_task *task = iscsi_testunitready_sync(iscsi, lun);
    bool missing = task && task->status == SCSI_STATUS_CHECK_CONDITION &&
                   task->sense.key == SCSI_SENSE_ILLEGAL_REQUEST &&
                   task->sense.ascq == SCSI_SENSE_ASCQ_LOGICAL_UNIT_NOT_SUPPORTED;

    if (task)
        scsi_free_scsi_task(task);
    return missing;
}

/* The error of a failed connect, login or unit check, with a code and the case
 * it most likely is. The connection and the unit are asked directly; the login
 * is not: libiscsi keeps a refused login's status class and detail only in its
 * message ("Failed to log in to target. Status: Target not found(515)", or
 * "Authentication failure(513)"), so those words are the one thing read here. */
static void
set_connect_error(IscsiSource *is, GError **error)
{
    g_autofree char *detail = g_strdup(iscsi_get_error(is->iscsi));
    const char *hint = "";
    int code = VS_ERROR_IO;

    if (iscsi_is_logged_in(is->iscsi)) {
        if (lun_missing(is->iscsi, is->lun)) {
            hint = " (wrong LUN?)";
            code = VS_ERROR_NOT_FOUND;
        }
    } else if (strstr(detail, "Target not found")) {
        hint = " (wrong target IQN?)";
        code = VS_ERROR_NOT_FOUND;
    } else if (strstr(detail, "Authentication fail") || strstr(detail, "Authorization failure") ||
               strstr(detail, "CHAP")) {
        hint = " (CHAP user or password rejected)";
        code = VS_ERROR_DENIED;
    } else if (!strstr(detail, "Failed to log in") && vs_net_socket_down(iscsi_get_fd(is->iscsi))) {
        /* libiscsi's text for a refused TCP connection is about its reconnect
         * logic and says nothing useful: say what happened. */
        g_set_error(error, VS_ERROR, VS_ERROR_UNREACHABLE,
                    "iscsi: open: %s: cannot connect to the portal %s (unreachable, or no target "
                    "listening there)", is->conn.description, is->portal);
        return;
    }
    g_set_error(error, VS_ERROR, code, "iscsi: open: %s: %s%s", is->conn.description, detail,
                hint);
}

static bool
is_connect(void *be, GError **error)
{
    IscsiSource *is = be;

    is_disconnect(is);
    is->iscsi = iscsi_create_context(INITIATOR_IQN);
    if (!is->iscsi) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "iscsi: open: %s: cannot create a context",
                    is->conn.description);
        return false;
    }
    iscsi_set_noautoreconnect(is->iscsi, 1);
    iscsi_set_timeout(is->iscsi, (int)vs_net_timeout_secs());
    iscsi_set_session_type(is->iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(is->iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    if (iscsi_set_targetname(is->iscsi, is->target) < 0 ||
        (is->user && iscsi_set_initiator_username_pwd(is->iscsi, is->user, is->password) < 0) ||
        iscsi_full_connect_sync(is->iscsi, is->portal, is->lun) < 0) {
        set_connect_error(is, error);
        is_disconnect(is);
        return false;
    }
    return true;
}

static void
task_cb(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
    VsNetPiece *p = private_data;
    struct scsi_task *task = command_data;

    if (status == SCSI_STATUS_GOOD) {
        if (p->op == OP_LBA_STATUS) {
            struct scsi_get_lba_status *st = scsi_datain_unmarshall(task);
            GArray *out = p->opaque;
            for (uint32_t i = 0; st && i < st->num_descriptors; i++)
                g_array_append_val(out, st->descriptors[i]);
        }
        vs_net_piece_done(p, p->len);
    } else if (status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR ||
               status == SCSI_STATUS_TIMEOUT || status == SCSI_STATUS_BUSY ||
               status == SCSI_STATUS_TASK_SET_FULL) {
        /* The session, not the command: retry on a new one. */
        vs_net_piece_failed(p, true, VS_ERROR_IO, iscsi_get_error(iscsi));
    } else {
        g_autofree char *msg = g_strdup_printf("SCSI status %#x, sense %s (asc/ascq %#06x)",
                                               (unsigned)status,
                                               scsi_sense_key_str(task->sense.key),
                                               (unsigned)task->sense.ascq);
        vs_net_piece_failed(p, false, VS_ERROR_IO, msg);
    }
    if (task)
        scsi_free_scsi_task(task);
}

static bool
is_issue(void *be, VsNetPiece *p, GError **error)
{
    IscsiSource *is = be;
    uint64_t lba = p->offset / is->block_size;
    uint32_t len = (uint32_t)p->len;
    /* libiscsi keeps the pointer until the task ends: the iovec lives in the
     * piece. scsi_iovec is laid out as struct iovec (QEMU casts the same way). */
    struct scsi_iovec *iov = (struct scsi_iovec *)&p->iov;
    struct scsi_task *task = NULL;

    switch (p->op) {
    case OP_READ:
        task = iscsi_read16_iov_task(is->iscsi, is->lun, lba, len, (int)is->block_size, 0, 0, 0,
                                     0, 0, task_cb, p, iov, 1);
        break;
    case OP_WRITE:
        task = iscsi_write16_iov_task(is->iscsi, is->lun, lba, NULL, len, (int)is->block_size,
                                      0, 0, 0, 0, 0, task_cb, p, iov, 1);
        break;
    case OP_SYNC:
        task = iscsi_synchronizecache16_task(is->iscsi, is->lun, 0, 0, 0, 0, task_cb, p);
        break;
    case OP_LBA_STATUS:
        task = iscsi_get_lba_status_task(is->iscsi, is->lun, lba, 8 + 16 * LBA_STATUS_MAX,
                                         task_cb, p);
        break;
    }
    if (!task) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "cannot queue a task: %s",
                    iscsi_get_error(is->iscsi));
        return false;
    }
    return true;
}

static int
is_fd(void *be)
{
    return iscsi_get_fd(((IscsiSource *)be)->iscsi);
}

static int
is_events(void *be)
{
    return iscsi_which_events(((IscsiSource *)be)->iscsi);
}

static int
is_service(void *be, int revents, GError **error)
{
    IscsiSource *is = be;
    int r = iscsi_service(is->iscsi, revents);

    if (r < 0)
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s", iscsi_get_error(is->iscsi));
    return r;
}

static const VsNetOps iscsi_net_ops = {
    .issue = is_issue,
    .fd = is_fd,
    .which_events = is_events,
    .service = is_service,
    .disconnect = is_disconnect,
    .connect = is_connect,
};

static uint64_t
iscsi_size_(VsSource *src)
{
    return ((IscsiSource *)src->priv)->size;
}

static bool
check_aligned(VsSource *src, const char *opname, size_t len, uint64_t offset, GError **error)
{
    IscsiSource *is = src->priv;

    if (offset % is->block_size == 0 && len % is->block_size == 0)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                "iscsi: %s: %s: %zu bytes at offset %" G_GUINT64_FORMAT
                " are not in whole blocks of %u bytes", opname, src->description, len, offset,
                is->block_size);
    return false;
}

static bool
run_io(VsSource *src, const char *opname, int op, char *buf, size_t len, uint64_t offset,
       GError **error)
{
    IscsiSource *is = src->priv;

    if (!check_aligned(src, opname, len, offset, error))
        return false;
    return vs_net_run_range(&is->conn, opname, op, buf, len, offset,
                            PIECE_MAX - PIECE_MAX % is->block_size, MAX_INFLIGHT, error);
}

static bool
iscsi_pread_(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error)
{
    return run_io(src, "pread", OP_READ, buf, len, offset, error);
}

static bool
iscsi_pwrite_(VsSource *src, const void *buf, size_t len, uint64_t offset, GError **error)
{
    /* The data-out iovec is only read from. */
    return run_io(src, "pwrite", OP_WRITE, (char *)buf, len, offset, error);
}

static bool
iscsi_flush_(VsSource *src, GError **error)
{
    IscsiSource *is = src->priv;
    VsNetPiece piece = { .op = OP_SYNC, .len = 1 };

    return vs_net_run(&is->conn, "flush", &piece, 1, 1, error);
}

static bool
iscsi_extents_(VsSource *src, uint64_t offset, uint64_t length, GArray *out, GError **error)
{
    IscsiSource *is = src->priv;
    uint64_t end = offset + length, bs = is->block_size;
    g_autoptr(GArray) desc = NULL;
    VsNetPiece piece;

    if (!is->thin) {
        vs_extent_add(out, offset, length, false);
        return true;
    }
    desc = g_array_new(FALSE, FALSE, sizeof(struct scsi_lba_status_descriptor));
    piece = (VsNetPiece){ .op = OP_LBA_STATUS, .offset = offset - offset % bs, .len = 1,
                          .opaque = desc };
    if (!vs_net_run(&is->conn, "block status", &piece, 1, 1, error))
        return false;
    for (guint i = 0; i < desc->len; i++) {
        struct scsi_lba_status_descriptor *d =
            &g_array_index(desc, struct scsi_lba_status_descriptor, i);
        uint64_t lo = MAX(d->lba * bs, offset), hi = MIN((d->lba + d->num_blocks) * bs, end);
        if (hi <= lo)
            continue;
        /* The engine wants the range covered without gaps: whatever the
         * target skipped is data. */
        vs_extent_add(out, offset, lo - offset, false);
        /* Only deallocated blocks read as zeros; anchored ones may hold
         * anything. */
        vs_extent_add(out, lo, hi - lo, d->provisioning == SCSI_PROVISIONING_TYPE_DEALLOCATED);
        offset = hi;
        if (offset >= end)
            break;
    }
    if (out->len == 0)            /* the target said nothing usable: all data */
        vs_extent_add(out, offset, end - offset, false);
    return true;
}

static void
iscsi_close_(VsSource *src)
{
    IscsiSource *is = src->priv;

    if (!is)
        return;
    is_disconnect(is);
    vs_net_conn_clear(&is->conn);
    g_free(is->portal);
    g_free(is->target);
    g_free(is->user);
    if (is->password)
        explicit_bzero(is->password, strlen(is->password));
    g_free(is->password);
    g_free(is);
    src->priv = NULL;
}

/* Size, block size and thin provisioning of the LUN (READ CAPACITY 16), on the
 * freshly connected context. */
static bool
read_capacity(VsSource *src, GError **error)
{
    IscsiSource *is = src->priv;
    struct scsi_task *task = iscsi_readcapacity16_sync(is->iscsi, is->lun);
    struct scsi_readcapacity16 *rc;

    if (!task || task->status != SCSI_STATUS_GOOD ||
        !(rc = scsi_datain_unmarshall(task)) || rc->block_length == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "iscsi: open: %s: READ CAPACITY 16: %s",
                    src->description, task ? iscsi_get_error(is->iscsi) : "no answer");
        if (task)
            scsi_free_scsi_task(task);
        return false;
    }
    is->block_size = rc->block_length;
    is->size = (rc->returned_lba + 1) * rc->block_length;
    is->thin = rc->lbpme;
    scsi_free_scsi_task(task);
    return true;
}

static VsSource *
iscsi_open_parsed(IscsiSource *tmpl, const char *description, GError **error)
{
    IscsiSource *is = g_new0(IscsiSource, 1);
    g_autoptr(VsSource) src = vs_source_new(&iscsi_ops, description, is);

    is->portal = g_strdup(tmpl->portal);
    is->target = g_strdup(tmpl->target);
    is->lun = tmpl->lun;
    is->user = g_strdup(tmpl->user);
    is->password = g_strdup(tmpl->password);
    is->writable = tmpl->writable;
    src->writable = tmpl->writable;
    vs_net_conn_init(&is->conn, &iscsi_net_ops, is, "iscsi", src->description);
    if (!is_connect(is, error))
        return NULL;
    if (tmpl->block_size) {
        is->size = tmpl->size;
        is->block_size = tmpl->block_size;
        is->thin = tmpl->thin;
    } else if (!read_capacity(src, error)) {
        return NULL;
    }
    return g_steal_pointer(&src);
}

static VsSource *
iscsi_clone_(VsSource *src, GError **error)
{
    return iscsi_open_parsed(src->priv, src->description, error);
}

static const VsSourceOps iscsi_ops = {
    .name = "iscsi",
    .size = iscsi_size_,
    .extents = iscsi_extents_,
    .pread = iscsi_pread_,
    .clone = iscsi_clone_,
    .close = iscsi_close_,
    /* 16 tasks in flight saturate tgt from one thread; a second session
     * adds a core for tgt's side on this 2-core machine, not for ours. */
    .preferred_readers = 1,
    .pwrite = iscsi_pwrite_,
    .flush = iscsi_flush_,
};

VsSource *
vs_source_open_iscsi(const char *url, const VsIscsiAuth *auth, bool writable, GError **error)
{
    g_autofree char *description = vs_url_strip_credentials(url);
    struct iscsi_context *parser = iscsi_create_context(INITIATOR_IQN);
    struct iscsi_url *u;
    IscsiSource tmpl = { .writable = writable };
    VsSource *src;

    if (!parser) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "iscsi: open: %s: cannot create a context",
                    description);
        return NULL;
    }
    u = iscsi_parse_full_url(parser, url);
    if (!u) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "iscsi: open: %s: not an iSCSI URL (iscsi://host[:port]/target-iqn/lun): %s",
                    description, iscsi_get_error(parser));
        iscsi_destroy_context(parser);
        return NULL;
    }
    tmpl.portal = u->portal;
    tmpl.target = u->target;
    tmpl.lun = u->lun;
    if (auth && auth->user) {
        tmpl.user = (char *)auth->user;
        tmpl.password = (char *)auth->password;
    } else if (u->user[0]) {
        tmpl.user = u->user;
        tmpl.password = u->passwd;
    }
    src = iscsi_open_parsed(&tmpl, description, error);
    explicit_bzero(u->passwd, sizeof u->passwd);
    iscsi_destroy_url(u);
    iscsi_destroy_context(parser);
    return src;
}

void
vs_iscsi_auth_free(VsIscsiAuth *auth)
{
    if (!auth)
        return;
    if (auth->password)
        explicit_bzero((char *)auth->password, strlen(auth->password));
    g_free((char *)auth->user);
    g_free((char *)auth->password);
    g_free(auth);
}

/* A secret is only as safe as its file: it must be root's or the caller's
 * (another user could change it: a password of their choosing, sent to the
 * target as ours) and closed to group and others, as examples/iscsi-auth.conf
 * says. The contents are never part of a message. */
static bool
credentials_file_ok(int fd, const char *path, GError **error)
{
    struct stat st;

    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > CREDENTIALS_MAX) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "iscsi: credentials: %s must be a small regular file of user= and password= lines",
                    path);
        return false;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        struct passwd pw, *res = NULL;
        char buf[1024];
        g_autofree char *owner = getpwuid_r(st.st_uid, &pw, buf, sizeof buf, &res) == 0 && res
            ? g_strdup(pw.pw_name) : g_strdup_printf("uid %u", (unsigned)st.st_uid);

        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "iscsi: credentials: %s is owned by %s, who could change the secret: it must be "
                    "root's%s; chown root %s (and chmod 600)", path, owner,
                    geteuid() != 0 ? " or yours" : "", path);
        return false;
    }
    if (st.st_mode & 077) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "iscsi: credentials: %s is open to group or others (mode %04o): it must be "
                    "readable by its owner only; chmod 600 %s", path, (unsigned)(st.st_mode & 07777), path);
        return false;
    }
    return true;
}

VsIscsiAuth *
vs_iscsi_auth_load(const char *path, GError **error)
{
    g_autoptr(VsIscsiAuth) auth = g_new0(VsIscsiAuth, 1);
    g_autofree char *text = NULL;
    gsize len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0) {
        int e = errno;
        g_set_error(error, VS_ERROR, e == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                    "iscsi: credentials: %s: %s", path, g_strerror(e));
        return NULL;
    }
    /* The file we read, not whatever the path names by then. */
    if (!credentials_file_ok(fd, path, error)) {
        close(fd);
        return NULL;
    }
    text = g_malloc0(CREDENTIALS_MAX + 1);
    for (ssize_t n; len < CREDENTIALS_MAX; len += (gsize)n) {
        n = read(fd, text + len, CREDENTIALS_MAX - len);
        if (n < 0 && errno == EINTR) {
            n = 0;
            continue;
        }
        if (n < 0) {
            int e = errno;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "iscsi: credentials: %s: %s", path,
                        g_strerror(e));
            close(fd);
            return NULL;
        }
        if (n == 0)
            break;
    }
    close(fd);
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        g_strstrip(line);
        if (g_str_has_prefix(line, "user=")) {
            g_free((char *)auth->user);
            auth->user = g_strdup(line + 5);
        } else if (g_str_has_prefix(line, "password=")) {
            g_free((char *)auth->password);
            auth->password = g_strdup(line + 9);
        }
    }
    explicit_bzero(text, CREDENTIALS_MAX);
    if (!auth->user || !auth->password || !*auth->user) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "iscsi: credentials: %s: needs a user=NAME and a password=SECRET line", path);
        return NULL;
    }
    return g_steal_pointer(&auth);
}
