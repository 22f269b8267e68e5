/**
 * Turns `npm run bench` output (JSON figure lines) into the reference table of test/README.md:
 *
 *   npm run bench > bench.jsonl && node test/bench/table.ts bench.jsonl --write
 *
 * Without --write the table goes to stdout. The goals are the project's (issue "Performance");
 * a figure with no goal is shown for reference. Lines that are not figures are ignored.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

interface Figure { name: string; value: number; unit: string; baseline?: number | null; ratio?: number | null; spread?: { n: number; min: number; max: number } }

/** name → [goal text, met?(figure)] */
const GOALS: Record<string, [string, (f: Figure) => boolean]> = {
  agent_checkpoint_overhead: ['ratio ≤ 1.02', (f) => (f.ratio ?? Infinity) <= 1.02],
  agent_download_throughput: ['ratio ≥ 0.95 (nginx TLS)', (f) => (f.ratio ?? 0) >= 0.95],
  agent_rss_idle: ['≤ 60 MiB', (f) => f.value <= 60],
  agent_rss_streaming_2gib: ['≤ 70 MiB', (f) => f.value <= 70],
  'gateway.node.authenticated_list.per_gateway_cpu_s': ['≥ 2,000', (f) => f.value >= 2000],
  'gateway.node.download_4k.added_latency.p50': ['≤ 1.0 ms', (f) => f.value <= 1],
  'gateway.node.checkpoint.added_latency.p50': ['≤ 1.0 ms', (f) => f.value <= 1],
  'gateway.workerd.download_4k.added_latency.p50': ['≤ 1.0 ms', (f) => f.value <= 1],
  'gateway.workerd.checkpoint.added_latency.p50': ['≤ 1.0 ms', (f) => f.value <= 1],
  'gateway.node.download_throughput': ['ratio ≥ 1.1 (nginx reverse proxy)', (f) => (f.ratio ?? 0) >= 1.1],
  'gateway.node.rss_streaming_max': ['≤ 100 MiB', (f) => f.value <= 100],
  'worker.bundle.gzip': ['≤ 150 KiB', (f) => f.value <= 150],
  seal_mb_per_cpu_s: ['ratio ≥ 1.0 (zstd -3 | age, Debian)', (f) => (f.ratio ?? 0) >= 1],
  seal_rss_growth: ['≤ 32 MiB', (f) => f.value <= 32],
  'policy.decide_allow': ['≤ 5 µs at 5,000 rules', (f) => f.value <= 5],
  'policy.decide_deny': ['≤ 5 µs at 5,000 rules', (f) => f.value <= 5],
  'policy.filter_1000_archives': ['≤ 2 ms', (f) => f.value <= 2],
  fleet_config_load_ms: ['≤ 50 ms', (f) => f.value <= 50],
  fleet_config_heap_mib: ['≤ 20 MiB', (f) => f.value <= 20],
  fleet_decide_p50_us: ['≤ 5 µs at 5,000 rules', (f) => f.value <= 5],
  fleet_filter_1000_ms: ['≤ 2 ms', (f) => f.value <= 2],
  vault_store_seconds: ['ratio ≤ 1.0 (zstd -3 | age | curl)', (f) => (f.ratio ?? Infinity) <= 1],
  agent_rss_store_2gib: ['≤ idle + 32 MiB', (f) => f.baseline != null && f.value <= f.baseline + 32],
}
/** Goals of figure families: downloads of each archive size and front (not a process's first one). */
const FAMILY_GOALS: Array<[RegExp, [string, (f: Figure) => boolean]]> = [
  [/^gateway\.node\.download\.(plain|tls)\.\d+mib$/, ['ratio ≥ 1.1 (nginx, same front)', (f) => (f.ratio ?? 0) >= 1.1]],
]
/** Which npm script measures a figure, by name prefix. */
const HOW: Array<[string, string]> = [['agent_rss_store', 'npm run bench vault'], ['agent_', 'npm run bench:agent'], ['gateway.', 'npm run bench:gateway'], ['worker.', 'npm run bench:gateway'], ['policy.', 'npm run bench policy'], ['seal_', 'npm run bench:seal'], ['age_', 'npm run bench:seal'], ['fleet_', 'npm run bench fleet'], ['vault_', 'npm run bench vault']]

const BEGIN = '<!-- bench:begin -->'
const END = '<!-- bench:end -->'

export function table(figures: Figure[], when: string): string {
  const n = (x: number | null | undefined) => (x === undefined || x === null ? '' : Number.isInteger(x) ? String(x) : x.toFixed(Math.abs(x) >= 100 ? 0 : 2))
  const rows = figures.map((f) => {
    const goal = GOALS[f.name] ?? FAMILY_GOALS.find(([re]) => re.test(f.name))?.[1]
    const verdict = goal ? `${goal[0]} — ${goal[1](f) ? 'met' : 'missed'}` : ''
    const how = HOW.find(([p]) => f.name.startsWith(p))?.[1] ?? 'npm run bench'
    const spread = f.spread ? `${n(f.spread.min)}–${n(f.spread.max)} (${f.spread.n})` : ''
    return `| \`${f.name}\` | ${n(f.value)} ${f.unit} | ${n(f.baseline)} | ${n(f.ratio)} | ${spread} | ${verdict} | \`${how}\` |`
  })
  return [
    `Measured ${when} (2 cores, one run; baselines from the same run). *Spread*: the lowest and highest ratio (or value, without a baseline) over the run's rounds or blocks of alternating samples (their number in brackets) — the bench's own noise.`,
    '', '| figure | value | baseline | ratio | spread | goal | how to run |', '|---|---|---|---|---|---|---|', ...rows,
  ].join('\n')
}

export function parseFigures(text: string): Figure[] {
  const out: Figure[] = []
  for (const line of text.split('\n')) {
    try {
      const f = JSON.parse(line) as Figure
      if (typeof f?.name === 'string' && typeof f.value === 'number' && typeof f.unit === 'string') out.push(f)
    } catch {
      // a progress line
    }
  }
  return out
}

if (import.meta.main) {
  const [file, flag] = process.argv.slice(2)
  if (!file) throw new Error('usage: node test/bench/table.ts bench.jsonl [--write]')
  const md = table(parseFigures(await readFile(file, 'utf8')), new Date().toISOString().slice(0, 10))
  if (flag !== '--write') process.stdout.write(md + '\n')
  else {
    const readme = fileURLToPath(new URL('../README.md', import.meta.url))
    const text = await readFile(readme, 'utf8')
    const a = text.indexOf(BEGIN)
    const b = text.indexOf(END)
    if (a < 0 || b < a) throw new Error(`test/README.md has no ${BEGIN} … ${END} block`)
    await writeFile(readme, text.slice(0, a + BEGIN.length) + '\n' + md + '\n' + text.slice(b))
  }
}
