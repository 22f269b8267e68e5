/**
 * Digests and canonical JSON over Web Crypto (Workers and Node alike): one place for the hex
 * SHA-256 the custody chain, the vault, config ETags and alert fingerprints are made of.
 */

/** Hex SHA-256 of `text` (UTF-8); `bytes` < 32 keeps the first bytes only (a short fingerprint). */
export async function sha256Hex(text: string, bytes = 32): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)))
  return Array.from(digest.subarray(0, bytes), (b) => b.toString(16).padStart(2, '0')).join('')
}

/**
 * JSON with object keys sorted at every depth and `undefined` members left out (as JSON.stringify
 * leaves them out when storing): the same value always reads, and hashes, the same.
 */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
}
