/**
 * How benchmarks report: one JSON line per figure on stdout (`{"name","value","unit"}`, plus
 * `"baseline"` and `"ratio"` = value / baseline when a baseline was measured in the same run, and
 * `"spread"` — the bench's own noise: `{n,min,max}` of the ratio (or of the value, without a
 * baseline) in each of n rounds or blocks of alternating samples), context on stderr as
 * `# <bench>: …` lines. test/bench/table.ts reads the figures.
 */
export const round = (n: number, digits: number): number => Math.round(n * 10 ** digits) / 10 ** digits

export interface Spread { n: number; min: number; max: number }

/** How many rounds (or blocks of interleaved samples) a figure's spread is taken over. */
export const SPREAD_ROUNDS = 5

/** The spread of per-round figures (ratios or values); undefined for fewer than two. */
export function spreadOf(perRound: readonly number[]): Spread | undefined {
  const xs = perRound.filter(Number.isFinite)
  if (xs.length < 2) return undefined
  return { n: xs.length, min: round(Math.min(...xs), 3), max: round(Math.max(...xs), 3) }
}

/** `xs` cut into `k` consecutive blocks of (nearly) equal length: interleaved samples become k rounds. */
export function blocks<T>(xs: readonly T[], k: number): T[][] {
  const n = Math.min(k, xs.length)
  return Array.from({ length: n }, (_, i) => xs.slice(Math.floor((i * xs.length) / n), Math.floor(((i + 1) * xs.length) / n)))
}

/** Per-block `f(ours, theirs)` over interleaved samples cut into `k` blocks (median ratios, differences…). */
export function perBlock(ours: readonly number[], theirs: readonly number[], k: number, f: (o: number[], t: number[]) => number): number[] {
  const o = blocks(ours, k)
  const t = blocks(theirs, k)
  return o.map((b, i) => f(b, t[i]!))
}

export function emit(name: string, value: number, unit: string, baseline?: number, spread?: Spread): void {
  const line: Record<string, unknown> = { name, value: round(value, 2), unit }
  if (baseline !== undefined) {
    line.baseline = round(baseline, 2)
    line.ratio = round(value / baseline, 3)
  }
  if (spread) line.spread = spread
  process.stdout.write(JSON.stringify(line) + '\n')
}

/** A `note(msg)` that writes `# <bench>: msg` to stderr. */
export const noter = (bench: string) => (msg: string): void => void process.stderr.write(`# ${bench}: ${msg}\n`)

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** A number from the environment (`dflt` when unset or empty); anything else stops the bench. */
export function envNumber(name: string, dflt: number, { allowZero = false } = {}): number {
  const raw = process.env[name]
  const n = raw === undefined || raw === '' ? dflt : Number(raw)
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !allowZero)) {
    throw new TypeError(`${name}=${raw}: must be a ${allowZero ? 'non-negative' : 'positive'} number`)
  }
  return n
}
