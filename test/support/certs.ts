/**
 * A throwaway PKI for tests, benchmarks and the dev stack: one CA, then server and client
 * certificates with the SANs asked for. Uses the `openssl` command (P-256 keys, PKCS8 PEM, which
 * both Node and workerd accept). `makeTestPki` is the gateway suites' set of PEM strings built on it.
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface Issued {
  cert: string
  key: string
  certPem: string
  keyPem: string
}

export interface IssueOptions {
  cn: string
  dns?: string[]
  ips?: string[]
  uris?: string[]
  /** Client certificates get clientAuth; servers serverAuth. */
  usage?: 'server' | 'client' | 'both'
  days?: number
}

export interface Pki {
  dir: string
  ca: Issued
  issue(name: string, o: IssueOptions): Promise<Issued>
}

async function files(dir: string, name: string): Promise<Issued> {
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  return { cert, key, certPem: await readFile(cert, 'utf8'), keyPem: await readFile(key, 'utf8') }
}

/** Creates a CA in `dir` (named `name`, default "test-ca"). */
export async function createPki(dir: string, name = 'test-ca'): Promise<Pki> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const caKey = join(dir, 'ca.key')
  const caCert = join(dir, 'ca.crt')
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', caKey])
  await run('openssl', ['req', '-x509', '-new', '-key', caKey, '-out', caCert, '-days', '30', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  const ca = await files(dir, 'ca')
  let serial = 1
  return {
    dir,
    ca,
    async issue(certName, o) {
      const key = join(dir, `${certName}.key`)
      const csr = join(dir, `${certName}.csr`)
      const ext = join(dir, `${certName}.ext`)
      const san = [...(o.dns ?? []).map((d) => `DNS:${d}`), ...(o.ips ?? []).map((i) => `IP:${i}`), ...(o.uris ?? []).map((u) => `URI:${u}`)]
      const eku = o.usage === 'client' ? 'clientAuth' : o.usage === 'both' ? 'serverAuth,clientAuth' : 'serverAuth'
      await writeFile(ext, [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        `extendedKeyUsage=${eku}`,
        ...(san.length ? [`subjectAltName=${san.join(',')}`] : []),
      ].join('\n') + '\n')
      await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key])
      await run('openssl', ['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=${o.cn}`])
      await run('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', String(Date.now() * 100 + serial++),
        '-days', String(o.days ?? 30), '-extfile', ext, '-out', join(dir, `${certName}.crt`)])
      return files(dir, certName)
    },
  }
}

/*
 * The gateway suites' PKI, as PEM strings: a CA, a server certificate for 127.0.0.1/localhost (the
 * fake agent), a client certificate (the gateway), and an unrelated CA with a server certificate
 * that must not be trusted. Made with createPki in a temp dir that is removed again.
 */
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
