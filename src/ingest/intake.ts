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
    const [result] = await this.acceptMany(principal, [{ request, idempotencyKey }]);
    if (!result) throw new GatewayError('INTERNAL', 'no result');
    return result;
  }

  /** Several messages (POST /v1/messages/batch): each item on its own; all that pass are written together. */
  async acceptMany(principal: Principal, items: readonly AcceptItem[]): Promise<ItemResult[]> {
    const results = new Array<ItemResult>(items.length);
    const sends: { index: number; item: SendItem }[] = [];
    items.forEach((it, index) => {
      const prefix = it.prefix ?? '';
      try {
        const command = commandOf(this.deps.config, it.request, it.idempotencyKey, prefix);
        sends.push({ index, item: { command, prefix, ...(it.idempotencyKey !== undefined ? { fingerprint: requestFingerprint(it.request) } : {}) } });
      } catch (e) {
        results[index] = { ok: false, error: asGatewayError(e) };
      }
    });
    if (sends.length > 0) {
      const sent = await this.deps.sends.send(principal, sends.map((s) => s.item));
      sent.forEach((r, k) => void (results[(sends[k] as { index: number }).index] = r));
    }
    return results;
  }
}

/** The command a request states; VALIDATION / BAD_NUMBER / TOO_MANY_RECIPIENTS naming the field. */
export function commandOf(config: ResolvedConfig, req: SendRequest, idempotencyKey: string | undefined, prefix: string): SendCommand {
  const problems: FieldProblem[] = [];
  const given = [req.to !== undefined ? 'to' : '', req.group !== undefined ? 'group' : '', req.people !== undefined ? 'people' : ''].filter((x) => x !== '');
  if (given.length > 1) problems.push({ field: `${prefix}/${given[1] ?? 'group'}`, message: `give one of \`to\`, \`group\`, \`people\`, not ${given.map((g) => `\`${g}\``).join(' and ')}` });
  if (req.template !== undefined && req.text !== undefined) problems.push({ field: `${prefix}/template`, message: 'give either `text` or `template` (with `params`), not both' });
  if (req.params !== undefined && req.template === undefined) problems.push({ field: `${prefix}/params`, message: '`params` go with `template`' });
  let scheduleAt: number | undefined;
  if (req.scheduleAt !== undefined) {
    scheduleAt = parseRfc3339(req.scheduleAt);
    if (scheduleAt === undefined) problems.push({ field: `${prefix}/scheduleAt`, message: 'must be an RFC 3339 time with an offset, e.g. 2026-11-23T09:00:00+08:00' });
  }
  if (req.text === undefined && req.template === undefined) problems.push({ field: `${prefix}/text`, message: 'text (or template) is required' });
  if (given.length === 0) problems.push({ field: `${prefix}/to`, message: 'give `to` (a list of numbers), `group` or `people` (directory person ids)' });
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
  return {
    recipients,
    tier: req.tier ?? config.defaultTier,
    channel: req.channel ?? 'auto',
    content,
    ...(req.classification !== undefined ? { classification: req.classification } : {}),
    ...(scheduleAt !== undefined ? { scheduleAt } : {}),
    ...(validityMs !== undefined ? { validityMs } : {}),
    ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    ...(req.reference !== undefined ? { reference: req.reference } : {}),
    ...(req.callbackUrl !== undefined ? { callbackUrl: req.callbackUrl } : {}),
    ...(req.statusCallback !== undefined ? { statusCallback: { url: req.statusCallback.url, events: STATUS_EVENTS.filter((e) => (req.statusCallback?.events ?? ['final']).includes(e)) } } : {}),
  };
}

/** Epoch ms of an RFC 3339 time with an explicit offset, or undefined. */
export function parseRfc3339(v: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}
