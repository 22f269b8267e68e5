/**
 * The sealing core (agent/seal/): bech32 against BIP-173's vectors, our age decryption against the
 * C2SP/CCTV age vectors (test/agent/age-vectors/, the X25519 ones), interoperability with Debian's
 * `age` 1.3.2 in both directions, the zstd-then-age pipeline against `age -d | zstd -d`, and
 * refusals: malformed keys, tampered, truncated and extended ciphertexts.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { inflateSync } from 'node:zlib'
import { after, before, describe, it } from 'node:test'
import { bech32Decode, bech32Encode, Bech32Error, fromWords, toWords } from '../../agent/seal/bech32.ts'
import {
  AgeError,
  ageDecrypt,
  ageEncrypt,
  CHUNK_SIZE,
  generateIdentity,
  parseIdentities,
  parseIdentity,
  parseRecipient,
  type AgeErrorCode,
  type ByteSource,
} from '../../agent/seal/age.ts'
import { seal } from '../../agent/seal/seal.ts'
import { ensureAge, type EvidenceTools } from '../runtime/evidence-tools.ts'

const execFileP = promisify(execFile)
const VECTORS = fileURLToPath(new URL('./age-vectors/', import.meta.url))
const KiB = 1024
const MiB = 1024 * KiB

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

/** Everything the decryptor released, and the error it ended with (if any). */
async function decrypt(source: ByteSource, identities: Parameters<typeof ageDecrypt>[1]): Promise<{ out: Buffer; err?: unknown }> {
  const parts: Buffer[] = []
  try {
    for await (const p of ageDecrypt(source, identities)) parts.push(p)
    return { out: Buffer.concat(parts) }
  } catch (err) {
    return { out: Buffer.concat(parts), err }
  }
}

async function encrypt(plain: Uint8Array, recipients: string[], piece = 100_000): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const p of ageEncrypt(pieces(plain, piece), recipients)) parts.push(p)
  return Buffer.concat(parts)
}

/** `b` cut into pieces of `size` bytes (the last shorter). */
function pieces(b: Uint8Array, size: number): Uint8Array[] {
  const out = []
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size))
  return out
}

function code(err: unknown): string {
  if (err instanceof AgeError) return err.code
  if (err === undefined) return 'none'
  throw err
}

function assertRefused(err: unknown, codes: AgeErrorCode[], what: string) {
  assert.ok(err instanceof AgeError, `${what}: expected an AgeError, got ${err}`)
  assert.ok(codes.includes(err.code), `${what}: code ${err.code}, expected one of ${codes.join(', ')}`)
}

/** Compressible (text) and incompressible (random) content of `size` bytes. */
function content(kind: 'random' | 'text', size: number): Buffer {
  if (kind === 'random') return randomBytes(size)
  const line = 'Nov 30 12:00:01 node-7 app[4242]: GET /api/v1/orders?page=3 200 12ms user=alice\n'
  return Buffer.from(line.repeat(Math.ceil(size / line.length) + 1)).subarray(0, size)
}

// ---- bech32 ------------------------------------------------------------------------------------

describe('bech32 (BIP-173 vectors)', () => {
  // BIP-173 "Test vectors": valid checksums, then invalid strings with the reason given there.
  const valid = [
    'A12UEL5L',
    'a12uel5l',
    'an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs',
    'abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw',
    '11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j',
    'split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w',
    '?1ezyfcl',
  ]
  const invalid = [
    '\x201nwldj5', // HRP character out of range
    '\x7f1axkwrx', // HRP character out of range
    '\x801eym55h', // HRP character out of range
    'an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx', // too long
    'pzry9x0s0muk', // no separator
    '1pzry9x0s0muk', // empty HRP
    'x1b4n0q5v', // invalid data character
    'li1dgmt3', // too short checksum
    'de1lg7wt\xff', // invalid character in checksum
    'A1G7SGD8', // checksum calculated with uppercase form of HRP
    '10a06t8', // empty HRP
    '1qzzfhee', // empty HRP
  ]

  it('decodes every valid string and re-encodes it exactly', () => {
    for (const s of valid) {
      const { hrp, words, upper } = bech32Decode(s)
      assert.equal(bech32Encode(hrp, words, upper), s)
    }
    assert.deepEqual([...bech32Decode('abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw').words], [...Array(32).keys()])
  })

  it('refuses every invalid string', () => {
    for (const s of invalid) assert.throws(() => bech32Decode(s), Bech32Error, JSON.stringify(s))
  })

  it('regroups bytes and 5-bit words, refusing bad padding', () => {
    for (const n of [0, 1, 5, 31, 32, 33]) {
      const b = randomBytes(n)
      assert.deepEqual(Buffer.from(fromWords(toWords(b))), b)
    }
    assert.throws(() => fromWords(Uint8Array.of(0)), Bech32Error) // 5 bits of padding: a whole word too many
    assert.throws(() => fromWords(Uint8Array.of(31, 31)), Bech32Error) // non-zero padding bits
  })
})

// ---- keys --------------------------------------------------------------------------------------

describe('age keys', () => {
  // From the CCTV vectors (X25519 test identity) and its recipient as age-keygen -y prints it.
  const identity = 'AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0'

  it('parses an identity and derives its recipient; generated keys round-trip', () => {
    const id = parseIdentity(identity)
    assert.match(id.recipient, /^age1[02-9ac-hj-np-z]{58}$/)
    assert.deepEqual(parseRecipient(id.recipient).publicKey, id.publicKey)
    const g = generateIdentity()
    assert.match(g.identity, /^AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}$/)
    assert.equal(parseIdentity(g.identity).recipient, g.recipient)
    assert.notEqual(generateIdentity().identity, g.identity)
  })

  it('refuses malformed recipient strings with bad_recipient', () => {
    const good = generateIdentity().recipient
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'q' ? 'p' : 'q') + s.slice(i + 1)
    const zeros = bech32Encode('age', toWords(new Uint8Array(32)))
    const short = bech32Encode('age', toWords(new Uint8Array(31).fill(7)))
    const otherHrp = bech32Encode('agx', toWords(parseRecipient(good).publicKey))
    const bad = [
      '',
      'age1',
      'age',
      ` ${good}`,
      `${good}\n`,
      good.toUpperCase(), // age writes recipients in lower case and refuses upper case
      good.slice(0, 10) + good.slice(10).toUpperCase(), // mixed case
      flip(good, 20), // checksum
      good.slice(0, -1),
      `${good}q`,
      otherHrp,
      short, // 31 bytes
      zeros, // a low-order point
      identity, // a secret key is not a recipient
      'age1pq1' + 'q'.repeat(100), // a post-quantum recipient: not supported
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
    ]
    for (const s of bad) {
      assert.throws(() => parseRecipient(s), (e: unknown) => e instanceof AgeError && e.code === 'bad_recipient', JSON.stringify(s))
    }
    // And ageEncrypt checks them before reading anything.
    assert.throws(() => ageEncrypt([], [good, 'age1nope']), (e: unknown) => e instanceof AgeError && e.code === 'bad_recipient')
    assert.throws(() => ageEncrypt([], []), TypeError)
  })

  it('refuses malformed identity strings with bad_identity', () => {
    const bad = ['', identity.toLowerCase(), identity.slice(0, -1), generateIdentity().recipient, `${identity} `, 'AGE-SECRET-KEY-PQ-1QQQQ']
    for (const s of bad) {
      assert.throws(() => parseIdentity(s), (e: unknown) => e instanceof AgeError && e.code === 'bad_identity', JSON.stringify(s))
    }
    assert.throws(() => parseIdentities('# only a comment\n\n'), (e: unknown) => e instanceof AgeError && e.code === 'bad_identity')
    assert.throws(() => ageDecrypt([], []), TypeError)
  })
})

// ---- CCTV vectors ------------------------------------------------------------------------------

/** What each vector's `expect` allows our decryptor to say. */
const EXPECT: Record<string, AgeErrorCode[] | 'success'> = {
  success: 'success',
  'header failure': ['bad_header'],
  'HMAC failure': ['bad_header_mac'],
  'no match': ['no_match'],
  'payload failure': ['bad_payload', 'truncated'],
}

interface Vector {
  name: string
  expect: string
  payload?: string
  identities: string[]
  file: Buffer
}

async function loadVectors(): Promise<Vector[]> {
  const out: Vector[] = []
  for (const name of (await readdir(VECTORS)).sort()) {
    if (name.startsWith('.') || name === 'SOURCE') continue
    const raw = await readFile(join(VECTORS, name))
    const blank = raw.indexOf('\n\n')
    const fields = new Map<string, string[]>()
    for (const line of raw.subarray(0, blank).toString('utf8').split('\n')) {
      const at = line.indexOf(': ')
      const k = line.slice(0, at)
      fields.set(k, [...(fields.get(k) ?? []), line.slice(at + 2)])
    }
    let file = raw.subarray(blank + 2)
    const compressed = fields.get('compressed')?.[0]
    if (compressed === 'zlib') file = inflateSync(file)
    else if (compressed !== undefined) throw new Error(`${name}: unknown compression ${compressed}`)
    out.push({ name, expect: fields.get('expect')![0], payload: fields.get('payload')?.[0], identities: fields.get('identity') ?? [], file })
  }
  return out
}

describe('age decryption: C2SP/CCTV age vectors (X25519)', async () => {
  const vectors = await loadVectors()
  // The X25519-decidable vectors from CCTV's age/testdata; armor, scrypt and ML-KEM ones are not kept.
  it('has the 68 X25519 vectors', () => assert.equal(vectors.length, 68))

  for (const v of vectors) {
    it(`${v.name}: ${v.expect}`, async () => {
      const want = EXPECT[v.expect]
      assert.ok(want, `unknown expectation ${v.expect}`)
      // A vector without an identity (a header that cannot parse) still needs one to try.
      const ids = v.identities.length ? v.identities : [generateIdentity().identity]
      // Whole, and in odd pieces (the header and chunks cross piece boundaries everywhere); tiny
      // pieces only for the small files, the 16 MiB ones would take seconds for nothing new.
      const tiny = v.file.length < MiB ? 7 : 65_539
      for (const source of [[v.file], pieces(v.file, tiny), pieces(v.file, 4093)]) {
        const { out, err } = await decrypt(source, ids)
        if (want === 'success') assert.equal(code(err), 'none')
        else assertRefused(err, want, v.name)
        // For success and payload failure, everything released must match the vector's hash.
        if (v.payload) assert.equal(sha256(out), v.payload)
        else assert.equal(out.length, 0)
      }
    })
  }
})

// ---- interop with Debian's age -----------------------------------------------------------------

describe("age interop with Debian's age 1.3.2 (sid)", () => {
  let tools: EvidenceTools
  let dir: string
  const keys: { file: string; recipient: string }[] = []

  before(async () => {
    tools = await ensureAge()
    dir = await mkdtemp(join(tmpdir(), 'age-it-'))
    assert.match((await execFileP(tools.age, ['--version'])).stdout, /^v?1\.3\./)
    for (const n of [1, 2]) {
      const file = join(dir, `key${n}.txt`)
      await execFileP(tools.ageKeygen, ['-o', file])
      const recipient = (await execFileP(tools.ageKeygen, ['-y', file])).stdout.trim()
      keys.push({ file, recipient })
    }
  })
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  const ageDecryptFile = async (file: string, keyFile: string) =>
    (await execFileP(tools.age, ['-d', '-i', keyFile, file], { encoding: 'buffer', maxBuffer: 64 * MiB })).stdout

  it("reads age-keygen's key files: the same recipient as age-keygen -y", async () => {
    for (const k of keys) {
      const [id] = parseIdentities(await readFile(k.file, 'utf8'))
      assert.equal(id.recipient, k.recipient)
    }
  })

  const sizes = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 5 * MiB + 123]
  for (const kind of ['random', 'text'] as const) {
    it(`ours → age -d: ${kind} data, ${sizes.join(', ')} bytes, one recipient`, async () => {
      for (const size of sizes) {
        const plain = content(kind, size)
        const file = join(dir, `ours-${kind}-${size}.age`)
        // Source pieces that do not line up with age's chunks.
        await writeFile(file, await encrypt(plain, [keys[0].recipient], 10_007))
        const out = await ageDecryptFile(file, keys[0].file)
        assert.equal(out.length, size, `${size} bytes`)
        assert.ok(out.equals(plain), `${size} bytes: content differs`)
      }
    })
  }

  it('ours → age -d: two recipients, each key opens it, a third does not', async () => {
    const other = join(dir, 'other.txt')
    await execFileP(tools.ageKeygen, ['-o', other])
    for (const size of [0, CHUNK_SIZE + 1, 5 * MiB]) {
      const plain = content('random', size)
      const file = join(dir, `two-${size}.age`)
      await writeFile(file, await encrypt(plain, [keys[0].recipient, keys[1].recipient]))
      for (const k of keys) assert.ok((await ageDecryptFile(file, k.file)).equals(plain))
      await assert.rejects(ageDecryptFile(file, other))
    }
  })

  it('age -r → ours: one and two recipients, ours first or second', async () => {
    const mine = generateIdentity()
    for (const size of sizes) {
      const plain = content(size % 2 ? 'random' : 'text', size)
      const input = join(dir, `plain-${size}`)
      await writeFile(input, plain)
      for (const rs of [[mine.recipient], [keys[0].recipient, mine.recipient], [mine.recipient, keys[1].recipient]]) {
        const file = join(dir, `theirs-${size}.age`)
        await execFileP(tools.age, [...rs.flatMap((r) => ['-r', r]), '-o', file, input])
        const sealed = await readFile(file)
        const { out, err } = await decrypt(pieces(sealed, 65_536), [mine.identity])
        assert.equal(code(err), 'none')
        assert.ok(out.equals(plain), `${size} bytes to ${rs.length} recipient(s)`)
      }
    }
  })

  it("age -r → ours with age-keygen's identity file", async () => {
    const plain = content('text', 300 * KiB)
    const input = join(dir, 'plain-keyfile')
    const file = join(dir, 'keyfile.age')
    await writeFile(input, plain)
    await execFileP(tools.age, ['-r', keys[1].recipient, '-o', file, input])
    const ids = parseIdentities(await readFile(keys[1].file, 'utf8'))
    const { out, err } = await decrypt([await readFile(file)], ids)
    assert.equal(code(err), 'none')
    assert.ok(out.equals(plain))
    // The other key does not match.
    const { err: err2 } = await decrypt([await readFile(file)], parseIdentities(await readFile(keys[0].file, 'utf8')))
    assertRefused(err2, ['no_match'], 'wrong key')
  })

  // ---- the sealing pipeline ----

  /** ≈ `size` bytes of what a memory dump holds: text, random bytes, zero pages. */
  function mixed(size: number): Buffer {
    const out = Buffer.alloc(size)
    for (let off = 0, i = 0; off < size; i++) {
      const n = Math.min(size - off, 37 * KiB + ((i * 7919) % (200 * KiB)))
      const kind = i % 3
      if (kind === 0) content('text', n).copy(out, off)
      else if (kind === 1) randomBytes(n).copy(out, off)
      off += n // kind 2: zeros
    }
    return out
  }

  async function openSealed(sealedFile: string, keyFile: string): Promise<Buffer> {
    const zst = `${sealedFile}.zst`
    await execFileP(tools.age, ['-d', '-i', keyFile, '-o', zst, sealedFile])
    return (await execFileP(tools.zstd, ['-d', '-q', '-c', zst], { encoding: 'buffer', maxBuffer: 64 * MiB })).stdout
  }

  it('seal() → age -d → zstd -d gives the archive back; digests and sizes are right', async () => {
    for (const size of [0, 1, 3 * MiB + 17]) {
      const archive = join(dir, `archive-${size}.tar`)
      const plain = mixed(size)
      await writeFile(archive, plain)
      const sealedFile = `${archive}.zst.age`
      const progress: number[] = []
      const r = await seal(archive, [keys[0].recipient, keys[1].recipient], createWriteStream(sealedFile), {
        onProgress: (p) => {
          assert.equal(p.total, size)
          progress.push(p.read)
        },
        progressBytes: MiB,
      })
      const sealed = await readFile(sealedFile)
      assert.deepEqual(r.plaintext, { sha256: sha256(plain), size })
      assert.deepEqual(r.sealed, { sha256: sha256(sealed), size: (await stat(sealedFile)).size })
      assert.equal(progress.at(-1), size)
      for (const k of keys) assert.ok((await openSealed(sealedFile, k.file)).equals(plain), `${size} bytes, ${k.file}`)
      if (size > MiB) assert.ok(r.sealed.size < size * 0.9, `mixed content compresses (${r.sealed.size} of ${size})`)
    }
  })

  it('seal() into an async sink (an uploader) gives the same bytes as the digest says', async () => {
    const archive = join(dir, 'archive-sink.tar')
    const plain = mixed(2 * MiB)
    await writeFile(archive, plain)
    const parts: Buffer[] = []
    const r = await seal(archive, [keys[0].recipient], async (sealed) => {
      for await (const p of sealed) parts.push(Buffer.from(p))
    })
    const all = Buffer.concat(parts)
    assert.equal(r.sealed.size, all.length)
    assert.equal(r.sealed.sha256, sha256(all))
    const sealedFile = join(dir, 'archive-sink.age')
    await writeFile(sealedFile, all)
    assert.ok((await openSealed(sealedFile, keys[0].file)).equals(plain))
  })

  it('seal() refuses a bad recipient before reading, and fails on a missing file, a read error, a sink error or an abort', async () => {
    await assert.rejects(seal(join(dir, 'nope.tar'), ['age1nope'], createWriteStream(join(dir, 'x.age'))), (e: unknown) => e instanceof AgeError && e.code === 'bad_recipient')
    await assert.rejects(seal(join(dir, 'nope.tar'), [keys[0].recipient], createWriteStream(join(dir, 'x.age'))), { code: 'ENOENT' })
    await assert.rejects(seal(dir, [keys[0].recipient], async (sealed) => { for await (const _ of sealed); }), { code: 'EISDIR' })
    const big = join(dir, 'archive-sink-error.tar')
    await writeFile(big, mixed(4 * MiB))
    let seen = 0
    await assert.rejects(
      seal(big, [keys[0].recipient], async (sealed) => {
        for await (const p of sealed) if ((seen += p.length) > 100_000) throw new Error('bucket said no')
      }),
      { message: 'bucket said no' },
    )
    const archive = join(dir, 'archive-abort.tar')
    await writeFile(archive, mixed(4 * MiB))
    const ac = new AbortController()
    await assert.rejects(
      seal(archive, [keys[0].recipient], async (sealed) => {
        for await (const _ of sealed) ac.abort()
      }, { signal: ac.signal }),
      { name: 'AbortError' },
    )
  })

  it('a tampered file is refused by age -d as well as by us', async () => {
    const plain = content('random', 3 * CHUNK_SIZE)
    const sealed = await encrypt(plain, [keys[0].recipient])
    sealed[sealed.length - 100] ^= 1
    const file = join(dir, 'tampered.age')
    await writeFile(file, sealed)
    await assert.rejects(ageDecryptFile(file, keys[0].file))
    const { err } = await decrypt([sealed], parseIdentities(await readFile(keys[0].file, 'utf8')))
    assertRefused(err, ['bad_payload'], 'flipped byte')
  })
})

// ---- tampering ---------------------------------------------------------------------------------

describe('age decryption refuses tampered input and never calls a partial plaintext complete', () => {
  const id = generateIdentity()
  const plain = content('random', 4 * CHUNK_SIZE + 1000) // 5 chunks, the last short
  let sealed: Buffer
  let headerEnd: number // offset of the payload nonce
  let payload: number // offset of the first chunk
  const ENC = CHUNK_SIZE + 16

  before(async () => {
    sealed = await encrypt(plain, [id.recipient])
    headerEnd = sealed.indexOf('\n---') + 1
    headerEnd = sealed.indexOf('\n', headerEnd) + 1
    payload = headerEnd + 16
    assert.equal(sealed.length, payload + 4 * ENC + 1000 + 16)
  })

  /** Decrypts `bytes` and checks the refusal code, and that what was released is a verified prefix. */
  async function refused(bytes: Buffer, codes: AgeErrorCode[], what: string, maxReleased: number) {
    for (const source of [[bytes], pieces(bytes, 5000)]) {
      const { out, err } = await decrypt(source, [id.identity])
      assertRefused(err, codes, what)
      assert.ok(out.length <= maxReleased, `${what}: released ${out.length} bytes, at most ${maxReleased} expected`)
      assert.ok(out.equals(plain.subarray(0, out.length)), `${what}: released bytes are not the plaintext's prefix`)
    }
  }
  const edit = (f: (b: Buffer) => Buffer | void) => {
    const b = Buffer.from(sealed)
    return f(b) ?? b
  }

  it('the untouched file decrypts', async () => {
    const { out, err } = await decrypt([sealed], [id.identity])
    assert.equal(code(err), 'none')
    assert.ok(out.equals(plain))
  })

  it('a flipped byte in the payload: refused at that chunk', async () => {
    for (const chunk of [0, 2, 4]) {
      const at = payload + chunk * ENC + 123
      await refused(edit((b) => void (b[at] ^= 0x40)), ['bad_payload'], `chunk ${chunk}`, chunk * CHUNK_SIZE)
    }
    // A flipped tag byte, and a flipped nonce byte (every chunk's key changes).
    await refused(edit((b) => void (b[payload + ENC - 1] ^= 1)), ['bad_payload'], 'tag of chunk 0', 0)
    await refused(edit((b) => void (b[headerEnd + 3] ^= 1)), ['bad_payload'], 'payload nonce', 0)
  })

  it('a flipped byte in the header: refused before any plaintext', async () => {
    const text = sealed.subarray(0, headerEnd).toString('latin1')
    const macAt = text.indexOf('--- ') + 10
    const shareAt = text.indexOf('-> X25519 ') + 15
    const bodyAt = text.indexOf('\n', shareAt) + 5
    const swap = (at: number) => edit((b) => void (b[at] = b[at] === 0x41 ? 0x42 : 0x41))
    await refused(swap(macAt), ['bad_header_mac'], 'MAC', 0)
    await refused(swap(shareAt), ['no_match', 'bad_header'], 'ephemeral share', 0)
    await refused(swap(bodyAt), ['no_match', 'bad_header'], 'wrapped file key', 0)
    await refused(edit((b) => void (b[3] ^= 1)), ['bad_header'], 'version line', 0)
    // A whole extra stanza, inserted before the MAC line: the MAC no longer matches.
    const extra = Buffer.from('-> grease x\n\n')
    const mac = text.indexOf('--- ')
    await refused(Buffer.concat([sealed.subarray(0, mac), extra, sealed.subarray(mac)]), ['bad_header_mac'], 'added stanza', 0)
  })

  it('a truncated file: refused, with `truncated` when it stops on a chunk boundary', async () => {
    await refused(sealed.subarray(0, 10), ['bad_header'], 'inside the header', 0)
    await refused(sealed.subarray(0, headerEnd), ['bad_header'], 'no nonce', 0)
    await refused(sealed.subarray(0, headerEnd + 8), ['bad_header'], 'short nonce', 0)
    await refused(sealed.subarray(0, payload), ['truncated'], 'no chunks', 0)
    // Missing the last chunk (the four full ones verify, the end is never proven).
    await refused(sealed.subarray(0, payload + 4 * ENC), ['truncated'], 'missing last chunk', 4 * CHUNK_SIZE)
    await refused(sealed.subarray(0, payload + 2 * ENC), ['truncated'], 'missing last three chunks', 2 * CHUNK_SIZE)
    await refused(sealed.subarray(0, sealed.length - 1), ['bad_payload'], 'last chunk cut short', 4 * CHUNK_SIZE)
    await refused(sealed.subarray(0, payload + 2 * ENC + 500), ['bad_payload'], 'cut inside a chunk', 2 * CHUNK_SIZE)
  })

  it('reordered, duplicated or appended chunks: refused', async () => {
    const c = (i: number) => sealed.subarray(payload + i * ENC, payload + (i + 1) * ENC)
    const head = sealed.subarray(0, payload)
    const last = sealed.subarray(payload + 4 * ENC)
    await refused(Buffer.concat([head, c(1), c(0), c(2), c(3), last]), ['bad_payload'], 'swapped chunks', 0)
    await refused(Buffer.concat([head, c(0), c(0), c(1), c(2), c(3), last]), ['bad_payload'], 'duplicated chunk', CHUNK_SIZE)
    await refused(Buffer.concat([sealed, Buffer.from('x')]), ['bad_payload'], 'a byte after the end', plain.length)
    await refused(Buffer.concat([sealed, last]), ['bad_payload'], 'the last chunk twice', plain.length)
  })

  it('a file for someone else: no_match, and nothing released', async () => {
    const { out, err } = await decrypt([sealed], [generateIdentity().identity])
    assertRefused(err, ['no_match'], 'other identity')
    assert.equal(out.length, 0)
  })
})
