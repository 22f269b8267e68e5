#!/usr/bin/env node
// The `checkpoint` command as installed (package.json "bin": `npm install -g <checkout>`, `npm link`,
// or `npx checkpoint` inside the checkout). The CLI is TypeScript that Node runs by stripping
// types (Node >= 22.19); on an older Node this re-runs itself with the checkout's own Node
// (node_modules/.bin/node, installed by `npm ci`). Plain JavaScript so that any Node can start it.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const [major, minor] = process.versions.node.split('.').map(Number)
if (major > 22 || (major === 22 && minor >= 19)) {
  const { run } = await import('./main.ts')
  await run()
} else {
  const own = fileURLToPath(new URL('../node_modules/.bin/node', import.meta.url))
  if (!existsSync(own)) {
    process.stderr.write(`checkpoint: needs Node >= 22.19 (this is ${process.versions.node}); run npm ci in the checkout, or install Node 24\n`)
    process.exit(2)
  }
  const r = spawnSync(own, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(r.status ?? (r.signal === 'SIGINT' ? 130 : 1))
}
