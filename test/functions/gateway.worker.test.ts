/** The gateway suite against the Worker bundle in miniflare (real workerd). */
import { after, describe } from 'node:test'
import { gatewaySuite } from './gateway.suite.ts'
import { removeBundle, workerTarget } from '../support/gateway/targets.ts'

describe('gateway on workerd', { timeout: 90_000 }, () => {
  after(removeBundle)
  gatewaySuite(workerTarget)
})
