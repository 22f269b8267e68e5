/** `checkpoint config get|diff|apply` against a Node gateway whose configuration lives in its store. */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { loadGrantKeys } from '../../functions/grants.ts'
import type { Served } from '../../functions/node/server.ts'
import { startNodeGateway } from '../../functions/node/start.ts'
import { KUBE_TOKEN, makeWorld, type World } from '../support/gateway/fixtures.ts'

const CLI = fileURLToPath(new URL('../../cli/main.ts', import.meta.url))

describe('checkpoint config', () => {
  let world: World
  let gw: Served
  let dir: string
  let admin: string
  before(async () => {
    world = await makeWorld()
    dir = await mkdtemp(join(tmpdir(), 'cli-config-'))
    const raw = world.rawConfig() as { policy: { rules: unknown[] } }
    raw.policy.rules.push({ id: 'admins', subjects: ['root'], actions: ['admin'], clusters: ['*'], namespaces: ['*'] })
    gw = await startNodeGateway({
      source: { kind: 'store', document: raw, secret: (n) => (n === 'KUBE_TOKEN_PROD' ? KUBE_TOKEN : undefined), refreshMs: 0 },
      keys: await loadGrantKeys(world.grantKeys),
      client: { cert: world.pki.clientCert, key: world.pki.clientKey },
      port: 0,
      log: () => {},
      operationsDb: join(dir, 'gateway.sqlite'),
    })
    admin = await world.token({ sub: 'root', scope: 'checkpoint:admin' })
  })
  after(async () => {
    await gw?.close(2000)
    await world?.close()
    await rm(dir, { recursive: true, force: true })
  })

  const cli = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', CHECKPOINT_GATEWAY: gw.url, CHECKPOINT_TOKEN: admin }, timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
  })

  it('get → edit → diff shows the permission gained → apply stores it; a stale ETag is refused', async () => {
    const file = join(dir, 'config.json')
    const got = await cli(['config', 'get', '-o', file])
    assert.equal(got.code, 0, got.stderr)
    assert.match(got.stdout, /version 1 \(store\)/)
    const firstEtag = await readFile(`${file}.etag`, 'utf8')
    const doc = JSON.parse(await readFile(file, 'utf8')) as { policy: { rules: unknown[] } }
    doc.policy.rules.push({ id: 'zed', subjects: ['zed'], actions: ['read'], clusters: ['edge'], namespaces: ['x'] })
    await writeFile(file, JSON.stringify(doc))
    const diff = await cli(['config', 'diff', file])
    assert.equal(diff.code, 0, diff.stderr)
    assert.match(diff.stdout, /^added rule zed$/m)
    assert.match(diff.stdout, /^\+ subject:zed read on edge \/ x$/m)
    const applied = await cli(['config', 'apply', file])
    assert.equal(applied.code, 0, applied.stderr)
    assert.match(applied.stdout, /applied as version 2/)
    // Someone else's change came first: the version this file was read at is no longer the newest.
    await writeFile(`${file}.etag`, firstEtag)
    const stale = await cli(['config', 'apply', file])
    assert.equal(stale.code, 1)
    assert.match(stale.stderr, /^checkpoint: precondition_failed: /m)
    await rm(`${file}.etag`)
    assert.equal((await cli(['config', 'apply', file])).code, 2)
  })

  it('an invalid document is refused by code and never stored', async () => {
    const file = join(dir, 'bad.json')
    assert.equal((await cli(['config', 'get', '-o', file])).code, 0)
    const doc = JSON.parse(await readFile(file, 'utf8')) as { clusters: Record<string, { agentUrl: string }> }
    doc.clusters.prod!.agentUrl = 'not a url'
    await writeFile(file, JSON.stringify(doc))
    const r = await cli(['config', 'apply', file])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^checkpoint: invalid_config: /m)
  })
})
