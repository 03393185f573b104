/* The one error domain of virtsnap. Every fallible function takes `GError **error`
 * last and returns FALSE/NULL/-1 on failure; messages start with the operation's
 * name ("discover: ...", "xml: domain.xml: ...") so that a user reading only the
 * message knows what failed and on what. The first error set wins: callers never
 * overwrite an error that is already set (g_set_error would warn), and cleanup
 * paths use their own local GError so that they cannot mask the first one. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VS_ERROR (vs_error_quark())
GQuark vs_error_quark(void);

typedef enum {
    VS_ERROR_FAILED,        /* anything not covered below */
    VS_ERROR_INVALID_ARG,   /* bad user input: options, names, values */
    VS_ERROR_XML,           /* malformed or unsupported XML */
    VS_ERROR_NOT_FOUND,     /* a named domain, disk, pool, backup does not exist */
    VS_ERROR_LIBVIRT,       /* libvirt refused or failed */
    VS_ERROR_AGENT,         /* qemu-guest-agent missing, silent or failing */
    VS_ERROR_TIMEOUT,       /* a bounded wait ran out */
    VS_ERROR_IO,            /* read/write/open failure of a file or target */
    VS_ERROR_UNSUPPORTED,   /* a configuration virtsnap cannot handle (yet) */
    VS_ERROR_BUSY,          /* someone else holds what is needed (a lock): try again later */
    VS_ERROR_CONNECTION,    /* the libvirt connection closed (libvirtd restarted or stopped) */
    VS_ERROR_STOPPED,       /* the domain stopped (shut down, or its QEMU died) under the step */
    VS_ERROR_INTERRUPTED,   /* SIGINT, SIGTERM or SIGHUP asked the run to stop (vs-interrupt.h) */
    VS_ERROR_UNREACHABLE,   /* a storage server or target cannot be connected to (nfs, iscsi) */
    VS_ERROR_DENIED,        /* a server refused access: permissions, export options, CHAP */
} VsErrorCode;

/* Prefix an existing error's message with "PREFIX: " (printf-style). A no-op
 * when error or *error is NULL. */
void vs_error_prefix(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

G_END_DECLS
