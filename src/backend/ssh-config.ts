// The parts of OpenSSH's client configuration (~/.ssh/config, ssh_config(5))
// that decide where an sftp:// location connects: HostName, Port, User and
// IdentityFile, so a host alias that works with `ssh alias` works here too.
// (The maintained parser on npm, ssh-config, is not a dependency yet; this
// reads only the directives above.)
//
// Rules kept from OpenSSH:
// 1. Keywords are case-insensitive; "Keyword value" or "Keyword=value";
//    arguments may be double-quoted; "#" starts a comment line.
// 2. Directives before the first Host line apply to every host. A Host
//    line holds patterns with "*" and "?" and "!negated" ones; the block
//    applies when some pattern matches the name given on the command line
//    (the alias) and no negated one does.
// 3. For each keyword the FIRST value obtained wins; IdentityFile values
//    accumulate, in order.
// 4. IdentityFile expands "~" and the tokens %d (home), %u (local user),
//    %h (host name), %r (remote user) and %%.
// Match blocks and Include are not interpreted: a Match block is skipped.
import {readFile} from 'node:fs/promises'
import {homedir, userInfo} from 'node:os'
import {join} from 'node:path'
import {UsageError} from '../errors.js'

export interface SshHostConfig {
  hostName?: string
  port?: number
  user?: string
  identityFiles: string[]
}

/** ~/.ssh/config of the current HOME. */
export function defaultSshConfigPath(): string {
  return join(homedir(), '.ssh', 'config')
}

/** Reads the configuration for `alias`; a missing file is an empty configuration. */
export async function readSshConfig(alias: string, path = defaultSshConfigPath()): Promise<SshHostConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {identityFiles: []}
    throw new UsageError(`cannot read ${path}: ${(e as Error).message}`, {cause: e})
  }
  return sshConfigFor(text, alias, path)
}

/** Glob match of ssh_config patterns: "*" any run, "?" one character. */
export function patternMatches(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i')
  return re.test(name)
}

function hostLineMatches(patterns: string[], alias: string): boolean {
  let hit = false
  for (const p of patterns) {
    if (p.startsWith('!')) {
      if (patternMatches(p.slice(1), alias)) return false
    } else if (patternMatches(p, alias)) hit = true
  }
  return hit
}

/** Splits a line into keyword and arguments (rule 1); null for blank and comment lines. */
function tokens(line: string): string[] | null {
  const trimmed = line.trim()
  if (trimmed === '' || trimmed.startsWith('#')) return null
  const m = /^(\S+?)(?:\s*=\s*|\s+)(.*)$/.exec(trimmed)
  if (!m) return [trimmed]
  const args: string[] = []
  for (const a of m[2]!.matchAll(/"([^"]*)"|(\S+)/g)) args.push(a[1] ?? a[2]!)
  return [m[1]!, ...args]
}

/** The configuration for `alias` from the text of a config file (`path` names it in errors). */
export function sshConfigFor(text: string, alias: string, path: string): SshHostConfig {
  const out: SshHostConfig = {identityFiles: []}
  let applies = true
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const t = tokens(lines[i]!)
    if (!t) continue
    const [keyword, ...args] = t
    const key = keyword!.toLowerCase()
    if (key === 'host') {
      applies = hostLineMatches(args, alias)
      continue
    }
    if (key === 'match') {
      applies = false
      continue
    }
    if (!applies || args.length === 0) continue
    const value = args[0]!
    if (key === 'hostname') out.hostName ??= value
    else if (key === 'user') out.user ??= value
    else if (key === 'port' && out.port === undefined) {
      const port = Number(value)
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new UsageError(`${path} line ${i + 1}: Port "${value}" is not a port number`, {hint: 'fix that line (1-65535)'})
      }
      out.port = port
    } else if (key === 'identityfile') out.identityFiles.push(value)
  }
  return out
}

/** Expands "~" and the %-tokens of rule 4 in an IdentityFile value. */
export function expandIdentityPath(value: string, ctx: {host: string; user: string}): string {
  const home = homedir()
  const withTokens = value.replace(/%([%dhur])/g, (_, c: string) => ({'%': '%', d: home, h: ctx.host, u: userInfo().username, r: ctx.user})[c]!)
  return withTokens === '~' ? home : withTokens.startsWith('~/') ? join(home, withTokens.slice(2)) : withTokens
}
