import {BaseCommand} from '../../src/cli/base-command.js'
import {table} from '../../src/cli/output.js'
import {listKeys} from '../../src/repo/key-admin.js'

export default class KeyList extends BaseCommand<typeof KeyList> {
  static override summary = 'List the key slots of an encrypted repository.'
  static override examples = ['<%= config.bin %> key list --json']

  async run(): Promise<void> {
    const repo = await this.openRepo({lock: 'none'})
    const keys = await listKeys(repo)
    this.out.result(keys, () =>
      table([['', 'ID', 'CREATED', 'USER', 'HOST', 'KDF'], ...keys.map((k) => [k.current ? '*' : '', k.id, k.created, k.user, k.host, k.kdf])]),
    )
  }
}
