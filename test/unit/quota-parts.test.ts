/**
 * Quotas count SMS parts beside recipients (issue #16 item 4): a unit's
 * `dailyPartsQuota` caps recipients × parts per recipient a day, in the same
 * transaction as the recipient quota. Against a reference model: a sequence
 * of sends (recipients, parts each) and give-backs over a unit and its
 * parent, each with both limits; a send is taken iff every limit of the
 * chain still has room for it, and a give-back returns exactly what it took.
 */
import t from 'tap';
import fc from 'fast-check';
import { QuotaLedger, type Reservation } from '../../src/directory/quota.js';
import type { QuotaLimit } from '../../src/directory/grants.js';
import { tempEnv } from '../support/temp-env.js';

t.test('daily parts and recipients quotas against a model', async (t) => {
  const env = tempEnv(t);
  let run = 0;
  const op = fc.oneof(
    fc.record({ kind: fc.constant('send' as const), recipients: fc.integer({ min: 1, max: 6 }), parts: fc.integer({ min: 1, max: 10 }) }),
    fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
  );
  const limit = fc.option(fc.integer({ min: 0, max: 60 }), { nil: null });
  await t.resolves(fc.assert(fc.asyncProperty(limit, limit, limit, limit, fc.array(op, { maxLength: 25 }), async (d1, p1, d2, p2, ops) => {
    // A fresh pair of units per run (the ledger keeps its rows).
    const unit = `u${run}`;
    const parent = `p${run++}`;
    const ledger = new QuotaLedger({ env, utcOffsetMinutes: 480, now: () => Date.UTC(2026, 11, 6, 3) });
    const limits: QuotaLimit[] = [
      { unit, daily: d1, perMinute: null, dailyParts: p1 },
      { unit: parent, daily: d2, perMinute: null, dailyParts: p2 },
    ];
    const model = { r: [0, 0], p: [0, 0] };
    const held: { res: Reservation; r: number; p: number }[] = [];
    for (const o of ops) {
      if (o.kind === 'send') {
        const p = o.recipients * o.parts;
        const fits = limits.every((l, k) => (l.daily === null || (model.r[k] as number) + o.recipients <= l.daily) && (l.dailyParts === null || (model.p[k] as number) + p <= (l.dailyParts as number)));
        let got: Reservation | undefined;
        let code: string | undefined;
        try {
          got = await ledger.reserve(limits, o.recipients, p);
        } catch (e) {
          code = (e as { code?: string }).code;
        }
        if (fits !== (got !== undefined)) return false;
        if (!fits && code !== 'QUOTA_EXCEEDED') return false;
        if (got) {
          held.push({ res: got, r: o.recipients, p });
          for (const k of [0, 1]) {
            model.r[k] = (model.r[k] as number) + o.recipients;
            model.p[k] = (model.p[k] as number) + p;
          }
        }
      } else if (held.length > 0) {
        const [h] = held.splice(o.pick % held.length, 1);
        if (!h) continue;
        await h.res.release();
        await h.res.release(); // idempotent
        for (const k of [0, 1]) {
          model.r[k] = (model.r[k] as number) - h.r;
          model.p[k] = (model.p[k] as number) - h.p;
        }
      }
      // Usage as the admin API shows it: only levels with a daily limit are counted.
      for (const [k, l] of limits.entries()) {
        const u = ledger.usage(l.unit);
        if (l.daily !== null && u.daily !== model.r[k]) return false;
        if (l.dailyParts !== null && u.dailyParts !== model.p[k]) return false;
      }
    }
    return true;
  }), { numRuns: 150, seed: 1604 }), 'the ledger agrees with the model');
});

t.test('a parts refusal names /quota/dailyParts and takes nothing (recipients included)', async (t) => {
  const env = tempEnv(t);
  const ledger = new QuotaLedger({ env, utcOffsetMinutes: 480 });
  const limits: QuotaLimit[] = [{ unit: 'u', daily: 100, perMinute: null, dailyParts: 10 }];
  await ledger.reserve(limits, 2, 8);
  await t.rejects(ledger.reserve(limits, 1, 3), { code: 'QUOTA_EXCEEDED', details: [{ field: '/quota/dailyParts', message: /8 of 10 parts used.*needs 3/ }] });
  t.match(ledger.usage('u'), { daily: 2, dailyParts: 8 }, 'the refused send took no recipients either');
  await ledger.reserve(limits, 1, 2);
  t.match(ledger.usage('u'), { daily: 3, dailyParts: 10 });
});
