// Password sources named in a job file: {file}, {command} or {env}; without
// one, the usual VDSNAP_PASSWORD / VDSNAP_PASSWORD_FILE / _COMMAND chain.
import {execFile} from 'node:child_process'
import {promisify} from 'node:util'
import {PasswordError} from '../errors.js'
import type {PasswordSpec} from '../jobs/job-file.js'
import type {PasswordSource} from '../repo/repository.js'
import {passwordSource, readPasswordFile} from './password.js'

const exec = promisify(execFile)

export function jobPasswordSource(spec: PasswordSpec | undefined): PasswordSource {
  if (spec?.file) return () => readPasswordFile(spec.file!)
  if (spec?.env) {
    return async () => {
      const v = process.env[spec.env!]
      if (v === undefined) throw new PasswordError(`the job's password variable ${spec.env} is not set`)
      return v
    }
  }
  if (spec?.command) {
    return async () => {
      try {
        return (await exec('/bin/sh', ['-c', spec.command!], {maxBuffer: 1 << 16})).stdout.replace(/\r?\n$/, '')
      } catch (e) {
        throw new PasswordError(`the job's password command failed: ${(e as Error).message.split('\n')[0]}`)
      }
    }
  }
  return passwordSource(process.env.VDSNAP_PASSWORD_FILE)
}
