// The import graph of the source tree and the two checks run on it by
// test/layers.test.ts: every import points down the layer table (or stays in
// its layer), and no import cycle exists. Imports are read with TypeScript's
// own pre-processor, so `import type`, `export ... from` and dynamic
// `import()` all count: a type-only arrow up is still an arrow up.
import {existsSync, readdirSync, readFileSync, statSync} from 'node:fs'
import {join, posix} from 'node:path'
import ts from 'typescript'

/** One layer: path prefixes ending in "/" (a directory) or exact file paths. */
export interface Layer {
  name: string
  paths: string[]
}

/** File (repository-relative, posix) → the files it imports. */
export type ImportGraph = Map<string, string[]>

/** The relative import specifiers of a source text (packages and non-code files are ignored). */
export function importSpecifiers(text: string): string[] {
  const info = ts.preProcessFile(text, true, true)
  // Only our modules: a native addon (.node) or a JSON file is not one.
  return info.importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('.') && !/\.(node|json)$/.test(s))
}

/** The graph of `sources` (path → text); an import of a file not among them is kept as written, so checks can name it. */
export function graphFromSources(sources: Record<string, string>): ImportGraph {
  const graph: ImportGraph = new Map()
  for (const [file, text] of Object.entries(sources)) {
    const targets = importSpecifiers(text).map((spec) => resolveSpecifier(file, spec, (p) => p in sources))
    graph.set(file, targets)
  }
  return graph
}

function resolveSpecifier(from: string, spec: string, exists: (p: string) => boolean): string {
  const base = posix.normalize(posix.join(posix.dirname(from), spec))
  for (const c of [base.replace(/\.js$/, '.ts'), `${base}.ts`, `${base}/index.ts`, base]) if (exists(c)) return c
  return base
}

/** Every .ts file under `dirs` of `root`, read into a graph. */
export function graphFromTree(root: string, dirs: string[]): ImportGraph {
  const sources: Record<string, string> = {}
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const child = posix.join(rel, name)
      if (statSync(join(root, child)).isDirectory()) walk(child)
      else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) sources[child] = readFileSync(join(root, child), 'utf8')
    }
  }
  for (const d of dirs) if (existsSync(join(root, d))) walk(d)
  return graphFromSources(sources)
}

/** The index of the layer holding `file` (the longest matching path wins), or -1. */
export function layerOf(file: string, layers: Layer[]): number {
  let best = -1
  let bestLength = -1
  layers.forEach((layer, i) => {
    for (const p of layer.paths) {
      const hit = p.endsWith('/') ? file.startsWith(p) : file === p
      if (hit && p.length > bestLength) {
        best = i
        bestLength = p.length
      }
    }
  })
  return best
}

/** One line per import that points up the table, per file in no layer, and per import of a file that does not exist. */
export function layerViolations(graph: ImportGraph, layers: Layer[]): string[] {
  const out: string[] = []
  for (const [file, targets] of graph) {
    const from = layerOf(file, layers)
    if (from < 0) {
      out.push(`${file} is in no layer: add its directory to the table`)
      continue
    }
    for (const t of targets) {
      if (!graph.has(t)) {
        out.push(`${file} imports ${t}, which is not a source file`)
        continue
      }
      const to = layerOf(t, layers)
      if (to > from) out.push(`${file} (${layers[from]!.name}) imports ${t} (${layers[to]!.name}, a higher layer)`)
    }
  }
  return out
}

/** The import cycles: each strongly connected set of files (or a file importing itself), members in a cycle's order where possible. */
export function findCycles(graph: ImportGraph): string[][] {
  // Tarjan's algorithm, iterative so a deep tree cannot overflow the stack.
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const onStack = new Set<string>()
  const stack: string[] = []
  const cycles: string[][] = []
  let next = 0
  for (const start of graph.keys()) {
    if (index.has(start)) continue
    const work: {node: string; i: number}[] = [{node: start, i: 0}]
    index.set(start, next)
    low.set(start, next++)
    stack.push(start)
    onStack.add(start)
    while (work.length > 0) {
      const top = work[work.length - 1]!
      const edges = (graph.get(top.node) ?? []).filter((t) => graph.has(t))
      if (top.i < edges.length) {
        const t = edges[top.i++]!
        if (!index.has(t)) {
          index.set(t, next)
          low.set(t, next++)
          stack.push(t)
          onStack.add(t)
          work.push({node: t, i: 0})
        } else if (onStack.has(t)) low.set(top.node, Math.min(low.get(top.node)!, index.get(t)!))
        continue
      }
      work.pop()
      if (work.length > 0) {
        const parent = work[work.length - 1]!.node
        low.set(parent, Math.min(low.get(parent)!, low.get(top.node)!))
      }
      if (low.get(top.node) === index.get(top.node)) {
        const members: string[] = []
        let m: string
        do {
          m = stack.pop()!
          onStack.delete(m)
          members.push(m)
        } while (m !== top.node)
        const selfLoop = (graph.get(top.node) ?? []).includes(top.node)
        if (members.length > 1 || selfLoop) cycles.push(members.reverse())
      }
    }
  }
  return cycles
}
