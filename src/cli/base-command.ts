// What every command shares: the common flags, opening the repository
// (password sources, locks), --json output, and the mapping from typed
// errors to the documented exit codes. Commands stay thin: flags, one
// engine call, rendering.
import {Command, Flags, Errors, type Interfaces} from '@oclif/core'
import {EXIT_CODES, UsageError, VdsnapError, toVdsnapError} from '../errors.js'
import {openStorage, type StorageOptions} from '../repo/storage.js'
import {parseSize} from '../repo/config.js'
import {Repository} from '../repo/repository.js'
import {assertUnlocked, LockWriteError, RepoLock, type LockInfo} from '../repo/lock.js'
import {describeHolder} from '../repo/lock-info.js'
import {parseDuration} from './durations.js'
import {describeParseError} from './parse-errors.js'
import {passwordSource, type PasswordFlags} from './password.js'
import {errorDocument, formatDuration, Output, type ErrorReport} from './output.js'
import {installSignalHandlers} from './signals.js'

/**
 * Spread into the flags of a command that only reads (snapshots, restore,
 * check, diff, stats, export): --no-lock takes no lock, so a repository on a
 * read-only mount or WORM storage can be read. openRepo honours it.
 */
export const readOnlyFlags = {
  'no-lock': Flags.boolean({
    summary: 'Take no lock: read a repository on a read-only mount or WORM storage (a prune running meanwhile could remove what is being read).',
    default: false,
    helpGroup: 'GLOBAL',
  }),
}

/** Spread into prune's and forget's flags: they free space, so they may run on a full file system. */
export const fullDiskFlags = {
  'no-lock-if-full': Flags.boolean({
    summary: 'When the repository\'s file system is too full to write the lock file, go on without one (still refused while another process holds a lock). Make sure no other vdsnap process starts meanwhile.',
    default: false,
  }),
}

function withHint(e: LockWriteError, hint: string): LockWriteError {
  return new LockWriteError(e.location, e.reason, e.detail, {cause: e.cause, hint})
}

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>

export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override baseFlags = {
    repo: Flags.string({
      char: 'r',
      summary: 'Repository location: a path, file://, sftp://user@host[:port]/path or s3://bucket/prefix.',
      env: 'VDSNAP_REPOSITORY',
      helpGroup: 'GLOBAL',
    }),
    'password-file': Flags.string({summary: 'Read the repository password from this file (beats every VDSNAP_PASSWORD* variable).', helpGroup: 'GLOBAL', exclusive: ['password-command']}),
    'password-command': Flags.string({summary: 'Run this shell command and use what it prints as the password (beats every VDSNAP_PASSWORD* variable).', helpGroup: 'GLOBAL'}),
    json: Flags.boolean({summary: 'Print one JSON document on stdout and nothing else there.', default: false, helpGroup: 'GLOBAL'}),
    quiet: Flags.boolean({char: 'q', summary: 'Print only warnings and errors (no progress, no success lines).', default: false, helpGroup: 'GLOBAL'}),
    verbose: Flags.boolean({char: 'v', summary: 'Print more detail (stack traces of errors).', default: false, helpGroup: 'GLOBAL'}),
    'json-progress': Flags.boolean({summary: 'Write progress as JSON lines on stderr (type "status", like restic\'s), one a second.', default: false, helpGroup: 'GLOBAL'}),
    'lock-wait': Flags.string({summary: 'How long to wait for a conflicting lock, e.g. 30s, 5m (default 0; two commands whose locks collide retry for 5 s anyway).', default: '0', helpGroup: 'GLOBAL'}),
    'ssh-key': Flags.string({summary: 'SFTP: private key file to use (default: ssh-agent, then IdentityFile from ~/.ssh/config, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa).', helpGroup: 'STORAGE'}),
    'known-hosts': Flags.string({summary: 'SFTP: known_hosts file (default ~/.ssh/known_hosts).', helpGroup: 'STORAGE'}),
    's3-endpoint': Flags.string({summary: 'S3: endpoint URL of an S3-compatible service (default AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL).', helpGroup: 'STORAGE'}),
    's3-path-style': Flags.boolean({summary: 'S3: path-style addressing (automatic for IP and localhost endpoints).', helpGroup: 'STORAGE'}),
    's3-region': Flags.string({summary: 'S3: region (default AWS_REGION / profile).', helpGroup: 'STORAGE'}),
    'limit-upload': Flags.string({summary: 'Upload bandwidth limit, bytes per second with units, e.g. 20MiB (default: none).', helpGroup: 'STORAGE'}),
    'limit-download': Flags.string({summary: 'Download bandwidth limit, e.g. 50MiB (default: none).', helpGroup: 'STORAGE'}),
    connections: Flags.integer({summary: 'Transfers in flight at once (default 8 locally, 16 for S3, 32 for SFTP).', min: 1, max: 256, helpGroup: 'STORAGE'}),
  }

  /** False on commands that take no repository lock: a typed --lock-wait would do nothing there, so it is refused. */
  static takesLock = true

  protected flags!: BaseFlags<T>
  protected args!: Interfaces.InferredArgs<T['args']>
  protected out!: Output
  private readonly opened: {repo: Repository; lock?: RepoLock}[] = []
  /** Flags typed on the command line (not filled in from the environment or a default). */
  private readonly givenFlags = new Set<string>()
  private lockWaitMs = 0

  override async init(): Promise<void> {
    await super.init()
    installSignalHandlers()
    const {args, flags, raw} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (this.ctor as typeof BaseCommand).baseFlags,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as Interfaces.InferredArgs<T['args']>
    for (const t of raw) if (t.type === 'flag') this.givenFlags.add(t.flag)
    this.out = new Output({json: this.flags.json, quiet: this.flags.quiet, verbose: this.flags.verbose, jsonProgress: this.flags['json-progress']})
    if (!(this.ctor as typeof BaseCommand).takesLock && this.given('lock-wait')) {
      throw new UsageError(`--lock-wait does nothing with "${(this.id ?? '').replaceAll(':', ' ')}": it takes no repository lock`, {hint: 'drop --lock-wait'})
    }
    try {
      const wait = this.flags['lock-wait'] as string | undefined
      this.lockWaitMs = wait === undefined ? 0 : parseDuration(wait)
    } catch {
      throw new UsageError(`--lock-wait "${this.flags['lock-wait']}" is not a duration`, {hint: 'write e.g. 30s, 5m or 1h'})
    }
  }

  /** True when the user typed the flag (so a command can refuse one it would ignore). */
  protected given(flag: string): boolean {
    return this.givenFlags.has(flag)
  }

  /** The password flags as given; they beat the environment (see password.ts). */
  protected passwordFlags(): PasswordFlags {
    return {file: this.flags['password-file'], command: this.flags['password-command']}
  }

  /** Storage options from the common flags (SFTP, S3, WAN limits). */
  protected storageOptions(): StorageOptions {
    const f = this.flags
    return {
      sshKey: f['ssh-key'],
      knownHostsFile: f['known-hosts'],
      s3Endpoint: f['s3-endpoint'],
      s3PathStyle: f['s3-path-style'] || undefined,
      s3Region: f['s3-region'],
      limitUpload: f['limit-upload'] ? parseSize(f['limit-upload']) : undefined,
      limitDownload: f['limit-download'] ? parseSize(f['limit-download']) : undefined,
      connections: f.connections,
      retry: {onRetry: ({operation, attempt, delayMs, error}) => this.out.warn(`${operation} failed (${error.message}); retry ${attempt} in ${(delayMs / 1000).toFixed(1)} s`)},
    }
  }

  protected repoLocation(): string {
    const loc = this.flags.repo
    if (!loc) {
      throw new Errors.CLIError('no repository given: use --repo LOCATION or set VDSNAP_REPOSITORY', {exit: EXIT_CODES.usage})
    }
    return loc
  }

  /** Opens the repository and takes a lock (shared unless `exclusive`); released in finally(). */
  protected async openRepo(opts: {lock: 'shared' | 'exclusive' | 'none'; command?: string}): Promise<Repository> {
    return this.openRepoAt(this.repoLocation(), passwordSource(this.passwordFlags()), opts)
  }

  /** Opens another repository (copy's destination...), locked and closed like the main one. */
  protected async openRepoAt(
    location: string,
    password: () => Promise<string>,
    opts: {lock: 'shared' | 'exclusive' | 'none'; command?: string},
  ): Promise<Repository> {
    const backend = await openStorage(location, this.storageOptions())
    let repo: Repository
    try {
      repo = await Repository.open(backend, password)
    } catch (e) {
      await backend.close().catch(() => {})
      throw e
    }
    const entry: {repo: Repository; lock?: RepoLock} = {repo}
    this.opened.push(entry)
    const flags = this.flags as Record<string, unknown>
    if (opts.lock === 'shared' && flags['no-lock'] === true) return repo
    if (opts.lock !== 'none') entry.lock = await this.takeLock(repo, opts.lock === 'exclusive', opts.command ?? this.id ?? 'vdsnap')
    return repo
  }

  /** The lock, or an error that says how to go on when its file cannot be written. */
  private async takeLock(repo: Repository, exclusive: boolean, command: string): Promise<RepoLock | undefined> {
    const flags = this.flags as Record<string, unknown>
    try {
      // The line tells a user (and a test) the command is waiting, not hung.
      const onWait = (h: LockInfo) => this.out.log(`waiting up to ${formatDuration(this.lockWaitMs)} for the lock held by ${describeHolder(h)}`)
      return await RepoLock.acquire(repo.backend, {exclusive, command, waitMs: this.lockWaitMs, onWait})
    } catch (e) {
      if (!(e instanceof LockWriteError)) throw e
      const canSkip = 'no-lock' in flags
      const freesSpace = 'no-lock-if-full' in flags
      if (e.reason === 'noSpace' && flags['no-lock-if-full'] === true) {
        await assertUnlocked(repo.backend)
        this.out.warn(`${e.message}: going on without a lock (--no-lock-if-full)`)
        return undefined
      }
      if (e.reason === 'readOnly') {
        throw withHint(e, canSkip ? 'it can be read without a lock: add --no-lock' : `"${this.id}" writes to the repository: make it writable, or use a read-only command with --no-lock`)
      }
      if (e.reason === 'noSpace') {
        throw withHint(
          e,
          freesSpace
            ? 'free a few KiB on that file system, or run again with --no-lock-if-full once you are sure no other vdsnap process uses the repository'
            : 'free space: "vdsnap forget --prune --no-lock-if-full" or "vdsnap prune --no-lock-if-full" work on a full repository',
        )
      }
      throw e
    }
  }

  /** Verifies the repository lock is still held (before committing a snapshot). */
  protected async assertLockHeld(): Promise<void> {
    for (const {lock} of this.opened) await lock?.assertHeld()
  }

  /** Exits with the "warning" code when there were warnings, after output was written. */
  protected finishWithWarnings(warnings: string[]): void {
    const all = [...warnings, ...this.damagedWarnings()]
    for (const w of all) this.out.warn(w)
    if (all.length > 0) this.exit(EXIT_CODES.warning)
  }

  private readonly damagedReported = new Set<string>()

  /** Warnings for damaged manifests the repositories' listings skipped, each once. */
  private damagedWarnings(): string[] {
    const out: string[] = []
    for (const {repo} of this.opened) {
      for (const w of repo.damagedWarnings()) {
        if (this.damagedReported.has(w)) continue
        this.damagedReported.add(w)
        out.push(w)
      }
    }
    return out
  }

  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    if (err instanceof Errors.ExitError) throw err
    if (err instanceof Errors.CLIError && !(err instanceof VdsnapError)) {
      // oclif's own errors: usage (exit 2). Before the flags are parsed they
      // are parse errors, several lines long: rewritten as one.
      const code = err.oclif?.exit ?? EXIT_CODES.usage
      const message = this.flags === undefined ? describeParseError(err, this.id) : err.message.split('\n')[0]!
      this.reportError(code === 2 ? {message, kind: 'usage', code: 'USAGE'} : {message, kind: 'internal', code: 'INTERNAL', exitCode: code})
      this.exit(code)
    }
    const e = toVdsnapError(err)
    this.reportError({message: e.oneLine(), kind: e.kind, code: e.code, object: e.object, offset: e.offset})
    if (this.flags?.verbose && e.stack) process.stderr.write(`${e.stack}\n`)
    this.exit(EXIT_CODES[e.kind])
  }

  private reportError(r: ErrorReport): void {
    // --json even when parsing failed before the flags were known
    if (this.flags?.json ?? this.argv.includes('--json')) process.stdout.write(errorDocument(r) + '\n')
    process.stderr.write(`vdsnap: ${r.kind === 'warning' ? 'warning' : 'error'}: ${r.message}\n`)
  }

  protected override async finally(err: Error | undefined): Promise<unknown> {
    // A listing that skipped a damaged manifest is a warning (exit 3) even
    // when the command itself succeeded; after an error, only the lines.
    const skipped = this.damagedWarnings()
    for (const w of skipped) this.out.warn(w)
    if (skipped.length > 0 && err === undefined) process.exitCode = EXIT_CODES.warning
    for (const {repo, lock} of this.opened.reverse()) {
      await lock?.release().catch(() => {})
      await repo.close().catch(() => {})
    }
    return super.finally(err)
  }
}

