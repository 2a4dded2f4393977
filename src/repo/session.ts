// The one place that opens and locks repositories, for the CLI's commands
// (src/cli/base-command.ts) and for unattended jobs (src/jobs/run-job.ts):
//
// 1. open: the storage for a location (openStorage composes the backend
//    wrappers), then the repository on it with the password source; when
//    the repository cannot be opened, the storage is closed again.
// 2. lock: a shared or exclusive RepoLock, waiting up to `waitMs`; the
//    session remembers it so close() releases it.
// 3. withRepoLock: a lock held only around one step (a job's backup of one
//    disk, its retention, an export), released when the step ends,
//    however it ends.
// 4. close: every lock released and every repository closed, newest first,
//    errors ignored (this runs after the command's own outcome is settled).
//    close(repo) does that for one repository.
import {RepoLock, type LockOptions} from './lock.js'
import {Repository, type PasswordSource} from './repository.js'
import {openStorage, type StorageOptions} from './storage.js'

export type SessionLockOptions = Pick<LockOptions, 'exclusive' | 'command' | 'waitMs' | 'onWait'>

interface Entry {
  repo: Repository
  locks: RepoLock[]
}

/** Runs `fn` holding a lock on `repo`, released when `fn` settles. */
export async function withRepoLock<T>(repo: Repository, opts: SessionLockOptions, fn: (lock: RepoLock) => Promise<T>): Promise<T> {
  const lock = await RepoLock.acquire(repo.backend, opts)
  try {
    return await fn(lock)
  } finally {
    await lock.release().catch(() => {})
  }
}

export class RepoSession {
  private readonly entries: Entry[] = []

  /** Opens the repository at `location`; the session closes it. */
  async open(location: string, password: PasswordSource, storage: StorageOptions = {}): Promise<Repository> {
    const backend = await openStorage(location, storage)
    let repo: Repository
    try {
      repo = await Repository.open(backend, password)
    } catch (e) {
      await backend.close().catch(() => {})
      throw e
    }
    this.entries.push({repo, locks: []})
    return repo
  }

  /** The repositories opened, oldest first. */
  get repositories(): Repository[] {
    return this.entries.map((e) => e.repo)
  }

  /** Takes a lock on `repo` (opened by this session), held until close(). */
  async lock(repo: Repository, opts: SessionLockOptions): Promise<RepoLock> {
    const entry = this.entries.find((e) => e.repo === repo)
    if (!entry) throw new Error('internal: locking a repository this session did not open')
    const lock = await RepoLock.acquire(repo.backend, opts)
    entry.locks.push(lock)
    return lock
  }

  /** Verifies every lock the session holds is still held (before committing). */
  async assertLocksHeld(): Promise<void> {
    for (const e of this.entries) for (const lock of e.locks) await lock.assertHeld()
  }

  /** Releases the locks of `repo` (every repository when omitted) and closes it, newest first. */
  async close(repo?: Repository): Promise<void> {
    const closing = repo ? this.entries.filter((e) => e.repo === repo) : [...this.entries]
    for (const e of closing.reverse()) {
      this.entries.splice(this.entries.indexOf(e), 1)
      for (const lock of e.locks.reverse()) await lock.release().catch(() => {})
      await e.repo.close().catch(() => {})
    }
  }
}
