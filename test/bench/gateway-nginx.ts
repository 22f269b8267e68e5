/**
 * nginx as a TLS reverse proxy with a client certificate: the baseline for archive downloads
 * through the gateway. Plain HTTP on 127.0.0.1 in front, `proxy_pass https://…` to an agent
 * behind, presenting the gateway's client certificate and verifying the agent's certificate
 * against the agent CA, unbuffered (`proxy_buffering off`) as a streaming proxy should be.
 * Uses the nginx binary `test/bench/nginx.ts` fetches (bookworm's package, cached).
 *
 * @example
 * const px = await startNginxProxy({ upstream: agent.url, cert, key, ca, serverName: 'localhost', taskset: '0' })
 * try { // curl http://127.0.0.1:<port>/checkpoints/<name>
 * } finally { await px.stop() }
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nginxBinary } from './nginx.ts'

export interface NginxProxyOptions {
  /** `https://127.0.0.1:<port>` of the upstream (the agent). */
  upstream: string
  /** Files: client certificate and key presented upstream, CA that signs the upstream's certificate. */
  cert: string
  key: string
  ca: string
  /** The name the upstream certificate must carry (nginx checks DNS names, not IP SANs). */
  serverName: string
  /** CPU list for `taskset -c` (nginx's single worker inherits it). */
  taskset?: string
}

export interface NginxProxy {
  url: string
  /** The master's pid; the worker is its child. */
  pid: number
  stop(): Promise<void>
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

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
  })

export async function startNginxProxy(o: NginxProxyOptions): Promise<NginxProxy> {
  const bin = await nginxBinary()
  const port = await freePort()
  const prefix = await mkdtemp(join(tmpdir(), 'nginx-proxy-'))
  const conf = join(prefix, 'nginx.conf')
  const errorLog = join(prefix, 'error.log')
  await writeFile(conf, [
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
    'worker_processes 1;',
    `pid ${join(prefix, 'nginx.pid')};`,
    `error_log ${errorLog} warn;`,
    'events { worker_connections 256; }',
    'http {',
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(prefix, t)};`),
    '  upstream agent {',
    `    server ${new URL(o.upstream).host};`,
    '    keepalive 16;',
    '  }',
    '  server {',
    `    listen 127.0.0.1:${port};`,
    '    location / {',
    '      proxy_pass https://agent;',
    '      proxy_http_version 1.1;',
    '      proxy_set_header Connection "";',
    '      proxy_buffering off;',
    '      proxy_request_buffering off;',
    '      proxy_read_timeout 120s;',
    `      proxy_ssl_certificate ${o.cert};`,
    `      proxy_ssl_certificate_key ${o.key};`,
    `      proxy_ssl_trusted_certificate ${o.ca};`,
    '      proxy_ssl_verify on;',
    `      proxy_ssl_name ${o.serverName};`,
    '      proxy_ssl_server_name on;',
    '      proxy_ssl_session_reuse on;',
    '      proxy_ssl_protocols TLSv1.2 TLSv1.3;',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n'))
  const args = ['-p', prefix, '-c', conf, '-e', errorLog, '-g', 'daemon off;']
  const child = o.taskset ? spawn('taskset', ['-c', o.taskset, bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()))
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
      throw new Error(`nginx proxy did not start on 127.0.0.1:${port} (exit ${child.exitCode})\n${stderr}${log}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  // `taskset` execs nginx, so the child's pid is nginx's master.
  return { url: `http://127.0.0.1:${port}`, pid: child.pid!, stop }
}
