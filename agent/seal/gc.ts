/**
 * A young-generation garbage collection (a scavenge), for sealing. Every MiB sealed turns into new
 * buffers (zstd's output, age's chunks) that are dead as soon as they are copied on; V8 frees such
 * off-heap memory only when the small JS objects holding it are collected, which on its own
 * happens after a lot of it has piled up. They die young, so a scavenge — under a millisecond on
 * the agent's small heap — frees them; `seal` runs one every few MiB (figures in test/README.md,
 * "Where the time goes"). V8 exposes `gc` to new contexts once the flag is set; the agent's own
 * global scope is unchanged. Where that is not possible the function does nothing.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

export const collectYoung: () => void = (() => {
  try {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as unknown
    return typeof gc === 'function' ? () => (gc as (o: { type: string }) => void)({ type: 'minor' }) : () => {}
  } catch {
    return () => {}
  }
})()
