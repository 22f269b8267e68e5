/**
 * The CLI's offline commands: make keys, open sealed evidence, verify a signed statement. Nothing
 * here talks to a gateway.
 *
 *   checkpoint keys age -o investigator.txt          (prints the age1… recipient for the vault)
 *   checkpoint keys grant --out DIR                  (the gateway's grant key and the agents' JWKS)
 *   checkpoint keys statement -o agent-key.pem       (an agent statement key: ECDSA P-256)
 *   checkpoint decrypt evidence.tar.zst.age -i investigator.txt -o checkpoint.tar
 *   checkpoint verify checkpoint.tar --statement bundle.json --key agent.pub
 */
import { createHash, generateKeyPairSync } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { pipeline } from 'node:stream/promises'
import { createZstdDecompress } from 'node:zlib'
import { verifyBundle } from '../agent/custody.ts'
import { AgeError, ageDecrypt, generateIdentity, parseIdentities } from '../agent/seal/age.ts'
import { newGrantKey } from '../functions/node/grant-keys.ts'
import { CliError } from './gateway.ts'

type Flags = Record<string, string | boolean | undefined>
interface Io { out(line: string): void; err(line: string): void }

const need = (flags: Flags, name: string, usage: string): string => {
  const v = flags[name]
  if (typeof v !== 'string' || v === '') throw new CliError('usage', usage)
  return v
}

export async function keys(args: string[], flags: Flags, io: Io): Promise<void> {
  const kind = args[0]
  if (kind === 'age') {
    const out = need(flags, 'output', 'keys age -o FILE')
    const { identity, recipient } = generateIdentity()
    await writeFile(out, `# created: ${new Date().toISOString()}\n# public key: ${recipient}\n${identity}\n`, { mode: 0o600, flag: 'wx' })
    io.out(recipient)
  } else if (kind === 'grant') {
    const dir = need(flags, 'out', 'keys grant --out DIR')
    const kid = `grant-${new Date().toISOString().slice(0, 10)}`
    const { privateJwk, jwks } = await newGrantKey('EdDSA', kid)
    await writeFile(`${dir}/grant-signing-key.json`, JSON.stringify(privateJwk) + '\n', { mode: 0o600, flag: 'wx' })
    await writeFile(`${dir}/grant-jwks.json`, JSON.stringify(jwks, null, 2) + '\n', { flag: 'wx' })
    io.out(`${dir}/grant-signing-key.json (GRANT_SIGNING_KEYS, kid ${kid})\n${dir}/grant-jwks.json (agents: --grant-jwks-file)`)
  } else if (kind === 'statement') {
    const out = need(flags, 'output', 'keys statement -o FILE')
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    await writeFile(out, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' })
    await writeFile(`${out}.pub`, publicKey.export({ type: 'spki', format: 'pem' }), { flag: 'wx' })
    io.out(`${out} (agent --statement-key)\n${out}.pub (cosign verify-blob-attestation --key)`)
  } else {
    throw new CliError('usage', 'keys age|grant|statement')
  }
}

/** age, then zstd, into `<out>.part`; renamed to `<out>` only when the whole file decrypted. */
export async function decrypt(args: string[], flags: Flags, io: Io): Promise<void> {
  const input = args[0]
  const out = need(flags, 'output', 'decrypt FILE.zst.age -i IDENTITY -o FILE')
  if (!input) throw new CliError('usage', 'decrypt FILE.zst.age -i IDENTITY -o FILE')
  const identities = parseIdentities(await readFile(need(flags, 'identity', 'decrypt needs -i IDENTITY (an age-keygen file)'), 'utf8'))
  const part = `${out}.part`
  const digest = createHash('sha256')
  try {
    await pipeline(
      createReadStream(input),
      (source: AsyncIterable<Buffer>) => ageDecrypt(source, identities),
      createZstdDecompress(),
      async function* (source: AsyncIterable<Buffer>) { for await (const c of source) { digest.update(c); yield c } },
      createWriteStream(part, { mode: 0o600 }),
    )
  } catch (err) {
    await rm(part, { force: true })
    if (err instanceof AgeError) throw new CliError(err.code === 'no_match' ? 'not_a_recipient' : 'evidence_damaged', `${input}: ${err.message}`)
    throw new CliError('evidence_damaged', `${input}: ${(err as Error).message}`)
  }
  await rename(part, out)
  io.out(`${out}  sha256 ${digest.digest('hex')}`)
}

/** Checks an archive against a signed statement and the agent's public key, offline. */
export async function verify(args: string[], flags: Flags, io: Io): Promise<void> {
  const archive = args[0]
  if (!archive) throw new CliError('usage', 'verify ARCHIVE --statement BUNDLE --key AGENT.pub')
  const bundle = JSON.parse(await readFile(need(flags, 'statement', 'verify needs --statement BUNDLE'), 'utf8')) as unknown
  const key = await readFile(need(flags, 'key', 'verify needs --key AGENT.pub'), 'utf8')
  const h = createHash('sha256')
  await pipeline(createReadStream(archive), h)
  const v = verifyBundle(bundle, key, h.digest('hex'))
  if (!v.ok) throw new CliError(`statement_${v.problem}`, v.problem === 'digest' ? 'the statement is for another archive' : v.problem === 'signature' ? 'the statement is not signed by that key, or was changed' : 'not a statement of this project')
  const p = v.statement.predicate as Record<string, any>
  if (flags.json) return io.out(JSON.stringify({ verified: true, statement: v.statement }))
  io.out(`verified: ${v.statement.subject[0].name}\n  taken from ${p.cluster ?? '?'}/${p.node} ${p.namespace}/${p.pod}/${p.container} (image ${p.image?.ref} ${p.image?.digest})\n  requested by ${p.requester?.sub} (grant ${p.grant?.jti})${p.reason ? `, reason: ${p.reason}` : ''}\n  completed ${p.times?.completed}`)
}
