/**
 * Grant signatures on Node without WebCrypto's thread-pool hop: Ed25519 through node:crypto's
 * one-shot `sign`, on the calling thread. Ed25519 is deterministic, so the JWS is byte for byte the
 * one jose would make (test/functions/grant-keys.test.ts); agents verify it with jose as before.
 * Other algorithms (ES256) stay with jose.
 */
import { createPrivateKey, sign } from 'node:crypto'
import type { JWK } from 'jose'
import { loadGrantKeys, type GrantKeys, type JwsSignerFor } from '../grants.ts'

export const nodeJwsSigner: JwsSignerFor = (jwk: JWK) => {
  if ((jwk.alg !== 'EdDSA' && jwk.alg !== 'Ed25519') || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') return undefined
  const key = createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' })
  return (input) => sign(null, input, key)
}

/** {@link loadGrantKeys} with Node's own Ed25519 signer: what the Node gateway uses. */
export const loadNodeGrantKeys = (secret: unknown): Promise<GrantKeys> => loadGrantKeys(secret, { signerFor: nodeJwsSigner })
