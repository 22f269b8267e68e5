/** What the benches read about a process from /proc. */
import { readFile } from 'node:fs/promises'

/** VmRSS and VmHWM (peak since start) of a process, in KiB. */
export async function vmRssKiB(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') }
}

/** Samples a process's VmRSS every `everyMs` until `stop()`, which gives the largest (KiB) and how many samples were taken. */
export function sampleRss(pid: number, everyMs = 100): { stop(): { maxKiB: number; samples: number } } {
  let maxKiB = 0
  let samples = 0
  const timer = setInterval(() => {
    vmRssKiB(pid).then((r) => {
      samples++
      maxKiB = Math.max(maxKiB, r.rss)
    }, () => {})
  }, everyMs)
  return {
    stop() {
      clearInterval(timer)
      return { maxKiB, samples }
    },
  }
}
