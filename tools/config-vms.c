/* The VMs a configuration selects (KVM_VM_MAPPING for backup, KVM_RESTORE_VM_LIST
 * for restore) when the command line names none, each checked to exist before
 * anything is done: a mapping that names a VM gone or misspelt is an error
 * naming the line to fix, not a backup that quietly leaves the VM out. */
#include "config.h"
#include "virtsnap.h"

const char *const *
vs_config_vms(virConnectPtr conn, const char *key, bool must_exist, GError **error)
{
    const char *const *names = vs_config_names(vs_cli_config(), key);

    for (guint i = 0; names && must_exist && names[i]; i++) {
        g_autoptr(GError) err = NULL;
        int r = vs_domain_exists(conn, names[i], &err);

        if (r < 0) {
            g_propagate_error(error, g_steal_pointer(&err));
            return NULL;
        }
        if (r == 0) {
            vs_config_error(vs_cli_config(), key, error, "VM '%s' does not exist on %s: fix or remove its "
                            "entry (virtsnap discover --mapping prints the mapping of the VMs there are)",
                            names[i], vs_default_uri(vs_cfg("LIBVIRT_DEFAULT_URI", NULL)));
            return NULL;
        }
    }
    return names;
}
