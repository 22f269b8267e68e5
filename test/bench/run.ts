/**
 * Runs every `test/bench/*.bench.ts` in turn, each as its own child process on this Node, so one
 * bench's servers, heap and page cache habits do not leak into the next. Figures (JSON lines)
 * pass through on stdout, progress on stderr.
 *
 *   node_modules/.bin/node test/bench/run.ts            # all of them
 *   node_modules/.bin/node test/bench/run.ts agent      # those whose file name contains "agent"
 *
 * Exits non-zero when a bench could not run (a non-zero exit of its own); figures themselves are
 * never judged here. SIGINT/SIGTERM are passed to the running bench, which stops what it started.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const DIR = fileURLToPath(new URL('.', import.meta.url))
const filters = process.argv.slice(2)
const files = (await readdir(DIR))
  .filter((f) => f.endsWith('.bench.ts') && (filters.length === 0 || filters.some((x) => f.includes(x))))
  .sort()
if (files.length === 0) {
  process.stderr.write(`# bench: no test/bench/*.bench.ts${filters.length ? ` matching ${filters.join(', ')}` : ''}\n`)
  process.exit(1)
}

let current: ChildProcess | undefined
let interrupted: NodeJS.Signals | undefined
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    interrupted = sig
    current?.kill(sig)
  })
}

const failed: string[] = []
for (const file of files) {
  if (interrupted) break
  const t0 = performance.now()
  process.stderr.write(`# bench: ${file}\n`)
  current = spawn(process.execPath, [join(DIR, file)], { stdio: 'inherit' })
  const code = await new Promise<number>((resolve) => {
    current!.once('exit', (c, signal) => resolve(c ?? (signal ? 128 : 1)))
    current!.once('error', (err) => {
      process.stderr.write(`# bench: ${file}: ${err.message}\n`)
      resolve(1)
    })
  })
  current = undefined
  process.stderr.write(`# bench: ${file} exited ${code} after ${((performance.now() - t0) / 1000).toFixed(1)} s\n`)
  if (code !== 0) failed.push(file)
}
if (failed.length) process.stderr.write(`# bench: could not run: ${failed.join(', ')}\n`)
process.exit(interrupted ? 130 : failed.length ? 1 : 0)
