/**
 * Bech32 (BIP-173, the original checksum constant 1, not bech32m), the text encoding of age keys:
 * `age1…` recipients and `AGE-SECRET-KEY-1…` identities. Encoding only, no cryptography. Written
 * here (≈ 80 lines, checked against BIP-173's vectors and age's own keys) rather than taken from
 * npm so that the sealing core adds no runtime dependency.
 */

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l'
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]
/** BIP-173's limit on a whole string; age's X25519 keys are 62 and 74 characters. */
const MAX_LENGTH = 90

/** Thrown for any string or word list that is not valid bech32; `reason` says which rule failed. */
export class Bech32Error extends Error {
  readonly reason: string
  constructor(reason: string) {
    super(`bech32: ${reason}`)
    this.name = 'Bech32Error'
    this.reason = reason
  }
}

function polymod(values: Iterable<number>): number {
  let chk = 1
  for (const v of values) {
    const top = chk >>> 25
    chk = ((chk & 0x1ffffff) << 5) ^ v
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATOR[i]
  }
  return chk
}

function* hrpExpand(hrp: string): Generator<number> {
  for (let i = 0; i < hrp.length; i++) yield hrp.charCodeAt(i) >> 5
  yield 0
  for (let i = 0; i < hrp.length; i++) yield hrp.charCodeAt(i) & 31
}

/**
 * Decodes a bech32 string into its human-readable part (lower-cased) and 5-bit words, checksum
 * removed. Mixed case, characters outside the charset, a bad checksum or a string over 90
 * characters throw a Bech32Error.
 */
export function bech32Decode(s: string): { hrp: string; words: Uint8Array; upper: boolean } {
  if (s.length > MAX_LENGTH) throw new Bech32Error(`longer than ${MAX_LENGTH} characters`)
  const lower = s.toLowerCase()
  const upper = s.toUpperCase() === s && lower !== s
  if (lower !== s && !upper) throw new Bech32Error('mixed case')
  const sep = lower.lastIndexOf('1')
  if (sep < 1) throw new Bech32Error('empty human-readable part or no separator')
  if (sep + 7 > lower.length) throw new Bech32Error('checksum too short')
  const hrp = lower.slice(0, sep)
  for (let i = 0; i < hrp.length; i++) {
    const c = hrp.charCodeAt(i)
    if (c < 33 || c > 126) throw new Bech32Error('human-readable part has a character out of range')
  }
  const words = new Uint8Array(lower.length - sep - 1)
  for (let i = 0; i < words.length; i++) {
    const d = CHARSET.indexOf(lower[sep + 1 + i])
    if (d < 0) throw new Bech32Error('data part has a character outside the charset')
    words[i] = d
  }
  if (polymod([...hrpExpand(hrp), ...words]) !== 1) throw new Bech32Error('bad checksum')
  return { hrp, words: words.subarray(0, words.length - 6), upper }
}

/** Encodes 5-bit words under `hrp` (given in lower case); `upper` writes the whole string upper-cased. */
export function bech32Encode(hrp: string, words: Uint8Array, upper = false): string {
  if (hrp.length < 1 || hrp !== hrp.toLowerCase()) throw new Bech32Error('the human-readable part must be non-empty lower case')
  const mod = polymod([...hrpExpand(hrp), ...words, 0, 0, 0, 0, 0, 0]) ^ 1
  let out = `${hrp}1`
  for (const w of words) out += CHARSET[w]
  for (let p = 0; p < 6; p++) out += CHARSET[(mod >>> (5 * (5 - p))) & 31]
  if (out.length > MAX_LENGTH) throw new Bech32Error(`longer than ${MAX_LENGTH} characters`)
  return upper ? out.toUpperCase() : out
}

/** Regroups bytes into 5-bit words, zero-padding the last one. */
export function toWords(bytes: Uint8Array): Uint8Array {
  return regroup(bytes, 8, 5, true)
}

/** Regroups 5-bit words into bytes; padding must be under 5 bits and all zero (BIP-173). */
export function fromWords(words: Uint8Array): Uint8Array {
  return regroup(words, 5, 8, false)
}

function regroup(data: Uint8Array, from: number, to: number, pad: boolean): Uint8Array {
  const out: number[] = []
  const max = (1 << to) - 1
  let acc = 0
  let bits = 0
  for (const v of data) {
    acc = ((acc << from) | v) & 0xffff
    bits += from
    while (bits >= to) {
      bits -= to
      out.push((acc >>> bits) & max)
    }
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & max)
  } else if (bits >= from) {
    throw new Bech32Error('excess padding')
  } else if ((acc << (to - bits)) & max) {
    throw new Bech32Error('non-zero padding')
  }
  return Uint8Array.from(out)
}
