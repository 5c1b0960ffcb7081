/**
 * New-mail alerts: the decisions, without I/O or clock (src/office/mail
 * stores the state, keeps the time and sends).
 *
 * Per person, one small state: when the last SMS went out and, when mail
 * is being held back, ONE pending digest.
 *
 *   mail arrives ──▶ inside quiet hours? ──yes──▶ fold into the digest, due when they end
 *                        │ no
 *                        ▼
 *                   a digest pending? ──yes──▶ fold into it (its due time stays)
 *                        │ no
 *                        ▼
 *                   last SMS ≥ window ago? ──yes──▶ ALERT now (last SMS = now)
 *                        │ no
 *                        ▼
 *                   new digest of 1, due at last SMS + window
 *
 *   digest due ──▶ inside quiet hours? ──yes──▶ postpone to their end
 *                        │ no
 *                        ▼
 *                   mark "sending" {key, text, count} (durable before the send, so a
 *                   crash resends the same text under the same idempotency key)
 *                        ▼ sent
 *                   count −= what it covered; last SMS = now; mail that folded in
 *                   while it was being sent starts a new digest due one window later
 *
 * So a person gets at most one SMS per window, every mail is in exactly one
 * SMS (an alert or a digest), and a digest of one mail reads as an ordinary
 * alert. Texts: `alertText` ({{sender}}, {{subject}}) and `digestText`
 * ({{count}}, and the latest mail's {{sender}}, {{subject}}).
 */

/** The mail as the alert shows it. */
export interface MailSummary {
  /** Display name of the From header, else its address (shortened). */
  readonly sender: string;
  /** Subject, shortened (see shortenForSms). */
  readonly subject: string;
}

export interface PendingDigest {
  /** Unique per digest: part of its idempotency key. */
  readonly id: string;
  /** Mails folded in (not yet covered by a sent SMS). */
  readonly count: number;
  /** The latest mail folded in. */
  readonly sender: string;
  readonly subject: string;
  /** Epoch ms at which it is sent. */
  readonly dueAt: number;
  /** Failed sends so far (transient failures retry with back-off). */
  readonly attempts: number;
  /** Set just before the send: what exactly is being sent, and how many mails it covers. */
  readonly sending?: DigestSend;
}

export interface DigestSend {
  readonly key: string;
  readonly text: string;
  readonly count: number;
}

export interface PersonMailState {
  /** Epoch ms of the last SMS (alert or digest) to the person: the rate window starts there. */
  readonly lastSentAt?: number;
  readonly pending?: PendingDigest;
}

export interface ArrivalContext {
  readonly now: number;
  /** At most one SMS per person per this many ms. */
  readonly windowMs: number;
  /** When `now` is inside quiet hours: the epoch ms at which they end. */
  readonly quietEnd: number | undefined;
  /** A fresh digest id (only called when a new digest starts). */
  readonly newId: () => string;
}

export type Arrival =
  | { readonly kind: 'alert'; readonly next: PersonMailState }
  | { readonly kind: 'fold'; readonly next: PersonMailState; readonly newDigest: boolean };

/** What to do with one mail for one (opted-in) person. */
export function arrive(state: PersonMailState | undefined, mail: MailSummary, ctx: ArrivalContext): Arrival {
  const s = state ?? {};
  const windowEnd = s.lastSentAt === undefined ? -Infinity : s.lastSentAt + ctx.windowMs;
  if (ctx.quietEnd === undefined && s.pending === undefined && ctx.now >= windowEnd) {
    return { kind: 'alert', next: { lastSentAt: ctx.now } };
  }
  const floor = Math.max(windowEnd, ctx.quietEnd ?? -Infinity);
  return fold(s, mail, floor, ctx.newId);
}

/**
 * Fold one mail into the person's digest (started if there is none), due no
 * earlier than `dueAt` (and never earlier than it already was due, unless it
 * has none). Used for arrivals and for an alert whose send failed for now.
 */
export function fold(state: PersonMailState | undefined, mail: MailSummary, dueAt: number, newId: () => string): Arrival & { kind: 'fold' } {
  const s = state ?? {};
  const p = s.pending;
  const pending: PendingDigest = p === undefined
    ? { id: newId(), count: 1, sender: mail.sender, subject: mail.subject, dueAt, attempts: 0 }
    : { ...p, count: p.count + 1, sender: mail.sender, subject: mail.subject, dueAt: Math.max(p.dueAt, dueAt) };
  return { kind: 'fold', next: { ...s, pending }, newDigest: p === undefined };
}

/** The text of a digest: an ordinary alert when it covers one mail. */
export function digestValues(p: Pick<PendingDigest, 'count' | 'sender' | 'subject'>): { readonly kind: 'alert' | 'digest'; readonly values: Record<string, unknown> } {
  return p.count === 1
    ? { kind: 'alert', values: { sender: p.sender, subject: p.subject } }
    : { kind: 'digest', values: { count: String(p.count), sender: p.sender, subject: p.subject } };
}

export type DueStep =
  /** Nothing to do (no digest, or not due yet). */
  | { readonly kind: 'none' }
  /** Inside quiet hours: the digest waits for their end. */
  | { readonly kind: 'postpone'; readonly next: PersonMailState }
  /** Send this (the state with `sending` set must be stored first). */
  | { readonly kind: 'send'; readonly send: DigestSend; readonly next: PersonMailState };

/**
 * A digest whose time has come. `render` makes the text of what it covers
 * now (called only when no send is already marked: a marked send is
 * repeated exactly, whatever folded in since).
 */
export function dueStep(state: PersonMailState | undefined, now: number, quietEnd: number | undefined, keyOf: (p: PendingDigest) => string, render: (p: PendingDigest) => string): DueStep {
  const p = state?.pending;
  if (p === undefined || p.dueAt > now) return { kind: 'none' };
  if (quietEnd !== undefined) return { kind: 'postpone', next: { ...state, pending: { ...p, dueAt: quietEnd } } };
  if (p.sending !== undefined) return { kind: 'send', send: p.sending, next: state as PersonMailState };
  const send: DigestSend = { key: keyOf(p), text: render(p), count: p.count };
  return { kind: 'send', send, next: { ...state, pending: { ...p, sending: send } } };
}

/**
 * After a marked send was made durable (or refused for good: `sentAt` is
 * then undefined and the rate window is not restarted): the mails it covered
 * leave the digest; mail that folded in meanwhile starts a new one.
 */
export function afterSend(state: PersonMailState | undefined, covered: number, sentAt: number | undefined, windowMs: number, newId: () => string): PersonMailState {
  const s = state ?? {};
  const lastSentAt = sentAt ?? s.lastSentAt;
  const base: PersonMailState = lastSentAt === undefined ? {} : { lastSentAt };
  const p = s.pending;
  if (p === undefined) return base;
  const left = p.count - covered;
  if (left <= 0) return base;
  const dueAt = Math.max(p.dueAt, (lastSentAt ?? -Infinity) + windowMs);
  return { ...base, pending: { id: newId(), count: left, sender: p.sender, subject: p.subject, dueAt, attempts: 0 } };
}

/** Longest back-off between attempts of a failed digest send. */
export const MAX_RETRY_DELAY_MS = 300_000;

/** A send that failed for now: try again later (exponential back-off), the marked send kept. */
export function afterTransientFailure(state: PersonMailState, now: number): PersonMailState {
  const p = state.pending;
  if (p === undefined) return state;
  const attempts = p.attempts + 1;
  const delay = Math.min(MAX_RETRY_DELAY_MS, 1000 * 2 ** Math.min(attempts - 1, 16));
  return { ...state, pending: { ...p, attempts, dueAt: now + delay } };
}

// ------------------------------------------------------------------ texts

/** Longest subject shown in an alert (characters, … included). */
export const MAX_SUBJECT_CHARS = 40;
/** Longest sender shown in an alert. */
export const MAX_SENDER_CHARS = 24;

/**
 * One line for an SMS: control characters and runs of white space become
 * one space, trimmed, and cut to `max` characters (code points, so an emoji
 * or a CJK extension character is never split) with … as the last one.
 */
export function shortenForSms(raw: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const flat = raw.replace(/[\u0000-\u001f\u007f\u2028\u2029\s]+/g, ' ').trim();
  const chars = Array.from(flat);
  if (chars.length <= max) return flat;
  return `${chars.slice(0, Math.max(0, max - 1)).join('').trimEnd()}…`;
}

/** The sender as the alert names it: the From display name, else the address. */
export function senderName(from: { readonly name?: string; readonly address?: string } | undefined, envelopeFrom: string): string {
  const name = from?.name !== undefined ? shortenForSms(from.name.replace(/^["'\s]+|["'\s]+$/g, ''), MAX_SENDER_CHARS) : '';
  if (name !== '') return name;
  const address = from?.address !== undefined && from.address !== '' ? from.address : envelopeFrom;
  return shortenForSms(address, MAX_SENDER_CHARS) || '(未知发件人)';
}

/** The subject as the alert shows it. */
export function subjectLine(subject: string | undefined): string {
  const s = subject === undefined ? '' : shortenForSms(subject, MAX_SUBJECT_CHARS);
  return s === '' ? '(无主题)' : s;
}

// ---------------------------------------------------------------- senders

/** The domain of an address (lower-case), or undefined for the null sender and malformed ones. */
export function domainOf(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return undefined;
  return address.slice(at + 1).toLowerCase().replace(/\.$/, '');
}

/**
 * Is the sender's domain one of `domains`? An entry is a domain (exact
 * match) or `*.domain` (any sub-domain of it, not the domain itself).
 */
export function senderAllowed(address: string, domains: readonly string[]): boolean {
  const d = domainOf(address);
  if (d === undefined) return false;
  for (const raw of domains) {
    const entry = raw.toLowerCase();
    if (entry.startsWith('*.')) {
      if (d.endsWith(entry.slice(1))) return true;
    } else if (d === entry) return true;
  }
  return false;
}

/** IPv4-mapped IPv6 addresses (::ffff:10.0.0.5) compare as their IPv4 form. */
export function plainIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}
