/**
 * nginx as a TLS file server on loopback: the baseline the agent's archive download is measured
 * against. nginx is not installed on these machines, so Debian bookworm's `nginx` package is
 * fetched the way `test/runtime/fetch.sh` fetches the runtime (a private apt sources list,
 * `apt-get download`, `dpkg -x` into a cache dir) without touching the system's packages.
 *
 * Only the `nginx` package is unpacked: `nginx-common` holds configuration, mime types and
 * scripts, and the config written here needs none of them. The binary's libraries (libc6,
 * libcrypt1, libpcre2-8-0, libssl3, zlib1g) are part of a Debian 12 base system; `ldd` is checked
 * after unpacking so a missing one fails with its name.
 *
 * @example
 * const nginx = await startNginxTls({ root: dir, cert, key, ca, port: 0 })
 * try {
 *   // curl --cacert … --cert … --key … ${nginx.url}/file
 * } finally {
 *   await nginx.stop()
 * }
 */
import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { accepts, freePort } from '../support/net.ts'
import { stopChild } from '../support/process.ts'

const execFileP = promisify(execFile)
const STAMP = '.complete-v1'

export interface NginxTlsOptions {
  /** Directory served at `/`. */
  root: string
  /** PEM server certificate chain and key. */
  cert: string
  key: string
  /** When given, clients must present a certificate signed by this CA (as the agent requires). */
  ca?: string
  /** Port on 127.0.0.1; 0 or absent picks a free one. */
  port?: number
}

export interface NginxTls {
  /** `https://127.0.0.1:<port>` */
  url: string
  /** The master process; its workers are its children. */
  pid: number
  /** Stops nginx (SIGTERM, then SIGKILL after 5 s) and removes its temp dir. Idempotent. */
  stop(): Promise<void>
}

/** The cache dir that holds the unpacked package; `NGINX_CACHE` overrides it. */
function cacheDir(): string {
  const base = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache')
  return process.env.NGINX_CACHE ?? join(base, 'checkpoint-gateway', 'nginx')
}

let fetched: Promise<string> | undefined

/** Fetches and unpacks bookworm's nginx once; resolves to the binary's path. */
export function nginxBinary(): Promise<string> {
  fetched ??= fetchNginx()
  return fetched
}

async function fetchNginx(): Promise<string> {
  const cache = cacheDir()
  const bin = join(cache, 'usr', 'sbin', 'nginx')
  if (existsSync(join(cache, STAMP))) return bin
  const work = await mkdtemp(join(tmpdir(), 'nginx-fetch-'))
  try {
    const lists = join(work, 'lists')
    const debs = join(work, 'debs')
    for (const d of [join(lists, 'partial'), join(work, 'cache', 'archives', 'partial'), debs]) await mkdir(d, { recursive: true })
    const sources = join(work, 'sources.list')
    await writeFile(sources, 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main\n')
    const opts = [
      '-o', `Dir::Etc::SourceList=${sources}`, '-o', 'Dir::Etc::SourceParts=/dev/null',
      '-o', `Dir::State::Lists=${lists}`, '-o', 'Dir::State::status=/dev/null', '-o', `Dir::Cache=${join(work, 'cache')}`,
      '-o', 'Debug::NoLocking=1', '-o', 'APT::Sandbox::User=root', '-qq',
    ]
    await execFileP('apt-get', [...opts, 'update'], { timeout: 120_000 })
    await execFileP('apt-get', [...opts, 'download', 'nginx'], { cwd: debs, timeout: 120_000 })
    const tmp = `${cache}.tmp`
    await rm(tmp, { recursive: true, force: true })
    await mkdir(tmp, { recursive: true })
    for (const deb of await readdir(debs)) await execFileP('dpkg', ['-x', join(debs, deb), tmp])
    const { stdout } = await execFileP('ldd', [join(tmp, 'usr', 'sbin', 'nginx')])
    const missing = stdout.split('\n').filter((l) => l.includes('not found'))
    if (missing.length) throw new Error(`bookworm nginx needs libraries this machine lacks:\n${missing.join('\n')}`)
    await writeFile(join(tmp, STAMP), '')
    await rm(cache, { recursive: true, force: true })
    await mkdir(join(cache, '..'), { recursive: true })
    await rename(tmp, cache)
    return bin
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

export interface NginxRunOptions {
  /** Prefix of the temp dir (mkdtemp) that holds the config, logs, pid file and temp paths. */
  tmpPrefix: string
  /** Port on 127.0.0.1 the config listens on; startup waits until it accepts. */
  port: number
  /** `events { worker_connections … }` */
  workerConnections: number
  /** The lines inside `http { … }` after the common ones (access log off, temp paths under the prefix). */
  http: string[]
  /** CPU list for `taskset -c` (nginx's single worker inherits it). */
  taskset?: string
  /** For the error when it does not start, e.g. `nginx proxy`. */
  what: string
}

/**
 * Runs bookworm's nginx in the foreground (`daemon off`) with one worker and the config `o.http`
 * completes, under a fresh temp prefix; resolves once 127.0.0.1:`o.port` accepts. `stop()`:
 * SIGTERM, SIGKILL after 5 s, then the prefix is removed; idempotent.
 */
export async function runNginx(o: NginxRunOptions): Promise<{ pid: number; stop(): Promise<void> }> {
  const bin = await nginxBinary()
  const prefix = await mkdtemp(join(tmpdir(), o.tmpPrefix))
  const conf = join(prefix, 'nginx.conf')
  const errorLog = join(prefix, 'error.log')
  // Compiled-in paths (/var/lib/nginx/*, /run/nginx.pid) do not exist here: every path nginx
  // writes is set under the prefix. As root, workers would run as `nobody` and could not read a
  // 0600 archive in a 0700 directory, so they stay root.
  await writeFile(conf, [
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
    'worker_processes 1;',
    `pid ${join(prefix, 'nginx.pid')};`,
    `error_log ${errorLog} warn;`,
    `events { worker_connections ${o.workerConnections}; }`,
    'http {',
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(prefix, t)};`),
    ...o.http,
    '}',
    '',
  ].join('\n'))
  const args = ['-p', prefix, '-c', conf, '-e', errorLog, '-g', 'daemon off;']
  // `taskset` execs nginx, so the child's pid is nginx's master.
  const child = o.taskset
    ? spawn('taskset', ['-c', o.taskset, bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  let stopped: Promise<void> | undefined
  const stop = () => {
    stopped ??= (async () => {
      await stopChild(child)
      await rm(prefix, { recursive: true, force: true })
    })()
    return stopped
  }
  const deadline = Date.now() + 10_000
  while (!(await accepts(o.port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = await readFile(errorLog, 'utf8').catch(() => '')
      await stop()
      throw new Error(`${o.what} did not start on 127.0.0.1:${o.port} (exit ${child.exitCode})\n${stderr}${log}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return { pid: child.pid!, stop }
}

/** Starts nginx serving `root` over TLS on 127.0.0.1, in the foreground (`daemon off`). */
export async function startNginxTls(o: NginxTlsOptions): Promise<NginxTls> {
  const port = o.port || (await freePort())
  const { pid, stop } = await runNginx({
    tmpPrefix: 'nginx-',
    port,
    workerConnections: 64,
    what: 'nginx',
    http: [
      '  default_type application/octet-stream;',
      '  sendfile on;',
      '  server {',
      `    listen 127.0.0.1:${port} ssl;`,
      `    ssl_certificate ${o.cert};`,
      `    ssl_certificate_key ${o.key};`,
      ...(o.ca ? [`    ssl_client_certificate ${o.ca};`, '    ssl_verify_client on;'] : []),
      '    ssl_protocols TLSv1.2 TLSv1.3;',
      `    root ${o.root};`,
      '    location / { }',
      '  }',
    ],
  })
  return { url: `https://127.0.0.1:${port}`, pid, stop }
}
