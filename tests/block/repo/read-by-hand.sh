#!/bin/bash
# Reads one disk of a backup out of a virtsnap repository with nothing but
# bash, jq, zstd, sha256sum and dd: the worked example of
# docs/repository-format.md, run by test-verify-export so that it stays true.
# usage: read-by-hand.sh REPO BACKUP-ID DOMAIN DISK OUT.raw
set -euo pipefail
repo=$1 id=$2 domain=$3 disk=$4 out=$5
manifest="$repo/backups/$id.json"
trap 'rm -f "$out.chunk"' EXIT

# 1. Only a format this script understands.
jq -e '.format == "virtsnap-manifest" and .version == 1' "$manifest" > /dev/null

# 2. The disk's size, and an empty (sparse) file of that size: gaps in the
#    chunk list are zeros.
sel='.domains[] | select(.name == $d) | .disks[] | select(.target == $t)'
size=$(jq -r --arg d "$domain" --arg t "$disk" "$sel | .virtual_size" "$manifest")
dd if=/dev/null of="$out" bs=1 seek="$size" status=none

# 3. Each chunk: decompress, check length and SHA-256, write at its offset.
jq -r --arg d "$domain" --arg t "$disk" "$sel | .chunks[] | \"\(.[0]) \(.[1]) \(.[2])\"" "$manifest" |
while read -r offset length hash; do
    zstd -dcq "$repo/chunks/${hash:0:2}/$hash" > "$out.chunk"
    if [ "$(wc -c < "$out.chunk")" -ne "$length" ] ||
       ! echo "$hash  $out.chunk" | sha256sum -c --status; then
        echo "chunk $hash (offset $offset) is damaged" >&2
        exit 1
    fi
    dd if="$out.chunk" of="$out" bs=1M seek="$offset" oflag=seek_bytes conv=notrunc,sparse status=none
done
