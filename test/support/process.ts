/** Child-process helpers for tests, benchmarks and the local runtime. */
import type { ChildProcess } from 'node:child_process'

/** Sends `signal` (SIGTERM) and waits for the exit, with SIGKILL after `killAfterMs`; at once if it already exited. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
  await exited
  clearTimeout(timer)
}
