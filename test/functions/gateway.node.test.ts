/** The gateway suite against the Node entry (functions/node/start.ts) over real HTTP on loopback. */
import { describe } from 'node:test'
import { gatewaySuite } from './gateway.suite.ts'
import { nodeTarget } from '../support/gateway/targets.ts'

describe('gateway on node', { timeout: 60_000 }, () => gatewaySuite(nodeTarget))
