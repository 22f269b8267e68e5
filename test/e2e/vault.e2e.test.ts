// End-to-end: the evidence vault on a real containerd 2.x + runc + CRIU. A checkpoint through the
// Node gateway with `?store=vault` is sealed on the node and uploaded to a real S3 server that
// checks signatures (radosgw); an investigator lists it, gets a presigned URL, decrypts with
// Debian's own `age` and `zstd`, reads it with `checkpointctl`, and restores the container from
// it — the counter goes on. Never skips: if a part cannot start, `before` fails with the reason.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { connectRuntime, type Runtime } from '../../agent/cri/client.ts'
import { parseConfig } from '../../functions/config.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import type { Served } from '../../functions/node/server.ts'
import { startNodeGateway } from '../../functions/node/start.ts'
import { buildAndPushBusybox, removePod, runPod, startLocalRuntime, type LocalRuntime } from '../runtime/containerd.ts'
import { ensureAge, type EvidenceTools } from '../runtime/evidence-tools.ts'
import { startS3Server, type S3Server } from '../runtime/s3-server.ts'
import { counter } from '../runtime/workloads.ts'
import { makeIdentities, startTestAgent, type TestAgent } from '../support/agent-harness.ts'
import { stopE2e } from '../support/teardown.ts'
import { poll } from '../support/wait.ts'

const execFileP = promisify(execFile)
const POD = { namespace: 'e2e', pod: 'counter', container: 'counter' }
const ISSUER = 'https://idp.vault-e2e.test'

describe('the evidence vault on containerd: store, fetch, decrypt with age, restore', { timeout: 240_000 }, () => {
  let work: string
  let rt: LocalRuntime
  let runtime: Runtime
  let ta: TestAgent
  let s3: S3Server
  let gw: Served
  let tools: EvidenceTools
  let key: CryptoKey
  let identityFile: string
  let pod: { podId: string; containerId: string }
  const timings: Record<string, string> = {}

  const readCount = (containerId: string) =>
    poll(async () => {
      const out = await rt.ctr(['-n', 'k8s.io', 'tasks', 'ls'])
      const pid = out.split('\n').map((l) => l.trim().split(/\s+/)).find(([id]) => id === containerId)?.[1]
      const text = pid ? (await readFile(`/proc/${pid}/root/tmp/count`, 'utf8').catch(() => '')).trim() : ''
      return /^\d+$/.test(text) ? Number(text) : undefined
    }, 10_000, 'reading /tmp/count', 50)
  const taskStatus = async (containerId: string) => (await rt.ctr(['-n', 'k8s.io', 'tasks', 'ls'])).split('\n').map((l) => l.trim().split(/\s+/)).find(([id]) => id === containerId)?.[2]
  const token = () => new SignJWT({ groups: ['ir'], scope: 'checkpoint:create checkpoint:read' })
    .setProtectedHeader({ alg: 'ES256', kid: 'idp' }).setIssuer(ISSUER).setAudience('gw').setSubject('ivy').setIssuedAt().setExpirationTime('10m').sign(key)
  const call = async (path: string, init: RequestInit = {}) => fetch(gw.url + path, { ...init, headers: { authorization: `Bearer ${await token()}`, ...(init.headers as object) }, signal: AbortSignal.timeout(120_000) })

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'vault-e2e-'))
    const t0 = performance.now()
    ;[rt, s3, tools] = await Promise.all([startLocalRuntime({ log: (line) => console.log(`# runtime: ${line}`) }), startS3Server(), ensureAge()])
    timings['runtime, S3 server and evidence tools up'] = `${Math.round(performance.now() - t0)} ms`
    const image = await buildAndPushBusybox(rt.registry, 'e2e/busybox', 'v1')
    pod = await runPod(rt.endpoint, { ...POD, image, command: ['sh', '-c', counter()] })
    runtime = connectRuntime(rt.endpoint)
    const ids = await makeIdentities(work)
    ta = await startTestAgent({ ids, endpoint: rt.endpoint })
    // The investigator's key, made with Debian's age-keygen: the vault seals to its recipient.
    identityFile = join(work, 'investigator.txt')
    const { stderr } = await execFileP(tools.ageKeygen, ['-o', identityFile])
    const recipient = /age1[0-9a-z]+/.exec(stderr + (await readFile(identityFile, 'utf8')))![0]
    const pair = await generateKeyPair('ES256', { extractable: true })
    key = pair.privateKey as CryptoKey
    const secrets: Record<string, string> = { S3_KEY: s3.accessKeyId, S3_SECRET: s3.secretAccessKey }
    gw = await startNodeGateway({
      config: parseConfig({
        clusters: { local: { agentUrl: ta.agent.url, agentCa: ids.pki.ca.certPem } },
        auth: { issuers: [ISSUER], audience: 'gw', jwks: { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'idp', alg: 'ES256' }] } },
        policy: { rules: [{ id: 'ir', groups: ['ir'], actions: ['create', 'read'], clusters: ['*'], namespaces: ['*'] }] },
        grants: { issuer: 'gw-vault-e2e' },
        limits: { agentHeadersTimeoutMs: 30_000, defaultTimeoutSec: 120 },
        vault: {
          backend: 's3', s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyIdSecret: 'S3_KEY', secretAccessKeySecret: 'S3_SECRET' },
          partSizeMiB: 64, recipients: [{ id: 'ir', clusters: ['*'], namespaces: ['e2e'], recipients: [recipient] }],
        },
      }, (n) => secrets[n]),
      keys: await loadGrantKeys([{ ...(await exportJWK(ids.grantKey)), kid: ids.kid, alg: 'EdDSA' }]),
      client: { cert: ids.gateway.certPem, key: ids.gateway.keyPem },
      port: 0,
      operationsDb: join(work, 'gateway.sqlite'),
      log: () => {},
    })
    await poll(async () => ((await readCount(pod.containerId).catch(() => 0)) >= 5 ? true : undefined), 30_000, 'counter reaching 5')
  }, { timeout: 180_000 })

  after(async () => {
    await gw?.close(2000).catch(() => {})
    await s3?.stop().catch(() => {})
    await stopE2e({ agents: [['agent', ta]], runtime, rt, work, timings })
  }, { timeout: 60_000 })

  it('checkpoint ?store=vault → stored; evidence URL → age -d | zstd -d → checkpointctl → restore, and the counter goes on', async () => {
    const t0 = performance.now()
    const r = await call(`/v1/clusters/local/nodes/${ta.node}/checkpoint/${POD.namespace}/${POD.pod}/${POD.container}?store=vault&reason=e2e`, { method: 'POST', headers: { accept: 'application/json' } })
    const body = (await r.json()) as { archive: { name: string; sha256: string }; stored?: { key: string; sealed: { sha256: string; size: number }; plaintext: { sha256: string } }; storeFailed?: unknown }
    assert.equal(r.status, 200, JSON.stringify(body))
    assert.ok(body.stored, `not stored: ${JSON.stringify(body.storeFailed)}`)
    timings['checkpoint + seal + upload, request to answer'] = `${Math.round(performance.now() - t0)} ms`
    assert.equal(body.stored.plaintext.sha256, body.archive.sha256)
    // The container was thawed: running, not paused.
    assert.equal(await taskStatus(pod.containerId), 'RUNNING')

    const issued = (await (await call(`/v1/evidence/${body.stored.key}`)).json()) as { url: string }
    const sealed = Buffer.from(await (await fetch(issued.url)).arrayBuffer())
    assert.equal(createHash('sha256').update(sealed).digest('hex'), body.stored.sealed.sha256)
    const sealedFile = join(work, 'evidence.tar.zst.age')
    await writeFile(sealedFile, sealed)
    // Debian's own tools, as an investigator would: age -d -i key.txt … | zstd -d > checkpoint.tar
    const archive = join(work, 'checkpoint.tar')
    execFileSync('sh', ['-c', `"${tools.age}" -d -i "${identityFile}" "${sealedFile}" | "${tools.zstd}" -d -q -o "${archive}"`], { timeout: 60_000 })
    assert.equal(createHash('sha256').update(await readFile(archive)).digest('hex'), body.archive.sha256)
    assert.match(await rt.checkpointctl(['show', archive]), new RegExp(pod.containerId.slice(0, 12)))

    const diff = execFileSync('tar', ['-xOf', archive, 'rootfs-diff.tar'], { maxBuffer: 64 << 20, timeout: 30_000 })
    const checkpointed = Number(execFileSync('tar', ['-xzO', 'tmp/count'], { input: diff, encoding: 'utf8', timeout: 30_000 }).trim())
    const restored = await runPod(rt.endpoint, { ...POD, pod: 'counter-from-vault', image: archive, command: [] })
    const first = await readCount(restored.containerId)
    assert.ok(first >= checkpointed, `restored count ${first} < checkpointed ${checkpointed}`)
    await poll(async () => ((await readCount(restored.containerId)) > first ? true : undefined), 5_000, 'restored counter moving')
    console.log(`# vault e2e: sealed ${body.stored.sealed.size} bytes; counter checkpointed ${checkpointed}, restored ${first}`)
    await removePod(rt.endpoint, restored.podId)
  })
})
