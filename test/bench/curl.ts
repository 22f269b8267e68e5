/** curl as the download client of the benchmarks: the same tool whatever server is measured. */
import { execFile } from 'node:child_process'

export interface CurlResult {
  /** `%{size_download}` */
  bytes: number
  /** `%{time_total}` */
  seconds: number
  /** `%{time_starttransfer}`: seconds to the first byte of the body. */
  firstByte: number
}

export interface CurlOptions {
  /** Extra request headers. */
  headers?: Record<string, string>
  /** Extra curl arguments, e.g. `--cacert … --cert … --key …`. */
  args?: string[]
  timeoutMs: number
  /** Called with a way to SIGKILL the curl process (a bench's cleanup list). */
  onKill?: (kill: () => void) => void
}

/** One `curl -sS --fail` download of `url` to /dev/null; rejects with curl's stderr on failure. */
export function curlToNull(url: string, o: CurlOptions): Promise<CurlResult> {
  const args = ['-sS', '--fail', '-o', '/dev/null', ...(o.args ?? []),
    ...Object.entries(o.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), '-w', '%{size_download} %{time_total} %{time_starttransfer}', url]
  return new Promise((resolve, reject) => {
    const child = execFile('curl', args, { timeout: o.timeoutMs }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`curl ${url}: ${stderr || err.message}`))
      const [bytes, seconds, firstByte] = stdout.trim().split(' ').map(Number)
      resolve({ bytes: bytes!, seconds: seconds!, firstByte: firstByte! })
    })
    o.onKill?.(() => child.kill('SIGKILL'))
  })
}
