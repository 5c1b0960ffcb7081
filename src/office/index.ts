/**
 * The mobile-office services, assembled for the gateway (src/app/gateway.ts):
 * scheduled sending and templates (OfficeStores, which the send service also
 * uses), then meetings, workflow progress, the MO inbox with its handlers,
 * and their HTTP routes, all sending through the send service (src/send).
 * All state lives in the gateway's LMDB environment.
 */
import type { RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import { parseIsoDuration } from '../core/duration.js';
import type { MobileOriginated } from '../core/ports.js';
import type { WebhookPoster } from '../receipts/status-callbacks.js';
import type { ResolvedConfig } from '../config/load.js';
import type { ChangeLog } from '../replication/change-log.js';
import type { Directory } from '../directory/directory.js';
import type { ScheduleSink, Sends, TemplateRenderer } from '../send/index.js';
import type { ScheduledMessages } from '../ingest/server.js';
import { bind, type MountedTable } from '../http/route.js';
import type { SendShape } from '../core/send.js';
import type { WorkQueue } from '../queue/port.js';
import type { Metrics } from '../telemetry/metrics.js';
import { Meetings } from './meetings.js';
import { MoInbox } from './mo-inbox.js';
import { OptOutByText } from './opt-out.js';
import { LiveMoSubscribers, OFFICE_ROUTES } from './routes.js';
import { ARCHIVE_ROUTES } from './archive-routes.js';
import type { StatusStore } from '../ingest/server.js';
import { Schedule, type ScheduleReceipts } from './schedule.js';
import { TemplateStore } from './templates.js';
import { Workflow } from './workflow.js';

/** Named databases the office opens (size the environment's maxDbs with it). */
export const OFFICE_NAMED_DBS = 16;

export interface OfficeDeps {
  readonly env: RootDatabase;
  readonly config: ResolvedConfig;
  readonly queue: WorkQueue;
  readonly receipts: ScheduleReceipts;
  readonly directory: Directory;
  /** Outbound POSTs to tenants' URLs (MO forwards): target policy and signing. */
  readonly webhooks: WebhookPoster;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Several hosts: templates are replicated (the rest of the office state is per host). */
  readonly changeLog?: ChangeLog;
}

/** Scheduled sending and templates: opened first, because the send service uses them too. */
export class OfficeStores {
  readonly schedule: Schedule;
  readonly templates: TemplateStore;
  readonly scheduleSink: ScheduleSink;
  readonly templateRenderer: TemplateRenderer;

  /** `admitAgain`: the send service's grant checks, for scheduled messages when they are due. */
  constructor(deps: OfficeDeps, admitAgain: (tenant: string, shape: SendShape) => void) {
    const { env, config, metrics, logger } = deps;
    this.schedule = new Schedule({ env, queue: deps.queue, receipts: deps.receipts, metrics, logger: logger.child({ part: 'schedule' }), pollMs: config.office.schedule.pollMs, admitAgain });
    this.templates = new TemplateStore({
      env,
      maxPerTenant: config.office.templates.maxPerUnit,
      maxBodyChars: config.office.templates.maxBodyChars,
      utcOffsetMinutes: config.directory.utcOffsetMinutes,
      ancestorsOf: (tenant) => (deps.directory.store.unitChain(tenant) ?? []).slice(1).map((u) => u.id),
      ...(deps.changeLog ? { changeLog: deps.changeLog } : {}),
    });
    const schedule = this.schedule;
    this.scheduleSink = {
      maxAheadMs: parseIsoDuration(config.office.schedule.maxAhead) ?? 30 * 86_400_000,
      park: (e) => schedule.park(e),
    };
    const templates = this.templates;
    this.templateRenderer = { render: (tenant, name, params, prefix) => templates.render(tenant, name, params, prefix) };
  }
}

/** The mobile-office services, each sending through the send service. */
export class Office {
  readonly meetings: Meetings;
  readonly workflow: Workflow;
  readonly inbox: MoInbox;
  readonly live = new LiveMoSubscribers();
  readonly scheduled: ScheduledMessages;
  private readonly stores: OfficeStores;

  constructor(private readonly deps: OfficeDeps & { readonly stores: OfficeStores; readonly sends: Sends }) {
    const { env, config, directory, metrics, logger, stores, sends } = deps;
    this.stores = stores;
    this.meetings = new Meetings({
      env, config, directory: directory.store, expander: directory.expander, rules: directory.policy, sends,
      schedule: stores.schedule, metrics, logger: logger.child({ part: 'meetings' }),
    });
    const receipts = deps.receipts;
    this.workflow = new Workflow({
      env, config, sends, schedule: stores.schedule, templates: stores.templates, metrics, logger: logger.child({ part: 'workflow' }),
      left: (id) => {
        const s = receipts.summary(id);
        return s.accepted === 0 && s.queued === 0;
      },
    });
    const mo = config.office.mo;
    this.inbox = new MoInbox({
      env,
      senders: () => this.senders(),
      handlers: [new OptOutByText({ directory: directory.store, keyword: mo.optOutKeyword, reply: { text: mo.optOutReplyText, tier: mo.optOutReplyTier, sends } }), this.workflow, this.meetings],
      live: this.live,
      partTimeoutMs: mo.partTimeoutMs,
      maxOpenParts: mo.maxOpenParts,
      callbackAttempts: mo.callbackAttempts,
      callbackTimeoutMs: mo.callbackTimeoutMs,
      maxPendingForwards: mo.maxPendingForwards,
      webhooks: deps.webhooks,
      metrics,
      logger: logger.child({ part: 'mo' }),
    });
    const schedule = stores.schedule;
    this.scheduled = { dueAt: (id) => schedule.dueAt(id), cancel: (id, tenant) => schedule.cancel(id, tenant) };
  }

  start(): void {
    this.stores.schedule.start();
    this.inbox.start();
  }

  /** The BindPool's MO handler. */
  receive(mo: MobileOriginated): Promise<void> {
    return this.inbox.receive(mo);
  }

  /** The office route table bound to this office's stores. */
  routes(): MountedTable {
    const { config, directory, logger } = this.deps;
    return bind(OFFICE_ROUTES, {
      config, templates: this.stores.templates, meetings: this.meetings, workflow: this.workflow, inbox: this.inbox,
      directory: directory.store, live: this.live, logger: logger.child({ part: 'office-api' }),
    });
  }

  /** Deleted units' archives (global admins): this office's stores and the message store. */
  archiveRoutes(status: StatusStore): MountedTable {
    return bind(ARCHIVE_ROUTES, {
      directory: this.deps.directory.store, templates: this.stores.templates, meetings: this.meetings, workflow: this.workflow,
      inbox: this.inbox, status, scheduled: this.scheduled,
    });
  }

  async close(): Promise<void> {
    this.live.stop();
    await this.stores.schedule.close();
    await this.inbox.close();
  }

  /** sender code → tenant: the directory's one resolver (bootstrap keys, unit claims, collisions resolved). */
  private senders(): ReadonlyMap<string, string> {
    return this.deps.directory.store.senderOwnership().owners;
  }
}
