#!/usr/bin/env bash
# Builds (or reuses) the benchmark image set in $1/images:
#   base.img   4 GiB ext4 made with mkfs.ext4 -d from ~2.5 GB of real files
#              (/usr/share, /usr/bin, /usr/lib, in path order)
#   p1.img     base with 1% of its non-zero 64 KiB pieces overwritten (seed 101)
#   p5.img     base with 5% overwritten (seed 105)
#   clone.img  base with 10% overwritten (seed 110): shares ~90% with base
#   *.ranges.json  the overwritten ranges, for --changed-blocks
#   big64.img  64 GiB sparse image holding base.img's data in 4 pieces of
#              1 GiB at 0, 16, 32 and 48 GiB (same data, 16x the size)
# Reused when images/params matches the parameters below.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
dir=$1/images
PARAMS="v1 size=4G stage_bytes=2400000000 sources=/usr/share,/usr/bin,/usr/lib variants=p1:1:101,p5:5:105,clone:10:110 big=64G@0,16,32,48"
mkdir -p "$dir"
if [ -f "$dir/params" ] && [ "$(cat "$dir/params")" = "$PARAMS" ] \
   && [ -f "$dir/base.img" ] && [ -f "$dir/p1.img" ] && [ -f "$dir/p5.img" ] \
   && [ -f "$dir/clone.img" ] && [ -f "$dir/big64.img" ] && [ -f "$dir/variants.json" ]; then
  echo "images: reusing $dir (same parameters)" >&2
  exit 0
fi
rm -f "$dir/params"

avail=$(df -B1 --output=avail "$dir" | tail -1)
if [ "$avail" -lt $((40 * 1024 * 1024 * 1024)) ]; then
  echo "images: only $((avail / 1024 / 1024 / 1024)) GiB free in $dir; the benchmark needs about 40 GiB" >&2
  exit 1
fi

stage_bytes=2400000000
stage="$dir/staging"
rm -rf "$stage" "$dir"/*.img "$dir"/*.tmp
mkdir -p "$stage"
echo "images: staging ~$((stage_bytes / 1000000)) MB of files from /usr/share, /usr/bin, /usr/lib" >&2
list="$dir/staging.list"
# Regular files only, in a deterministic order, until the byte budget is used.
for root in /usr/share /usr/bin /usr/lib; do
  find "$root" -xdev -type f -readable -printf '%s\t%p\n' 2>/dev/null | LC_ALL=C sort -t$'\t' -k2
done | { awk -F'\t' -v max="$stage_bytes" '{ if (sum + $1 > max) exit; sum += $1; print substr($2, 2) }'; cat >/dev/null; } > "$list"
tar -C / -cf - --ignore-failed-read -T "$list" 2>/dev/null | tar -C "$stage" -xf - 2>/dev/null || true
staged=$(du -sb "$stage" | cut -f1)
echo "images: staged $staged bytes ($(wc -l < "$list") files)" >&2

echo "images: mkfs.ext4 -d (4 GiB)" >&2
truncate -s 4G "$dir/base.img.tmp"
mkfs.ext4 -q -F -E nodiscard -d "$stage" "$dir/base.img.tmp"
mv "$dir/base.img.tmp" "$dir/base.img"
rm -rf "$stage" "$list"

echo "images: variants (1%, 5%, clone 10%)" >&2
node "$bench/variants.mjs" "$dir/base.img" "$dir" p1:1:101 p5:5:105 clone:10:110

echo "images: 64 GiB sparse image" >&2
rm -f "$dir/big64.img.tmp"
truncate -s 64G "$dir/big64.img.tmp"
for i in 0 1 2 3; do
  # 1 GiB piece i of base.img (256 x 4 MiB) at i * 16 GiB (i * 4096 x 4 MiB)
  dd if="$dir/base.img" of="$dir/big64.img.tmp" bs=4M skip=$((i * 256)) seek=$((i * 4096)) count=256 \
     conv=notrunc,sparse status=none
done
mv "$dir/big64.img.tmp" "$dir/big64.img"
echo "$PARAMS" > "$dir/params"
echo "images: done" >&2
