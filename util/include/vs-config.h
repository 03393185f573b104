/* virtsnap.conf: one configuration file for every command (docs/virtsnap.1,
 * CONFIGURATION FILE). KEY=VALUE lines, '#' comments and blank lines; the keys
 * are virtsnap's own (named as the environment variables virtsnap already
 * reads: VIRTSNAP_REPO, VIRTSNAP_STATE_DIR, LIBVIRT_DEFAULT_URI, ...) and the
 * Snap Creator KVM plug-in's (KVM_VM_MAPPING, KVM_RESTORE_VM_LIST,
 * KVM_VM_CONFIG_DIR, KVM_CMD_RETRY_COUNT, SC_AGENT_TIMEOUT,
 * APP_DEFINED_RESTORE). A value's precedence is: the command's option, then
 * the environment variable of the key's name, then the file. Every value, from
 * the file or the environment, is checked when the configuration is loaded: an
 * unknown key or a bad value is an error naming FILE:LINE (or the
 * environment), the key and what to give instead (VS_ERROR_INVALID_ARG: exit 2). */
#pragma once

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

#define VS_CONFIG_DEFAULT "/etc/virtsnap/virtsnap.conf"

typedef struct _VsConfig VsConfig;

/* Loads PATH (NULL: VS_CONFIG_DEFAULT, whose absence is an empty file; a PATH
 * that does not exist is an error), refused unless root (or the caller) owns
 * it and group and others cannot write it (vs-trusted.h): its paths are used
 * as root. The environment's values of the known keys override the file's. */
VsConfig *vs_config_load(const char *path, GError **error);
/* The same from TEXT (LEN bytes, -1: NUL-terminated) read from FILE (for the
 * messages; NULL: no file) and the environment ENVP (NULL: none; see
 * g_get_environ): for the unit tests and for callers that read the file
 * themselves. */
VsConfig *vs_config_parse(const char *file, const char *text, gssize len, const char *const *envp,
                          GError **error);
void vs_config_free(VsConfig *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsConfig, vs_config_free)

/* The file it was read from, NULL when none. */
const char *vs_config_file(const VsConfig *c);
/* KEY's value, from the environment or else the file, NULL when neither
 * gives it (or C is NULL). KEY must be one of the known keys. */
const char *vs_config_get(const VsConfig *c, const char *key);
/* OPTION when the command's option gave one (non-NULL), else vs_config_get. */
const char *vs_config_value(const VsConfig *c, const char *key, const char *option);
/* KEY's value as a number (the checks of the key done at load), DFLT when
 * unset. vs_config_double: for the keys in seconds with a fraction. */
int vs_config_int(const VsConfig *c, const char *key, int dflt);
double vs_config_double(const VsConfig *c, const char *key, double dflt);
/* APP_DEFINED_RESTORE: Y (true) or N, DFLT when unset. */
bool vs_config_bool(const VsConfig *c, const char *key, bool dflt);
/* The VM names of KVM_VM_MAPPING (the part before the first ':' of each
 * ';'-separated entry, percent-decoded as `discover --mapping` escapes it;
 * each once, in order) or KVM_RESTORE_VM_LIST (',' or ';' separated); NULL
 * when the key is unset. */
const char *const *vs_config_names(const VsConfig *c, const char *key);
/* Where KEY's value came from, for messages: "FILE:LINE", "environment", or
 * NULL when unset. */
const char *vs_config_origin(const VsConfig *c, const char *key);
/* Sets *ERROR (VS_ERROR_INVALID_ARG) to "config: ORIGIN: KEY: MESSAGE", as a
 * check the caller makes of KEY's value (a VM that does not exist) words it. */
void vs_config_error(const VsConfig *c, const char *key, GError **error, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

/* The known keys, NULL-terminated, in the order the man page lists them. */
const char *const *vs_config_keys(void);

G_END_DECLS
