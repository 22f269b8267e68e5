/** The `after` of the e2e tests on a local runtime: stop what `before` started, each step whatever the others did. */
import { rm } from 'node:fs/promises'

export interface E2eParts {
  /** Test agents with their names for the log, stopped first, in this order. */
  agents: Array<[what: string, agent: { stop(): Promise<unknown> } | undefined]>
  /** The CRI client, closed next. */
  runtime?: { close(): unknown }
  /** The local runtime (test/runtime/containerd.ts), stopped after the client. */
  rt?: { stop(): Promise<unknown> }
  /** The temp dir, removed last. */
  work?: string
  /** Printed as `# timing <what>: <value>` lines at the end. */
  timings: Record<string, string>
}

/** Stops the agents, the CRI client, the runtime, then removes the work dir; a failing step is logged as `# after:` and the rest still run. */
export async function stopE2e(o: E2eParts): Promise<void> {
  const steps: Array<[string, () => Promise<unknown> | unknown]> = [
    ...o.agents.map(([what, agent]): [string, () => unknown] => [what, () => agent?.stop()]),
    ['runtime client', () => o.runtime?.close()],
    ['runtime', () => o.rt?.stop()],
    ['work dir', () => o.work && rm(o.work, { recursive: true, force: true })],
  ]
  for (const [what, step] of steps) {
    try {
      await step()
    } catch (err) {
      console.log(`# after: stopping ${what} failed: ${err}`)
    }
  }
  for (const [k, v] of Object.entries(o.timings)) console.log(`# timing ${k}: ${v}`)
}
