/** `npm run grant-keys`: the pair it writes signs grants the agent's verifier accepts, and never overwrites. */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createGrantVerifier } from '../../agent/grants.ts'
import { loadGrantKeys } from '../../functions/grants.ts'

const script = fileURLToPath(new URL('../../functions/node/grant-keys.ts', import.meta.url))
const run = (args: string[]) => promisify(execFile)(process.execPath, [script, ...args])

describe('npm run grant-keys', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grant-keys-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })
  it('writes a 0600 private key the gateway loads and a public set the agent verifies with', async () => {
    await run([`--out=${dir}`, '--kid=k1'])
    const keyFile = join(dir, 'grant-signing-key.json')
    const jwksFile = join(dir, 'grant-jwks.json')
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600)
    const jwks = JSON.parse(await readFile(jwksFile, 'utf8')) as { keys: Array<Record<string, unknown>> }
    assert.deepEqual(jwks.keys.map((k) => [k.kid, k.alg, 'd' in k]), [['k1', 'EdDSA', false]])
    const keys = await loadGrantKeys(await readFile(keyFile, 'utf8'))
    const now = Date.now()
    const grant = await keys.sign({ op: 'checkpoint:list', node: 'n1' }, now, 60, 'gw')
    const verifier = await createGrantVerifier({ node: 'n1', issuer: 'gw', maxLifetimeSeconds: 3600, jwksFile })
    const claims = await verifier.verify(`Bearer ${grant}`, { op: 'checkpoint:list' })
    assert.equal(claims.op, 'checkpoint:list')
    await verifier.close()
  })
  it('refuses to overwrite a key that exists', async () => {
    await assert.rejects(run([`--out=${dir}`]), (e: { code?: number; stderr?: string }) => e.code === 1 && /EEXIST/.test(e.stderr ?? ''))
  })
})
