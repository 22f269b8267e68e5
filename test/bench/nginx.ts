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
import { connect, createServer } from 'node:net'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

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

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/** Starts nginx serving `root` over TLS on 127.0.0.1, in the foreground (`daemon off`). */
export async function startNginxTls(o: NginxTlsOptions): Promise<NginxTls> {
  const bin = await nginxBinary()
  const port = o.port || (await freePort())
  const prefix = await mkdtemp(join(tmpdir(), 'nginx-'))
  const conf = join(prefix, 'nginx.conf')
  const errorLog = join(prefix, 'error.log')
  // Compiled-in paths (/var/lib/nginx/*, /run/nginx.pid) do not exist here: every path nginx
  // writes is set under the prefix. As root, workers would run as `nobody` and could not read a
  // 0600 archive in a 0700 directory, so they stay root.
  const asRoot = process.getuid?.() === 0
  await writeFile(conf, [
    ...(asRoot ? ['user root;'] : []),
    'worker_processes 1;',
    `pid ${join(prefix, 'nginx.pid')};`,
    `error_log ${errorLog} warn;`,
    'events { worker_connections 64; }',
    'http {',
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(prefix, t)};`),
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
    '}',
    '',
  ].join('\n'))
  const child = spawn(bin, ['-p', prefix, '-c', conf, '-e', errorLog, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let stopped: Promise<void> | undefined
  const stop = () => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
        await exited
        clearTimeout(timer)
      }
      await rm(prefix, { recursive: true, force: true })
    })()
    return stopped
  }
  const deadline = Date.now() + 10_000
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = await readFile(errorLog, 'utf8').catch(() => '')
      await stop()
      throw new Error(`nginx did not start on 127.0.0.1:${port} (exit ${child.exitCode})\n${stderr}${log}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return { url: `https://127.0.0.1:${port}`, pid: child.pid!, stop }
}
