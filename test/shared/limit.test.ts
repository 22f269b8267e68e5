import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CheckpointError } from '../../shared/errors.ts'
import { parseLimit } from '../../shared/names.ts'

describe('parseLimit (every list endpoint: operations, evidence, config history)', () => {
  it('whole numbers 1..max, the default when absent', () => {
    assert.equal(parseLimit(null, 100, 500), 100)
    assert.equal(parseLimit('1', 100, 500), 1)
    assert.equal(parseLimit('500', 100, 500), 500)
  })
  it('anything else is 400 invalid_query naming limit', () => {
    for (const raw of ['0', '501', '', ' 5', '5 ', '1e2', '0x10', '2.0', '-1', '+3', 'NaN', '9'.repeat(20)]) {
      assert.throws(() => parseLimit(raw, 100, 500), (e: unknown) => e instanceof CheckpointError && e.code === 'invalid_query' && e.field === 'limit', raw)
    }
  })
})
