/**
 * Faults, each with its expected outcome: the runtime missing, hanging, erroring or dying in the
 * middle of a checkpoint, the disk filling up (during a checkpoint, at a request, at start), the
 * caller hanging up — on an agent in-process over real mTLS against the fake CRI — and the agent
 * process itself (`agent/main.ts` as a child) SIGKILLed mid-stream and mid-download (directly and
 * through the Node gateway) or SIGTERMed mid-checkpoint. Prints one JSON figure per line; counters
 * named `crash`, `5xx`, `lost`, `frozen` or `partial` must be 0.
 *
 * Covered elsewhere: the checkpoint directory removed (test/agent/agent.test.ts, "refuses before
 * calling the runtime when the checkpoint directory is gone"), a stream cut between the agent and
 * the gateway (test/functions/gateway.suite.ts, "a stream cut before its final event"), the gateway
 * restarted with queued alert jobs (test/functions/hooks.restart.test.ts), the agent SIGKILLed while
 * CRIU dumps a real container (test/e2e/faults.e2e.test.ts).
 */
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { JWK } from 'jose'
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici'
import { generateIdentity } from '../../agent/seal/age.ts'
import { s3Client } from '../../functions/vault/s3.ts'
import { objectKey, parseVaultConfig, storeArchive } from '../../functions/vault/vault.ts'
import { startS3Server } from '../runtime/s3-server.ts'
import { parseEvent, type CheckpointEvent } from '../../shared/events.ts'
import { GRANT_ISSUER, makeWorld } from '../support/gateway/fixtures.ts'
import { nodeTarget } from '../support/gateway/targets.ts'
import { GATEWAY_ID, everyReading, makeIdentities, mintGrant, notAgentState, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeContainer, type FakeCri } from '../support/fake-cri.ts'
import { agentListening, stopChild } from '../support/process.ts'
import { poll, sleep, within } from '../support/wait.ts'

const run = promisify(execFile)
const REPO = fileURLToPath(new URL('../../', import.meta.url))
const figure = (name: string, value: number, unit: string) => console.log(JSON.stringify({ name, value, unit }))
const MiB = 2 ** 20
const GRPC_UNKNOWN = 2

const T = { namespace: 'faults', pod: 'web-0', container: 'app' }
const OTHER = { namespace: 'faults', pod: 'web-1', container: 'app' }
const BIG = { namespace: 'faults', pod: 'big-0', container: 'app' }
const containers = (): FakeContainer[] => [
  { id: 'c-web-0', ...T, workingSetBytes: 1000 },
  { id: 'c-web-1', ...OTHER, workingSetBytes: 1000 },
  { id: 'c-big-0', ...BIG, workingSetBytes: 1000 },
]
type Target = typeof T
const { recipient } = generateIdentity()
const cpPath = (t: Target) => `/checkpoint/${t.namespace}/${t.pod}/${t.container}`

/** Files in a checkpoint directory that are not the grant journal: archives, their records, and anything partial. */
const leftovers = async (checkpointDir: string) => (await readdir(checkpointDir).catch(() => [] as string[])).filter(notAgentState)
const partials = async (checkpointDir: string) => (await leftovers(checkpointDir)).filter((n) => n.startsWith('.inprogress-'))

/** NDJSON events as they come, and how the body ended: cleanly, or with an error (a cut). */
async function readEvents(body: AsyncIterable<Buffer | string>, onEvent: (e: CheckpointEvent) => void = () => {}): Promise<{ events: CheckpointEvent[]; error?: Error }> {
  const events: CheckpointEvent[] = []
  let buf = ''
  try {
    for await (const chunk of body) {
      buf += chunk.toString()
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const e = parseEvent(buf.slice(0, nl))
        buf = buf.slice(nl + 1)
        events.push(e)
        onEvent(e)
      }
    }
    return { events }
  } catch (error) {
    return { events, error: error as Error }
  }
}

const json = async (r: Dispatcher.ResponseData): Promise<any> => JSON.parse(await r.body.text())

let dir: string
let ids: Identities
/** Tallies over the whole file, printed at the end. */
const probes = { sent: 0, fivexx: 0 }

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'faults-'))
  ids = await makeIdentities(dir)
})
after(async () => {
  figure('faults_probes', probes.sent, 'requests')
  figure('faults_probe_5xx', probes.fivexx, 'requests')
  await rm(dir, { recursive: true, force: true })
  assert.equal(probes.fivexx, 0)
})

/** A fresh fake runtime and in-process agent; stop() stops both and checks what stayed on disk. */
async function stack(o: { fake?: Parameters<typeof startFakeCri>[1]; args?: string[]; agentDir?: string } = {}) {
  const sub = await mkdtemp(join(dir, 's-'))
  const socket = join(sub, 'cri.sock')
  const cri = await startFakeCri(socket, o.fake ?? {}, containers())
  const agentDir = o.agentDir ?? sub
  const a = await startTestAgent({ ids, endpoint: cri.endpoint, dir: agentDir, args: ['--heartbeat-interval=1s', ...(o.args ?? [])] })
  const cpDir = join(agentDir, 'checkpoints')
  const mint = (t: Target) => a.mint({ op: 'checkpoint:create', ...t })
  return {
    cri, a, cpDir, socket,
    checkpoint: async (t: Target, o2: { query?: string; ndjson?: boolean } = {}) =>
      a.fetch(`${cpPath(t)}${o2.query ?? ''}`, { method: 'POST', headers: { accept: o2.ndjson ? 'application/x-ndjson' : 'application/json', authorization: `Bearer ${await mint(t)}` } }),
    list: async () => json(await a.fetch('/checkpoints', { headers: { authorization: `Bearer ${await a.mint({ op: 'checkpoint:list' })}` } })) as Promise<{ items: Array<{ name: string; size: number }> }>,
    /** The agent still answers: /healthz 200 and the list 200. Counts 5xx over the file. */
    async serving() {
      const h = await a.fetch('/healthz')
      await h.body.dump()
      const l = await a.fetch('/checkpoints', { headers: { authorization: `Bearer ${await a.mint({ op: 'checkpoint:list' })}` } })
      await l.body.dump()
      probes.sent += 2
      probes.fivexx += [h.statusCode, l.statusCode].filter((s) => s >= 500).length
      return h.statusCode === 200 && l.statusCode === 200
    },
    async stop() {
      await cri.stop()
      await a.stop()
    },
  }
}

describe('faults on the agent (in-process, real mTLS, fake CRI)', () => {
  it('runtime socket missing at a request → 503 runtime_unavailable, nothing written', async () => {
    const s = await stack()
    try {
      await s.cri.stop()
      await rm(s.socket, { force: true })
      const t0 = performance.now()
      const r = await s.checkpoint(T)
      const ms = performance.now() - t0
      const p = await json(r)
      figure('faults_socket_missing_answer', Math.round(ms), 'ms')
      figure('faults_socket_missing_partial', (await leftovers(s.cpDir)).length, 'files')
      assert.deepEqual([r.statusCode, p.code], [503, 'runtime_unavailable'])
      assert.deepEqual(await leftovers(s.cpDir), [])
      assert.ok(await s.serving())
      const ready = await s.a.fetch('/readyz')
      assert.equal(ready.statusCode, 503, '/readyz says the runtime is gone')
      await ready.body.dump()
    } finally { await s.stop() }
  })

  it('runtime hanging → the caller’s timeout answers 504; other routes are served; nothing partial is listed', async () => {
    const s = await stack({ fake: { hang: true } })
    try {
      const t0 = performance.now()
      const r = await within(s.checkpoint(T, { query: '?timeout=1' }), 10_000, 'the 504')
      const ms = performance.now() - t0
      assert.deepEqual([r.statusCode, (await json(r)).code], [504, 'timeout'])
      const streamed = await s.checkpoint(T, { query: '?timeout=1', ndjson: true })
      const last = (await readEvents(streamed.body)).events.at(-1)
      assert.ok(last?.type === 'failed' && last.code === 'timeout' && last.status === 504)
      assert.equal(s.cri.checkpointCalls.length, 1, 'the second caller joined the hung call')
      assert.ok(await s.serving())
      const listed = (await s.list()).items
      figure('faults_hang_timeout_answer', Math.round(ms), 'ms')
      figure('faults_hang_partial_listed', listed.length, 'archives')
      assert.deepEqual(listed, [])
      // The runtime's eventual answer (an error when the fake stops) leaves nothing behind either.
      await s.cri.stop()
      await poll(async () => (s.a.agent.checkpointer.runtimeCalls === 0 ? true : undefined), 5_000, 'the hung call ended')
      assert.deepEqual(await leftovers(s.cpDir), [])
    } finally { await s.stop() }
  })

  it('runtime erroring → 500 checkpoint_failed, nothing kept', async () => {
    const s = await stack({ fake: { checkpointError: { code: GRPC_UNKNOWN, details: 'criu failed: type DUMP errno 0' } } })
    try {
      const r = await s.checkpoint(T)
      assert.deepEqual([r.statusCode, (await json(r)).code], [500, 'checkpoint_failed'])
      figure('faults_runtime_error_partial', (await leftovers(s.cpDir)).length, 'files')
      assert.deepEqual(await leftovers(s.cpDir), [])
      assert.deepEqual((await s.list()).items, [])
      assert.ok(await s.serving())
    } finally { await s.stop() }
  })

  it('runtime dying mid-checkpoint → a failure, not completed; nothing partial; the agent serves, and checkpoints again once the runtime is back', async () => {
    const s = await stack({ fake: { hold: true } })
    let back: FakeCri | undefined
    try {
      const streaming = s.checkpoint(T, { ndjson: true }).then((r) => readEvents(r.body))
      await poll(async () => (s.cri.checkpointCalls.length === 1 ? true : undefined), 5_000, 'the checkpoint in the runtime', 10)
      s.cri.kill()
      const { events, error } = await within(streaming, 10_000, 'the answer after the runtime died')
      const last = events.at(-1)
      figure('faults_runtime_died_lost', last?.type === 'failed' ? 0 : 1, 'streams')
      assert.equal(error, undefined, 'the agent ended the stream itself')
      assert.ok(last?.type === 'failed', `last event: ${JSON.stringify(last)}`)
      assert.ok(last.status >= 500 && ['runtime_unavailable', 'checkpoint_failed'].includes(last.code), `${last.status} ${last.code}`)
      figure('faults_runtime_died_status', last.status, 'status')
      assert.ok(!events.some((e) => e.type === 'completed'))
      figure('faults_runtime_died_partial', (await leftovers(s.cpDir)).length, 'files')
      assert.deepEqual(await leftovers(s.cpDir), [])
      assert.ok(await s.serving())
      // The runtime comes back on the same socket: the agent's channel reconnects by itself.
      await rm(s.socket, { force: true })
      back = await startFakeCri(s.socket, {}, containers())
      const t0 = performance.now()
      const r = await poll(async () => {
        const x = await s.checkpoint(T)
        if (x.statusCode === 200) return x
        await x.body.dump()
        return undefined
      }, 20_000, 'a checkpoint after the runtime came back', 100)
      figure('faults_runtime_back_to_checkpoint', Math.round(performance.now() - t0), 'ms')
      await r.body.dump()
      assert.equal((await s.list()).items.length, 1)
    } finally {
      await back?.stop()
      await s.stop()
    }
  })

  describe('disk full (a 1 MiB tmpfs under the checkpoint directory)', () => {
    const mounts = new Set<string>()
    /** A fresh 1 MiB tmpfs for one test. */
    const tmpfs = async () => {
      const mnt = await mkdtemp(join(dir, 'tmpfs-'))
      await run('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt])
      mounts.add(mnt)
      return mnt
    }
    const unmount = async (mnt: string) => {
      await run('umount', [mnt]).catch(() => run('umount', ['-l', mnt]))
      mounts.delete(mnt)
    }
    /** Takes every free byte of the filesystem; returns the filler to remove. */
    const fill = async (mnt: string) => {
      const filler = join(mnt, 'filler')
      const fh = await open(filler, 'w')
      for (const size of [64 * 1024, 1]) {
        try { for (;;) await fh.write(Buffer.alloc(size)) } catch (err) { assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC') }
      }
      await fh.close()
      return filler
    }
    after(async () => {
      for (const mnt of mounts) await unmount(mnt)
    })

    it('during a checkpoint → 5xx with a code, no partial file, the agent keeps serving and checkpoints what fits', async () => {
      // The preflight sees a 1,000-byte working set against ~1 MiB free and lets it through; the
      // runtime then writes 4 MiB.
      const mnt = await tmpfs()
      const s = await stack({ fake: { archiveBytes: 4 * MiB }, agentDir: mnt })
      try {
        const r = await s.checkpoint(T)
        const p = await json(r)
        figure('faults_disk_full_status', r.statusCode, 'status')
        assert.ok(r.statusCode >= 500 && ['checkpoint_failed', 'insufficient_storage'].includes(p.code), `${r.statusCode} ${p.code}`)
        const left = await leftovers(s.cpDir)
        figure('faults_disk_full_partial', left.length, 'files')
        assert.deepEqual(left, [])
        assert.ok(await s.serving())
        s.cri.behaviour.archiveBytes = 64 * 1024
        const small = await s.checkpoint(OTHER)
        assert.equal(small.statusCode, 200)
        await small.body.dump()
        assert.equal((await s.list()).items.length, 1)
      } finally {
        await s.stop()
        await unmount(mnt)
      }
    })

    it('at a request → grants that cannot be journalled are refused (507 insufficient_storage), and once there is room again every grant used stays used across a restart', async () => {
      const mnt = await tmpfs()
      const s = await stack({ agentDir: mnt })
      let again: TestAgent | undefined
      const list = async (a: TestAgent, grant: string) => {
        const r = await a.fetch('/checkpoints', { headers: { authorization: `Bearer ${grant}` } })
        return { status: r.statusCode, body: await json(r) }
      }
      try {
        const honoured: string[] = []
        const use = async () => {
          const g = await s.a.mint({ op: 'checkpoint:list' })
          const r = await list(s.a, g)
          if (r.status === 200) honoured.push(g)
          return r
        }
        // Some entries first: the journal's last page has room, so the disk fills mid-line.
        for (let i = 0; i < 10; i++) assert.equal((await use()).status, 200)
        const filler = await fill(mnt)
        let refused: { status: number; body: { code?: string } } | undefined
        for (let i = 0; i < 500 && !refused; i++) {
          const r = await use()
          if (r.status !== 200) refused = r
        }
        assert.ok(refused, 'a full disk refuses grants it cannot journal')
        figure('faults_disk_full_grants_refused_status', refused.status, 'status')
        console.log(`# disk full at a request: ${refused.status} ${refused.body.code}`)
        assert.deepEqual([refused.status, refused.body.code], [507, 'insufficient_storage'])
        await rm(filler)
        assert.equal((await use()).status, 200, 'served again once there is room')
        await s.a.stop()
        again = await startTestAgent({ ids, endpoint: s.cri.endpoint, dir: mnt })
        let replayed = 0
        for (const g of honoured) if ((await list(again, g)).status !== 401) replayed++
        figure('faults_disk_full_grants_honoured', honoured.length, 'grants')
        figure('faults_disk_full_journal_lost', replayed, 'grants')
        assert.equal(replayed, 0, `${replayed} of ${honoured.length} used grants were honoured again after a restart`)
      } finally {
        await again?.stop()
        await s.stop()
        await unmount(mnt)
      }
    })

    it('at start → the agent starts and serves on a full disk (no crash loop), and honours grants once there is room', async () => {
      const mnt = await tmpfs()
      const s = await stack({ agentDir: mnt })
      let again: TestAgent | undefined
      try {
        for (let i = 0; i < 10; i++) {
          const r = await s.a.fetch('/checkpoints', { headers: { authorization: `Bearer ${await s.a.mint({ op: 'checkpoint:list' })}` } })
          assert.equal(r.statusCode, 200)
          await r.body.dump()
        }
        await s.a.stop()
        const filler = await fill(mnt)
        let startError: Error | undefined
        again = await startTestAgent({ ids, endpoint: s.cri.endpoint, dir: mnt }).catch((err) => {
          startError = err as Error
          return undefined
        })
        figure('faults_disk_full_start_crash', startError ? 1 : 0, 'starts')
        assert.equal(startError, undefined, `the agent did not start on a full disk: ${startError?.message}`)
        const h = await again!.fetch('/healthz')
        assert.equal(h.statusCode, 200)
        await h.body.dump()
        await rm(filler)
        const r = await again!.fetch('/checkpoints', { headers: { authorization: `Bearer ${await again!.mint({ op: 'checkpoint:list' })}` } })
        assert.equal(r.statusCode, 200)
        await r.body.dump()
        assert.deepEqual((await readdir(s.cpDir)).filter((n) => n.endsWith('.tmp')), [], 'no half-written journal left')
      } finally {
        await again?.stop()
        await s.stop()
        await unmount(mnt)
      }
    })
  })

  it('caller disconnects mid-checkpoint → the checkpoint completes and the archive is listed', async () => {
    const s = await stack({ fake: { hold: true, archiveBytes: 256 * 1024 } })
    const client = new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' } })
    try {
      for (const ndjson of [false, true]) {
        const t = ndjson ? OTHER : T
        const calls0 = s.cri.checkpointCalls.length
        const abort = new AbortController()
        const asked = client.request({
          origin: s.a.agent.url, path: cpPath(t), method: 'POST', signal: abort.signal,
          headers: { accept: ndjson ? 'application/x-ndjson' : 'application/json', authorization: `Bearer ${await s.a.mint({ op: 'checkpoint:create', ...t })}` },
        }).then((r) => r.body.text())
        asked.catch(() => {})
        await poll(async () => (s.cri.checkpointCalls.length === calls0 + 1 ? true : undefined), 5_000, 'the checkpoint in the runtime', 10)
        abort.abort()
        await assert.rejects(asked)
        s.cri.release()
        const items = await poll(async () => {
          const l = (await s.list()).items.filter((i) => i.name.startsWith(`checkpoint-${t.pod}_`))
          return l.length ? l : undefined
        }, 5_000, 'the archive listed')
        figure(`faults_disconnect_${ndjson ? 'ndjson' : 'json'}_lost`, items.length === 1 && items[0]!.size === 256 * 1024 ? 0 : 1, 'archives')
        assert.equal(items.length, 1)
        assert.equal(items[0]!.size, 256 * 1024)
      }
      assert.deepEqual(await partials(s.cpDir), [])
      assert.ok(await s.serving())
    } finally {
      s.cri.release()
      await client.destroy()
      await s.stop()
    }
  })
})

interface ChildAgent {
  child: ChildProcess
  url: string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  logs: string[]
}

/** `agent/main.ts` as its own process, with the harness's flags (`identity` replaces its TLS and grant-key flags); resolves once it listens. */
async function spawnAgent(endpoint: string, checkpointDir: string, args: string[] = [], identity?: string[]): Promise<ChildAgent> {
  const env = { ...process.env }
  delete env.NODE_TEST_CONTEXT
  delete env.NODE_OPTIONS
  const child = spawn(process.execPath, [
    'agent/main.ts',
    '--listen=127.0.0.1:0',
    '--node-name=node-a',
    `--runtime-endpoint=${endpoint}`,
    ...(identity ?? [
      `--tls-cert=${ids.server.cert}`, `--tls-key=${ids.server.key}`, `--tls-ca=${ids.pki.ca.cert}`,
      `--allowed-clients=${GATEWAY_ID}`,
      `--grant-jwks-file=${ids.jwksFile}`,
    ]),
    `--checkpoint-dir=${checkpointDir}`,
    '--disk-margin=0',
    '--heartbeat-interval=1s',
    ...args,
  ], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env })
  const logs: string[] = []
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })))
  const url = await agentListening(child, logs)
  return { child, url, exited, logs }
}

describe('the agent process killed or stopped (agent/main.ts as a child, fake CRI)', () => {
  let sub: string
  let cpDir: string
  let cri: FakeCri
  let client: Agent
  const children: ChildAgent[] = []
  const start = async (args: string[] = []) => {
    const c = await spawnAgent(cri.endpoint, cpDir, args)
    children.push(c)
    return c
  }
  const mint = (claims: Parameters<typeof mintGrant>[1]) => mintGrant(ids, claims)
  const post = async (c: ChildAgent, t: Target, ndjson: boolean, via = client) => via.request({
    origin: c.url, path: cpPath(t), method: 'POST',
    headers: { accept: ndjson ? 'application/x-ndjson' : 'application/json', authorization: `Bearer ${await mint({ op: 'checkpoint:create', node: 'node-a', ...t })}` },
  })

  before(async () => {
    sub = await mkdtemp(join(dir, 'child-'))
    cpDir = join(sub, 'checkpoints')
    cri = await startFakeCri(join(sub, 'cri.sock'), {}, containers())
    client = new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' } })
  })
  after(async () => {
    await client?.destroy()
    for (const c of children) await stopChild(c.child, 'SIGKILL')
    cri?.release()
    await cri?.stop()
  })

  let bigArchive: { name: string; size: number } | undefined

  it('SIGKILL during a large download → the client sees a cut body with an error, never a clean end', async () => {
    const c = await start()
    cri.behaviour.archiveBytes = 64 * MiB
    const made = await json(await post(c, BIG, false))
    cri.behaviour.archiveBytes = 4096
    const name = (made.items[0] as string).split('/').at(-1)!
    bigArchive = { name, size: (await stat(join(cpDir, name))).size }
    assert.equal(bigArchive.size, 64 * MiB)
    const r = await client.request({
      origin: c.url, path: `/checkpoints/${bigArchive.name}`, method: 'GET',
      headers: { authorization: `Bearer ${await mint({ op: 'checkpoint:read', node: 'node-a', archive: bigArchive.name, namespaces: everyReading(bigArchive.name) })}` },
    })
    assert.equal(r.statusCode, 200)
    assert.equal(Number(r.headers['content-length']), 64 * MiB)
    let received = 0
    let error: Error | undefined
    try {
      for await (const chunk of r.body) {
        if (received === 0) {
          // A slow reader: the first chunk is in, the agent dies before the rest is read.
          c.child.kill('SIGKILL')
          await c.exited
        }
        received += (chunk as Buffer).length
        await sleep(1)
      }
    } catch (err) {
      error = err as Error
    }
    console.log(`# direct: ${(received / MiB).toFixed(1)} MiB of 64, then ${error ? `${error.name}: ${error.message}` : 'a clean end'}`)
    figure('faults_kill_download_received', Math.round((received / MiB) * 10) / 10, 'MiB')
    figure('faults_kill_download_partial_accepted', error === undefined ? 1 : 0, 'downloads')
    assert.ok(received < 64 * MiB, `received ${received}`)
    assert.ok(error, 'a cut download must end with an error')
  })

  it('through the Node gateway: SIGKILL during a download → the gateway’s caller sees a cut body with an error, never a clean end', async () => {
    // The gateway suite's world (PKI, identity provider, grant keys) with a real agent process as cluster `real`.
    const world = await makeWorld()
    const files = await mkdtemp(join(dir, 'world-'))
    let gw: Awaited<ReturnType<typeof nodeTarget>> | undefined
    try {
      const put = async (name: string, text: string) => (await writeFile(join(files, name), text), join(files, name))
      const publicKeys = world.grantKeys.map(({ d: _d, ...pub }: JWK) => pub)
      const identity = [
        `--tls-cert=${await put('server.crt', world.pki.serverCert)}`, `--tls-key=${await put('server.key', world.pki.serverKey)}`,
        `--tls-ca=${await put('ca.crt', world.pki.caCert)}`, '--allowed-clients=cn:checkpoint-gateway',
        `--grant-jwks-file=${await put('grant-jwks.json', JSON.stringify({ keys: publicKeys }))}`, `--grant-issuer=${GRANT_ISSUER}`,
      ]
      const c = children[children.push(await spawnAgent(cri.endpoint, join(files, 'checkpoints'), [], identity)) - 1]!
      const raw = world.rawConfig()
      ;(raw.clusters as Record<string, unknown>).real = { agentUrl: c.url, agentCa: world.pki.caCert }
      gw = await nodeTarget(world, raw)
      const sre = { authorization: `Bearer ${await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:create checkpoint:read checkpoint:delete' })}` }
      cri.behaviour.archiveBytes = 64 * MiB
      const made = await gw.fetch(`/v1/clusters/real/nodes/node-a${cpPath(BIG)}`, { method: 'POST', headers: sre })
      cri.behaviour.archiveBytes = 4096
      const body = (await made.json()) as { download: string; archive: { size: number } }
      assert.equal(made.status, 200, JSON.stringify(body))
      const r = await gw.fetch(body.download, { headers: sre })
      assert.equal(r.status, 200)
      assert.equal(Number(r.headers.get('content-length') ?? body.archive.size), 64 * MiB)
      let received = 0
      let error: Error | undefined
      try {
        for await (const chunk of r.body!) {
          if (received === 0) {
            c.child.kill('SIGKILL')
            await c.exited
          }
          received += chunk.length
          await sleep(1)
        }
      } catch (err) {
        error = err as Error
      }
      console.log(`# through the gateway: ${(received / MiB).toFixed(1)} MiB of 64, then ${error ? `${error.name}: ${error.message}${(error.cause as Error | undefined)?.message ? ` (${(error.cause as Error).message})` : ''}` : 'a clean end'}`)
      figure('faults_gateway_kill_download_partial_accepted', error === undefined ? 1 : 0, 'downloads')
      assert.ok(received < 64 * MiB, `received ${received}`)
      assert.ok(error, 'a download cut at the agent must reach the caller as an error')
    } finally {
      await gw?.close()
      await world.close()
    }
  })

  it('SIGKILL while a checkpoint stream is open → no completed event, the stream ends in an error; a restarted agent lists no partial file', async () => {
    const c = await start()
    cri.behaviour.hold = true
    const calls0 = cri.checkpointCalls.length
    const r = await post(c, T, true)
    assert.equal(r.statusCode, 200)
    let killed = false
    const { events, error } = await readEvents(r.body, (e) => {
      if (e.type === 'resolved' && !killed) {
        killed = true
        void poll(async () => (cri.checkpointCalls.length === calls0 + 1 ? true : undefined), 5_000, 'the checkpoint in the runtime', 10)
          .then(() => c.child.kill('SIGKILL'))
      }
    })
    assert.equal((await c.exited).signal, 'SIGKILL')
    const completed = events.filter((e) => e.type === 'completed').length
    figure('faults_kill_stream_partial_accepted', error === undefined || completed > 0 ? 1 : 0, 'streams')
    console.log(`# stream: ${events.map((e) => e.type).join(',')}, then ${error ? `${error.name}: ${error.message}` : 'a clean end'}`)
    assert.equal(completed, 0)
    assert.ok(!events.some((e) => e.type === 'failed'), 'nobody was left to say failed')
    assert.ok(error, 'a cut stream must end with an error')
    // The runtime finishes after the agent died: it writes into the agent's temporary file.
    cri.behaviour.hold = false
    cri.release()
    await poll(async () => (cri.checkpointCalls.at(-1)!.answered ? true : undefined), 5_000, 'the runtime done')
    assert.equal((await partials(cpDir)).length, 1, 'the runtime left its file')
    // A restarted agent removes it and lists only complete archives: the big one survived.
    const again = await start()
    const list = await json(await client.request({ origin: again.url, path: '/checkpoints', method: 'GET', headers: { authorization: `Bearer ${await mint({ op: 'checkpoint:list', node: 'node-a' })}` } }))
    const names = (list.items as Array<{ name: string; size: number }>).map((i) => i.name)
    figure('faults_kill_restart_partial', (await partials(cpDir)).length, 'files')
    figure('faults_kill_restart_lost', bigArchive && names.includes(bigArchive.name) ? 0 : 1, 'archives')
    assert.deepEqual(await partials(cpDir), [])
    assert.ok(bigArchive, 'the archive of the download test')
    assert.deepEqual(names, [bigArchive.name])
    await stopChild(again.child, 'SIGTERM')
    assert.equal((await again.exited).code, 0)
  })

  it('SIGTERM during a checkpoint → the running one finishes and is reported, new ones are refused, exit 0', async () => {
    const c = await start(['--shutdown-grace=20s'])
    cri.behaviour.hold = true
    const calls0 = cri.checkpointCalls.length
    const own = new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' } })
    try {
      const r = await post(c, OTHER, true, own)
      const streaming = readEvents(r.body)
      await poll(async () => (cri.checkpointCalls.length === calls0 + 1 ? true : undefined), 5_000, 'the checkpoint in the runtime', 10)
      c.child.kill('SIGTERM')
      // New connections are refused once the signal is handled (a fresh client, a fresh connection).
      const refusal = await poll(async () => {
        const fresh = new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' } })
        try {
          const x = await post(c, T, false, fresh)
          const code = (await json(x)).code as string
          return x.statusCode === 503 ? `503 ${code}` : undefined
        } catch (err) {
          return (err as { code?: string }).code ?? String(err)
        } finally {
          await fresh.destroy()
        }
      }, 5_000, 'new checkpoints refused', 50)
      console.log(`# SIGTERM: a new checkpoint got ${refusal}`)
      assert.match(refusal, /ECONNREFUSED|503 shutting_down/)
      assert.equal(c.child.exitCode, null, 'the agent waits for the running checkpoint')
      cri.behaviour.hold = false
      cri.release()
      const { events, error } = await within(streaming, 10_000, 'the stream’s end')
      const last = events.at(-1)
      figure('faults_sigterm_lost', last?.type === 'completed' ? 0 : 1, 'checkpoints')
      assert.equal(error, undefined)
      assert.ok(last?.type === 'completed', `last event: ${JSON.stringify(last)}`)
      await own.destroy()
      const t0 = performance.now()
      const { code } = await within(c.exited, 15_000, 'the agent’s exit')
      figure('faults_sigterm_exit_after_done', Math.round(performance.now() - t0), 'ms')
      assert.equal(code, 0)
      assert.equal((await stat(join(cpDir, last.archive.name))).size, last.archive.size)
      assert.deepEqual(await partials(cpDir), [])
    } finally {
      await own.destroy()
    }
  })

  it('SIGKILL mid-upload (vault store) → store_failed, the multipart upload aborted, nothing stored; the restarted agent stores it', async () => {
    const s3 = await startS3Server()
    const storeDir = await mkdtemp(join(dir, 'store-'))
    const c = children[children.push(await spawnAgent(cri.endpoint, storeDir)) - 1]!
    try {
      cri.behaviour.archiveBytes = 24 * MiB
      cri.behaviour.randomArchive = true
      const made = await json(await post(c, T, false))
      cri.behaviour.archiveBytes = 4096
      cri.behaviour.randomArchive = false
      const name = (made.items[0] as string).split('/').at(-1)!
      const listed = await json(await client.request({ origin: c.url, path: '/checkpoints', method: 'GET', headers: { authorization: `Bearer ${await mint({ op: 'checkpoint:list', node: 'node-a' })}` } }))
      const archive = (listed.items as Array<{ name: string; size: number; sha256: string }>).find((i) => i.name === name)!
      const storage = s3Client({ endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey })
      const cfg = parseVaultConfig({ backend: 's3', s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyIdSecret: 'K', secretAccessKeySecret: 'S' }, partSizeMiB: 5, recipients: [{ clusters: ['*'], namespaces: ['*'], recipients: [recipient] }] }, (n) => (n === 'K' ? s3.accessKeyId : s3.secretAccessKey))
      const uploads: string[] = []
      const spy = { ...storage, bucket: storage.bucket, createMultipartUpload: async (k: string, m?: Record<string, string>) => { const id = await storage.createMultipartUpload(k, m); uploads.push(id); return id } }
      const store = (agentUrl: string, onEvent: (e: { type: string }) => void) => storeArchive({
        storage: spy, cfg, cluster: 'prod', target: T, archive, recipients: [recipient], requestId: 'req-kill-store',
        grant: async (plan) => ({ authorization: `Bearer ${await mint({ op: 'checkpoint:store', node: 'node-a', archive: name, namespaces: [T.namespace], plan })}` }),
        agent: (path, init) => undiciFetch(agentUrl + path, { ...(init as object), dispatcher: client }) as unknown as Promise<Response>,
        emit: onEvent, now: Date.now,
      })
      let killed = false
      const out = await store(c.url, (e) => {
        if (e.type === 'uploading' && !killed) {
          killed = true
          c.child.kill('SIGKILL')
        }
      })
      assert.equal((await c.exited).signal, 'SIGKILL')
      figure('faults_kill_store_completed', out.type === 'stored' ? 1 : 0, 'uploads')
      assert.deepEqual([out.type, out.type === 'store_failed' ? out.code : ''], ['store_failed', 'bad_gateway'])
      const key = objectKey('prod', T, name)
      await assert.rejects(storage.listParts(key, uploads[0]!), { code: 'storage_rejected' }, 'the upload is aborted')
      assert.equal(await storage.headObject(key), undefined, 'nothing was stored')
      // The archive is still on the node: a restarted agent stores it whole.
      const again = children[children.push(await spawnAgent(cri.endpoint, storeDir)) - 1]!
      const second = await store(again.url, () => {})
      assert.equal(second.type, 'stored', JSON.stringify(second))
      assert.equal((await storage.headObject(key))?.size, second.type === 'stored' ? second.sealed.size : -1)
      await stopChild(again.child, 'SIGTERM')
    } finally {
      cri.behaviour.archiveBytes = 4096
      cri.behaviour.randomArchive = false
      await s3.stop()
    }
  })
})
