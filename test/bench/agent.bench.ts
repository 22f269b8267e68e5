/**
 * Agent benchmarks. Each figure is one JSON line on stdout — `{"name","value","unit"}`, plus
 * `"baseline"` and `"ratio"` (value / baseline) when a baseline is measured in the same run.
 * Figures are not assertions: the process exits 0 whatever they are, and non-zero only when a
 * part of the bench could not run. Progress and context go to stderr as `# …` lines.
 *
 *   node_modules/.bin/node test/bench/agent.bench.ts
 *
 * - `agent_checkpoint_overhead` (ms): median wall time of a checkpoint through the agent (HTTPS +
 *   grant, JSON mode) on a real containerd 2.x, against direct CRI CheckpointContainer calls
 *   (baseline), interleaved. The agent also resolves the container, checks disk space, hashes
 *   and links the archive.
 * - `agent_download_throughput` (MB/s, 10^6 bytes): one archive downloaded over mTLS by curl from
 *   an in-process agent, against nginx serving the same file over TLS with client certificates
 *   (baseline). The archive is written through the agent by the fake CRI (real bytes, hashed).
 *   `agent_download_cpu_efficiency` (MB per CPU-second of the server, same runs): wall-clock
 *   throughput suffers from other load on a shared machine, CPU cost much less.
 * - `agent_rss_idle`, `agent_rss_streaming_2gib` (MiB): `agent/main.ts` as its own process on a
 *   fake CRI socket; VmRSS after start and one /readyz (the median of 5 fresh starts), and the
 *   largest VmRSS sampled every 100 ms while curl downloads a 2 GiB (sparse) archive from the last
 *   of them. Baseline: a bare `node -e "setInterval(()=>{},1000)"` on the same Node.
 * - Spreads (test/bench/figures.ts): the overhead's samples in 5 consecutive blocks, the download
 *   rounds, the idle starts.
 *
 * Environment:
 * - BENCH_ONLY: comma list of overhead, download, rss (default all).
 * - BENCH_CHECKPOINTS (15), BENCH_ARCHIVE_MB (1024), BENCH_DOWNLOAD_ROUNDS (5),
 *   BENCH_RSS_ARCHIVE_MB (2048).
 * - BENCH_TIMEOUT_S (480): past it everything is stopped and the bench exits 1.
 * - BENCH_EXPERIMENTS: download experiments — a bare Node HTTPS server reading the archive with
 *   createReadStream as the agent does (hwm:1024) or into a ring of 4 reused buffers (ring:256) —
 *   run when the agent is below 0.9 of nginx; "1" runs them always; a list such as
 *   "hwm:64,hwm:4096,ring:64" picks them (sizes in KiB).
 * - BENCH_AGENT_NODE_OPTIONS, BENCH_AGENT_ENTRY: NODE_OPTIONS (default none) and entry file of the
 *   agent process in the RSS part: by default the bundle a DaemonSet runs (agent/build.ts, built
 *   here, with its NODE_FLAGS as the image); `agent/main.ts` measures the TypeScript entry.
 *
 * Everything runs on loopback under one temp dir, which is removed at the end; every process and
 * server started here is stopped, also on SIGINT/SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, statfs, unlink, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pipeline } from 'node:stream/promises'
import { Agent, request } from 'undici'
import { connectRuntime } from '../../agent/cri/client.ts'
import { sha256File } from '../../agent/files.ts'
import { createGrantVerifier } from '../../agent/grants.ts'
import { loadStatementKey, signStatement, statementFor } from '../../agent/custody.ts'
import { STATEMENT_KEY_FILE } from '../../agent/start.ts'
import { archiveName } from '../../shared/names.ts'
import { buildAgent, NODE_FLAGS } from '../../agent/build.ts'
import { everyReading, makeIdentities, mintGrant, startTestAgent, GATEWAY_ID, type Identities } from '../support/agent-harness.ts'
import { startFakeCri } from '../support/fake-cri.ts'
import { buildAndPushBusybox, runPod, startLocalRuntime } from '../runtime/containerd.ts'
import { counter } from '../runtime/workloads.ts'
import { agentListening, stopChild as stopChildAfter } from '../support/process.ts'
import { curlToNull, type CurlResult } from './curl.ts'
import { startNginxTls } from './nginx.ts'
import { lifecycle } from './lifecycle.ts'
import { sampleRss, vmRssKiB } from './proc.ts'
import { emit, envNumber, median, noter, perBlock, round, SPREAD_ROUNDS, spreadOf } from './figures.ts'

const REPO = fileURLToPath(new URL('../../', import.meta.url))
const MiB = 1 << 20

const CHECKPOINTS = Math.round(envNumber('BENCH_CHECKPOINTS', 15))
const ARCHIVE_MB = envNumber('BENCH_ARCHIVE_MB', 1024)
const ROUNDS = Math.round(envNumber('BENCH_DOWNLOAD_ROUNDS', 5))
const RSS_ARCHIVE_MB = envNumber('BENCH_RSS_ARCHIVE_MB', 2048)
const TIMEOUT_S = envNumber('BENCH_TIMEOUT_S', 480)
const EXPERIMENTS = process.env.BENCH_EXPERIMENTS
const ONLY = new Set((process.env.BENCH_ONLY ?? 'overhead,download,rss').split(',').map((s) => s.trim()).filter(Boolean))

// ---- output --------------------------------------------------------------------------------

const note = noter('agent.bench')

const fmt = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(' ')

// ---- cleanup -------------------------------------------------------------------------------

const { defer, scoped, aborted } = lifecycle(note, TIMEOUT_S)

// ---- helpers -------------------------------------------------------------------------------

/** One curl download to /dev/null with the gateway's client certificate: bytes and seconds. */
function curlGet(ids: Identities, url: string, headers: Record<string, string> = {}): Promise<CurlResult> {
  const args = ['--cacert', ids.pki.ca.cert, '--cert', ids.gateway.cert, '--key', ids.gateway.key]
  return curlToNull(url, { headers, args, timeoutMs: 120_000, onKill: defer })
}

const mbps = (r: { bytes: number; seconds: number }) => r.bytes / r.seconds / 1e6

/** This process's CPU seconds (user + system): the in-process agent's while the bench waits on curl. */
async function ownCpuSeconds(): Promise<number> {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

const CLK_TCK = 100 // USER_HZ on Linux x86-64 (`getconf CLK_TCK`)

/** CPU seconds used so far by `pid` and its children (nginx: the master and its workers). */
async function treeCpuSeconds(pid: number): Promise<number> {
  let ticks = 0
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    // After "pid (comm) ": state ppid … utime (14th field) stime (15th).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(entry) === pid || Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12])
  }
  return ticks / CLK_TCK
}

/** SIGTERM, SIGKILL after 10 s. */
const stopChild = (child: ChildProcess) => stopChildAfter(child, 'SIGTERM', 10_000)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Busy share of all CPUs from /proc/stat between two snapshots. */
async function cpuTimes(): Promise<{ busy: number; total: number }> {
  const f = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const total = f.reduce((a, b) => a + b, 0)
  return { busy: total - f[3]! - f[4]!, total }
}
const busyShare = (a: { busy: number; total: number }, b: { busy: number; total: number }) => (b.busy - a.busy) / Math.max(1, b.total - a.total)

// ---- agent_checkpoint_overhead ---------------------------------------------------------------

async function checkpointOverhead(work: string, ids: Identities): Promise<void> {
  const t0 = performance.now()
  const rt = await startLocalRuntime({ log: (l) => note(`runtime: ${l}`) })
  defer(() => rt.stop())
  const image = await buildAndPushBusybox(rt.registry, 'bench/counter', 'v1')
  const POD = { namespace: 'bench', pod: 'counter', container: 'counter' }
  // A counter that does not fork: a forking one fails a dump now and then (test/runtime/workloads.ts).
  const { containerId } = await runPod(rt.endpoint, { ...POD, image, command: ['sh', '-c', counter(1)] })
  const agentDir = join(work, 'overhead-agent')
  const t = await startTestAgent({ ids, endpoint: rt.endpoint, dir: agentDir })
  defer(() => t.stop())
  const runtime = connectRuntime(rt.endpoint)
  defer(() => runtime.close())
  const directDir = join(work, 'overhead-direct')
  await mkdir(directDir, { mode: 0o700 })
  note(`runtime and pod ready in ${Math.round(performance.now() - t0)} ms; ${CHECKPOINTS} checkpoints each way (+2 warm-up)`)

  const sizes: number[] = []
  const spans: { start: number; end: number }[] = []
  const viaAgent = async () => {
    const grant = await t.mint({ op: 'checkpoint:create', ...POD })
    const wallStart = Date.now()
    const start = performance.now()
    const res = await t.fetch(`/checkpoint/${POD.namespace}/${POD.pod}/${POD.container}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${grant}`, accept: 'application/json' },
    })
    const body = await res.body.json() as { items?: string[] }
    const ms = performance.now() - start
    spans.push({ start: wallStart, end: Date.now() })
    if (res.statusCode !== 200 || !body.items?.[0]) throw new Error(`agent checkpoint: ${res.statusCode} ${JSON.stringify(body)}`)
    sizes.push((await stat(body.items[0])).size)
    await t.agent.store.remove(basename(body.items[0]))
    return ms
  }
  let n = 0
  const direct = async () => {
    const path = join(directDir, `direct-${n++}.tar`)
    const start = performance.now()
    await runtime.checkpointContainer(containerId, path)
    const ms = performance.now() - start
    await unlink(path)
    return ms
  }

  const agentMs: number[] = []
  const directMs: number[] = []
  for (let i = -2; i < CHECKPOINTS; i++) {
    // Alternate who goes first, so neither always follows the other.
    let a: number
    let d: number
    if (i % 2 === 0) {
      a = await viaAgent()
      d = await direct()
    } else {
      d = await direct()
      a = await viaAgent()
    }
    if (i >= 0) {
      agentMs.push(a)
      directMs.push(d)
    }
  }
  const written = t.logs.filter((l) => l.msg === 'checkpoint written').slice(2)
  const accepted = t.logs.filter((l) => l.msg === 'checkpoint accepted').slice(2)
  const inside = written.map((l) => Number(l.runtimeMs))
  note(`agent ms:  ${fmt(agentMs)}`)
  note(`direct ms: ${fmt(directMs)}`)
  // Paired per request, so the runtime's own variance cancels out.
  const own = agentMs.map((a, i) => a - (inside[i] ?? NaN))
  note(`runtime call as timed inside the agent: median ${median(inside).toFixed(1)} ms; the agent's own part of each request (wall time − its runtime call): median ${median(own).toFixed(1)} ms, range ${Math.min(...own).toFixed(1)}–${Math.max(...own).toFixed(1)}; archive ${median(sizes)} bytes (median)`)
  // Where that goes, from the agent's log times (1 ms resolution): before the runtime call (grant,
  // ListContainers, ContainerStats, statfs), after it (hash, chmod, link, metadata) and the answer.
  const at = (l: Record<string, unknown> | undefined) => Date.parse(String(l?.time))
  const spans2 = spans.slice(2)
  const before = spans2.map((sp, i) => at(accepted[i]) - sp.start)
  const after = spans2.map((_, i) => at(written[i]) - at(accepted[i]) - (inside[i] ?? NaN))
  const answer = spans2.map((sp, i) => sp.end - at(written[i]))
  note(`the agent's own part, medians: before the runtime call ${median(before).toFixed(0)} ms, after it until the archive is recorded ${median(after).toFixed(0)} ms, then the answer ${median(answer).toFixed(0)} ms`)
  emit('agent_checkpoint_overhead', median(agentMs), 'ms', median(directMs), spreadOf(perBlock(agentMs, directMs, SPREAD_ROUNDS, (a, d) => median(a) / median(d))))

  // The floor under that overhead: what any agent must add to the runtime call, each part timed on
  // its own from this process, right after a checkpoint of the same container as the agent's look-ups
  // are — one mTLS request and its answer (GET /healthz: the identity filter, no grant), the look-ups
  // that find the container by its labels and check the disk (CRI ListContainers ∥ statfs, as the
  // agent runs them on a disk that holds the node's memory), the grant's signature check (jose,
  // EdDSA, its jti journalled as the agent does), the sha256 of an archive of the median size (in the
  // page cache, as the runtime's just-written one is), and the custody: the signed statement (the
  // agent's own key) and the archive's record, each written as a new 0600 file.
  const labels = { 'io.kubernetes.pod.namespace': POD.namespace, 'io.kubernetes.pod.name': POD.pod, 'io.kubernetes.container.name': POD.container }
  const verifier = await createGrantVerifier({ node: t.node, jwksFile: ids.jwksFile, maxLifetimeSeconds: 600, journalFile: join(directDir, 'used-grants') })
  defer(() => verifier.close())
  const statementKey = await loadStatementKey(join(agentDir, 'checkpoints', STATEMENT_KEY_FILE))
  const hashed = join(directDir, 'floor.tar')
  await writeFile(hashed, randomBytes(median(sizes)))
  const parts = { rtt: [] as number[], lookups: [] as number[], grant: [] as number[], hash: [] as number[], custody: [] as number[] }
  const timed = async (into: number[], f: () => Promise<unknown>) => {
    const s = performance.now()
    await f()
    into.push(performance.now() - s)
  }
  for (let i = -2; i < CHECKPOINTS; i++) {
    await direct()
    const grant = await t.mint({ op: 'checkpoint:create', ...POD })
    const r: Record<keyof typeof parts, number[]> = { rtt: [], lookups: [], grant: [], hash: [], custody: [] }
    await timed(r.lookups, () => Promise.all([runtime.listContainers({ state: 'CONTAINER_RUNNING', labels }), statfs(agentDir)]))
    await timed(r.rtt, async () => (await t.fetch('/healthz')).body.dump())
    await timed(r.grant, () => verifier.verify(`Bearer ${grant}`, { op: 'checkpoint:create', target: POD }))
    let sha256 = ''
    await timed(r.hash, async () => (sha256 = await sha256File(hashed)))
    await timed(r.custody, async () => {
      const name = `floor-${i + 2}.tar`
      const record = { name, size: median(sizes), sha256, created: new Date().toISOString(), ...POD, containerId }
      const statement = signStatement(statementFor(record, { node: t.node, ...POD, containerId, image: { ref: image, digest: '' }, runtime: { name: 'containerd', version: '' }, requestId: '', requester: { sub: 'bench' }, grant: { jti: '' }, times: { requested: record.created, started: record.created, completed: record.created }, archive: { size: record.size } }), statementKey)
      await writeFile(join(directDir, `.${name}.json`), JSON.stringify(record), { mode: 0o600, flag: 'wx' })
      await writeFile(join(directDir, `.${name}.statement.json`), JSON.stringify(statement), { mode: 0o600, flag: 'wx' })
    })
    if (i >= 0) for (const k of Object.keys(parts) as (keyof typeof parts)[]) parts[k].push(r[k][0]!)
  }
  const floor = Object.values(parts).reduce((sum, xs) => sum + median(xs), 0)
  note(`the floor, medians of ${CHECKPOINTS}: mTLS request and answer ${median(parts.rtt).toFixed(2)} ms, container and disk look-ups right after a checkpoint ${median(parts.lookups).toFixed(2)} ms, grant check ${median(parts.grant).toFixed(2)} ms, sha256 of ${median(sizes)} bytes ${median(parts.hash).toFixed(2)} ms, statement and record ${median(parts.custody).toFixed(2)} ms: ${floor.toFixed(2)} ms, a ratio of ${((median(directMs) + floor) / median(directMs)).toFixed(3)} at this run's runtime call`)
  emit('agent_checkpoint_floor', median(directMs) + floor, 'ms', median(directMs))
  // The agent's own part against that floor: paired per request, so it does not swing with the
  // runtime's call as the overhead's ratio does.
  emit('agent_checkpoint_own_part', median(own), 'ms', floor, spreadOf(perBlock(own, own, SPREAD_ROUNDS, (o) => median(o) / floor)))
}

// ---- agent_download_throughput ---------------------------------------------------------------

async function downloadThroughput(work: string, ids: Identities): Promise<void> {
  const bytes = Math.round(ARCHIVE_MB * MiB)
  const TARGET = { namespace: 'bench', pod: 'big', container: 'big' }
  const cri = await startFakeCri(join(work, 'download-cri.sock'), { archiveBytes: bytes }, [{ id: 'big-1', ...TARGET }])
  defer(() => cri.stop())
  const t = await startTestAgent({ ids, endpoint: cri.endpoint, dir: join(work, 'download-agent') })
  defer(() => t.stop())

  const t0 = performance.now()
  const grant = await t.mint({ op: 'checkpoint:create', ...TARGET })
  const res = await t.fetch(`/checkpoint/${TARGET.namespace}/${TARGET.pod}/${TARGET.container}?timeout=600`, {
    method: 'POST',
    headers: { authorization: `Bearer ${grant}`, accept: 'application/json' },
  })
  const body = await res.body.json() as { items?: string[] }
  if (res.statusCode !== 200 || !body.items?.[0]) throw new Error(`creating the archive: ${res.statusCode} ${JSON.stringify(body)}`)
  const name = basename(body.items[0])
  // Flush it now, so disk writeback does not compete with the downloads; it stays in page cache.
  const written = await open(body.items[0], 'r')
  await written.sync()
  await written.close()
  note(`archive ${name}: ${bytes} bytes written by the fake CRI and hashed by the agent in ${Math.round(performance.now() - t0)} ms`)

  const nginx = await startNginxTls({ root: t.agent.store.dir, cert: ids.server.cert, key: ids.server.key, ca: ids.pki.ca.cert })
  defer(() => nginx.stop())
  const path = `/${encodeURIComponent(name)}`
  /** One download, with the server's CPU seconds over it (robust where wall time is not: a shared machine). */
  const sample = async (url: string, headers: Record<string, string>, cpu: () => Promise<number>): Promise<Sample> => {
    const c0 = await cpu()
    const r = await curlGet(ids, url, headers)
    const used = (await cpu()) - c0
    if (r.bytes !== bytes) throw new Error(`${url} sent ${r.bytes} of ${bytes} bytes`)
    return { mbps: mbps(r), perCpu: r.bytes / 1e6 / Math.max(used, 0.01) }
  }
  const fromAgent = async () => sample(`${t.agent.url}/checkpoints${path}`, { authorization: `Bearer ${await t.mint({ op: 'checkpoint:read', archive: name, namespaces: everyReading(name) })}` }, ownCpuSeconds)
  const fromNginx = () => sample(`${nginx.url}${path}`, {}, () => treeCpuSeconds(nginx.pid))
  const agentRuns: Sample[] = []
  const nginxRuns: Sample[] = []
  // One warm-up each (page cache, JIT), then interleaved rounds, alternating who goes first.
  await fromAgent()
  await fromNginx()
  for (let i = 0; i < ROUNDS; i++) {
    if (i % 2 === 0) {
      agentRuns.push(await fromAgent())
      nginxRuns.push(await fromNginx())
    } else {
      nginxRuns.push(await fromNginx())
      agentRuns.push(await fromAgent())
    }
  }
  const mbs = (xs: Sample[]) => median(xs.map((x) => x.mbps))
  const perCpu = (xs: Sample[]) => median(xs.map((x) => x.perCpu))
  note(`agent MB/s: ${fmt(agentRuns.map((x) => x.mbps))}; MB per server CPU-second: ${fmt(agentRuns.map((x) => x.perCpu))}`)
  note(`nginx MB/s: ${fmt(nginxRuns.map((x) => x.mbps))}; MB per server CPU-second: ${fmt(nginxRuns.map((x) => x.perCpu))}`)
  emit('agent_download_throughput', mbs(agentRuns), 'MB/s', mbs(nginxRuns), spreadOf(agentRuns.map((a, i) => a.mbps / nginxRuns[i]!.mbps)))
  emit('agent_download_cpu_efficiency', perCpu(agentRuns), 'MB/cpu-s', perCpu(nginxRuns), spreadOf(agentRuns.map((a, i) => a.perCpu / nginxRuns[i]!.perCpu)))

  // Below 0.9 of nginx (or when asked): the agent's code path, or Node's TLS, or the way it reads?
  // The same file from a bare Node HTTPS server with the agent's TLS options.
  if (mbs(agentRuns) / mbs(nginxRuns) >= 0.9 && !EXPERIMENTS) return
  const variants = EXPERIMENTS && EXPERIMENTS !== '1' ? EXPERIMENTS.split(',') : ['hwm:1024', 'ring:256']
  for (const variant of variants) {
    const [how, kib] = variant.split(':') as [string, string]
    if ((how !== 'hwm' && how !== 'ring') || !(Number(kib) > 0)) throw new TypeError(`BENCH_EXPERIMENTS: ${variant} is not hwm:<KiB> or ring:<KiB>`)
    const bare = await startBareFileServer(ids, t.agent.store.dir, how, Number(kib) * 1024)
    defer(() => bare.close())
    const fromBare = () => sample(`${bare.url}${path}`, {}, ownCpuSeconds)
    const bareRuns: Sample[] = []
    const againNginx: Sample[] = []
    await fromBare()
    for (let i = 0; i < Math.max(3, ROUNDS - 2); i++) {
      bareRuns.push(await fromBare())
      againNginx.push(await fromNginx())
    }
    const label = `bare_node_${how}_${kib}k`
    note(`${label} (${how === 'hwm' ? 'createReadStream' : 'a ring of 4 reused buffers'} of ${kib} KiB): MB/s ${fmt(bareRuns.map((x) => x.mbps))} (nginx ${fmt(againNginx.map((x) => x.mbps))}); MB/cpu-s ${fmt(bareRuns.map((x) => x.perCpu))} (nginx ${fmt(againNginx.map((x) => x.perCpu))})`)
    emit(`agent_download_experiment_${label}`, mbs(bareRuns), 'MB/s', mbs(againNginx))
    emit(`agent_download_experiment_${label}_cpu_efficiency`, perCpu(bareRuns), 'MB/cpu-s', perCpu(againNginx))
    await bare.close()
  }
}

interface Sample { mbps: number; perCpu: number }

/**
 * Experiment only: a minimal Node HTTPS file server with the agent's TLS settings. `hwm` streams
 * with createReadStream (a fresh buffer per read, as the agent does); `ring` reads into 4 buffers
 * of `size` and reuses each once its write has been flushed.
 */
async function startBareFileServer(ids: Identities, dir: string, how: string, size: number): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer({
    cert: ids.server.certPem, key: ids.server.keyPem, ca: ids.pki.ca.certPem,
    requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2',
  }, (req, res) => {
    const file = join(dir, decodeURIComponent((req.url ?? '/').slice(1)))
    const send = async () => {
      const fh = await open(file, 'r')
      try {
        const total = (await fh.stat()).size
        res.writeHead(200, { 'content-type': 'application/x-tar', 'content-length': total })
        if (how === 'hwm') return await pipeline(createReadStream(file, { highWaterMark: size }), res)
        const free = Array.from({ length: 4 }, () => Buffer.allocUnsafeSlow(size))
        const waiting: (() => void)[] = []
        let closed = false
        let drained: (() => void) | undefined
        res.once('close', () => {
          closed = true
          for (const w of waiting.splice(0)) w()
          drained?.()
        })
        for (let pos = 0; pos < total;) {
          if (free.length === 0) await new Promise<void>((r) => waiting.push(r))
          if (closed) throw new Error('client went away')
          const buf = free.pop()!
          const { bytesRead } = await fh.read(buf, 0, Math.min(size, total - pos), pos)
          if (bytesRead === 0) throw new Error('file shrank')
          pos += bytesRead
          const more = res.write(buf.subarray(0, bytesRead), () => {
            free.push(buf)
            waiting.shift()?.()
          })
          if (!more) await new Promise<void>((r) => res.once('drain', (drained = r)))
        }
        await new Promise<void>((r) => res.end(r))
      } finally {
        await fh.close()
      }
    }
    send().catch(() => res.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  let closed: Promise<void> | undefined
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })),
  }
}

// ---- agent_rss_idle, agent_rss_streaming_2gib ------------------------------------------------

async function rss(work: string, ids: Identities): Promise<void> {
  // Baseline: a bare Node process on the same binary.
  const bare = spawn(process.execPath, ['-e', 'setInterval(()=>{},1000)'], { stdio: 'ignore' })
  defer(() => stopChild(bare))
  await sleep(1_000)
  const baseline = (await vmRssKiB(bare.pid!)).rss / 1024
  await stopChild(bare)

  const cri = await startFakeCri(join(work, 'rss-cri.sock'))
  defer(() => cri.stop())
  const checkpointDir = join(work, 'rss-agent', 'checkpoints')
  await mkdir(checkpointDir, { recursive: true, mode: 0o700 })
  // A sparse archive with no metadata file: the agent serves it with a weak ETag. Reading holes
  // costs no disk I/O, so the file side outpaces TLS: the worst case for buffering.
  const name = archiveName({ namespace: 'bench', pod: 'rss', container: 'rss' }, new Date())
  const bytes = Math.round(RSS_ARCHIVE_MB * MiB)
  const fh = await open(join(checkpointDir, name), 'wx', 0o600)
  await fh.truncate(bytes)
  await fh.close()

  const node = 'bench-node'
  const entry = process.env.BENCH_AGENT_ENTRY ?? await buildAgent(join(work, 'agent.mjs'))
  /** The agent as its own process, started and asked /readyz; its VmRSS half a second later. */
  const startIdle = async () => {
    const agent = spawn(process.execPath, [
      ...NODE_FLAGS,
      entry,
      '--listen=127.0.0.1:0',
      `--node-name=${node}`,
      `--runtime-endpoint=${cri.endpoint}`,
      `--tls-cert=${ids.server.cert}`, `--tls-key=${ids.server.key}`, `--tls-ca=${ids.pki.ca.cert}`,
      `--allowed-clients=${GATEWAY_ID}`,
      `--grant-jwks-file=${ids.jwksFile}`,
      `--checkpoint-dir=${checkpointDir}`,
      '--shutdown-grace=5s',
    ], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: process.env.BENCH_AGENT_NODE_OPTIONS ?? '' } })
    defer(() => stopChild(agent))
    const logs: string[] = []
    const url = await agentListening(agent, logs)
    const client = new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' } })
    defer(() => client.close())
    const ready = await request(`${url}/readyz`, { dispatcher: client })
    const readyBody = await ready.body.text()
    if (ready.statusCode !== 200) throw new Error(`/readyz: ${ready.statusCode} ${readyBody}`)
    await sleep(500)
    return { agent, url, idle: await vmRssKiB(agent.pid!) }
  }
  // Idle over fresh starts (the spread); the last one then streams.
  const idles: number[] = []
  for (let i = 1; i < SPREAD_ROUNDS; i++) {
    const { agent, idle } = await startIdle()
    idles.push(idle.rss / 1024)
    await stopChild(agent)
  }
  const { agent, url, idle: last } = await startIdle()
  idles.push(last.rss / 1024)
  emit('agent_rss_idle', median(idles), 'MiB', baseline, spreadOf(idles.map((x) => x / baseline)))

  const grant = await mintGrant(ids, { op: 'checkpoint:read', node, archive: name, namespaces: everyReading(name) })
  const sampler = sampleRss(agent.pid!)
  defer(() => sampler.stop())
  const r = await curlGet(ids, `${url}/checkpoints/${encodeURIComponent(name)}`, { authorization: `Bearer ${grant}` })
  const { maxKiB: max, samples } = sampler.stop()
  if (r.bytes !== bytes) throw new Error(`agent sent ${r.bytes} of ${bytes} bytes`)
  const after = await vmRssKiB(agent.pid!)
  note(`streamed ${bytes} bytes in ${r.seconds.toFixed(2)} s (${mbps(r).toFixed(0)} MB/s); ${samples} samples; VmHWM (peak since start) ${(after.hwm / 1024).toFixed(1)} MiB`)
  emit('agent_rss_streaming_2gib', max / 1024, 'MiB', baseline)
  await stopChild(agent)
}

// ---- main ----------------------------------------------------------------------------------

const SECTIONS: [string, (work: string, ids: Identities) => Promise<void>][] = [
  ['overhead', checkpointOverhead],
  ['download', downloadThroughput],
  ['rss', rss],
]

const started = performance.now()
const work = await mkdtemp(join(tmpdir(), 'agent-bench-'))
defer(() => rm(work, { recursive: true, force: true }))
let failed = 0
await scoped(async () => {
  const ids = await makeIdentities(join(work, 'ids'))
  for (const [key, run] of SECTIONS) {
    if (!ONLY.has(key)) continue
    const before = await cpuTimes()
    await sleep(1_000)
    note(`${key}: CPUs ${(busyShare(before, await cpuTimes()) * 100).toFixed(0)}% busy in the second before it started (other processes: figures are unreliable when high)`)
    const t0 = performance.now()
    const during = await cpuTimes()
    try {
      await scoped(() => run(work, ids))
      note(`${key}: CPUs ${(busyShare(during, await cpuTimes()) * 100).toFixed(0)}% busy during it (this bench included)`)
      note(`${key} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    } catch (err) {
      failed++
      note(`${key} could not run: ${(err as Error).stack ?? err}`)
    }
  }
})
// A signal or the watchdog may be tearing down (the parts fail under it): let it finish and exit.
if (aborted()) await aborted()
await rm(work, { recursive: true, force: true })
note(`finished in ${((performance.now() - started) / 1000).toFixed(1)} s${failed ? `; ${failed} part(s) could not run` : ''}`)
process.exit(failed ? 1 : 0)
