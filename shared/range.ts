/**
 * Single byte ranges (RFC 9110 §14), for every server of archives: the agent's downloads and the
 * gateway's R2 evidence downloads answer the same `Range` requests the same way.
 */
import { CheckpointError } from './errors.ts'

/** Parses a single `bytes=` range against `size`; null = serve it all; throws for unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  if (!header) return null
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (m[1] === '' && m[2] === '')) return null // multiple or malformed ranges: whole body (RFC 9110 allows ignoring)
  let start: number
  let end: number
  if (m[1] === '') {
    const n = Number(m[2])
    if (n === 0) throw new CheckpointError('invalid_range', 'empty suffix range')
    start = Math.max(0, size - n)
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
    if (m[2] !== '' && Number(m[2]) < start) return null
  }
  if (start >= size) throw new CheckpointError('invalid_range', `range starts at ${start}, the object has ${size} bytes`, { headers: { 'content-range': `bytes */${size}` } })
  return { start, end }
}
