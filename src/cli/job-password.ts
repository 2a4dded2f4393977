// Password sources named in a job file: {file}, {command} or {env}; without
// one, the usual VDSNAP_PASSWORD / VDSNAP_PASSWORD_FILE / _COMMAND chain.
import {PasswordError} from '../errors.js'
import type {PasswordSpec} from '../jobs/job-file.js'
import type {PasswordSource} from '../repo/repository.js'
import {passwordSource, readPasswordFile, runPasswordCommand} from './password.js'

export function jobPasswordSource(spec: PasswordSpec | undefined): PasswordSource {
  if (spec?.file) return () => readPasswordFile(spec.file!)
  if (spec?.env) {
    return async () => {
      const v = process.env[spec.env!]
      if (v === undefined) throw new PasswordError(`the job's password variable ${spec.env} is not set`)
      return v
    }
  }
  if (spec?.command) return () => runPasswordCommand(spec.command!, "the job's password command")
  return passwordSource()
}
