/**
 * The Node gateway as one file, the form it is measured and deployed in: esbuild bundles
 * `functions/node/main.ts` with its libraries into `functions/node/dist/gateway.mjs` (the agent's
 * recipe, agent/build.ts `bundleNode`), so the process runs plain JavaScript — no type stripping
 * and its ≈ 30 MiB of RSS, no node_modules at run time. `npm run start:gateway` builds it and runs
 * it with ./start.ts `NODE_FLAGS`.
 *
 *   node functions/node/build.ts     # → functions/node/dist/gateway.mjs
 */
import { fileURLToPath } from 'node:url'
import { bundleNode } from '../../agent/build.ts'

export const ENTRY = fileURLToPath(new URL('./main.ts', import.meta.url))
export const BUNDLE = fileURLToPath(new URL('./dist/gateway.mjs', import.meta.url))

/** Builds the bundle of `entry` (default the Node entry); resolves with its path. */
export function buildGateway(outfile = BUNDLE, entry = ENTRY): Promise<string> {
  return bundleNode(entry, outfile)
}

if (import.meta.main) process.stdout.write(`${await buildGateway()}\n`)
