/**
 * A throwaway PKI for tests, benchmarks and the dev stack: one CA, then server and client
 * certificates with the SANs asked for. Uses the `openssl` command (P-256 keys, PKCS8 PEM, which
 * both Node and workerd accept).
 */
import { execFile } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
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
