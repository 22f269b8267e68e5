/**
 * `npm run dev-token [-- --vars=.dev.vars]`: prints a caller token for `wrangler dev --env dev`,
 * signed with DEV_CALLER_KEY from the dotenv file (.dev.vars, copied from .dev.vars.example):
 * sub `dev`, group `dev`, every checkpoint scope, one hour. Development only.
 */
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { importJWK, SignJWT, type JWK } from 'jose'

export const DEV_ISSUER = 'https://dev.checkpoint.local'
export const DEV_AUDIENCE = 'checkpoint-gateway'

/** NAME='value' / NAME="value" / NAME=value lines; `#` comments. */
export function parseDotenv(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line)
    if (!m || line.trimStart().startsWith('#')) continue
    const v = m[2]!
    out[m[1]!] = /^'.*'$|^".*"$/.test(v) ? v.slice(1, -1) : v
  }
  return out
}

export async function devToken(vars: Record<string, string>, nowSec = Math.floor(Date.now() / 1000)): Promise<string> {
  const raw = vars.DEV_CALLER_KEY
  if (!raw) throw new Error('DEV_CALLER_KEY is not set (copy .dev.vars.example to .dev.vars)')
  const jwk = JSON.parse(raw) as JWK
  const key = await importJWK(jwk, jwk.alg ?? 'ES256')
  return new SignJWT({ groups: ['dev'], scope: 'checkpoint:create checkpoint:read checkpoint:delete' })
    .setProtectedHeader({ alg: jwk.alg ?? 'ES256', kid: jwk.kid ?? '', typ: 'JWT' })
    .setIssuer(DEV_ISSUER)
    .setAudience(DEV_AUDIENCE)
    .setSubject('dev')
    .setIssuedAt(nowSec)
    .setExpirationTime(nowSec + 3600)
    .sign(key)
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { vars: { type: 'string', default: '.dev.vars' } }, strict: true })
  devToken(parseDotenv(await readFile(values.vars!, 'utf8'))).then(
    (t) => process.stdout.write(t + '\n'),
    (err) => {
      process.stderr.write(`dev-token: ${(err as Error).message}\n`)
      process.exit(1)
    },
  )
}
