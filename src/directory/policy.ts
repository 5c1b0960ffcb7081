/**
 * SendPolicy: the directory's rules at the door, applied by intake to every
 * send before anything is written.
 *
 *   key ─▶ principal (directory keys: unit, effective sender)
 *   request ─▶ admit:   unit enabled? tier granted? group granted? numbers granted by where
 *                       they came from (caller: direct; workflow event: workflow;
 *                       directory or a reply to the sender: none)?
 *                       police granted, and not forced onto SMS?          (403 naming the grant)
 *           ─▶ render:  signature in front; sensitive words → 422 or held  (before counting parts)
 *           ─▶ police:  every recipient must have a PDA preference         (422 CHANNEL_REFUSED)
 *           ─▶ count:   group members now (the 202's `recipients`)
 *           ─▶ reserve: daily and per-minute quotas of the unit and its parents (403 QUOTA_EXCEEDED)
 *
 * Grants are computed from the unit chain at each check (grants.ts), so an
 * admin narrowing a parent takes effect on the next request of every
 * sub-unit. Bootstrap keys from config (auth.apiKeys) are not units: their
 * tiers and groups come from config, they may send to numbers, never
 * `police`, and have no quotas or signature.
 */
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { setNewest } from '../core/bounded-map.js';
import type { WordFilter } from '../core/word-filter.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Principal, SendShape } from '../core/send.js';
import type { DirectoryStore } from './store.js';
import type { GroupExpander } from './expansion.js';
import type { QuotaLedger, Reservation } from './quota.js';
import { effectiveGrants, effectiveSignature, flagOffAt, groupRefusedAt, narrowedBy, signText, workflowGrant, type QuotaLimit } from './grants.js';
import type { Unit } from './types.js';

export interface SendPolicyDeps {
  readonly store: DirectoryStore;
  readonly expander: GroupExpander;
  readonly quotas: QuotaLedger;
  readonly filter: WordFilter;
  readonly onMatch: 'reject' | 'hold';
  readonly metrics: Metrics;
  /** The PDA channel is wired (police messages can be delivered). */
  readonly pdaEnabled: boolean;
  readonly defaultSender: string;
  /** Group counts cached (0: none); every directory change invalidates them. */
  readonly countCacheEntries: number;
}

/** What admission decided for one request. */
export interface Admission {
  /** The sending directory unit; undefined for a bootstrap key. */
  readonly unit?: string;
  readonly sender: string;
  readonly signature?: string;
  readonly quotas: readonly QuotaLimit[];
}


interface GroupSummary {
  readonly version: number;
  readonly count: number;
  /** Members whose preference is SMS only (a police message cannot reach them). */
  readonly smsOnly: number;
  readonly sample: readonly string[];
}

/**
 * The principal of a directory unit (chain: the unit first, then its
 * parents). Tiers are checked in `admit` against the effective grants
 * (naming the unit that narrowed them), so none are listed here.
 */
export function unitPrincipal(chain: readonly Unit[], senders: Pick<DirectoryStore, 'senderOf'>): Principal {
  const unit = (chain[0] as Unit).id;
  // The code the unit owns (or its nearest owning ancestor's): never a code another unit claims.
  return { tenant: unit, unit, tiers: null, sender: senders.senderOf(chain) };
}

const forbidden = (field: string, message: string): GatewayError => new GatewayError('FORBIDDEN', message, { details: [{ field, message }] });

export class SendPolicy {
  private readonly counts = new Map<string, GroupSummary>();

  constructor(private readonly deps: SendPolicyDeps) {}

  get pdaEnabled(): boolean {
    return this.deps.pdaEnabled;
  }

  /**
   * The principal of a directory API key, or undefined when the key is not
   * one (the caller then answers 401). Revoked and expired keys are refused
   * with their own codes, so the client learns why.
   */
  principalFor(key: string): Principal | undefined {
    const status = this.deps.store.checkKey(key);
    if (!status.ok) {
      if (status.reason === 'revoked') throw new GatewayError('KEY_REVOKED', `API key ${status.key?.prefix ?? ''}… was revoked`);
      if (status.reason === 'expired') throw new GatewayError('KEY_EXPIRED', `API key ${status.key?.prefix ?? ''}… expired at ${new Date(status.key?.expiresAt ?? 0).toISOString()}`);
      return undefined;
    }
    const unit = status.key.unit;
    const chain = this.deps.store.unitChain(unit);
    if (chain === undefined) throw new GatewayError('UNAUTHORIZED', `the unit of this API key (${unit}) no longer exists`);
    return unitPrincipal(chain, this.deps.store);
  }

  /** Grant checks. Throws FORBIDDEN (or CHANNEL_REFUSED) naming the field and, for a unit, who narrowed it. */
  admit(principal: Principal, shape: SendShape, prefix: string): Admission {
    if (shape.classification === 'police' && shape.channel === 'sms') {
      this.refused('channel');
      throw new GatewayError('CHANNEL_REFUSED', 'police messages never go by SMS', { details: [{ field: `${prefix}/channel`, message: 'police messages go only over the PDA channel; use pda or auto' }] });
    }
    if (principal.unit === undefined) return this.admitBootstrap(principal, shape, prefix);
    const chain = this.deps.store.unitChain(principal.unit);
    if (chain === undefined) throw new GatewayError('UNAUTHORIZED', `unit ${principal.unit} no longer exists`);
    const g = effectiveGrants(chain);
    const unit = principal.unit;
    if (g.disabledBy !== undefined) {
      this.refused('disabled');
      throw forbidden(`${prefix}/`, g.disabledBy === unit ? `unit ${unit} is disabled` : `unit ${unit} is under disabled unit ${g.disabledBy}`);
    }
    if (g.tiers !== null && !g.tiers.has(shape.tier)) {
      this.refused('tier');
      throw forbidden(`${prefix}/tier`, `tier ${shape.tier} is not granted to unit ${unit}${by(narrowedBy(chain, (x) => x.tiers, shape.tier), unit)}; granted: ${list(g.tiers)}`);
    }
    if (shape.group !== undefined) {
      const owner = this.deps.store.getGroup(shape.group)?.unit;
      const ownerChain = owner === undefined ? undefined : new Set((this.deps.store.unitChain(owner) ?? []).map((u) => u.id));
      const at = groupRefusedAt(chain, shape.group, ownerChain);
      if (at !== undefined) {
        this.refused('group');
        throw forbidden(`${prefix}/group`, `group ${shape.group} is not granted to unit ${unit}${by(at, unit)}; granted: ${g.groups === null ? `* (groups of unit ${unit}'s own subtree)` : list(g.groups)}`);
      }
    }
    if (shape.origin === 'caller' && !g.direct) {
      this.refused('direct');
      throw forbidden(`${prefix}/to`, `unit ${unit} may send only to groups, not to numbers${by(flagOffAt(chain, (x) => x.direct), unit)}`);
    }
    if (shape.origin === 'workflow' && !g.workflow) {
      this.refused('workflow');
      throw forbidden(`${prefix}/applicant`, `unit ${unit} may not send workflow events to applicants' numbers (grant workflow)${by(flagOffAt(chain, workflowGrant), unit)}`);
    }
    if (shape.classification === 'police' && !g.police) {
      this.refused('police');
      throw forbidden(`${prefix}/classification`, `unit ${unit} may not send police messages${by(flagOffAt(chain, (x) => x.police), unit)}`);
    }
    const signature = effectiveSignature(chain);
    return {
      unit,
      sender: this.deps.store.senderOf(chain),
      quotas: g.quotas,
      ...(signature !== undefined ? { signature } : {}),
    };
  }

  /** The text as it will be sent: the unit's signature in front (signText). */
  sign(admission: Admission, text: string): string {
    return signText(text, admission.signature);
  }

  /** The sensitive word that holds the text for review, or undefined; CONTENT_REJECTED when matches are refused. */
  screen(text: string, prefix: string): string | undefined {
    const match = this.deps.filter.firstMatch(text);
    if (match === undefined) return undefined;
    this.refused('content');
    if (this.deps.onMatch === 'hold') return match.word;
    throw new GatewayError('CONTENT_REJECTED', 'the text contains a word on the sensitive-word list', {
      details: [{ field: `${prefix}/text`, message: `contains "${match.word}" at character ${match.start}` }],
    });
  }

  /**
   * Directory people by id → their mobiles, in order. A unit may address
   * the people of its own subtree; a bootstrap key (no subtree) only when
   * config grants it every group (`groups: ["*"]`). An unknown id and one
   * outside the scope answer alike (422 naming `/people/<k>`, at most 20
   * listed), so a send cannot probe for person ids.
   */
  resolvePeople(principal: Principal, ids: readonly string[], prefix: string): readonly string[] {
    if (principal.unit === undefined && principal.groups !== null) {
      this.refused('group');
      throw forbidden(`${prefix}/people`, 'this API key may not address directory people (a bootstrap key needs groups ["*"])');
    }
    const problems: FieldProblem[] = [];
    const numbers: string[] = [];
    ids.forEach((id, k) => {
      const p = this.deps.store.getPerson(id);
      if (p === undefined || (principal.unit !== undefined && !this.deps.store.isWithin(p.unit, principal.unit))) {
        if (problems.length < 20) problems.push({ field: `${prefix}/people/${k}`, message: `no person ${id}` });
        else if (problems.length === 20) problems.push({ field: `${prefix}/people`, message: 'more unknown people not listed' });
        return;
      }
      numbers.push(p.mobile);
    });
    if (problems.length > 0) throw new GatewayError('VALIDATION', `${problems.length > 20 ? 'more than 20' : problems.length} unknown person id(s)`, { details: problems });
    return numbers;
  }

  /** A police message to numbers: each must be a known person whose preference includes the PDA. */
  checkDirectPolice(numbers: readonly string[], prefix: string, indexOf: (k: number) => number): void {
    const problems: FieldProblem[] = [];
    numbers.forEach((n, k) => {
      if (problems.length >= 20) return;
      const p = this.deps.store.personByMobile(n);
      const field = `${prefix}/to/${indexOf(k)}`;
      // Unknown numbers and SMS-only people answer alike, naming the index only: no directory oracle.
      if (p === undefined || p.channel === 'sms') problems.push({ field, message: 'no PDA recipient: police messages go only to people in the directory with a PDA, never by SMS' });
    });
    if (problems.length > 0) {
      this.refused('channel');
      throw new GatewayError('CHANNEL_REFUSED', `${problems.length} recipient(s) cannot receive a police message`, { details: problems });
    }
    this.requirePda(prefix);
  }

  /**
   * Members the group has now (the 202's `recipients`); for a police
   * message, CHANNEL_REFUSED when any member has an SMS-only preference.
   * The dispatcher expands the group again when it sends (members may
   * change in between) and applies the same rules per member.
   */
  async countGroup(group: string, shape: SendShape, prefix: string): Promise<number> {
    const summary = await this.summary(group, prefix);
    if (shape.classification === 'police') {
      if (summary.smsOnly > 0) {
        this.refused('channel');
        throw new GatewayError('CHANNEL_REFUSED', `${summary.smsOnly} member(s) of group ${group} have an SMS-only channel preference: police messages never go by SMS`, {
          details: [{ field: `${prefix}/group`, message: `${summary.smsOnly} member(s) with preference sms` }],
        });
      }
      this.requirePda(prefix);
    }
    return summary.count;
  }

  /** Charge the unit chain's quotas (nothing for a bootstrap key). */
  async reserve(admission: Admission, recipients: number, parts = recipients): Promise<Reservation> {
    try {
      return await this.deps.quotas.reserve(admission.quotas, recipients, parts);
    } catch (e) {
      if (e instanceof GatewayError && e.code === 'QUOTA_EXCEEDED') this.refused(e.details?.[0]?.field === '/quota/perMinute' ? 'quota-minute' : 'quota-daily');
      throw e;
    } finally {
      this.deps.metrics.quotaMinuteWindows.set(this.deps.quotas.minuteWindows);
    }
  }

  /** Block-list scopes that apply to a tenant's messages: global, the unit, its parents. */
  blockScopes(tenant: string): string[] {
    const chain: Unit[] = this.deps.store.unitChain(tenant) ?? [];
    return ['*', ...chain.map((u) => u.id)];
  }

  /** For the dispatcher: is `to` blocked for this tenant's messages (checked just before sending)? */
  optOut(tenant: string): (to: string) => boolean {
    const scopes = this.blockScopes(tenant);
    return (to) => this.deps.store.isBlocked(to, scopes);
  }

  private admitBootstrap(principal: Principal, shape: SendShape, prefix: string): Admission {
    if (shape.group !== undefined) {
      const groups = principal.groups;
      if (groups === undefined || (groups !== null && !groups.has(shape.group))) {
        this.refused('group');
        throw forbidden(`${prefix}/group`, `group ${shape.group} is not granted to this API key${groups ? `; granted: ${list(groups)}` : ' (auth.apiKeys[].groups)'}`);
      }
    }
    if (shape.classification === 'police') {
      this.refused('police');
      throw forbidden(`${prefix}/classification`, 'a bootstrap API key may not send police messages; use a key of a unit granted police');
    }
    return { sender: principal.sender, quotas: [] };
  }

  private requirePda(prefix: string): void {
    if (this.deps.pdaEnabled) return;
    this.refused('channel');
    throw new GatewayError('CHANNEL_REFUSED', 'police messages go only over the PDA channel, which is not enabled on this gateway', {
      details: [{ field: `${prefix}/classification`, message: 'the PDA channel is not enabled (pda.enabled)' }],
    });
  }

  private async summary(group: string, prefix: string): Promise<GroupSummary> {
    const version = this.deps.store.version();
    const cached = this.counts.get(group);
    if (cached !== undefined && cached.version === version) return cached;
    let smsOnly = 0;
    const sample: string[] = [];
    let result;
    try {
      result = await this.deps.expander.expand(group, (pid, packed) => {
        if (packed.charCodeAt(0) === 0x73 /* s */) {
          smsOnly++;
          if (sample.length < 5) sample.push(pid);
        }
      });
    } catch (e) {
      if (e instanceof GatewayError && (e.code === 'NOT_FOUND' || e.code === 'TOO_MANY_RECIPIENTS')) {
        throw new GatewayError(e.code, e.message, { details: [{ field: `${prefix}/group`, message: e.details?.[0]?.message ?? e.message }] });
      }
      throw e;
    }
    const summary: GroupSummary = { version, count: result.count, smsOnly, sample };
    if (this.deps.countCacheEntries > 0) {
      setNewest(this.counts, group, summary, this.deps.countCacheEntries);
      this.deps.metrics.groupCountCache.set(this.counts.size);
    }
    return summary;
  }

  private refused(reason: string): void {
    this.deps.metrics.directoryRefusals.inc({ reason });
  }
}

function list(s: ReadonlySet<string>): string {
  return s.size === 0 ? 'none' : [...s].join(', ');
}

/** " (narrowed by parent unit X)" when a parent, not the unit itself, left it out. */
function by(at: string | undefined, unit: string): string {
  return at !== undefined && at !== unit ? ` (not granted by parent unit ${at})` : '';
}
