/**
 * The `checkpoint` command as investigators run it (a child process, `node cli/main.ts`) against
 * the Node gateway in front of the fake agent: live progress, failures by code, downloads that
 * resume and are verified, nothing partial left as the result.
 */
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { nodeTarget } from '../support/gateway/targets.ts'

const CLI = fileURLToPath(new URL('../../cli/main.ts', import.meta.url))
const ALL = 'checkpoint:create checkpoint:read checkpoint:delete'

describe('checkpoint (the CLI)', () => {
  let world: World
  let gw: Awaited<ReturnType<typeof nodeTarget>>
  let dir: string
  let sre: string
  before(async () => {
    world = await makeWorld()
    gw = await nodeTarget(world, world.rawConfig())
    dir = await mkdtemp(join(tmpdir(), 'cli-'))
    sre = await world.token({ sub: 'sam', groups: ['sre'], scope: ALL })
  })
  after(async () => {
    await gw?.close()
    await world?.close()
    await rm(dir, { recursive: true, force: true })
  })

  const cli = (args: string[], token = sre, env: Record<string, string> = {}) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', CHECKPOINT_GATEWAY: gw.url, CHECKPOINT_TOKEN: token, ...env }, timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
    })

  it('create: live progress on stderr, the archive and its download path on stdout', async () => {
    const r = await cli(['create', 'prod/team-a/slow/app', '--node=node-a'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /^accepted on node-a$/m)
    assert.match(r.stderr, /checkpointing … \d+ s/)
    assert.match(r.stderr, /^completed in /m)
    assert.match(r.stdout, /^checkpoint-slow_team-a-app-\S+\.tar {2}4096 bytes {2}sha256 [0-9a-f]{64}$/m)
    assert.match(r.stdout, /^\/v1\/clusters\/prod\/nodes\/node-a\/checkpoints\/checkpoint-slow_team-a-app-.+\?namespace=team-a$/m)
  })

  it('create -o: checkpoints, downloads and verifies in one command', async () => {
    const out = join(dir, 'one.tar')
    const r = await cli(['create', 'prod/team-a/web/app', '--node=node-a', '-o', out, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const [event, fetched] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>)
    const bytes = await readFile(out)
    assert.equal(fetched!.sha256, createHash('sha256').update(bytes).digest('hex'))
    assert.equal(event!.archive.sha256, fetched!.sha256)
  })

  it('a failed checkpoint exits 1 naming the stable code; a refusal by policy too', async () => {
    const failed = await cli(['create', 'prod/team-a/stream-fail/app', '--node=node-a'])
    assert.equal(failed.code, 1)
    assert.match(failed.stderr, /^checkpoint: checkpoint_failed: /m)
    const alice = await world.token({ sub: 'alice', scp: ['checkpoint:create', 'checkpoint:read'] })
    const denied = await cli(['create', 'prod/team-b/web/app', '--node=node-a', '--json'], alice)
    assert.equal(denied.code, 4)
    assert.equal((JSON.parse(denied.stderr.trim().split('\n').at(-1)!) as { code: string }).code, 'forbidden')
  })

  it('ls shows what the caller may read, with download paths', async () => {
    const r = await cli(['ls', 'prod', 'node-a', '--json'])
    assert.equal(r.code, 0, r.stderr)
    const { items } = JSON.parse(r.stdout) as { items: Array<{ name: string; download: string }> }
    assert.ok(items.some((i) => i.name.startsWith('checkpoint-web_team-a-app-') && i.download.includes('?namespace=team-a')))
  })

  it('get resumes a part file with Range + If-Range and verifies the whole', async () => {
    const made = await cli(['create', 'prod/team-a/big/app', '--node=node-a', '--json'])
    const event = JSON.parse(made.stdout) as { download: string; archive: { sha256: string; size: number } }
    const out = join(dir, 'big.tar')
    // A download cut after 1,000,000 bytes, as an earlier run would leave it.
    const head = await fetch(gw.url + event.download, { headers: { authorization: `Bearer ${sre}`, range: 'bytes=0-999999' } })
    assert.equal(head.status, 206)
    await writeFile(`${out}.part`, Buffer.from(await head.arrayBuffer()))
    await writeFile(`${out}.part.etag`, head.headers.get('etag')!)
    const r = await cli(['get', event.download, '-o', out, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const f = JSON.parse(r.stdout) as { resumedFrom: number; sha256: string; size: number }
    assert.deepEqual([f.resumedFrom, f.size, f.sha256], [1_000_000, event.archive.size, event.archive.sha256])
    await assert.rejects(stat(`${out}.part`))
  })

  it('a digest that does not match leaves no file and no part behind', async () => {
    const made = await cli(['create', 'prod/team-a/web/app', '--node=node-a', '--json'])
    const event = JSON.parse(made.stdout) as { download: string }
    const out = join(dir, 'wrong.tar')
    const r = await cli(['get', event.download, '-o', out, '--sha256', 'f'.repeat(64)])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^checkpoint: digest_mismatch: /m)
    await assert.rejects(stat(out))
    await assert.rejects(stat(`${out}.part`))
  })

  it('usage errors exit 2: no command, no gateway, a bad target', async () => {
    assert.equal((await cli([])).code, 2)
    assert.equal((await cli(['ls', 'prod', 'node-a'], sre, { CHECKPOINT_GATEWAY: '' })).code, 2)
    assert.equal((await cli(['create', 'prod/team-a/web'])).code, 2)
  })

  it('gateway and token from a config file, the token from a command (an OIDC helper\'s stand-in); flags and environment first', async () => {
    const config = join(dir, 'config.json')
    await writeFile(config, JSON.stringify({ gateway: gw.url, tokenCommand: `printf '%s\\n' '${sre}'` }))
    const run = (args: string[], env: Record<string, string>) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
    })
    const ok = await run(['ls', 'prod', 'node-a', '--json'], { CHECKPOINT_CONFIG: config })
    assert.equal(ok.code, 0, ok.stderr)
    assert.ok(Array.isArray((JSON.parse(ok.stdout) as { items: unknown[] }).items))
    // XDG_CONFIG_HOME/checkpoint/config.json is the default place.
    const xdg = join(dir, 'xdg')
    await (await import('node:fs/promises')).mkdir(join(xdg, 'checkpoint'), { recursive: true })
    await writeFile(join(xdg, 'checkpoint', 'config.json'), JSON.stringify({ gateway: gw.url, tokenCommand: `printf %s '${sre}'` }))
    assert.equal((await run(['ls', 'prod', 'node-a'], { XDG_CONFIG_HOME: xdg })).code, 0)
    // The environment wins over the file: a bad token from it is 4.
    assert.equal((await run(['ls', 'prod', 'node-a'], { CHECKPOINT_CONFIG: config, CHECKPOINT_TOKEN: 'not-a-token' })).code, 4)
    const failing = await run(['ls', 'prod', 'node-a'], { CHECKPOINT_CONFIG: config, CHECKPOINT_TOKEN_COMMAND: 'echo nope >&2; exit 3' })
    assert.equal(failing.code, 1)
    assert.match(failing.stderr, /^checkpoint: token_command: the token command failed \(3\): nope$/m)
    const missing = await run(['ls', 'prod', 'node-a'], { CHECKPOINT_CONFIG: join(dir, 'no-such.json') })
    assert.match(missing.stderr, /^checkpoint: config_file: /m)
  })

  it('rm deletes an archive from its node; again it is 3 not found', async () => {
    const made = await cli(['create', 'prod/team-a/web/app', '--node=node-a', '--json'])
    const { archive } = JSON.parse(made.stdout.trim().split('\n')[0]!) as { archive: { name: string } }
    const r = await cli(['rm', 'prod', 'node-a', archive.name, '--namespace=team-a'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), `deleted ${archive.name} from prod/node-a`)
    const again = await cli(['rm', 'prod', 'node-a', archive.name, '--namespace=team-a'])
    assert.equal(again.code, 3, again.stderr)
    assert.equal((await cli(['rm', 'prod', 'node-a'])).code, 2)
  })

  it('every command has --help with an example; unknown flags are usage errors', async () => {
    for (const command of ['create', 'ls', 'get', 'rm', 'ops', 'evidence', 'config', 'keys', 'decrypt', 'verify']) {
      const r = await cli([command, '--help'])
      assert.equal(r.code, 0)
      assert.match(r.stdout, new RegExp(`^usage: checkpoint ${command} `, 'm'))
      assert.match(r.stdout, new RegExp(`^example: checkpoint ${command} `, 'm'))
    }
    assert.equal((await cli(['ls', '--no-such-flag'])).code, 2)
  })

  it('on a terminal: one status line redrawn in place (a pseudo-terminal from script(1)); piped: plain lines', async () => {
    const env = { PATH: process.env.PATH ?? '', CHECKPOINT_GATEWAY: gw.url, CHECKPOINT_TOKEN: sre, TERM: 'xterm' }
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} create prod/team-a/slow/app --node=node-a -o ${JSON.stringify(join(dir, 'tty.tar'))}`
    const tty = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile('script', ['-qec', command, '/dev/null'], { env, timeout: 30_000 }, (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout }))
    })
    assert.equal(tty.code, 0, tty.out)
    // The heartbeats rewrite one line: carriage return, erase line, the new status — never one line each.
    assert.match(tty.out, /\r\x1b\[2K/)
    assert.match(tty.out, /checkpointing … \d+ s/)
    assert.ok(!/checkpointing … \d+ s\r?\n/.test(tty.out), "no heartbeat printed as a line of its own")
    assert.match(tty.out, /^accepted on node-a\r?$/m)
    assert.match(tty.out, /completed in \d/)
    // -o: the download's bar, then its result line.
    assert.match(tty.out, /downloading \[#+\.*\] \d+ %  0\.0 MiB of 0\.0 MiB/)
    assert.match(tty.out, /tty\.tar  4096 bytes  sha256 [0-9a-f]{64} verified/)
    const piped = await cli(['create', 'prod/team-a/slow/app', '--node=node-a'])
    assert.ok(!piped.stderr.includes('\x1b'), 'no escape sequences in a pipe')
    assert.ok(piped.stderr.split('\n').filter((l) => /^checkpointing … \d+ s$/.test(l)).length >= 2, piped.stderr)
  })

  it('Ctrl-C while watching: exit 130, says the checkpoint goes on and how to find it; the gateway still sees it through', async () => {
    const child = spawn(process.execPath, [CLI, 'create', 'prod/team-a/slow-3000ms/app', '--node=node-a'], { env: { PATH: process.env.PATH ?? '', CHECKPOINT_GATEWAY: gw.url, CHECKPOINT_TOKEN: sre }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    let sent = false
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString()
      if (!sent && stderr.includes('accepted on node-a')) sent = child.kill('SIGINT')
    })
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
    assert.equal(code, 130, stderr)
    assert.match(stderr, /^checkpoint: interrupted: stopped watching; the checkpoint goes on on node node-a .*Find the archive with: checkpoint ls prod node-a$/m)
    // The gateway reads the agent's stream to its end and logs the outcome: the checkpoint did go on.
    const deadline = Date.now() + 10_000
    const done = () => gw.logs.some((l) => l.type === 'outcome' && l.pod === 'slow-3000ms' && l.status === 200)
    while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    assert.ok(done(), 'the checkpoint completed after the CLI stopped watching')
  })

  it('the installed command (package.json bin → cli/checkpoint.js) runs on this Node, and on an older Node through the checkout\'s own', async () => {
    const pkg = JSON.parse(await readFile(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { bin: Record<string, string> }
    const bin = fileURLToPath(new URL(`../../${pkg.bin.checkpoint}`, import.meta.url))
    const runWith = (node: string) => new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(node, [bin, 'ops', '--help'], { timeout: 30_000 }, (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout }))
    })
    const here = await runWith(process.execPath)
    assert.deepEqual([here.code, /^usage: checkpoint ops /m.test(here.stdout)], [0, true])
    // The machines' system Node is 20 (no type stripping): the launcher hands over to node_modules/.bin/node.
    const system = '/usr/bin/node'
    const old = await runWith(system)
    assert.deepEqual([old.code, /^usage: checkpoint ops /m.test(old.stdout)], [0, true], `${system}: ${old.stdout}`)
  })

  it('exit status by code: 3 not found, 4 not allowed, 5 server side', async () => {
    assert.equal((await cli(['ls', 'nowhere', 'node-a'])).code, 3)
    assert.equal((await cli(['ls', 'prod', 'node-a'], 'not-a-token')).code, 4)
    assert.equal((await cli(['create', 'prod/team-a/fail-500/app', '--node=node-a'])).code, 5)
    assert.equal((await cli(['create', 'prod/team-a/fail-404/app', '--node=node-a'])).code, 3)
  })
})
