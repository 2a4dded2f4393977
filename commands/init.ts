import {Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {newPassword} from '../src/cli/password.js'
import {DEFAULT_BLOCK_SIZE, parseSize} from '../src/repo/config.js'
import {initRepository, parseCompression} from '../src/repo/init.js'
import {formatBytes} from '../src/cli/output.js'

export default class Init extends BaseCommand<typeof Init> {
  static override takesLock = false
  static override summary = 'Create a repository.'
  static override description =
    'Creates an empty repository at --repo. With a password (VDSNAP_PASSWORD, --password-file, VDSNAP_PASSWORD_COMMAND or a prompt) every object is encrypted with AES-256-GCM; --no-encryption makes a plaintext repository explicitly.'
  static override examples = [
    'VDSNAP_PASSWORD_FILE=/etc/vdsnap/pw <%= config.bin %> init --repo /srv/backup/vdsnap',
    '<%= config.bin %> init --repo /srv/backup/plain --no-encryption --block-size 1MiB --compression zstd:3',
  ]
  static override flags = {
    'block-size': Flags.string({summary: 'Block size, a power of two from 64KiB to 16MiB.', default: `${DEFAULT_BLOCK_SIZE / 1024}KiB`}),
    compression: Flags.string({summary: 'zstd:LEVEL (1-19) or none.', default: 'zstd:3'}),
    'no-encryption': Flags.boolean({summary: 'Store objects unencrypted (no password).', default: false}),
    'synthetic-full-every': Flags.integer({summary: 'Write a full index every N snapshots of a disk.', default: 30, min: 1}),
  }

  async run(): Promise<void> {
    const f = this.flags
    const password = f['no-encryption'] ? undefined : await newPassword(f['password-file'], 'VDSNAP_PASSWORD', '--password-file')
    const cfg = await initRepository(this.repoLocation(), {
      blockSize: parseSize(f['block-size']),
      level: parseCompression(f.compression),
      password,
      syntheticFullEvery: f['synthetic-full-every'],
    }, this.storageOptions())
    this.out.result({location: cfg.location, id: cfg.id, blockSize: cfg.blockSize, encryption: cfg.encryption, compression: cfg.compression}, () =>
      `created ${cfg.encryption === 'none' ? 'unencrypted' : 'encrypted'} repository ${cfg.id.slice(0, 8)} at ${cfg.location} (block size ${formatBytes(cfg.blockSize)}, ${cfg.compression.algorithm}${cfg.compression.level ? `:${cfg.compression.level}` : ''})`,
    )
  }
}
