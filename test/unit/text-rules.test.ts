/**
 * Text rules and the parts cap, against simple reference models:
 *
 *   text rules (src/core/text.ts): walk the text code point by code point
 *     (Array.from keeps a lone surrogate as its own element); the first lone
 *     surrogate or refused C0 control is the refusal (and its UTF-16 index);
 *     TAB becomes a space, the listed format characters vanish.
 *   parts: a text of 'a' / ' ' only is GSM 7-bit (160, then 153 a part);
 *     anything with '中' is UCS-2 (70, then 67 a part).
 *
 * Through the send service (fakes for store and queue, no directory): a
 * refused send writes and publishes nothing, an accepted one publishes the
 * cleaned text, and the 202's segments are the model's.
 */
import t from 'tap';
import fc from 'fast-check';
import pino from 'pino';
import { checkText } from '../../src/core/text.js';
import { loadConfig } from '../../src/config/load.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { createSendService } from '../../src/send/index.js';
import { decodeJob } from '../../src/core/job.js';
import { sendFakes } from '../support/send-fakes.js';
import type { Principal } from '../../src/core/send.js';

const REMOVED = [0x200b, 0x200c, 0x200d, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x2060, 0xfeff];

type Model = { ok: true; text: string } | { ok: false; reason: 'lone-surrogate' | 'control'; index: number };

/** The reference: one code point at a time, as a reader of the rules would apply them. */
function model(text: string): Model {
  let out = '';
  let index = 0;
  for (const ch of Array.from(text)) {
    const cp = ch.codePointAt(0) as number;
    if (cp >= 0xd800 && cp <= 0xdfff) return { ok: false, reason: 'lone-surrogate', index };
    if (cp < 0x20 && ch !== '\n' && ch !== '\r' && ch !== '\t') return { ok: false, reason: 'control', index };
    if (ch === '\t') out += ' ';
    else if (!REMOVED.includes(cp)) out += ch;
    index += ch.length;
  }
  return { ok: true, text: out };
}

/** Pieces that exercise every rule: plain, CJK, emoji (a valid pair), controls, format characters, lone halves. */
const piece = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', ' ', 'Z', '中', '\n', '\r', '\t', '😀', 'é') },
  { weight: 2, arbitrary: fc.constantFrom(...REMOVED.map((c) => String.fromCharCode(c))) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x10ffff }).map((c) => String.fromCodePoint(c)) },
);
const text = fc.array(piece, { maxLength: 60 }).map((a) => a.join(''));

t.test('checkText agrees with the code-point model', async (t) => {
  fc.assert(fc.property(text, (s) => {
    const got = checkText(s);
    const want = model(s);
    if (want.ok) return got.ok && got.text === want.text;
    return !got.ok && got.reason === want.reason && got.index === want.index;
  }), { numRuns: 5000, seed: 20261206 });
  // Well-formed pairs stay; halves in the wrong order are two lone surrogates.
  t.same(checkText('x😀y'), { ok: true, text: 'x😀y' });
  t.match(checkText('\udc00\ud800'), { ok: false, reason: 'lone-surrogate', index: 0 });
  t.match(checkText('ok\u0000'), { ok: false, reason: 'control', index: 2, codeUnit: 0 });
  t.match(checkText('\u001b[31m'), { ok: false, reason: 'control', index: 0, codeUnit: 0x1b });
  t.same(checkText('\u202eevil\u202c\tok\u200b'), { ok: true, text: 'evil ok' });
  t.same(checkText('\r\n'), { ok: true, text: '\r\n' }, 'CR and LF stay');
  // No change: the very same string comes back (no copy on the hot path).
  const plain = '关于召开会议的通知';
  const r = checkText(plain);
  t.ok(r.ok && r.text === plain);
});

// ---------------------------------------------------------------- through the send service

const principal: Principal = { tenant: 't', tiers: null, sender: '10690001' };

function service(maxSegments: number) {
  const config = loadConfig({ env: {}, overrides: { log: { level: 'silent' }, sender: { maxSegments } } });
  const { rows, published, store, queue } = sendFakes();
  const sends = createSendService({ config: { ...config, queue: { ...config.queue, coalesce: false } }, store, queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }), principalOf: () => principal });
  return { sends, rows, published };
}

/** Parts of a text of 'a', ' ' (GSM) and '中' (UCS-2) only. */
function modelParts(s: string): number {
  const ucs2 = s.includes('中');
  const [single, part] = ucs2 ? [70, 67] : [160, 153];
  return s.length <= single ? 1 : Math.ceil(s.length / part);
}

t.test('the send service: text rules then the parts cap, as the models say; refused sends write nothing', async (t) => {
  // Long runs of 'a' / '中' with format characters and controls sprinkled in.
  const run = fc.tuple(fc.constantFrom('a', ' ', '中'), fc.integer({ min: 1, max: 400 })).map(([c, n]) => c.repeat(n));
  const sprinkle = fc.constantFrom('\u200b', '\u202e', '\u2066', '\ufeff', '\t', '\u0000', '\u001b', '\ud800', '\udfff');
  const body = fc.array(fc.oneof({ weight: 5, arbitrary: run }, { weight: 1, arbitrary: sprinkle }), { minLength: 1, maxLength: 8 }).map((a) => a.join(''));
  await t.resolves(fc.assert(fc.asyncProperty(body, fc.integer({ min: 1, max: 12 }), async (s, maxSegments) => {
    const { sends, rows, published } = service(maxSegments);
    const [r] = await sends.send(principal, [{ command: { recipients: { kind: 'numbers', numbers: ['8613900000001', '8613900000002'], origin: 'caller' }, tier: 'routine', channel: 'auto', content: { kind: 'text', text: s } } }]);
    const m = model(s);
    if (!m.ok) {
      return r?.ok === false && r.error.code === 'TEXT_INVALID' && r.error.status === 422 && r.error.details?.[0]?.field === '/text' && rows.length === 0 && published.length === 0;
    }
    const cleaned = m.text.replaceAll('\t', ' ');
    const parts = modelParts(cleaned);
    if (parts > maxSegments) {
      return r?.ok === false && r.error.code === 'TOO_MANY_PARTS' && r.error.status === 422 && rows.length === 0 && published.length === 0;
    }
    if (r?.ok !== true || r.body.segments !== parts || r.body.totalSegments !== 2 * parts) return false;
    const job = decodeJob(published[0]!.data);
    return published.length === 1 && job.messages[0]?.text === cleaned;
  }), { numRuns: 400, seed: 1206 }), 'property held');
});

t.test('the default cap is 10 parts: 10 UCS-2 parts go, 11 do not', async (t) => {
  const { sends, published } = service(10);
  const ten = '中'.repeat(670);
  const eleven = '中'.repeat(671);
  const send = (text: string) => sends.send(principal, [{ command: { recipients: { kind: 'numbers', numbers: ['8613900000001'], origin: 'caller' }, tier: 'routine', channel: 'auto', content: { kind: 'text', text } } }]);
  t.match((await send(ten))[0], { ok: true, body: { segments: 10 } });
  t.match((await send(eleven))[0], { ok: false, error: { code: 'TOO_MANY_PARTS', details: [{ field: '/text', message: /needs 11 parts/ }] } });
  t.equal(published.length, 1);
  const defaults = loadConfig({ env: {}, overrides: { log: { level: 'silent' } } });
  t.equal(defaults.sender.maxSegments, 10, 'the default');
});
