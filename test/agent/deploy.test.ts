// agent/deploy against the agent itself: every flag and CHECKPOINT_AGENT_* variable the
// DaemonSet and the Containerfile use exists in agent/config.ts and parses (loadConfig), the
// mounts hold the paths the flags name, the probes hit the listen port, the termination grace
// outlasts --shutdown-grace, and the cert-manager certificates carry what the agent expects.
// No YAML library is installed: a parser for the subset the manifests use (block mappings and
// sequences, plain and quoted scalars) throws on anything else rather than misread it.
//
//   node_modules/.bin/node --test test/agent/deploy.test.ts
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { posix } from 'node:path'
import { envName, loadConfig, OPTIONS, type AgentConfig } from '../../agent/config.ts'
import { BUNDLE, NODE_FLAGS } from '../../agent/build.ts'
import { fileURLToPath } from 'node:url'

// ---- a YAML subset -------------------------------------------------------------------------

type Yaml = string | null | Yaml[] | { [key: string]: Yaml }
type Obj = { [key: string]: Yaml }

interface Line { no: number; indent: number; text: string }

/** Drops a `#` comment that starts a line or follows whitespace, outside quotes. */
function stripComment(line: string): string {
  let quote = ''
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quote) {
      if (c === quote) quote = ''
    } else if (c === '"' || c === "'") {
      quote = c
    } else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) {
      return line.slice(0, i).trimEnd()
    }
  }
  return line.trimEnd()
}

const KEY = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'#:\-[{][^:]*?|-[^\s:][^:]*?):(?:\s+|$)/
const isItem = (t: string) => t === '-' || t.startsWith('- ')

function scalar(raw: string, no: number): Yaml {
  const s = raw.trim()
  if (s.startsWith('"')) {
    if (!/^"(?:[^"\\]|\\.)*"$/.test(s)) throw new SyntaxError(`line ${no}: unterminated or trailing text after "…"`)
    return JSON.parse(s) as string
  }
  if (s.startsWith("'")) {
    if (!/^'(?:[^']|'')*'$/.test(s)) throw new SyntaxError(`line ${no}: unterminated or trailing text after '…'`)
    return s.slice(1, -1).replaceAll("''", "'")
  }
  if (s === '{}') return {}
  if (s === '[]') return []
  if (/^\[[^[\]{}"']*\]$/.test(s)) return s.slice(1, -1).split(',').map((x) => scalar(x, no))
  if (/^[|>&*!{[%@`]/.test(s)) throw new SyntaxError(`line ${no}: unsupported YAML: ${s.slice(0, 40)}`)
  return s
}

function parseNode(ls: Line[], i: number, indent: number): [Yaml, number] {
  return isItem(ls[i]!.text) ? parseSeq(ls, i, indent) : parseMap(ls, i, indent)
}

function parseSeq(ls: Line[], i: number, indent: number): [Yaml[], number] {
  const out: Yaml[] = []
  while (i < ls.length && ls[i]!.indent === indent && isItem(ls[i]!.text)) {
    const l = ls[i]!
    const rest = l.text.slice(1).trimStart()
    let v: Yaml
    if (rest === '') {
      i++
      if (i < ls.length && ls[i]!.indent > indent) [v, i] = parseNode(ls, i, ls[i]!.indent)
      else v = null
    } else if (KEY.test(rest) || isItem(rest)) {
      // "- key: value" opens a mapping whose keys line up with "key".
      const inner = indent + l.text.length - rest.length
      ls[i] = { ...l, indent: inner, text: rest }
      ;[v, i] = parseNode(ls, i, inner)
    } else {
      v = scalar(rest, l.no)
      i++
    }
    out.push(v)
  }
  if (i < ls.length && ls[i]!.indent > indent) throw new SyntaxError(`line ${ls[i]!.no}: unexpected indentation`)
  return [out, i]
}

function parseMap(ls: Line[], i: number, indent: number): [Obj, number] {
  const out: Obj = {}
  while (i < ls.length && ls[i]!.indent === indent) {
    const l = ls[i]!
    const m = KEY.exec(l.text)
    if (!m) throw new SyntaxError(`line ${l.no}: expected "key:", got ${l.text.slice(0, 40)}`)
    const key = String(scalar(m[1]!, l.no))
    if (Object.hasOwn(out, key)) throw new SyntaxError(`line ${l.no}: duplicate key ${key}`)
    const rest = l.text.slice(m[0].length)
    i++
    if (rest !== '') out[key] = scalar(rest, l.no)
    else if (i < ls.length && ls[i]!.indent > indent) [out[key], i] = parseNode(ls, i, ls[i]!.indent)
    else if (i < ls.length && ls[i]!.indent === indent && isItem(ls[i]!.text)) [out[key], i] = parseSeq(ls, i, indent)
    else out[key] = null
  }
  if (i < ls.length && ls[i]!.indent > indent) throw new SyntaxError(`line ${ls[i]!.no}: unexpected indentation`)
  return [out, i]
}

/** Parses a multi-document stream of the subset; values are strings (no typing of scalars). */
function parseYaml(text: string): Yaml[] {
  const docs: Line[][] = [[]]
  text.split('\n').forEach((raw, n) => {
    if (/^\s*\t/.test(raw)) throw new SyntaxError(`line ${n + 1}: tab in indentation`)
    const t = stripComment(raw)
    if (t.trim() === '') return
    if (t === '---') return void docs.push([])
    if (t.startsWith('%') || t === '...') throw new SyntaxError(`line ${n + 1}: unsupported YAML: ${t}`)
    docs.at(-1)!.push({ no: n + 1, indent: t.length - t.trimStart().length, text: t.trim() })
  })
  return docs.filter((d) => d.length > 0).map((ls) => {
    const [v, i] = parseNode(ls, 0, ls[0]!.indent)
    if (i < ls.length) throw new SyntaxError(`line ${ls[i]!.no}: unexpected indentation`)
    return v
  })
}

// ---- navigation ----------------------------------------------------------------------------

const obj = (v: Yaml | undefined): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? v : {})
const list = (v: Yaml | undefined): Yaml[] => (Array.isArray(v) ? v : [])
const str = (v: Yaml | undefined): string | undefined => (typeof v === 'string' ? v : undefined)
const strs = (v: Yaml | undefined): string[] => list(v).filter((x): x is string => typeof x === 'string')

// ---- Containerfile -------------------------------------------------------------------------

interface Image { entrypoint: string[]; cmd: string[]; env: Record<string, string>; copies: string[]; runs: string[] }

function parseContainerfile(text: string): { image: Image; problems: string[] } {
  const problems: string[] = []
  const image: Image = { entrypoint: [], cmd: [], env: {}, copies: [], runs: [] }
  const lines = text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n').replace(/\\\n/g, ' ').split('\n')
  for (const line of lines) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line)
    if (!m) continue
    const [, op, rest] = [m[0], m[1]!.toUpperCase(), m[2]!.trim()]
    if (op === 'FROM') Object.assign(image, { entrypoint: [], cmd: [], env: {} }) // a new stage starts afresh
    if (op === 'ENTRYPOINT' || op === 'CMD') {
      let argv: unknown
      try {
        argv = JSON.parse(rest)
      } catch {
        problems.push(`Containerfile: ${op} must use the exec form ["node", "agent/dist/agent.mjs", …] (signals reach node directly)`)
        continue
      }
      if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string')) problems.push(`Containerfile: ${op} is not a list of strings`)
      else image[op === 'CMD' ? 'cmd' : 'entrypoint'] = argv
    }
    if (op === 'ENV') {
      for (const kv of rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) image.env[kv[1]!] = kv[2]!.replace(/^"|"$/g, '')
      if (!rest.includes('=')) problems.push(`Containerfile: use ENV KEY=value (${rest})`)
    }
    if (op === 'COPY') image.copies.push(rest.startsWith('--from') ? rest.split(/\s+/).slice(-1)[0]! : rest.split(/\s+/).slice(0, -1).join(' '))
    if (op === 'RUN') image.runs.push(rest)
  }
  return { image, problems }
}

// ---- the checks ----------------------------------------------------------------------------

interface Files { daemonset: string; containerfile: string; certificate: string }

const OPTION_NAMES = new Set(Object.keys(OPTIONS))
/** Where agent/build.ts writes the bundle, relative to the repository (and the image's WORKDIR). */
const BUNDLE_PATH = posix.relative(fileURLToPath(new URL('../../', import.meta.url)), BUNDLE)
const ENV_TO_OPTION = new Map(Object.keys(OPTIONS).map((o) => [envName(o), o]))
/** What cert-manager writes into a certificate's secret. */
const CERT_MANAGER_KEYS = ['tls.crt', 'tls.key', 'ca.crt']

function flagsOf(argv: string[], where: string, problems: string[]): string[] {
  const seen = new Set<string>()
  const out: string[] = []
  for (const a of argv) {
    const m = /^--([a-z0-9-]+)=(.*)$/s.exec(a)
    if (!m) {
      problems.push(`${where}: argument ${JSON.stringify(a)} is not --option=value`)
      continue
    }
    if (!OPTION_NAMES.has(m[1]!)) problems.push(`${where}: unknown flag --${m[1]} (not in agent/config.ts OPTIONS)`)
    if (seen.has(m[1]!)) problems.push(`${where}: --${m[1]} given twice`)
    seen.add(m[1]!)
    out.push(a)
  }
  return out
}

/** Every disagreement between the deploy files and the agent, as readable lines; [] when none. */
function checkDeploy(files: Files): string[] {
  const problems: string[] = []
  const docs = parseYaml(files.daemonset).map(obj)
  const ds = docs.find((d) => d.kind === 'DaemonSet')
  if (!ds) return ['daemonset.yaml: no DaemonSet']
  const namespace = str(obj(ds.metadata).namespace)
  const pod = obj(obj(obj(ds.spec).template).spec)
  const containers = list(pod.containers).map(obj)
  const c = containers.length === 1 ? containers[0]! : containers.find((x) => x.name === 'agent')
  if (!c) return ['daemonset.yaml: no container named agent']

  // Flags and variables: the image's, then the DaemonSet's (args replace CMD, env overlays ENV).
  const { image, problems: imageProblems } = parseContainerfile(files.containerfile)
  problems.push(...imageProblems)
  // The image runs the bundle agent/build.ts makes, with its node flags (the measured form): built in the image, copied into its last stage.
  const main = image.entrypoint.indexOf(BUNDLE_PATH)
  const head = ['node', ...NODE_FLAGS, BUNDLE_PATH]
  if (main !== head.length - 1 || head.some((a, i) => image.entrypoint[i] !== a)) problems.push(`Containerfile: ENTRYPOINT must be ${JSON.stringify([...head, '…'])}`)
  if (!image.runs.some((r) => r === 'node agent/build.ts')) problems.push('Containerfile: no RUN node agent/build.ts builds the bundle')
  if (!image.copies.includes(BUNDLE_PATH)) problems.push(`Containerfile: nothing copies ${BUNDLE_PATH} into the final image`)
  const imageFlags = flagsOf(image.entrypoint.slice(main + 1), 'Containerfile ENTRYPOINT', problems)
  const cmdFlags = flagsOf(image.cmd, 'Containerfile CMD', problems)
  if (c.command !== undefined) problems.push('daemonset.yaml: command replaces the image ENTRYPOINT; pass flags as args')
  const dsFlags = flagsOf(strs(c.args), 'daemonset.yaml args', problems)
  if (list(c.args).length !== strs(c.args).length) problems.push('daemonset.yaml: every arg must be a string')
  const argv = [...imageFlags, ...(c.args !== undefined ? dsFlags : cmdFlags)]

  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(image.env)) {
    if (k.startsWith('CHECKPOINT_AGENT_') && !ENV_TO_OPTION.has(k)) problems.push(`Containerfile: unknown variable ${k} (not in agent/config.ts OPTIONS)`)
    env[k] = v
  }
  let nodeNameFromSpec = false
  for (const e of list(c.env).map(obj)) {
    const name = str(e.name) ?? ''
    const fieldPath = str(obj(obj(e.valueFrom).fieldRef).fieldPath)
    if (name.startsWith('CHECKPOINT_AGENT_') && !ENV_TO_OPTION.has(name)) problems.push(`daemonset.yaml: unknown variable ${name} (not in agent/config.ts OPTIONS)`)
    const option = ENV_TO_OPTION.get(name)
    if (option && argv.some((a) => a.startsWith(`--${option}=`))) problems.push(`daemonset.yaml: ${name} and --${option} both set (the flag wins)`)
    if ((name === 'NODE_NAME' || name === envName('node-name')) && fieldPath === 'spec.nodeName') nodeNameFromSpec = true
    if (e.value !== undefined) env[name] = str(e.value) ?? ''
    else if (fieldPath) env[name] = 'node-a'
    else if (name) problems.push(`daemonset.yaml: ${name} has neither value nor fieldRef`)
  }
  if (!nodeNameFromSpec) problems.push('daemonset.yaml: the node name must come from spec.nodeName (env NODE_NAME), as grants name nodes')
  if (argv.some((a) => a.startsWith('--node-name='))) problems.push('daemonset.yaml: --node-name is fixed for every node; use NODE_NAME from spec.nodeName')

  let cfg: AgentConfig
  try {
    cfg = loadConfig(argv, env)
  } catch (err) {
    problems.push(`the agent would not start with these options: ${(err as Error).message}`)
    return problems
  }

  // Mounts: each path a flag names must be inside a volume that provides it.
  const volumes = new Map(list(pod.volumes).map(obj).map((v) => [str(v.name) ?? '', v]))
  const mounts = list(c.volumeMounts).map(obj).map((m) => ({ name: str(m.name) ?? '', path: str(m.mountPath) ?? '', readOnly: str(m.readOnly) === 'true' }))
  for (const m of mounts) if (!volumes.has(m.name)) problems.push(`daemonset.yaml: mount ${m.path} names no volume ${m.name}`)
  const mountOf = (p: string) => mounts
    .filter((m) => p === m.path || p.startsWith(m.path.replace(/\/$/, '') + '/'))
    .sort((a, b) => b.path.length - a.path.length)[0]
  const relative = (p: string, m: { path: string }) => posix.relative(m.path, p)

  const dirMount = mountOf(cfg.checkpointDir)
  const dirHost = dirMount && str(obj(volumes.get(dirMount.name)?.hostPath).path)
  if (!dirMount || dirHost === undefined) {
    problems.push(`daemonset.yaml: --checkpoint-dir ${cfg.checkpointDir} is not on a hostPath volume`)
  } else {
    // The runtime writes the archive on the host at the path the agent gives it.
    const onHost = posix.join(dirHost, relative(cfg.checkpointDir, dirMount))
    if (onHost !== cfg.checkpointDir) problems.push(`daemonset.yaml: --checkpoint-dir ${cfg.checkpointDir} is ${onHost} on the host; the runtime writes to the host path, so they must be equal`)
    if (dirMount.readOnly) problems.push('daemonset.yaml: the checkpoint directory is mounted read-only')
  }

  const socket = /^unix:\/\/(\/.+)$/.exec(cfg.runtimeEndpoint ?? '')?.[1]
  if (!socket) problems.push('daemonset.yaml: --runtime-endpoint must name a unix socket (unix:///…)')
  else if (!volumes.get(mountOf(socket)?.name ?? '')?.hostPath) problems.push(`daemonset.yaml: the runtime socket ${socket} is not on a hostPath volume`)

  const tlsSecrets = new Set<string>()
  const provided = (flag: string, path: string, kinds: ('secret' | 'configMap')[]) => {
    const m = mountOf(path)
    const v = m && volumes.get(m.name)
    const kind = v && kinds.find((k) => v[k] !== undefined)
    if (!m || !v || !kind) return void problems.push(`daemonset.yaml: --${flag} ${path} is not in a ${kinds.join(' or ')} volume`)
    const src = obj(v[kind])
    const items = list(src.items).map(obj)
    const files = items.length ? items.map((it) => str(it.path) ?? '') : kind === 'secret' ? CERT_MANAGER_KEYS : []
    if (!files.includes(relative(path, m))) {
      problems.push(`daemonset.yaml: --${flag} ${path}: the ${kind} volume ${m.name} provides ${files.join(', ') || 'no listed files (add items)'}`)
    }
    if (kind === 'secret') tlsSecrets.add(str(src.secretName) ?? '')
  }
  provided('tls-cert', cfg.tls.cert, ['secret'])
  provided('tls-key', cfg.tls.key, ['secret'])
  provided('tls-ca', cfg.tls.ca, ['secret', 'configMap'])
  if (cfg.grants.jwksFile) provided('grant-jwks-file', cfg.grants.jwksFile, ['configMap', 'secret'])

  // The listen port: declared, and what the probes connect to (plain TCP: no client certificate).
  const ports = list(c.ports).map(obj)
  const resolvePort = (p: string | undefined) => str(ports.find((x) => x.name === p)?.containerPort) ?? p
  if (!ports.some((p) => Number(str(p.containerPort)) === cfg.listen.port)) problems.push(`daemonset.yaml: no containerPort ${cfg.listen.port} (--listen)`)
  for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
    const p = obj(c[probe])
    if (c[probe] === undefined) continue
    if (p.httpGet !== undefined || p.grpc !== undefined) problems.push(`daemonset.yaml: ${probe} must be tcpSocket: the agent requires a client certificate the kubelet does not have`)
    const port = resolvePort(str(obj(p.tcpSocket).port))
    if (p.tcpSocket !== undefined && Number(port) !== cfg.listen.port) problems.push(`daemonset.yaml: ${probe} checks port ${port}, the agent listens on ${cfg.listen.port}`)
  }
  if (c.readinessProbe === undefined || c.livenessProbe === undefined) problems.push('daemonset.yaml: readiness and liveness probes are required')

  const grace = Number(str(pod.terminationGracePeriodSeconds) ?? '30')
  if (!(grace > cfg.shutdownGraceMs / 1000)) {
    problems.push(`daemonset.yaml: terminationGracePeriodSeconds ${grace} must exceed --shutdown-grace (${cfg.shutdownGraceMs / 1000}s), or running checkpoints are killed`)
  }
  if (str(obj(c.securityContext).readOnlyRootFilesystem) !== 'true') problems.push('daemonset.yaml: readOnlyRootFilesystem must be true')

  // Certificates: the agent's secret comes from a server certificate; every allowed client
  // identity is carried by a client certificate.
  const certs = parseYaml(files.certificate).map(obj).filter((d) => d.kind === 'Certificate')
  for (const cert of certs) {
    const ns = str(obj(cert.metadata).namespace)
    if (ns !== namespace) problems.push(`certificate.yaml: ${str(obj(cert.metadata).name)} is in namespace ${ns}, the agent in ${namespace}`)
    if (!str(obj(obj(cert.spec).issuerRef).name)) problems.push(`certificate.yaml: ${str(obj(cert.metadata).name)} has no issuerRef`)
  }
  for (const secret of tlsSecrets) {
    const cert = certs.find((x) => str(obj(x.spec).secretName) === secret)
    if (!cert) {
      problems.push(`certificate.yaml: no Certificate writes the secret ${secret} the agent mounts`)
      continue
    }
    const spec = obj(cert.spec)
    if (!strs(spec.usages).includes('server auth')) problems.push(`certificate.yaml: ${secret} needs usage "server auth"`)
    if (strs(spec.dnsNames).length === 0) problems.push(`certificate.yaml: ${secret} needs dnsNames for the nodes' agent URLs`)
  }
  for (const id of cfg.allowedClients) {
    const [kind, value] = [id.slice(0, id.indexOf(':')), id.slice(id.indexOf(':') + 1)]
    const field = kind === 'uri' ? 'uris' : kind === 'dns' ? 'dnsNames' : 'commonName'
    const carrier = certs.find((x) => {
      const spec = obj(x.spec)
      return strs(spec.usages).includes('client auth') && (field === 'commonName' ? str(spec.commonName) === value : strs(spec[field]).includes(value))
    })
    if (!carrier) problems.push(`certificate.yaml: no client-auth Certificate carries ${id} (--allowed-clients)`)
  }
  return problems
}

// ---- tests ---------------------------------------------------------------------------------

const read = (name: string) => readFileSync(new URL(`../../agent/deploy/${name}`, import.meta.url), 'utf8')
const FILES: Files = { daemonset: read('daemonset.yaml'), containerfile: read('Containerfile'), certificate: read('certificate.yaml') }

/** Replaces `from` (which must be there, so a drifting manifest cannot make a case vacuous). */
function mutate(files: Files, key: keyof Files, from: string | RegExp, to: string): Files {
  assert.ok(typeof from === 'string' ? files[key].includes(from) : from.test(files[key]), `${key} no longer contains ${from}`)
  return { ...files, [key]: files[key].replace(from, to) }
}

describe('agent/deploy', () => {
  it('agrees with agent/config.ts: flags, variables, mounts, ports, grace, certificates', () => {
    assert.deepEqual(checkDeploy(FILES), [])
  })

  it('uses every kind of option the check covers (flags and variables)', () => {
    const ds = FILES.daemonset
    assert.match(ds, /^\s*- --[a-z-]+=/m)
    assert.match(ds, /name: CHECKPOINT_AGENT_[A-Z_]+/)
  })

  const broken: [string, (f: Files) => Files, RegExp][] = [
    ['an unknown flag', (f) => mutate(f, 'daemonset', '- --shutdown-grace=2m', '- --shutdown-grace=2m\n            - --no-such-flag=1'), /unknown flag --no-such-flag/],
    ['a flag value the agent rejects', (f) => mutate(f, 'daemonset', '--listen=0.0.0.0:10443', '--listen=10443'), /would not start.*--listen/],
    ['an unknown variable', (f) => mutate(f, 'daemonset', 'name: CHECKPOINT_AGENT_LOG_LEVEL', 'name: CHECKPOINT_AGENT_LOGLEVEL'), /unknown variable CHECKPOINT_AGENT_LOGLEVEL/],
    ['a variable that repeats a flag', (f) => mutate(f, 'daemonset', 'name: CHECKPOINT_AGENT_LOG_LEVEL', 'name: CHECKPOINT_AGENT_SHUTDOWN_GRACE'), /SHUTDOWN_GRACE and --shutdown-grace both set/],
    ['an unknown flag in the Containerfile', (f) => mutate(f, 'containerfile', '"agent/dist/agent.mjs"]', '"agent/dist/agent.mjs", "--bogus=1"]'), /Containerfile ENTRYPOINT: unknown flag --bogus/],
    ['the TypeScript entry instead of the bundle', (f) => mutate(f, 'containerfile', '"agent/dist/agent.mjs"]', '"agent/main.ts"]'), /ENTRYPOINT must be \["node",.*"agent\/dist\/agent.mjs"/],
    ['the bundle without the node flags it is measured with', (f) => mutate(f, 'containerfile', '["node", "--max-semi-space-size=1", "agent/dist/agent.mjs"]', '["node", "agent/dist/agent.mjs"]'), /ENTRYPOINT must be \["node","--max-semi-space-size=1","agent\/dist\/agent.mjs"/],
    ['no bundle built', (f) => mutate(f, 'containerfile', 'RUN node agent/build.ts', 'RUN true'), /no RUN node agent\/build.ts/],
    ['an unknown variable in the Containerfile', (f) => mutate(f, 'containerfile', 'ENV NODE_ENV=production', 'ENV NODE_ENV=production CHECKPOINT_AGENT_DIR=/x'), /Containerfile: unknown variable CHECKPOINT_AGENT_DIR/],
    ['a grace shorter than --shutdown-grace', (f) => mutate(f, 'daemonset', '--shutdown-grace=2m', '--shutdown-grace=5m'), /terminationGracePeriodSeconds 150 must exceed --shutdown-grace \(300s\)/],
    ['a checkpoint dir at another host path', (f) => mutate(f, 'daemonset', 'path: /var/lib/kubelet/checkpoints', 'path: /var/lib/checkpoints'), /is \/var\/lib\/checkpoints on the host/],
    ['a checkpoint dir outside every mount', (f) => mutate(f, 'daemonset', '--checkpoint-dir=/var/lib/kubelet/checkpoints', '--checkpoint-dir=/checkpoints'), /--checkpoint-dir \/checkpoints is not on a hostPath volume/],
    ['a socket outside the mounts', (f) => mutate(f, 'daemonset', 'unix:///run/containerd/containerd.sock', 'unix:///var/run/crio/crio.sock'), /runtime socket \/var\/run\/crio\/crio.sock is not on a hostPath/],
    ['a TLS file the secret does not have', (f) => mutate(f, 'daemonset', '--tls-key=/etc/checkpoint-agent/tls/tls.key', '--tls-key=/etc/checkpoint-agent/tls/key.pem'), /--tls-key .*key.pem: the secret volume tls provides tls.crt, tls.key, ca.crt/],
    ['a JWKS file the ConfigMap does not project', (f) => mutate(f, 'daemonset', '--grant-jwks-file=/etc/checkpoint-agent/grants/jwks.json', '--grant-jwks-file=/etc/checkpoint-agent/grants/keys.json'), /--grant-jwks-file .*keys.json: the configMap volume grant-jwks provides jwks.json/],
    ['a probe on another port', (f) => mutate(f, 'daemonset', /tcpSocket:\n(\s+)port: 10443/, 'tcpSocket:\n$1port: 8080'), /readinessProbe checks port 8080/],
    ['an HTTPS probe', (f) => mutate(f, 'daemonset', /tcpSocket:\n(\s+)port: 10443/, 'httpGet:\n$1path: /readyz\n$1port: 10443\n$1scheme: HTTPS'), /readinessProbe must be tcpSocket/],
    ['a node name not from spec.nodeName', (f) => mutate(f, 'daemonset', 'fieldPath: spec.nodeName', 'fieldPath: metadata.name'), /node name must come from spec.nodeName/],
    ['an allowed client no certificate carries', (f) => mutate(f, 'certificate', '- spiffe://checkpoint.example.com/gateway', '- spiffe://checkpoint.example.com/other'), /no client-auth Certificate carries uri:spiffe/],
    ['a server certificate without server auth', (f) => mutate(f, 'certificate', '    - server auth\n', ''), /checkpoint-agent-tls needs usage "server auth"/],
  ]
  for (const [what, breakIt, expected] of broken) {
    it(`fails on ${what}`, () => {
      const problems = checkDeploy(breakIt(FILES))
      assert.ok(problems.some((p) => expected.test(p)), `expected ${expected} among:\n${problems.join('\n') || '(no problems)'}`)
    })
  }
})

describe('the YAML subset parser', () => {
  it('reads block mappings and sequences, inline "- key:" items, quotes and comments', () => {
    const [doc, second] = parseYaml([
      'a: 1 # comment',
      'b:',
      '  - x',
      '  - "y # not a comment"',
      '  - k: v',
      '    l:',
      '    - m',
      'c: {}',
      "d: 'it''s'",
      '---',
      '- --flag=unix:///s.sock',
    ].join('\n'))
    assert.deepEqual(doc, { a: '1', b: ['x', 'y # not a comment', { k: 'v', l: ['m'] }], c: {}, d: "it's" })
    assert.deepEqual(second, ['--flag=unix:///s.sock'])
  })

  it('refuses what it does not understand instead of misreading it', () => {
    assert.throws(() => parseYaml('a: |\n  text'), /unsupported YAML/)
    assert.throws(() => parseYaml('a: &anchor x'), /unsupported YAML/)
    assert.throws(() => parseYaml('a: b\n  c: d'), /unexpected indentation/)
    assert.throws(() => parseYaml('a: 1\na: 2'), /duplicate key/)
    assert.throws(() => parseYaml('a:\n\t- b'), /tab/)
  })
})
