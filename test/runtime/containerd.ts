/**
 * A real CRI runtime for e2e tests and `npm run dev`: containerd 2.x (with runc and CRIU, fetched
 * by `fetch.sh`) plus a local `docker-registry`, all under one temp dir, on a unix socket and
 * 127.0.0.1 only. The `containerd-1.7` flavor runs Debian trixie's containerd 1.7 instead (same
 * runc, CRIU and registry), a real runtime that answers CheckpointContainer with UNIMPLEMENTED.
 *
 * @example
 * const rt = await startLocalRuntime()   // or startLocalRuntime({ flavor: 'containerd-1.7' })
 * try {
 *   const image = await buildAndPushBusybox(rt.registry, 'demo/counter', 'v1')
 *   const { containerId } = await runPod(rt.endpoint, { namespace: 'default', pod: 'p', container: 'c', image, command: ['sleep', '60'] })
 * } finally {
 *   await rt.stop()
 * }
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import { createWriteStream, existsSync, openSync, readdirSync, readSync, closeSync, statSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, rmdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import { call, criServices } from '../../agent/cri/client.ts'
import { dumpLogErrors } from '../../agent/cri/dump-log.ts'
import { freePort } from '../support/net.ts'
import { stopChild } from '../support/process.ts'

const execFileP = promisify(execFile)
const FETCH_SH = fileURLToPath(new URL('./fetch.sh', import.meta.url))

export interface LocalRuntime {
  /** `unix://<root>/containerd.sock` */
  endpoint: string
  /** The temp dir that holds everything (containerd root and state, registry storage, logs). */
  root: string
  /** The runtime cache's bin dir (containerd, ctr, runc, criu, checkpointctl, busybox…). */
  binDir: string
  /** Runs `ctr --address <socket> …args` and returns its stdout. Pass `--fifo-dir` to `tasks exec`. */
  ctr(args: string[]): Promise<string>
  /** Runs the cached checkpointctl and returns its stdout. */
  checkpointctl(args: string[]): Promise<string>
  /** `127.0.0.1:<port>` of the local registry (plain HTTP). */
  registry: string
  /** Removes pods, stops containerd and the registry, unmounts leftovers, deletes `root`. Idempotent. */
  stop(): Promise<void>
}

/**
 * Which containerd: `containerd-2` (sid, 2.1; checkpoints) or `containerd-1.7` (trixie, 1.7.24;
 * CRI CheckpointContainer is UNIMPLEMENTED), each from its own cache dir.
 */
export type RuntimeFlavor = 'containerd-2' | 'containerd-1.7'

export interface StartOptions {
  /** Parent dir for the runtime's temp dir. Default `os.tmpdir()`. */
  dir?: string
  /** Default `containerd-2`. */
  flavor?: RuntimeFlavor
  log?: (line: string) => void
}

/** Per-endpoint bookkeeping for runtimes started here: pods to remove on stop, logs, cgroups. */
const started = new Map<string, { root: string; cgroup: string; pods: Set<string> }>()

const cacheDirs = new Map<RuntimeFlavor, Promise<string>>()

/**
 * Runs fetch.sh once per process and flavor; resolves to the runtime cache dir. Without an argument
 * (or `containerd-2`): the default cache, whose `bin/busybox` the images are built from.
 */
export function runtimeCache(flavor: RuntimeFlavor = 'containerd-2'): Promise<string> {
  let dir = cacheDirs.get(flavor)
  if (!dir) {
    const args = flavor === 'containerd-1.7' ? ['--containerd=1.7'] : []
    dir = execFileP(FETCH_SH, args, { maxBuffer: 16 << 20, timeout: 300_000 }).then(({ stdout }) => stdout.trim())
    cacheDirs.set(flavor, dir)
  }
  return dir
}

const PAUSE_REPO = 'local/pause'
const PAUSE_TAG = 'busybox'

/**
 * Starts the registry, then containerd, and waits until the CRI socket answers Version.
 * On any failure everything started so far is torn down before the error is thrown.
 */
export async function startLocalRuntime(opts: StartOptions = {}): Promise<LocalRuntime> {
  const log = opts.log ?? (() => {})
  const flavor = opts.flavor ?? 'containerd-2'
  const t0 = performance.now()
  const cache = await runtimeCache(flavor)
  const binDir = join(cache, 'bin')
  log(`runtime cache ${cache} (${ms(t0)})`)

  const root = await mkdtemp(join(opts.dir ?? tmpdir(), 'cpgw-rt-'))
  const socket = join(root, 'containerd.sock')
  const endpoint = `unix://${socket}`
  const procs: Daemons = {}
  const pods = new Set<string>()
  let stopped: Promise<void> | undefined
  const env = { ...process.env, PATH: `${binDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` }

  const ctr = async (args: string[]) =>
    (await execFileP(join(binDir, 'ctr'), ['--address', socket, ...args], { env, maxBuffer: 64 << 20, timeout: 60_000 })).stdout
  const checkpointctl = async (args: string[]) =>
    (await execFileP(join(binDir, 'checkpointctl'), args, { env, maxBuffer: 64 << 20, timeout: 60_000 })).stdout

  const stop = () => {
    stopped ??= teardown({ root, socket, endpoint, pods, procs, ctr, log })
    return stopped
  }

  try {
    // Registry first: containerd pulls the sandbox image from it.
    const port = await freePort()
    const registry = `127.0.0.1:${port}`
    await mkdir(join(root, 'registry'))
    await writeFile(
      join(root, 'registry.yml'),
      [
        'version: 0.1',
        'log:',
        '  level: warn',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${join(root, 'registry')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: ${registry}`,
        '',
      ].join('\n'),
    )
    const registryProc = startDaemon(join(binDir, 'docker-registry'), ['serve', join(root, 'registry.yml')], join(root, 'registry.log'), env)
    procs.registry = registryProc
    await waitFor(
      async () => {
        if (registryProc.exitCode !== null) throw new Error(`registry exited with ${registryProc.exitCode}`)
        const res = await fetch(`http://${registry}/v2/`)
        await res.body?.cancel()
        return res.ok
      },
      10_000,
      async () => `registry did not answer on ${registry}\n${await tail(join(root, 'registry.log'))}`,
    )
    log(`registry on ${registry} (${ms(t0)})`)

    const pause = await buildAndPushBusybox(registry, PAUSE_REPO, PAUSE_TAG, {
      // PID 1 ignores signals it has no handler for, so trap TERM to let StopPodSandbox finish fast.
      entrypoint: ['/bin/sh', '-c', 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done'],
    })

    const snapshotter = (await overlaySupported(root)) ? 'overlayfs' : 'native'
    const defaults = (await execFileP(join(binDir, 'containerd'), ['config', 'default'], { env })).stdout
    const configure = flavor === 'containerd-1.7' ? containerdConfigV2 : containerdConfig
    await writeFile(join(root, 'config.toml'), configure(defaults, { root, socket, pause, snapshotter }))
    log(`${flavor === 'containerd-2' ? 'containerd' : flavor} config written (snapshotter ${snapshotter}) (${ms(t0)})`)

    const tStart = performance.now()
    const containerdLog = join(root, 'containerd.log')
    const containerd = startDaemon(join(binDir, 'containerd'), ['--config', join(root, 'config.toml')], containerdLog, env)
    procs.containerd = containerd
    const cri = criServices(endpoint)
    try {
      await waitFor(
        async () => {
          if (containerd.exitCode !== null) throw new Error(`containerd exited with ${containerd.exitCode}`)
          if (!existsSync(socket)) return false
          const v = await call(cri.runtime, 'Version', { version: 'v1' }, 1_000)
          return Boolean(v.runtimeName)
        },
        20_000,
        async () => `containerd did not answer Version on ${endpoint}\n${await tail(containerdLog)}`,
      )
    } finally {
      cri.close()
    }
    log(`containerd ready in ${ms(tStart)} (total ${ms(t0)})`)

    started.set(endpoint, { root, cgroup: cgroupName(root), pods })
    return { endpoint, root, binDir, ctr, checkpointctl, registry, stop }
  } catch (err) {
    await stop().catch((e) => log(`teardown after failed start: ${e}`))
    throw err
  }
}

export interface PodSpec {
  namespace: string
  pod: string
  container: string
  /** An image reference, or (CRI restore) the absolute path of a checkpoint archive. */
  image: string
  /** The container's command; ignored by containerd when restoring from an archive. */
  command: string[]
  uid?: string
  attempt?: number
}

/**
 * Runs a one-container pod the way kubelet would: host network, no hostname, kubelet labels on
 * the sandbox and the container. Pulls the image first unless it is a checkpoint archive path.
 */
export async function runPod(endpoint: string, spec: PodSpec): Promise<{ podId: string; containerId: string }> {
  const uid = spec.uid ?? randomUUID()
  const attempt = spec.attempt ?? 0
  const podLabels = {
    'io.kubernetes.pod.namespace': spec.namespace,
    'io.kubernetes.pod.name': spec.pod,
    'io.kubernetes.pod.uid': uid,
  }
  const local = started.get(endpoint)
  const namespaces = { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' }
  const sandboxConfig = {
    metadata: { name: spec.pod, uid, namespace: spec.namespace, attempt },
    logDirectory: local ? join(local.root, 'pods', `${spec.namespace}_${spec.pod}_${uid}`) : '',
    labels: podLabels,
    annotations: {},
    linux: {
      // kubelet-style parent; one per runtime so teardown can find and remove its cgroups.
      cgroupParent: local ? `/${local.cgroup}/pod${uid}` : '',
      securityContext: { namespaceOptions: namespaces },
    },
  }
  const cri = criServices(endpoint)
  try {
    if (!spec.image.startsWith('/')) {
      await call(cri.image, 'PullImage', { image: { image: spec.image }, sandboxConfig }, 120_000)
    }
    const { podSandboxId: podId } = await call(cri.runtime, 'RunPodSandbox', { config: sandboxConfig }, 120_000)
    local?.pods.add(podId)
    const containerConfig = {
      metadata: { name: spec.container, attempt },
      image: { image: spec.image },
      command: spec.command,
      labels: { ...podLabels, 'io.kubernetes.container.name': spec.container },
      annotations: {},
      logPath: local ? `${spec.container}/${attempt}.log` : '',
      linux: { securityContext: { namespaceOptions: namespaces } },
    }
    const { containerId } = await call(cri.runtime, 'CreateContainer', { podSandboxId: podId, config: containerConfig, sandboxConfig }, 120_000)
    await call(cri.runtime, 'StartContainer', { containerId }, 120_000)
    return { podId, containerId }
  } finally {
    cri.close()
  }
}

/** Stops and removes a pod sandbox (and its containers). Idempotent, like the CRI calls. */
export async function removePod(endpoint: string, podId: string): Promise<void> {
  const cri = criServices(endpoint)
  try {
    await call(cri.runtime, 'StopPodSandbox', { podSandboxId: podId }, 60_000)
    await call(cri.runtime, 'RemovePodSandbox', { podSandboxId: podId }, 60_000)
    started.get(endpoint)?.pods.delete(podId)
  } finally {
    cri.close()
  }
}

// ---- image ---------------------------------------------------------------------------------

/** Applets linked into the image besides /bin/busybox itself. */
const APPLETS = ['sh', 'sleep', 'cat', 'echo', 'ls', 'ps', 'kill', 'true', 'false', 'env', 'mkdir', 'rm', 'date', 'head', 'tail', 'wc', 'dd', 'grep', 'seq', 'yes']

/**
 * Builds a one-layer OCI image from the cached busybox-static binary and pushes it to `registry`
 * through the registry HTTP API. Deterministic: the same inputs give the same digests.
 * Returns `registry/repo:tag`.
 */
export async function buildAndPushBusybox(
  registry: string,
  repo: string,
  tag: string,
  opts: { entrypoint?: string[]; cmd?: string[] } = {},
): Promise<string> {
  const busybox = await readFile(join(await runtimeCache(), 'bin', 'busybox'))
  const tar = tarArchive([
    { name: 'bin/', type: 'dir', mode: 0o755 },
    { name: 'bin/busybox', type: 'file', mode: 0o755, data: busybox },
    ...APPLETS.map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, mode: 0o777, target: 'busybox' })),
    { name: 'etc/', type: 'dir', mode: 0o755 },
    { name: 'etc/passwd', type: 'file', mode: 0o644, data: Buffer.from('root:x:0:0:root:/:/bin/sh\n') },
    { name: 'etc/group', type: 'file', mode: 0o644, data: Buffer.from('root:x:0:\n') },
    { name: 'tmp/', type: 'dir', mode: 0o1777 },
  ])
  const layer = gzipSync(tar)
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['PATH=/bin'], Entrypoint: opts.entrypoint ?? null, Cmd: opts.cmd ?? (opts.entrypoint ? null : ['/bin/sh']), WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
    }),
  )
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
    }),
  )
  const base = `http://${registry}/v2/${repo}`
  for (const blob of [layer, config]) await pushBlob(base, blob)
  const res = await fetch(`${base}/manifests/${tag}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: manifest,
  })
  if (res.status !== 201) throw new Error(`manifest PUT ${repo}:${tag}: ${res.status} ${await res.text()}`)
  return `${registry}/${repo}:${tag}`
}

async function pushBlob(base: string, blob: Buffer): Promise<void> {
  const digest = sha256(blob)
  if ((await fetch(`${base}/blobs/${digest}`, { method: 'HEAD' })).ok) return
  const start = await fetch(`${base}/blobs/uploads/`, { method: 'POST' })
  const location = start.headers.get('location')
  await start.body?.cancel()
  if (start.status !== 202 || !location) throw new Error(`blob upload POST: ${start.status}`)
  const url = new URL(location, base)
  url.searchParams.set('digest', digest)
  const put = await fetch(url, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: blob })
  if (put.status !== 201) throw new Error(`blob upload PUT ${digest}: ${put.status} ${await put.text()}`)
}

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

type TarEntry =
  | { name: string; type: 'dir'; mode: number }
  | { name: string; type: 'file'; mode: number; data: Buffer }
  | { name: string; type: 'symlink'; mode: number; target: string }

/** A minimal ustar writer: root-owned entries, mtime 0, names < 100 bytes. */
function tarArchive(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = []
  for (const e of entries) {
    const data = e.type === 'file' ? e.data : Buffer.alloc(0)
    const h = Buffer.alloc(512)
    const put = (offset: number, length: number, value: string) => h.write(value, offset, length, 'utf8')
    const octal = (offset: number, length: number, value: number) => put(offset, length, value.toString(8).padStart(length - 1, '0') + '\0')
    if (Buffer.byteLength(e.name) >= 100) throw new TypeError(`tar name too long: ${e.name}`)
    put(0, 100, e.name)
    octal(100, 8, e.mode)
    octal(108, 8, 0)
    octal(116, 8, 0)
    octal(124, 12, data.length)
    octal(136, 12, 0)
    put(156, 1, e.type === 'file' ? '0' : e.type === 'symlink' ? '2' : '5')
    if (e.type === 'symlink') put(157, 100, e.target)
    put(257, 6, 'ustar\0')
    put(263, 2, '00')
    put(265, 32, 'root')
    put(297, 32, 'root')
    h.fill(' ', 148, 156)
    let sum = 0
    for (const byte of h) sum += byte
    put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ')
    blocks.push(h, data)
    if (data.length % 512) blocks.push(Buffer.alloc(512 - (data.length % 512)))
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

// ---- containerd config ---------------------------------------------------------------------

type ConfigEdit = [section: string, key: string, value: string]
type ConfigPaths = { root: string; socket: string; pause: string; snapshotter: string }

/** A TOML string (single-quoted: no escapes). */
const q = (s: string) => `'${s}'`

/** Root, state and temp dirs under `o.root`, and the sockets: the same keys in config versions 2 and 3. */
function baseEdits(o: ConfigPaths): ConfigEdit[] {
  return [
    ['', 'root', q(join(o.root, 'root'))],
    ['', 'state', q(join(o.root, 'state'))],
    ['', 'temp', q(join(o.root, 'tmp'))],
    ['grpc', 'address', q(o.socket)],
    ['ttrpc', 'address', q(`${o.socket}.ttrpc`)],
  ]
}

/**
 * Adjusts `containerd config default` (config version 3) for this machine. Each edit must find
 * its key, so a containerd that renamed one fails here loudly instead of running misconfigured.
 */
function containerdConfig(defaults: string, o: ConfigPaths): string {
  const edits: ConfigEdit[] = [
    ...baseEdits(o),
    ["plugins.'io.containerd.cri.v1.images'", 'snapshotter', q(o.snapshotter)],
    ["plugins.'io.containerd.cri.v1.images'.pinned_images", 'sandbox', q(o.pause)],
    // No CAP_SYS_RESOURCE: oom_score_adj cannot be lowered below containerd's own.
    ["plugins.'io.containerd.cri.v1.runtime'", 'restrict_oom_score_adj', 'true'],
    ["plugins.'io.containerd.cri.v1.runtime'", 'enable_cdi', 'false'],
    ["plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options", 'Root', q(join(o.root, 'runc'))],
    ["plugins.'io.containerd.cri.v1.runtime'.cni", 'conf_dir', q(join(o.root, 'cni'))],
    ["plugins.'io.containerd.cri.v1.runtime'.cni", 'bin_dirs', `[${q(join(o.root, 'cni'))}]`],
    ["plugins.'io.containerd.nri.v1.nri'", 'disable', 'true'],
    ["plugins.'io.containerd.internal.v1.opt'", 'path', q(join(o.root, 'opt'))],
    ["plugins.'io.containerd.image-verifier.v1.bindir'", 'bin_dir', q(join(o.root, 'image-verifier'))],
  ]
  return editConfig(defaults, edits)
}

/**
 * Adjusts `containerd config default` of containerd 1.7 (config version 2: the CRI plugin is
 * `io.containerd.grpc.v1.cri`, the sandbox image is `sandbox_image`). Same settings as for 2.x.
 */
function containerdConfigV2(defaults: string, o: ConfigPaths): string {
  if (!/^version = 2$/m.test(defaults)) throw new Error('containerd config: expected a version 2 default config')
  const cri = 'plugins."io.containerd.grpc.v1.cri"'
  const edits: ConfigEdit[] = [
    ...baseEdits(o),
    [cri, 'sandbox_image', q(o.pause)],
    // No CAP_SYS_RESOURCE: oom_score_adj cannot be lowered below containerd's own.
    [cri, 'restrict_oom_score_adj', 'true'],
    [cri, 'enable_cdi', 'false'],
    [`${cri}.containerd`, 'snapshotter', q(o.snapshotter)],
    [`${cri}.containerd.runtimes.runc.options`, 'Root', q(join(o.root, 'runc'))],
    [`${cri}.cni`, 'conf_dir', q(join(o.root, 'cni'))],
    [`${cri}.cni`, 'bin_dir', q(join(o.root, 'cni'))],
    ['plugins."io.containerd.nri.v1.nri"', 'disable', 'true'],
    ['plugins."io.containerd.internal.v1.opt"', 'path', q(join(o.root, 'opt'))],
    ['[plugins."io.containerd.transfer.v1.local".unpack_config]', 'snapshotter', q(o.snapshotter)],
  ]
  return editConfig(defaults, edits)
}

/**
 * Sets `key = value` in `[section]` (`''`: the top level; `[x]` for the array table `[[x]]`). Each
 * edit must find its key, so a containerd that renamed one fails here loudly instead of running
 * misconfigured.
 */
function editConfig(defaults: string, edits: ConfigEdit[]): string {
  const lines = defaults.split('\n')
  for (const [section, key, value] of edits) {
    let i = section === '' ? 0 : lines.findIndex((l) => l.trim() === `[${section}]`) + 1
    if (i === 0 && section !== '') throw new Error(`containerd config: no [${section}] section`)
    for (; i < lines.length && !lines[i].trim().startsWith('['); i++) {
      const m = /^(\s*)([\w.'-]+)\s*=/.exec(lines[i])
      if (m && m[2] === key) break
    }
    if (i >= lines.length || lines[i].trim().startsWith('[')) throw new Error(`containerd config: no ${key} in [${section}]`)
    lines[i] = `${/^\s*/.exec(lines[i])![0]}${key} = ${value}`
  }
  return lines.join('\n')
}

/** Overlay over a dir on the same filesystem as the runtime root; containerd falls over if not. */
async function overlaySupported(root: string): Promise<boolean> {
  const d = join(root, 'overlay-check')
  for (const sub of ['lower', 'upper', 'work', 'merged']) await mkdir(join(d, sub), { recursive: true })
  try {
    const o = `lowerdir=${d}/lower,upperdir=${d}/upper,workdir=${d}/work`
    await execFileP('mount', ['-t', 'overlay', 'overlay', '-o', o, join(d, 'merged')], { timeout: 10_000 })
    await execFileP('umount', [join(d, 'merged')], { timeout: 10_000 })
    return true
  } catch {
    return false
  } finally {
    await rm(d, { recursive: true, force: true })
  }
}

// ---- processes -----------------------------------------------------------------------------

interface Daemons {
  registry?: ChildProcess
  containerd?: ChildProcess
}

function startDaemon(bin: string, args: string[], logFile: string, env: NodeJS.ProcessEnv): ChildProcess {
  const out = createWriteStream(logFile)
  const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout!.pipe(out, { end: false })
  child.stderr!.pipe(out, { end: false })
  child.once('exit', () => setImmediate(() => out.end()))
  child.on('error', (err) => out.write(`spawn error: ${err}\n`))
  return child
}

async function teardown(s: {
  root: string
  socket: string
  endpoint: string
  pods: Set<string>
  procs: Daemons
  ctr: (args: string[]) => Promise<string>
  log: (line: string) => void
}): Promise<void> {
  const errors: unknown[] = []
  const { containerd, registry } = s.procs
  if (containerd && containerd.exitCode === null && existsSync(s.socket)) {
    for (const podId of [...s.pods]) await removePod(s.endpoint, podId).catch((e) => errors.push(e))
    // Anything not created through runPod (raw CreateContainer calls, ctr): kill and delete tasks.
    try {
      const tasks = (await s.ctr(['-n', 'k8s.io', 'tasks', 'ls', '-q'])).split('\n').filter(Boolean)
      for (const id of tasks) await s.ctr(['-n', 'k8s.io', 'tasks', 'rm', '-f', id]).catch((e) => errors.push(e))
    } catch (e) {
      errors.push(e)
    }
  }
  started.delete(s.endpoint)
  if (containerd) await stopChild(containerd)
  if (registry) await stopChild(registry)
  await reclaimRuntime(s.root, s.log)
  await rm(s.root, { recursive: true, force: true, maxRetries: 3 }).catch((e) => errors.push(e))
  if (errors.length) s.log(`teardown: ${errors.length} error(s): ${errors.map(String).join('; ')}`)
}

/** What a local runtime under a root still holds on this machine. */
export interface RuntimeResidue {
  /** Its processes: containerd, the registry, shims, containers (see {@link reclaimRuntime}). */
  pids: number[]
  /** Mount points at or under the root, deepest first. */
  mounts: string[]
  /** Its cgroup dirs, one per hierarchy that has one. */
  cgroups: string[]
}

/** What the runtime under `root` runs, mounts and owns in cgroups right now; changes nothing (frozen cgroups excepted: they are thawed). */
export async function runtimeResidue(root: string): Promise<RuntimeResidue> {
  return {
    pids: await runtimeProcesses(root),
    mounts: mountsUnder(await readFile('/proc/self/mountinfo', 'utf8'), root),
    cgroups: cgroupDirs(cgroupName(root)),
  }
}

/**
 * Stops whatever the local runtime under `root` left behind: SIGKILLs its processes (containerd,
 * the registry, shims — they outlive containerd by design — and containers), lazily unmounts
 * everything under `root`, removes its cgroups. The end of {@link LocalRuntime.stop}, and how
 * `npm run dev` cleans up after an earlier run that was killed (test/dev/leftovers.ts). Leaves
 * `root` itself in place. Resolves to what it found.
 */
export async function reclaimRuntime(root: string, log: (line: string) => void = () => {}): Promise<RuntimeResidue> {
  const found = await runtimeResidue(root)
  const killed = await killStragglers(root, log)
  const mounts = await unmountUnder(root, log)
  await removeCgroups(cgroupName(root))
  // Shim sockets (and ctr's default fifos) live under containerd's compiled-in /run/containerd,
  // whatever the config says; drop those dirs if we left them empty.
  for (const dir of ['/run/containerd/s', '/run/containerd/fifo', '/run/containerd']) await rmdir(dir).catch(() => {})
  return { pids: [...new Set([...found.pids, ...killed])], mounts, cgroups: found.cgroups }
}

/** Pids in the cgroup trees named `name` (all hierarchies), after thawing any frozen ones. */
async function cgroupPids(name: string): Promise<number[]> {
  const pids = new Set<number>()
  const walk = async (dir: string): Promise<void> => {
    // A frozen (checkpoint-paused) cgroup would hold SIGKILL pending: thaw it first.
    if (dir.includes('/freezer/')) await writeFile(join(dir, 'freezer.state'), 'THAWED').catch(() => {})
    for (const line of (await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n')) {
      if (/^\d+$/.test(line)) pids.add(Number(line))
    }
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) await walk(join(dir, e.name))
  }
  for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [])) await walk(join('/sys/fs/cgroup', hierarchy, name))
  return [...pids]
}

/**
 * The runtime's processes: those whose command line or root directory lies under `root`
 * (containerd, the registry, shims: `-address <root>/containerd.sock`), and every process in its
 * cgroups (containers live in their own mount namespace, so the first test misses them when
 * containerd died before it could remove them, e.g. on a terminal's Ctrl-C). Never this process.
 */
async function runtimeProcesses(root: string): Promise<number[]> {
  const pids = new Set((await cgroupPids(cgroupName(root))).filter((pid) => pid !== process.pid))
  for (const name of await readdir('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    try {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replaceAll('\0', ' ')
      const procRoot = await readlink(`/proc/${pid}/root`).catch(() => '')
      if (cmdline.includes(root) || procRoot.startsWith(root)) pids.add(pid)
    } catch {
      // exited meanwhile
    }
  }
  return [...pids]
}

/** SIGKILLs the runtime's processes (see {@link runtimeProcesses}) until none is left (5 rounds); resolves to the pids it killed. */
async function killStragglers(root: string, log: (line: string) => void): Promise<number[]> {
  const killed = new Set<number>()
  for (let round = 0; round < 5; round++) {
    const victims = await runtimeProcesses(root)
    if (victims.length === 0) break
    log(`killing leftover processes ${victims.join(' ')}`)
    for (const pid of victims) {
      try {
        process.kill(pid, 'SIGKILL')
        killed.add(pid)
      } catch {
        // gone
      }
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  return [...killed]
}

/**
 * Mount points at or under `dir` in a `/proc/<pid>/mountinfo` text (octal escapes such as `\040`
 * decoded), deepest first.
 *
 * @example
 * mountsUnder(await readFile('/proc/self/mountinfo', 'utf8'), '/tmp/cpgw-rt-x') // ['/tmp/cpgw-rt-x/state/…/rootfs', …]
 */
export function mountsUnder(mountinfo: string, dir: string): string[] {
  const base = dir.replace(/\/+$/, '')
  return mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => Boolean(p))
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === base || p.startsWith(`${base}/`))
    .sort((a, b) => b.length - a.length)
}

/** Lazily unmounts every mount point under `root`, deepest first; resolves to those it found. */
async function unmountUnder(root: string, log: (line: string) => void): Promise<string[]> {
  const points = mountsUnder(await readFile('/proc/self/mountinfo', 'utf8'), root)
  for (const p of points) {
    log(`unmounting leftover ${p}`)
    await execFileP('umount', ['-l', p], { timeout: 10_000 }).catch((e) => log(`umount ${p}: ${e}`))
  }
  return points
}

function cgroupName(root: string): string {
  return basename(root)
}

/** The cgroup v1 dirs named `name` at the top of every hierarchy. */
function cgroupDirs(name: string): string[] {
  let hierarchies: string[]
  try {
    hierarchies = readdirSync('/sys/fs/cgroup')
  } catch {
    return []
  }
  return hierarchies.map((h) => join('/sys/fs/cgroup', h, name)).filter((dir) => existsSync(dir))
}

/** Removes (empty) cgroup v1 dirs named `name` at the top of every hierarchy, deepest first. */
async function removeCgroups(name: string): Promise<void> {
  const removeTree = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
    for (const e of entries) if (e.isDirectory()) await removeTree(join(dir, e.name))
    await rmdir(dir).catch(() => {})
  }
  for (const dir of cgroupDirs(name)) await removeTree(dir)
}

// ---- helpers -------------------------------------------------------------------------------

async function waitFor(probe: () => Promise<boolean>, timeoutMs: number, explain: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      if (await probe()) return
    } catch (err) {
      last = err
      if (err instanceof Error && /exited with/.test(err.message)) break
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${await explain()}${last ? `\nlast error: ${last}` : ''}`)
}

async function tail(file: string, bytes = 4000): Promise<string> {
  try {
    const size = statSync(file).size
    const fd = openSync(file, 'r')
    const buf = Buffer.alloc(Math.min(bytes, size))
    readSync(fd, buf, 0, buf.length, size - buf.length)
    closeSync(fd)
    return `--- tail of ${file} ---\n${buf.toString('utf8')}`
  } catch {
    return `(no ${file})`
  }
}

function ms(since: number): string {
  return `${Math.round(performance.now() - since)} ms`
}

/**
 * For a test's failure message: CRIU's error lines from the dump log a runtime error names (the
 * agent's own reader, agent/cri/dump-log.ts); '' when there is none. Agent answers carry them
 * already (`runtimeLog`); this is for direct CRI calls.
 */
export async function criuErrors(message: string): Promise<string> {
  return (await dumpLogErrors(message)).join('\n')
}
