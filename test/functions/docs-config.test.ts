/**
 * Every gateway configuration the READMEs (top and functions/) and wrangler.toml show starts the real Node entry
 * as `npm run start:gateway` runs it (the bundle of functions/node/main.ts, built here with
 * functions/node/build.ts; the same parseConfig the Worker uses) and answers: documentation
 * cannot drift from the code unnoticed. The README's `hooks` fragment is tried inside its main
 * example.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { exportJWK, generateKeyPair } from 'jose'
import { BUNDLE, buildGateway } from '../../functions/node/build.ts'
import { NODE_FLAGS, PROCESS_ENV } from '../../functions/node/start.ts'
import { createPki, type Issued } from '../support/certs.ts'
import { stopChild } from '../support/process.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
/**
 * What `npm run start:gateway` runs, built once for this file into a directory of its own outside
 * the checkout: it starts with no node_modules beside it.
 */
let built: Promise<string> | undefined
const bundle = () => (built ??= mkdtemp(join(tmpdir(), 'gateway-bundle-')).then((d) => buildGateway(join(d, 'gateway.mjs'))))

/** The README's `r2` vault fragments: Workers only, so they are started in workerd (below). */
const r2Vaults: Array<Record<string, unknown>> = []

async function documentedConfigs(): Promise<Array<[string, Record<string, unknown>]>> {
  const readme = (await Promise.all(['README.md', 'functions/README.md'].map((f) => readFile(join(root, f), 'utf8')))).join('\n')
  const configs: Array<[string, Record<string, unknown>]> = []
  let hooks: unknown
  let vault: unknown
  r2Vaults.length = 0
  for (const [, block] of readme.matchAll(/```json\n([\s\S]*?)```/g)) {
    const text = block!.trim()
    if (text.startsWith('"hooks"')) hooks = (JSON.parse(`{${text}}`) as { hooks: unknown }).hooks
    else {
      const doc = JSON.parse(text) as Record<string, unknown>
      if (doc.clusters) configs.push([`README example ${configs.length + 1}`, doc])
      else if ((doc.vault as { backend?: string } | undefined)?.backend === 'r2') r2Vaults.push(doc.vault as Record<string, unknown>)
      else if (doc.vault) vault = doc.vault
    }
  }
  assert.ok(configs.length >= 1 && hooks && vault && r2Vaults.length > 0, 'the README shows a gateway configuration, a hooks fragment and s3 and r2 vault fragments')
  configs.push(['README example 1 with its hooks fragment', { ...configs[0]![1], hooks }])
  configs.push(['README example 1 with its vault fragment', { ...configs[0]![1], vault }])
  const toml = await readFile(join(root, 'wrangler.toml'), 'utf8')
  for (const [i, [, doc]] of [...toml.matchAll(/GATEWAY_CONFIG = '''\n([\s\S]*?)'''/g)].entries()) {
    configs.push([`wrangler.toml GATEWAY_CONFIG ${i + 1}`, JSON.parse(doc!) as Record<string, unknown>])
  }
  assert.ok(configs.length >= 5, 'wrangler.toml shows its configurations')
  return configs
}

/** Starts the Node entry with `config`; resolves with its URL once it says it listens. */
async function startEntry(env: Record<string, string>): Promise<{ url: string; stop: () => Promise<void>; output: () => string }> {
  const child = spawn(process.execPath, [...NODE_FLAGS, await bundle()], { env: { PATH: process.env.PATH ?? '', ...PROCESS_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr.on('data', (c: Buffer) => (out += c.toString()))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" line within 20 s: ${out}`)), 20_000)
    child.stdout.on('data', () => {
      const m = /"type":"listening","url":"([^"]+)"/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the gateway exited (${code}): ${out}`))
    })
  })
  return { url, stop: () => stopChild(child), output: () => out }
}

describe('every documented gateway configuration starts', async () => {
  let dir: string
  let client: Issued
  let grantKeys: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'docs-config-'))
    const pki = await createPki(join(dir, 'pki'))
    client = await pki.issue('gateway', { cn: 'gateway', usage: 'client' })
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true })
    grantKeys = JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'docs-1', alg: 'EdDSA' })
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
    if (built) await rm(dirname(await built), { recursive: true, force: true })
  })

  const base = async () => ({
    GRANT_SIGNING_KEYS: grantKeys,
    GATEWAY_CLIENT_CERT_FILE: client.cert,
    GATEWAY_CLIENT_KEY_FILE: client.key,
    KUBE_TOKEN_PROD_EU: 'token',
    GRAFANA_WEBHOOK_SECRET: 'secret',
    S3_ACCESS_KEY_ID: 'key-id',
    S3_SECRET_ACCESS_KEY: 'secret-key',
    PORT: '0',
  })

  it('npm run start:gateway builds the Node entry and runs the bundle with the flags and environment it is measured with', async () => {
    const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    const [build, run] = pkg.scripts['start:gateway']!.split(' && ')
    assert.equal(build, `node ${relative(root, fileURLToPath(new URL('../../functions/node/build.ts', import.meta.url)))}`)
    assert.equal(run, [...Object.entries(PROCESS_ENV).map(([k, v]) => `${k}=${v}`), 'node', ...NODE_FLAGS, relative(root, BUNDLE)].join(' '))
  })

  it('with hooks but no OPERATIONS_DB the Node entry refuses to start (no file in whatever directory it ran from)', async () => {
    const [, first] = (await documentedConfigs()).find(([n]) => n.includes('hooks'))!
    await assert.rejects(startEntry({ ...(await base()), GATEWAY_CONFIG: JSON.stringify(first) }), /OPERATIONS_DB must name/)
  })

  it('TLS_CERT_FILE/TLS_KEY_FILE serve HTTPS: the JWKS an agent fetches with --grant-jwks-url', async () => {
    const pki = await createPki(join(dir, 'pki-https'))
    const server = await pki.issue('server', { cn: 'localhost', ips: ['127.0.0.1'] })
    const [, first] = (await documentedConfigs())[0]!
    const gw = await startEntry({ ...(await base()), GATEWAY_CONFIG: JSON.stringify(first), TLS_CERT_FILE: server.cert, TLS_KEY_FILE: server.key })
    try {
      assert.match(gw.url, /^https:\/\/127\.0\.0\.1:\d+$/)
      const { Agent, request } = await import('undici')
      const dispatcher = new Agent({ connect: { ca: pki.ca.certPem } })
      const r = await request(`${gw.url}/.well-known/jwks.json`, { dispatcher })
      assert.equal(r.statusCode, 200)
      assert.deepEqual(((await r.body.json()) as { keys: Array<{ kid: string; d?: string }> }).keys.map((k) => [k.kid, k.d]), [['docs-1', undefined]])
      await dispatcher.destroy()
    } finally {
      await gw.stop()
    }
  })

  it('the r2 vault fragment, with README example 1, serves in workerd with its R2 binding (and Node refuses it, naming why)', async () => {
    const [, first] = (await documentedConfigs())[0]!
    const vault = r2Vaults[0]!
    const binding = (vault.r2 as { binding: string }).binding
    const { startWorkerGateway, removeBundle } = await import('../support/gateway/targets.ts')
    const gw = await startWorkerGateway({ config: { ...first, vault }, grantKeys: JSON.parse(grantKeys), client: { cert: await readFile(client.cert, 'utf8'), key: await readFile(client.key, 'utf8') }, ca: await readFile(client.cert, 'utf8'), secrets: { KUBE_TOKEN_PROD_EU: 'token' }, bindings: { d1: true, r2: [binding] } })
    try {
      assert.equal((await gw.fetch('/healthz')).status, 200)
      const r = await gw.fetch('/v1/evidence')
      assert.deepEqual([r.status, ((await r.json()) as { code: string }).code], [401, 'unauthenticated'])
      // The capability route is there, and refuses what is not a capability.
      const part = await gw.fetch('/v1/vault/uploads/u/parts/1?cap=x', { method: 'PUT', body: 'x' })
      assert.deepEqual([part.status, ((await part.json()) as { code: string }).code], [401, 'invalid_grant'])
    } finally {
      await gw.close()
      await removeBundle()
    }
    await assert.rejects(startEntry({ ...(await base()), GATEWAY_CONFIG: JSON.stringify({ ...first, vault }), OPERATIONS_DB: join(dir, 'r2.sqlite') }), /needs a Workers R2 binding|no R2 bucket binding/)
  })

  for (const [name, config] of await documentedConfigs()) {
    it(name, async () => {
      const gw = await startEntry({
        ...(await base()),
        GATEWAY_CONFIG: JSON.stringify(config),
        OPERATIONS_DB: join(dir, `${name.replace(/\W+/g, '-')}.sqlite`),
      })
      try {
        const health = await fetch(`${gw.url}/healthz`)
        assert.equal(health.status, 200)
        const jwks = (await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }
        assert.deepEqual(jwks.keys.map((k) => k.kid), ['docs-1'])
        // The whole pipeline is built: an unauthenticated API call is refused by code.
        const r = await fetch(`${gw.url}/v1/clusters/x/nodes/n/checkpoints`)
        assert.equal(r.status, 401)
        assert.equal(((await r.json()) as { code: string }).code, 'unauthenticated')
      } finally {
        await gw.stop()
      }
    })
  }
})
