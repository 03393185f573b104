#!/bin/bash
# examples-check.sh -- keeps examples/ honest: every libvirt XML there validates against
# libvirt's own schemas (virt-xml-validate, the type taken from the root element), and every
# `virtsnap SUBCOMMAND --option` the systemd units and the cron file run is an option that
# subcommand's --help lists. Needs no daemon and no root.
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

grep -q '^user=' "$ROOT/examples/iscsi-auth.conf" && grep -q '^password=' "$ROOT/examples/iscsi-auth.conf" ||
  { echo "FAIL: examples/iscsi-auth.conf lacks user= or password="; fail=1; }
exit $fail
