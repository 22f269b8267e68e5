/**
 * Gateway benchmarks. Each figure is one JSON line on stdout — `{"name","value","unit","baseline","ratio"}`
 * (baseline and ratio = value / baseline measured in the same run, or null). Figures are not
 * assertions: the process exits 0 whatever they are, non-zero only when a part could not run.
 * Progress and context go to stderr as `# …` lines.
 *
 *   npm run bench:gateway            (node test/bench/gateway.bench.ts)
 *
 * Set-up: a REAL agent (agent/start.ts via test/support/agent-harness.ts, real mTLS and grant
 * checks) on a no-op runtime (test/support/fake-cri.ts: CheckpointContainer answers at once and
 * writes 4 KiB), in this process. The Node gateway runs as its own process
 * (test/bench/gateway-server.ts: startNodeGateway, production logger to /dev/null, caller keys
 * from a JWKS URL on loopback), bundled and flagged as `npm run start:gateway` runs the entry
 * (functions/node/build.ts, functions/node/start.ts `NODE_FLAGS`). On a machine with ≥ 2 CPUs the gateway (and nginx, and workerd)
 * are pinned to CPU 0 with `taskset`, this process (agent + load generator + curl) to CPU 1.
 * Clients reach gateways over plain HTTP; gateways reach the agent over mutual TLS.
 *
 * Figures (each with its `spread` over 5 rounds, test/bench/figures.ts: the download rounds, the
 * latency samples in 5 consecutive blocks, the load run in 5 windows):
 * - `gateway.node.{download_4k,checkpoint}.p50` (ms) vs the same request straight to the agent
 *   (a grant minted outside the timing), interleaved; `…added_latency.p50` = the difference of
 *   the medians; `…gateway_cpu_per_request`: CPU time of the gateway process (all threads) per
 *   request in those sequential runs (after 1,000 warm-up requests), the part that does not depend
 *   on what else the machine runs. The same for `gateway.workerd.*` (the Worker bundle in
 *   miniflare/workerd, pinned like the Node gateway; clients use its real loopback listener).
 * - `gateway.node.authenticated_list.rps`: GET …/checkpoints with a valid ES256 token, BENCH_CONCURRENCY
 *   in flight, for BENCH_RPS_SECONDS. Baseline: the crypto ceiling of the gateway's core — one
 *   jose ES256 verify + one EdDSA grant sign per request, measured in a process on the same CPU.
 *   `…per_gateway_cpu_s`: requests per CPU-second the gateway process used (what one fully busy
 *   core would do, whatever the load generator managed).
 * - `gateway.node.minimal_hop.per_cpu_s` and `gateway.node.minimal_hop.{download_4k,checkpoint}.*`:
 *   the same load and the same latency runs on the least a Node process does for them
 *   (gateway-server.ts `--minimal-hop`: node:http, one grant signed with the gateway's GrantKeys,
 *   undici `request` to the agent over the same mTLS, the answer piped back; no caller token,
 *   policy, Hono or audit), bundled, flagged and pinned like the gateway: what Node itself costs.
 *   `gateway.node.minimal_auth_hop.*`: the same hop with `--auth` — the caller's token through the
 *   gateway's authenticator and its cache, the policy decision, the two audit lines — the least a
 *   gateway that authenticates, authorizes and audits does, without Hono and its adapter;
 *   `gateway.node.minimal_hono_hop.*` (latency only): that work behind a one-route Hono app on the
 *   gateway's own Node server (`--auth --hono`) — what the framework and its adapter add.
 *   `gateway.workerd.minimal_hop.{download_4k,checkpoint}.*`: the same latency runs on the least a
 *   Worker does for them (minimal-hop.worker.ts: one grant signed with WebCrypto Ed25519, the agent
 *   called through the same `AGENT_MTLS` binding, its answer returned as it is), bundled, bound and
 *   pinned like the Worker gateway: what workerd and miniflare themselves cost.
 * - `gateway.node.rejected_bad_signature.rps` (token signed by a key the IdP never published,
 *   same kid): baseline the ES256 verify rate.
 * - `gateway.node.download_throughput` (MB/s, 10^6 bytes): curl through the gateway downloading a
 *   BENCH_ARCHIVE_MB (sparse) archive from the agent, vs nginx as a TLS reverse proxy with the
 *   gateway's client certificate to the same agent (gateway-nginx.ts), one warm-up each, then rounds alternating who goes first, medians.
 *   `…download_cpu_efficiency`: MB per CPU-second of the proxy process(es).
 *   `gateway.node.rss_streaming_max` (MiB): largest VmRSS of the gateway process sampled every
 *   100 ms during the downloads, vs its VmRSS just before them; `…rss_streaming_last_quarter`
 *   vs `…first_quarter` shows whether it stays flat.
 * - `gateway.node.download.{plain,tls}.<n>mib` (MB/s): what deployments see — real archives of
 *   each BENCH_FRONT_SIZES_MIB (page cache) downloaded through a fresh gateway process and a fresh
 *   nginx, with a plain-HTTP and then an HTTPS front; BENCH_FRONT_ROUNDS alternating rounds after
 *   each one's first download of the size; `…first_<n>mib`: each process's very first download.
 *   The same archives straight from the agent and the times to the first byte go to stderr.
 * - `worker.bundle.gzip` (KiB): the Worker bundle as test/support/gateway/targets.ts builds it (esbuild,
 *   not minified, as wrangler deploys by default), gzip level 9; `worker.bundle.min.gzip` minified.
 *   Baseline: the 150 KiB goal.
 *
 * Environment: BENCH_ONLY (comma list of rps, latency, workerd, download, fronts, bundle; default all),
 * BENCH_N (200 latency samples), BENCH_CP_N (100: checkpoints among them, at most BENCH_N), BENCH_RPS_SECONDS (5), BENCH_CONCURRENCY (64),
 * BENCH_ARCHIVE_MB (2048), BENCH_DOWNLOAD_ROUNDS (5), BENCH_PIN (1; 0 = no taskset),
 * BENCH_GATEWAY_CPU_PROF (a directory: the gateway process writes a --cpu-prof profile there),
 * BENCH_GATEWAY_NODE_ARGS (Node/V8 flags for the gateway process, space-separated, after the
 * ones `npm run start:gateway` uses: functions/node/start.ts NODE_FLAGS), BENCH_GATEWAY_ENV (`K=V …`
 * for the gateway process, over functions/node/start.ts PROCESS_ENV), BENCH_GATEWAY_ENTRY (the gateway
 * process's script instead of the bundle: `test/bench/gateway-server.ts` measures the TypeScript),
 * BENCH_GRANT_SIGNER (jose: grants signed with jose/WebCrypto instead of functions/node/jws.ts),
 * BENCH_RPS_BAD (0: skip the rejected-token run, e.g. to profile the authenticated one alone),
 * BENCH_GATEWAY_STDOUT (a file the gateway processes' stdout is appended to, e.g. with
 * BENCH_GATEWAY_NODE_ARGS=--trace-gc; default /dev/null), BENCH_FRONT_SIZES_MIB (100,512,2048),
 * BENCH_FRONT_ROUNDS (3), BENCH_TIMEOUT_S (600: past it everything is stopped and the bench exits 1),
 * BENCH_RPS_CPU_QUOTA (percent of a core: the load runs of the gateway and the minimal hop under a
 * cgroup v1 `cpu` quota, so each is fully busy within it; root only), BENCH_ALLOC_PROFILE (a file:
 * the gateway process samples its allocations, freed ones included, and writes a .heapprofile
 * there when it stops; gateway-server.ts).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, open, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { Agent, request, type Dispatcher } from 'undici'
import { archiveName } from '../../shared/names.ts'
import { bundleWorker, bundleWorkerEntry, removeBundle, startWorkerGateway, type WorkerGatewayOptions } from '../support/gateway/targets.ts'
import { everyReading, makeIdentities, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri } from '../support/fake-cri.ts'
import { stopChild } from '../support/process.ts'
import { curlToNull } from './curl.ts'
import { startNginxProxy } from './gateway-nginx.ts'
import { envNumber, median, perBlock, round, SPREAD_ROUNDS, spreadOf, type Spread } from './figures.ts'
import { buildGateway } from '../../functions/node/build.ts'
import { NODE_FLAGS, PROCESS_ENV } from '../../functions/node/start.ts'

const MiB = 1 << 20
const N = Math.max(1, Math.round(envNumber('BENCH_N', 200)))
const RPS_SECONDS = envNumber('BENCH_RPS_SECONDS', 5)
const CONCURRENCY = Math.max(1, Math.round(envNumber('BENCH_CONCURRENCY', 64)))
const ARCHIVE_MB = envNumber('BENCH_ARCHIVE_MB', 2048)
const ROUNDS = Math.max(1, Math.round(envNumber('BENCH_DOWNLOAD_ROUNDS', 5)))
const TIMEOUT_S = envNumber('BENCH_TIMEOUT_S', 600)
const FRONT_SIZES_MIB = (process.env.BENCH_FRONT_SIZES_MIB ?? '100,512,2048').split(',').map(Number).filter((n) => n > 0)
const FRONT_ROUNDS = Math.max(1, Math.round(envNumber('BENCH_FRONT_ROUNDS', 3)))
const CPU_PROF = process.env.BENCH_GATEWAY_CPU_PROF
const ONLY = new Set((process.env.BENCH_ONLY ?? 'rps,latency,workerd,download,fronts,bundle').split(',').map((s) => s.trim()).filter(Boolean))
const SERVER = fileURLToPath(new URL('./gateway-server.ts', import.meta.url))
const MINIMAL_HOP_WORKER = fileURLToPath(new URL('./minimal-hop.worker.ts', import.meta.url))
/** gateway-server.ts bundled as `npm run start:gateway` bundles the entry (functions/node/build.ts); set in main(). */
let serverBundle = ''

// ---- output ------------------------------------------------------------------------------------

function emit(name: string, value: number, unit: string, baseline: number | null = null, spread?: Spread): void {
  const ratio = baseline ? round(value / baseline, 3) : null
  process.stdout.write(JSON.stringify({ name, value: round(value, 3), unit, baseline: baseline === null ? null : round(baseline, 3), ratio, ...(spread ? { spread } : {}) }) + '\n')
}
const note = (msg: string) => process.stderr.write(`# gateway.bench: ${msg}\n`)
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// ---- cleanup -----------------------------------------------------------------------------------

type Cleanup = () => Promise<unknown> | unknown
const live: Cleanup[] = []
const defer = (fn: Cleanup) => void live.push(fn)
async function cleanupAll(): Promise<void> {
  while (live.length) await Promise.resolve().then(live.pop()!).catch((err) => note(`cleanup failed: ${err}`))
}
let aborting: Promise<never> | undefined
function abort(why: string, code: number): Promise<never> {
  aborting ??= (async () => {
    note(`${why}: stopping everything`)
    await cleanupAll()
    process.exit(code)
  })()
  return aborting
}
process.on('SIGINT', () => void abort('SIGINT', 130))
process.on('SIGTERM', () => void abort('SIGTERM', 143))
setTimeout(() => void abort(`still running after ${TIMEOUT_S}s`, 1), TIMEOUT_S * 1000).unref()

// ---- processes and CPUs ----------------------------------------------------------------------------

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
const PIN = envNumber('BENCH_PIN', 1, { allowZero: true }) !== 0 && cpus().length >= 2 && hasTaskset()
/** Moves every thread of `pid` to `cpu`. */
const pin = (pid: number, cpu: string) => execFileSync('taskset', ['-a', '-p', '-c', cpu, String(pid)], { stdio: 'ignore' })

/**
 * BENCH_RPS_CPU_QUOTA (percent of a core, cgroup v1 `cpu` controller, root only): the gateway and
 * the minimal hop run their load under that CPU quota, so each is fully busy within it at a load
 * this machine can generate — requests per CPU-second of a saturated process, not of one that
 * idles between requests. Returns a function that lifts the quota.
 */
const QUOTA = envNumber('BENCH_RPS_CPU_QUOTA', 0, { allowZero: true })
async function cpuQuota(pid: number, percent: number): Promise<() => Promise<void>> {
  const root = '/sys/fs/cgroup/cpu'
  const dir = join(root, `gateway-bench-${pid}`)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'cpu.cfs_period_us'), '100000')
  await writeFile(join(dir, 'cpu.cfs_quota_us'), String(Math.round(percent * 1000)))
  await writeFile(join(dir, 'cgroup.procs'), String(pid))
  return async () => {
    await writeFile(join(root, 'cgroup.procs'), String(pid)).catch(() => {})
    await rmdir(dir).catch(() => {})
  }
}

const CLK_TCK = 100
async function cpuSplit(pid: number): Promise<{ user: number; sys: number }> {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return { user: Number(f[11]) / CLK_TCK, sys: Number(f[12]) / CLK_TCK }
}
/** CPU seconds per thread name (main thread, V8 workers, libuv pool…) of `pid`. */
async function threadCpu(pid: number): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for (const t of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const s = await readFile(`/proc/${pid}/task/${t}/stat`, 'utf8').catch(() => '')
    if (!s) continue
    const name = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'))
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / CLK_TCK)
  }
  return out
}
const threadDelta = (a: Map<string, number>, b: Map<string, number>) =>
  [...b].map(([k, v]) => [k, v - (a.get(k) ?? 0)] as const).filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')
async function cpuSeconds(pid: number): Promise<number> {
  const c = await cpuSplit(pid)
  return c.user + c.sys
}
/** `pid` and its direct children (nginx: master and worker). */
async function treeCpuSeconds(pid: number): Promise<number> {
  let ticks = 0
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const s = await readFile(`/proc/${e}/stat`, 'utf8').catch(() => '')
    if (!s) continue
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    if (Number(e) === pid || Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12])
  }
  return ticks / CLK_TCK
}
async function rssMiB(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(s)?.[1] ?? NaN) / 1024
}

interface GatewayProc {
  url: string
  pid: number
  stop(): Promise<void>
}

/** Runs test/bench/gateway-server.ts (pinned to CPU 0); `crypto` mode answers once and exits. */
function spawnServer(cfg: unknown, args: string[], profile: boolean): ChildProcess {
  const extra = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const node = [...NODE_FLAGS, ...extra, ...(profile && CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : []), serverBundle, ...args]
  const cmd = PIN ? 'taskset' : process.execPath
  const argv = PIN ? ['-c', '0', process.execPath, ...node] : node
  const env = { ...process.env, ...PROCESS_ENV, ...Object.fromEntries((process.env.BENCH_GATEWAY_ENV ?? '').split(' ').filter(Boolean).map((kv) => kv.split('='))) }
  const out = process.env.BENCH_GATEWAY_STDOUT ? openSync(process.env.BENCH_GATEWAY_STDOUT, 'a') : 'ignore'
  try {
    return spawn(cmd, argv, { stdio: ['ignore', out, 'pipe', 'ipc'], env: { ...env, BENCH_GATEWAY: JSON.stringify(cfg) } })
  } finally {
    if (typeof out === 'number') closeSync(out) // the child has its own copy
  }
}
function firstMessage<T>(child: ChildProcess, what: string): Promise<T> {
  let stderr = ''
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()))
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer within 20 s\n${stderr}`)), 20_000)
    child.once('message', (m) => (clearTimeout(t), resolve(m as T)))
    child.once('exit', (code) => (clearTimeout(t), reject(new Error(`${what} exited ${code}\n${stderr}`))))
  })
}
async function startGatewayProcess(cfg: unknown): Promise<GatewayProc> {
  const child = spawnServer(cfg, [], true)
  defer(() => stopChild(child))
  const { url } = await firstMessage<{ url: string }>(child, 'gateway process')
  return { url, pid: child.pid!, stop: () => stopChild(child) }
}

/** The workerd processes whose parent is this one. */
async function workerdChildren(): Promise<number[]> {
  const out: number[] = []
  for (const e of await readdir('/proc')) {
    const st = /^\d+$/.test(e) ? await readFile(`/proc/${e}/stat`, 'utf8').catch(() => '') : ''
    if (st.includes('(workerd)') && Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) out.push(Number(e))
  }
  return out
}
/**
 * A Worker in miniflare (startWorkerGateway, this process handling the signals). Its workerd is a
 * child of this process, inheriting CPU 1: moved where the Node gateway runs. `pid` is that
 * workerd's (undefined if it was not found).
 */
async function startPinnedWorker(o: WorkerGatewayOptions): Promise<{ url: string; pid: number | undefined; close(): Promise<void> }> {
  const before = await workerdChildren()
  const w = await startWorkerGateway({ ...o, ownSignals: true })
  let closed: Promise<void> | undefined
  const close = () => (closed ??= w.close())
  defer(close)
  const pid = (await workerdChildren()).find((p) => !before.includes(p))
  if (PIN && pid) pin(pid, '0')
  return { url: w.url, pid, close }
}

// ---- the world -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (PIN) pin(process.pid, '1')
  note(PIN ? 'gateway/nginx/workerd on CPU 0; this process (agent, load generator, curl) on CPU 1' : 'no CPU pinning (one CPU, no taskset, or BENCH_PIN=0)')

  const work = await mkdtemp(join(tmpdir(), 'gateway-bench-'))
  defer(() => rm(work, { recursive: true, force: true }))
  serverBundle = process.env.BENCH_GATEWAY_ENTRY ?? await buildGateway(join(work, 'gateway-server.mjs'), SERVER)
  const ids = await makeIdentities(work)
  const cri = await startFakeCri(join(work, 'cri.sock'), { archiveBytes: 4096, checkpointDelayMs: 0 }, [
    { id: 'c0ffee', namespace: 'bench', pod: 'app', container: 'app' },
    { id: 'd0wn', namespace: 'bench', pod: 'dl', container: 'app' },
  ])
  defer(() => cri.stop())
  const agent: TestAgent = await startTestAgent({ ids, endpoint: cri.endpoint, dir: join(work, 'agent') })
  defer(() => agent.stop())
  // The harness keeps every agent log line in memory; drop them as we go.
  const trimLogs = setInterval(() => void (agent.logs.length = 0), 1000)
  defer(() => clearInterval(trimLogs))

  // Identity provider: ES256 key, JWKS over HTTP on loopback (the gateway fetches and caches it).
  const ISSUER = 'https://idp.bench'
  const AUDIENCE = 'checkpoint-gateway'
  const idp = await generateKeyPair('ES256', { extractable: true })
  const stranger = await generateKeyPair('ES256', { extractable: true })
  const idpJwks = { keys: [{ ...(await exportJWK(idp.publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' }] }
  const jwksServer = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(idpJwks))
  })
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r))
  defer(() => new Promise<void>((r) => (jwksServer.closeAllConnections(), jwksServer.close(() => r()))))
  const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks`
  async function token(key: CryptoKey): Promise<string> {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({ groups: ['sre'], scope: 'checkpoint:create checkpoint:read checkpoint:delete' })
      .setProtectedHeader({ alg: 'ES256', kid: 'idp-1', typ: 'JWT' })
      .setIssuer(ISSUER).setAudience(AUDIENCE).setSubject('sam').setIssuedAt(now).setExpirationTime(now + 3600)
      .sign(key)
  }
  const good = await token(idp.privateKey)
  const bad = await token(stranger.privateKey)
  const auth = { authorization: `Bearer ${good}` }

  const grantJwk = { ...(await exportJWK(ids.grantKey)), kid: ids.kid, alg: 'EdDSA' }
  const rawConfig = (authCfg: Record<string, unknown>) => ({
    clusters: { bench: { agentUrl: agent.agent.url, agentCa: ids.pki.ca.certPem } },
    auth: { issuers: [ISSUER], audience: AUDIENCE, clockToleranceSec: 5, ...authCfg },
    policy: { rules: [{ id: 'sre', groups: ['sre'], actions: ['create', 'read', 'delete'], clusters: ['*'], namespaces: ['*'] }] },
    grants: { issuer: 'checkpoint-gateway' },
    limits: { agentHeadersTimeoutMs: 10_000 },
  })
  const gatewayCfg = { config: rawConfig({ jwksUrl }), grantKeys: [grantJwk], client: { cert: ids.gateway.certPem, key: ids.gateway.keyPem } }

  const NODE = agent.node
  const TARGET = { namespace: 'bench', pod: 'app', container: 'app' }
  const LIST = `/v1/clusters/bench/nodes/${NODE}/checkpoints`
  const CHECKPOINT = `/v1/clusters/bench/nodes/${NODE}/checkpoint/bench/app/app`
  const plain = new Agent({ connections: CONCURRENCY, keepAliveTimeout: 30_000 })
  defer(() => plain.close())
  const direct = new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' }, keepAliveTimeout: 30_000 })
  defer(() => direct.close())

  async function get(dispatcher: Dispatcher, url: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: Buffer }> {
    const r = await request(url, { dispatcher, method: (init.method ?? 'GET') as Dispatcher.HttpMethod, headers: init.headers ?? {} })
    return { status: r.statusCode, body: Buffer.from(await r.body.arrayBuffer()) }
  }

  // ---- parts ----------------------------------------------------------------------------------

  const gw = ONLY.has('rps') || ONLY.has('latency') || ONLY.has('download') ? await startGatewayProcess(gatewayCfg) : undefined
  // The 4 KiB archive the latency parts download, made straight through the agent (fake CRI), of
  // another container than the one checkpointed later (retention keeps 10 per container).
  const archive = await (async () => {
    const g = await agent.mint({ op: 'checkpoint:create', cluster: 'bench', namespace: 'bench', pod: 'dl', container: 'app', sub: 'sam' })
    const r = await get(direct, `${agent.agent.url}/checkpoint/bench/dl/app?timeout=60`, { method: 'POST', headers: { authorization: `Bearer ${g}`, accept: 'application/x-ndjson' } })
    const last = JSON.parse(r.body.toString().trim().split('\n').at(-1)!) as { type: string; archive?: { name: string } }
    if (r.status !== 200 || last.type !== 'completed') throw new Error(`checkpoint on the agent: ${r.status} ${r.body}`)
    return last.archive!.name
  })()

  /**
   * gateway-server.ts `--minimal-hop` (one process for the run, pinned like the gateway); with
   * `auth`, `--minimal-hop … --auth`: the same plus the caller's token, the policy and the audit lines.
   */
  const hops = new Map<string, Promise<{ url: string; pid: number }>>()
  function minimalHop(...flags: Array<'--auth' | '--hono'>): Promise<{ url: string; pid: number }> {
    const key = flags.join(' ')
    let hop = hops.get(key)
    if (!hop) {
      hop = (async () => {
        const child = spawnServer(gatewayCfg, ['--minimal-hop', agent.agent.url, NODE, ...flags], false)
        defer(() => stopChild(child))
        const { url } = await firstMessage<{ url: string }>(child, `minimal hop ${key}`)
        return { url, pid: child.pid! }
      })()
      hops.set(key, hop)
    }
    return hop
  }

  async function cryptoCeiling(): Promise<{ verify: number; sign: number }> {
    const cfg = { ...gatewayCfg, config: rawConfig({ jwks: idpJwks }) }
    const child = spawnServer(cfg, ['--crypto', good], false)
    defer(() => stopChild(child))
    return firstMessage<{ verify: number; sign: number }>(child, 'crypto ceiling')
  }

  /** CONCURRENCY requests in flight for `seconds`; counts answers, checks their status. */
  async function load(url: string, headers: Record<string, string>, expect: number, seconds: number, pid = gw!.pid): Promise<{ n: number; wall: number; gwCpu: number; ownCpu: number; windows: Array<{ n: number; wall: number; gwCpu: number }> }> {
    const end = performance.now() + seconds * 1000
    const cpu0 = await cpuSeconds(pid)
    const own0 = process.cpuUsage()
    const t0 = performance.now()
    let n = 0
    // SPREAD_ROUNDS windows of the run, each with its own count and gateway CPU: the bench's noise.
    const marks: Array<{ n: number; t: number; cpu: number }> = [{ n: 0, t: t0, cpu: cpu0 }]
    const windowMs = (seconds * 1000) / SPREAD_ROUNDS
    const ticker = setInterval(() => {
      const at = { n, t: performance.now() }
      void cpuSeconds(pid).then((cpu) => marks.push({ ...at, cpu }), () => {})
    }, windowMs)
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        const r = await request(url, { dispatcher: plain, headers })
        await r.body.arrayBuffer()
        if (r.statusCode !== expect) throw new Error(`${url}: status ${r.statusCode}, expected ${expect}`)
        n++
      }
    }))
    clearInterval(ticker)
    const wall = (performance.now() - t0) / 1000
    const own = process.cpuUsage(own0)
    const gwCpu = (await cpuSeconds(pid)) - cpu0
    const windows = marks.slice(1).map((m, i) => ({ n: m.n - marks[i]!.n, wall: (m.t - marks[i]!.t) / 1000, gwCpu: m.cpu - marks[i]!.cpu })).filter((w) => w.gwCpu > 0)
    return { n, wall, gwCpu, ownCpu: (own.user + own.system) / 1e6, windows }
  }

  if (gw && ONLY.has('rps')) {
    const c = await cryptoCeiling()
    const ceiling = 1 / (1 / c.verify + 1 / c.sign)
    note(`crypto on the gateway's CPU: ES256 verify ${c.verify.toFixed(0)}/s, EdDSA sign ${c.sign.toFixed(0)}/s → ceiling ${ceiling.toFixed(0)} authenticated req/s`)
    await load(gw.url + LIST, auth, 200, Math.min(1, RPS_SECONDS)) // warm-up: connections, JIT
    const lift = QUOTA > 0 ? await cpuQuota(gw.pid, QUOTA) : undefined
    if (lift) defer(lift)
    const a = await load(gw.url + LIST, auth, 200, RPS_SECONDS)
    await lift?.()
    note(`authenticated list: ${a.n} requests in ${a.wall.toFixed(2)} s; gateway CPU ${(a.gwCpu / a.wall * 100).toFixed(0)}% of a core, this process (agent + client) ${(a.ownCpu / a.wall * 100).toFixed(0)}%`)
    for (const withAuth of [false, true]) {
      const { url, pid } = await minimalHop(...(withAuth ? ['--auth' as const] : []))
      const headers = withAuth ? auth : {}
      await load(url + LIST, headers, 200, Math.min(1, RPS_SECONDS), pid)
      const liftHop = QUOTA > 0 ? await cpuQuota(pid, QUOTA) : undefined
      if (liftHop) defer(liftHop)
      const h = await load(url + LIST, headers, 200, RPS_SECONDS, pid)
      await liftHop?.()
      const what = withAuth ? 'minimal authenticated hop' : 'minimal hop'
      note(`${what}: ${h.n} requests in ${h.wall.toFixed(2)} s, ${(h.n / h.gwCpu).toFixed(0)} per CPU-s; its CPU ${(h.gwCpu / h.wall * 100).toFixed(0)}% of a core, this process ${(h.ownCpu / h.wall * 100).toFixed(0)}%; the gateway at ${((a.n / a.gwCpu) / (h.n / h.gwCpu)).toFixed(2)} of it`)
      emit(`gateway.node.${withAuth ? 'minimal_auth_hop' : 'minimal_hop'}.per_cpu_s`, h.n / h.gwCpu, 'req/cpu-s', ceiling, spreadOf(h.windows.map((w) => w.n / w.gwCpu / ceiling)))
    }
    emit('gateway.node.authenticated_list.rps', a.n / a.wall, 'req/s', ceiling, spreadOf(a.windows.map((w) => w.n / w.wall / ceiling)))
    emit('gateway.node.authenticated_list.per_gateway_cpu_s', a.n / a.gwCpu, 'req/cpu-s', ceiling, spreadOf(a.windows.map((w) => w.n / w.gwCpu / ceiling)))
    const b = await load(gw.url + LIST, { authorization: `Bearer ${bad}` }, 401, process.env.BENCH_RPS_BAD === '0' ? 0.2 : RPS_SECONDS)
    note(`bad signature: ${b.n} rejections in ${b.wall.toFixed(2)} s; gateway CPU ${(b.gwCpu / b.wall * 100).toFixed(0)}%, this process ${(b.ownCpu / b.wall * 100).toFixed(0)}%`)
    emit('gateway.node.rejected_bad_signature.rps', b.n / b.wall, 'req/s', c.verify, spreadOf(b.windows.map((w) => w.n / w.wall / c.verify)))
    emit('gateway.node.rejected_bad_signature.per_gateway_cpu_s', b.n / b.gwCpu, 'req/cpu-s', c.verify, spreadOf(b.windows.map((w) => w.n / w.gwCpu / c.verify)))
  }

  /** Interleaves a direct agent call and the same call through `base`, N times each; medians in ms. */
  async function latency(base: string, label: string, pid: number | undefined): Promise<void> {
    const dl = { direct: [] as number[], via: [] as number[] }
    const cp = { direct: [] as number[], via: [] as number[] }
    const cpN = Math.max(1, Math.min(N, Number(process.env.BENCH_CP_N ?? 100)))
    const archivePath = `/checkpoints/${encodeURIComponent(archive)}`
    const time = async (xs: number[], fn: () => Promise<{ status: number; body: Buffer }>, expect: number) => {
      const t0 = performance.now()
      const r = await fn()
      xs.push(performance.now() - t0)
      if (r.status !== expect) throw new Error(`${label}: status ${r.status}: ${r.body.toString().slice(0, 300)}`)
    }
    // Warm-up (JIT tiers, connection pools): a fresh process spends milliseconds of compiler
    // threads' CPU per request for its first few hundred requests.
    let w = 0
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (w++ < 1000) await get(plain, `${base}${LIST}/${encodeURIComponent(archive)}`, { headers: auth })
    }))
    for (let i = 0; i < 20; i++) await get(plain, base + CHECKPOINT, { method: 'POST', headers: auth })
    const cpu = { dl: 0, cp: 0 }
    const split0 = pid ? await cpuSplit(pid) : undefined
    const threads0 = pid ? await threadCpu(pid) : undefined
    let c0 = pid ? await cpuSeconds(pid) : 0
    for (let i = 0; i < N; i++) {
      const g = await agent.mint({ op: 'checkpoint:read', cluster: 'bench', archive, namespaces: everyReading(archive), sub: 'sam' })
      await time(dl.direct, () => get(direct, agent.agent.url + archivePath, { headers: { authorization: `Bearer ${g}` } }), 200)
      await time(dl.via, () => get(plain, `${base}${LIST}/${encodeURIComponent(archive)}`, { headers: auth }), 200)
    }
    if (pid) cpu.dl = (await cpuSeconds(pid)) - c0
    if (pid && split0) {
      const s1 = await cpuSplit(pid)
      note(`${label} gateway CPU during the ${N} sequential downloads: user ${(s1.user - split0.user).toFixed(2)} s, system ${(s1.sys - split0.sys).toFixed(2)} s; by thread: ${threadDelta(threads0!, await threadCpu(pid))}`)
    }
    c0 = pid ? await cpuSeconds(pid) : 0
    for (let i = 0; i < cpN; i++) {
      const g = await agent.mint({ op: 'checkpoint:create', cluster: 'bench', ...TARGET, sub: 'sam' })
      await time(cp.direct, () => get(direct, `${agent.agent.url}/checkpoint/bench/app/app?timeout=60`, { method: 'POST', headers: { authorization: `Bearer ${g}`, accept: 'application/x-ndjson' } }), 200)
      await time(cp.via, () => get(plain, base + CHECKPOINT, { method: 'POST', headers: auth }), 200)
    }
    if (pid) cpu.cp = (await cpuSeconds(pid)) - c0
    for (const [what, m] of [['download_4k', dl], ['checkpoint', cp]] as const) {
      const d = median(m.direct)
      const v = median(m.via)
      note(`${label} ${what}: direct p50 ${d.toFixed(2)} p90 ${pct(m.direct, 0.9).toFixed(2)} ms; via gateway p50 ${v.toFixed(2)} p90 ${pct(m.via, 0.9).toFixed(2)} ms (${m.via.length} samples)`)
      emit(`gateway.${label}.${what}.p50`, v, 'ms', d, spreadOf(perBlock(m.via, m.direct, SPREAD_ROUNDS, (o, t) => median(o) / median(t))))
      emit(`gateway.${label}.${what}.added_latency.p50`, v - d, 'ms', null, spreadOf(perBlock(m.via, m.direct, SPREAD_ROUNDS, (o, t) => median(o) - median(t))))
      // The gateway's own CPU time per request: what it adds when nothing else competes for the CPU.
      if (pid) emit(`gateway.${label}.${what}.gateway_cpu_per_request`, ((what === 'download_4k' ? cpu.dl : cpu.cp) / m.via.length) * 1000, 'ms')
    }
    // The agent's retention (10 per container) bounds the archives the checkpoints leave.
  }

  if (gw && ONLY.has('latency')) {
    await latency(gw.url, 'node', gw.pid)
    const h = await minimalHop()
    await latency(h.url, 'node.minimal_hop', h.pid)
    const ah = await minimalHop('--auth')
    await latency(ah.url, 'node.minimal_auth_hop', ah.pid)
    const hh = await minimalHop('--auth', '--hono')
    await latency(hh.url, 'node.minimal_hono_hop', hh.pid)
  }

  if (ONLY.has('workerd')) {
    const bindings = { config: rawConfig({ jwksUrl }), grantKeys: [grantJwk], client: { cert: ids.gateway.certPem, key: ids.gateway.keyPem }, ca: ids.pki.ca.certPem }
    defer(removeBundle)
    const w = await startPinnedWorker(bindings)
    await latency(w.url, 'workerd', w.pid)
    await w.close()
    const hopBundle = await bundleWorkerEntry(MINIMAL_HOP_WORKER)
    defer(hopBundle.remove)
    const h = await startPinnedWorker({ ...bindings, bundle: hopBundle, secrets: { HOP_NODE: NODE } })
    await latency(h.url, 'workerd.minimal_hop', h.pid)
    await h.close()
  }

  const curl = (url: string, headers: Record<string, string>) => curlToNull(url, { headers, timeoutMs: 180_000, onKill: defer })

  if (gw && ONLY.has('download')) {
    // A fresh gateway process, so its RSS before the download is not the heap the earlier parts grew.
    await gw.stop()
    const dgw = await startGatewayProcess(gatewayCfg)
    const name = archiveName({ namespace: 'bench', pod: 'big', container: 'app' }, new Date())
    const bytes = Math.round(ARCHIVE_MB * MiB)
    const fh = await open(join(agent.dir, 'checkpoints', name), 'wx', 0o600)
    await fh.truncate(bytes) // sparse: no disk I/O, the proxies are the bottleneck
    await fh.close()
    const px = await startNginxProxy({ upstream: agent.agent.url, cert: ids.gateway.cert, key: ids.gateway.key, ca: ids.pki.ca.cert, serverName: 'localhost', ...(PIN ? { taskset: '0' } : {}) })
    defer(() => px.stop())
    await sleep(300)
    const rssIdle = await rssMiB(dgw.pid)
    // Sampled only while a download runs through the gateway (not during nginx's rounds).
    const samples: number[] = []
    let sampling = false
    const sampler = setInterval(() => void (sampling && rssMiB(dgw.pid).then((m) => samples.push(m), () => {})), 100)
    defer(() => clearInterval(sampler))
    const runs = { nginx: [] as number[], gateway: [] as number[] }
    const cpu = { nginx: 0, gateway: 0 }
    const mb = { nginx: 0, gateway: 0 }
    /** Per round: MB per CPU-second of each proxy, and the gateway's largest RSS sample. */
    const perCpu = { nginx: [] as number[], gateway: [] as number[] }
    const roundMax: number[] = []
    const path = `/checkpoints/${encodeURIComponent(name)}`
    /** One download through nginx; MB/s and MB per CPU-second of its processes. */
    const viaNginx = async () => {
      const g = await agent.mint({ op: 'checkpoint:read', cluster: 'bench', archive: name, namespaces: everyReading(name), sub: 'sam' })
      const c0 = await treeCpuSeconds(px.pid)
      const r = await curl(`${px.url}${path}`, { authorization: `Bearer ${g}` })
      const used = (await treeCpuSeconds(px.pid)) - c0
      if (r.bytes !== bytes) throw new Error(`nginx: ${r.bytes} bytes of ${bytes}`)
      return { mbps: r.bytes / r.seconds / 1e6, mb: r.bytes / 1e6, cpu: used }
    }
    /** One download through the gateway, its RSS sampled meanwhile; also the largest sample of it. */
    const viaGateway = async () => {
      const c0 = await cpuSeconds(dgw.pid)
      const first = samples.length
      sampling = true
      const r = await curl(`${dgw.url}${LIST}/${encodeURIComponent(name)}`, auth)
      sampling = false
      const used = (await cpuSeconds(dgw.pid)) - c0
      if (r.bytes !== bytes) throw new Error(`gateway: ${r.bytes} bytes of ${bytes}`)
      return { mbps: r.bytes / r.seconds / 1e6, mb: r.bytes / 1e6, cpu: used, rssMax: Math.max(...samples.slice(first)) }
    }
    // One warm-up each, not counted (the first download through nginx ran at about half speed in
    // every run: connections, page cache, its worker's first use); the gateway's RSS is sampled in
    // it too, as the first download is where it grows. Then rounds alternating who goes first.
    const warm = { nginx: await viaNginx(), gateway: await viaGateway() }
    note(`warm-up: nginx ${warm.nginx.mbps.toFixed(0)} MB/s, gateway ${warm.gateway.mbps.toFixed(0)} MB/s`)
    for (let i = 0; i < ROUNDS; i++) {
      const [n, g] = i % 2 ? [undefined, await viaGateway()] : [await viaNginx(), undefined]
      const nx = n ?? await viaNginx()
      const gx = g ?? await viaGateway()
      runs.nginx.push(nx.mbps)
      runs.gateway.push(gx.mbps)
      cpu.nginx += nx.cpu
      cpu.gateway += gx.cpu
      mb.nginx += nx.mb
      mb.gateway += gx.mb
      perCpu.nginx.push(nx.mb / nx.cpu)
      perCpu.gateway.push(gx.mb / gx.cpu)
      roundMax.push(gx.rssMax)
      note(`round ${i + 1}: nginx ${nx.mbps.toFixed(0)} MB/s, gateway ${gx.mbps.toFixed(0)} MB/s`)
    }
    clearInterval(sampler)
    emit('gateway.node.download_throughput', median(runs.gateway), 'MB/s', median(runs.nginx), spreadOf(runs.gateway.map((g, i) => g / runs.nginx[i]!)))
    emit('gateway.node.download_cpu_efficiency', mb.gateway / cpu.gateway, 'MB/cpu-s', mb.nginx / cpu.nginx, spreadOf(perCpu.gateway.map((g, i) => g / perCpu.nginx[i]!)))
    const q = Math.max(1, Math.floor(samples.length / 4))
    note(`gateway RSS: idle ${rssIdle.toFixed(0)} MiB; ${samples.length} samples, min ${Math.min(...samples).toFixed(0)} max ${Math.max(...samples).toFixed(0)} MiB`)
    emit('gateway.node.rss_streaming_max', Math.max(...samples), 'MiB', rssIdle, spreadOf(roundMax.map((m) => m / rssIdle)))
    emit('gateway.node.rss_streaming_last_quarter', Math.max(...samples.slice(-q)), 'MiB', Math.max(...samples.slice(0, q)))
    note(`gateway RSS by quarter of the samples (max MiB): ${[0, 1, 2, 3].map((i) => Math.max(...samples.slice(i * q, (i + 1) * q)).toFixed(0)).join(' ')}`)
    await px.stop()
    await dgw.stop()
  }

  if (gw) await gw.stop()

  if (ONLY.has('fronts')) await fronts({ agent, ids, gatewayCfg, auth, list: LIST })

  if (ONLY.has('bundle')) {
    const { script } = await bundleWorker()
    const src = readFileSync(script)
    emit('worker.bundle.gzip', gzipSync(src, { level: 9 }).byteLength / 1024, 'KiB', 150)
    const { build } = await import('esbuild')
    const min = join(work, 'worker.min.js')
    await build({
      entryPoints: [fileURLToPath(new URL('../../functions/workers/worker.ts', import.meta.url))],
      bundle: true, format: 'esm', platform: 'neutral', target: 'es2022', mainFields: ['module', 'main'],
      conditions: ['workerd', 'worker', 'browser', 'import'], outfile: min, logLevel: 'error', minify: true,
    })
    note(`worker bundle: ${(src.byteLength / 1024).toFixed(0)} KiB raw, ${(readFileSync(min).byteLength / 1024).toFixed(0)} KiB minified`)
    emit('worker.bundle.min.gzip', gzipSync(readFileSync(min), { level: 9 }).byteLength / 1024, 'KiB', 150)
    removeBundle()
  }
}

// ---- archive sizes and fronts: what deployments see ----------------------------------------------

interface FrontsWorld {
  agent: TestAgent
  ids: Identities
  gatewayCfg: Record<string, unknown>
  /** The caller's `authorization` header for the gateway. */
  auth: Record<string, string>
  /** The gateway's checkpoint list path for the agent's node. */
  list: string
}

/**
 * Real archives (written, in the page cache; a random 1 MiB block repeated) of each
 * BENCH_FRONT_SIZES_MIB, downloaded by curl through a fresh Node gateway process and a fresh nginx
 * reverse proxy, first with a plain-HTTP front and then with a TLS one (the agent's certificate,
 * curl trusting its CA); FRONT_ROUNDS alternating rounds per size after each one's first download
 * of it, and the same archives straight from the agent (mTLS) for reference. The first download of
 * the smallest size is each process's first download at all (`first_…`, no warm-up).
 */
async function fronts(w: FrontsWorld): Promise<void> {
  const block = randomBytes(MiB)
  const names: Array<[number, string, number]> = []
  for (const mib of FRONT_SIZES_MIB) {
    const name = archiveName({ namespace: 'bench', pod: `size-${mib}`, container: 'app' }, new Date())
    const file = join(w.agent.dir, 'checkpoints', name)
    const fh = await open(file, 'wx', 0o600)
    defer(() => rm(file, { force: true }))
    const bytes = Math.round(mib * MiB)
    for (let off = 0; off < bytes; off += block.length) await fh.write(block, 0, Math.min(block.length, bytes - off))
    await fh.close()
    names.push([mib, name, bytes])
  }
  const curl = (url: string, headers: Record<string, string>, args: string[]) => curlToNull(url, { headers, args, timeoutMs: 180_000, onKill: defer })
  const grant = (name: string) => w.agent.mint({ op: 'checkpoint:read', cluster: 'bench', archive: name, namespaces: everyReading(name), sub: 'sam' })
  const mbps = (r: { bytes: number; seconds: number }, bytes: number, what: string) => {
    if (r.bytes !== bytes) throw new Error(`${what}: ${r.bytes} bytes of ${bytes}`)
    return r.bytes / r.seconds / 1e6
  }
  const mtls = ['--cacert', w.ids.pki.ca.cert, '--cert', w.ids.gateway.cert, '--key', w.ids.gateway.key]
  for (const [mib, name, bytes] of names) {
    const runs: number[] = []
    for (let i = 0; i < FRONT_ROUNDS; i++) runs.push(mbps(await curl(`${w.agent.agent.url}/checkpoints/${encodeURIComponent(name)}`, { authorization: `Bearer ${await grant(name)}` }, mtls), bytes, 'agent'))
    note(`${mib} MiB straight from the agent (mTLS): median ${median(runs).toFixed(0)} MB/s (${runs.map((r) => r.toFixed(0)).join(', ')})`)
  }
  for (const front of ['plain', 'tls'] as const) {
    const tls = front === 'tls'
    const gw = await startGatewayProcess({ ...w.gatewayCfg, ...(tls ? { tls: { cert: w.ids.server.certPem, key: w.ids.server.keyPem } } : {}) })
    const px = await startNginxProxy({
      upstream: w.agent.agent.url, cert: w.ids.gateway.cert, key: w.ids.gateway.key, ca: w.ids.pki.ca.cert, serverName: 'localhost',
      ...(tls ? { front: { cert: w.ids.server.cert, key: w.ids.server.key } } : {}), ...(PIN ? { taskset: '0' } : {}),
    })
    const args = tls ? ['--cacert', w.ids.pki.ca.cert] : []
    /** One download each way, in the given order: MB/s and MB per CPU-second of the proxy. */
    const one = async (name: string, bytes: number, gatewayFirst: boolean) => {
      const out = { gateway: { mbps: 0, perCpu: 0, firstByteMs: 0 }, nginx: { mbps: 0, perCpu: 0, firstByteMs: 0 } }
      for (const who of gatewayFirst ? ['gateway', 'nginx'] as const : ['nginx', 'gateway'] as const) {
        const c0 = who === 'gateway' ? await cpuSeconds(gw.pid) : await treeCpuSeconds(px.pid)
        const r = who === 'gateway'
          ? await curl(`${gw.url}${w.list}/${encodeURIComponent(name)}`, w.auth, args)
          : await curl(`${px.url}/checkpoints/${encodeURIComponent(name)}`, { authorization: `Bearer ${await grant(name)}` }, args)
        const used = (who === 'gateway' ? await cpuSeconds(gw.pid) : await treeCpuSeconds(px.pid)) - c0
        out[who] = { mbps: mbps(r, bytes, `${who} (${front})`), perCpu: bytes / 1e6 / used, firstByteMs: r.firstByte * 1000 }
      }
      return out
    }
    for (const [k, [mib, name, bytes]] of names.entries()) {
      const first = await one(name, bytes, k % 2 === 0)
      if (k === 0) emit(`gateway.node.download.${front}.first_${mib}mib`, first.gateway.mbps, 'MB/s', first.nginx.mbps)
      const rounds = []
      for (let i = 0; i < FRONT_ROUNDS; i++) rounds.push(await one(name, bytes, (k + i) % 2 === 1))
      const gws = rounds.map((r) => r.gateway.mbps)
      const nxs = rounds.map((r) => r.nginx.mbps)
      note(`${front} front, ${mib} MiB: first gateway ${first.gateway.mbps.toFixed(0)} nginx ${first.nginx.mbps.toFixed(0)} MB/s; then gateway ${gws.map((x) => x.toFixed(0)).join(', ')}, nginx ${nxs.map((x) => x.toFixed(0)).join(', ')} MB/s; MB per CPU-s gateway ${median(rounds.map((r) => r.gateway.perCpu)).toFixed(0)}, nginx ${median(rounds.map((r) => r.nginx.perCpu)).toFixed(0)}; first byte gateway ${first.gateway.firstByteMs.toFixed(1)} then ${median(rounds.map((r) => r.gateway.firstByteMs)).toFixed(1)} ms, nginx ${first.nginx.firstByteMs.toFixed(1)} then ${median(rounds.map((r) => r.nginx.firstByteMs)).toFixed(1)} ms`)
      emit(`gateway.node.download.${front}.${mib}mib`, median(gws), 'MB/s', median(nxs), spreadOf(gws.map((g, i) => g / nxs[i]!)))
    }
    await px.stop()
    await gw.stop()
  }
}

main().then(
  async () => {
    await cleanupAll()
    process.exit(0)
  },
  async (err) => {
    process.stderr.write(`${(err as Error).stack ?? err}\n`)
    await cleanupAll()
    process.exit(1)
  },
)
