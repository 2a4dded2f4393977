#!/usr/bin/env bash
# The main job on an embedded default: build a sample disk image with a real
# ext4 file system, init an encrypted repository, back the image up, change
# some blocks, back it up again, restore both snapshots and verify them byte
# for byte. Work happens in $VDSNAP_DEMO_DIR (default /tmp/vdsnap-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh mkfs.ext4:e2fsprogs
root=$(pwd)
demo=${VDSNAP_DEMO_DIR:-/tmp/vdsnap-demo}
vdsnap() { node "$root/bin/run.js" "$@"; }
say() { printf '\n== %s\n' "$*"; }

rm -rf "$demo"
mkdir -p "$demo"
export VDSNAP_REPOSITORY="$demo/repo" VDSNAP_PASSWORD="demo password"

say "building a 256 MiB sparse disk image with an ext4 file system (mkfs.ext4 -d from this project's files)"
truncate -s 256M "$demo/disk.img"
mkfs.ext4 -q -F -d "$root/node_modules" "$demo/disk.img"
vdsnap info "$demo/disk.img"

say "vdsnap init (encrypted, password from VDSNAP_PASSWORD)"
vdsnap init

say "first backup (full)"
vdsnap backup "$demo/disk.img" --disk demo --tag first
cp --sparse=always "$demo/disk.img" "$demo/expected-1.img"

say "changing the disk: 3 MiB rewritten at 100 MiB, 1 MiB zeroed at 40 MiB"
dd if=/dev/urandom of="$demo/disk.img" bs=1M count=3 seek=100 conv=notrunc status=none
dd if=/dev/zero of="$demo/disk.img" bs=1M count=1 seek=40 conv=notrunc status=none

say "second backup (incremental: only changed blocks are stored)"
vdsnap backup "$demo/disk.img" --disk demo --tag second
cp --sparse=always "$demo/disk.img" "$demo/expected-2.img"

say "snapshots"
vdsnap snapshots
first=$(vdsnap snapshots --json | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8"))[0].id)')
vdsnap diff "$first" demo@latest

say "restoring both snapshots and comparing them byte for byte"
vdsnap restore "$first" --to "$demo/restored-1.img"
vdsnap restore demo@latest --to "$demo/restored-2.img"
cmp "$demo/restored-1.img" "$demo/expected-1.img"
cmp "$demo/restored-2.img" "$demo/expected-2.img"
echo "both restores are identical to the source at backup time"

say "check --read-data and stats"
vdsnap check --read-data
vdsnap stats
say "demo complete: everything is in $demo"
