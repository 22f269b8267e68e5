import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { blocks, median, perBlock, spreadOf } from './figures.ts'
import { parseFigures, table } from './table.ts'

describe('benchmark reference table', () => {
  it('keeps figure lines only and judges each against its goal', () => {
    const figures = parseFigures([
      '# bench: agent.bench.ts',
      '{"name":"agent_rss_idle","value":58.2,"unit":"MiB","baseline":41.7,"ratio":1.396}',
      '{"name":"agent_checkpoint_overhead","value":339,"unit":"ms","baseline":324,"ratio":1.046,"spread":{"n":5,"min":0.98,"max":1.101}}',
      '{"name":"something_new","value":3,"unit":"x","baseline":null,"ratio":null}',
      'not json',
    ].join('\n'))
    assert.deepEqual(figures.map((f) => f.name), ['agent_rss_idle', 'agent_checkpoint_overhead', 'something_new'])
    const rows = table(figures, '2026-11-30').split('\n').filter((l) => l.startsWith('| `'))
    assert.equal(rows.length, 3)
    assert.match(rows[0]!, /58\.20 MiB \| 41\.70 \| 1\.40 \| {2}\| ≤ 60 MiB — met \| `npm run bench:agent`/)
    assert.match(rows[1]!, /\| 1\.05 \| 0\.98–1\.10 \(5\) \| ratio ≤ 1\.02 — missed/)
    assert.match(rows[2]!, /\| {2}\| {2}\| `npm run bench` \|$/)
  })

  it('judges each archive size and front of the gateway downloads, not a process\'s first download', () => {
    const figures = parseFigures([
      '{"name":"gateway.node.download.tls.512mib","value":392,"unit":"MB/s","baseline":283,"ratio":1.385}',
      '{"name":"gateway.node.download.plain.100mib","value":383,"unit":"MB/s","baseline":393,"ratio":0.974}',
      '{"name":"gateway.node.download.plain.first_100mib","value":236,"unit":"MB/s","baseline":400,"ratio":0.591}',
    ].join('\n'))
    const rows = table(figures, '2026-12-01').split('\n').filter((l) => l.startsWith('| `'))
    assert.match(rows[0]!, /ratio ≥ 1\.1 \(nginx, same front\) — met \| `npm run bench:gateway`/)
    assert.match(rows[1]!, /ratio ≥ 1\.1 \(nginx, same front\) — missed/)
    assert.match(rows[2]!, /\| {2}\| `npm run bench:gateway` \|$/)
  })

  it('cuts interleaved samples into rounds and reports their spread', () => {
    assert.deepEqual(blocks([1, 2, 3, 4, 5, 6, 7], 3), [[1, 2], [3, 4], [5, 6, 7]])
    assert.deepEqual(blocks([1, 2], 5), [[1], [2]])
    const ours = [10, 12, 11, 30, 31, 29]
    const theirs = [10, 10, 10, 10, 10, 10]
    assert.deepEqual(perBlock(ours, theirs, 2, (o, t) => median(o) / median(t)), [1.1, 3])
    assert.deepEqual(spreadOf([1.1, 3, 2]), { n: 3, min: 1.1, max: 3 })
    assert.equal(spreadOf([1.1]), undefined)
  })
})
