/**
 * `proto/runtime.json`: `runtime.proto` as protobufjs's JSON descriptor, parsed the way the agent
 * loads it (camelCase field names, as `@grpc/proto-loader` with `keepCase: false` gives). The agent
 * loads this JSON (`fromJSON`), so neither it nor its bundle parses `.proto` text at run time.
 * `test/agent/units.test.ts` fails when the JSON no longer matches the `.proto`.
 *
 *   node proto/generate.ts          # rewrites proto/runtime.json
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import protobuf from 'protobufjs'

export const PROTO = fileURLToPath(new URL('./runtime.proto', import.meta.url))
export const JSON_PATH = fileURLToPath(new URL('./runtime.json', import.meta.url))

/** The descriptor JSON of `runtime.proto`, as text (stable: a newline at the end). */
export function descriptorJson(): string {
  const root = new protobuf.Root().loadSync(PROTO, { keepCase: false })
  return JSON.stringify(root.toJSON(), null, 1) + '\n'
}

if (import.meta.main) writeFileSync(JSON_PATH, descriptorJson())
