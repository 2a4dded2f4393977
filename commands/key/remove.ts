import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base-command.js'
import {removeKey} from '../../src/repo/key-admin.js'

export default class KeyRemove extends BaseCommand<typeof KeyRemove> {
  static override summary = 'Remove a password (a key slot) from an encrypted repository.'
  static override description =
    'Removes the key slot with this id (or unique id prefix, see "key list"). The slot of the password used to open the repository cannot be removed, so the repository always keeps a password that opens it. Data is not re-encrypted: a removed password no longer opens the repository, but whoever read the master key with it before still can.'
  static override examples = ['<%= config.bin %> key remove 1a2b3c4d --password-file /root/pw-admin']
  static override args = {
    id: Args.string({description: 'Key slot id or unique prefix (see "key list").', required: true}),
  }

  async run(): Promise<void> {
    const repo = await this.openRepo({lock: 'exclusive', command: 'key remove'})
    const id = await removeKey(repo, this.args.id)
    this.out.result({removed: id}, () => `removed key slot ${id}`)
  }
}
