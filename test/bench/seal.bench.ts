/**
 * Sealing benchmarks (agent/seal/). Each figure is one JSON line on stdout — `{"name","value","unit"}`,
 * plus `"baseline"` and `"ratio"` (value / baseline) when a baseline is measured in the same run.
 * Figures are not assertions: the process exits 0 whatever they are, and non-zero only when a part
 * of the bench could not run. Progress goes to stderr as `# …` lines.
 *
 *   node_modules/.bin/node test/bench/seal.bench.ts
 *
 * The input is one file of "memory dump" content — a third each of log-like text, random bytes and
 * zero pages, in blocks of 37–237 KiB — read from the page cache (written just before). Baselines
 * are what an operator would run by hand on the same file, with Debian's tools
 * (test/runtime/fetch-evidence.sh: sid's age 1.3.2, the system's zstd), interleaved with ours.
 *
 * - `seal_throughput` (MB/s, 10^6 bytes of plaintext per wall second): `seal()` (zstd -3, then age
 *   to one X25519 recipient) into a null sink, against `zstd -3 -c file | age -r R > /dev/null`.
 * - `seal_mb_per_cpu_s` (MB per CPU-second, "per core"): the same runs, divided by the CPU time
 *   of our process (all threads: zstd runs on libuv's pool) and of the shell pipeline's processes.
 * - `seal_compression_ratio` (plaintext / sealed bytes): ours against zstd -3 | age.
 * - `age_encrypt_throughput`, `age_encrypt_mb_per_cpu_s`: age alone (no compression), our
 *   `ageEncrypt` against `age -r R < file > /dev/null`.
 * - `seal_rss_peak`, `seal_rss_growth` (MiB): a fresh Node process that only seals the file;
 *   its RSS before sealing (the baseline), the largest RSS sampled every 20 ms while sealing, and
 *   the difference.
 *
 * Environment: BENCH_SEAL_MB (256), BENCH_SEAL_ROUNDS (5; plus one warm-up of each),
 * BENCH_TIMEOUT_S (600).
 */
import { execFile, spawn } from 'node:child_process'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { ageEncrypt, generateIdentity } from '../../agent/seal/age.ts'
import { seal } from '../../agent/seal/seal.ts'
import { ensureAge } from '../runtime/evidence-tools.ts'
import { writeMixed } from './content.ts'
import { emit, envNumber, median, noter, round, spreadOf } from './figures.ts'

const execFileP = promisify(execFile)
const SELF = fileURLToPath(import.meta.url)
const MiB = 1 << 20


// ---- the RSS child: seal the file given on the command line, report RSS -------------------------

if (process.argv[2] === '--rss-child') {
  const [, , , file, recipient] = process.argv
  await new Promise((r) => setTimeout(r, 200))
  const before = process.memoryUsage.rss()
  let peak = before
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20)
  await seal(file!, [recipient!], nullSink())
  clearInterval(timer)
  peak = Math.max(peak, process.memoryUsage.rss())
  process.stdout.write(JSON.stringify({ before, peak }) + '\n')
  process.exit(0)
}

const SIZE_MB = envNumber('BENCH_SEAL_MB', 256)
const ROUNDS = Math.round(envNumber('BENCH_SEAL_ROUNDS', 5))
const TIMEOUT_S = envNumber('BENCH_TIMEOUT_S', 600)

// ---- output --------------------------------------------------------------------------------

const note = noter('seal.bench')

function nullSink(): Writable {
  return new Writable({ write: (_chunk, _enc, cb) => cb() })
}

// ---- runs ----------------------------------------------------------------------------------

interface Run {
  wall: number // s
  cpu: number // s
  out: number // bytes
}

async function ours(fn: () => Promise<number>): Promise<Run> {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  const out = await fn()
  const wall = (performance.now() - t0) / 1000
  const c = process.cpuUsage(c0)
  return { wall, cpu: (c.user + c.system) / 1e6, out }
}

/** Runs a shell pipeline; CPU is its processes' (bash `times`, children line), wall is ours. */
async function shell(script: string): Promise<Run> {
  const t0 = performance.now()
  const { stdout } = await execFileP('bash', ['-c', `${script}; times`], { maxBuffer: 1 << 20 })
  const wall = (performance.now() - t0) / 1000
  const lines = stdout.trim().split('\n')
  const secs = (s: string) => {
    const m = /^(\d+)m([\d.]+)s$/.exec(s)
    if (!m) throw new Error(`cannot read times output ${JSON.stringify(s)}`)
    return Number(m[1]) * 60 + Number(m[2])
  }
  const [user, sys] = lines.at(-1)!.trim().split(/\s+/)
  return { wall, cpu: secs(user!) + secs(sys!), out: Number(lines[0]) }
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

async function main(): Promise<void> {
  const watchdog = setTimeout(() => {
    note(`still running after ${TIMEOUT_S}s: giving up`)
    void cleanup().finally(() => process.exit(1))
  }, TIMEOUT_S * 1000)
  watchdog.unref()
  const tools = await ensureAge()
  note(`age ${(await execFileP(tools.age, ['--version'])).stdout.trim()}, ${(await execFileP(tools.zstd, ['--version'])).stdout.trim()}`)
  const { recipient } = generateIdentity()

  dir = await mkdtemp(join(tmpdir(), 'seal-bench-'))
  const file = join(dir, 'archive.tar')
  const size = SIZE_MB * MiB
  let t0 = performance.now()
  await writeMixed(file, size)
  note(`wrote ${SIZE_MB} MiB of mixed content in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  await readFile(file).then(() => undefined) // into the page cache (24 GiB machines: it stays)

  const countingSink = () => {
    let n = 0
    const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => ((n += chunk.length), cb()) })
    return { sink, count: () => n }
  }
  const sealOurs = () =>
    ours(async () => {
      const r = await seal(file, [recipient], nullSink())
      return r.sealed.size
    })
  const sealTheirs = () => shell(`${q(tools.zstd)} -3 -q -c ${q(file)} | ${q(tools.age)} -r ${recipient} | wc -c`)
  const ageOurs = () =>
    ours(async () => {
      const { sink, count } = countingSink()
      await pipeline(createReadStream(file, { highWaterMark: 256 * 1024 }), (src: AsyncIterable<Buffer>) => ageEncrypt(src, [recipient]), sink)
      return count()
    })
  const ageTheirs = () => shell(`${q(tools.age)} -r ${recipient} < ${q(file)} | wc -c`)

  const runs: Record<string, Run[]> = { sealOurs: [], sealTheirs: [], ageOurs: [], ageTheirs: [] }
  const fns = { sealOurs, sealTheirs, ageOurs, ageTheirs }
  for (let round = 0; round <= ROUNDS; round++) {
    for (const [name, fn] of Object.entries(fns)) {
      const r = await fn()
      if (round > 0) runs[name]!.push(r)
      note(`${round === 0 ? 'warm-up' : `round ${round}`} ${name}: ${(size / 1e6 / r.wall).toFixed(1)} MB/s wall, ${(size / 1e6 / r.cpu).toFixed(1)} MB/cpu-s, ${r.out} bytes out`)
    }
  }
  const mbs = (rs: Run[]) => median(rs.map((r) => size / 1e6 / r.wall))
  const perCpu = (rs: Run[]) => median(rs.map((r) => size / 1e6 / r.cpu))
  const perRound = (ours: Run[], theirs: Run[], f: (o: Run, t: Run) => number) => spreadOf(ours.map((o, i) => f(o, theirs[i]!)))
  emit('seal_throughput', mbs(runs.sealOurs!), 'MB/s', mbs(runs.sealTheirs!), perRound(runs.sealOurs!, runs.sealTheirs!, (o, t) => t.wall / o.wall))
  emit('seal_mb_per_cpu_s', perCpu(runs.sealOurs!), 'MB/cpu-s', perCpu(runs.sealTheirs!), perRound(runs.sealOurs!, runs.sealTheirs!, (o, t) => t.cpu / o.cpu))
  emit('seal_compression_ratio', size / runs.sealOurs![0]!.out, 'x', size / runs.sealTheirs![0]!.out)
  emit('age_encrypt_throughput', mbs(runs.ageOurs!), 'MB/s', mbs(runs.ageTheirs!))
  emit('age_encrypt_mb_per_cpu_s', perCpu(runs.ageOurs!), 'MB/cpu-s', perCpu(runs.ageTheirs!))
  note('npm age-encryption (≈ 40 MB/s per FACTS) is not a dependency here: not measured')

  t0 = performance.now()
  const child = spawn(process.execPath, [SELF, '--rss-child', file, recipient], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d))
  const code = await new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)))
  if (code !== 0) throw new Error(`the RSS child exited ${code}`)
  const { before, peak } = JSON.parse(out) as { before: number; peak: number }
  note(`RSS child sealed ${SIZE_MB} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  emit('seal_rss_peak', peak / MiB, 'MiB', before / MiB)
  emit('seal_rss_growth', (peak - before) / MiB, 'MiB')
  clearTimeout(watchdog)
}

let dir: string | undefined
async function cleanup(): Promise<void> {
  if (dir) await rm(dir, { recursive: true, force: true })
  dir = undefined
}
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.on(sig, () => void cleanup().finally(() => process.exit(code)))
}

try {
  await main()
  await cleanup()
} catch (err) {
  note(`failed: ${err instanceof Error ? err.stack : err}`)
  await cleanup()
  process.exit(1)
}
