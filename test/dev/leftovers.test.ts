// How `npm run dev` finds what an earlier run left behind (test/dev/leftovers.ts): the state
// file, /proc/<pid>/stat, mountinfo, and reclaim() on a temp dir with `sleep` children standing
// in for the processes. Needs no root and no runtime.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { parseStat, parseState, processRef, reclaim, runningDev, stillRunning, STATE_FILE, writeState, type DevState, type ProcessRef } from './leftovers.ts'
import { mountsUnder } from '../runtime/containerd.ts'

/** `/proc/<pid>/stat` with 52 fields; comm `name`, ppid 7, session 3, starttime `start`. */
const stat = (pid: number, name: string, start: number) =>
  `${pid} (${name}) S 7 ${pid} 3 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 ${start} 1000 100 ${'0 '.repeat(30).trim()}\n`

const state = (dev: ProcessRef, processes: ProcessRef[] = []): DevState =>
  ({ version: 1, dev, startedAt: '2026-12-01T10:00:00.000Z', processes, mounts: [], cgroups: [] })

describe('dev leftovers: /proc and the state file', () => {
  it('reads ppid and start time after the last parenthesis of comm', () => {
    assert.deepEqual(parseStat(stat(42, 'containerd', 123456)), { name: 'containerd', ppid: 7, session: 3, start: 123456 })
    assert.deepEqual(parseStat(stat(43, 'a (b) c', 99)), { name: 'a (b) c', ppid: 7, session: 3, start: 99 })
    assert.equal(parseStat('garbage'), undefined)
    assert.equal(parseStat('1 (x) S'), undefined)
  })

  it('agrees with the kernel about this process', async () => {
    const me = await processRef(process.pid)
    assert.ok(me && me.start > 0 && me.name.length > 0)
    assert.equal(await processRef(2 ** 22 + 1), undefined) // above pid_max
  })

  it('accepts only a well-formed version 1 state file', () => {
    const ok = state({ pid: 100, start: 5, name: 'node' }, [{ pid: 101, start: 6, name: 'containerd' }])
    assert.deepEqual(parseState(JSON.stringify(ok)), ok)
    assert.equal(parseState('{'), undefined)
    assert.equal(parseState('null'), undefined)
    assert.equal(parseState(JSON.stringify({ ...ok, version: 2 })), undefined)
    assert.equal(parseState(JSON.stringify({ ...ok, dev: { pid: 1, start: 5, name: 'init' } })), undefined, 'never pid 1')
    assert.equal(parseState(JSON.stringify({ ...ok, processes: [{ pid: '101' }] })), undefined)
    assert.equal(parseState(JSON.stringify({ ...ok, mounts: [3] })), undefined)
  })

  it('counts a pid as the recorded process only while its start time matches', () => {
    const refs = [{ pid: 10, start: 500, name: 'containerd' }, { pid: 11, start: 600, name: 'workerd' }, { pid: 12, start: 700, name: 'docker-registry' }]
    const procs = new Map([[10, stat(10, 'containerd', 500)], [11, stat(11, 'bash', 999)]]) // 11 reused, 12 gone
    assert.deepEqual(stillRunning(refs, (pid) => procs.get(pid)).map((r) => r.pid), [10])
  })

  it('lists mount points under a dir, decoded, deepest first, not its namesakes', () => {
    const line = (id: number, point: string) => `${id} 1 0:${id} / ${point} rw,relatime shared:1 - overlay overlay rw`
    const info = [
      line(1, '/'),
      line(2, '/tmp/d/rt/state/k8s.io/abc/rootfs'),
      line(3, '/tmp/d'),
      line(4, '/tmp/d-other/x'),
      line(5, '/tmp/d/with\\040space'),
      '',
    ].join('\n')
    assert.deepEqual(mountsUnder(info, '/tmp/d/'), ['/tmp/d/rt/state/k8s.io/abc/rootfs', '/tmp/d/with space', '/tmp/d'])
  })
})

describe('dev leftovers: reclaim', () => {
  const children: ChildProcess[] = []
  const sleeper = async (): Promise<{ child: ChildProcess; ref: ProcessRef }> => {
    const child = spawn('sleep', ['60'], { stdio: 'ignore' })
    children.push(child)
    await new Promise((r) => child.once('spawn', r))
    for (let i = 0; i < 50; i++) {
      const ref = await processRef(child.pid!)
      if (ref?.name === 'sleep') return { child, ref } // not the pre-exec fork any more
      await new Promise((r) => setTimeout(r, 20))
    }
    throw new Error('sleep did not start')
  }
  const exited = (c: ChildProcess) => new Promise<string | null>((r) => (c.exitCode !== null || c.signalCode !== null ? r(c.signalCode) : c.once('exit', (_, sig) => r(sig))))
  const dirs: string[] = []
  const devDir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'dev-leftovers-'))
    dirs.push(d)
    return d
  }
  after(async () => {
    for (const c of children) c.kill('SIGKILL')
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  it('finds nothing in an empty or missing dir, or one a clean stop left files in (removed all the same)', async () => {
    assert.deepEqual(await reclaim(await devDir()), { outcome: 'clean' })
    assert.deepEqual(await reclaim(join(await devDir(), 'missing')), { outcome: 'clean' })
    const dir = await devDir()
    const gone = await sleeper()
    gone.child.kill('SIGKILL')
    await exited(gone.child)
    await writeState(dir, state(gone.ref, [gone.ref]))
    await mkdir(join(dir, 'cpgw-stack-x', 'cpgw-rt-y'), { recursive: true })
    assert.deepEqual(await reclaim(dir), { outcome: 'clean' })
    assert.deepEqual(await readdir(dir), [])
  })

  it('touches nothing while the recorded dev process runs', async () => {
    const dir = await devDir()
    const dev = await sleeper()
    const other = await sleeper()
    await writeState(dir, state(dev.ref, [other.ref]))
    assert.deepEqual(await runningDev(dir), { dev: dev.ref, startedAt: state(dev.ref).startedAt })
    const r = await reclaim(dir)
    assert.equal(r.outcome, 'busy')
    assert.equal(r.outcome === 'busy' && r.dev.pid, dev.ref.pid)
    assert.equal(other.child.exitCode, null)
    assert.deepEqual(await readdir(dir), [STATE_FILE])
  })

  it('kills the recorded processes that are still the same, then empties the dir', async () => {
    const dir = await devDir()
    const dev = await sleeper()
    dev.child.kill('SIGKILL')
    await exited(dev.child)
    const left = await sleeper()
    const reused = await sleeper() // its pid recorded with another start time: someone else's now
    await writeState(dir, state(dev.ref, [left.ref, { ...reused.ref, start: reused.ref.start - 1 }]))
    await mkdir(join(dir, 'miniflare-x', 'd1'), { recursive: true })
    await writeFile(join(dir, 'miniflare-x', 'd1', 'db.sqlite'), '')
    const r = await reclaim(dir)
    assert.equal(r.outcome, 'reclaimed')
    assert.deepEqual(r.outcome === 'reclaimed' && r.killed.map((p) => p.pid), [left.ref.pid])
    assert.equal(await exited(left.child), 'SIGKILL')
    assert.equal(reused.child.exitCode, null)
    assert.equal(reused.child.signalCode, null)
    assert.deepEqual(await readdir(dir), [])
    assert.equal(await runningDev(dir), undefined)
  })
})
