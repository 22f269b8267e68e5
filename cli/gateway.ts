/**
 * The CLI's view of the gateway: its URL and the caller's token from flags or the environment,
 * requests with the token, and problem+json answers turned into errors with their stable code.
 */
import { readFile } from 'node:fs/promises'

export interface GatewayOptions {
  /** Base URL, e.g. https://checkpoint.example.net (CHECKPOINT_GATEWAY). */
  url: string
  /** The caller's bearer token (CHECKPOINT_TOKEN, or the file CHECKPOINT_TOKEN_FILE). */
  token: string
}

/** A failure the CLI reports: the gateway's problem code (or a local one) and its detail. */
export class CliError extends Error {
  readonly code: string
  readonly status: number | undefined
  readonly details: Record<string, unknown>
  constructor(code: string, message: string, status?: number, details: Record<string, unknown> = {}) {
    super(message)
    this.name = 'CliError'
    this.code = code
    this.status = status
    this.details = details
  }
}

export async function gatewayOptions(flags: { gateway?: string; 'token-file'?: string }, env: NodeJS.ProcessEnv): Promise<GatewayOptions> {
  const url = (flags.gateway ?? env.CHECKPOINT_GATEWAY ?? '').replace(/\/+$/, '')
  if (!/^https?:\/\/[^/]/.test(url)) throw new CliError('usage', 'the gateway URL is needed: --gateway=https://… or CHECKPOINT_GATEWAY')
  const file = flags['token-file'] ?? env.CHECKPOINT_TOKEN_FILE
  const token = file ? (await readFile(file, 'utf8')).trim() : (env.CHECKPOINT_TOKEN ?? '').trim()
  if (!token) throw new CliError('usage', 'a token is needed: CHECKPOINT_TOKEN, CHECKPOINT_TOKEN_FILE or --token-file')
  return { url, token }
}

export async function call(g: GatewayOptions, path: string, init: RequestInit = {}): Promise<Response> {
  let res: Response
  try {
    res = await fetch(g.url + path, { ...init, headers: { authorization: `Bearer ${g.token}`, ...(init.headers as Record<string, string> | undefined) } })
  } catch (err) {
    throw new CliError('unreachable', `the gateway at ${g.url} did not answer: ${(err as Error).message}`)
  }
  if (res.status >= 400) throw await problem(res)
  return res
}

async function problem(res: Response): Promise<CliError> {
  const text = await res.text().catch(() => '')
  try {
    const p = JSON.parse(text) as { code?: string; detail?: string; [k: string]: unknown }
    const { code, detail, type: _t, title: _ti, status: _s, ...rest } = p
    return new CliError(typeof code === 'string' ? code : `http_${res.status}`, typeof detail === 'string' ? detail : `HTTP ${res.status}`, res.status, rest)
  } catch {
    return new CliError(`http_${res.status}`, `HTTP ${res.status}: ${text.slice(0, 200)}`, res.status)
  }
}

/** Where a command writes: results on stdout, progress and errors on stderr (`errTty`: stderr is a terminal). */
export interface Io {
  out(line: string): void
  err(line: string): void
  /** Raw stderr, for a status line redrawn in place; with `errTty`. */
  errWrite?(s: string): void
  errTty?: boolean
}

export type Flags = Record<string, string | boolean | undefined>
