/**
 * Metrics of new-mail alerts, registered on the gateway's registry (once per
 * registry: a second start in the same process reuses them).
 *
 *   smsgw_mail_messages_total{outcome}   mails (DATA) and refusals, by what became of them
 *   smsgw_mail_alerts_total{kind}        per person: alert / digest SMS made durable, mail folded
 *                                        into a digest, duplicate skipped, send refused (failed),
 *                                        digest dropped (person opted out or removed), retried
 *   smsgw_mail_pending_digests           digests waiting for their time (bounded)
 *   smsgw_mail_inflight                  mails being handled (between DATA and its answer)
 */
import type { Counter, Gauge, Registry } from 'prom-client';
import { catalogued } from '../../telemetry/metrics.js';

export type MailOutcome =
  | 'accepted' | 'duplicate' | 'no_alert' | 'deferred' | 'error'
  | 'too_large' | 'sender_refused' | 'recipient_refused' | 'auth_failed' | 'client_refused';

export type AlertKind = 'alert' | 'digest' | 'folded' | 'duplicate' | 'failed' | 'dropped' | 'retried';

export interface MailMetrics {
  readonly messages: Counter<'outcome'>;
  readonly alerts: Counter<'kind'>;
  readonly pendingDigests: Gauge;
  readonly inflight: Gauge;
}

export function mailMetrics(registry: Registry): MailMetrics {
  // Declared in the catalogue (src/telemetry/metrics.ts); looked up, never registered here (help text lives there).
  const counter = (name: string, _help: string, _label: string): Counter<string> => catalogued<Counter<string>>(registry, name);
  const gauge = (name: string, _help: string): Gauge => catalogued<Gauge>(registry, name);
  return {
    messages: counter('smsgw_mail_messages_total', 'Mails received over SMTP (and refusals), by outcome', 'outcome'),
    alerts: counter('smsgw_mail_alerts_total', 'New-mail alerts per person, by kind (alert, digest, folded, duplicate, failed, dropped, retried)', 'kind'),
    pendingDigests: gauge('smsgw_mail_pending_digests', 'Digests of new-mail alerts waiting for their time'),
    inflight: gauge('smsgw_mail_inflight', 'Mails being handled (DATA received, not yet answered)'),
  };
}
