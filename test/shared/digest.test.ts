import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { canonicalJson, sha256Hex } from '../../shared/digest.ts'

describe('shared/digest', () => {
  it('sha256Hex: the hex SHA-256 of the UTF-8 text, or its first bytes', async () => {
    for (const text of ['', 'abc', 'ünïcødé ✓', 'x'.repeat(100_000)]) {
      const want = createHash('sha256').update(text, 'utf8').digest('hex')
      assert.equal(await sha256Hex(text), want)
      assert.equal(await sha256Hex(text, 8), want.slice(0, 16))
    }
  })

  it('canonicalJson: key order never matters, undefined members are left out as JSON.stringify does', () => {
    const a = { b: [1, { y: 2, x: 'é' }], a: null, c: { z: true, w: undefined } }
    const b = { c: { z: true }, a: null, b: [1, { x: 'é', y: 2 }] }
    assert.equal(canonicalJson(a), canonicalJson(b))
    assert.equal(canonicalJson(a), '{"a":null,"b":[1,{"x":"é","y":2}],"c":{"z":true}}')
    // A value that went through storage (JSON.stringify → parse) reads the same as before.
    assert.equal(canonicalJson(JSON.parse(JSON.stringify(a))), canonicalJson(a))
    assert.equal(canonicalJson([undefined]), JSON.stringify([undefined]))
    assert.notEqual(canonicalJson({ a: 1 }), canonicalJson({ a: '1' }))
  })
})
