#!/bin/bash
# ontap-hook.sh OP -- a virtsnap storage snapshot hook for NetApp ONTAP (9.8 or later) over its REST
# API, for disks that are files on an NFS export of an ONTAP volume (libvirt netfs pools, NFS
# network disks).
#
#   WRITTEN AGAINST THE ONTAP REST API DOCUMENTATION (docs.netapp.com, "ONTAP REST API reference":
#   /api/storage/volumes, /api/storage/volumes/{uuid}/snapshots, /api/cluster/jobs); NOT TESTED
#   AGAINST AN ARRAY. Try every operation on a scratch volume first.
#
# The contract (environment in, key=value lines out, exit 3 = unsupported) is virtsnap's:
# block/include/vs-snapshot.h and docs/snapshots.md. The volume is found by the disk's export:
# VIRTSNAP_NFS_EXPORT is the volume's junction path (nas.path) in the SVM.
#   create    POST .../volumes/{uuid}/snapshots {"name": "vs-LABEL"}       handle=VOLUUID:vs-LABEL
#   delete    DELETE .../volumes/{uuid}/snapshots/{snapshot uuid}
#   exists    GET .../volumes/{uuid}/snapshots?name=...                     exists=yes|no
#   expose    url=nfs://SERVER/EXPORT/.snapshot/NAME/PATH (the volume's .snapshot directory must be
#             visible to NFS clients: `volume modify -snapdir-access true`)
#   clone     POST /api/storage/volumes {"clone": {"parent_volume", "parent_snapshot"}}: a FlexClone
#             mounted at /NAME in the SVM; url=nfs://SERVER/NAME/PATH
#   rollback  PATCH .../volumes/{uuid} {"restore_to": {"snapshot": {"name": ...}}} restores the
#             WHOLE VOLUME (every disk on it): refused (exit 3) unless ONTAP_ALLOW_VOLUME_RESTORE=1.
#
# VIRTSNAP_HOOK_CONFIG names a root-only (0600) file of KEY=VALUE lines, read, never sourced:
#   ONTAP_HOST=cluster-mgmt.example.com   ONTAP_SVM=svm1   ONTAP_USER=virtsnap
#   ONTAP_PASSWORD=...                    ONTAP_CACERT=/etc/virtsnap/ontap-ca.pem (optional)
#   ONTAP_ALLOW_VOLUME_RESTORE=0
# The password reaches curl on its stdin (`curl --config -`), never in argv or the environment.
set -euo pipefail
op=${1:-}
die() { echo "ontap-hook: ${op:-?}: $*" >&2; exit "${2:-1}"; }
cfg=${VIRTSNAP_HOOK_CONFIG:-}
[ -n "$cfg" ] && [ -f "$cfg" ] || die "VIRTSNAP_HOOK_CONFIG does not name a file"
[ "$(stat -c %a "$cfg")" = 600 ] || [ "$(stat -c %a "$cfg")" = 400 ] || die "$cfg must be mode 0600 or 0400"
declare -A C=()
while IFS='=' read -r k v; do [[ "$k" =~ ^ONTAP_[A-Z_]+$ ]] && C[$k]=$v; done < "$cfg"
for k in ONTAP_HOST ONTAP_SVM ONTAP_USER ONTAP_PASSWORD; do [ -n "${C[$k]:-}" ] || die "$cfg: $k missing"; done
[ "${VIRTSNAP_DISK_KIND:-}" = nfs ] || die "only NFS disks (this is a ${VIRTSNAP_DISK_KIND:-?} disk)" 3
command -v jq >/dev/null || die "jq missing"

# api METHOD PATH [JSON]: the response body on stdout; an HTTP error is fatal with ONTAP's message.
api() {
  local out code cred="${C[ONTAP_USER]}:${C[ONTAP_PASSWORD]}"
  cred=${cred//\\/\\\\}; cred=${cred//\"/\\\"}      # curl config quoting: \ and "
  out=$(printf 'user = "%s"\n' "$cred" |
    curl -sS --config - -X "$1" ${C[ONTAP_CACERT]:+--cacert "${C[ONTAP_CACERT]}"} \
      -H 'Accept: application/json' ${3:+-H 'Content-Type: application/json' --data "$3"} \
      -w '\n%{http_code}' "https://${C[ONTAP_HOST]}/api$2") || die "$1 $2: curl failed"
  code=${out##*$'\n'}; out=${out%$'\n'*}
  case "$code" in 2??) printf '%s' "$out" ;;
    *) die "$1 $2: HTTP $code: $(jq -r '.error.message // empty' <<<"$out" 2>/dev/null | head -c 300)" ;; esac
}
# call METHOD PATH [JSON]: api, then the job it started (ONTAP answers long operations with a
# 202 and a job) polled until it ends. Never `f "$(api ...)"`: a failed substitution in an
# argument does not stop the script (set -e); an assignment does.
call() {
  local body uuid state
  body=$(api "$@")
  uuid=$(jq -r '.job.uuid // empty' <<<"$body"); [ -n "$uuid" ] || return 0
  for _ in $(seq 120); do
    state=$(api GET "/cluster/jobs/$uuid?fields=state,message")
    case "$(jq -r .state <<<"$state")" in
      success) return 0 ;;
      failure) die "job $uuid: $(jq -r .message <<<"$state")" ;;
    esac
    sleep 1
  done
  die "job $uuid did not finish in 120 s"
}
vol_uuid() {
  local r
  r=$(api GET "/storage/volumes?svm.name=${C[ONTAP_SVM]}&nas.path=$VIRTSNAP_NFS_EXPORT&fields=uuid")
  [ "$(jq -r .num_records <<<"$r")" = 1 ] || die "no single volume at junction $VIRTSNAP_NFS_EXPORT in ${C[ONTAP_SVM]}"
  jq -r '.records[0].uuid' <<<"$r"
}
# From the handle VOLUUID:NAME, checked: it came back from a repository.
parse_handle() {
  [[ "${VIRTSNAP_SNAP_HANDLE:-}" =~ ^([0-9a-f-]{36}):(vs-[A-Za-z0-9._-]+)$ ]] || die "bad handle '${VIRTSNAP_SNAP_HANDLE:-}'"
  VOL=${BASH_REMATCH[1]}; SNAP=${BASH_REMATCH[2]}
}
snap_uuid() { api GET "/storage/volumes/$VOL/snapshots?name=$SNAP&fields=uuid" | jq -r '.records[0].uuid // empty'; }

case "$op" in
create)
  VOL=$(vol_uuid); SNAP=vs-$VIRTSNAP_SNAP_LABEL
  call POST "/storage/volumes/$VOL/snapshots" "$(jq -nc --arg n "$SNAP" '{name: $n}')"
  echo "handle=$VOL:$SNAP" ;;
delete)
  parse_handle; su=$(snap_uuid); [ -n "$su" ] || die "no snapshot $SNAP"
  call DELETE "/storage/volumes/$VOL/snapshots/$su" ;;
exists)
  parse_handle; su=$(snap_uuid)     # a failed query must fail, not answer "no"
  if [ -n "$su" ]; then echo exists=yes; else echo exists=no; fi ;;
expose)
  parse_handle; su=$(snap_uuid); [ -n "$su" ] || die "no snapshot $SNAP"
  echo "url=nfs://$VIRTSNAP_NFS_SERVER$VIRTSNAP_NFS_EXPORT/.snapshot/$SNAP/${VIRTSNAP_NFS_PATH#/}" ;;
clone)
  parse_handle
  [[ "${VIRTSNAP_CLONE_NAME:-}" =~ ^[A-Za-z0-9_]+$ ]] || die "clone name must be [A-Za-z0-9_] for an ONTAP volume"
  body=$(jq -nc --arg n "$VIRTSNAP_CLONE_NAME" --arg svm "${C[ONTAP_SVM]}" --arg p "$VOL" --arg s "$SNAP" \
    '{name: $n, svm: {name: $svm}, nas: {path: ("/" + $n)},
      clone: {is_flexclone: true, parent_volume: {uuid: $p}, parent_snapshot: {name: $s}}}')
  call POST /storage/volumes "$body"
  echo "url=nfs://$VIRTSNAP_NFS_SERVER/$VIRTSNAP_CLONE_NAME/${VIRTSNAP_NFS_PATH#/}" ;;
rollback)
  parse_handle
  [ "${C[ONTAP_ALLOW_VOLUME_RESTORE]:-0}" = 1 ] ||
    die "a rollback restores the whole volume; set ONTAP_ALLOW_VOLUME_RESTORE=1 if that is wanted" 3
  call PATCH "/storage/volumes/$VOL" "$(jq -nc --arg s "$SNAP" '{restore_to: {snapshot: {name: $s}}}')" ;;
*) die "operation '$op' not supported" 3 ;;
esac
