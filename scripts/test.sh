#!/usr/bin/env bash
# The whole test suite, from a fresh machine: Debian packages the tests use
# (e2fsprogs, ntfs-3g, nbdkit, libnbd-bin, fdisk, gdisk, qemu-utils, openssh-server, unzip, cron, s3cmd, strace), npm
# dependencies, build, then vitest. Ends with one line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh mkfs.ext4:e2fsprogs qemu-img:qemu-utils qemu-nbd:qemu-utils nbdkit:nbdkit nbdinfo:libnbd-bin sshd:openssh-server ssh-keygen:openssh-client unzip:unzip crontab:cron s3cmd:s3cmd losetup:mount sfdisk:fdisk script:bsdutils chattr:e2fsprogs python3:python3 mount:mount mkntfs:ntfs-3g sgdisk:gdisk strace:strace
report=$(mktemp)
set +e
npx --no-install vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
rc=$?
set -e
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$report" || true
rm -f "$report"
exit $rc
