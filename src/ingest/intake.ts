/**
 * Intake: the HTTP door's half of a send. A schema-checked body of
 * POST /v1/messages (or one item of /batch) becomes a typed SendCommand —
 * numbers normalised (`to` is caller-supplied: origin `caller`), times in
 * epoch ms, validity in ms, text or template — and goes to the send service
 * (src/send), which every other sender uses directly.
 *
 *   body ─▶ structure (to | group, text | template) ─▶ numbers ─▶ scheduleAt, validity
 *        ─▶ SendCommand ─▶ SendService.send (admission, quota, persist and enqueue) ─▶ 202
 *
 * A repeat with the same Idempotency-Key is "the same request" when its
 * body is (canonical JSON), as it always was.
 */
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { normalizeNumber } from '../core/phone.js';
import { parseIsoDuration } from '../core/duration.js';
import { STATUS_EVENTS } from '../core/message.js';
import type { Content, Principal, Recipients, SendCommand } from '../core/send.js';
import type { ResolvedConfig } from '../config/load.js';
import type { SendRequest } from './schemas.js';
import { asGatewayError, requestFingerprint, type SendItem, type SendResult, type SendService } from '../send/index.js';

export { asGatewayError };

/** One send of acceptMany. */
export interface AcceptItem {
  readonly request: SendRequest;
  readonly idempotencyKey?: string | undefined;
  /** JSON-pointer prefix of the item's fields in error details (`/messages/3`). */
  readonly prefix?: string;
}

export type ItemResult = SendResult;

export class Intake {
  constructor(private readonly deps: { readonly config: ResolvedConfig; readonly sends: SendService }) {}

  get inflightRequests(): number {
    return this.deps.sends.inflightRequests;
  }

  /** One message (POST /v1/messages). */
  async accept(principal: Principal, request: SendRequest, idempotencyKey?: string): Promise<ItemResult> {
    let item: SendItem;
    try {
      item = sendItemOf(this.deps.config, request, idempotencyKey, '');
    } catch (e) {
      return { ok: false, error: asGatewayError(e) };
    }
    const [result] = await this.deps.sends.send(principal, [item]);
    if (!result) throw new GatewayError('INTERNAL', 'no result');
    return result;
  }

  /** Several messages (POST /v1/messages/batch): each item on its own; all that pass are written together. */
  async acceptMany(principal: Principal, items: readonly AcceptItem[]): Promise<ItemResult[]> {
    const results = new Array<ItemResult>(items.length);
    const index: number[] = [];
    const sends: SendItem[] = [];
    for (let i = 0; i < items.length; i++) {
      const it = items[i] as AcceptItem;
      try {
        sends.push(sendItemOf(this.deps.config, it.request, it.idempotencyKey, it.prefix ?? ''));
        index.push(i);
      } catch (e) {
        results[i] = { ok: false, error: asGatewayError(e) };
      }
    }
    if (sends.length > 0) {
      const sent = await this.deps.sends.send(principal, sends);
      for (let k = 0; k < sent.length; k++) results[index[k] as number] = sent[k] as ItemResult;
    }
    return results;
  }
}

/** The send a request states, fingerprinted when it has an Idempotency-Key. */
function sendItemOf(config: ResolvedConfig, request: SendRequest, idempotencyKey: string | undefined, prefix: string): SendItem {
  const command = commandOf(config, request, idempotencyKey, prefix);
  return idempotencyKey !== undefined ? { command, prefix, fingerprint: requestFingerprint(request) } : { command, prefix };
}

/** The command a request states; VALIDATION / BAD_NUMBER / TOO_MANY_RECIPIENTS naming the field. */
export function commandOf(config: ResolvedConfig, req: SendRequest, idempotencyKey: string | undefined, prefix: string): SendCommand {
  const problems: FieldProblem[] = [];
  const givenCount = (req.to !== undefined ? 1 : 0) + (req.group !== undefined ? 1 : 0) + (req.people !== undefined ? 1 : 0);
  // The names given, listed only for the message that needs them (not built per request).
  const given = givenCount > 1 ? [req.to !== undefined ? 'to' : '', req.group !== undefined ? 'group' : '', req.people !== undefined ? 'people' : ''].filter((x) => x !== '') : NO_NAMES;
  if (given.length > 1) problems.push({ field: `${prefix}/${given[1] ?? 'group'}`, message: `give one of \`to\`, \`group\`, \`people\`, not ${given.map((g) => `\`${g}\``).join(' and ')}` });
  if (req.template !== undefined && req.text !== undefined) problems.push({ field: `${prefix}/template`, message: 'give either `text` or `template` (with `params`), not both' });
  if (req.params !== undefined && req.template === undefined) problems.push({ field: `${prefix}/params`, message: '`params` go with `template`' });
  let scheduleAt: number | undefined;
  if (req.scheduleAt !== undefined) {
    scheduleAt = parseRfc3339(req.scheduleAt);
    if (scheduleAt === undefined) problems.push({ field: `${prefix}/scheduleAt`, message: 'must be an RFC 3339 time with an offset, e.g. 2026-11-23T09:00:00+08:00' });
  }
  if (req.text === undefined && req.template === undefined) problems.push({ field: `${prefix}/text`, message: 'text (or template) is required' });
  if (givenCount === 0) problems.push({ field: `${prefix}/to`, message: 'give `to` (a list of numbers), `group` or `people` (directory person ids)' });
  if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });

  let recipients: Recipients;
  if (req.to !== undefined) {
    const to = req.to;
    if (to.length > config.server.maxRecipientsPerRequest) {
      throw new GatewayError('TOO_MANY_RECIPIENTS', `at most ${config.server.maxRecipientsPerRequest} recipients in one request`, {
        details: [{ field: `${prefix}/to`, message: `has ${to.length} items` }],
      });
    }
    const numbers: string[] = [];
    const bad: FieldProblem[] = [];
    const allowInternational = config.numbers.allowInternational;
    for (let i = 0; i < to.length; i++) {
      const n = normalizeNumber(to[i] as string, { allowInternational });
      if (n.ok) numbers.push(n.number);
      else if (bad.length < 20) bad.push({ field: `${prefix}/to/${i}`, message: n.reason });
      else if (bad.length === 20) bad.push({ field: `${prefix}/to`, message: 'more invalid numbers not listed' });
    }
    if (bad.length > 0) throw new GatewayError('BAD_NUMBER', `${bad.length > 20 ? 'more than 20' : bad.length} invalid number(s)`, { details: bad });
    // Numbers in the request are the caller's: they need the `direct` grant.
    recipients = { kind: 'numbers', numbers, origin: 'caller' };
  } else if (req.people !== undefined) {
    if (req.people.length > config.server.maxRecipientsPerRequest) {
      throw new GatewayError('TOO_MANY_RECIPIENTS', `at most ${config.server.maxRecipientsPerRequest} recipients in one request`, {
        details: [{ field: `${prefix}/people`, message: `has ${req.people.length} items` }],
      });
    }
    // Ids, resolved by the send service from the gateway's own directory (origin directory).
    recipients = { kind: 'people', people: req.people };
  } else recipients = { kind: 'group', group: req.group as string };

  let validityMs: number | undefined;
  if (req.validity !== undefined) {
    validityMs = parseIsoDuration(req.validity);
    if (validityMs === undefined) {
      throw new GatewayError('VALIDATION', 'validity out of range', {
        details: [{ field: `${prefix}/validity`, message: `must be a positive ISO-8601 duration up to ${config.sender.maxValidity}` }],
      });
    }
  }
  const content: Content = req.template !== undefined
    ? { kind: 'template', name: req.template, params: req.params ?? {} }
    : { kind: 'text', text: req.text as string };
  // Optional fields assigned in the order the spreads used to add them, without a temporary object each.
  const command: Mutable<SendCommand> = {
    recipients,
    tier: req.tier ?? config.defaultTier,
    channel: req.channel ?? 'auto',
    content,
  };
  if (req.classification !== undefined) command.classification = req.classification;
  if (scheduleAt !== undefined) command.scheduleAt = scheduleAt;
  if (validityMs !== undefined) command.validityMs = validityMs;
  if (idempotencyKey !== undefined) command.idempotencyKey = idempotencyKey;
  if (req.reference !== undefined) command.reference = req.reference;
  if (req.callbackUrl !== undefined) command.callbackUrl = req.callbackUrl;
  if (req.statusCallback !== undefined) {
    const events = req.statusCallback.events ?? DEFAULT_EVENTS;
    command.statusCallback = { url: req.statusCallback.url, events: STATUS_EVENTS.filter((e) => events.includes(e)) };
  }
  return command;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
const NO_NAMES: readonly string[] = [];
const DEFAULT_EVENTS: readonly string[] = ['final'];

/** Epoch ms of an RFC 3339 time with an explicit offset, or undefined. */
export function parseRfc3339(v: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}
