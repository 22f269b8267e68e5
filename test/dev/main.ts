/**
 * `npm run dev`: the whole product on this machine, loopback only (test/support/stack.ts) — a
 * private containerd 2.1 with a demo pod, the agent over mTLS, and the gateway's Worker bundle in
 * workerd — then prints a dev token and curl commands to paste. Ctrl-C stops everything (a second
 * Ctrl-C exits at once).
 *
 * Environment:
 * - CHECKPOINT_DEV_PORT — the gateway's port on 127.0.0.1 (default 8787; 0 = any free port)
 * - CHECKPOINT_DEV_RUNTIME — `local` (default: start a private containerd; root on Linux) or
 *   `external` (use an existing CRI runtime, no demo pod)
 * - CHECKPOINT_DEV_CRI_ENDPOINT (or CONTAINER_RUNTIME_ENDPOINT) — the CRI endpoint for `external`
 */
import { spawn } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createLogger } from '../../agent/log.ts'
import { removeBundle } from '../functions/targets.ts'
import { ALL_SCOPES, startStack, type Stack } from '../support/stack.ts'
import { counter } from '../runtime/workloads.ts'

const DEMO = { namespace: 'demo', pod: 'counter', container: 'app' }
/** Counts once a second without forking (test/runtime/workloads.ts). */
const COUNTER = counter(1)
const TOKEN_HOURS = 12
const REPO = fileURLToPath(new URL('../../', import.meta.url))
const LOG_DIR = join(REPO, '.dev')
/** Set in the child that runs the stack (see supervise). */
const SUPERVISED = 'CHECKPOINT_DEV_SUPERVISED'

const out = (s = '') => process.stdout.write(s + '\n')
const err = (s: string) => process.stderr.write(s + '\n')

function usage(problem: string): never {
  err(`npm run dev: ${problem}

npm run dev starts a private containerd 2.1 (with runc and CRIU, fetched once into
~/.cache/checkpoint-gateway/runtime), a demo pod, the node agent and the gateway in workerd, all on
127.0.0.1. Checkpointing needs root on Linux (CRIU, mounts, cgroups). Either:

  - run it as root on a Linux machine or VM:      sudo npm run dev
  - or point it at a CRI runtime you already run (containerd >= 2.0 or CRI-O >= 1.25 with CRIU),
    as a user that may use its socket and read its checkpoint archives (usually root):

      CHECKPOINT_DEV_RUNTIME=external CHECKPOINT_DEV_CRI_ENDPOINT=unix:///run/containerd/containerd.sock npm run dev

    No demo pod is started then; checkpoint any running container that carries the kubelet's labels
    (io.kubernetes.pod.namespace, io.kubernetes.pod.name, io.kubernetes.container.name).

The tests that need no runtime run anywhere: npm run test:unit, npm run test:functions.`)
  process.exit(2)
}

/** `port` if nothing listens on it on 127.0.0.1, else 0 (any free port). */
async function portOrAny(port: number): Promise<number> {
  if (port === 0) return 0
  return new Promise((resolve) => {
    const srv = createServer()
    srv.once('error', () => resolve(0))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(port)))
  })
}

function gatewayLine(l: Record<string, unknown>): string | undefined {
  if (l.type === 'outcome') {
    const what = [l.op, l.namespace && `${l.namespace}/${l.pod}/${l.container}`, l.archive].filter(Boolean).join(' ')
    return `[gateway] ${l.method} ${what} → ${l.status}${l.code ? ` ${l.code}` : ''} sub=${l.sub ?? '-'} ${l.durationMs} ms`
  }
  if (l.type === 'error') return `[gateway] error ${String(l.error).split('\n')[0]}`
  return undefined
}

/** Reports an unexpected error; once the stack is starting, stops it and exits 1. */
let fail = (e: unknown): void => {
  err(`npm run dev: ${(e as Error).stack ?? e}`)
  process.exit(1)
}

function settings(): { mode: 'local' | 'external'; external: string | undefined; port: number } {
  const mode = process.env.CHECKPOINT_DEV_RUNTIME ?? 'local'
  const external = process.env.CHECKPOINT_DEV_CRI_ENDPOINT ?? process.env.CONTAINER_RUNTIME_ENDPOINT
  if (mode !== 'local' && mode !== 'external') usage(`CHECKPOINT_DEV_RUNTIME must be local or external, not ${JSON.stringify(mode)}`)
  if (mode === 'external' && !external) usage('CHECKPOINT_DEV_RUNTIME=external needs CHECKPOINT_DEV_CRI_ENDPOINT (e.g. unix:///run/containerd/containerd.sock)')
  if (mode === 'local' && process.platform !== 'linux') usage(`the local runtime needs Linux (this is ${process.platform})`)
  if (mode === 'local' && process.getuid?.() !== 0) usage('the local runtime needs root')
  const port = Number(process.env.CHECKPOINT_DEV_PORT ?? 8787)
  if (!Number.isInteger(port) || port < 0 || port > 65535) usage('CHECKPOINT_DEV_PORT must be a port number')
  return { mode, external, port }
}

/**
 * Runs the stack in a child process in its own process group and passes signals on. A terminal's
 * Ctrl-C goes to the whole foreground process group: without this, containerd, the registry and
 * workerd (spawned in our group) would die at once and the orderly teardown (remove pods, then
 * stop containerd) could not run — test/runtime/containerd.ts's fallback then leaves the containers'
 * processes and cgroups behind. Signals arriving twice within 200 ms (the terminal's and npm's
 * copy of one Ctrl-C) count once.
 */
function supervise(): void {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    detached: true,
    stdio: 'inherit',
    env: { ...process.env, [SUPERVISED]: '1' },
  })
  let last = 0
  const pass = (sig: NodeJS.Signals) => {
    const now = Date.now()
    if (now - last < 200) return
    last = now
    if (child.exitCode === null && child.signalCode === null) child.kill(sig)
  }
  process.on('SIGINT', () => pass('SIGINT'))
  process.on('SIGTERM', () => pass('SIGTERM'))
  process.on('SIGHUP', () => pass('SIGTERM'))
  child.on('error', (e) => {
    err(`npm run dev: cannot start ${process.execPath}: ${e.message}`)
    process.exit(1)
  })
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGINT' ? 130 : 143)))
}

async function main(): Promise<void> {
  const { mode, external, port: wanted } = settings()
  const port = await portOrAny(wanted)

  // Full logs go to .dev/ (gitignored); the terminal gets one line per gateway request.
  await mkdir(LOG_DIR, { recursive: true })
  const agentLogFile = join(LOG_DIR, 'agent.log')
  const gatewayLogFile = join(LOG_DIR, 'gateway.log')
  const agentLog = createWriteStream(agentLogFile)
  const gatewayLog = createWriteStream(gatewayLogFile)

  let stack: Stack | undefined
  let starting: Promise<Stack> | undefined
  let stopping = false
  const closeLogs = () => Promise.all([agentLog, gatewayLog].map((f: WriteStream) => new Promise<void>((r) => f.end(r))))
  const stop = async (code: number) => {
    out(`\nstopping: gateway, agent${mode === 'local' ? ', containerd, registry' : ''}… (Ctrl-C again to exit at once)`)
    try {
      // A signal during start-up: let the start finish (or fail and clean up), then stop it.
      const s = stack ?? (await starting?.catch(() => undefined))
      await s?.stop()
    } catch (e) {
      err(`stopping failed: ${(e as Error).message}`)
      code = 1
    }
    removeBundle()
    await closeLogs()
    out('stopped.')
    process.exit(code)
  }
  const onSignal = (signal: string) => {
    if (stopping) {
      err(`${signal} again: exiting now${stack?.runtime ? `; containerd may be left running under ${stack.runtime.root}` : ''}`)
      process.exit(130)
    }
    stopping = true
    void stop(0)
  }
  fail = (e) => {
    err(`npm run dev: ${(e as Error).stack ?? e}`)
    if (stopping) return
    stopping = true
    void stop(1)
  }
  process.on('SIGINT', () => onSignal('SIGINT'))
  process.on('SIGTERM', () => onSignal('SIGTERM'))

  out(mode === 'local'
    ? 'starting containerd 2.1 + registry (the first run fetches ≈160 MB of Debian packages), agent, gateway in workerd…'
    : `starting the agent against ${external} and the gateway in workerd…`)
  const t0 = performance.now()
  starting = startStack({
    gatewayPort: port,
    ownSignals: true,
    ...(mode === 'external' ? { runtimeEndpoint: external! } : {}),
    log: (line) => agentLog.write(JSON.stringify({ time: new Date().toISOString(), msg: `stack: ${line}` }) + '\n'),
    agentLog: createLogger({ level: 'debug', write: (line) => agentLog.write(line) }),
    gatewayLog: (line) => {
      gatewayLog.write(JSON.stringify(line) + '\n')
      const short = gatewayLine(line)
      if (short) out(short)
    },
  })
  try {
    stack = await starting
  } catch (e) {
    if (stopping) return
    err(`\nnpm run dev: the stack did not start: ${(e as Error).message}\n(details: ${agentLogFile})`)
    removeBundle()
    await closeLogs()
    process.exit(1)
  }
  if (stopping) return

  let target = '<namespace>/<pod>/<container>'
  if (stack.runtime) {
    let containerId: string
    try {
      ;({ containerId } = await stack.runPod({ ...DEMO, command: ['sh', '-c', COUNTER] }))
    } catch (e) {
      if (stopping) return
      throw e
    }
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline && !stopping) {
      const n = Number((await stack.exec(containerId, ['cat', '/tmp/count']).catch(() => '')).trim())
      if (n >= 1) break
      await new Promise((r) => setTimeout(r, 200))
    }
    target = `${DEMO.namespace}/${DEMO.pod}/${DEMO.container}`
  }
  if (stopping) return
  const token = await stack.mintToken(ALL_SCOPES, { expiresInSec: TOKEN_HOURS * 3600 })
  const seconds = ((performance.now() - t0) / 1000).toFixed(1)
  const base = `/v1/clusters/${stack.cluster}/nodes/${stack.node}`
  const rule = '─'.repeat(100)

  out(`
${rule}
 checkpoint-gateway dev stack — ready in ${seconds} s, everything on 127.0.0.1

   gateway (workerd)  ${stack.gatewayUrl}
   cluster / node     ${stack.cluster} / ${stack.node}   (agent ${stack.agent.url}, mutual TLS)
   runtime            ${stack.agent.runtimeInfo.name} ${stack.agent.runtimeInfo.version} at ${stack.endpoint}
   ${stack.runtime ? `demo pod           ${target}  (busybox, a counter in /tmp/count)` : 'demo pod           none (external runtime): use any running pod with kubelet labels'}
   archives           ${stack.agent.store.dir}
   logs               ${agentLogFile}, ${gatewayLogFile}
   token              subject "${stack.subject}", scopes ${ALL_SCOPES.join(' ')}, valid ${TOKEN_HOURS} h
${rule}

Paste into another shell:

export GW=${stack.gatewayUrl}
export TOKEN='${token}'

# 1. Checkpoint the ${stack.runtime ? 'demo ' : ''}container, streaming progress events (NDJSON) as they happen:
curl -sS -N -X POST -H "Authorization: Bearer $TOKEN" -H 'Accept: application/x-ndjson' "$GW${base}/checkpoint/${target}"

# 2. List the node's checkpoints (name, size, sha256, download path):
curl -sS -w '\\n' -H "Authorization: Bearer $TOKEN" "$GW${base}/checkpoints"

# 3. Checkpoint again (one JSON answer), download the archive it names, compare with its "sha256":
RESULT=$(curl -sS -X POST -H "Authorization: Bearer $TOKEN" "$GW${base}/checkpoint/${target}"); echo "$RESULT"
DOWNLOAD=$(echo "$RESULT" | sed -E 's/.*"download":"([^"]+)".*/\\1/')
curl -sS -f -o checkpoint.tar -H "Authorization: Bearer $TOKEN" "$GW$DOWNLOAD" && sha256sum checkpoint.tar && tar -tvf checkpoint.tar | head -5
${stack.runtime ? `${join(stack.runtime.binDir, 'checkpointctl')} show checkpoint.tar\n` : ''}
# 4. Ranges work too; and delete it when done:
curl -sS -H "Authorization: Bearer $TOKEN" -H 'Range: bytes=0-511' "$GW$DOWNLOAD" | wc -c
curl -sS -X DELETE -o /dev/null -w '%{http_code}\\n' -H "Authorization: Bearer $TOKEN" "$GW$DOWNLOAD"

Errors are application/problem+json with a stable "code" (README.md, "Errors"). Ctrl-C stops everything.
${rule}`)
}

if (process.env[SUPERVISED] === '1') {
  await main().catch((e) => fail(e))
} else {
  settings() // explain and exit 2 here, before any child is started, if this cannot work
  supervise()
}
