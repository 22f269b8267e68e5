/**
 * The codebase's shape, measured on the running code rather than asserted by hand:
 *
 * - the checkpoint path: one checkpoint through the real Node gateway and a real agent (mutual TLS,
 *   the real CRI client against the fake CRI server). The product files on the call stack (async
 *   frames included) where the request leaves the gateway for the agent and where the agent calls
 *   the runtime are the path a reader follows; helpers a step calls and returns from (authz,
 *   grants, names, relay…) are not on it. The path has at most 12 files, enters none twice, and is
 *   the one the README's architecture picture names, in order;
 * - no import cycle among product files (functions/, agent/, shared/, cli/);
 * - no function over 120 lines in functions/, agent/, shared/ (read by indentation: from the line
 *   that opens it to the first line back at its indentation — the code is formatted that way).
 */
import assert from 'node:assert/strict'
import diagnostics from 'node:diagnostics_channel'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { connectRuntime, type Runtime } from '../../agent/cri/client.ts'
import { parseConfig } from '../../functions/config.ts'
import { loadNodeGrantKeys } from '../../functions/node/jws.ts'
import { startNodeGateway } from '../../functions/node/start.ts'
import type { Served } from '../../functions/node/server.ts'
import { makeIdentities, startTestAgent, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PRODUCT = /^(functions|agent|shared|cli)\//
const MAX_PATH_FILES = 12

/** Product files of a stack trace, outermost first, a file's consecutive frames as one stay. */
function stayedIn(stack: string): string[] {
  const files: string[] = []
  for (const line of stack.split('\n').reverse()) {
    const m = /\(?(?:file:\/\/)?(\/[^():]+\.ts):\d+:\d+\)?$/.exec(line.trim())
    if (!m) continue
    const file = relative(ROOT, m[1]!)
    if (!PRODUCT.test(file) || file.includes('node_modules')) continue
    if (files.at(-1) !== file) files.push(file)
  }
  return files
}

/** The README's path line: the backticked files after "The checkpoint path". */
function readmePath(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const at = readme.indexOf('The checkpoint path')
  assert.ok(at >= 0, 'README.md names the checkpoint path')
  const para = readme.slice(at, readme.indexOf('\n\n', at))
  return [...para.matchAll(/`((?:functions|agent|shared)\/[^`]+\.ts)`/g)].map((m) => m[1]!)
}

describe('the checkpoint path (Node gateway → agent → CheckpointContainer)', { timeout: 60_000 }, () => {
  let dir: string
  let cri: FakeCri
  let a: TestAgent
  let gw: Served
  let token: string
  const stacks: Array<{ at: string; stack: string }> = []
  const capture = (at: string) => {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 200
    stacks.push({ at, stack: new Error().stack! })
    Error.stackTraceLimit = limit
  }
  // Where the request leaves the gateway: undici creating the request to the agent.
  const onRequest = (m: unknown) => {
    const r = (m as { request: { method: string; path: string } }).request
    if (r.method === 'POST' && r.path.startsWith('/checkpoint/')) capture('agent request')
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'arch-path-'))
    const ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), {}, [{ id: 'c-api', namespace: 'shop', pod: 'api-0', container: 'app' }])
    // The agent's own CRI client, seen through a wrapper that records who calls it.
    const real = connectRuntime(cri.endpoint)
    const runtime = new Proxy(real, {
      get(t, k) {
        const v = (t as unknown as Record<PropertyKey, unknown>)[k]
        if (typeof v !== 'function') return v
        return (...args: unknown[]) => {
          capture(`runtime.${String(k)}`)
          return (v as (...a: unknown[]) => unknown).apply(t, args)
        }
      },
    }) as Runtime
    a = await startTestAgent({ ids, runtime, dir })
    const idp = await generateKeyPair('ES256', { extractable: true })
    const raw = {
      clusters: { prod: { agentUrl: a.agent.url, agentCa: ids.pki.ca.certPem } },
      auth: { issuers: ['https://idp.arch.test'], audience: 'gw', jwks: { keys: [{ ...(await exportJWK(idp.publicKey)), kid: 'idp', alg: 'ES256' }] } },
      policy: { rules: [{ id: 'ir', groups: ['ir'], actions: ['create'], clusters: ['*'], namespaces: ['*'] }] },
      grants: { issuer: 'gw-arch' },
    }
    gw = await startNodeGateway({
      config: parseConfig(raw, () => undefined),
      keys: await loadNodeGrantKeys([{ ...(await exportJWK(ids.grantKey)), kid: ids.kid, alg: 'EdDSA' }]),
      client: { cert: ids.gateway.certPem, key: ids.gateway.keyPem },
      port: 0,
      log: () => {},
    })
    token = await new SignJWT({ groups: ['ir'], scope: 'checkpoint:create' }).setProtectedHeader({ alg: 'ES256', kid: 'idp' })
      .setIssuer('https://idp.arch.test').setAudience('gw').setSubject('ivy').setIssuedAt().setExpirationTime('10m').sign(idp.privateKey as CryptoKey)
    diagnostics.subscribe('undici:request:create', onRequest)
  })
  after(async () => {
    diagnostics.unsubscribe('undici:request:create', onRequest)
    await gw?.close(2000)
    await a?.stop()
    await cri?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  for (const accept of ['application/json', 'application/x-ndjson']) {
    it(`${accept}: ≤ ${MAX_PATH_FILES} files, none entered twice, as the README names them`, async () => {
      stacks.length = 0
      const calls = cri.checkpointCalls.length
      const r = await fetch(`${gw.url}/v1/clusters/prod/nodes/${a.node}/checkpoint/shop/api-0/app`, { method: 'POST', headers: { authorization: `Bearer ${token}`, accept } })
      assert.equal(r.status, 200)
      const body = await r.text()
      assert.match(body, /"sha256":"[0-9a-f]{64}"/)
      assert.equal(cri.checkpointCalls.length, calls + 1)

      const at = (name: string) => stacks.filter((s) => s.at === name).map((s) => stayedIn(s.stack))
      const [leaving] = at('agent request')
      const [resolving] = at('runtime.listContainers')
      const [freezing] = at('runtime.checkpointContainer')
      assert.ok(leaving && resolving && freezing, `stacks at: ${stacks.map((s) => s.at).join(', ')}`)
      for (const stay of [leaving, resolving, freezing]) assert.equal(new Set(stay).size, stay.length, `a file entered twice: ${stay.join(' → ')}`)
      // The request's own stack in the agent, then the queued job's (it starts from the checkpointer's queue).
      assert.equal(freezing.at(0), resolving.at(-1), `the job runs in ${freezing.join(' → ')}`)
      const path = ['functions/node/main.ts', 'functions/node/start.ts', ...leaving, ...resolving, ...freezing.slice(1), 'agent/cri/client.ts']
      assert.equal(new Set(path).size, path.length, `a file entered twice: ${path.join(' → ')}`)
      assert.ok(path.length <= MAX_PATH_FILES, `${path.length} files: ${path.join(' → ')}`)
      assert.deepEqual(readmePath(), path)
    })
  }

  it('the entry reaches the listener: main.ts imports start.ts, which serves through server.ts', () => {
    assert.match(readFileSync(join(ROOT, 'functions/node/main.ts'), 'utf8'), /from '\.\/start\.ts'/)
    assert.match(readFileSync(join(ROOT, 'functions/node/start.ts'), 'utf8'), /import \{[^}]*\bserveFetch\b[^}]*\} from '\.\/server\.ts'/)
  })
})

/** Every .ts file under the product folders. */
function productFiles(): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(join(ROOT, d), { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory() && e.name !== 'node_modules' && e.name !== 'dist') walk(p)
      else if (e.isFile() && p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p)
    }
  }
  for (const d of ['functions', 'agent', 'shared', 'cli']) walk(d)
  return out
}

/** Relative imports of a file that exist at run time (`import type` and `export type` are erased). */
function runtimeImports(file: string, source: string): string[] {
  const found: string[] = []
  for (const m of source.matchAll(/^(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?'(\.{1,2}\/[^']+)'/gm)) {
    if (m[1]) continue
    found.push(relative(ROOT, resolve(ROOT, dirname(file), m[2]!)))
  }
  return found
}

/** Each import cycle once, as `a → b → a`. */
function cyclesOf(graph: Map<string, string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>()
  const cycles: string[] = []
  const visit = (f: string, trail: string[]) => {
    if (state.get(f) === 'done') return
    if (state.get(f) === 'open') {
      cycles.push([...trail.slice(trail.indexOf(f)), f].join(' → '))
      return
    }
    state.set(f, 'open')
    for (const g of graph.get(f) ?? []) if (graph.has(g)) visit(g, [...trail, f])
    state.set(f, 'done')
  }
  for (const f of graph.keys()) visit(f, [])
  return cycles
}

describe('imports', () => {
  it('no cycle among product files', () => {
    const graph = new Map(productFiles().map((f) => [f, runtimeImports(f, readFileSync(join(ROOT, f), 'utf8'))]))
    assert.ok(graph.size > 50, `${graph.size} files`)
    assert.deepEqual(cyclesOf(graph), [])
  })

  it('the cycle finder finds one', () => {
    const g = new Map([['a', ['b']], ['b', ['c', 'x']], ['c', ['a']], ['d', ['a']]])
    assert.deepEqual(cyclesOf(g), ['a → b → c → a'])
  })

  it('the import reader sees value imports and skips type-only ones', () => {
    const src = "import { a } from './a.ts'\nimport type { B } from './b.ts'\nexport { c } from '../c.ts'\nexport type { D } from './d.ts'\nimport './e.ts'\nimport x from 'hono'\n"
    assert.deepEqual(runtimeImports('functions/x.ts', src), ['functions/a.ts', 'c.ts', 'functions/e.ts'])
  })
})

const FUNCTION_START = /^(\s*)(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:function\b.*|(?:const|let)\s+[\w$]+\s*=.*=>\s*[{(]?\s*|.*=>\s*\{\s*|(?:(?:async|get|set|static|private|public)\s+)*\*?[\w$]+\s*(?:<[^>]*>)?\(.*\)\s*(?::\s*[^{=]+)?\{\s*)$/
const NOT_A_FUNCTION = /^(if|for|while|switch|\/\/|\*|\} else|catch|try)\b/
const CONTINUES = /^[.)?:]|^&&|^\|\||^\+/

/** Functions of a source file with their length in lines, longest first. */
function functionLengths(source: string): Array<{ line: number; lines: number; text: string }> {
  const lines = source.split('\n')
  const found: Array<{ line: number; lines: number; text: string }> = []
  lines.forEach((l, i) => {
    const m = FUNCTION_START.exec(l)
    if (!m || NOT_A_FUNCTION.test(l.trim())) return
    const indent = m[1]!.length
    let last = i
    for (let j = i + 1; j < lines.length; j++) {
      const t = lines[j]!.trim()
      if (t === '') continue
      last = j
      if (lines[j]!.length - lines[j]!.trimStart().length <= indent && !CONTINUES.test(t)) break
    }
    found.push({ line: i + 1, lines: last - i + 1, text: l.trim().slice(0, 80) })
  })
  return found.sort((a, b) => b.lines - a.lines)
}

describe('function length', () => {
  it('no function over 120 lines in functions/, agent/, shared/', () => {
    const long = productFiles().filter((f) => !f.startsWith('cli/'))
      .flatMap((f) => functionLengths(readFileSync(join(ROOT, f), 'utf8')).filter((x) => x.lines > 120).map((x) => `${f}:${x.line} ${x.lines} lines: ${x.text}`))
    assert.deepEqual(long, [])
  })

  it('the reader measures declarations, arrows and methods, nested ones too', () => {
    const body = (n: number, pad: string) => Array.from({ length: n }, (_, i) => `${pad}x${i}()`).join('\n')
    const src = [
      'export async function big(a: number): Promise<void> {', body(3, '  '),
      '  const inner = async (b: string) => {', body(121, '    '), '  }', '}',
      'class C {', '  method(x: number): string {', body(2, '    '), '  }', '}',
      'const f = (x: number) =>', '  x + 1',
    ].join('\n')
    const got = functionLengths(src).map((x) => [x.text.split('(')[0], x.lines])
    assert.deepEqual(got, [['export async function big', 128], ['const inner = async ', 123], ['method', 4], ['const f = ', 2]])
  })
})
