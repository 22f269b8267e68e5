/**
 * nginx as a TLS reverse proxy with a client certificate: the baseline for archive downloads
 * through the gateway. Plain HTTP (or HTTPS, `front`) on 127.0.0.1 in front, `proxy_pass https://…` to an agent
 * behind, presenting the gateway's client certificate and verifying the agent's certificate
 * against the agent CA, unbuffered (`proxy_buffering off`) as a streaming proxy should be.
 * Runs the nginx binary `test/bench/nginx.ts` fetches (bookworm's package, cached) through its runNginx.
 *
 * @example
 * const px = await startNginxProxy({ upstream: agent.url, cert, key, ca, serverName: 'localhost', taskset: '0' })
 * try { // curl http://127.0.0.1:<port>/checkpoints/<name>
 * } finally { await px.stop() }
 */
import { freePort } from '../support/net.ts'
import { runNginx } from './nginx.ts'

export interface NginxProxyOptions {
  /** `https://127.0.0.1:<port>` of the upstream (the agent). */
  upstream: string
  /** Files: client certificate and key presented upstream, CA that signs the upstream's certificate. */
  cert: string
  key: string
  ca: string
  /** The name the upstream certificate must carry (nginx checks DNS names, not IP SANs). */
  serverName: string
  /** Files: serve HTTPS in front with this certificate and key (a TLS front) instead of plain HTTP. */
  front?: { cert: string; key: string }
  /** CPU list for `taskset -c` (nginx's single worker inherits it). */
  taskset?: string
}

export interface NginxProxy {
  url: string
  /** The master's pid; the worker is its child. */
  pid: number
  stop(): Promise<void>
}

export async function startNginxProxy(o: NginxProxyOptions): Promise<NginxProxy> {
  const port = await freePort()
  const { pid, stop } = await runNginx({
    tmpPrefix: 'nginx-proxy-',
    port,
    workerConnections: 256,
    taskset: o.taskset,
    what: 'nginx proxy',
    http: [
      '  upstream agent {',
      `    server ${new URL(o.upstream).host};`,
      '    keepalive 16;',
      '  }',
      '  server {',
      `    listen 127.0.0.1:${port}${o.front ? ' ssl' : ''};`,
      ...(o.front ? [`    ssl_certificate ${o.front.cert};`, `    ssl_certificate_key ${o.front.key};`, '    ssl_protocols TLSv1.2 TLSv1.3;'] : []),
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
    ],
  })
  return { url: `${o.front ? 'https' : 'http'}://127.0.0.1:${port}`, pid, stop }
}
