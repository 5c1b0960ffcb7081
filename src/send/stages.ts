/**
 * Admission as stages. Each stage looks at one send (a Draft) and either
 * refuses it (throws a GatewayError naming the field) or adds what it
 * decided. The list is composed once, at wiring time (src/send/index.ts):
 * a stage is in the list because its part is wired — the directory, the
 * templates, the schedule — so no stage asks "is this enabled?". A part
 * that is not wired contributes a stage that refuses what only it could do.
 *
 *   shape ─▶ grants ─▶ template ─▶ text rules ─▶ signature ─▶ content rules (reject | hold)
 *         ─▶ parts ─▶ police recipients ─▶ group count ─▶ schedule
 *   (then, for the sends that will really be written: quota reserve ─▶ persist and enqueue)
 */
import { GatewayError, type FieldProblem } from '../core/errors.js';
import type { Channel, Tier } from '../core/message.js';
import type { Principal, SendCommand, SendShape } from '../core/send.js';
import { countSegments, MAX_SEGMENTS, type SegmentCount } from '../core/segment.js';
import { cleanText } from '../core/text.js';
import type { QueueMessage } from '../queue/port.js';

/** What the directory's rules decided for one send (opaque here beyond these). */
export interface DoorAdmission {
  readonly sender: string;
  readonly unit?: string;
}

/**
 * The directory's rules (src/directory/policy.ts): grants, signature,
 * content, police routing, group counts, quotas.
 */
export interface DoorRules {
  readonly pdaEnabled: boolean;
  admit(principal: Principal, shape: SendShape, prefix: string): DoorAdmission;
  /** The text as sent (the unit's signature in front). */
  sign(admission: DoorAdmission, text: string): string;
  /** The word that holds the message for review, or undefined; throws CONTENT_REJECTED when matches are refused. */
  screen(text: string, prefix: string): string | undefined;
  checkDirectPolice(numbers: readonly string[], prefix: string, indexOf: (k: number) => number): void;
  countGroup(group: string, shape: SendShape, prefix: string): Promise<number>;
  /** Charge `recipients` and `parts` (recipients × parts per recipient) to the unit chain's quotas. */
  reserve(admission: DoorAdmission, recipients: number, parts: number): Promise<Reservation>;
  /** People by id → their mobiles (a unit: its subtree; a bootstrap key: only with every group granted); VALIDATION naming `/people/<k>` alike for unknown and foreign ids. */
  resolvePeople(principal: Principal, ids: readonly string[], prefix: string): readonly string[];
}

export interface Reservation {
  release(): Promise<void>;
}

/** Where held messages' jobs are parked instead of published (src/directory/held.ts). */
export interface HeldSink {
  hold(record: {
    id: string; tenant: string; tier: string; heldAt: number; expiresAt: number; word: string; recipients: number; group?: string; jobs: readonly QueueMessage[];
    /** The send's shape and body (before the signature) and parts: admitted again at release. */
    shape: SendShape; body: string; segments: number;
  }): void;
}

/** Where scheduled messages' jobs wait (src/office/schedule.ts). */
export interface ScheduleSink {
  readonly maxAheadMs: number;
  park(entry: { id: string; tenant: string; dueAt: number; recipients: number; group?: string; jobs: readonly QueueMessage[]; shape: SendShape }): void;
}

/** Renders a tenant's named template (src/office/templates.ts); throws NOT_FOUND / TEMPLATE_PARAMS naming the field. */
export interface TemplateRenderer {
  render(tenant: string, name: string, params: Readonly<Record<string, unknown>>, prefix: string): string;
}

/** How a parked message is parked (held for review or scheduled); set by the stage that decided it. */
export type Parking = (entry: { id: string; tenant: string; tier: string; expiresAt: number; recipients: number; group?: string; jobs: readonly QueueMessage[] }, now: number) => void;

/** One send while admission works on it. */
export interface Draft {
  readonly principal: Principal;
  readonly command: SendCommand;
  /** JSON-pointer prefix of the send's fields in error details (`/messages/3`). */
  readonly prefix: string;
  readonly now: number;
  readonly tier: Tier;
  readonly channel: Channel;
  readonly shape: SendShape;
  /** Distinct numbers (empty for a group send) and, for each, its index in the command's list. */
  readonly numbers: readonly string[];
  readonly positions: readonly number[];
  admission?: DoorAdmission;
  /** The body before the signature (the text, or the rendered template). */
  body: string;
  /** The text as sent. */
  text: string;
  segments?: SegmentCount;
  /** Distinct recipients (a group: its members now). */
  recipients: number;
  /** The sensitive word that holds it for review. */
  held?: string;
  /** Epoch ms: parked until then. */
  scheduleAt?: number;
  /** Held or scheduled: where its jobs go instead of the queue. */
  park?: Parking;
}

export type Stage = (d: Draft) => void | Promise<void>;
/** A grant check: synchronous, so a service can run the grants alone (SendService.authorize). */
export type GrantStage = (d: Draft) => void;

const invalid = (field: string, message: string): GatewayError => new GatewayError('VALIDATION', message, { details: [{ field, message }] });
const contentField = (d: Draft): string => `${d.prefix}/${d.command.content.kind === 'template' ? 'template' : 'text'}`;

/** Tiers a bootstrap key may use (directory units: checked by the directory's grants). */
export const tierGrant: GrantStage = (d) => {
  const tiers = d.principal.tiers;
  if (tiers !== null && !tiers.has(d.tier.name)) {
    throw new GatewayError('FORBIDDEN', `this API key may not send at tier ${d.tier.name}`, {
      details: [{ field: `${d.prefix}/tier`, message: `not granted; granted: ${[...tiers].join(', ')}` }],
    });
  }
};

// ------------------------------------------------------------------ with the directory

/** Grants (tier, group, numbers by origin, police), then police numbers must be officers with a PDA. */
export function directoryGrants(rules: DoorRules): GrantStage {
  return (d) => {
    const problems: FieldProblem[] = [];
    if (d.channel === 'pda' && !rules.pdaEnabled) problems.push({ field: `${d.prefix}/channel`, message: 'the PDA channel is not enabled on this gateway' });
    else if (d.channel === 'pda' && d.command.recipients.kind === 'numbers' && d.command.classification !== 'police') {
      problems.push({ field: `${d.prefix}/channel`, message: 'channel pda goes to a group (each member\'s PDA) or with classification police; for numbers use sms or auto' });
    }
    if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });
    d.admission = rules.admit(d.principal, d.shape, d.prefix);
  };
}

/** The unit's signature added (before parts are counted). */
export function signature(rules: DoorRules): Stage {
  return (d) => {
    d.text = rules.sign(d.admission as DoorAdmission, d.body);
  };
}

/** Sensitive words: refused, or held for review (parked in `held`). */
export function contentRules(rules: DoorRules, held: HeldSink): Stage {
  return (d) => {
    const word = rules.screen(d.body, d.prefix);
    if (word === undefined) return;
    d.held = word;
    d.park = (e, now) => held.hold({ ...e, heldAt: now, word, shape: d.shape, body: d.body, segments: d.segments?.count ?? 1 });
  };
}

/**
 * Content rules again when a held message is released: a word now on the
 * reject list refuses it (CONTENT_REJECTED); a hold word is what the
 * reviewer just looked at, so it does not hold it again.
 */
export function contentRulesAtRelease(rules: DoorRules): Stage {
  return (d) => {
    rules.screen(d.body, d.prefix);
  };
}

/** A police message to numbers: each must be a person whose preference includes the PDA. */
export function policeNumbers(rules: DoorRules): Stage {
  return (d) => {
    if (d.command.classification === 'police' && d.numbers.length > 0) rules.checkDirectPolice(d.numbers, d.prefix, (k) => d.positions[k] ?? k);
  };
}

/** A group's members now (the 202's `recipients`); the dispatcher expands it again when it sends. */
export function groupCount(rules: DoorRules): Stage {
  return async (d) => {
    const r = d.command.recipients;
    if (r.kind !== 'group') return;
    d.recipients = await rules.countGroup(r.group, d.shape, d.prefix);
    if (d.recipients === 0) throw invalid(`${d.prefix}/group`, `group ${r.group} has no members`);
  };
}

/** Without the directory: no groups, no classified messages, no PDA channel. */
export const withoutDirectory: GrantStage = (d) => {
  const problems: FieldProblem[] = [];
  if (d.channel === 'pda') problems.push({ field: `${d.prefix}/channel`, message: 'the PDA channel is not enabled on this gateway' });
  if (d.command.recipients.kind === 'group') problems.push({ field: `${d.prefix}/group`, message: 'recipient groups need the directory, which is not enabled on this gateway; send `to`' });
  if (d.command.recipients.kind === 'people') problems.push({ field: `${d.prefix}/people`, message: 'directory people need the directory, which is not enabled on this gateway; send `to`' });
  if (d.command.classification !== undefined) problems.push({ field: `${d.prefix}/classification`, message: 'classified messages need the directory, which is not enabled on this gateway' });
  if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });
};

// ------------------------------------------------------------------ templates

export function template(templates: TemplateRenderer): Stage {
  return (d) => {
    const c = d.command.content;
    if (c.kind !== 'template') return;
    d.body = templates.render(d.principal.tenant, c.name, c.params, d.prefix);
    d.text = d.body;
  };
}

export const withoutTemplates: Stage = (d) => {
  if (d.command.content.kind === 'template') throw invalid(`${d.prefix}/template`, 'templates are not enabled on this gateway; send `text`');
};

// ------------------------------------------------------------------ parts

/**
 * Text rules (src/core/text.ts) on the body — the text, or the template as
 * rendered with its parameters: a lone surrogate or a C0 control other than
 * CR / LF is refused (TEXT_INVALID), TAB becomes a space, bidi controls and
 * zero-width format characters are removed, before anything else reads it.
 */
export const textRules: Stage = (d) => {
  d.body = cleanText(d.body, contentField(d));
  d.text = d.body;
};

/** Parts per recipient, counted on the text as sent; at most `maxSegments` (config sender.maxSegments). */
export function parts(maxSegments: number): Stage {
  const max = Math.min(maxSegments, MAX_SEGMENTS);
  return (d) => {
    const seg = countSegments(d.text);
    if (seg.count > max) {
      throw new GatewayError('TOO_MANY_PARTS', `the text needs ${seg.count} SMS parts; at most ${max} (sender.maxSegments)`, {
        details: [{ field: contentField(d), message: `needs ${seg.count} parts (${seg.encoding}); at most ${max}${d.text !== d.body ? ' (with the unit\'s signature)' : ''}` }],
      });
    }
    d.segments = seg;
  };
}

// ------------------------------------------------------------------ schedule

export function schedule(sink: ScheduleSink): Stage {
  return (d) => {
    const at = d.command.scheduleAt;
    if (at === undefined) return;
    if (at > d.now + sink.maxAheadMs) throw invalid(`${d.prefix}/scheduleAt`, `at most ${Math.round(sink.maxAheadMs / 86_400_000)} days ahead (office.schedule.maxAhead)`);
    // A time in the past (or now) is sent at once, like a message without scheduleAt.
    if (at <= d.now) return;
    d.scheduleAt = at;
    // A held message waits for review first; it is released (or not) by an admin.
    if (d.park === undefined) d.park = (e) => sink.park({ id: e.id, tenant: e.tenant, dueAt: at, recipients: e.recipients, jobs: e.jobs, shape: d.shape, ...(e.group !== undefined ? { group: e.group } : {}) });
  };
}

export const withoutSchedule: Stage = (d) => {
  if (d.command.scheduleAt !== undefined) throw invalid(`${d.prefix}/scheduleAt`, 'scheduled sending is not enabled on this gateway');
};

/** Run the stages in order; only a stage that returns a promise is waited for (most are synchronous). */
export async function runStages(stages: readonly Stage[], d: Draft): Promise<void> {
  for (const stage of stages) {
    const r = stage(d);
    if (r !== undefined) await r;
  }
}

/**
 * Run the stages in order without a promise when none waits: undefined when
 * every stage was synchronous, else a promise of the rest (from the first
 * stage that waited).
 */
export function runStagesNow(stages: readonly Stage[], d: Draft, from = 0): Promise<void> | undefined {
  for (let k = from; k < stages.length; k++) {
    const r = (stages[k] as Stage)(d);
    if (r !== undefined) return r.then(() => runStagesNow(stages, d, k + 1));
  }
  return undefined;
}
