/**
 * Test PKI made at test time with the `openssl` CLI: one CA, a server certificate for
 * 127.0.0.1/localhost (the fake agent) and a client certificate (the gateway). Keys are PKCS#8
 * PEM (what workerd's tlsOptions want). Nothing is written outside a fresh temp directory.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

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

function ossl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 })
}

function makeCa(dir: string, name: string): void {
  ossl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`])
  ossl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-days', '2', '-out', `${name}.crt`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
}

function makeLeaf(dir: string, ca: string, name: string, cn: string, ext: string): void {
  ossl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`])
  ossl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`])
  writeFileSync(join(dir, `${name}.ext`), ext)
  ossl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2',
    '-extfile', `${name}.ext`, '-out', `${name}.crt`])
}

/**
 * @example
 * const pki = makeTestPki()
 * https.createServer({ key: pki.serverKey, cert: pki.serverCert, ca: pki.caCert, requestCert: true })
 */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'cp-pki-'))
  try {
    makeCa(dir, 'ca')
    makeCa(dir, 'other')
    const server = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n'
    makeLeaf(dir, 'ca', 'server', 'checkpoint-agent', server)
    makeLeaf(dir, 'other', 'otherserver', 'impostor', server)
    makeLeaf(dir, 'ca', 'client', 'checkpoint-gateway', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n')
    const r = (f: string) => readFileSync(join(dir, f), 'utf8')
    return {
      caCert: r('ca.crt'),
      serverCert: r('server.crt'),
      serverKey: r('server.key'),
      clientCert: r('client.crt'),
      clientKey: r('client.key'),
      otherCaCert: r('other.crt'),
      otherServerCert: r('otherserver.crt'),
      otherServerKey: r('otherserver.key'),
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
