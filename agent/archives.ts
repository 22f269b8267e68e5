/**
 * The checkpoint directory: where archives are written, how they are named, listed, hashed,
 * retained and removed. Only complete archives carry an archive name; the runtime writes to a
 * hidden `.inprogress-*` file that becomes the archive by a no-clobber link, so nothing partial is
 * ever listed, and leftovers are removed at start.
 */
import { randomUUID } from 'node:crypto'
import { chmod, link, lstat, mkdir, readdir, readFile, stat, statfs, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CheckpointError } from '../shared/errors.ts'
import type { ArchiveEntry, ArchiveInfo, RuntimeInfo } from '../shared/events.ts'
import { archiveName, archiveReadings, isArchiveName, type Target } from '../shared/names.ts'
import { sha256File } from './files.ts'
import type { Logger } from './log.ts'

const TEMP_PREFIX = '.inprogress-'

export interface Retention {
  /** Archives kept per container (0 = no limit). */
  maxPerContainer: number
  /** Bytes kept in all (0 = no limit). */
  maxTotalBytes: number
  /** Seconds an archive is kept (0 = no limit). */
  maxAgeSeconds: number
}

/** What the agent records beside each archive (`.<name>.json`, 0600). */
export interface ArchiveMeta extends ArchiveInfo, Target {
  containerId: string
  runtime: RuntimeInfo
}

export class ArchiveStore {
  readonly dir: string
  private readonly retention: Retention
  private readonly log: Logger
  /** Temp files the runtime may be writing now; unlinked on shutdown. */
  readonly pending = new Set<string>()

  constructor(dir: string, retention: Retention, log: Logger) {
    this.dir = dir
    this.retention = retention
    this.log = log
  }

  /** Creates the directory (0700), removes leftovers of an earlier run, applies retention. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    await chmod(this.dir, 0o700)
    const names = await readdir(this.dir)
    const archives = new Set(names.filter(isArchiveName))
    for (const n of names) {
      // `.<archive>.json` (the record) and `.<archive>.statement.json` belong to their archive.
      const orphanMeta = n.startsWith('.') && n.endsWith('.json') && !archives.has(n.slice(1, -5).replace(/\.statement$/, ''))
      if (n.startsWith(TEMP_PREFIX) || orphanMeta) {
        await unlink(join(this.dir, n)).catch(() => {})
        this.log.info('removed leftover file', { file: n })
      }
    }
    await this.applyRetention()
  }

  /**
   * Fails before the runtime is called when the directory is gone: containerd notices only after
   * it has dumped (and frozen) the container.
   */
  async checkDir(): Promise<void> {
    const s = await stat(this.dir).catch(() => null)
    if (!s?.isDirectory()) {
      throw new CheckpointError('checkpoint_failed', `checkpoint directory ${this.dir} does not exist`)
    }
  }

  async freeBytes(): Promise<number> {
    const s = await statfs(this.dir)
    return s.bavail * s.bsize
  }

  /** A fresh path the runtime can create (it opens without truncating, so it must not exist). */
  async newTempPath(): Promise<string> {
    const p = join(this.dir, `${TEMP_PREFIX}${randomUUID()}.tar`)
    if (await lstat(p).catch(() => null)) throw new CheckpointError('internal', 'temp path exists')
    this.pending.add(p)
    return p
  }

  async discard(tempPath: string): Promise<void> {
    this.pending.delete(tempPath)
    await unlink(tempPath).catch(() => {})
  }

  /**
   * Turns the runtime's output into an archive: hash it, restrict it to root, name it, record its
   * metadata, and link it into place without ever replacing another archive.
   */
  async finalize(tempPath: string, t: Target, startedAt: Date, info: { containerId: string; runtime: RuntimeInfo }): Promise<ArchiveMeta> {
    try {
      const s = await stat(tempPath).catch(() => null)
      if (!s?.isFile() || s.size === 0) {
        throw new CheckpointError('checkpoint_failed', 'the runtime reported success but wrote no archive')
      }
      const [sha256] = await Promise.all([sha256File(tempPath, s.size), chmod(tempPath, 0o600)])
      for (let attempt = 0; ; attempt++) {
        // Same second as an earlier archive: fall back to millisecond precision, still RFC 3339.
        const at = new Date(startedAt.getTime() + (attempt > 1 ? attempt - 1 : 0))
        const name = attempt === 0 ? archiveName(t, at) : archiveName(t, at).replace(/Z\.tar$/, `.${String(at.getUTCMilliseconds()).padStart(3, '0')}Z.tar`)
        const final = join(this.dir, name)
        if (attempt >= 1000) throw new CheckpointError('checkpoint_failed', 'no free archive name')
        // The record first (exclusive create), then the archive: an archive is never listed without
        // its record, and a record without an archive (a crash in between) is removed at start.
        // Either one existing (EEXIST) moves on to the next name.
        const meta: ArchiveMeta = { name, size: s.size, sha256, created: startedAt.toISOString(), ...t, ...info }
        try {
          await writeFile(this.metaPath(name), JSON.stringify(meta), { mode: 0o600, flag: 'wx' })
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue
          throw err
        }
        try {
          await link(tempPath, final)
        } catch (err) {
          await unlink(this.metaPath(name)).catch(() => {})
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue
          throw err
        }
        return meta
      }
    } finally {
      await this.discard(tempPath)
    }
  }

  private statementPath(name: string): string {
    return join(this.dir, `.${name}.statement.json`)
  }

  /** Records an archive's signed statement beside it (0600, never replaced). */
  async writeStatement(name: string, statement: unknown): Promise<void> {
    await writeFile(this.statementPath(name), JSON.stringify(statement), { mode: 0o600, flag: 'wx' })
  }

  /** The archive's signed statement, or null when it has none (an archive the agent did not attest). */
  async readStatement(name: string): Promise<unknown> {
    try {
      return JSON.parse(await readFile(this.statementPath(name), 'utf8'))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw err
    }
  }

  private metaPath(name: string): string {
    return join(this.dir, `.${name}.json`)
  }

  private async readMeta(name: string): Promise<ArchiveMeta | null> {
    try {
      return JSON.parse(await readFile(this.metaPath(name), 'utf8')) as ArchiveMeta
    } catch {
      return null
    }
  }

  /** One archive by name; `archive_not_found` when absent, `invalid_archive_name` when malformed. */
  async get(name: string): Promise<ArchiveEntry & { path: string; mtimeMs: number }> {
    if (!isArchiveName(name)) {
      throw new CheckpointError('invalid_archive_name', 'not an archive name: checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar', { field: 'name' })
    }
    const path = join(this.dir, name)
    const s = await lstat(path).catch(() => null)
    if (!s?.isFile()) throw new CheckpointError('archive_not_found', `no archive ${name} on this node`)
    const meta = await this.readMeta(name)
    // Without our record (a kubelet archive) the name is all there is; its first reading is shown.
    const parsed = archiveReadings(name)
    const reading = parsed?.readings[0]
    return {
      name,
      size: s.size,
      created: meta?.created ?? s.mtime.toISOString(),
      sha256: meta?.sha256 ?? '',
      sha256Known: meta !== null,
      namespace: meta?.namespace ?? reading?.namespace ?? '',
      pod: meta?.pod ?? parsed?.pod ?? '',
      container: meta?.container ?? reading?.container ?? '',
      path,
      mtimeMs: s.mtimeMs,
    }
  }

  /** Complete archives, oldest first. */
  async list(): Promise<(ArchiveEntry & { path: string; mtimeMs: number })[]> {
    const names = (await readdir(this.dir)).filter(isArchiveName)
    const out = []
    for (const n of names) {
      try {
        out.push(await this.get(n))
      } catch (err) {
        if ((err as CheckpointError).code !== 'archive_not_found') throw err
      }
    }
    return out.sort((a, b) => a.created.localeCompare(b.created) || a.name.localeCompare(b.name))
  }

  async remove(name: string): Promise<void> {
    await this.get(name)
    await this.unlinkArchive(name)
  }

  /** The archive, then what lies beside it (record, statement); a missing sidecar is no error. */
  private async unlinkArchive(name: string): Promise<void> {
    await unlink(join(this.dir, name))
    await unlink(this.metaPath(name)).catch(() => {})
    await unlink(this.statementPath(name)).catch(() => {})
  }

  /**
   * Deletes archives beyond the limits, oldest first, except `keep`. Returns the names deleted. Only archives this
   * agent wrote (those with a record) count: the default directory is the kubelet's, and its own
   * checkpoints are not ours to delete.
   */
  async applyRetention(now = Date.now(), keep?: string): Promise<string[]> {
    const { maxPerContainer, maxTotalBytes, maxAgeSeconds } = this.retention
    // `keep`: the archive just reported to a caller is not deleted under it.
    const all = (await this.list()).filter((a) => a.sha256Known)
    const doomed = new Set<string>()
    if (maxAgeSeconds > 0) {
      for (const a of all) if (now - Date.parse(a.created) > maxAgeSeconds * 1000) doomed.add(a.name)
    }
    if (maxPerContainer > 0) {
      const byContainer = new Map<string, typeof all>()
      for (const a of all) {
        const k = `${a.namespace}/${a.pod}/${a.container}`
        byContainer.set(k, [...(byContainer.get(k) ?? []), a])
      }
      for (const list of byContainer.values()) {
        for (const a of list.slice(0, Math.max(0, list.length - maxPerContainer))) doomed.add(a.name)
      }
    }
    if (maxTotalBytes > 0) {
      let total = all.filter((a) => !doomed.has(a.name)).reduce((s, a) => s + a.size, 0)
      for (const a of all) {
        if (total <= maxTotalBytes) break
        if (!doomed.has(a.name)) {
          doomed.add(a.name)
          total -= a.size
        }
      }
    }
    if (keep !== undefined) doomed.delete(keep)
    const deleted: string[] = []
    for (const name of doomed) {
      try {
        await this.unlinkArchive(name)
        deleted.push(name)
        this.log.info('retention deleted archive', { archive: name })
      } catch (err) {
        this.log.warn('retention could not delete', { archive: name, err })
      }
    }
    return deleted
  }
}
