/**
 * Why a dump failed, in CRIU's words. containerd (through runc) answers a failed checkpoint with
 * `criu failed: type DUMP errno 0 path= <bundle>/criu-dump.log`; that log names the cause ("Can't
 * dump ghost file … increase limit", "Timeout reached", "Unseizable non-zombie …"). The agent
 * reads its error lines, when it can see the file (the DaemonSet's /run/containerd mount shows
 * containerd's task state at the same path), and returns them with the failure. Best effort: no
 * file, no lines.
 */
import { open } from 'node:fs/promises'
import { basename, isAbsolute, normalize } from 'node:path'

/** Log files the runtimes name in their errors (runc/containerd, CRI-O). */
const LOG_NAMES = new Set(['criu-dump.log', 'dump.log'])
const PATH_IN_MESSAGE = /path=\s*(\S+\.log)\b/
/** Only the end of the log is read: the errors come last. */
const TAIL_BYTES = 64 * 1024
const MAX_LINES = 10
const MAX_LINE_CHARS = 300

/**
 * The last error lines (CRIU's `Error (file:line): …`, timestamp stripped) of the dump log that a
 * runtime error message points at; [] when the message names none or it cannot be read.
 */
export async function dumpLogErrors(message: string): Promise<string[]> {
  const path = PATH_IN_MESSAGE.exec(message)?.[1]
  if (!path || !isAbsolute(path) || normalize(path) !== path || !LOG_NAMES.has(basename(path))) return []
  let text: string
  try {
    const fh = await open(path, 'r')
    try {
      const { size } = await fh.stat()
      const length = Math.min(size, TAIL_BYTES)
      const buf = Buffer.alloc(length)
      await fh.read(buf, 0, length, size - length)
      text = buf.toString('utf8')
    } finally {
      await fh.close()
    }
  } catch {
    return []
  }
  return text
    .split('\n')
    .filter((l) => /\bError \(/.test(l))
    .map((l) => l.replace(/^\(\d+\.\d+\)\s*/, '').slice(0, MAX_LINE_CHARS))
    .slice(-MAX_LINES)
}
