/**
 * Webhook bodies shaped as the two senders document them: Alertmanager's webhook_config payload
 * (version "4") and Grafana Alerting's webhook contact point (version "1"), including the keys
 * we ignore (notification_reason, routeLabels, values, silenceURL, …).
 */
import { createHmac } from 'node:crypto'

export interface AlertSpec {
  status?: 'firing' | 'resolved'
  labels: Record<string, string>
  fingerprint?: string
  startsAt?: string
}

let seq = 0
/** A fingerprint nobody else in this process uses (16 hex digits, like Alertmanager's). */
export function uniqueFingerprint(): string {
  seq++
  return (Date.now().toString(16) + seq.toString(16).padStart(6, '0')).slice(-16).padStart(16, '0')
}

function alert(a: AlertSpec, grafana: boolean): Record<string, unknown> {
  const status = a.status ?? 'firing'
  const out: Record<string, unknown> = {
    status,
    labels: a.labels,
    annotations: { summary: `${a.labels.alertname ?? 'alert'} on ${a.labels.pod ?? '?'}`, runbook_url: 'https://runbooks.example/checkpoint' },
    startsAt: a.startsAt ?? '2026-11-25T10:00:00.000Z',
    endsAt: status === 'resolved' ? '2026-11-25T10:05:00.000Z' : '0001-01-01T00:00:00Z',
    generatorURL: 'http://prometheus:9090/graph?g0.expr=up',
    fingerprint: a.fingerprint ?? uniqueFingerprint(),
  }
  if (grafana) {
    Object.assign(out, {
      silenceURL: 'http://grafana:3000/alerting/silence/new',
      dashboardURL: 'http://grafana:3000/d/abc',
      panelURL: 'http://grafana:3000/d/abc?viewPanel=1',
      values: { B: 97.5, C: 1 },
      valueString: "[ var='B' labels={} value=97.5 ]",
    })
  }
  return out
}

function common(alerts: AlertSpec[]): Record<string, unknown> {
  const firing = alerts.some((a) => (a.status ?? 'firing') === 'firing')
  return {
    receiver: 'checkpoints',
    status: firing ? 'firing' : 'resolved',
    groupLabels: { alertname: alerts[0]?.labels.alertname ?? '' },
    commonLabels: { severity: 'critical' },
    commonAnnotations: {},
    externalURL: 'http://alertmanager:9093',
    groupKey: '{}/{checkpoint="true"}:{alertname="ContainerCompromised"}',
    truncatedAlerts: 0,
  }
}

/** Alertmanager webhook body, version "4". */
export function alertmanagerPayload(alerts: AlertSpec[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { version: '4', ...common(alerts), alerts: alerts.map((a) => alert(a, false)), ...extra }
}

/** Grafana Alerting webhook body, version "1". */
export function grafanaPayload(alerts: AlertSpec[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: '1',
    ...common(alerts),
    orgId: 1,
    title: `[FIRING:${alerts.length}] checkpoint`,
    state: 'alerting',
    message: '**Firing**',
    alerts: alerts.map((a) => alert(a, true)),
    ...extra,
  }
}

/** Grafana's signature headers for a body: hex HMAC-SHA256 over `ts:body` (or body alone). */
export function grafanaSignature(secret: string, body: string, ts?: number): Record<string, string> {
  const data = ts === undefined ? body : `${ts}:${body}`
  const sig = createHmac('sha256', secret).update(data).digest('hex')
  return { 'X-Grafana-Alerting-Signature': sig, ...(ts !== undefined ? { 'X-Grafana-Alerting-Signature-Timestamp': String(ts) } : {}) }
}
