/**
 * `npm run grant-keys -- --out=DIR [--kid=ID] [--alg=EdDSA|ES256]`: makes a grant-signing key pair.
 * Writes DIR/grant-signing-key.json (0600: the gateway's GRANT_SIGNING_KEYS, a private JWK) and
 * DIR/grant-jwks.json (the public set: the agents' --grant-jwks-file, e.g. a ConfigMap). The
 * private key never leaves DIR; nothing is printed but the paths.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import { publicJwk } from '../grants.ts'

/** A new signing key: its private JWK (with kid and alg) and the public key set to publish. */
export async function newGrantKey(alg: 'EdDSA' | 'ES256', kid: string): Promise<{ privateJwk: JWK; jwks: { keys: JWK[] } }> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true })
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg }
  return { privateJwk, jwks: { keys: [publicJwk(privateJwk)] } }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string' }, kid: { type: 'string' }, alg: { type: 'string', default: 'EdDSA' } }, strict: true })
  if (!values.out) throw new Error('--out=DIR is required')
  if (values.alg !== 'EdDSA' && values.alg !== 'ES256') throw new Error('--alg must be EdDSA or ES256')
  const kid = values.kid ?? `grant-${new Date().toISOString().slice(0, 10)}`
  const { privateJwk, jwks } = await newGrantKey(values.alg, kid)
  const keyFile = join(values.out, 'grant-signing-key.json')
  const jwksFile = join(values.out, 'grant-jwks.json')
  // 'wx': never overwrite a key that may be in use.
  await writeFile(keyFile, JSON.stringify(privateJwk) + '\n', { mode: 0o600, flag: 'wx' })
  await writeFile(jwksFile, JSON.stringify(jwks, null, 2) + '\n', { mode: 0o644, flag: 'wx' })
  process.stdout.write(`${keyFile}  (GRANT_SIGNING_KEYS / GRANT_SIGNING_KEYS_FILE, kid ${kid})\n${jwksFile}  (agents: --grant-jwks-file)\n`)
}

if (import.meta.main) {
  main().catch((err) => {
    process.stderr.write(`grant-keys: ${(err as Error).message}\n`)
    process.exit(1)
  })
}
