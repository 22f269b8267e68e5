/**
 * `checkpoint ops` against the Node gateway with webhooks (SQLite operations, the in-process
 * queue) in front of the fake agent: an Alertmanager alert becomes an operation the CLI lists,
 * shows, and follows with `--watch` to its end; a failing one exits 1 with its code.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { alertmanagerPayload } from '../support/gateway/hooks-payloads.ts'
import { AM_CLIENT, hooksConfig, nodeHooksTarget, tempDir } from '../support/gateway/hooks-targets.ts'
import type { GatewayUnderTest } from '../support/gateway/targets.ts'

const CLI = fileURLToPath(new URL('../../cli/main.ts', import.meta.url))

describe('checkpoint ops (the CLI)', () => {
  let world: World
  let gw: GatewayUnderTest
  let am: string
  let reader: string
  const tmp = tempDir()
  before(async () => {
    world = await makeWorld()
    gw = await nodeHooksTarget({ dbFile: join(tmp.dir, 'ops.sqlite') })(world, hooksConfig(world, { cooldownSec: 0, retry: { maxAttempts: 1 } }))
    am = await world.token({ sub: 'system:serviceaccount:monitoring:alertmanager', azp: AM_CLIENT, scope: 'checkpoint:create' })
    reader = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' })
  })
  after(async () => {
    await gw?.close()
    await world?.close()
    tmp.remove()
  })

  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', CHECKPOINT_GATEWAY: gw.url, CHECKPOINT_TOKEN: reader }, timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
    })
  const alert = async (pod: string) => {
    const body = alertmanagerPayload([{ labels: { alertname: 'ShellSpawned', checkpoint: 'true', namespace: 'shop-a', pod, container: 'app', node: 'node-a' } }])
    const r = await gw.fetch('/v1/hooks/alertmanager', { method: 'POST', headers: { authorization: `Bearer ${am}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    assert.equal(r.status, 202)
    return ((await r.json()) as { alerts: Array<{ operation: string }> }).alerts[0]!.operation
  }

  it('ops ID --watch follows an operation to its end (exit 0), printing each change; ops lists it', async () => {
    const id = await alert('slow')
    const r = await cli(['ops', id, '--watch', '--interval=0.1'])
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.trim().split('\n')
    assert.match(lines.at(-1)!, new RegExp(`succeeded +${id}  ShellSpawned  prod/shop-a/slow/app on node-a  \\(attempts 1\\)  checkpoint-slow_shop-a-app-`))
    const listed = await cli(['ops', 'prod/shop-a', '--state=succeeded', '--json'])
    assert.equal(listed.code, 0, listed.stderr)
    const items = (JSON.parse(listed.stdout) as { items: Array<{ id: string; state: string }> }).items
    assert.ok(items.some((o) => o.id === id && o.state === 'succeeded'))
    const plain = await cli(['ops'])
    assert.match(plain.stdout, new RegExp(id))
  })

  it('a failed operation: --watch exits 1 with its code', async () => {
    const id = await alert('fail-500')
    const r = await cli(['ops', id, '--watch', '--interval=0.1'])
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.match(r.stderr, /^checkpoint: runtime_error: operation [0-9a-f-]{36} failed/m)
  })

  it('usage: a bad interval, a bad scope', async () => {
    assert.equal((await cli(['ops', '--interval=0'])).code, 2)
    assert.equal((await cli(['ops', 'a/b/c'])).code, 2)
  })
})
