/**
 * The agent's process: parse config, start, and shut down gracefully on SIGTERM/SIGINT (a second
 * signal exits at once). The only file with process side effects.
 */
import { startAgent } from './start.ts'
import { ConfigError, helpText, loadConfig } from './config.ts'

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(helpText())
  process.exit(0)
}

let cfg
try {
  cfg = loadConfig(process.argv.slice(2), process.env)
} catch (err) {
  if (err instanceof ConfigError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`checkpoint-agent: ${(err as Error).message}\n(see --help)\n`)
    process.exit(2)
  }
  throw err
}

const agent = await startAgent(cfg).catch((err: Error) => {
  process.stderr.write(`checkpoint-agent: ${err.message}\n`)
  process.exit(1)
})

const say = (level: string, msg: string, fields: Record<string, unknown> = {}) =>
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) + '\n')

// First signal: graceful. Second: exit at once unless the runtime is checkpointing (cutting that
// call short can leave the container frozen), in which case a third one is needed.
let signals = 0
const onSignal = (sig: string) => {
  signals++
  if (signals === 1) {
    say('info', 'shutting down', { signal: sig })
    void agent.shutdown().then(({ clean }) => process.exit(clean ? 0 : 1))
  } else if (signals === 2 && agent.checkpointer.runtimeCalls > 0) {
    say('warn', 'checkpoints are in the runtime; exiting now could leave their containers frozen; signal again to exit anyway', { runtimeCalls: agent.checkpointer.runtimeCalls })
  } else {
    process.exit(1)
  }
}
process.on('SIGTERM', () => onSignal('SIGTERM'))
process.on('SIGINT', () => onSignal('SIGINT'))
