import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base-command.js'
import {newPassword} from '../../src/cli/password.js'
import {changePassword} from '../../src/repo/key-admin.js'

export default class KeyPasswd extends BaseCommand<typeof KeyPasswd> {
  static override summary = 'Change the password in use (replaces its key slot).'
  static override examples = ['VDSNAP_NEW_PASSWORD=... <%= config.bin %> key passwd']
  static override flags = {
    'new-password-file': Flags.string({summary: 'Read the new password from this file (beats VDSNAP_NEW_PASSWORD and VDSNAP_NEW_PASSWORD_FILE).'}),
  }

  async run(): Promise<void> {
    const repo = await this.openRepo({lock: 'exclusive', command: 'key passwd'})
    const r = await changePassword(repo, await newPassword(this.flags['new-password-file'], 'VDSNAP_NEW_PASSWORD', '--new-password-file'))
    this.out.result(r, () => `password changed: key slot ${r.removed} replaced by ${r.added}`)
  }
}
