/**
 * Agent configuration: one table of options, each settable as a flag (`--checkpoint-dir=…`) or an
 * environment variable (`CHECKPOINT_AGENT_CHECKPOINT_DIR`); flags win. Parsed and validated at
 * start; a bad value stops the agent with a message naming the option.
 */
import { hostname } from 'node:os'
import { parseArgs } from 'node:util'

type Kind = 'string' | 'int' | 'bool' | 'list' | 'duration' | 'size'

interface Option {
  kind: Kind
  help: string
  default?: string
  /** For ints and durations: inclusive bounds. */
  min?: number
  max?: number
}

/** Every option the agent knows; `--help`, the README and the DaemonSet test read this table. */
export const OPTIONS = {
  'listen': { kind: 'string', default: '0.0.0.0:10443', help: 'host:port for the HTTPS listener' },
  'node-name': { kind: 'string', help: 'this node\'s name, as in grants (default: NODE_NAME, else the hostname)' },
  'cluster': { kind: 'string', help: 'this cluster\'s id in the gateway; when set, grants must name it' },
  'runtime-endpoint': { kind: 'string', help: 'CRI endpoint, e.g. unix:///run/containerd/containerd.sock (default: the first that answers of containerd\'s and CRI-O\'s sockets)' },
  'tls-cert': { kind: 'string', help: 'PEM server certificate chain (re-read when it changes)' },
  'tls-key': { kind: 'string', help: 'PEM private key of the server certificate' },
  'tls-ca': { kind: 'string', help: 'PEM bundle of CAs that sign client certificates' },
  'tls-reload-interval': { kind: 'duration', default: '10s', min: 1, max: 3600, help: 'how often certificate files are checked for changes' },
  'allowed-clients': { kind: 'list', help: 'client identities allowed to connect: uri:<SAN URI>, dns:<SAN DNS>, cn:<subject CN> (comma-separated; required)' },
  'grant-jwks-file': { kind: 'string', help: 'JWKS file with the gateway\'s grant-signing public keys' },
  'grant-jwks-url': { kind: 'string', help: 'JWKS URL with the gateway\'s grant-signing public keys (https)' },
  'grant-issuer': { kind: 'string', help: 'required `iss` of grants (optional)' },
  'grant-max-lifetime': { kind: 'duration', default: '1h', min: 10, max: 86400, help: 'grants whose exp - iat exceeds this are refused' },
  'checkpoint-dir': { kind: 'string', default: '/var/lib/kubelet/checkpoints', help: 'where archives are written (created 0700)' },
  'checkpointing': { kind: 'bool', default: 'true', help: 'false answers 404 to checkpoint requests (the ContainerCheckpoint feature gate analogue)' },
  'default-timeout': { kind: 'duration', default: '5m', min: 1, max: 86400, help: 'how long a caller waits when it gives no timeout' },
  'max-timeout': { kind: 'duration', default: '1h', min: 1, max: 86400, help: 'the largest timeout a caller may ask for' },
  'max-concurrent': { kind: 'int', default: '1', min: 1, max: 64, help: 'checkpoints running at once on this node' },
  'max-queue': { kind: 'int', default: '8', min: 0, max: 10000, help: 'checkpoints waiting; beyond it 429 with Retry-After' },
  'heartbeat-interval': { kind: 'duration', default: '5s', min: 1, max: 10, help: 'interval of heartbeat events while a checkpoint runs' },
  'disk-margin': { kind: 'size', default: '256Mi', min: 0, max: Number.MAX_SAFE_INTEGER, help: 'space that must stay free beyond the container\'s working set: bytes, or with a unit (Ki, Mi, Gi, Ti, or k, M, G, T)' },
  'retention-max-per-container': { kind: 'int', default: '10', min: 0, max: 100000, help: 'archives kept per container, oldest deleted first (0 = no limit)' },
  'retention-max-total-bytes': { kind: 'size', default: '0', min: 0, max: Number.MAX_SAFE_INTEGER, help: 'archives kept in all: bytes, or with a unit as for --disk-margin (0 = no limit)' },
  'retention-max-age': { kind: 'duration', default: '0s', min: 0, max: 10 * 365 * 86400, help: 'archives older than this are deleted (0 = no limit)' },
  'shutdown-grace': { kind: 'duration', default: '2m', min: 0, max: 86400, help: 'on SIGTERM, how long running checkpoints may take to finish' },
  'statement-key': { kind: 'string', help: 'PEM (PKCS#8) ECDSA P-256 or Ed25519 private key that signs checkpoint statements, re-read when it changes (default: one made at first start in the checkpoint directory, .statement-key.pem)' },
  'statement-key-alg': { kind: 'string', default: 'ecdsa-p256', help: 'ecdsa-p256 or ed25519: the kind of key made when --statement-key is not given' },
  'log-level': { kind: 'string', default: 'info', help: 'debug, info, warn or error' },
} as const satisfies Record<string, Option>

export type OptionName = keyof typeof OPTIONS

export interface AgentConfig {
  listen: { host: string; port: number }
  nodeName: string
  runtimeEndpoint: string | undefined
  tls: { cert: string; key: string; ca: string; reloadIntervalMs: number }
  allowedClients: string[]
  grants: { jwksFile?: string; jwksUrl?: string; issuer?: string; cluster?: string; maxLifetimeSeconds: number }
  checkpointDir: string
  checkpointing: boolean
  defaultTimeoutSeconds: number
  maxTimeoutSeconds: number
  maxConcurrent: number
  maxQueue: number
  heartbeatIntervalMs: number
  diskMarginBytes: number
  retention: { maxPerContainer: number; maxTotalBytes: number; maxAgeSeconds: number }
  shutdownGraceMs: number
  statementKey: string | undefined
  statementKeyAlg: 'ecdsa-p256' | 'ed25519'
  logLevel: 'debug' | 'info' | 'warn' | 'error'
}

/** Thrown for bad configuration; `option` names the culprit. */
export class ConfigError extends Error {
  readonly option: string
  constructor(option: string, message: string) {
    super(`--${option}: ${message}`)
    this.name = 'ConfigError'
    this.option = option
  }
}

export function envName(option: string): string {
  return 'CHECKPOINT_AGENT_' + option.toUpperCase().replaceAll('-', '_')
}

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 }

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 }

/** "268435456", "256Mi", "1Gi", "500M" (Kubernetes quantity suffixes) → bytes. */
export function parseSize(raw: string): number | null {
  const m = /^(\d+)(k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(raw.trim())
  return m ? Number(m[1]) * SIZE_UNITS[m[2] ?? '']! : null
}

/** "90", "90s", "5m", "1h", "500ms" → seconds. */
export function parseDuration(raw: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim())
  return m ? Number(m[1]) * UNITS[m[2] ?? 's']! : null
}

function convert(name: string, opt: Option, raw: string): string | number | boolean | string[] {
  const bounded = (n: number | null, what: string) => {
    if (n === null || !Number.isFinite(n)) throw new ConfigError(name, `${JSON.stringify(raw)} is not ${what}`)
    if ((opt.min !== undefined && n < opt.min) || (opt.max !== undefined && n > opt.max)) {
      throw new ConfigError(name, `${raw} is outside ${opt.min}..${opt.max}`)
    }
    return n
  }
  switch (opt.kind) {
    case 'string': return raw
    case 'list': return raw.split(',').map((s) => s.trim()).filter(Boolean)
    case 'bool':
      if (/^(true|1|yes|on)$/i.test(raw)) return true
      if (/^(false|0|no|off)$/i.test(raw)) return false
      throw new ConfigError(name, `${JSON.stringify(raw)} is not true or false`)
    case 'int': return bounded(/^\d+$/.test(raw) ? Number(raw) : null, 'a whole number')
    case 'duration': return bounded(parseDuration(raw), 'a duration like 30s, 5m, 1h')
    case 'size': return bounded(parseSize(raw), 'a size like 268435456, 256Mi or 1Gi')
  }
}

/** Parses flags and environment into a validated config. Throws ConfigError. */
export function loadConfig(argv: string[], env: Record<string, string | undefined>): AgentConfig {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.keys(OPTIONS).map((k) => [k, { type: 'string' as const }])),
    strict: true,
    allowPositionals: false,
  })
  const v: Record<string, string | number | boolean | string[] | undefined> = {}
  for (const [name, opt] of Object.entries(OPTIONS) as [string, Option][]) {
    const raw = (values as Record<string, string | undefined>)[name] ?? env[envName(name)] ?? opt.default
    v[name] = raw === undefined ? undefined : convert(name, opt, raw)
  }
  const need = (name: OptionName): string => {
    const x = v[name]
    if (typeof x !== 'string' || !x) throw new ConfigError(name, `is required (or ${envName(name)})`)
    return x
  }
  const listen = /^\[?([^\]]*)\]?:(\d{1,5})$/.exec(String(v['listen']))
  if (!listen || Number(listen[2]) > 65535) throw new ConfigError('listen', 'must be host:port')
  const allowed = (v['allowed-clients'] as string[] | undefined) ?? []
  if (allowed.length === 0) throw new ConfigError('allowed-clients', 'at least one client identity is required: mTLS alone must name who may connect')
  for (const a of allowed) {
    if (!/^(uri|dns|cn):.+$/.test(a)) throw new ConfigError('allowed-clients', `${JSON.stringify(a)} must be uri:…, dns:… or cn:…`)
  }
  const jwksFile = v['grant-jwks-file'] as string | undefined
  const jwksUrl = v['grant-jwks-url'] as string | undefined
  if (!jwksFile === !jwksUrl) throw new ConfigError('grant-jwks-file', 'give exactly one of --grant-jwks-file and --grant-jwks-url')
  if (jwksUrl && !/^https:\/\//.test(jwksUrl)) throw new ConfigError('grant-jwks-url', 'must be https')
  const keyAlg = String(v['statement-key-alg'])
  if (keyAlg !== 'ecdsa-p256' && keyAlg !== 'ed25519') throw new ConfigError('statement-key-alg', 'must be ecdsa-p256 or ed25519')
  const level = String(v['log-level'])
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new ConfigError('log-level', 'must be debug, info, warn or error')
  const seconds = (n: OptionName) => v[n] as number
  if (seconds('default-timeout') > seconds('max-timeout')) throw new ConfigError('default-timeout', 'must not exceed --max-timeout')
  const nodeName = (v['node-name'] as string | undefined) ?? env['NODE_NAME'] ?? hostname()
  return {
    listen: { host: listen[1]!, port: Number(listen[2]) },
    nodeName,
    runtimeEndpoint: v['runtime-endpoint'] as string | undefined,
    tls: { cert: need('tls-cert'), key: need('tls-key'), ca: need('tls-ca'), reloadIntervalMs: seconds('tls-reload-interval') * 1000 },
    allowedClients: allowed,
    grants: {
      ...(jwksFile ? { jwksFile } : {}),
      ...(jwksUrl ? { jwksUrl } : {}),
      ...(v['grant-issuer'] ? { issuer: v['grant-issuer'] as string } : {}),
      ...(v['cluster'] ? { cluster: v['cluster'] as string } : {}),
      maxLifetimeSeconds: seconds('grant-max-lifetime'),
    },
    checkpointDir: String(v['checkpoint-dir']),
    checkpointing: v['checkpointing'] as boolean,
    defaultTimeoutSeconds: Math.ceil(seconds('default-timeout')),
    maxTimeoutSeconds: Math.floor(seconds('max-timeout')),
    maxConcurrent: v['max-concurrent'] as number,
    maxQueue: v['max-queue'] as number,
    heartbeatIntervalMs: seconds('heartbeat-interval') * 1000,
    diskMarginBytes: v['disk-margin'] as number,
    retention: {
      maxPerContainer: v['retention-max-per-container'] as number,
      maxTotalBytes: v['retention-max-total-bytes'] as number,
      maxAgeSeconds: seconds('retention-max-age'),
    },
    shutdownGraceMs: seconds('shutdown-grace') * 1000,
    statementKey: v['statement-key'] as string | undefined,
    statementKeyAlg: keyAlg,
    logLevel: level as AgentConfig['logLevel'],
  }
}

/** The `--help` text, from the table. */
export function helpText(): string {
  const lines = ['Usage: checkpoint-agent [--option=value …]', '', 'Every option can also be set in the environment as CHECKPOINT_AGENT_<OPTION>.', '']
  for (const [name, opt] of Object.entries(OPTIONS) as [string, Option][]) {
    lines.push(`  --${name}${opt.default !== undefined ? ` (default ${opt.default})` : ''}`)
    lines.push(`      ${opt.help}  [${envName(name)}]`)
  }
  return lines.join('\n') + '\n'
}
