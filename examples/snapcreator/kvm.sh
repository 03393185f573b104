#!/bin/sh
# kvm.sh -- Snap Creator native plug-in for KVM hosts, for the Agent's plug-ins/native/
# directory (docs/snapcreator.md). It hands the framework's call as it is (-describe,
# -quiesce, -unquiesce, -discover, -scdump, -restore) to `virtsnap sc-plugin`, which reads
# the KVM_* parameters from the environment the framework sets, prints the SC_* lines and
# exits 0, non-zero on failure, 99 for an operation it does not implement. virtsnap is
# looked up on PATH (with the usual system directories added, since an agent may run with
# a bare one); VIRTSNAP=/path/to/virtsnap overrides. It holds no credentials: virtsnap
# reaches libvirt and the guests' agents as root on this host.
set -eu
PATH=${PATH:-/usr/bin:/bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
bin=${VIRTSNAP:-$(command -v virtsnap || true)}
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "SC_MSG#ERROR#$(date -u +%Y-%m-%dT%H:%M:%SZ)#kvm.sh: virtsnap not found (PATH=$PATH): install it, or set VIRTSNAP in the agent's environment"
  exit 1
fi
exec "$bin" sc-plugin "$@"
