/**
 * The send service, composed from what the gateway wired. Each part that is
 * wired contributes its admission stages; a part that is not contributes a
 * stage that refuses what only it could do. This is the one place that
 * decides — no stage checks whether something is enabled.
 *
 *   grants     tier (bootstrap keys) · directory grants | no directory (refuse groups, police, pda)
 *   admission  template | no templates · text rules · signature · content rules (reject | hold) · parts
 *              · police recipients · group count · schedule | no schedule
 *   quota      the directory's reserve | none (a held message: charged at release)
 *   release    (a held message, when an admin releases it) grants · content rules · quota
 *   persist and enqueue   (SendService.write, through the queue port)
 */
import type { Logger } from 'pino';
import type { Principal, SendShape } from '../core/send.js';
import type { ResolvedConfig } from '../config/load.js';
import type { WorkQueue } from '../queue/port.js';
import type { Metrics } from '../telemetry/metrics.js';
import { SendService, authorizeWith, type QuotaStage, type SendStore } from './service.js';
import {
  contentRules, contentRulesAtRelease, directoryGrants, groupCount, parts, policeNumbers, schedule, signature, template, textRules, tierGrant,
  withoutDirectory, withoutSchedule, withoutTemplates,
  type DoorRules, type GrantStage, type HeldSink, type ScheduleSink, type Stage, type TemplateRenderer,
} from './stages.js';

export { SendService, asGatewayError, requestFingerprint, commandFingerprint, sendOrThrow, type Sends, type SendItem, type SendResult, type SendStore, type MessageRecord } from './service.js';
export type { DoorRules, DoorAdmission, HeldSink, ScheduleSink, TemplateRenderer, Reservation } from './stages.js';

export interface SendWiring {
  readonly config: ResolvedConfig;
  readonly store: SendStore;
  readonly queue: WorkQueue;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly principalOf: (tenant: string) => Principal | undefined;
  /** The directory: grants, signature, content rules, police routing, group counts, quotas; held messages. */
  readonly directory?: { readonly rules: DoorRules; readonly held: HeldSink };
  /** Named templates (`template` + `params`). */
  readonly templates?: TemplateRenderer;
  /** Scheduled sending (`scheduleAt`). */
  readonly schedule?: ScheduleSink;
  /** Called after each durable write (a dispatcher in this process). */
  readonly onAccepted?: () => void;
  /** See SendServiceDeps.onQueued (intake first's backlog, a dispatcher in this process). */
  readonly onQueued?: (recipients: number) => void;
  /** Whether a tenant's callbacks can be signed (callbackUrl / statusCallback are refused otherwise). */
  readonly canSign?: (tenant: string) => boolean;
  /** See SendServiceDeps.keyAnswerWaitMs. */
  readonly keyAnswerWaitMs?: number;
  readonly now?: () => number;
}

/** The grant stages: tier (bootstrap keys), then the directory's grants, or, without it, refusals. */
function grantStages(dir: SendWiring['directory']): GrantStage[] {
  return [tierGrant, dir ? directoryGrants(dir.rules) : withoutDirectory];
}

/**
 * The same grant stages as the send service's, on their own: for work
 * admitted again later (a scheduled message when it is due), wired before
 * the send service exists (the schedule is one of its parts).
 */
export function createAuthorizer(w: Pick<SendWiring, 'config' | 'principalOf' | 'directory' | 'now'>): (tenant: string, shape: SendShape) => void {
  const grants = grantStages(w.directory);
  const now = w.now ?? Date.now;
  return (tenant, shape) => authorizeWith(grants, w.config, w.principalOf, tenant, shape, '', now());
}

/** The send service with its admission composed from what is wired. */
export function createSendService(w: SendWiring): SendService {
  const dir = w.directory;
  const grants = grantStages(dir);
  const admission: Stage[] = [
    w.templates ? template(w.templates) : withoutTemplates,
    textRules,
    ...(dir ? [signature(dir.rules), contentRules(dir.rules, dir.held)] : []),
    parts(w.config.sender.maxSegments),
    ...(dir ? [policeNumbers(dir.rules), groupCount(dir.rules)] : []),
    w.schedule ? schedule(w.schedule) : withoutSchedule,
  ];
  // Nothing to charge: answered at once (no promise on the send path).
  const quota: QuotaStage = dir
    ? (admission, recipients, parts) => (admission === undefined ? undefined : dir.rules.reserve(admission, recipients, parts))
    : () => undefined;
  // A held message released by an admin: the grants, then these, then the quota (SendService.readmit).
  const release: Stage[] = dir ? [contentRulesAtRelease(dir.rules)] : [];
  return new SendService({
    config: w.config, store: w.store, queue: w.queue, metrics: w.metrics, logger: w.logger,
    grants, admission, release, quota,
    // Without the directory the grant stage (withoutDirectory) has refused a people send already.
    people: dir ? (p, ids, prefix) => dir.rules.resolvePeople(p, ids, prefix) : () => [], principalOf: w.principalOf,
    ...(w.onAccepted ? { onAccepted: w.onAccepted } : {}),
    ...(w.onQueued ? { onQueued: w.onQueued } : {}),
    ...(w.canSign ? { canSign: w.canSign } : {}),
    ...(w.keyAnswerWaitMs !== undefined ? { keyAnswerWaitMs: w.keyAnswerWaitMs } : {}),
    ...(w.now ? { now: w.now } : {}),
  });
}
