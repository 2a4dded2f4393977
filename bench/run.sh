#!/usr/bin/env bash
# npm run bench [-- --block-sizes] [-- --no-others]
# Installs what is missing (restic, borg, e2fsprogs, zstd, GNU time), builds
# vdsnap, builds or reuses the image set in ${VDSNAP_BENCH_DIR:-/var/tmp/vdsnap-bench},
# then measures vdsnap, restic and borg and writes BENCHMARKS.md and
# bench/results/latest.json. See BENCHMARKS.md for the method.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export VDSNAP_BENCH_DIR=${VDSNAP_BENCH_DIR:-/var/tmp/vdsnap-bench}
mkdir -p "$VDSNAP_BENCH_DIR"

# Set-up (Debian packages when missing, npm ci when the lock changed, build).
# The tree may be mid-edit by someone else: if the build fails but a build
# exists, measure that one.
if ! bash scripts/setup.sh restic:restic borg:borgbackup mkfs.ext4:e2fsprogs zstd:zstd cmp:diffutils qemu-img:qemu-utils qemu-nbd:qemu-utils nbdcopy:libnbd-bin; then
  if [ -f dist/commands/backup.js ] && [ -d node_modules ]; then
    echo "bench: set-up/build failed; measuring the existing dist/ build" >&2
  else
    exit 1
  fi
fi
if [ ! -x /usr/bin/time ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "bench: installing time (apt-get)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends time >&2
fi

# Freeze the build under test: a copy of bin/, dist/, the manifest and the
# native helper, so a rebuild by someone else during the run changes nothing.
frozen="$VDSNAP_BENCH_DIR/vdsnap-under-test"
rm -rf "$frozen"
mkdir -p "$frozen/build"
cp -a bin dist package.json oclif.manifest.json "$frozen/"
[ -d build/Release ] && cp -a build/Release "$frozen/build/"
ln -s "$root/node_modules" "$frozen/node_modules"
export VDSNAP_BENCH_BIN="$frozen/bin/run.js"
node "$VDSNAP_BENCH_BIN" --version >/dev/null

bash bench/images.sh "$VDSNAP_BENCH_DIR"
export VDSNAP_BENCH_CMD="npm run bench${*:+ -- $*}"
# serve and archive figures first: bench.mjs renders bench/results/{serve,archive}.json with the rest
node bench/serve.mjs "$VDSNAP_BENCH_DIR/images/base.img" || echo "bench: the serve figures failed; BENCHMARKS.md keeps the previous ones" >&2
node bench/archive.mjs || echo "bench: the archive figures failed; BENCHMARKS.md keeps the previous ones" >&2
node bench/bench.mjs "$@"
