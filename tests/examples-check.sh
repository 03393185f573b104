#!/bin/bash
# examples-check.sh -- keeps examples/ honest: every libvirt XML there validates against
# libvirt's own schemas (virt-xml-validate, the type taken from the root element), every
# `virtsnap SUBCOMMAND --option` the systemd units and the cron file run is an option that
# subcommand's --help lists, and examples/snapcreator's plug-in wrapper and configuration
# work with this virtsnap (below). Needs no daemon and no root.
set -uo pipefail
ROOT=${VS_SOURCE_ROOT:?}
BIN=${VIRTSNAP:?}
fail=0
command -v virt-xml-validate >/dev/null || { echo "SKIP: virt-xml-validate missing (libvirt-clients)"; exit 77; }

for f in "$ROOT"/examples/libvirt/*.xml; do
  root=$(xmllint --xpath 'name(/*)' "$f" 2>/dev/null)
  case "$root" in
    pool) type=storagepool ;;
    volume) type=storagevol ;;
    domain|secret|domainbackup|domaincheckpoint|domainsnapshot) type=$root ;;
    *) echo "FAIL: $f: root element '$root' has no libvirt schema here"; fail=1; continue ;;
  esac
  if out=$(virt-xml-validate "$f" "$type" 2>&1); then
    echo "ok: $(basename "$f") validates as $type"
  else
    echo "FAIL: $f does not validate as $type: $out"; fail=1
  fi
done

# The virtsnap commands of the units and the cron file: "virtsnap SUB ARGS" up to a shell
# operator or redirection.
cmds=$(grep -h -o 'virtsnap [a-z]\+[^>&|;]*' "$ROOT"/examples/systemd/*.service "$ROOT"/examples/cron/* |
       grep -v '^virtsnap [a-z]*\.' | sort -u)
[ -n "$cmds" ] || { echo "FAIL: no virtsnap command found in examples/systemd or examples/cron"; exit 1; }
while read -r _ sub args; do
  help=$("$BIN" "$sub" --help 2>&1) || { echo "FAIL: virtsnap $sub --help: $help"; fail=1; continue; }
  for opt in $args; do
    case "$opt" in --*) ;; *) continue ;; esac
    name=${opt%%=*}
    if grep -q -- "$name\b" <<<"$help"; then
      echo "ok: virtsnap $sub knows $name"
    else
      echo "FAIL: examples run 'virtsnap $sub $name', which virtsnap $sub --help does not list"; fail=1
    fi
  done
done <<<"$cmds"

# examples/snapcreator: kvm.sh (Snap Creator's plug-ins/native/) parses and hands its
# arguments to `virtsnap sc-plugin`: run with this build's virtsnap first on PATH it answers
# -describe, and with no virtsnap it says so in an SC_MSG line and fails. kvm.conf is
# KEY=VALUE lines, no credentials; each key is either the framework's (the guide's names,
# listed here) or one virtsnap reads, and those lines, as a file of their own, are loaded
# by `virtsnap --config`, which refuses an unknown key or a bad value (a misspelt key is
# shown to be refused, so that this check can fail).
SC=$ROOT/examples/snapcreator
SC_KEYS=" CONFIG_TYPE SNAME SNAP_TIMESTAMP_ONLY VOLUMES VOLUME_GROUPS NTAP_SNAPSHOT_RETENTIONS
  NTAP_USERS NTAP_PWD_PROTECTION NTAP_TIMEOUT TRANSPORT PORT LOG_NUM SC_AGENT SC_AGENT_UNQUIESCE_TIMEOUT
  SC_AGENT_WATCHDOG_ENABLE SC_AGENT_LOG_ENABLE APP_NAME APP_IGNORE_ERROR APP_AUTO_DISCOVERY
  APP_CONF_PERSISTENCE APP_DEFINED_BACKUP APP_DEFINED_MOUNT APP_DEFINED_UMOUNT APP_DEFINED_CLONE "
SC_KEYS=$(echo "$SC_KEYS" | tr -s '[:space:]' ' ')     # one space between names, for " $key " below
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if sh -n "$SC/kvm.sh" && bash -n "$SC/kvm.sh" && [ -x "$SC/kvm.sh" ]; then
  echo "ok: kvm.sh parses and is executable"
else
  echo "FAIL: examples/snapcreator/kvm.sh does not parse or is not executable"; fail=1
fi
ln -s "$BIN" "$tmp/virtsnap"
out=$(cd "$tmp" && env -u VIRTSNAP PATH="$tmp:/usr/bin:/bin" "$SC/kvm.sh" -describe 2>&1)
if grep -q '^SC_DESCRIBE#OP#quiesce$' <<<"$out"; then
  echo "ok: kvm.sh -describe reaches virtsnap sc-plugin"
else
  echo "FAIL: kvm.sh -describe with $BIN on PATH: $out"; fail=1
fi
if out=$(VIRTSNAP=$tmp/none "$SC/kvm.sh" -quiesce 2>&1); then
  echo "FAIL: kvm.sh without virtsnap succeeded: $out"; fail=1
elif grep -q '^SC_MSG#ERROR#.*virtsnap not found' <<<"$out"; then
  echo "ok: kvm.sh without virtsnap fails with an SC_MSG line"
else
  echo "FAIL: kvm.sh without virtsnap: $out"; fail=1
fi
: > "$tmp/vs.conf"
n=0
while IFS= read -r line; do
  n=$((n + 1))
  case "$line" in ''|'#'*) continue ;; esac
  key=${line%%=*}
  if [ "$key" = "$line" ] || ! [[ "$key" =~ ^[A-Z][A-Z0-9_]*$ ]]; then
    echo "FAIL: kvm.conf:$n: not KEY=VALUE: $line"; fail=1
  elif [[ "$key" =~ ^(KVM_|VIRTSNAP_|SC_AGENT_TIMEOUT$|APP_DEFINED_RESTORE$|LIBVIRT_DEFAULT_URI$) ]]; then
    echo "$line" >> "$tmp/vs.conf"
  elif [[ "$SC_KEYS" != *" $key "* ]]; then
    echo "FAIL: kvm.conf:$n: $key is neither a Snap Creator key nor one virtsnap reads"; fail=1
  fi
  if [[ "$key" =~ (USERS|PASSWORD|PASSWD|SECRET) ]]; then
    echo "FAIL: kvm.conf:$n: $key: an example holds no credentials"; fail=1
  fi
done < "$SC/kvm.conf"
chmod 600 "$tmp/vs.conf"
grep -q '^KVM_VM_MAPPING=' "$tmp/vs.conf" || { echo "FAIL: kvm.conf sets no KVM_VM_MAPPING"; fail=1; }
if out=$(env -u KVM_VM_MAPPING -u KVM_RESTORE_VM_LIST -u KVM_VM_CONFIG_DIR -u KVM_CMD_RETRY_COUNT \
         -u SC_AGENT_TIMEOUT -u APP_DEFINED_RESTORE "$BIN" --config "$tmp/vs.conf" list --help 2>&1); then
  echo "ok: virtsnap --config loads kvm.conf's $(wc -l < "$tmp/vs.conf") keys of its own"
else
  echo "FAIL: virtsnap --config refuses kvm.conf's keys: $out"; fail=1
fi
{ cat "$tmp/vs.conf"; echo "KVM_VM_MAPING=web1:array1:/vol/vol_vms/web1.qcow2;"; } > "$tmp/bad.conf"
chmod 600 "$tmp/bad.conf"
out=$("$BIN" --config "$tmp/bad.conf" list --help 2>&1); rc=$?
if [ "$rc" = 2 ] && grep -q 'KVM_VM_MAPING' <<<"$out"; then
  echo "ok: a misspelt key is refused (exit 2, named)"
else
  echo "FAIL: virtsnap --config took a misspelt key (exit $rc): $out"; fail=1
fi

grep -q '^user=' "$ROOT/examples/iscsi-auth.conf" && grep -q '^password=' "$ROOT/examples/iscsi-auth.conf" ||
  { echo "FAIL: examples/iscsi-auth.conf lacks user= or password="; fail=1; }
exit $fail
