/** The CLI's offline commands as a child process: keys, decrypt (age + zstd), verify (signed statements). */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { loadStatementKey, signStatement, statementFor } from '../../agent/custody.ts'
import { seal } from '../../agent/seal/seal.ts'

const CLI = fileURLToPath(new URL('../../cli/main.ts', import.meta.url))
const cli = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
  execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '' }, timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
})

describe('checkpoint keys / decrypt / verify', () => {
  let dir: string
  let archive: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cli-evidence-'))
    archive = join(dir, 'checkpoint.tar')
    await writeFile(archive, Buffer.concat([randomBytes(300_000), Buffer.alloc(500_000), Buffer.from('text '.repeat(40_000))]))
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('keys age makes a 0600 identity and prints its recipient; decrypt opens what was sealed to it', async () => {
    const k = await cli(['keys', 'age', '-o', join(dir, 'me.txt')])
    assert.equal(k.code, 0, k.stderr)
    const recipient = k.stdout.trim()
    assert.match(recipient, /^age1[a-z0-9]{58}$/)
    assert.equal((await stat(join(dir, 'me.txt'))).mode & 0o777, 0o600)
    await seal(archive, [recipient], createWriteStream(join(dir, 'e.tar.zst.age')))
    const d = await cli(['decrypt', join(dir, 'e.tar.zst.age'), '-i', join(dir, 'me.txt'), '-o', join(dir, 'out.tar')])
    assert.equal(d.code, 0, d.stderr)
    assert.ok((await readFile(join(dir, 'out.tar'))).equals(await readFile(archive)))
    assert.match(d.stdout, new RegExp(`sha256 ${createHash('sha256').update(await readFile(archive)).digest('hex')}`))
  })

  it('decrypt refuses another identity and damaged evidence, leaving no output', async () => {
    assert.equal((await cli(['keys', 'age', '-o', join(dir, 'other.txt')])).code, 0)
    const wrong = await cli(['decrypt', join(dir, 'e.tar.zst.age'), '-i', join(dir, 'other.txt'), '-o', join(dir, 'wrong.tar')])
    assert.equal(wrong.code, 1)
    assert.match(wrong.stderr, /^checkpoint: not_a_recipient: /m)
    await assert.rejects(stat(join(dir, 'wrong.tar')))
    const cut = join(dir, 'cut.tar.zst.age')
    await writeFile(cut, await readFile(join(dir, 'e.tar.zst.age')))
    await truncate(cut, (await stat(cut)).size - 100)
    const damaged = await cli(['decrypt', cut, '-i', join(dir, 'me.txt'), '-o', join(dir, 'cut.tar')])
    assert.equal(damaged.code, 1)
    assert.match(damaged.stderr, /^checkpoint: evidence_damaged: /m)
    await assert.rejects(stat(join(dir, 'cut.tar')))
    await assert.rejects(stat(join(dir, 'cut.tar.part')))
  })

  it('keys statement + verify: the signed archive verifies; another archive or another key does not', async () => {
    assert.equal((await cli(['keys', 'statement', '-o', join(dir, 'agent.pem')])).code, 0)
    assert.equal((await cli(['keys', 'statement', '-o', join(dir, 'other.pem')])).code, 0)
    const key = await loadStatementKey(join(dir, 'agent.pem'))
    const sha256 = createHash('sha256').update(await readFile(archive)).digest('hex')
    const bundle = signStatement(statementFor({ name: 'checkpoint.tar', sha256 }, {
      node: 'n1', namespace: 'shop', pod: 'api-0', container: 'app', containerId: 'c1', image: { ref: 'r', digest: 'sha256:x' }, runtime: { name: 'containerd', version: '2' },
      requestId: 'q', requester: { sub: 'alice' }, grant: { jti: 'j' }, reason: 'case 7', times: { requested: 't', started: 't', completed: 't' }, archive: { size: 1 },
    }), key)
    await writeFile(join(dir, 'bundle.json'), JSON.stringify(bundle))
    const ok = await cli(['verify', archive, '--statement', join(dir, 'bundle.json'), '--key', join(dir, 'agent.pem.pub')])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /requested by alice \(grant j\), reason: case 7/)
    await writeFile(join(dir, 'changed.tar'), Buffer.concat([await readFile(archive), Buffer.from('x')]))
    const changed = await cli(['verify', join(dir, 'changed.tar'), '--statement', join(dir, 'bundle.json'), '--key', join(dir, 'agent.pem.pub')])
    assert.match(changed.stderr, /^checkpoint: statement_digest: /m)
    assert.equal(changed.code, 1)
    const other = await cli(['verify', archive, '--statement', join(dir, 'bundle.json'), '--key', join(dir, 'other.pem.pub')])
    assert.match(other.stderr, /^checkpoint: statement_signature: /m)
  })

  it('keys grant writes the gateway key (0600) and the agents\' key set, and never overwrites', async () => {
    const g = await cli(['keys', 'grant', '--out', dir])
    assert.equal(g.code, 0, g.stderr)
    assert.equal((await stat(join(dir, 'grant-signing-key.json'))).mode & 0o777, 0o600)
    assert.deepEqual((JSON.parse(await readFile(join(dir, 'grant-jwks.json'), 'utf8')) as { keys: Array<{ d?: string }> }).keys.map((k) => k.d), [undefined])
    const again = await cli(['keys', 'grant', '--out', dir])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /^checkpoint: exists: /m)
  })
})
