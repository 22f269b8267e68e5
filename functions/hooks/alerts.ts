/**
 * Webhook payloads: Alertmanager's (version "4") and Grafana Alerting's (version "1", the same
 * fields plus orgId, title, state, message and per-alert values and URLs). Only what we act on
 * is checked; unknown keys (notification_reason, routeLabels, …) are ignored. A body that is
 * not such a payload is 400 `invalid_body` with the `field` at fault; an alert in it that is not
 * usable is skipped on its own (`invalid_alert`).
 */
import { CheckpointError } from '../../shared/errors.ts'
import type { HookSource } from '../operations/model.ts'
import { sha256Hex } from '../../shared/digest.ts'

export interface Alert {
  /** The alert's own status, else the notification's; meaningless when `invalid` is set. */
  status: 'firing' | 'resolved'
  labels: Record<string, string>
  annotations: Record<string, string>
  startsAt: string
  endsAt?: string
  /** Given by the sender, or derived from the labels when missing. */
  fingerprint: string
  /**
   * The field that made this alert unusable (`alerts[3].startsAt`). One odd alert never sinks the
   * notification: Alertmanager does not retry a 4xx, so a 400 would lose every alert in it.
   */
  invalid?: string
}

export interface Notification {
  source: HookSource
  receiver: string
  status: string
  groupKey?: string
  truncatedAlerts: number
  alerts: Alert[]
}

const VERSION: Record<HookSource, string> = { alertmanager: '4', grafana: '1' }

function bad(field: string, what: string): CheckpointError {
  return new CheckpointError('invalid_body', `${field}: ${what}`, { field })
}

function strMap(v: unknown, field: string): Record<string, string> {
  if (v === undefined || v === null) return {}
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(field, 'must be an object of strings')
  for (const x of Object.values(v)) if (typeof x !== 'string') throw bad(field, 'must be an object of strings')
  return v as Record<string, string>
}

/** A stable stand-in for a missing fingerprint: SHA-256 of the sorted label set, 16 hex digits. */
async function labelFingerprint(labels: Record<string, string>): Promise<string> {
  const text = JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]))
  return sha256Hex(text, 8)
}

/**
 * Parses a webhook body.
 *
 * @example
 * const n = await parseNotification('alertmanager', new TextDecoder().decode(body))
 */
export async function parseNotification(source: HookSource, text: string): Promise<Notification> {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    throw bad('body', 'not JSON')
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw bad('body', 'must be a JSON object')
  const b = raw as Record<string, unknown>
  if (b.version !== VERSION[source]) throw bad('version', `must be "${VERSION[source]}"`)
  if (!Array.isArray(b.alerts)) throw bad('alerts', 'must be a list')
  if (b.status !== undefined && typeof b.status !== 'string') throw bad('status', 'must be a string')
  const truncated = b.truncatedAlerts ?? 0
  if (typeof truncated !== 'number' || !Number.isInteger(truncated) || truncated < 0) throw bad('truncatedAlerts', 'must be a non-negative integer')
  const groupStatus = b.status === 'firing' || b.status === 'resolved' ? b.status : undefined
  const alerts: Alert[] = []
  for (const [i, x] of b.alerts.entries()) alerts.push(await parseAlert(x, `alerts[${i}]`, groupStatus))
  const n: Notification = {
    source,
    receiver: typeof b.receiver === 'string' ? b.receiver : '',
    status: typeof b.status === 'string' ? b.status : '',
    truncatedAlerts: truncated,
    alerts,
  }
  if (typeof b.groupKey === 'string') n.groupKey = b.groupKey
  return n
}

/**
 * One alert. Some senders omit the per-alert `status`: the notification's own status stands in.
 * Anything else wrong makes the alert `invalid` (skipped with that field), not the notification.
 */
async function parseAlert(x: unknown, f: string, groupStatus: Alert['status'] | undefined): Promise<Alert> {
  const a = (x && typeof x === 'object' && !Array.isArray(x) ? x : {}) as Record<string, unknown>
  let labels: Record<string, string> = {}
  let annotations: Record<string, string> = {}
  let invalid: string | undefined
  try {
    labels = strMap(a.labels, `${f}.labels`)
    annotations = strMap(a.annotations, `${f}.annotations`)
  } catch (err) {
    invalid = (err as CheckpointError).field
  }
  const status = a.status === 'firing' || a.status === 'resolved' ? a.status : a.status === undefined ? groupStatus : undefined
  const fingerprintOk = a.fingerprint === undefined || (typeof a.fingerprint === 'string' && a.fingerprint.length <= 128)
  if (x !== a) invalid = f
  else if (status === undefined) invalid = `${f}.status`
  else if (typeof a.startsAt !== 'string' || Number.isNaN(Date.parse(a.startsAt))) invalid ??= `${f}.startsAt`
  else if (!fingerprintOk) invalid ??= `${f}.fingerprint`
  const alert: Alert = {
    status: status ?? 'firing',
    labels,
    annotations,
    startsAt: typeof a.startsAt === 'string' ? a.startsAt : '',
    fingerprint: fingerprintOk && typeof a.fingerprint === 'string' && a.fingerprint !== '' ? a.fingerprint : await labelFingerprint(labels),
  }
  if (typeof a.endsAt === 'string') alert.endsAt = a.endsAt
  if (invalid !== undefined) alert.invalid = invalid
  return alert
}
