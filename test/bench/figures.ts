/**
 * How benchmarks report: one JSON line per figure on stdout (`{"name","value","unit"}`, plus
 * `"baseline"` and `"ratio"` = value / baseline when a baseline was measured in the same run),
 * context on stderr as `# <bench>: …` lines. test/bench/table.ts reads the figures.
 */
export const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits

export function emit(name: string, value: number, unit: string, baseline?: number): void {
  const line: Record<string, unknown> = { name, value: round(value, 2), unit }
  if (baseline !== undefined) {
    line.baseline = round(baseline, 2)
    line.ratio = round(value / baseline, 3)
  }
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
