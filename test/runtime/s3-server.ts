/**
 * A real S3-compatible server for the vault tests: Ceph's S3 gateway, `radosgw` from Debian sid,
 * on its standalone `dbstore` backend (SQLite; no Ceph cluster, no monitors), on 127.0.0.1 with a
 * temp dir for its databases. Unlike s3rver it checks SigV4: a tampered presigned URL gets 403
 * SignatureDoesNotMatch, an expired one 403 AccessDenied ("The pre-signed URL has expired").
 *
 * The packages are fetched the way test/runtime/fetch.sh fetches the CRI runtime: a private apt
 * sources list, `apt-get download` of radosgw and its library closure, `dpkg -x` into a cache dir,
 * nothing system-wide. Sid's binaries need glibc ≥ 2.38, so they run through sid's unpacked
 * ld-linux with `--library-path` (radosgw does not re-execute itself).
 *
 * Known dbstore limits (20.2.4): an object completed from two or more parts reads back as its last
 * part repeated (its read path ignores the part a row belongs to); one-part uploads and plain PUTs
 * read back intact. The multipart control plane (create, upload part, list parts, complete, abort)
 * and signature checks are the real RGW code. Presigned PUTs must carry no Content-Type (RGW
 * refuses an unsigned one).
 *
 * @example
 * const s3 = await startS3Server()
 * try {
 *   const client = s3Client({ endpoint: s3.endpoint, bucket: s3.bucket, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey })
 * } finally {
 *   await s3.stop()
 * }
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { AwsClient } from 'aws4fetch'
import { freePort } from '../support/net.ts'
import { stopChild } from '../support/process.ts'

const execFileP = promisify(execFile)

export interface S3Server {
  /** `http://127.0.0.1:<port>` (path-style). */
  endpoint: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  /** A bucket created for this server, owned by the user above. */
  bucket: string
  /** How long this call spent fetching (0 once cached) and starting radosgw, in ms. */
  timings: { fetchMs: number; startMs: number }
  /** Stops radosgw and deletes its temp dir. Idempotent. */
  stop(): Promise<void>
}

export interface S3ServerOptions {
  /** Parent dir for the server's temp dir. Default `os.tmpdir()`. */
  dir?: string
  /** Default `evidence`. */
  bucket?: string
  log?: (line: string) => void
}

/** Bump when the cache layout changes: an old cache is then fetched again. */
const STAMP = '.complete-v1'
const SUITE = 'sid'

/** `$S3_SERVER_CACHE`, or `<XDG cache>/checkpoint-gateway/radosgw`. */
export function s3ServerCacheDir(): string {
  return process.env.S3_SERVER_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'checkpoint-gateway', 'radosgw')
}

let cached: Promise<string> | undefined

/**
 * Fetches radosgw (sid) and every library it needs into the cache dir, once per process; resolves
 * to that dir. Idempotent across processes: the work happens in a private temp dir that is renamed
 * into place when complete, so a concurrent fetch or a killed one never leaves a half cache.
 */
export function s3ServerCache(log: (line: string) => void = () => {}): Promise<string> {
  cached ??= fetchRadosgw(s3ServerCacheDir(), log).catch((err) => {
    cached = undefined
    throw err
  })
  return cached
}

async function fetchRadosgw(cache: string, log: (line: string) => void): Promise<string> {
  if (existsSync(join(cache, STAMP))) return cache
  const t0 = performance.now()
  const tmp = `${cache}.tmp-${process.pid}`
  const work = await mkdtemp(join(tmpdir(), 'cpgw-s3-fetch-'))
  try {
    await rm(tmp, { recursive: true, force: true })
    const debs = join(work, 'debs')
    for (const d of ['lists/partial', 'cache/archives/partial', 'debs']) await mkdir(join(work, d), { recursive: true })
    await writeFile(join(work, 'sources.list'), `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${SUITE} main\n`)
    const opts = [
      '-o', `Dir::Etc::SourceList=${join(work, 'sources.list')}`, '-o', 'Dir::Etc::SourceParts=/dev/null',
      '-o', `Dir::State::Lists=${join(work, 'lists')}`, '-o', 'Dir::State::status=/dev/null', '-o', `Dir::Cache=${join(work, 'cache')}`,
      '-o', 'Debug::NoLocking=1', '-o', 'APT::Sandbox::User=root', '-qq',
    ]
    const run = (cmd: string, args: string[], cwd?: string) => execFileP(cmd, args, { cwd, maxBuffer: 64 << 20, timeout: 300_000 })
    await run('apt-get', [...opts, 'update'])
    log(`s3 server: apt lists (${SUITE}) in ${Math.round(performance.now() - t0)} ms`)
    // The closure, not a fixed list: sid renames library packages (soname bumps) from month to month.
    const { stdout } = await run('apt-cache', [...opts, 'depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', 'radosgw'])
    const pkgs = [...new Set(stdout.split('\n').filter((l) => /^(lib[\w.+-]+|zlib1g|radosgw|ceph-common)$/.test(l) && !/python/.test(l)))]
    log(`s3 server: downloading ${pkgs.length} ${SUITE} packages`)
    await run('apt-get', [...opts, 'download', ...pkgs], debs)
    log(`s3 server: downloaded in ${Math.round(performance.now() - t0)} ms`)
    const root = join(tmp, 'root')
    await mkdir(root, { recursive: true })
    const queue = (await readdir(debs)).filter((f) => f.endsWith('.deb'))
    const unpack = async () => {
      for (let deb = queue.shift(); deb; deb = queue.shift()) await run('dpkg', ['-x', join(debs, deb), root])
    }
    await Promise.all([unpack(), unpack(), unpack(), unpack()])
    // Keep the two binaries and the libraries; the rest (docs, other Ceph tools) is ~100 MB of nothing.
    for (const d of ['usr/share', 'usr/sbin', 'usr/libexec', 'etc', 'var', 'sbin', 'bin']) await rm(join(root, d), { recursive: true, force: true })
    for (const b of await readdir(join(root, 'usr/bin'))) if (b !== 'radosgw' && b !== 'radosgw-admin') await rm(join(root, 'usr/bin', b), { force: true })
    const version = (await execFileP(loader(tmp), [...loaderArgs(tmp), join(root, 'usr/bin/radosgw'), '--version'])).stdout.trim()
    log(`s3 server: ${version}`)
    await writeFile(join(tmp, STAMP), `${version}\n`)
    // Another process may have finished first: then its cache stands and this one is dropped.
    if (!existsSync(join(cache, STAMP))) {
      await rm(cache, { recursive: true, force: true })
      await rename(tmp, cache).catch((err) => {
        if (!existsSync(join(cache, STAMP))) throw err
      })
    }
    log(`s3 server: fetched into ${cache} in ${Math.round(performance.now() - t0)} ms`)
    return cache
  } finally {
    await rm(work, { recursive: true, force: true })
    await rm(tmp, { recursive: true, force: true })
  }
}

const libDir = (cache: string) => join(cache, 'root/usr/lib/x86_64-linux-gnu')
const loader = (cache: string) => join(libDir(cache), 'ld-linux-x86-64.so.2')
const loaderArgs = (cache: string) => ['--library-path', `${libDir(cache)}:${join(libDir(cache), 'ceph')}`]

/**
 * Fetches (first run) and starts radosgw on a free 127.0.0.1 port with a fresh dbstore, creates a
 * user with random keys and a bucket. On any failure everything started is torn down before the
 * error is thrown.
 */
export async function startS3Server(opts: S3ServerOptions = {}): Promise<S3Server> {
  const log = opts.log ?? (() => {})
  const bucket = opts.bucket ?? 'evidence'
  const t0 = performance.now()
  const cache = await s3ServerCache(log)
  const fetchMs = Math.round(performance.now() - t0)
  const t1 = performance.now()

  const dir = await mkdtemp(join(opts.dir ?? tmpdir(), 'cpgw-s3-'))
  let child: ChildProcess | undefined
  let stopped: Promise<void> | undefined
  const stop = () => {
    stopped ??= (async () => {
      if (child) await stopChild(child)
      await rm(dir, { recursive: true, force: true, maxRetries: 3 })
    })()
    return stopped
  }

  try {
    await writeFile(join(dir, 'ceph.conf'), '')
    const common = [
      '-c', join(dir, 'ceph.conf'), '--no-mon-config',
      '--rgw-backend-store=dbstore', '--rgw-config-store=dbstore',
      `--dbstore-config-uri=file:${join(dir, 'config.db')}`, `--dbstore-db-dir=${dir}`,
      `--rgw-data=${dir}`, `--run-dir=${dir}`, `--admin-socket=${join(dir, 'asok')}`,
      `--plugin-dir=${join(libDir(cache), 'ceph')}`, `--log-file=${join(dir, 'radosgw.log')}`,
    ]
    const bin = (name: string) => [...loaderArgs(cache), join(cache, 'root/usr/bin', name)]
    const accessKeyId = `CPGW${randomBytes(8).toString('hex').toUpperCase()}`
    const secretAccessKey = randomBytes(30).toString('base64url')
    await execFileP(loader(cache), [...bin('radosgw-admin'), ...common, 'user', 'create', '--uid=vault', '--display-name=vault',
      `--access-key=${accessKeyId}`, `--secret=${secretAccessKey}`], { timeout: 60_000, maxBuffer: 16 << 20 })

    const port = await freePort()
    const endpoint = `http://127.0.0.1:${port}`
    const out = createWriteStream(join(dir, 'radosgw.out'))
    child = spawn(loader(cache), [...bin('radosgw'), ...common, '-f', '--rgw-thread-pool-size=32', `--rgw-frontends=beast endpoint=127.0.0.1:${port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout!.pipe(out, { end: false })
    child.stderr!.pipe(out, { end: false })
    child.once('exit', () => setImmediate(() => out.end()))
    const proc = child
    await waitUntil(async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`radosgw exited (${proc.exitCode ?? proc.signalCode})\n${await tail(dir)}`)
      const res = await fetch(endpoint).catch(() => undefined)
      await res?.body?.cancel()
      return res !== undefined
    }, 20_000, async () => `radosgw did not answer on ${endpoint}\n${await tail(dir)}`)

    const admin = new AwsClient({ accessKeyId, secretAccessKey, service: 's3', region: 'us-east-1', retries: 0 })
    const made = await admin.fetch(`${endpoint}/${bucket}`, { method: 'PUT' })
    if (!made.ok) throw new Error(`create bucket ${bucket}: ${made.status} ${await made.text()}`)
    await made.body?.cancel()
    const startMs = Math.round(performance.now() - t1)
    log(`s3 server: radosgw on ${endpoint}, bucket ${bucket} (fetch ${fetchMs} ms, start ${startMs} ms)`)
    return { endpoint, region: 'us-east-1', accessKeyId, secretAccessKey, bucket, timings: { fetchMs, startMs }, stop }
  } catch (err) {
    await stop().catch((e) => log(`s3 server: teardown after failed start: ${e}`))
    throw err
  }
}

async function waitUntil(probe: () => Promise<boolean>, ms: number, explain: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await probe()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(await explain())
}

async function tail(dir: string): Promise<string> {
  const parts: string[] = []
  for (const f of ['radosgw.out', 'radosgw.log']) {
    const text = await readFile(join(dir, f), 'utf8').catch(() => '')
    if (text) parts.push(`--- tail of ${f} ---\n${text.slice(-3000)}`)
  }
  return parts.join('\n')
}
