/**
 * The benches' "memory dump" content (seal.bench.ts, vault.bench.ts): blocks of 37–237 KiB, in
 * turn log-like text, random bytes and zeros — what a process's pages look like to a compressor —
 * deterministic for a seed, so runs compare.
 */
import { randomFillSync } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { pipeline } from 'node:stream/promises'


/** A deterministic PRNG (xorshift32). */
export function prng(seed: number) {
  let x = seed | 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 2 ** 32
  }
}

const WORDS = 'GET POST PUT /api/v1/orders /api/v1/users /healthz 200 201 404 500 alice bob carol ms ok retry cache miss hit session token=redacted db=postgres query SELECT FROM WHERE id'.split(' ')

export function textBlock(n: number, rand: () => number): Buffer {
  const pick = (k: number) => Math.floor(rand() * k)
  const lines: string[] = []
  let len = 0
  while (len < n) {
    let s = `2026-11-30T12:${String(pick(60)).padStart(2, '0')}:${String(pick(60)).padStart(2, '0')}Z node-${pick(16)} app[${pick(65536)}]:`
    for (let i = 4 + pick(8); i > 0; i--) s += ` ${WORDS[pick(WORDS.length)]}`
    s += ` ${pick(1000)}ms\n`
    lines.push(s)
    len += s.length
  }
  return Buffer.from(lines.join('').slice(0, n), 'latin1')
}

/** `size` bytes: blocks of 37–237 KiB, in turn log-like text, random bytes, zeros. */
export async function writeMixed(path: string, size: number): Promise<void> {
  const rand = prng(7)
  async function* blocks() {
    for (let off = 0, i = 0; off < size; i++) {
      const n = Math.min(size - off, 37 * 1024 + Math.floor(rand() * 200 * 1024))
      const kind = i % 3
      yield kind === 0 ? textBlock(n, rand) : kind === 1 ? randomFillSync(Buffer.allocUnsafe(n)) : Buffer.alloc(n)
      off += n
    }
  }
  await pipeline(blocks(), createWriteStream(path, { mode: 0o600 }))
}

