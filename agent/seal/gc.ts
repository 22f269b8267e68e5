/**
 * A full garbage collection, for the store's part boundaries. Sealing turns every 64 KiB of the
 * archive into new buffers (zstd's output, age's chunks) that are dead as soon as they are copied
 * into a part; V8 collects such off-heap memory only once a lot of it has piled up. One collection
 * at a part boundary once RSS has grown past a bound (agent/http/store.ts) trades a few ms for a lower peak (figures in
 * test/README.md, "Where the time goes"). V8 exposes `gc` to new contexts once the flag is set;
 * the agent's own global scope is unchanged.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

export const collectGarbage: () => void = (() => {
  try {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as unknown
    return typeof gc === 'function' ? (gc as () => void) : () => {}
  } catch {
    return () => {}
  }
})()
