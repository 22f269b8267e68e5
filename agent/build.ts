/**
 * The agent as one file, the form a DaemonSet runs (agent/deploy/Containerfile): esbuild bundles
 * `agent/main.ts` with its libraries and the CRI descriptor (proto/runtime.json) into
 * `agent/dist/agent.mjs`, so the node runs plain JavaScript — no type stripping (≈ 31 MiB of RSS),
 * no node_modules, no .proto parsing at run time.
 *
 *   node agent/build.ts        # → agent/dist/agent.mjs; then: node agent/dist/agent.mjs --help
 */
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

export const ENTRY = fileURLToPath(new URL('./main.ts', import.meta.url))
export const BUNDLE = fileURLToPath(new URL('./dist/agent.mjs', import.meta.url))
/**
 * Node flags the image runs the bundle with (agent/deploy/Containerfile; the benches use them too).
 * A 1 MiB young generation: the agent's JS garbage is small and short-lived, and V8 otherwise grows
 * it to several MiB that stay resident — ≈ 3–8 MiB less RSS idle, and a steadier figure (test/README.md,
 * "Where the time goes").
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1']

/** Builds the bundle; resolves with its path. */
export function buildAgent(outfile = BUNDLE): Promise<string> {
  return bundleNode(ENTRY, outfile)
}

/**
 * The one esbuild recipe for our Node programs (the agent here, the Node gateway in
 * functions/node/build.ts): one minified ESM file with its libraries; resolves with its path.
 */
export async function bundleNode(entry: string, outfile: string): Promise<string> {
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    outfile,
    // Some libraries (grpc-js, proto-loader, undici's parts) are CommonJS and require Node's modules at run time.
    banner: { js: "import { createRequire as __nodeRequire } from 'node:module'; const require = __nodeRequire(import.meta.url);" },
    legalComments: 'none',
    // Smaller source text: V8 keeps every script's source in memory.
    minify: true,
    logLevel: 'error',
  })
  return outfile
}

if (import.meta.main) process.stdout.write(`${await buildAgent()}\n`)
