/**
 * The analyst's tools for sealed checkpoints — Debian sid's `age` 1.3 (and `age-keygen`) plus
 * `zstd` — fetched once per process by fetch-evidence.sh into a cache, nothing system-wide. Tests
 * and benches use them as the independent side of interoperability: what we seal, `age -d` opens.
 *
 * @example
 * const tools = await ensureAge()
 * await execFileP(tools.ageKeygen, ['-o', keyFile])
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const execFileP = promisify(execFile)
const FETCH_SH = fileURLToPath(new URL('./fetch-evidence.sh', import.meta.url))

export interface EvidenceTools {
  /** The cache directory (its `bin/` holds the three tools). */
  dir: string
  age: string
  ageKeygen: string
  zstd: string
  /** sid's cosign 3: verifies the agent's signed statements offline (Sigstore bundles). */
  cosign: string
}

let tools: Promise<EvidenceTools> | undefined

/** Runs fetch-evidence.sh once per process; resolves to the tools' paths. */
export function ensureAge(): Promise<EvidenceTools> {
  tools ??= execFileP(FETCH_SH, [], { maxBuffer: 16 << 20, timeout: 300_000 }).then(({ stdout }) => {
    const dir = stdout.trim()
    const bin = join(dir, 'bin')
    return { dir, age: join(bin, 'age'), ageKeygen: join(bin, 'age-keygen'), zstd: join(bin, 'zstd'), cosign: join(bin, 'cosign') }
  })
  return tools
}
