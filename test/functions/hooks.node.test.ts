/** The webhook suite against the Node entry: node:sqlite file, in-process queue. */
import { after, describe } from 'node:test'
import { hooksSuite } from './hooks.suite.ts'
import { nodeHooksTarget, tempDir } from '../support/gateway/hooks-targets.ts'

const tmp = tempDir()
describe('webhooks on node', { timeout: 90_000 }, () => {
  hooksSuite(nodeHooksTarget({ dbFile: `${tmp.dir}/operations.sqlite` }))
  after(tmp.remove)
})
