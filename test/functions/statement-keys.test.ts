/**
 * The gateway collecting agents' statement keys (functions/custody/keys.ts): a statement naming an
 * unknown key makes it ask the node's agent; it records the keys whose id is their SPKI digest and
 * nothing else; a known key costs no agent call; an agent that fails leaves an error line only.
 * Real keys from the agent's own key loader, a real SQLite file.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { hintOf, loadStatementKey } from '../../agent/custody.ts'
import type { AgentClient } from '../../functions/agent-client.ts'
import type { ClusterConfig } from '../../functions/config.ts'
import { collectStatementKeys, keyidOfHint, sqlStatementKeys, type StatementKeyStore } from '../../functions/custody/keys.ts'
import { sqliteDriver } from '../../functions/node/sqlite.ts'

describe('statement keys collected per cluster and node', () => {
  let dir: string
  let store: StatementKeyStore
  let key: Awaited<ReturnType<typeof loadStatementKey>>
  let other: Awaited<ReturnType<typeof loadStatementKey>>
  const cl = { id: 'prod', agentUrl: 'https://{node}:8443', mtlsBinding: 'AGENT_MTLS' } as ClusterConfig
  const calls: string[] = []
  let answer: () => Response
  const agent = { forward: async (_cl: ClusterConfig, node: string, path: string) => (calls.push(`${node} ${path}`), answer()) } as unknown as AgentClient
  const logs: Array<Record<string, unknown>> = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stmt-keys-'))
    store = sqlStatementKeys(sqliteDriver(join(dir, 'keys.sqlite')), () => Date.parse('2026-11-30T10:00:00Z'))
    key = await loadStatementKey(join(dir, 'a.key'), 'ecdsa-p256')
    other = await loadStatementKey(join(dir, 'b.key'), 'ed25519')
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const published = (keys: Array<{ keyid: string; alg: string; publicKey: string }>) => () => Response.json({ node: 'node-1', keys })

  it('a hint is the base64 of the key id', () => {
    assert.equal(keyidOfHint(hintOf(key.keyid)), key.keyid)
    assert.equal(keyidOfHint('not a hint'), undefined)
    assert.equal(keyidOfHint(undefined), undefined)
  })

  it('an unknown key: the agent is asked; keys whose id is their digest are recorded, a forged id is not', async () => {
    answer = published([
      { keyid: key.keyid, alg: key.alg, publicKey: key.publicKeyPem },
      // Another key's PEM under this id: refused (a statement naming the id could not be checked against it).
      { keyid: other.keyid, alg: other.alg, publicKey: key.publicKeyPem },
    ])
    await collectStatementKeys(store, agent, cl, 'node-1', hintOf(key.keyid), (l) => logs.push(l))
    assert.deepEqual(calls, ['node-1 /statement-keys'])
    const keys = await store.list('prod')
    assert.deepEqual(keys.map((k) => [k.node, k.keyid, k.alg, k.firstSeen]), [['node-1', key.keyid, key.alg, '2026-11-30T10:00:00.000Z']])
    assert.equal(keys[0]!.publicKey, key.publicKeyPem)
    assert.deepEqual(await store.list('prod', 'node-2'), [])
  })

  it('a known key: no agent call', async () => {
    calls.length = 0
    await collectStatementKeys(store, agent, cl, 'node-1', hintOf(key.keyid), () => {})
    assert.deepEqual(calls, [])
  })

  it('an agent that fails or does not publish the key: an error line, nothing recorded, nothing thrown', async () => {
    answer = () => new Response('no', { status: 500 })
    logs.length = 0
    await collectStatementKeys(store, agent, cl, 'node-2', hintOf(other.keyid), (l) => logs.push(l))
    assert.equal(logs.length, 1)
    assert.match(String(logs[0]!.error), /node node-2 of prod: the agent answered 500/)
    answer = published([])
    await collectStatementKeys(store, agent, cl, 'node-2', hintOf(other.keyid), (l) => logs.push(l))
    assert.match(String(logs[1]!.error), /does not publish the key/)
    assert.deepEqual(await store.list('prod', 'node-2'), [])
  })
})
