/** Child-process helpers for tests, benchmarks and the local runtime. */
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'

/** Sends `signal` (SIGTERM) and waits for the exit, with SIGKILL after `killAfterMs`; at once if it already exited. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
  await exited
  clearTimeout(timer)
}

/**
 * Resolves with the agent's https URL once a child `node agent/main.ts` logs "agent listening";
 * rejects with its last output if it exits first or says nothing within 15 s. Every stdout line
 * and stderr chunk is appended to `logs`.
 */
export function agentListening(child: ChildProcess, logs: string[]): Promise<string> {
  child.stderr!.on('data', (b: Buffer) => logs.push(b.toString()))
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not listen within 15 s:\n${logs.join('').slice(-4000)}`)), 15_000)
    child.once('exit', (code, signal) => reject(new Error(`agent exited (${code ?? signal}):\n${logs.join('').slice(-4000)}`)))
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logs.push(line + '\n')
      try {
        const l = JSON.parse(line) as { msg?: string; address?: string }
        if (l.msg === 'agent listening') {
          clearTimeout(timer)
          resolve(`https://${l.address}`)
        }
      } catch {
        // not a log line
      }
    })
  })
}
