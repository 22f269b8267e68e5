import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { dumpLogErrors } from '../../agent/cri/dump-log.ts'

describe('dump log errors', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'dump-log-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })
  const message = (path: string) => `checkpointing container "c0ffee" failed: runc did not terminate successfully: exit status 1: criu failed: type DUMP errno 0 path= ${path} (gRPC code 2)`

  it('returns the last error lines of the log the message names, timestamps stripped', async () => {
    const path = join(dir, 'criu-dump.log')
    const noise = Array.from({ length: 5000 }, (_, i) => `(00.${String(i).padStart(6, '0')}) Dumping ${'x'.repeat(40)}`)
    const errors = Array.from({ length: 12 }, (_, i) => `(01.${String(i).padStart(6, '0')}) Error (criu/seize.c:${i}): reason ${i} ${'y'.repeat(i === 11 ? 400 : 0)}`)
    await writeFile(path, [...noise, ...errors, '(02.000000) Warn (x): not an error', ''].join('\n'))
    const lines = await dumpLogErrors(message(path))
    assert.equal(lines.length, 10, 'at most ten')
    assert.equal(lines[0], 'Error (criu/seize.c:2): reason 2 ')
    assert.equal(lines.at(-1)!.length, 300, 'long lines cut')
    assert.ok(lines.every((l) => l.startsWith('Error (')))
  })

  it('reads nothing it should not: no path, relative, unnormalised, other names, missing, unreadable', async () => {
    const other = join(dir, 'secrets.log')
    await writeFile(other, '(00.1) Error (x): secret\n')
    const dotted = `${dir}/sub/../criu-dump.log`
    await writeFile(join(dir, 'criu-dump.log'), '(00.1) Error (x): y\n')
    for (const m of ['criu failed: type DUMP errno 0', message('criu-dump.log'), message(dotted), message(other), message(join(dir, 'nope', 'criu-dump.log'))]) {
      assert.deepEqual(await dumpLogErrors(m), [], m)
    }
    const dirNamed = join(dir, 'd', 'criu-dump.log')
    const { mkdir } = await import('node:fs/promises')
    await mkdir(dirNamed, { recursive: true })
    await chmod(dirNamed, 0o700)
    assert.deepEqual(await dumpLogErrors(message(dirNamed)), [], 'a directory is not a log')
  })

  it('CRI-O names dump.log', async () => {
    const path = join(dir, 'dump.log')
    await writeFile(path, '(00.5) Error (criu/sk-unix.c:1): External socket is used\n')
    assert.deepEqual(await dumpLogErrors(`criu failed: type DUMP errno 0 path= ${path}`), ['Error (criu/sk-unix.c:1): External socket is used'])
  })
})
