// README.txt inside every archive: what it holds and how to restore it,
// with vdsnap and without, in plain words for someone years from now.
import type {ArchiveManifest} from './layout.js'

export function archiveReadme(m: ArchiveManifest): string {
  const size = `${m.virtualSize} bytes`
  const head = [
    `vdsnap archive (format ${m.vdsnapArchive}, written by vdsnap ${m.vdsnapVersion})`,
    '',
    `This archive holds one snapshot of the virtual disk "${m.disk}", taken ${m.time}`,
    `(snapshot ${m.snapshot}). The disk is ${size} long. The SHA-256 of the whole`,
    `disk image is in the entry SHA256SUMS at the end of the archive, in the format`,
    '"sha256sum -c" reads. manifest.json lists the same facts for programs.',
    '',
    ...(m.volume === undefined
      ? []
      : [
          `This file is volume ${m.volume} of a split archive (NAME.001, NAME.002, ...). Each volume`,
          'holds the same head entries and the next chunks; the last one also holds',
          'SHA256SUMS and VOLUMES (the number of volumes). Give vdsnap every volume, in any',
          'order; without vdsnap, unpack every volume into the same empty directory.',
          '',
        ]),
  ]
  if (m.kind === 'portable') {
    return [
      ...head,
      `The disk image itself is the entry ${m.image}: a raw image, byte for byte.`,
      '',
      'Restore without vdsnap (any unzip tool):',
      `  unzip ARCHIVE.zip ${m.image} SHA256SUMS && sha256sum -c SHA256SUMS`,
      `  or straight to a device: unzip -p ARCHIVE.zip ${m.image} | dd of=/dev/sdX bs=4M`,
      '  (for a tar archive: tar -xSf ARCHIVE.tar, which gives back a sparse file)',
      '',
      'Restore with vdsnap:',
      '  vdsnap restore --from-archive ARCHIVE.zip --to disk.img [--format qcow2]',
      '',
    ].join('\n')
  }
  const enc =
    m.encryption === 'none'
      ? 'Chunks are not encrypted.'
      : 'Chunks, the index and the snapshot object are encrypted (AES-256-GCM); config and keys/ hold what is needed to open them with the repository password: nothing else is needed.'
  return [
    ...head,
    'The disk is stored as a vdsnap repository holding this one snapshot:',
    `  ${m.indexObject ?? 'indexes/...'}  the index: which chunk holds each block of ${m.blockSize} bytes`,
    '  chunks/           every chunk the disk uses, once, as vdsnap stores it',
    `                    (zstd-compressed; ${m.chunkCount} chunks)`,
    '  config, keys/     the repository settings and key slots',
    enc,
    '',
    'Restore with vdsnap (no repository needed):',
    '  vdsnap restore --from-archive ARCHIVE.zip --to disk.img',
    '  vdsnap restore --from-archive - --to disk.img < ARCHIVE.zip   (from a pipe or tape)',
    '  vdsnap check --archive ARCHIVE.zip                             (verify only)',
    '  vdsnap import ARCHIVE.zip --repo REPO                           (back into a repository)',
    '',
    'Without the vdsnap command: unzip (or tar -x) the archive into an empty directory; that',
    'directory is a vdsnap repository ("vdsnap restore --repo DIR latest --to disk.img").',
    'The byte layout of every object is written out in vdsnap\'s docs/FORMAT.md: a',
    'chunk object is an 8-byte header ("VDSO", version, kind, flags, 0) followed by a',
    'zstd frame (flag 1), or by nonce, AES-256-GCM ciphertext and tag (flag 2); the',
    'index lists one 32-byte chunk id per block, all zeros for a block of zeros.',
    '',
  ].join('\n')
}
