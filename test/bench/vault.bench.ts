/**
 * Evidence-vault benchmarks: a real checkpoint, sealed on the node and stored in a real S3 server.
 * Each figure is one JSON line on stdout — `{"name","value","unit"}`, plus `"baseline"` and
 * `"ratio"` (value / baseline) when a baseline is measured in the same run. Figures are not
 * assertions: the process exits 0 whatever they are, and non-zero only when a part of the bench
 * could not run. Progress goes to stderr as `# …` lines.
 *
 *   node_modules/.bin/node test/bench/vault.bench.ts        # as root (containerd, CRIU)
 *
 * The archive is one real checkpoint (private containerd 2.x + runc + CRIU, test/runtime/
 * containerd.ts) of a busybox container holding BENCH_VAULT_MB of mixed content in memory — a
 * third each of log-like text, random bytes and zero-filled pages, in blocks of 37–237 KiB, the
 * content of seal.bench.ts — taken through an in-process agent. The content is held in memory
 * (a `dd` buffer), not the writable layer: containerd gzips the rootfs diff, so a layer of 1 GiB
 * gives an archive of ≈ 0.4 GiB of already-compressed bytes, while CRIU's page images are raw.
 * The S3 server is radosgw on dbstore (test/runtime/s3-server.ts), on loopback.
 *
 * - `vault_store_seconds` (s, median): `completed → stored`, i.e. the gateway's store driver
 *   `storeArchive` (functions/vault/vault.ts; create the multipart upload, presign the parts (5 MiB by default),
 *   grant, the agent seals and PUTs each part over mTLS, list parts, complete) for the archive on
 *   the agent's disk; the agent is the bundle (agent/build.ts) as its own process, as a DaemonSet runs it. Baseline: what an operator runs by hand on the same file, with Debian's
 *   tools (sid's age, the system's zstd and curl): `zstd -3 -c archive | age -r R | curl -T -
 *   <presigned PUT URL>` (one PutObject, chunked transfer: radosgw accepts it; the first round's
 *   object is read back and opened with age -d | zstd -d to the archive's sha256). Rounds
 *   interleaved, order alternating, no warm-up (the archive is in the page cache: just written).
 * - `vault_plain_upload_seconds` (s, median): `curl -T archive <presigned PUT URL>`, the raw
 *   archive with no sealing: what the network and the S3 server alone cost. No baseline.
 *   dbstore keeps one PutObject in one SQLite blob (≤ 10^9 bytes; larger ones are refused with
 *   403 AccessDenied once sent), so an archive over 950 MB goes up as a multipart upload of the
 *   fewest pieces under that (2 for 1 GiB), one `-T piece <presigned UploadPart URL>` each, in one
 *   curl process, split beforehand (not timed); create and complete are timed. The pipeline's
 *   sealed stream must stay under it too (it does: ≈ 0.45 GB for 1 GiB of this content).
 * - `vault_compression_ratio` (plaintext / sealed bytes): ours against the pipeline's.
 * - `vault_seal_mb_per_cpu_s` (MB of plaintext per CPU-second, "per core"): ours is the agent
 *   process's CPU over `storeArchive` (/proc/<pid>/stat: sealing on libuv's pool and on its main
 *   thread, PUTting the parts); the baseline is the pipeline's processes (zstd, age and curl, bash
 *   `times`). The S3 server's and the gateway driver's CPU are in neither.
 * - `agent_rss_store_idle`, `agent_rss_store_2gib` (MiB): `agent/main.ts` as its own process on a
 *   fake CRI; VmRSS after start and one /readyz (idle), and the largest VmRSS sampled every 100 ms
 *   while `storeArchive` has it seal and upload a BENCH_VAULT_RSS_MB archive of the same mixed
 *   content (written by the bench into its checkpoint dir: no metadata, sha256 unknown), baseline
 *   the idle figure (goal: ≤ idle + 32 MiB). `agent_rss_store_growth` is the difference.
 *
 * Diagnostics on stderr: one seal of the archive into a null sink (sealing alone, for comparison).
 *
 * Environment: BENCH_VAULT_MB (1024), BENCH_VAULT_ROUNDS (3), BENCH_VAULT_RSS_MB (2048),
 * BENCH_VAULT_PART_MIB (unset: the vault's default, 5), BENCH_VAULT_NODE_FLAGS (node flags for the agent; default the image's, agent/build.ts NODE_FLAGS),
 * BENCH_ONLY (comma list of store, rss; default both),
 * BENCH_TIMEOUT_S (600): past it everything is stopped and the bench exits 1.
 *
 * Everything runs on loopback under one temp dir, removed at the end; every process and server
 * started here is stopped, also on failure and on SIGINT/SIGTERM.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { AwsClient, AwsV4Signer } from 'aws4fetch'
import { Agent, fetch as undiciFetch, request } from 'undici'
import { buildAgent, NODE_FLAGS } from '../../agent/build.ts'
import { generateIdentity } from '../../agent/seal/age.ts'
import { seal } from '../../agent/seal/seal.ts'
import { s3Client, type S3Client } from '../../functions/vault/s3.ts'
import { parseVaultConfig, storeArchive, type VaultConfig } from '../../functions/vault/vault.ts'
import { archiveName, type Target } from '../../shared/names.ts'
import { buildAndPushBusybox, runPod, startLocalRuntime } from '../runtime/containerd.ts'
import { ensureAge, type EvidenceTools } from '../runtime/evidence-tools.ts'
import { startS3Server, type S3Server } from '../runtime/s3-server.ts'
import { NEVER } from '../runtime/workloads.ts'
import { everyReading, GATEWAY_ID, makeIdentities, mintGrant, startTestAgent, type Identities } from '../support/agent-harness.ts'
import { startFakeCri } from '../support/fake-cri.ts'
import { agentListening, stopChild } from '../support/process.ts'
import { poll, sleep } from '../support/wait.ts'
import { writeMixed } from './content.ts'
import { lifecycle } from './lifecycle.ts'
import { sampleRss, vmRssKiB } from './proc.ts'
import { emit, envNumber, median, noter, spreadOf } from './figures.ts'

const execFileP = promisify(execFile)
const REPO = fileURLToPath(new URL('../../', import.meta.url))
const MiB = 1 << 20

const SIZE_MB = envNumber('BENCH_VAULT_MB', 1024)
const ROUNDS = Math.round(envNumber('BENCH_VAULT_ROUNDS', 3))
const RSS_MB = envNumber('BENCH_VAULT_RSS_MB', 2048)
const PART_MIB = process.env.BENCH_VAULT_PART_MIB ? Math.round(envNumber('BENCH_VAULT_PART_MIB', 5)) : undefined
const TIMEOUT_S = envNumber('BENCH_TIMEOUT_S', 600)
const ONLY = new Set((process.env.BENCH_ONLY ?? 'store,rss').split(',').map((s) => s.trim()).filter(Boolean))

const note = noter('vault.bench')
const secs = (ms: number) => (ms / 1000).toFixed(1)
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ')

const { defer, scoped, aborted } = lifecycle(note, TIMEOUT_S)

// ---- helpers -------------------------------------------------------------------------------

interface Run { wall: number; cpu: number; out: number }

/** A bash script; CPU is its children's (bash `times`), wall is ours; `out` is what `-w` printed. */
async function shell(script: string): Promise<Run & { stdout: string }> {
  const t0 = performance.now()
  const { stdout } = await execFileP('bash', ['-c', `set -o pipefail; ${script}; times`], { maxBuffer: 1 << 20, timeout: 300_000 })
  const wall = (performance.now() - t0) / 1000
  const lines = stdout.trim().split('\n')
  const s = (x: string) => {
    const m = /^(\d+)m([\d.]+)s$/.exec(x)
    if (!m) throw new Error(`cannot read times output ${JSON.stringify(x)}`)
    return Number(m[1]) * 60 + Number(m[2])
  }
  const [user, sys] = lines.at(-1)!.trim().split(/\s+/)
  return { wall, cpu: s(user!) + s(sys!), out: 0, stdout: lines.slice(0, -2).join('\n') }
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

/** A presigned single PutObject URL (s3.ts presigns only parts and GETs): host signed only, unsigned payload. */
async function presignPut(s3: S3Server, key: string, expiresSec = 900): Promise<string> {
  const url = new URL(`${s3.endpoint}/${s3.bucket}/${key}`)
  url.searchParams.set('X-Amz-Expires', String(expiresSec))
  const signer = new AwsV4Signer({ method: 'PUT', url: url.toString(), accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, region: s3.region, service: 's3', signQuery: true, allHeaders: true })
  return (await signer.sign()).url.toString()
}

/** curl -T … -w: the status and bytes sent, checked. */
async function curlPut(source: string, url: string, what: string): Promise<Run> {
  return checkCurl(await shell(`${source} | curl -sS -T - -w '\\n%{http_code} %{size_upload}\\n' ${q(url)}`), what)
}
/** Reads the `-w '\n%{http_code} %{size_upload}\n'` lines of `transfers` transfers: all 200, bytes summed. */
function checkCurl(r: Run & { stdout: string }, what: string, transfers = 1): Run {
  const ms = [...r.stdout.matchAll(/^(\d{3}) (\d+)$/gm)]
  if (ms.length !== transfers || ms.some((m) => m[1] !== '200')) throw new Error(`${what}: S3 answered ${ms.map((m) => m[1]).join(', ') || '?'}: ${r.stdout.slice(0, 400)}`)
  return { wall: r.wall, cpu: r.cpu, out: ms.reduce((n, m) => n + Number(m[2]), 0) }
}

/** radosgw dbstore's limit for one PutObject (SQLite's largest blob is 10^9 bytes), with room to spare. */
const SINGLE_PUT_MAX = 950_000_000

/** `file` as `n` pieces of about equal size in `dir` (n = 1: the file itself), each with its MD5. */
async function splitFile(file: string, n: number, dir: string): Promise<{ path: string; md5: string }[]> {
  let paths = [file]
  if (n > 1) {
    await mkdir(dir, { recursive: true })
    await execFileP('split', ['-n', String(n), '-d', '-a', '3', file, join(dir, 'piece-')])
    paths = (await readdir(dir)).sort().map((f) => join(dir, f))
  }
  const out = []
  for (const path of paths) {
    const h = createHash('md5')
    for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer)
    out.push({ path, md5: h.digest('hex') })
  }
  return out
}

function vaultConfig(s3: S3Server, recipient: string): VaultConfig {
  const secrets: Record<string, string> = { S3_KEY: s3.accessKeyId, S3_SECRET: s3.secretAccessKey }
  return parseVaultConfig({
    backend: 's3', s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyIdSecret: 'S3_KEY', secretAccessKeySecret: 'S3_SECRET' },
    ...(PART_MIB !== undefined ? { partSizeMiB: PART_MIB } : {}), recipients: [{ id: 'bench', clusters: ['*'], namespaces: ['*'], recipients: [recipient] }],
  }, (n) => secrets[n])
}

/** The gateway's completed → stored for one archive on one agent (as functions/vault/flow.ts calls it). */
function store(o: { storage: S3Client; cfg: VaultConfig; cluster: string; target: Target; archive: { name: string; size: number; sha256: string }; statement?: unknown; recipient: string; ids: Identities; node: string; namespaces: string[]; agentUrl: string; mtls: Agent }) {
  return storeArchive({
    storage: o.storage, cfg: o.cfg, cluster: o.cluster, target: o.target, archive: o.archive, recipients: [o.recipient], requestId: `bench-${o.cluster}`,
    ...(o.statement !== undefined ? { statement: o.statement } : {}),
    grant: async (plan) => ({ authorization: `Bearer ${await mintGrant(o.ids, { op: 'checkpoint:store', node: o.node, archive: o.archive.name, namespaces: o.namespaces, plan })}` }),
    agent: (path, init) => undiciFetch(o.agentUrl + path, { ...(init as object), dispatcher: o.mtls }) as unknown as Promise<Response>,
    emit: () => {},
    now: Date.now,
  })
}

const mtlsClient = (ids: Identities) => new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' } })

// ---- a real checkpoint of ≈ BENCH_VAULT_MB ---------------------------------------------------

const POD: Target = { namespace: 'bench', pod: 'vault', container: 'hold' }

/** The largest RssAnon (bytes) among the children of `pid` (busybox sh runs applets such as dd in its forks, without exec). */
async function childRssAnon(pid: string): Promise<number> {
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean)
  let max = 0
  for (const c of children) {
    const status = await readFile(`/proc/${c}/status`, 'utf8').catch(() => '')
    max = Math.max(max, Number(/^RssAnon:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024)
  }
  return max
}

async function realCheckpoint(work: string, ids: Identities) {
  const bytes = Math.round(SIZE_MB * MiB)
  let t0 = performance.now()
  const rt = await startLocalRuntime({ dir: work })
  defer(() => rt.stop())
  const image = await buildAndPushBusybox(rt.registry, 'bench/busybox', 'v1')
  // The container waits for its content, reads it into one dd buffer (text, random, zero pages in
  // memory), deletes the file (the writable layer stays small) and blocks writing to a pipe that
  // is never read: it holds the buffer until it is stopped.
  const cmd = `while [ ! -e /tmp/go ]; do sleep 1; done; { cat /tmp/mixed; rm /tmp/mixed; } | dd bs=${bytes} count=1 iflag=fullblock 2>/dev/null | { ${NEVER}; }`
  const pod = await runPod(rt.endpoint, { ...POD, image, command: ['sh', '-c', cmd] })
  const pid = await poll(async () => {
    const out = await rt.ctr(['-n', 'k8s.io', 'tasks', 'ls'])
    return out.split('\n').map((l) => l.trim().split(/\s+/)).find(([id]) => id === pod.containerId)?.[1]
  }, 30_000, 'the container task')
  const root = `/proc/${pid}/root/tmp`
  await writeMixed(join(root, 'mixed'), bytes)
  await writeFile(join(root, 'go'), '')
  // dd's buffer is all resident once the last byte is read into it.
  await poll(async () => ((await childRssAnon(pid)) >= bytes ? true : undefined), 120_000, 'the container reading its content', 100)
  note(`container holds ${SIZE_MB} MiB of mixed content in memory (${secs(performance.now() - t0)} s with the runtime)`)

  t0 = performance.now()
  const ta = await startTestAgent({ ids, endpoint: rt.endpoint, dir: join(work, 'agent') })
  defer(() => ta.stop())
  const res = await ta.fetch(`/checkpoint/${POD.namespace}/${POD.pod}/${POD.container}?timeout=600`, {
    method: 'POST',
    headers: { accept: 'application/x-ndjson', authorization: `Bearer ${await ta.mint({ op: 'checkpoint:create', ...POD })}` },
  })
  const last = JSON.parse((await res.body.text()).trim().split('\n').at(-1)!) as { type: string; archive: { name: string; size: number; sha256: string }; statement?: unknown }
  if (res.statusCode !== 200 || last.type !== 'completed') throw new Error(`checkpoint: ${res.statusCode} ${JSON.stringify(last).slice(0, 600)}`)
  note(`checkpoint through the agent: ${last.archive.size} bytes in ${secs(performance.now() - t0)} s`)
  // The archive is on the agent's disk now: the runtime (and the container's GiB) can go.
  await rt.stop()
  return { ta, archive: last.archive, statement: last.statement, file: join(ta.agent.store.dir, last.archive.name) }
}

/** The agent bundle (agent/build.ts) as its own process, as a DaemonSet runs it, on `checkpointDir`; ready. */
async function childAgent(ids: Identities, o: { node: string; criEndpoint: string; checkpointDir: string }): Promise<{ url: string; pid: number; logs: string[]; child: ChildProcess }> {
  // Built for each agent (≈ 1 s), into a directory that goes when the agent's scope ends.
  const dir = await mkdtemp(join(tmpdir(), 'vault-bench-agent-'))
  defer(() => rm(dir, { recursive: true, force: true }))
  const bundle = await buildAgent(join(dir, 'agent.mjs'))
  const agent: ChildProcess = spawn(process.execPath, [
    ...(process.env.BENCH_VAULT_NODE_FLAGS !== undefined ? process.env.BENCH_VAULT_NODE_FLAGS.split(' ').filter(Boolean) : NODE_FLAGS),
    bundle,
    '--listen=127.0.0.1:0',
    `--node-name=${o.node}`,
    `--runtime-endpoint=${o.criEndpoint}`,
    `--tls-cert=${ids.server.cert}`, `--tls-key=${ids.server.key}`, `--tls-ca=${ids.pki.ca.cert}`,
    `--allowed-clients=${GATEWAY_ID}`,
    `--grant-jwks-file=${ids.jwksFile}`,
    `--checkpoint-dir=${o.checkpointDir}`,
    '--shutdown-grace=5s',
  ], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } })
  defer(() => stopChild(agent))
  const logs: string[] = []
  const url = await agentListening(agent, logs)
  const mtls = mtlsClient(ids)
  try {
    const ready = await request(`${url}/readyz`, { dispatcher: mtls })
    const readyBody = await ready.body.text()
    if (ready.statusCode !== 200) throw new Error(`/readyz: ${ready.statusCode} ${readyBody}`)
  } finally {
    await mtls.close()
  }
  return { url, pid: agent.pid!, logs, child: agent }
}

/** CPU seconds (user + system) a process has used so far, from /proc (clock ticks of 1/100 s). */
async function cpuSecondsOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

// ---- vault_store_seconds & co ----------------------------------------------------------------

async function storeSection(work: string, ids: Identities, s3: S3Server, tools: EvidenceTools): Promise<void> {
  const { recipient, identity } = generateIdentity()
  const identityFile = join(work, 'investigator.txt')
  await writeFile(identityFile, identity + '\n', { mode: 0o600 })
  const { ta, archive, statement, file } = await realCheckpoint(work, ids)
  const size = archive.size
  const cfg = vaultConfig(s3, recipient)
  const storage = s3Client(cfg.s3!)
  const mtls = mtlsClient(ids)
  defer(() => mtls.close())
  const admin = new AwsClient({ accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, service: 's3', region: s3.region, retries: 0 })
  const drop = async (key: string) => {
    const r = await admin.fetch(`${s3.endpoint}/${s3.bucket}/${key}`, { method: 'DELETE' })
    await r.body?.cancel()
  }
  const head = async (key: string, want: number, what: string) => {
    const h = await storage.headObject(key)
    if (h?.size !== want) throw new Error(`${what}: the S3 server holds ${h?.size} bytes, ${want} were sent`)
    return h
  }

  // The agent that seals is its own process, as deployed (the checkpoint was taken in-process; the
  // archive and its record are on disk, and a fake CRI answers the agent's start-up calls).
  const cri = await startFakeCri(join(work, 'store-cri.sock'))
  defer(() => cri.stop())
  const agent = await childAgent(ids, { node: ta.node, criEndpoint: cri.endpoint, checkpointDir: ta.agent.store.dir })
  const ours = async (round: number): Promise<Run> => {
    const c0 = await cpuSecondsOf(agent.pid)
    const t0 = performance.now()
    const out = await store({ storage, cfg, cluster: `round-${round}`, target: POD, archive, statement, recipient, ids, node: ta.node, namespaces: [POD.namespace], agentUrl: agent.url, mtls })
    const wall = (performance.now() - t0) / 1000
    const cpu = (await cpuSecondsOf(agent.pid)) - c0
    if (out.type !== 'stored') throw new Error(`ours: ${JSON.stringify(out)}\n${agent.logs.join('').slice(-2000)}`)
    await head(out.key, out.sealed.size, 'ours')
    await drop(out.key)
    if (out.statementKey) await drop(out.statementKey)
    return { wall, cpu, out: out.sealed.size }
  }
  const theirs = async (round: number): Promise<Run> => {
    const key = `bench/pipeline-${round}.tar.zst.age`
    const what = 'zstd | age | curl -T -'
    const r = await curlPut(`${q(tools.zstd)} -3 -q -c ${q(file)} | ${q(tools.age)} -r ${recipient}`, await presignPut(s3, key), what)
    // curl's size_upload counts the chunked framing too: the sealed size is what the server holds.
    const held = (await storage.headObject(key))?.size ?? 0
    if (held > r.out || r.out - held > r.out / 100) throw new Error(`${what}: the S3 server holds ${held} bytes, curl sent ${r.out} (chunked)`)
    if (round === 0) {
      // Once: the streamed object reads back (one-part objects do on dbstore) and opens to the archive.
      const sum = await shell(`curl -sS --fail ${q(await storage.presignGet(key, 900))} | ${q(tools.age)} -d -i ${q(identityFile)} | ${q(tools.zstd)} -d -q | sha256sum`)
      if (!sum.stdout.startsWith(archive.sha256)) throw new Error(`${what}: the stored object does not open to the archive (${sum.stdout.slice(0, 80)})`)
    }
    await drop(key)
    return { ...r, out: held }
  }
  // radosgw's dbstore keeps a PutObject's data in one SQLite blob, at most 10^9 bytes (larger: "string
  // or blob too big", then 403 AccessDenied). A larger archive goes up as a multipart upload of the
  // fewest pieces that fit, one `-T piece <presigned UploadPart URL>` each, all in one curl process.
  const pieces = Math.ceil(size / SINGLE_PUT_MAX)
  let split: { path: string; md5: string }[] | undefined
  const plain = async (round: number): Promise<Run> => {
    const key = `bench/plain-${round}.tar`
    const what = pieces === 1 ? 'curl -T archive' : `curl -T archive in ${pieces} parts`
    split ??= await splitFile(file, pieces, join(work, 'pieces'))
    const t0 = performance.now()
    const uploadId = pieces > 1 ? await storage.createMultipartUpload(key) : undefined
    const urls = uploadId ? await Promise.all(split.map((_, i) => storage.presignUploadPart(key, uploadId, i + 1, 900))) : [await presignPut(s3, key)]
    const sh = await shell(`curl -sS -w '\\n%{http_code} %{size_upload}\\n' ${split.map((p, i) => `-T ${q(p.path)} ${q(urls[i]!)}`).join(' ')}`)
    const sent = checkCurl(sh, what, split.length)
    if (uploadId) {
      const held = await storage.listParts(key, uploadId)
      // A part's ETag is its MD5: the bytes arrived as they are on disk.
      if (held.length !== split.length || held.some((h, i) => h.etag.replaceAll('"', '') !== split![i]!.md5)) throw new Error(`${what}: the parts held are not the pieces sent: ${JSON.stringify(held)}`)
      await storage.completeMultipartUpload(key, uploadId, held)
    }
    const wall = (performance.now() - t0) / 1000
    const h = await head(key, size, what)
    if (!uploadId && h.etag.replaceAll('"', '') !== split[0]!.md5) throw new Error(`${what}: ETag ${h.etag}, MD5 of the archive ${split[0]!.md5}`)
    await drop(key)
    return { wall, cpu: sent.cpu, out: sent.out }
  }

  const runs: Record<string, Run[]> = { ours: [], theirs: [], plain: [] }
  const fns = { ours, theirs, plain }
  for (let round = 0; round < ROUNDS; round++) {
    const order = Object.entries(fns)
    if (round % 2) order.reverse()
    for (const [name, fn] of order) {
      const r = await fn(round)
      runs[name]!.push(r)
      note(`round ${round + 1} ${name}: ${r.wall.toFixed(2)} s wall, ${r.cpu.toFixed(2)} CPU-s, ${r.out} bytes sent`)
    }
  }
  const wall = (rs: Run[]) => median(rs.map((r) => r.wall))
  const perCpu = (rs: Run[]) => median(rs.map((r) => size / 1e6 / r.cpu))
  note(`archive ${size} bytes; seconds — ours ${fmt(runs.ours!.map((r) => r.wall))}; zstd|age|curl ${fmt(runs.theirs!.map((r) => r.wall))}; curl -T ${fmt(runs.plain!.map((r) => r.wall))}`)
  const perRound = (f: (o: Run, t: Run) => number) => spreadOf(runs.ours!.map((o, i) => f(o, runs.theirs![i]!)))
  emit('vault_store_seconds', wall(runs.ours!), 's', wall(runs.theirs!), perRound((o, t) => o.wall / t.wall))
  emit('vault_plain_upload_seconds', wall(runs.plain!), 's')
  emit('vault_compression_ratio', size / runs.ours![0]!.out, 'x', size / runs.theirs![0]!.out)
  emit('vault_seal_mb_per_cpu_s', perCpu(runs.ours!), 'MB/cpu-s', perCpu(runs.theirs!), perRound((o, t) => t.cpu / o.cpu))

  // Where ours goes: sealing alone (same code, null sink) against the PUTs.
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  await seal(file, [recipient], new Writable({ write: (_c, _e, cb) => cb() }))
  const c = process.cpuUsage(c0)
  note(`diagnostic: seal alone into a null sink ${secs(performance.now() - t0)} s (${((c.user + c.system) / 1e6).toFixed(1)} CPU-s)`)
  await ta.stop()
}

// ---- agent_rss_store_* -----------------------------------------------------------------------

async function rssSection(work: string, ids: Identities, s3: S3Server): Promise<void> {
  const { recipient } = generateIdentity()
  const cri = await startFakeCri(join(work, 'rss-cri.sock'))
  defer(() => cri.stop())
  const checkpointDir = join(work, 'rss-agent', 'checkpoints')
  await mkdir(checkpointDir, { recursive: true, mode: 0o700 })
  // An archive the agent did not write: no metadata, so its sha256 is unknown ('') to the gateway.
  const target = { namespace: 'bench', pod: 'rss', container: 'rss' }
  const name = archiveName(target, new Date())
  const bytes = Math.round(RSS_MB * MiB)
  let t0 = performance.now()
  await writeMixed(join(checkpointDir, name), bytes)
  note(`wrote a ${RSS_MB} MiB archive of mixed content in ${secs(performance.now() - t0)} s`)

  const node = 'bench-node'
  const child = await childAgent(ids, { node, criEndpoint: cri.endpoint, checkpointDir })
  const agent = child.child
  const { url, logs } = child
  const mtls = mtlsClient(ids)
  defer(() => mtls.close())
  await sleep(500)
  const idle = (await vmRssKiB(agent.pid!)).rss / 1024

  const sampler = sampleRss(agent.pid!)
  defer(() => sampler.stop())
  const cfg = vaultConfig(s3, recipient)
  const storage = s3Client(cfg.s3!)
  t0 = performance.now()
  const out = await store({ storage, cfg, cluster: 'rss', target, archive: { name, size: bytes, sha256: '' }, recipient, ids, node, namespaces: everyReading(name), agentUrl: url, mtls })
  const seconds = (performance.now() - t0) / 1000
  const { maxKiB: max, samples } = sampler.stop()
  if (out.type !== 'stored') throw new Error(`store: ${JSON.stringify(out)}\n${logs.join('').slice(-2000)}`)
  const h = await storage.headObject(out.key)
  if (h?.size !== out.sealed.size) throw new Error(`the S3 server holds ${h?.size} bytes, the agent sealed ${out.sealed.size}`)
  const after = await vmRssKiB(agent.pid!)
  note(`stored ${bytes} bytes as ${out.sealed.size} sealed (${out.parts} parts) in ${seconds.toFixed(1)} s (${(bytes / 1e6 / seconds).toFixed(0)} MB/s); ${samples} samples; VmHWM ${(after.hwm / 1024).toFixed(1)} MiB`)
  emit('agent_rss_store_idle', idle, 'MiB')
  emit('agent_rss_store_2gib', max / 1024, 'MiB', idle)
  emit('agent_rss_store_growth', max / 1024 - idle, 'MiB')
  await stopChild(agent)
}

// ---- main ----------------------------------------------------------------------------------

const started = performance.now()
const work = await mkdtemp(join(tmpdir(), 'vault-bench-'))
defer(() => rm(work, { recursive: true, force: true }))
let failed = 0
await scoped(async () => {
  const [ids, s3, tools] = await Promise.all([
    makeIdentities(join(work, 'ids')),
    startS3Server({ dir: work }).then((s) => (defer(() => s.stop()), s)),
    ensureAge(),
  ])
  note(`radosgw up (fetch ${s3.timings.fetchMs} ms, start ${s3.timings.startMs} ms); ${(await execFileP(tools.age, ['--version'])).stdout.trim()}, ${(await execFileP(tools.zstd, ['--version'])).stdout.trim()}; ${(await execFileP('curl', ['--version'])).stdout.split('\n')[0]}`)
  const sections: [string, () => Promise<void>][] = [
    ['store', () => storeSection(work, ids, s3, tools)],
    ['rss', () => rssSection(work, ids, s3)],
  ]
  for (const [key, run] of sections) {
    if (!ONLY.has(key)) continue
    const t0 = performance.now()
    try {
      await scoped(run)
      note(`${key} done in ${secs(performance.now() - t0)} s`)
    } catch (err) {
      failed++
      note(`${key} could not run: ${(err as Error).stack ?? err}`)
    }
  }
}).catch((err) => {
  failed++
  note(`could not start: ${(err as Error).stack ?? err}`)
})
// A signal or the watchdog may be tearing down (the parts fail under it): let it finish and exit.
if (aborted()) await aborted()
await rm(work, { recursive: true, force: true })
note(`finished in ${secs(performance.now() - started)} s${failed ? `; ${failed} part(s) could not run` : ''}`)
process.exit(failed ? 1 : 0)
