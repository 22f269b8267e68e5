import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseFigures, table } from './table.ts'

describe('benchmark reference table', () => {
  it('keeps figure lines only and judges each against its goal', () => {
    const figures = parseFigures([
      '# bench: agent.bench.ts',
      '{"name":"agent_rss_idle","value":58.2,"unit":"MiB","baseline":41.7,"ratio":1.396}',
      '{"name":"agent_checkpoint_overhead","value":339,"unit":"ms","baseline":324,"ratio":1.046}',
      '{"name":"something_new","value":3,"unit":"x","baseline":null,"ratio":null}',
      'not json',
    ].join('\n'))
    assert.deepEqual(figures.map((f) => f.name), ['agent_rss_idle', 'agent_checkpoint_overhead', 'something_new'])
    const rows = table(figures, '2026-11-30').split('\n').filter((l) => l.startsWith('| `'))
    assert.equal(rows.length, 3)
    assert.match(rows[0]!, /58\.20 MiB \| 41\.70 \| 1\.40 \| ≤ 60 MiB — met \| `npm run bench:agent`/)
    assert.match(rows[1]!, /ratio ≤ 1\.02 — missed/)
    assert.match(rows[2]!, /\| {2}\| `npm run bench` \|$/)
  })
})
