/**
 * Every admin change is in the audit log — who, what, when, before/after —
 * and refused changes are not; the log is append-only, filterable and paged.
 */
import t from 'tap';
import { startTestGateway } from '../support/gateway.js';
import { adminClient, ADMIN_CONFIG, mobileAt } from '../support/directory.js';
import type { AuditEntry as StoredAuditEntry } from '../../src/directory/types.js';

/** An audit entry as the API answers it: the stored entry with `at` as an ISO timestamp. */
type AuditEntry = Omit<StoredAuditEntry, 'at'> & { readonly at: string };
interface AuditPage {
  readonly items: AuditEntry[];
  readonly next?: string;
}
interface GrantsState {
  readonly grants: { readonly tiers: string[]; readonly dailyQuota?: number | null };
}

t.test('the audit log records every admin change', async (t) => {
  const gw = await startTestGateway(t, { config: ADMIN_CONFIG });
  const admin = adminClient(gw);
  const startedAt = new Date().toISOString();
  const expected: Array<[string, string, string]> = [];
  const change = async (method: string, path: string, body: unknown, ...entries: Array<[string, string, string]>) => {
    await admin.must(method, path, body);
    expected.push(...entries);
  };
  await change('POST', '/v1/admin/units', { id: 'city', name: 'City' }, ['unit.create', 'unit', 'city']);
  await change('POST', '/v1/admin/units', { id: 'sub', name: 'Sub', parent: 'city' }, ['unit.create', 'unit', 'sub']);
  await change('PATCH', '/v1/admin/units/sub', { name: 'Sub unit', signature: '【子单位】' }, ['unit.update', 'unit', 'sub']);
  await change('PUT', '/v1/admin/units/city/grants', { tiers: ['routine'], groups: ['*'], direct: true, dailyQuota: 500 }, ['unit.grants', 'unit', 'city']);
  const key = await admin.must<{ id: string; key: string }>('POST', '/v1/admin/units/sub/keys', { label: 'oa' });
  expected.push(['key.create', 'key', key.id]);
  await change('DELETE', `/v1/admin/keys/${key.id}`, undefined, ['key.revoke', 'key', key.id]);
  await change('POST', '/v1/admin/people', { id: 'p1', name: 'One', mobile: mobileAt(1), unit: 'sub' }, ['person.create', 'person', 'p1']);
  await change('PUT', '/v1/admin/people/p1', { name: 'One', mobile: mobileAt(2), unit: 'sub', channel: 'both' }, ['person.update', 'person', 'p1']);
  await change('POST', '/v1/admin/groups', { id: 'g', name: 'G', unit: 'sub', members: ['p1'] }, ['group.create', 'group', 'g']);
  await change('POST', '/v1/admin/groups/g/members', { remove: ['p1'] }, ['group.members', 'group', 'g']);
  await change('PUT', '/v1/admin/groups/g', { name: 'G renamed', unit: 'sub' }, ['group.update', 'group', 'g']);
  await change('POST', '/v1/admin/blocks', { scope: 'city', number: mobileAt(9) }, ['block.add', 'block', `city:86${mobileAt(9)}`]);
  await change('DELETE', `/v1/admin/blocks/city/86${mobileAt(9)}`, undefined, ['block.remove', 'block', `city:86${mobileAt(9)}`]);
  const people = `id,name,mobile,unit\np2,Two,${mobileAt(3)},sub\np3,Three,${mobileAt(4)},sub\n`;
  await admin.must('POST', '/v1/admin/people/import', people);
  expected.push(['person.create', 'person', 'p2'], ['person.create', 'person', 'p3'], ['people.import', 'import', '']);
  await admin.must('POST', '/v1/admin/groups/import', 'group,name,unit,kind,member\ng2,G2,sub,person,p2\n');
  expected.push(['group.create', 'group', 'g2'], ['groups.import', 'import', '']);
  await change('DELETE', '/v1/admin/groups/g2', undefined, ['group.delete', 'group', 'g2']);
  await change('DELETE', '/v1/admin/people/p1', undefined, ['person.delete', 'person', 'p1']);

  // Refused changes leave no trace.
  t.equal((await admin.call('POST', '/v1/admin/units', { id: 'city', name: 'dup' })).status, 409);
  t.equal((await admin.call('DELETE', '/v1/admin/units/city')).status, 409);
  t.equal((await admin.call('POST', '/v1/admin/people/import', 'name,mobile,unit\nx,123,sub\n')).status, 422);

  const all = await admin.must<AuditPage>('GET', '/v1/admin/audit?limit=1000');
  const got = all.items.slice().reverse().map((e) => [e.action, e.targetType, e.action.endsWith('.import') ? '' : e.targetId]);
  t.same(got, expected, 'one entry per change, in order, nothing for refused ones');
  t.ok(all.items.every((e) => e.actor === 'root-admin' && e.at >= startedAt), 'who and when on every entry');

  const byTarget = await admin.must<AuditPage>('GET', '/v1/admin/audit?targetType=person&targetId=p1');
  t.same(byTarget.items.map((e) => e.action), ['person.delete', 'person.update', 'person.create'], 'a resource\'s history, newest first');
  const [del, upd, cre] = byTarget.items as [AuditEntry, AuditEntry, AuditEntry];
  t.equal(cre.before, undefined);
  t.match(cre.after, { id: 'p1', mobile: `86${mobileAt(1)}`, channel: 'sms' });
  t.match(upd.before, { mobile: `86${mobileAt(1)}`, channel: 'sms' });
  t.match(upd.after, { mobile: `86${mobileAt(2)}`, channel: 'both' });
  t.match(del.before, { id: 'p1' });
  t.equal(del.after, undefined);
  const grantsEntry = (await admin.must<{ items: Array<{ before: GrantsState; after: GrantsState }> }>('GET', '/v1/admin/audit?action=unit.grants')).items[0]!;
  t.same(grantsEntry.before.grants.tiers, []);
  t.same(grantsEntry.after.grants.tiers, ['routine']);
  t.equal(grantsEntry.after.grants.dailyQuota, 500);
  const keyEntry = (await admin.must<AuditPage>('GET', `/v1/admin/audit?targetType=key&targetId=${key.id}`)).items;
  t.notOk(JSON.stringify(keyEntry).includes(key.key), 'the key itself is never in the log');
  t.equal((await admin.must<AuditPage>('GET', '/v1/admin/audit?action=unit')).items.length, 4, 'an action prefix matches unit.*');
  const importEntry = (await admin.must<AuditPage>('GET', '/v1/admin/audit?action=people.import')).items[0]!;
  t.match(importEntry.detail, { created: 2, rows: 2, sha256: /^[0-9a-f]{64}$/ });
  t.equal((await admin.must<AuditPage>(`GET`, `/v1/admin/audit?from=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).items.length, 0);

  // Paging walks the whole log once.
  const seen: number[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 50; pages++) {
    const page = await admin.must<AuditPage>('GET', `/v1/admin/audit?limit=4${cursor ? `&cursor=${cursor}` : ''}`);
    seen.push(...page.items.map((e) => e.seq));
    cursor = page.next;
    if (cursor === undefined) break;
  }
  t.equal(seen.length, expected.length);
  t.same(seen, [...seen].sort((a, b) => b - a), 'newest first');
  t.equal(new Set(seen).size, seen.length);

  t.equal((await admin.call('DELETE', '/v1/admin/audit')).status, 405, 'append-only: no way to remove entries');
});
