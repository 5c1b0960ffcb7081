/**
 * Held messages paged under a scope filter (a delegated admin's subtree),
 * against a reference model with fast-check, on a real LMDB store: with any
 * owners, page size and scan bound, the pages' union is exactly the kept
 * rows in id order, no page holds a foreign row or more than `limit`, a page
 * short of `limit` with a `next` comes only from the scan bound, and every
 * call reads a bounded number of rows. (Through HTTP with delegated admin
 * keys: directory-e2e.test.ts.)
 */
import t from 'tap';
import fc from 'fast-check';
import { HeldMessages, type HeldRecord } from '../../src/directory/held.js';
import type { DirectoryStore } from '../../src/directory/store.js';
import type { HeldReceipts } from '../../src/directory/held.js';
import type { WorkQueue } from '../../src/queue/port.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { tempEnv } from '../support/temp-env.js';

const TENANTS = ['mine', 'other'] as const;

t.test('held list: scope applied while paging (fast-check against a model)', async (t) => {
  const env = tempEnv(t);
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.constantFrom(...TENANTS), { maxLength: 60 }),
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 1, max: 25 }),
      async (owners, limit, maxScan) => {
        // One database (its name is fixed), emptied for each run.
        const metrics = createMetrics({ defaultMetrics: false });
        const held = new HeldMessages(env, { queue: {} as WorkQueue, receipts: {} as HeldReceipts, directory: {} as DirectoryStore, metrics });
        const db = env.openDB<HeldRecord, string>({ name: 'dir.held', encoding: 'msgpack' });
        await db.clearAsync();
        run++;
        const ids = owners.map((_, i) => `M${String(run).padStart(4, '0')}${String(i).padStart(3, '0')}`);
        for (const [i, tenant] of owners.entries()) {
          held.hold({ id: ids[i] as string, tenant, tier: 'normal', heldAt: 0, expiresAt: 1, word: 'w', recipients: 1, jobs: [] });
        }
        await db.committed;
        const keep = (r: HeldRecord): boolean => r.tenant === 'mine';
        const model = ids.filter((_, i) => owners[i] === 'mine');
        const got: string[] = [];
        let cursor: string | undefined;
        let calls = 0;
        const effectiveScan = Math.max(limit + 1, maxScan);
        // Every call makes progress: at most one call per row, plus the last.
        for (; calls <= ids.length + 1; calls++) {
          const page = held.list({ limit, keep, maxScan, ...(cursor !== undefined ? { cursor } : {}) });
          if (page.items.length > limit) return false;
          if (page.items.some((h) => h.tenant !== 'mine')) return false;
          if (page.next !== undefined) {
            // Rows read past the cursor when the call stopped.
            const from = cursor === undefined ? 0 : ids.findIndex((id) => id > (cursor as string));
            const read = ids.indexOf(page.next) - from + 1;
            const bounded = read === effectiveScan;
            // A short page with more to come: only when the scan bound stopped it.
            if (page.items.length < limit && !bounded) return false;
            // A full page says `next` only when a further row is in scope (or the bound stopped the look-ahead).
            if (got.length + page.items.length >= model.length && !bounded) return false;
          }
          got.push(...page.items.map((h) => h.id));
          cursor = page.next;
          if (cursor === undefined) break;
        }
        if (cursor !== undefined) return false;
        return JSON.stringify(got) === JSON.stringify(model);
      },
    ),
    { numRuns: 200, seed: 1717 },
  );
  // Without a scan bound in play (default 10,000), every page but the last is full and the last is not empty.
  const metrics = createMetrics({ defaultMetrics: false });
  const held = new HeldMessages(env, { queue: {} as WorkQueue, receipts: {} as HeldReceipts, directory: {} as DirectoryStore, metrics });
  const db = env.openDB<HeldRecord, string>({ name: 'dir.held', encoding: 'msgpack' });
  await db.clearAsync();
  const owners = [...Array<string>(30).fill('other'), 'mine', 'mine', 'mine', ...Array<string>(30).fill('other'), 'mine', ...Array<string>(30).fill('other')];
  for (const [i, tenant] of owners.entries()) held.hold({ id: `Z${String(i).padStart(3, '0')}`, tenant, tier: 'normal', heldAt: 0, expiresAt: 1, word: 'w', recipients: 1, jobs: [] });
  await db.committed;
  const p1 = held.list({ limit: 2, keep: (r) => r.tenant === 'mine' });
  t.same(p1.items.map((h) => h.id), ['Z030', 'Z031']);
  t.equal(p1.next, 'Z031');
  const p2 = held.list({ limit: 2, keep: (r) => r.tenant === 'mine', cursor: p1.next });
  t.same(p2.items.map((h) => h.id), ['Z032', 'Z063']);
  t.equal(p2.next, undefined, 'nothing in scope after: no next, though foreign rows follow');
});
