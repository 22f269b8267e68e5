/**
 * The CLI's view of the gateway: its URL and the caller's token from flags or the environment,
 * requests with the token, and problem+json answers turned into errors with their stable code.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'

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

/**
 * Where the gateway and the token come from, first found wins: flags (`--gateway`, `--token-file`,
 * `--token-command`), the environment (CHECKPOINT_GATEWAY, CHECKPOINT_TOKEN, CHECKPOINT_TOKEN_FILE,
 * CHECKPOINT_TOKEN_COMMAND), then the config file (CHECKPOINT_CONFIG, default
 * `$XDG_CONFIG_HOME/checkpoint/config.json` or `~/.config/checkpoint/config.json`:
 * `{"gateway": …, "tokenFile": …, "tokenCommand": …}`). A token command is run by `sh -c` and its
 * standard output is the token — an OIDC helper's, for instance.
 */
export async function gatewayOptions(flags: { gateway?: string; 'token-file'?: string; 'token-command'?: string }, env: NodeJS.ProcessEnv): Promise<GatewayOptions> {
  const file = await configFile(env)
  const url = (flags.gateway ?? env.CHECKPOINT_GATEWAY ?? file.gateway ?? '').replace(/\/+$/, '')
  if (!/^https?:\/\/[^/]/.test(url)) throw new CliError('usage', 'the gateway URL is needed: --gateway=https://…, CHECKPOINT_GATEWAY or "gateway" in the config file')
  const command = flags['token-command'] ?? env.CHECKPOINT_TOKEN_COMMAND
  const tokenFile = flags['token-file'] ?? env.CHECKPOINT_TOKEN_FILE
  let token = ''
  if (command) token = await tokenFrom(command, env)
  else if (tokenFile) token = (await readFile(tokenFile, 'utf8')).trim()
  else if (env.CHECKPOINT_TOKEN) token = env.CHECKPOINT_TOKEN.trim()
  else if (file.tokenCommand) token = await tokenFrom(file.tokenCommand, env)
  else if (file.tokenFile) token = (await readFile(file.tokenFile, 'utf8')).trim()
  if (!token) throw new CliError('usage', 'a token is needed: CHECKPOINT_TOKEN, CHECKPOINT_TOKEN_FILE, CHECKPOINT_TOKEN_COMMAND, --token-file, --token-command, or tokenFile/tokenCommand in the config file')
  return { url, token }
}

interface ConfigFile { gateway?: string; tokenFile?: string; tokenCommand?: string }

async function configFile(env: NodeJS.ProcessEnv): Promise<ConfigFile> {
  const explicit = env.CHECKPOINT_CONFIG
  const path = explicit ?? join(env.XDG_CONFIG_HOME || join(env.HOME ?? homedir(), '.config'), 'checkpoint', 'config.json')
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (!explicit && (err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new CliError('config_file', `${path}: ${(err as Error).message}`)
  }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw new CliError('config_file', `${path}: not JSON`)
  }
  const o = (v ?? {}) as Record<string, unknown>
  for (const k of ['gateway', 'tokenFile', 'tokenCommand']) {
    if (o[k] !== undefined && typeof o[k] !== 'string') throw new CliError('config_file', `${path}: ${k} must be a string`)
  }
  return o as ConfigFile
}

/** Runs a token command (`sh -c`, 30 s at most); its trimmed standard output is the token. */
function tokenFrom(command: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', command], { env, timeout: 30_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new CliError('token_command', `the token command failed (${(err as NodeJS.ErrnoException).code ?? err.message}): ${String(stderr).trim().slice(0, 200)}`))
      resolve(String(stdout).trim())
    })
  })
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
