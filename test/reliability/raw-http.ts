/**
 * The abuse suite's HTTP client: node:http with the path sent byte for byte (fetch would normalize
 * `..` and re-encode), and every answer sorted into what the oracle needs — a response, a reset
 * connection, or no answer at all — plus whether an error response is a proper problem body.
 */
import { Agent, request, type IncomingHttpHeaders } from 'node:http'
import { ERROR_STATUS, PROBLEM_CONTENT_TYPE } from '../../shared/errors.ts'

export interface Exchange {
  method: string
  /** Sent as is: percent-encoding, dot segments and latin1 bytes survive. */
  path: string
  headers?: Record<string, string>
  body?: string | Buffer
  /** Send the body chunked instead of with a content-length. */
  chunked?: boolean
}

export type Answer =
  | { kind: 'response'; status: number; headers: IncomingHttpHeaders; body: Buffer }
  /** The connection was reset or closed without a response. */
  | { kind: 'reset'; error: string }
  /** No response within the deadline. */
  | { kind: 'frozen' }

export interface Client {
  send(x: Exchange): Promise<Answer>
  close(): void
}

const DEADLINE_MS = 15_000

export function rawClient(base: string): Client {
  const u = new URL(base)
  const agent = new Agent({ keepAlive: true, maxSockets: 2 })

  function once(x: Exchange, fresh: boolean): Promise<Answer> {
    return new Promise((resolve) => {
      const headers: Record<string, string> = { ...x.headers }
      if (x.body !== undefined) {
        if (x.chunked) headers['transfer-encoding'] = 'chunked'
        else headers['content-length'] = String(Buffer.byteLength(x.body))
      }
      let settled = false
      const done = (a: Answer) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve(a)
      }
      const req = request({ host: u.hostname, port: Number(u.port), method: x.method, path: x.path, headers, agent: fresh ? false : agent }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => done({ kind: 'response', status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
        res.on('error', (err) => done({ kind: 'reset', error: String(err) }))
        res.on('aborted', () => done({ kind: 'reset', error: 'response aborted' }))
      })
      const timer = setTimeout(() => {
        done({ kind: 'frozen' })
        req.destroy()
      }, DEADLINE_MS)
      req.on('error', (err) => done({ kind: 'reset', error: `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}` }))
      if (x.body !== undefined) req.write(x.body)
      req.end()
    })
  }

  return {
    /**
     * A reset on a reused keep-alive socket can be the socket's own race with the server's idle
     * close, so a reset is retried once on a fresh connection: a real crash resets both.
     */
    async send(x) {
      const a = await once(x, false)
      return a.kind === 'reset' ? once(x, true) : a
    },
    close: () => agent.destroy(),
  }
}

export interface ProblemCheck {
  /** A problem+json body whose `code` is one of ours and carries this status. */
  ok: boolean
  code?: string
  why?: string
}

/** Is an error response a proper problem body with a stable code matching its status? */
export function checkProblem(a: Extract<Answer, { kind: 'response' }>): ProblemCheck {
  const type = String(a.headers['content-type'] ?? '')
  if (!type.startsWith(PROBLEM_CONTENT_TYPE)) return { ok: false, why: `content-type ${JSON.stringify(type)}` }
  let body: { code?: unknown; status?: unknown }
  try {
    body = JSON.parse(a.body.toString('utf8')) as typeof body
  } catch {
    return { ok: false, why: 'body is not JSON' }
  }
  const code = body.code
  if (typeof code !== 'string' || !Object.hasOwn(ERROR_STATUS, code)) return { ok: false, why: `code ${JSON.stringify(code)}` }
  if (ERROR_STATUS[code as keyof typeof ERROR_STATUS] !== a.status || body.status !== a.status) return { ok: false, code, why: `status ${a.status} for ${code}` }
  return { ok: true, code }
}
