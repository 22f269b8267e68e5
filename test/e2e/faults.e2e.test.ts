// End-to-end fault: the agent process — the bundle a DaemonSet runs (agent/build.ts), as a child —
// SIGKILLed while CRIU dumps a real container on a real containerd 2.x + runc + CRIU
// (test/runtime/containerd.ts). The container must not be left PAUSED, and a restarted agent must
// list nothing partial. Then the bundle takes a whole checkpoint and serves it. Prints one JSON
// figure per line; counters named `frozen` or `partial` must be 0.
// Never skips: if the runtime cannot start, `before` fails and so does every test, with the reason.
//
//   flock /tmp/e2e.lock node_modules/.bin/node --test --test-concurrency=1 test/e2e/faults.e2e.test.ts
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Agent } from 'undici'
import { buildAgent } from '../../agent/build.ts'
import { parseEvent, type CheckpointEvent } from '../../shared/events.ts'
import type { Target } from '../../shared/names.ts'
import { GATEWAY_ID, makeIdentities, mintGrant, notAgentState, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { stopChild } from '../support/process.ts'
import { stopE2e } from '../support/teardown.ts'
import { poll, sleep, within } from '../support/wait.ts'
import { buildAndPushBusybox, runPod, startLocalRuntime, type LocalRuntime } from '../runtime/containerd.ts'
import { holdMemory } from '../runtime/workloads.ts'

const figure = (name: string, value: number, unit: string) => console.log(JSON.stringify({ name, value, unit }))
/** Large enough that the dump takes about a second (≈ 0.9 s at 200 MB here): a window to kill in. */
const HOG_MB = 300
const HOG: Target = { namespace: 'e2e', pod: 'hog', container: 'hog' }

describe('faults on containerd: the agent SIGKILLed mid-dump', { timeout: 150_000 }, () => {
  let work: string
  let ids: Identities
  let rt: LocalRuntime
  let hog: { podId: string; containerId: string }
  let child: ChildProcess | undefined
  let restarted: TestAgent | undefined
  let client: Agent | undefined
  let bundle: string
  const timings: Record<string, string> = {}

  /** `ctr tasks ls` STATUS and PID of a task. */
  const task = async (containerId: string): Promise<{ status?: string; pid?: string }> => {
    const out = await rt.ctr(['-n', 'k8s.io', 'tasks', 'ls'])
    for (const line of out.split('\n')) {
      const [id, pid, status] = line.trim().split(/\s+/)
      if (id === containerId) return { status, pid }
    }
    return {}
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'faults-e2e-'))
    ids = await makeIdentities(work)
    rt = await startLocalRuntime({ log: (line) => console.log(`# runtime: ${line}`) })
    const image = await buildAndPushBusybox(rt.registry, 'e2e/busybox', 'v1')
    hog = await runPod(rt.endpoint, { ...HOG, image, command: ['sh', '-c', holdMemory(HOG_MB)] })
    await poll(async () => {
      const { pid } = await task(hog.containerId)
      return pid && (await readFile(`/proc/${pid}/root/tmp/ready`, 'utf8').catch(() => '')).includes('ready') ? true : undefined
    }, 60_000, `${HOG_MB} MB container filling its memory`)
    client = new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' } })
    bundle = await buildAgent(join(work, 'agent.mjs'))
  }, { timeout: 120_000 })

  /** The bundled agent as its own process on `checkpointDir`; resolves with its URL once it listens. */
  async function spawnBundle(checkpointDir: string): Promise<{ c: ChildProcess; url: string; logs: string[]; exited: Promise<NodeJS.Signals | null> }> {
    const env = { ...process.env }
    delete env.NODE_TEST_CONTEXT
    delete env.NODE_OPTIONS
    const c = spawn(process.execPath, [
      bundle, '--listen=127.0.0.1:0', '--node-name=node-a', `--runtime-endpoint=${rt.endpoint}`,
      `--tls-cert=${ids.server.cert}`, `--tls-key=${ids.server.key}`, `--tls-ca=${ids.pki.ca.cert}`,
      `--allowed-clients=${GATEWAY_ID}`, `--grant-jwks-file=${ids.jwksFile}`, `--checkpoint-dir=${checkpointDir}`,
      '--disk-margin=0', '--heartbeat-interval=1s',
    ], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'], env })
    child = c
    const logs: string[] = []
    c.stderr!.on('data', (b: Buffer) => logs.push(b.toString()))
    const exited = new Promise<NodeJS.Signals | null>((r) => c.once('exit', (_code, signal) => r(signal)))
    const url = await within(new Promise<string>((resolve) => {
      createInterface({ input: c.stdout! }).on('line', (line) => {
        logs.push(line + '\n')
        try {
          const l = JSON.parse(line) as { msg?: string; address?: string }
          if (l.msg === 'agent listening') resolve(`https://${l.address}`)
        } catch {
          // not a log line
        }
      })
    }), 15_000, 'the agent listening')
    return { c, url, logs, exited }
  }

  after(async () => {
    await client?.destroy()
    if (child) await stopChild(child, 'SIGKILL')
    // A task left frozen would keep its pod from stopping: thaw it first (the test has failed already).
    if (rt && hog && (await task(hog.containerId).catch(() => ({}) as { status?: string })).status === 'PAUSED') {
      await rt.ctr(['-n', 'k8s.io', 'tasks', 'resume', hog.containerId]).catch(() => '')
    }
    await stopE2e({ agents: [['restarted agent', restarted]], rt, work, timings })
  }, { timeout: 60_000 })

  it('the container is RUNNING again (not PAUSED), and a restarted agent lists nothing partial and checkpoints it', async () => {
    const checkpointDir = join(work, 'agent', 'checkpoints')
    const { c, url, exited } = await spawnBundle(checkpointDir)

    const res = await client!.request({
      origin: url, path: `/checkpoint/${HOG.namespace}/${HOG.pod}/${HOG.container}`, method: 'POST',
      headers: { accept: 'application/x-ndjson', authorization: `Bearer ${await mintGrant(ids, { op: 'checkpoint:create', node: 'node-a', ...HOG })}` },
    })
    assert.equal(res.statusCode, 200)
    // Kill once the task is seen frozen (CRIU at work), or 1 s into the runtime call at the latest.
    const seen = new Set<string>()
    let killedWhile = ''
    const events: CheckpointEvent[] = []
    let cut: Error | undefined
    const reading = (async () => {
      let buf = ''
      try {
        for await (const chunk of res.body) {
          buf += chunk.toString()
          for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
            events.push(parseEvent(buf.slice(0, nl)))
            buf = buf.slice(nl + 1)
          }
        }
      } catch (err) {
        cut = err as Error
      }
    })()
    await poll(async () => (events.some((e) => e.type === 'resolved') ? true : undefined), 10_000, 'the resolved event', 10)
    const t0 = performance.now()
    for (;;) {
      const { status } = await task(hog.containerId)
      if (status) seen.add(status)
      if (status === 'PAUSED' || performance.now() - t0 > 1_000) {
        killedWhile = status ?? 'absent'
        break
      }
    }
    const killedAt = performance.now()
    c.kill('SIGKILL')
    assert.equal(await exited, 'SIGKILL')
    await reading
    timings['task states seen before the kill'] = [...seen].join(', ')
    timings['task state at the kill'] = killedWhile
    timings['resolved event to kill'] = `${Math.round(killedAt - t0)} ms`
    assert.ok(!events.some((e) => e.type === 'completed'), 'the kill came before the checkpoint completed')
    assert.ok(cut, 'the stream ends in an error')

    // Whatever containerd does with the cancelled call, the container must come back RUNNING.
    const states: string[] = []
    let running = false
    const deadline = performance.now() + 30_000
    while (performance.now() < deadline) {
      const { status } = await task(hog.containerId)
      if (states.at(-1) !== status) states.push(String(status))
      if (status === 'RUNNING') {
        running = true
        break
      }
      await sleep(100)
    }
    timings['task states after the kill'] = states.join(' → ')
    timings['kill to RUNNING'] = running ? `${Math.round(performance.now() - killedAt)} ms` : 'never (30 s)'
    figure('faults_e2e_kill_mid_dump_frozen', running ? 0 : 1, 'containers')
    assert.ok(running, `the container was left ${states.at(-1)} after the agent died mid-dump (${states.join(' → ')})`)

    // containerd may still write its archive into the dead agent's temporary file: let it settle.
    await sleep(3_000)
    const beforeRestart = (await readdir(checkpointDir)).filter(notAgentState)
    timings['files left by the killed agent (before restart)'] = beforeRestart.join(', ') || 'none'
    restarted = await startTestAgent({ ids, endpoint: rt.endpoint, dir: join(work, 'agent') })
    const partial = (await readdir(checkpointDir)).filter((n) => n.startsWith('.inprogress-'))
    figure('faults_e2e_kill_restart_partial', partial.length, 'files')
    assert.deepEqual(partial, [])
    const list = await restarted.fetch('/checkpoints', { headers: { authorization: `Bearer ${await restarted.mint({ op: 'checkpoint:list' })}` } })
    assert.deepEqual((await list.body.json() as { items: unknown[] }).items, [])
    // The container is whole: it checkpoints.
    const again = await restarted.fetch(`/checkpoint/${HOG.namespace}/${HOG.pod}/${HOG.container}`, { method: 'POST', headers: { authorization: `Bearer ${await restarted.mint({ op: 'checkpoint:create', ...HOG })}` } })
    const body = await again.body.text()
    assert.equal(again.statusCode, 200, body)
    assert.equal((await task(hog.containerId)).status, 'RUNNING')
  })

  it('the bundle checkpoints the container whole and serves the archive; checkpointctl reads it', async () => {
    const dir = join(work, 'bundle', 'checkpoints')
    const { c, url, logs } = await spawnBundle(dir)
    try {
      const res = await client!.request({
        origin: url, path: `/checkpoint/${HOG.namespace}/${HOG.pod}/${HOG.container}`, method: 'POST',
        headers: { accept: 'application/x-ndjson', authorization: `Bearer ${await mintGrant(ids, { op: 'checkpoint:create', node: 'node-a', ...HOG })}` },
      })
      const events = (await res.body.text()).trim().split('\n').map(parseEvent)
      const done = events.at(-1)!
      assert.equal(done.type, 'completed', logs.join('').slice(-2000))
      if (done.type !== 'completed') return
      const name = done.archive.name
      const got = await client!.request({
        origin: url, path: `/checkpoints/${encodeURIComponent(name)}`, method: 'GET',
        headers: { authorization: `Bearer ${await mintGrant(ids, { op: 'checkpoint:read', node: 'node-a', archive: name, namespaces: [HOG.namespace] })}` },
      })
      assert.equal(got.statusCode, 200)
      const hash = createHash('sha256')
      for await (const chunk of got.body) hash.update(chunk as Buffer)
      assert.equal(hash.digest('hex'), done.archive.sha256)
      assert.match(await rt.checkpointctl(['show', join(dir, name)]), new RegExp(hog.containerId.slice(0, 12)))
      assert.equal((await task(hog.containerId)).status, 'RUNNING')
    } finally {
      await stopChild(c, 'SIGTERM')
    }
  })
})
