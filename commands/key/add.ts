import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base-command.js'
import {newPassword} from '../../src/cli/password.js'
import {addKey} from '../../src/repo/key-admin.js'

export default class KeyAdd extends BaseCommand<typeof KeyAdd> {
  static override summary = 'Add a password (a new key slot) to an encrypted repository.'
  static override description = 'Opens the repository with the current password, then adds a slot for the new one (VDSNAP_NEW_PASSWORD, --new-password-file, or a prompt). Data is not re-encrypted.'
  static override examples = ['VDSNAP_NEW_PASSWORD_FILE=/root/pw2 <%= config.bin %> key add --new-password-file /root/pw2']
  static override flags = {
    'new-password-file': Flags.string({summary: 'Read the new password from this file (beats VDSNAP_NEW_PASSWORD and VDSNAP_NEW_PASSWORD_FILE).'}),
  }

  async run(): Promise<void> {
    const repo = await this.openRepo({lock: 'shared', command: 'key add'})
    const id = await addKey(repo, await newPassword(this.flags['new-password-file'], 'VDSNAP_NEW_PASSWORD', '--new-password-file'))
    this.out.result({added: id}, () => `added key slot ${id}`)
  }
}
