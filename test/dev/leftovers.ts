/**
 * What `npm run dev` leaves behind when it cannot stop in order (SIGKILL, a second Ctrl-C, a
 * crash), and how the next run finds and stops it. A dev stack keeps everything it writes in one
 * dir per checkout (`main.ts` DEV_DIR: the stack's state and containerd's root, workerd's D1 file,
 * the Worker bundle). A state file there, `dev.json`, names the dev process and, once the stack is
 * up, the processes, mounts and cgroups it runs; {@link reclaim} reads it, and also looks under the
 * dir itself, since a run killed while starting had nothing to name yet.
 *
 * Processes are named by pid and start time (`/proc/<pid>/stat` field 22), so a pid the kernel has
 * given to someone else since is never signalled.
 */
import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { mountsUnder, reclaimRuntime, runtimeResidue } from '../runtime/containerd.ts'

export const STATE_FILE = 'dev.json'

/** A process as the state file names it. */
export interface ProcessRef {
  pid: number
  /** Start time in clock ticks since boot (`/proc/<pid>/stat` field 22). */
  start: number
  /** Its `comm` (containerd, docker-registry, workerd, containerd-shim, sh…), for people. */
  name: string
}

export interface DevState {
  version: 1
  /** The process that runs the stack (main.ts's child). While it lives, nothing here is a leftover. */
  dev: ProcessRef
  startedAt: string
  /** The rest is set once the stack is up. */
  gatewayUrl?: string
  /** containerd's root (under the dev dir). */
  runtimeRoot?: string
  /** The dev process's children (containerd, registry, workerd, esbuild), shims and container processes. */
  processes: ProcessRef[]
  mounts: string[]
  cgroups: string[]
}

/** The fields of `/proc/<pid>/stat` that matter here; undefined if `text` is not one. */
export function parseStat(text: string): { name: string; ppid: number; session: number; start: number } | undefined {
  // comm is in parentheses and may itself hold spaces and parentheses: split after the last ')'.
  const open = text.indexOf('(')
  const close = text.lastIndexOf(')')
  if (open < 0 || close < open) return undefined
  const rest = text.slice(close + 2).split(' ')
  // rest[0] is field 3 (state): ppid is field 4, session field 6, starttime field 22.
  const [ppid, session, start] = [rest[1], rest[3], rest[19]].map(Number)
  if (![ppid, session, start].every(Number.isInteger)) return undefined
  return { name: text.slice(open + 1, close), ppid, session, start }
}

/** The state file's content, or undefined for anything else (missing fields, another version). */
export function parseState(text: string): DevState | undefined {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return undefined
  }
  const s = raw as Partial<DevState> | null
  const isRef = (r: unknown): r is ProcessRef => {
    const p = r as Partial<ProcessRef> | null
    return !!p && Number.isInteger(p.pid) && p.pid! > 1 && Number.isInteger(p.start) && typeof p.name === 'string'
  }
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string')
  if (!s || s.version !== 1 || !isRef(s.dev) || typeof s.startedAt !== 'string') return undefined
  if (!Array.isArray(s.processes) || !s.processes.every(isRef) || !strings(s.mounts) || !strings(s.cgroups)) return undefined
  if (s.runtimeRoot !== undefined && typeof s.runtimeRoot !== 'string') return undefined
  return s as DevState
}

/**
 * The state file's processes that are still the same processes, given how to read a pid's
 * `/proc/<pid>/stat` (undefined: no such pid).
 */
export function stillRunning(refs: ProcessRef[], statOf: (pid: number) => string | undefined): ProcessRef[] {
  return refs.filter((r) => {
    const text = statOf(r.pid)
    return text !== undefined && parseStat(text)?.start === r.start
  })
}

async function statText(pid: number): Promise<string | undefined> {
  return readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
}

/** Reads `/proc` once: pid → stat text. */
async function procStats(): Promise<Map<number, string>> {
  const stats = new Map<number, string>()
  for (const name of await readdir('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid)) continue
    const text = await statText(pid)
    if (text !== undefined) stats.set(pid, text)
  }
  return stats
}

/** This pid as the state file names it; undefined once it has exited. */
export async function processRef(pid: number): Promise<ProcessRef | undefined> {
  const text = await statText(pid)
  const st = text === undefined ? undefined : parseStat(text)
  return st && { pid, start: st.start, name: st.name }
}

/** Writes the state file (write, then rename: a reader never sees half of it). */
export async function writeState(dir: string, state: DevState): Promise<void> {
  const tmp = join(dir, `.${STATE_FILE}.${process.pid}`)
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 })
  await rename(tmp, join(dir, STATE_FILE))
}

export async function removeState(dir: string): Promise<void> {
  await rm(join(dir, STATE_FILE), { force: true })
}

/**
 * The running stack, for the state file: the dev process's children (containerd, the registry,
 * workerd, esbuild), and the runtime's shims, container processes, mounts and cgroups.
 */
export async function describeStack(dev: ProcessRef, startedAt: string, runtimeRoot: string | undefined, gatewayUrl: string): Promise<DevState> {
  const stats = await procStats()
  const ref = (pid: number): ProcessRef | undefined => {
    const st = parseStat(stats.get(pid) ?? '')
    return st && { pid, start: st.start, name: st.name }
  }
  const children = [...stats.keys()].filter((pid) => parseStat(stats.get(pid)!)?.ppid === dev.pid)
  const residue = runtimeRoot ? await runtimeResidue(runtimeRoot) : { pids: [], mounts: [], cgroups: [] }
  const processes = [...new Set([...children, ...residue.pids])]
    .filter((pid) => pid !== dev.pid)
    .map(ref)
    .filter((r): r is ProcessRef => r !== undefined)
  return {
    version: 1,
    dev,
    startedAt,
    gatewayUrl,
    ...(runtimeRoot ? { runtimeRoot } : {}),
    processes,
    mounts: residue.mounts,
    cgroups: residue.cgroups,
  }
}

/**
 * The dev process the state file in `dir` names, if it still runs (another `npm run dev` of this
 * checkout, unless it is this process).
 */
export async function runningDev(dir: string): Promise<{ dev: ProcessRef; startedAt: string } | undefined> {
  const state = parseState(await readFile(join(dir, STATE_FILE), 'utf8').catch(() => ''))
  if (!state || state.dev.pid === process.pid) return undefined
  const devStat = await statText(state.dev.pid)
  const [alive] = stillRunning([state.dev], () => devStat)
  return alive && { dev: alive, startedAt: state.startedAt }
}

export type Reclaimed =
  /** Nothing was running or mounted (files an earlier run left are removed all the same). */
  | { outcome: 'clean' }
  /** The state file's dev process is alive: another `npm run dev` of this checkout runs. */
  | { outcome: 'busy'; dev: ProcessRef; startedAt: string }
  | { outcome: 'reclaimed'; dev: ProcessRef | undefined; killed: ProcessRef[]; mounts: string[]; cgroups: string[] }

/**
 * Stops what an earlier dev stack left in `dir` and empties the dir, unless the state file's dev
 * process still runs (`busy`: nothing is touched). Kills the state file's processes that are still
 * the same processes, then, for every containerd root under the dir, its shims, containers, mounts
 * and cgroups (test/runtime/containerd.ts reclaimRuntime). Refuses (throws) to delete files while
 * anything is still mounted under the dir.
 */
export async function reclaim(dir: string, log: (line: string) => void = () => {}): Promise<Reclaimed> {
  const entries = await readdir(dir).catch(() => [] as string[])
  if (entries.length === 0) return { outcome: 'clean' }
  const running = await runningDev(dir)
  if (running) return { outcome: 'busy', ...running }
  const state = parseState(await readFile(join(dir, STATE_FILE), 'utf8').catch(() => ''))

  const stats = await procStats()
  const killed = stillRunning(state?.processes ?? [], (pid) => stats.get(pid)).filter((r) => r.pid !== process.pid)
  for (const r of killed) {
    log(`killing ${r.name} ${r.pid}`)
    try {
      process.kill(r.pid, 'SIGKILL')
    } catch {
      // gone meanwhile
    }
  }

  // Only roots under the dir: whatever a state file says, nothing outside it is ours.
  const roots = new Set(state?.runtimeRoot?.startsWith(`${dir}/`) ? [state.runtimeRoot] : [])
  for (const stackDir of entries.filter((e) => e.startsWith('cpgw-stack-'))) {
    for (const e of await readdir(join(dir, stackDir)).catch(() => [] as string[])) {
      if (e.startsWith('cpgw-rt-')) roots.add(join(dir, stackDir, e))
    }
  }
  const mounts: string[] = []
  const cgroups: string[] = []
  const pids = new Set(killed.map((r) => r.pid))
  for (const root of roots) {
    const r = await reclaimRuntime(root, log)
    for (const pid of r.pids) {
      if (pids.has(pid)) continue
      pids.add(pid)
      const st = parseStat(stats.get(pid) ?? '')
      killed.push({ pid, start: st?.start ?? 0, name: st?.name ?? '?' })
    }
    mounts.push(...r.mounts)
    cgroups.push(...r.cgroups)
  }

  const still = mountsUnder(await readFile('/proc/self/mountinfo', 'utf8'), dir)
  if (still.length > 0) throw new Error(`still mounted under ${dir} after unmounting: ${still.join(', ')}`)
  for (const e of entries) await rm(join(dir, e), { recursive: true, force: true, maxRetries: 3 })
  if (killed.length === 0 && mounts.length === 0 && cgroups.length === 0) return { outcome: 'clean' }
  return { outcome: 'reclaimed', dev: state?.dev, killed, mounts, cgroups }
}
