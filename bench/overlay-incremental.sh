#!/usr/bin/env bash
# Incremental backup of a qcow2 overlay holding ~1% changes, against the full
# backup of its base, in the same run (the overlay is its own change source).
# Usage: bench/overlay-incremental.sh RAW_IMAGE [WORKDIR]
set -e
here=$(cd "$(dirname "$0")" && pwd)
src=$(readlink -f "${1:?usage: bench/overlay-incremental.sh RAW_IMAGE [WORKDIR]}"); work=${2:-/var/tmp/vdsnap-overlay-bench}; rm -rf "$work"; mkdir -p "$work"; cd "$work"
qemu-img convert -f raw -O qcow2 "$src" base.qcow2
export VDSNAP_REPOSITORY=$work/repo VDSNAP_PASSWORD=x
V() { node "$here/../bin/run.js" "$@"; }
V init -q
cat base.qcow2 > /dev/null
t0=$(date +%s.%N); V backup base.qcow2 --disk ov --json > full.json; t1=$(date +%s.%N)
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
# ~1% of the disk: writes of 64 KiB at random 64 KiB-aligned offsets
pieces=$(( $(stat -c %s "$src") / 65536 ))
cmds=(); for i in $(seq 1 $(( pieces / 100 + 1 ))); do cmds+=(-c "write -P $((i%250+1)) $(( (RANDOM*32768+RANDOM) % pieces * 65536 )) 64k"); done
qemu-io "${cmds[@]}" top.qcow2 > /dev/null
t2=$(date +%s.%N); V backup top.qcow2 --disk ov --json > inc.json; t3=$(date +%s.%N)
t4=$(date +%s.%N); V backup top.qcow2 --disk ov2 --json > full2.json; t5=$(date +%s.%N)
node -e "
const f=require('./full.json'), i=require('./inc.json');
console.log(JSON.stringify({fullS: +($t1-$t0).toFixed(2), overlayIncS: +($t3-$t2).toFixed(2), ratio: +(($t3-$t2)/($t1-$t0)).toFixed(3), changeSource: i.changeSource, incBytesRead: i.bytesRead, incChangedBlocks: i.changedBlocks, incBytesNew: i.bytesNew, overlayAsNewDiskS: +($t5-$t4).toFixed(2)}))"
