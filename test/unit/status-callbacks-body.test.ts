/**
 * The completion callback's JSON text is written out (callbackBody,
 * summaryJson) instead of stringifying an object: it must be the very text
 * JSON.stringify gives for the documented shape (docs/CALLBACKS.md), for any
 * id, reference (absent, quotes, control characters, non-BMP text), count
 * and summary.
 */
import t from 'tap';
import fc from 'fast-check';
import { RECIPIENT_STATES, type RecipientState } from '../../src/core/message.js';
import { callbackBody, summaryJson } from '../../src/receipts/status-callbacks.js';

/** What the body was before: JSON.stringify of the object. */
function stringified(id: string, reference: string | undefined, recipients: number, summary: Record<RecipientState, number>, completedAt: number): string {
  return JSON.stringify({
    id, ...(reference !== undefined ? { reference } : {}), status: 'complete', recipients,
    summary: Object.fromEntries(RECIPIENT_STATES.map((s) => [s, summary[s]])), completedAt: new Date(completedAt).toISOString(),
  });
}

const summaries = fc.record(Object.fromEntries(RECIPIENT_STATES.map((s) => [s, fc.nat({ max: 1_000_000 })])) as Record<RecipientState, fc.Arbitrary<number>>);

t.test('the written-out body is the text JSON.stringify gives', (t) => {
  fc.assert(
    fc.property(
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      fc.option(fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), fc.constantFrom('', '"quoted"', 'a\\b', '\u0000\u001f\u2028', '报告 #1')), { nil: undefined }),
      fc.integer({ min: 0, max: 100_000 }),
      summaries,
      fc.integer({ min: 0, max: 4_102_444_800_000 }),
      (id, reference, recipients, summary, completedAt) => {
        const text = callbackBody(id, { reference, recipients, summary: summaryJson(summary) }, completedAt);
        return text === stringified(id, reference, recipients, summary, completedAt);
      },
    ),
    { numRuns: 2000 },
  );
  t.end();
});

t.test('the same millisecond twice, then another: each its own completedAt', (t) => {
  const s = summaryJson(Object.fromEntries(RECIPIENT_STATES.map((st) => [st, st === 'delivered' ? 1 : 0])) as Record<RecipientState, number>);
  const a = callbackBody('m1', { reference: undefined, recipients: 1, summary: s }, 1_765_000_000_123);
  const b = callbackBody('m2', { reference: 'r', recipients: 1, summary: s }, 1_765_000_000_123);
  const c = callbackBody('m3', { reference: undefined, recipients: 1, summary: s }, 1_765_000_000_124);
  t.equal((JSON.parse(a) as { completedAt: string }).completedAt, '2025-12-06T05:46:40.123Z');
  t.equal((JSON.parse(b) as { completedAt: string }).completedAt, '2025-12-06T05:46:40.123Z');
  t.equal((JSON.parse(c) as { completedAt: string }).completedAt, '2025-12-06T05:46:40.124Z');
  t.same(JSON.parse(b), { id: 'm2', reference: 'r', status: 'complete', recipients: 1, summary: { accepted: 0, queued: 0, submitted: 0, delivered: 1, undeliverable: 0, expired: 0, rejected: 0, failed: 0 }, completedAt: '2025-12-06T05:46:40.123Z' });
  t.end();
});
