/**
 * Signed statements of custody: when a checkpoint completes, the agent signs an in-toto Statement
 * (v1) naming the archive by name and SHA-256, with a predicate saying what was taken (cluster,
 * node, pod, container, image), by whom (the requester and the grant that authorized it), why (an
 * optional reason) and when. The signature is a DSSE envelope, shipped as a Sigstore bundle (v0.3,
 * public-key hint, no transparency log), which `cosign verify-blob-attestation --key … --bundle …
 * --insecure-ignore-tlog` checks offline. The key is the agent's own (ECDSA P-256 or Ed25519),
 * made at first start when none is given, never leaving the node; its public half is published.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { BUNDLE_MEDIA_TYPE } from '../shared/agent-api.ts'

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1'
export const PREDICATE_TYPE = 'https://checkpoint-gateway.dev/attestations/checkpoint/v1'
export const DSSE_PAYLOAD_TYPE = 'application/vnd.in-toto+json'

/** What the predicate records; every field the agent knows at completion. */
export interface CheckpointPredicate {
  cluster?: string
  node: string
  namespace: string
  pod: string
  container: string
  containerId: string
  image: { ref: string; digest: string }
  runtime: { name: string; version: string }
  requestId: string
  requester: { sub: string; client?: string }
  /** The grant that authorized the checkpoint: points back to the gateway's decision. */
  grant: { jti: string; issuer?: string }
  reason?: string
  times: { requested: string; started: string; completed: string }
  archive: { size: number }
}

export interface SigstoreBundle {
  mediaType: string
  verificationMaterial: { publicKey: { hint: string } }
  dsseEnvelope: { payload: string; payloadType: string; signatures: Array<{ sig: string; keyid?: string }> }
}

export interface StatementKey {
  /** SHA-256 of the public key's SubjectPublicKeyInfo (DER), hex: the bundle's hint and the DSSE keyid. */
  keyid: string
  alg: 'ecdsa-p256' | 'ed25519'
  publicKeyPem: string
  sign(data: Buffer): Buffer
}

/** The DSSE pre-authentication encoding of a payload. */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType)
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload])
}

function keyOf(privateKey: KeyObject): StatementKey {
  const publicKey = createPublicKey(privateKey)
  const kind = privateKey.asymmetricKeyType
  const curve = privateKey.asymmetricKeyDetails?.namedCurve
  if (kind !== 'ed25519' && !(kind === 'ec' && curve === 'prime256v1')) {
    throw Object.assign(new Error(`statement key: ECDSA P-256 or Ed25519 only, not ${kind}${curve ? ` ${curve}` : ''}`), { code: 'ERR_STATEMENT_KEY_KIND' })
  }
  const spki = publicKey.export({ type: 'spki', format: 'der' })
  return {
    keyid: createHash('sha256').update(spki).digest('hex'),
    alg: kind === 'ed25519' ? 'ed25519' : 'ecdsa-p256',
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    // ECDSA signatures in ASN.1 DER, as cosign and DSSE verifiers expect.
    sign: (data) => sign(kind === 'ed25519' ? null : 'sha256', data, privateKey),
  }
}

/**
 * The agent's statement key from a PEM (PKCS#8) file; when the file does not exist and
 * `generate` names the algorithm, a new key is made and written there (0600, never replaced).
 */
export async function loadStatementKey(path: string, generate?: 'ecdsa-p256' | 'ed25519'): Promise<StatementKey> {
  let pem: string
  try {
    pem = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !generate) throw err
    const { privateKey } = generate === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    await writeFile(path, pem, { mode: 0o600, flag: 'wx' }).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e
      pem = await readFile(path, 'utf8') // another start won the race: use its key
    })
  }
  return keyOf(createPrivateKey(pem))
}

/** The in-toto Statement for an archive. */
export function statementFor(archive: { name: string; sha256: string }, predicate: CheckpointPredicate): Record<string, unknown> {
  return { _type: STATEMENT_TYPE, subject: [{ name: archive.name, digest: { sha256: archive.sha256 } }], predicateType: PREDICATE_TYPE, predicate }
}

/**
 * The statement of a bundle with the archive's sealed object added as a subject, and the sealing
 * in the predicate (`sealed`: name, SHA-256, size): what the agent signs once the sealed object is
 * stored, so the same statement verifies the archive and the object in the vault.
 */
export function withSealedSubject(bundle: unknown, sealed: { name: string; sha256: string; size: number }): Record<string, unknown> {
  const payload = (bundle as SigstoreBundle).dsseEnvelope.payload
  const statement = JSON.parse(Buffer.from(payload, 'base64').toString('utf8')) as { subject: Array<{ name: string }>; predicate: Record<string, unknown> }
  return {
    ...statement,
    subject: [...statement.subject.filter((s) => s.name !== sealed.name), { name: sealed.name, digest: { sha256: sealed.sha256 } }],
    predicate: { ...statement.predicate, sealed: { name: sealed.name, sha256: sealed.sha256, size: sealed.size } },
  }
}

/** The bundle's public-key hint for a key id: base64 of the SPKI SHA-256, as cosign writes it. */
export const hintOf = (keyid: string): string => Buffer.from(keyid, 'hex').toString('base64')

/**
 * Signs a statement: a DSSE envelope in a Sigstore bundle with the key's hint. The DSSE signature
 * carries no `keyid`: cosign 3 skips a signature whose keyid is not its own form for a given key
 * ("accepted signatures do not match threshold") — measured with sid's cosign 3.1.1.
 */
export function signStatement(statement: Record<string, unknown>, key: StatementKey): SigstoreBundle {
  const payload = Buffer.from(JSON.stringify(statement))
  const sig = key.sign(pae(DSSE_PAYLOAD_TYPE, payload)).toString('base64')
  return {
    mediaType: BUNDLE_MEDIA_TYPE,
    verificationMaterial: { publicKey: { hint: hintOf(key.keyid) } },
    dsseEnvelope: { payload: payload.toString('base64'), payloadType: DSSE_PAYLOAD_TYPE, signatures: [{ sig }] },
  }
}

/** Why a bundle does not verify; null when it does. */
export type BundleProblem = 'malformed' | 'signature' | 'predicate_type' | 'digest'

/**
 * Verifies a bundle against a public key (PEM) and, when given, the archive's SHA-256: the DSSE
 * signature over the exact payload, the statement's type and predicate type, and the subject digest.
 */
export function verifyBundle(bundle: unknown, publicKeyPem: string, archiveSha256?: string): { ok: true; statement: Record<string, any> } | { ok: false; problem: BundleProblem } {
  const b = bundle as Partial<SigstoreBundle> | null
  const env = b?.dsseEnvelope
  if (!env || typeof env.payload !== 'string' || env.payloadType !== DSSE_PAYLOAD_TYPE || !Array.isArray(env.signatures)) return { ok: false, problem: 'malformed' }
  const payload = Buffer.from(env.payload, 'base64')
  const publicKey = createPublicKey(publicKeyPem)
  const alg = publicKey.asymmetricKeyType === 'ed25519' ? null : 'sha256'
  const signed = env.signatures.some((s) => typeof s?.sig === 'string' && verify(alg, pae(env.payloadType!, payload), publicKey, Buffer.from(s.sig, 'base64')))
  if (!signed) return { ok: false, problem: 'signature' }
  let statement: Record<string, any>
  try {
    statement = JSON.parse(payload.toString('utf8')) as Record<string, any>
  } catch {
    return { ok: false, problem: 'malformed' }
  }
  if (statement._type !== STATEMENT_TYPE || statement.predicateType !== PREDICATE_TYPE) return { ok: false, problem: 'predicate_type' }
  if (archiveSha256 !== undefined && !statement.subject?.some?.((s: { digest?: { sha256?: string } }) => s?.digest?.sha256 === archiveSha256)) return { ok: false, problem: 'digest' }
  return { ok: true, statement }
}
