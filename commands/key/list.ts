import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base-command.js'
import {formatTime} from '../../src/cli/times.js'
import {table} from '../../src/cli/output.js'
import {keySlotTemps, keySlotTempsWarning, listKeys} from '../../src/repo/key-admin.js'

export default class KeyList extends BaseCommand<typeof KeyList> {
  static override takesLock = false
  static override summary = 'List the key slots of an encrypted repository.'
  static override examples = ['<%= config.bin %> key list --json']
  static override flags = {
    'local-time': Flags.boolean({summary: 'Print times in the local time zone instead of UTC.', default: false}),
  }

  async run(): Promise<void> {
    const repo = await this.openRepo({lock: 'none'})
    const keys = await listKeys(repo)
    const leftover = keySlotTempsWarning(await keySlotTemps(repo))
    if (leftover) this.out.warn(leftover)
    this.out.result(keys, () =>
      table([['', 'ID', 'CREATED', 'USER', 'HOST', 'KDF'], ...keys.map((k) => [k.current ? '*' : '', k.id, formatTime(k.created, this.flags['local-time']), k.user, k.host, k.kdf])]),
    )
  }
}
