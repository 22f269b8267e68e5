/**
 * The agent's Prometheus metrics, written in the text exposition format by hand: five series do
 * not justify a client library.
 */
const BUCKETS = [0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]

export class Metrics {
  private outcomes = new Map<string, number>()
  private bucketCounts = new Array<number>(BUCKETS.length).fill(0)
  private durationSum = 0
  private durationCount = 0
  bytesWritten = 0
  inFlight = 0
  queueDepth = 0

  /** Counts one finished checkpoint request by outcome (an error code, or "success"). */
  outcome(result: string): void {
    this.outcomes.set(result, (this.outcomes.get(result) ?? 0) + 1)
  }

  /** Records the runtime duration of one checkpoint. */
  duration(seconds: number): void {
    this.durationSum += seconds
    this.durationCount++
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]!) this.bucketCounts[i]!++
  }

  render(): string {
    const out: string[] = []
    out.push('# HELP checkpoint_agent_checkpoints_total Checkpoint requests by outcome.')
    out.push('# TYPE checkpoint_agent_checkpoints_total counter')
    for (const [k, v] of [...this.outcomes].sort()) out.push(`checkpoint_agent_checkpoints_total{outcome="${k}"} ${v}`)
    out.push('# HELP checkpoint_agent_checkpoint_duration_seconds Time the runtime took to checkpoint.')
    out.push('# TYPE checkpoint_agent_checkpoint_duration_seconds histogram')
    BUCKETS.forEach((b, i) => out.push(`checkpoint_agent_checkpoint_duration_seconds_bucket{le="${b}"} ${this.bucketCounts[i]}`))
    out.push(`checkpoint_agent_checkpoint_duration_seconds_bucket{le="+Inf"} ${this.durationCount}`)
    out.push(`checkpoint_agent_checkpoint_duration_seconds_sum ${this.durationSum}`)
    out.push(`checkpoint_agent_checkpoint_duration_seconds_count ${this.durationCount}`)
    out.push('# HELP checkpoint_agent_bytes_written_total Bytes of completed archives.')
    out.push('# TYPE checkpoint_agent_bytes_written_total counter')
    out.push(`checkpoint_agent_bytes_written_total ${this.bytesWritten}`)
    out.push('# HELP checkpoint_agent_in_flight Checkpoints the runtime is working on.')
    out.push('# TYPE checkpoint_agent_in_flight gauge')
    out.push(`checkpoint_agent_in_flight ${this.inFlight}`)
    out.push('# HELP checkpoint_agent_queue_depth Checkpoints waiting for a slot.')
    out.push('# TYPE checkpoint_agent_queue_depth gauge')
    out.push(`checkpoint_agent_queue_depth ${this.queueDepth}`)
    return out.join('\n') + '\n'
  }
}
