/**
 * The directory's parts, assembled for the gateway (src/app/gateway.ts):
 * the store, the group expander, quotas, the door rules (SendPolicy), the
 * held-for-review store and the dispatch-time fan-out, all in the gateway's
 * one LMDB environment. Loads the sensitive-word list (config
 * content.words + content.wordListFile) once, at start-up.
 */
import { airFormOf } from '../core/access-code.js';
import type { ChangeLog } from '../replication/change-log.js';
import { readFileSync } from 'node:fs';
import type { RootDatabase } from 'lmdb';
import { GatewayError } from '../core/errors.js';
import { WordFilter } from '../core/word-filter.js';
import type { ResolvedConfig } from '../config/load.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { WorkQueue } from '../queue/port.js';
import { DirectoryStore } from './store.js';
import { GroupExpander, yieldToEventLoop } from './expansion.js';
import { QuotaLedger } from './quota.js';
import { FrequencyCap } from './frequency.js';
import { SendPolicy } from './policy.js';
import { HeldMessages, type HeldReceipts } from './held.js';
import { GroupFanout, type FanoutReceipts, type PdaHandoff } from './fanout.js';
import { quietUntil } from './quiet-hours.js';
import type { SenderCollision } from './senders.js';

/** Named databases the directory opens (size the environment's maxDbs with it). */
export const DIRECTORY_NAMED_DBS = 23;

export interface DirectoryDeps {
  readonly env: RootDatabase;
  readonly config: ResolvedConfig;
  readonly queue: WorkQueue;
  readonly receipts: FanoutReceipts & HeldReceipts;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** The PDA channel, when wired; police messages are refused without it. */
  readonly pda?: PdaHandoff;
  /** Several hosts: directory changes are replicated to the other hosts. */
  readonly changeLog?: ChangeLog;
}

export class Directory {
  readonly store: DirectoryStore;
  readonly expander: GroupExpander;
  readonly quotas: QuotaLedger;
  readonly frequency: FrequencyCap;
  readonly policy: SendPolicy;
  readonly held: HeldMessages;
  readonly fanout: GroupFanout;
  readonly filter: WordFilter;

  private constructor(deps: DirectoryDeps) {
    const { env, config, metrics, logger } = deps;
    this.store = DirectoryStore.open({
      env,
      tiers: config.tierList.map((t) => t.name),
      allowInternational: config.numbers.allowInternational,
      defaultSender: config.sender.defaultSource,
      maxGroupMembers: config.directory.maxGroupMembers,
      reservedUnitIds: config.auth.apiKeys.map((k) => k.tenant),
      bootstrapSenders: config.auth.apiKeys.map((k) => ({ tenant: k.tenant, ...(k.sender !== undefined ? { sender: k.sender } : {}) })),
      // Sender codes are owned per carrier account too: two codes written alike on one account collide.
      airForms: config.smpp.accounts.flatMap((a) => airFormOf({ name: a.name, accessCode: 'accessCode' in a ? a.accessCode : undefined }) ?? []),
      ...(deps.changeLog ? { changeLog: deps.changeLog } : {}),
    });
    this.expander = new GroupExpander(this.store, { chunk: config.directory.expansionChunk, maxMembers: config.directory.maxGroupMembers, pause: yieldToEventLoop });
    this.quotas = new QuotaLedger({ env, utcOffsetMinutes: config.directory.utcOffsetMinutes, ...(deps.changeLog ? { changeLog: deps.changeLog } : {}) });
    this.frequency = new FrequencyCap({
      env,
      perDay: config.directory.frequencyCap.perDay,
      exemptTiers: new Set(config.directory.frequencyCap.exemptTiers),
      utcOffsetMinutes: config.directory.utcOffsetMinutes,
      ...(deps.changeLog ? { changeLog: deps.changeLog } : {}),
    });
    this.filter = loadWordFilter(config, logger);
    this.policy = new SendPolicy({
      store: this.store,
      expander: this.expander,
      quotas: this.quotas,
      filter: this.filter,
      onMatch: config.content.onMatch,
      metrics,
      pdaEnabled: deps.pda !== undefined,
      defaultSender: config.sender.defaultSource,
      countCacheEntries: config.directory.countCacheEntries,
    });
    this.held = new HeldMessages(env, { queue: deps.queue, receipts: deps.receipts, directory: this.store, metrics });
    this.fanout = new GroupFanout({
      env,
      directory: this.store,
      expander: this.expander,
      receipts: deps.receipts,
      queue: deps.queue,
      prefix: config.queue.prefix,
      batchSize: config.queue.batchSize,
      tierPriority: new Map(config.tierList.map((t) => [t.name, t.priority])),
      optOutExemptTiers: config.optOutExemptTiers,
      metrics,
      logger,
      pause: yieldToEventLoop,
      chunk: config.directory.expansionChunk,
      ...(deps.pda !== undefined ? { pda: deps.pda } : {}),
    });
  }

  static open(deps: DirectoryDeps): Directory {
    return new Directory(deps);
  }

  /**
   * Logs the sender-code collisions stored now (each resolved: the older
   * claim owns the code) and returns what /readyz adds to its detail: the
   * collisions as they are at each call (an admin fixing one clears it).
   */
  senderCollisionReport(logger: Logger): () => { senderCollisions?: readonly SenderCollision[] } {
    const at = this.store.senderOwnership().collisions;
    for (const c of at) logger.warn({ code: c.code, owner: c.owner, ownerKind: c.ownerKind, losers: c.losers, ...(c.account !== undefined ? { account: c.account, onAir: c.onAir } : {}) }, 'sender code claimed twice (or written alike on one carrier account): the older claim owns it, the others claim nothing until an admin gives them another code');
    return () => {
      const now = this.store.senderOwnership().collisions;
      return now.length > 0 ? { senderCollisions: now } : {};
    };
  }

  /** For the dispatcher: is a tier inside its quiet hours at `now`? */
  quietCheck(config: ResolvedConfig): (tier: string, now: number) => boolean {
    const byName = new Map(config.tiers.map((t) => [t.name, t.quietHours]));
    return (tier, now) => quietUntil(byName.get(tier), now, config.directory.utcOffsetMinutes) !== undefined;
  }

  /** Periodic housekeeping: old quota days and fan-out markers. */
  async sweep(config: ResolvedConfig): Promise<void> {
    await this.quotas.sweepDays(2);
    await this.frequency.sweepDays(2);
    await this.fanout.sweepMarkers(config.maxValidityMs + config.dispatch.receiptGraceMs + 86_400_000);
  }
}

/** The sensitive-word automaton from config; a missing or unreadable list file stops start-up. */
export function loadWordFilter(config: ResolvedConfig, logger: Logger): WordFilter {
  const words = [...config.content.words];
  if (config.content.wordListFile !== '') {
    let text: string;
    try {
      text = readFileSync(config.content.wordListFile, 'utf8');
    } catch (cause) {
      throw new GatewayError('CONFIG_INVALID', `cannot read content.wordListFile ${config.content.wordListFile}`, { cause, details: [{ field: '/content/wordListFile', message: (cause as Error).message }] });
    }
    for (const line of text.split(/\r?\n/)) {
      const w = line.trim();
      if (w !== '' && !w.startsWith('#')) words.push(w);
    }
  }
  try {
    const filter = WordFilter.build(words, { ignore: config.content.ignoreChars });
    if (filter.size > 0) logger.info({ words: filter.size, onMatch: config.content.onMatch }, 'sensitive-word filter loaded');
    return filter;
  } catch (cause) {
    throw new GatewayError('CONFIG_INVALID', `sensitive-word list: ${(cause as Error).message}`, { cause, details: [{ field: '/content/words', message: (cause as Error).message }] });
  }
}
