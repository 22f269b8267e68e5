/**
 * Grafana Alerting's webhook HMAC: HMAC-SHA256 over the raw body, hex in
 * `X-Grafana-Alerting-Signature`. With a timestamp header configured the MAC covers
 * `timestamp + ":" + body` and the timestamp (Unix seconds) must be within `maxAgeSec` of now,
 * so a captured request cannot be replayed later. The comparison is `crypto.subtle.verify`
 * (constant time), never string equality.
 */
import type { GrafanaSignatureConfig } from './config.ts'

export type SignatureCheck = { ok: true } | { ok: false; reason: 'missing' | 'malformed' | 'stale' | 'mismatch' }

type HmacKey = Awaited<ReturnType<typeof crypto.subtle.importKey>>
const keys = new Map<string, Promise<HmacKey>>()

function hmacKey(secret: string): Promise<HmacKey> {
  let k = keys.get(secret)
  if (!k) {
    k = crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
    keys.set(secret, k)
  }
  return k
}

function fromHex(s: string): Uint8Array | null {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(s)) return null
  const out = new Uint8Array(s.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16)
  return out
}

/**
 * @example
 * const r = await verifyGrafanaSignature(cfg, req.headers, body, Date.now())
 * if (!r.ok) throw new CheckpointError('unauthenticated', `signature ${r.reason}`)
 */
export async function verifyGrafanaSignature(cfg: GrafanaSignatureConfig, headers: Headers, body: Uint8Array, nowMs: number): Promise<SignatureCheck> {
  const given = headers.get(cfg.header)
  if (!given) return { ok: false, reason: 'missing' }
  const mac = fromHex(given.trim())
  if (!mac || mac.byteLength !== 32) return { ok: false, reason: 'malformed' }
  let data = body
  if (cfg.timestampHeader) {
    const ts = headers.get(cfg.timestampHeader)
    if (!ts || !/^\d{1,12}$/.test(ts.trim())) return { ok: false, reason: ts ? 'malformed' : 'missing' }
    if (Math.abs(nowMs / 1000 - Number(ts.trim())) > cfg.maxAgeSec) return { ok: false, reason: 'stale' }
    const prefix = new TextEncoder().encode(`${ts.trim()}:`)
    data = new Uint8Array(prefix.byteLength + body.byteLength)
    data.set(prefix)
    data.set(body, prefix.byteLength)
  }
  const ok = await crypto.subtle.verify('HMAC', await hmacKey(cfg.secret), mac as Uint8Array<ArrayBuffer>, data as Uint8Array<ArrayBuffer>)
  return ok ? { ok: true } : { ok: false, reason: 'mismatch' }
}
