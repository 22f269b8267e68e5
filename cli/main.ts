/**
 * `checkpoint` — the investigators' command (`npm run checkpoint -- <command> …`, or
 * `node cli/main.ts` on Node ≥ 22.19). Talks to the gateway with the caller's token; prints
 * progress on stderr and results on stdout (`--json` for machine-readable output).
 *
 * Commands and their help: {@link COMMANDS}.
 *
 * Exit status (from the stable error codes): 0 done; 1 failed (a checkpoint that failed, a digest
 * that did not match, a cut); 2 usage; 3 not found; 4 not allowed (unauthenticated, forbidden);
 * 5 server side (5xx); 130 interrupted (Ctrl-C while watching a checkpoint, which goes on).
 */
import { parseArgs } from 'node:util'
import { fetchInto, ls, rm } from './archives.ts'
import { config } from './config.ts'
import { create } from './create.ts'
import { decrypt, keys, verify } from './evidence.ts'
import { CliError, gatewayOptions, type Io } from './gateway.ts'
import { ops } from './ops.ts'
import { evidence } from './vault.ts'

/** Each command: its synopsis, what it does, and an example (`checkpoint COMMAND --help`). */
const COMMANDS: Record<string, [synopsis: string, what: string, example: string]> = {
  create: ['create CLUSTER/NAMESPACE/POD/CONTAINER [--node=N] [--timeout=S] [--reason=TEXT] [--store] [-o FILE]', 'checkpoint with live progress (a bar on a terminal); --store seals it into the vault; -o also downloads it; Ctrl-C stops watching, not the checkpoint', 'checkpoint create prod-eu/payments/api-7d9f/app --reason="case 4711" --store -o api.tar'],
  ls: ['ls [CLUSTER[/NAMESPACE]] [--node=N] | ls CLUSTER NODE', 'stored evidence you may read, and with a node its archives', 'checkpoint ls prod-eu/payments --node=node-17'],
  get: ['get DOWNLOAD_PATH -o FILE [--sha256=HEX] | get EVIDENCE_ID -o FILE [-i IDENTITY]', 'download an archive (resumable, a bar on a terminal), verified by SHA-256; an evidence id (ending .zst.age) is evidence get', "checkpoint get '/v1/clusters/prod-eu/nodes/node-17/checkpoints/checkpoint-api-7d9f_payments-app-2026-11-30T10:00:00Z.tar?namespace=payments' -o api.tar"],
  rm: ['rm CLUSTER NODE NAME [--namespace=NS]', "delete an archive from its node (the custody log records it)", 'checkpoint rm prod-eu node-17 checkpoint-api-7d9f_payments-app-2026-11-30T10:00:00Z.tar --namespace=payments'],
  ops: ['ops [CLUSTER[/NAMESPACE] | ID] [--state=S] [--alert=A] [--watch [--interval=S]]', 'alert-triggered operations; --watch follows one to its end (exit 0 succeeded, 1 failed) or the list until Ctrl-C', 'checkpoint ops prod-eu --state=failed'],
  evidence: ['evidence ls [--cluster=C] [--namespace=N] | evidence get ID -o FILE [-i IDENTITY [--key AGENT.pub]]', 'stored evidence; get checks the custody chain and the sealed digest, -i decrypts and decompresses, --key verifies the signed statement', 'checkpoint evidence get prod-eu/payments/api-7d9f/app/checkpoint-api-7d9f_payments-app-2026-11-30T10:00:00Z.tar.zst.age -o api.tar -i ~/.config/checkpoint/investigator.txt'],
  config: ['config get [-o FILE] | config diff FILE | config apply FILE', "the gateway's configuration (admin scope)", 'checkpoint config get -o gateway.json && checkpoint config diff gateway.json'],
  keys: ['keys age -o FILE | keys grant --out DIR | keys statement -o FILE', 'make keys (offline): an investigator age identity, the gateway grant key and agent JWKS, an agent statement key', 'checkpoint keys age -o ~/.config/checkpoint/investigator.txt'],
  decrypt: ['decrypt FILE.zst.age -i IDENTITY -o FILE', 'open sealed evidence: age, then zstd (offline)', 'checkpoint decrypt api.tar.zst.age -i investigator.txt -o api.tar'],
  verify: ['verify ARCHIVE --statement BUNDLE --key AGENT.pub', 'check a signed statement against the archive (offline)', 'checkpoint verify api.tar --statement api.tar.statement.json --key node-17.pub'],
}

const COMMON = `options: --gateway=URL (CHECKPOINT_GATEWAY), --token-file=F (CHECKPOINT_TOKEN_FILE or CHECKPOINT_TOKEN), --token-command=CMD (CHECKPOINT_TOKEN_COMMAND), --json
config file: CHECKPOINT_CONFIG or ~/.config/checkpoint/config.json with gateway, tokenFile, tokenCommand
exit status: 0 done, 1 failed, 2 usage, 3 not found, 4 not allowed, 5 server side, 130 interrupted`

const USAGE = `usage: checkpoint <command> [options]   (checkpoint <command> --help for one, with an example)
${Object.values(COMMANDS).map(([syn, what]) => `  ${syn}\n      ${what}`).join('\n')}
${COMMON}
example: ${COMMANDS.create![2]}
`

const helpOf = (command: string) => {
  const [syn, what, example] = COMMANDS[command]!
  return `usage: checkpoint ${syn}\n  ${what}\n${COMMON}\nexample: ${example}\n`
}

/** Exit status for a failure, by its stable code and status. */
function exitStatus(code: string, status: number | undefined): number {
  if (code === 'usage') return 2
  if (code === 'interrupted') return 130
  if (status === 404 || /not_found$/.test(code)) return 3
  if (status === 401 || status === 403 || code === 'unauthenticated' || code === 'forbidden') return 4
  if ((status ?? 0) >= 500 && code !== 'checkpoint_failed') return 5
  return 1
}

export async function main(argv: string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        gateway: { type: 'string' }, 'token-file': { type: 'string' }, 'token-command': { type: 'string' }, json: { type: 'boolean' }, node: { type: 'string' },
        timeout: { type: 'string' }, output: { type: 'string', short: 'o' }, sha256: { type: 'string' }, help: { type: 'boolean', short: 'h' },
        identity: { type: 'string', short: 'i' }, statement: { type: 'string' }, key: { type: 'string' }, out: { type: 'string' },
        store: { type: 'boolean' }, reason: { type: 'string' }, cluster: { type: 'string' }, namespace: { type: 'string' },
        watch: { type: 'boolean' }, interval: { type: 'string' }, state: { type: 'string' }, alert: { type: 'string' },
      },
    })
  } catch (err) {
    io.err(`checkpoint: ${(err as Error).message}\n${USAGE}`)
    return 2
  }
  const { values: flags, positionals: [command, ...args] } = parsed
  if (flags.help && command && Object.hasOwn(COMMANDS, command)) {
    io.out(helpOf(command))
    return 0
  }
  if (flags.help || !command) {
    io.out(USAGE)
    return command || flags.help ? 0 : 2
  }
  try {
    if (command === 'keys') return (await keys(args, flags, io), 0)
    if (command === 'decrypt') return (await decrypt(args, flags, io), 0)
    if (command === 'verify') return (await verify(args, flags, io), 0)
    const g = await gatewayOptions(flags, env)
    if (command === 'create') await create(g, args, flags, io)
    else if (command === 'ls') await ls(g, args, flags, io)
    else if (command === 'rm') await rm(g, args, flags, io)
    else if (command === 'ops') await ops(g, args, flags, io)
    else if (command === 'evidence') await evidence(g, args, flags, io)
    else if (command === 'config') await config(g, args, flags, io)
    else if (command === 'get' && /^[^/].*\.zst\.age$/.test(args[0] ?? '')) await evidence(g, ['get', ...args], flags, io)
    else if (command === 'get') {
      if (!args[0] || typeof flags.output !== 'string') throw new CliError('usage', 'get DOWNLOAD_PATH -o FILE')
      await fetchInto(g, args[0], flags.output, flags.sha256, flags, io)
    } else throw new CliError('usage', `unknown command ${command}`)
    return 0
  } catch (caught) {
    // A file that exists already, a path that does not: said plainly, not as a stack trace.
    const fsCode = (caught as NodeJS.ErrnoException).code
    const err = caught instanceof CliError ? caught : typeof fsCode === 'string' && /^E[A-Z]+$/.test(fsCode) ? new CliError(fsCode === 'EEXIST' ? 'exists' : 'file_error', (caught as Error).message) : undefined
    if (!err) throw caught
    if (err.code === 'usage') {
      io.err(`checkpoint: ${err.message}\n${USAGE}`)
      return 2
    }
    io.err(flags.json ? JSON.stringify({ code: err.code, status: err.status, message: err.message, ...err.details }) : `checkpoint: ${err.code}: ${err.message}`)
    const log = err.details.runtimeLog
    if (!flags.json && Array.isArray(log)) for (const l of log) io.err(`  ${String(l)}`)
    return exitStatus(err.code, err.status)
  }
}

/** Runs the command line of this process (cli/checkpoint.js, the installed `checkpoint`, calls it too). */
export async function run(): Promise<void> {
  const code = await main(process.argv.slice(2), process.env, {
    out: (l) => process.stdout.write(l + '\n'),
    err: (l) => process.stderr.write(l + '\n'),
    errWrite: (s) => process.stderr.write(s),
    errTty: process.stderr.isTTY === true,
  })
  process.exitCode = code
}

if (import.meta.main) await run()
