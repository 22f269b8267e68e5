/**
 * The gateway suites' PKI, as PEM strings: a CA, a server certificate for 127.0.0.1/localhost (the
 * fake agent), a client certificate (the gateway), and an unrelated CA with a server certificate
 * that must not be trusted. Made with test/support/certs.ts in a temp dir that is removed again.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPki } from '../support/certs.ts'

export interface TestPki {
  caCert: string
  serverCert: string
  serverKey: string
  clientCert: string
  clientKey: string
  /** A second, unrelated CA: an agent signed by it must not be trusted. */
  otherCaCert: string
  otherServerCert: string
  otherServerKey: string
}

/**
 * @example
 * const pki = await makeTestPki()
 * https.createServer({ key: pki.serverKey, cert: pki.serverCert, ca: pki.caCert, requestCert: true })
 */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-pki-'))
  try {
    const [ca, other] = await Promise.all([createPki(join(dir, 'ca'), 'ca'), createPki(join(dir, 'other'), 'other')])
    const [server, client, impostor] = await Promise.all([
      ca.issue('server', { cn: 'checkpoint-agent', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'server' }),
      ca.issue('client', { cn: 'checkpoint-gateway', usage: 'client' }),
      other.issue('impostor', { cn: 'impostor', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'server' }),
    ])
    return {
      caCert: ca.ca.certPem,
      serverCert: server.certPem,
      serverKey: server.keyPem,
      clientCert: client.certPem,
      clientKey: client.keyPem,
      otherCaCert: other.ca.certPem,
      otherServerCert: impostor.certPem,
      otherServerKey: impostor.keyPem,
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
