/**
 * `npm run dev`: the whole product on this machine, loopback only (test/support/stack.ts) — a
 * private containerd 2.1 with a demo pod, the agent over mTLS, and the gateway's Worker bundle in
 * workerd, with the alert webhooks on — then prints a dev token and curl commands to paste. Ctrl-C,
 * SIGTERM and SIGHUP (the terminal closing) all stop everything in order (a second Ctrl-C exits at
 * once). Whatever a run could not stop (killed with SIGKILL, that second Ctrl-C) the next run finds
 * in its dev dir and stops first (./leftovers.ts).
 *
 * Environment:
 * - CHECKPOINT_DEV_PORT — the gateway's port on 127.0.0.1 (default 8787; 0 = any free port)
 * - CHECKPOINT_DEV_RUNTIME — `local` (default: start a private containerd; root on Linux) or
 *   `external` (use an existing CRI runtime, no demo pod)
 * - CHECKPOINT_DEV_CRI_ENDPOINT (or CONTAINER_RUNTIME_ENDPOINT) — the CRI endpoint for `external`
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createLogger } from '../../agent/log.ts'
import { generateIdentity } from '../../agent/seal/age.ts'
import { removeBundle } from '../support/gateway/targets.ts'
import { ALL_SCOPES, CLUSTER, startStack, type Stack } from '../support/stack.ts'
import { counter } from '../runtime/workloads.ts'
import { describeStack, parseStat, processRef, reclaim, removeState, runningDev, STATE_FILE, writeState, type DevState, type Reclaimed } from './leftovers.ts'

const DEMO = { namespace: 'demo', pod: 'counter', container: 'app' }
/** Counts once a second without forking (test/runtime/workloads.ts). */
const COUNTER = counter(1)
const TOKEN_HOURS = 12
const REPO = fileURLToPath(new URL('../../', import.meta.url))
const LOG_DIR = join(REPO, '.dev')
/**
 * Everything the running stack writes, one dir per checkout: the stack's state dir with containerd's
 * root, workerd's temp dir with the D1 operations database, the Worker bundle (the child points
 * TMPDIR here), and the state file that lets the next run stop what this one could not. Not under
 * the checkout: the unix sockets under containerd's root must stay within 108 bytes.
 */
const DEV_DIR = join(tmpdir(), `checkpoint-dev-${createHash('sha256').update(REPO).digest('hex').slice(0, 8)}`)
/**
 * The dev stack's webhooks (functions/hooks/config.ts): alerts labelled `checkpoint="true"` that name
 * namespace/pod/container act; no cooldown, so every try takes a checkpoint (production default
 * 600 s); short retries. The dev token may post them: the `dev` policy rule allows it everything.
 */
const HOOKS = {
  select: [{ checkpoint: 'true' }],
  defaultCluster: CLUSTER,
  cooldownSec: 0,
  timeoutSec: 60,
  retry: { maxAttempts: 3, baseDelayMs: 1_000, maxDelayMs: 10_000 },
}
/** Set in the child that runs the stack (see supervise). */
const SUPERVISED = 'CHECKPOINT_DEV_SUPERVISED'

/**
 * Terminal output that cannot kill the process: once the terminal is gone (closed window, SIGHUP)
 * a write fails with EIO, and an unhandled stream error would end the dev process in the middle of
 * its teardown. Main installs the error handlers.
 */
let terminalGone = false
const write = (stream: NodeJS.WriteStream, s: string) => {
  if (terminalGone) return
  try {
    stream.write(s + '\n')
  } catch {
    terminalGone = true
  }
}
const out = (s = '') => write(process.stdout, s)
const err = (s: string) => write(process.stderr, s)

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

The tests that need no runtime run anywhere: npm run test:shared, npm run test:agent, npm run test:functions.`)
  process.exit(2)
}

function procStat(pid: number) {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return undefined
  }
}

/**
 * [pid, parent] for this process and each ancestor below its session's leader (none without
 * /proc). `process.ppid` is read once, at start: /proc is where a change shows.
 */
function ancestry(): Array<[number, number]> {
  const chain: Array<[number, number]> = []
  for (let pid = process.pid; chain.length < 32;) {
    const st = procStat(pid)
    if (!st || st.session === pid || st.ppid <= 1) break
    chain.push([pid, st.ppid])
    pid = st.ppid
  }
  return chain
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

/** What a request was about when its outcome line does not say (a webhook: its decision lines do), by request id. */
const requestTopics = new Map<unknown, string>()

function gatewayLine(l: Record<string, unknown>): string | undefined {
  if (l.type === 'decision' && typeof l.via === 'string') requestTopics.set(l.requestId, l.via)
  if (l.type === 'outcome') {
    const what = [l.op, l.namespace && `${l.namespace}/${l.pod}/${l.container}`, l.archive].filter(Boolean).join(' ') || requestTopics.get(l.requestId)
    requestTopics.delete(l.requestId)
    return `[gateway] ${l.method}${what ? ` ${what}` : ''} → ${l.status}${l.code ? ` ${l.code}` : ''} sub=${l.sub ?? '-'} ${l.durationMs} ms`
  }
  if (l.type === 'operation') {
    const what = [l.namespace && `${l.namespace}/${l.pod}/${l.container}`, l.state, l.code, l.attempt && `attempt ${l.attempt}`].filter(Boolean).join(' ')
    return `[gateway] operation ${l.operation} ${what}${l.durationMs !== undefined ? ` ${l.durationMs} ms` : ''}`
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
 * Runs the stack in a child process in its own session (so its own process group) and passes
 * signals on. A terminal's Ctrl-C, and its SIGHUP when it closes, go to the whole foreground
 * process group: without this, containerd, the registry and workerd (spawned in our group) would
 * die at once and the orderly teardown (remove pods, then stop containerd) could not run —
 * test/runtime/containerd.ts's fallback then leaves the containers' processes and cgroups behind.
 * Signals arriving twice within 200 ms (the terminal's and npm's copy of one Ctrl-C) count once.
 * The IPC channel is how the child learns that this process died without passing anything on
 * (SIGKILL, a SIGHUP before the handlers were in place): it closes, and the child stops. And this
 * process watches its ancestors up to its session's leader (sh, npm, the shell): `kill -HUP <npm>`
 * or a SIGKILL ends one of them without a word to us, and its child being reparented is the only
 * sign of it — it counts as a SIGHUP.
 */
function supervise(): void {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    detached: true,
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
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
  process.on('SIGHUP', () => pass('SIGHUP'))
  const chain = ancestry()
  if (chain.length > 0) {
    const watch = setInterval(() => {
      if (chain.every(([pid, ppid]) => procStat(pid)?.ppid === ppid)) return
      clearInterval(watch)
      pass('SIGHUP')
    }, 500)
    watch.unref()
  }
  child.on('error', (e) => {
    err(`npm run dev: cannot start ${process.execPath}: ${e.message}`)
    process.exit(1)
  })
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGINT' ? 130 : 143)))
}

async function main(): Promise<void> {
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => (terminalGone = true))
  const { mode, external, port: wanted } = settings()
  /** The state file and the reclaiming need /proc; elsewhere (external runtime on macOS) they are skipped. */
  const tracked = process.platform === 'linux'
  // Before anything is opened: the logs of a running dev stack must not be truncated.
  const other = tracked ? await runningDev(DEV_DIR) : undefined
  if (other) {
    err(`npm run dev: another npm run dev of this checkout is running (pid ${other.dev.pid}, since ${other.startedAt}); stop it first (Ctrl-C in its terminal, or kill ${other.dev.pid})`)
    process.exit(2)
  }

  // Full logs go to .dev/ (gitignored); the terminal gets one line per gateway request.
  await mkdir(LOG_DIR, { recursive: true })
  const agentLogFile = join(LOG_DIR, 'agent.log')
  const gatewayLogFile = join(LOG_DIR, 'gateway.log')
  const agentLog = createWriteStream(agentLogFile)
  const gatewayLog = createWriteStream(gatewayLogFile)

  const note = (line: string) => agentLog.writableEnded || agentLog.write(JSON.stringify({ time: new Date().toISOString(), msg: `dev: ${line}` }) + '\n')

  let stack: Stack | undefined
  let starting: Promise<Stack> | undefined
  let stopping = false
  /** DEV_DIR's state file is this run's (not, while reclaiming, an earlier run's). */
  let ownState = false
  const closeLogs = () => Promise.all([agentLog, gatewayLog].map((f: WriteStream) => new Promise<void>((r) => f.end(r))))
  const stop = async (code: number, why: string) => {
    note(`stopping (${why})`)
    out(`\nstopping (${why}): gateway, agent${mode === 'local' ? ', containerd, registry' : ''}… (Ctrl-C again to exit at once)`)
    try {
      // A signal during start-up: let the start finish (or fail and clean up), then stop it.
      const s = stack ?? (await starting?.catch(() => undefined))
      await s?.stop()
    } catch (e) {
      err(`stopping failed: ${(e as Error).message}`)
      code = 1
    }
    removeBundle()
    if (code === 0 && ownState) await removeState(DEV_DIR).catch(() => {})
    note(`stopped (exit ${code})`)
    await closeLogs()
    out('stopped.')
    process.exit(code)
  }
  /**
   * SIGINT (Ctrl-C), SIGTERM, SIGHUP (the terminal closed; the supervisor passes it on) and the
   * supervisor's death all stop the stack in order. Only a second Ctrl-C cuts that short: the
   * other three come in bursts nobody chose (a closing terminal signals the shell, npm and us).
   */
  const onSignal = (why: string) => {
    if (stopping) {
      if (why !== 'SIGINT') return note(`${why} while stopping: ignored`)
      err(`${why} again: exiting now; the next npm run dev stops what is left (${DEV_DIR})`)
      process.exit(130)
    }
    stopping = true
    void stop(0, why)
  }
  fail = (e) => {
    err(`npm run dev: ${(e as Error).stack ?? e}`)
    if (stopping) return
    stopping = true
    void stop(1, 'error')
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => onSignal(sig))
  if (process.channel) {
    process.on('disconnect', () => onSignal('npm run dev exited'))
    process.channel.unref()
  }

  // An earlier run that could not stop (SIGKILL, a second Ctrl-C) left its stack in DEV_DIR.
  await mkdir(DEV_DIR, { recursive: true, mode: 0o700 })
  const earlier: Reclaimed = tracked ? await reclaim(DEV_DIR, note) : { outcome: 'clean' }
  if (earlier.outcome === 'busy') {
    err(`npm run dev: another npm run dev of this checkout started meanwhile (pid ${earlier.dev.pid})`)
    await closeLogs()
    process.exit(2)
  }
  if (earlier.outcome === 'reclaimed') out(reclaimedLine(earlier))
  if (stopping) return
  // workerd's temp dir (the D1 operations database) and the Worker bundle go under DEV_DIR too.
  process.env.TMPDIR = DEV_DIR
  const dev = tracked ? await processRef(process.pid) : undefined
  const startedAt = new Date().toISOString()
  if (dev) {
    await writeState(DEV_DIR, { version: 1, dev, startedAt, processes: [], mounts: [], cgroups: [] })
    ownState = true
  }
  const port = await portOrAny(wanted)
  // A fresh investigator key per run: the vault seals to it (the dev stack's only recipient).
  const investigator = generateIdentity()
  const identityFile = join(DEV_DIR, 'investigator.txt')
  await writeFile(identityFile, `# dev investigator, public key: ${investigator.recipient}\n${investigator.identity}\n`, { mode: 0o600 })

  out(mode === 'local'
    ? 'starting containerd 2.1 + registry (the first run fetches ≈160 MB of Debian packages), agent, gateway in workerd…'
    : `starting the agent against ${external} and the gateway in workerd…`)
  const t0 = performance.now()
  starting = startStack({
    dir: DEV_DIR,
    gatewayPort: port,
    ownSignals: true,
    hooks: HOOKS,
    vault: { recipients: [investigator.recipient] },
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
    if (ownState) await removeState(DEV_DIR).catch(() => {})
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
  let state: DevState | undefined
  if (dev) {
    state = await describeStack(dev, startedAt, stack.runtime?.root, stack.gatewayUrl)
    await writeState(DEV_DIR, state)
  }
  // miniflare keeps each D1 database as a SQLite file in this dir (created on first use).
  const operationsDb = await findDir(DEV_DIR, 'miniflare-D1DatabaseObject', 3)
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
   webhooks           POST /v1/hooks/alertmanager, /v1/hooks/grafana: alerts labelled checkpoint="true", no cooldown
   evidence vault     r2 in workerd (binding EVIDENCE), sealed with zstd + age to ${investigator.recipient.slice(0, 16)}…
   investigator key   ${identityFile}  (age identity, fresh each run)
   operations (D1)    ${operationsDb ? `${operationsDb}/ (SQLite, created on first use)` : `under ${DEV_DIR}`}
   dev dir            ${DEV_DIR}${state ? ` (all state; ${STATE_FILE} names ${state.processes.length} processes, ${state.mounts.length} mounts, ${state.cgroups.length} cgroups)` : ''}
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

# 5. An Alertmanager webhook (version "4") with one firing alert naming the ${stack.runtime ? 'demo ' : ''}container: the answer (202)
#    names the operation it queued; the checkpoint runs in the background (queued → running → succeeded):
ALERT='${alertmanagerBody(target, stack.runtime ? undefined : stack.node)}'
RESULT=$(curl -sS -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data "$ALERT" "$GW/v1/hooks/alertmanager"); echo "$RESULT"
OP=$(echo "$RESULT" | sed -E 's/.*"operation":"([^"]+)".*/\\1/')
sleep 3; curl -sS -w '\\n' -H "Authorization: Bearer $TOKEN" "$GW/v1/operations/$OP"

# 6. The evidence vault: checkpoint, seal (zstd, then age to the dev investigator's key) and store in R2; list the
#    evidence; fetch, decrypt and verify it with the CLI (or: curl the "url" of GET $GW/v1/evidence/$ID, then
#    age -d -i ${identityFile} evidence.tar.zst.age | zstd -d > evidence.tar):
RESULT=$(curl -sS -X POST -H "Authorization: Bearer $TOKEN" "$GW${base}/checkpoint/${target}?store=vault"); echo "$RESULT"
ID=$(echo "$RESULT" | sed -E 's/.*"key":"([^"]+)".*/\\1/')
curl -sS -w '\\n' -H "Authorization: Bearer $TOKEN" "$GW/v1/evidence"
CHECKPOINT_GATEWAY=$GW CHECKPOINT_TOKEN=$TOKEN ${join(REPO, 'node_modules/.bin/node')} ${join(REPO, 'cli/main.ts')} evidence get "$ID" -o evidence.tar -i ${identityFile}
${stack.runtime ? `${join(stack.runtime.binDir, 'checkpointctl')} show evidence.tar
` : ''}
# 7. The same with the investigators' command (cli/README.md): live progress, the evidence listed, fetched,
#    decrypted, its custody chain and signed statement verified; then the alert operations:
checkpoint() { ${join(REPO, 'node_modules/.bin/node')} ${join(REPO, 'cli/main.ts')} "$@"; }
export CHECKPOINT_GATEWAY=$GW CHECKPOINT_TOKEN=$TOKEN
checkpoint create ${stack.cluster}/${target} --node=${stack.node} --store --reason="dev walkthrough"
checkpoint ls ${stack.cluster}/${target.split('/')[0]}
ID=$(checkpoint ls ${stack.cluster}/${target.split('/')[0]} --json | sed -E 's/^\\{"evidence":\\[\\{"id":"([^"]+)".*/\\1/')
checkpoint get "$ID" -o walkthrough.tar -i ${identityFile}
checkpoint ops ${stack.cluster}

Errors are application/problem+json with a stable "code" (functions/README.md, "Errors"). Ctrl-C stops everything.
${rule}`)
}

/**
 * An Alertmanager notification (version "4", functions/README.md "Alert-triggered checkpoints") for a shell's
 * single quotes, with one firing alert whose labels name `target` (`ns/pod/container`) as the dev
 * hooks read them; `startsAt` is the moment it is pasted, so each paste is a new alert instance.
 * The node label only for an external runtime, whose pods the stack's fake Kubernetes API does
 * not know.
 */
function alertmanagerBody(target: string, node: string | undefined): string {
  const [namespace, pod, container] = target.split('/')
  const labels = { alertname: 'DevCheckpoint', severity: 'critical', checkpoint: 'true', namespace, pod, container, ...(node ? { node } : {}) }
  const now = '@NOW@'
  return JSON.stringify({ version: '4', status: 'firing', receiver: 'checkpoint', alerts: [{ status: 'firing', labels, startsAt: now }] })
    .replace(now, `'$(date -u +%Y-%m-%dT%H:%M:%SZ)'`)
}

function reclaimedLine(r: Extract<Reclaimed, { outcome: 'reclaimed' }>): string {
  const killed = r.killed.map((p) => `${p.name} ${p.pid}`).join(', ')
  return [
    `an earlier npm run dev${r.dev ? ` (pid ${r.dev.pid})` : ''} left its stack behind in ${DEV_DIR}; stopped it:`,
    `  processes killed: ${killed || 'none'}`,
    `  unmounted: ${r.mounts.length}, cgroups removed: ${r.cgroups.length}`,
  ].join('\n')
}

/** The first dir called `name` under `dir`, at most `depth` levels down (not into the stack's state dir). */
async function findDir(dir: string, name: string, depth: number): Promise<string | undefined> {
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory() || e.name.startsWith('cpgw-stack-')) continue
    if (e.name === name) return join(dir, e.name)
    const found = depth > 1 ? await findDir(join(dir, e.name), name, depth - 1) : undefined
    if (found) return found
  }
  return undefined
}

if (process.env[SUPERVISED] === '1') {
  await main().catch((e) => fail(e))
} else {
  settings() // explain and exit 2 here, before any child is started, if this cannot work
  supervise()
}
