/**
 * Verifies the gateway's grants: signature (jose, asymmetric algorithms only), audience = this
 * node's agent, issuer when configured, a bounded lifetime, and a `jti` that is used once.
 */
import { open, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises'
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose'
import { CheckpointError } from '../shared/errors.ts'
import { checkGrantCovers, GRANT_TYP, grantAudience, type GrantClaims, type GrantRequirement } from '../shared/grant.ts'

const ALGORITHMS = ['EdDSA', 'ES256', 'ES384', 'PS256', 'RS256']
const CLOCK_TOLERANCE_S = 5
const SWEEP_EVERY_MS = 1000

export interface GrantVerifierOptions {
  node: string
  /** When set, grants must name this cluster (the same node name may exist in several clusters). */
  cluster?: string
  issuer?: string
  maxLifetimeSeconds: number
  jwksFile?: string
  jwksUrl?: string
  /** Injected for tests. */
  now?: () => number
  /** Upper bound of remembered jtis; beyond it new grants are refused until old ones expire. */
  maxRemembered?: number
  /**
   * Where used jtis are written before a grant is honoured, so a restart cannot make a used grant
   * usable again. Without it they live in memory only.
   */
  journalFile?: string
}

export type VerifiedGrant = GrantClaims & JWTPayload

export interface GrantVerifier {
  /** Verifies `authorization` and that it covers `need`; consumes its jti. */
  verify(authorization: string | undefined, need: Omit<GrantRequirement, 'node'>): Promise<VerifiedGrant>
  /** Re-reads a JWKS file (keys rotate by kid). */
  reload(): Promise<void>
  /** Closes the journal once pending writes are done. */
  close(): Promise<void>
}

export async function createGrantVerifier(o: GrantVerifierOptions): Promise<GrantVerifier> {
  const now = o.now ?? Date.now
  // Grants issued well before this process started are refused outright; the journal covers the
  // few seconds of clock tolerance (and a restart within them) in which a used grant is still live.
  const startedAt = Math.floor(now() / 1000)
  const maxRemembered = o.maxRemembered ?? 100_000
  let keys: ReturnType<typeof createLocalJWKSet> | ReturnType<typeof createRemoteJWKSet>
  const load = async () => {
    if (o.jwksFile) keys = createLocalJWKSet(JSON.parse(await readFile(o.jwksFile, 'utf8')) as JSONWebKeySet)
    else if (o.jwksUrl) keys = createRemoteJWKSet(new URL(o.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000 })
    else throw new TypeError('grant keys: give jwksFile or jwksUrl')
  }
  await load()
  /** jti → exp (ms). */
  const seen = new Map<string, number>()
  const live = (exp: number) => exp + CLOCK_TOLERANCE_S * 1000 >= now()
  const journal = o.journalFile ? await openJournal(o.journalFile, seen, live) : undefined
  // Forgetting expired jtis walks the whole map, so it runs at most once a second (and when the
  // map is full, before refusing). Walked on every grant, at ≈ 800 list grants a second (60 s
  // grants: ≈ 50,000 live jtis) it took 1.9 of the 10.9 busy seconds of the gateway bench's agent
  // and load generator.
  let sweptAt = -Infinity
  const sweep = (force: boolean) => {
    const t = now()
    if (!force && t - sweptAt < SWEEP_EVERY_MS) return
    sweptAt = t
    for (const [jti, exp] of seen) if (!live(exp)) seen.delete(jti)
  }

  return {
    reload: load,
    close: async () => journal?.close(),
    async verify(authorization, need) {
      const m = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(authorization ?? '')
      if (!m) throw new CheckpointError('invalid_grant', 'a grant is required: Authorization: Bearer <grant>', { field: 'authorization' })
      let payload: JWTPayload
      try {
        ;({ payload } = await jwtVerify(m[1]!, keys, {
          algorithms: ALGORITHMS,
          audience: grantAudience(o.node),
          typ: GRANT_TYP,
          clockTolerance: CLOCK_TOLERANCE_S,
          requiredClaims: ['exp', 'iat', 'jti'],
          currentDate: new Date(now()),
          ...(o.issuer ? { issuer: o.issuer } : {}),
        }))
      } catch (err) {
        const code = (err as { code?: string }).code ?? ''
        // jose's own verdicts on the token are the caller's fault; a key set that cannot be
        // fetched or read (timeout, network, bad JWKS document) is ours: 503, never 401.
        const keysDown = err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid || !code.startsWith('ERR_J')
        if (keysDown) throw new CheckpointError('auth_unavailable', 'grant keys could not be fetched or read', { cause: err, headers: { 'retry-after': '5' } })
        throw new CheckpointError('invalid_grant', `grant refused (${code})`, { field: 'authorization', cause: err, extra: { reason: code } })
      }
      // A replay is named as one even when the grant is also too old: the journal is the proof.
      if (seen.has(payload.jti!)) throw replay()
      if (payload.iat! < startedAt - CLOCK_TOLERANCE_S) {
        throw new CheckpointError('invalid_grant', 'grant issued before this agent started', { field: 'authorization', extra: { reason: 'issued_before_start' } })
      }
      if (payload.exp! - payload.iat! > o.maxLifetimeSeconds) {
        throw new CheckpointError('invalid_grant', `grant lifetime exceeds ${o.maxLifetimeSeconds}s`, { field: 'authorization' })
      }
      checkGrantCovers(payload as Partial<GrantClaims>, { ...need, node: o.node })
      if (o.cluster !== undefined && (payload as Partial<GrantClaims>).cluster !== o.cluster) {
        throw new CheckpointError('grant_mismatch', 'grant does not cover this request: cluster differs', { field: 'cluster' })
      }
      sweep(false)
      if (seen.size >= maxRemembered) sweep(true)
      if (seen.size >= maxRemembered) throw new CheckpointError('too_many_requests', 'too many live grants', { headers: { 'retry-after': '5' } })
      seen.set(payload.jti!, payload.exp! * 1000)
      // Written down before the grant is honoured: a crash after this line cannot reopen it.
      await journal?.append(payload.jti!, payload.exp! * 1000).catch((err: NodeJS.ErrnoException) => {
        // A grant that cannot be written down is not honoured: a restart could reopen it.
        if (err.code === 'ENOSPC' || err.code === 'EDQUOT') throw new CheckpointError('insufficient_storage', 'no space left to record the grant as used', { cause: err })
        throw err
      })
      return payload as VerifiedGrant
    },
  }
}

const replay = () => new CheckpointError('invalid_grant', 'grant already used (jti replay)', { field: 'authorization', extra: { reason: 'replay' } })

interface Journal {
  append(jti: string, expMs: number): Promise<void>
  close(): Promise<void>
}

/**
 * The used-jti journal: one JSON line per used grant (`{"j":jti,"e":expMs}`), 0600. At start the
 * live entries are loaded into `seen` and the file is rewritten with only those; it is rewritten
 * again whenever it holds twice the live entries (and at least 10,000 lines). A torn last line
 * (a crash mid-write) is skipped: its grant was never honoured.
 */
async function openJournal(path: string, seen: Map<string, number>, live: (expMs: number) => boolean): Promise<Journal> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return ''
    throw err
  })
  for (const line of text.split('\n')) {
    try {
      const { j, e } = JSON.parse(line) as { j?: unknown; e?: unknown }
      if (typeof j === 'string' && typeof e === 'number' && live(e)) seen.set(j, e)
    } catch {
      // an empty or torn line
    }
  }
  let lines = 0
  let fh: FileHandle
  const rewrite = async () => {
    const tmp = `${path}.tmp`
    const body = [...seen].map(([j, e]) => JSON.stringify({ j, e }) + '\n').join('')
    try {
      await writeFile(tmp, body, { mode: 0o600 })
    } catch (err) {
      await rm(tmp, { force: true })
      throw err
    }
    await rename(tmp, path)
    lines = seen.size
    fh = await open(path, 'a', 0o600)
  }
  // After a failed (maybe partial) write the next entry starts on a new line: a torn line must
  // not swallow it.
  let torn = false
  // Compacting is an economy: on a full disk the journal stays as it is and is appended to.
  await rewrite().catch(async () => {
    lines = text.split('\n').length
    torn = text !== '' && !text.endsWith('\n')
    fh = await open(path, 'a', 0o600)
  })
  // Appends and rewrites run one at a time, in order.
  let queue = Promise.resolve()
  return {
    append(jti, expMs) {
      const step = queue.then(async () => {
        try {
          await fh.appendFile((torn ? '\n' : '') + JSON.stringify({ j: jti, e: expMs }) + '\n')
          torn = false
        } catch (err) {
          torn = true
          throw err
        }
        if (++lines >= 10_000 && lines > 2 * seen.size) {
          const old = fh
          if (await rewrite().then(() => true, () => false)) await old.close()
        }
      })
      queue = step.catch(() => {})
      return step
    },
    async close() {
      await queue
      await fh.close()
    },
  }
}
