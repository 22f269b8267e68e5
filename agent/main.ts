/**
 * The agent's process: parse config, start, and shut down gracefully on SIGTERM/SIGINT (a second
 * signal exits at once). The only file with process side effects.
 */
import { startAgent } from './agent.ts'
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

let signals = 0
const onSignal = (sig: string) => {
  if (++signals > 1) process.exit(1)
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level: 'info', msg: 'shutting down', signal: sig }) + '\n')
  void agent.shutdown().then(({ clean }) => process.exit(clean ? 0 : 1))
}
process.on('SIGTERM', () => onSignal('SIGTERM'))
process.on('SIGINT', () => onSignal('SIGINT'))
