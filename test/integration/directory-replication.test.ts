/**
 * Directory and template replication between hosts (RowLog in
 * src/replication/change-log.ts) over a real nats-server: two hosts, each
 * its own LMDB environment with a directory store, a template store and a
 * receipt store (whose applier applies the rows). Units, API keys (and their
 * revocation), people, groups and members, block lists and templates made on
 * one host are found on the other; the other host's directory version moves
 * (its caches reload); concurrent changes of one record on both hosts end in
 * the same state on both (the newer write wins); audit entries stay with the
 * host the admin used.
 */
import t, { type Test } from 'tap';
import { QuotaLedger } from '../../src/directory/quota.js';
import { DirectoryStore } from '../../src/directory/store.js';
import { TemplateStore } from '../../src/office/templates.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { until } from '../support/nats-deployment.js';
import { startReplicaHost, startReplicationNats, startReplication, type ReplicaHost } from '../support/replication.js';
import { ROOT, TIERS, grants, mobileAt } from '../support/directory.js';

interface Host extends ReplicaHost {
  readonly directory: DirectoryStore;
  readonly templates: TemplateStore;
}

/** A replica host with a directory store and a template store on its environment, both logging their rows. */
async function startHost(tt: Test, name: string, nats: NatsServerHandle): Promise<Host> {
  const h = await startReplicaHost(tt, name, nats);
  const directory = DirectoryStore.open({ env: h.env, tiers: TIERS, allowInternational: false, defaultSender: '10690000', maxGroupMembers: 10_000, changeLog: h.log });
  const templates = new TemplateStore({
    env: h.env, maxPerTenant: 100, maxBodyChars: 500, utcOffsetMinutes: 480,
    ancestorsOf: (tenant) => (directory.unitChain(tenant) ?? []).slice(1).map((u) => u.id),
    changeLog: h.log,
  });
  return Object.assign(h, { directory, templates });
}

t.test('directory and template changes made on one host are found on the other', async (tt) => {
  const nats = await startReplicationNats(tt);
  if (!nats) return;
  const a = await startHost(tt, 'host-a', nats);
  const b = await startHost(tt, 'host-b', nats);

  const versionBefore = b.directory.version();
  await a.directory.createUnit(ROOT, { id: 'city', name: '市政府办公厅', sender: '10690002', signature: '【市政府办公厅】', grants: grants({ tiers: ['routine'], groups: ['*'] }) });
  await a.directory.createUnit(ROOT, { id: 'city-water', name: '市水务局', parent: 'city' });
  const { key, info } = await a.directory.createKey(ROOT, 'city-water', { label: 'oa' });
  for (let i = 0; i < 20; i++) await a.directory.putPerson(ROOT, { id: `p${i}`, name: `人员${i}`, mobile: mobileAt(i), unit: 'city-water' }, 'create');
  await a.directory.putGroup(ROOT, { id: 'duty', name: '值班组', unit: 'city-water', members: Array.from({ length: 20 }, (_, i) => `p${i}`) }, 'create');
  await a.directory.block(ROOT, { scope: 'city', number: mobileAt(3), reason: 'TD' });
  await a.templates.put('city', 'meeting', { body: '请于{{time}}到{{room}}开会', params: { time: { type: 'string' }, room: { type: 'string' } } });

  await until('the group on B', () => b.directory.getGroup('duty') !== undefined && b.directory.listMembers('duty', { limit: 100 }).items.length === 20, 10_000);
  tt.equal(b.directory.getUnit('city-water')?.parent, 'city', 'unit tree');
  tt.same(b.directory.unitChain('city-water')?.map((u) => u.id), ['city-water', 'city']);
  tt.equal(b.directory.checkKey(key).ok, true, 'an API key made on A authenticates on B');
  const stored = (n: number): string => a.directory.getPerson(`p${n}`)!.mobile; // normalised (country code)
  tt.equal(b.directory.personByMobile(stored(7))?.id, 'p7', 'people and their number index');
  tt.ok(a.directory.isBlocked(stored(3), ['city']), 'blocked on A');
  // The block and the template were changed after the group: wait for them (each change is its own entry).
  await until('the block and the template on B', () => b.directory.isBlocked(stored(3), ['city']) && b.templates.get('city', 'meeting') !== undefined, 10_000);
  tt.ok(b.directory.isBlocked(stored(3), ['city']), 'block list');
  tt.equal(b.templates.render('city-water', 'meeting', { time: '15:00', room: '301' }, ''), '请于15:00到301开会', 'a template saved on A renders on B (inherited by the sub-unit)');
  tt.ok(b.directory.version() > versionBefore, "B's directory version moved: its caches reload");
  tt.equal(b.directory.queryAudit({ limit: 10 }).items.length, 0, 'audit entries stay on the host the admin used');
  tt.ok(a.directory.queryAudit({ limit: 10 }).items.length > 0);

  // Revoked on B: refused on A too.
  await b.directory.revokeKey(ROOT, info.id);
  await until('revocation on A', () => a.directory.checkKey(key).ok === false, 10_000);
  tt.match(a.directory.checkKey(key), { ok: false, reason: 'revoked' });

  // Removed on A: gone from B (members, person, template).
  await a.directory.changeMembers(ROOT, 'duty', { remove: ['p0', 'p1'] });
  const gone = a.directory.getPerson('p19')!.mobile;
  await a.directory.deletePerson(ROOT, 'p19');
  await a.templates.remove('city', 'meeting');
  await until('removals on B', () => b.directory.listMembers('duty', { limit: 100 }).items.length === 17 && b.directory.getPerson('p19') === undefined && b.templates.get('city', 'meeting') === undefined, 10_000);
  tt.equal(b.directory.personByMobile(gone), undefined, 'the number index follows');
});

t.test('the same record changed on both hosts at once ends the same on both', async (tt) => {
  const nats = await startReplicationNats(tt);
  if (!nats) return;
  const a = await startHost(tt, 'host-a', nats);
  const b = await startHost(tt, 'host-b', nats);
  await a.directory.createUnit(ROOT, { id: 'police', name: '市公安局', sender: '10690110' });
  await until('unit on B', () => b.directory.getUnit('police') !== undefined, 10_000);

  // Neither host hears the other while both change the unit (a partition, or two admins within the lag).
  await a.replication?.stop();
  await b.replication?.stop();
  await a.directory.updateUnit(ROOT, 'police', { name: '市公安局（A）', signature: '【A】' });
  await new Promise((r) => setTimeout(r, 5));
  await b.directory.updateUnit(ROOT, 'police', { name: '市公安局（B）' });
  a.replication = await startReplication(a, nats);
  b.replication = await startReplication(b, nats);

  await until('both hosts agree', () => a.directory.getUnit('police')?.name === b.directory.getUnit('police')?.name && a.directory.getUnit('police')?.signature === b.directory.getUnit('police')?.signature, 10_000);
  tt.equal(a.directory.getUnit('police')?.name, '市公安局（B）', 'the later change wins on both hosts, including the one that made the earlier');
  tt.same(a.directory.getUnit('police'), b.directory.getUnit('police'), 'the whole row is the same');
});

t.test('a daily quota is one limit across hosts: each host counts its own, the others\' counts arrive replicated', async (tt) => {
  const nats = await startReplicationNats(tt);
  if (!nats) return;
  const a = await startHost(tt, 'host-a', nats);
  const b = await startHost(tt, 'host-b', nats);
  const quotasA = new QuotaLedger({ env: a.env, utcOffsetMinutes: 480, changeLog: a.log });
  const quotasB = new QuotaLedger({ env: b.env, utcOffsetMinutes: 480, changeLog: b.log });
  const limit = [{ unit: 'water', daily: 10, perMinute: null }];

  await quotasA.reserve(limit, 6);
  await until('A\'s use on B', () => quotasB.usage('water').daily === 6, 10_000);
  await tt.rejects(quotasB.reserve(limit, 6), { code: 'QUOTA_EXCEEDED', message: /daily quota of 10/ }, 'B refuses what would pass the shared limit');
  const onB = await quotasB.reserve(limit, 4);
  await until('B\'s use on A', () => quotasA.usage('water').daily === 10, 10_000);
  await tt.rejects(quotasA.reserve(limit, 1), { code: 'QUOTA_EXCEEDED' }, 'A sees the limit reached with B\'s share');

  // A failed write gives its share back, on every host.
  await onB.release();
  await until('the release on A', () => quotasA.usage('water').daily === 6, 10_000);
  await quotasA.reserve(limit, 4);
  tt.equal(quotasA.usage('water').daily, 10);
  const versionBefore = b.directory.version();
  await until('A\'s second share on B', () => quotasB.usage('water').daily === 10, 10_000);
  tt.equal(b.directory.version(), versionBefore, 'quota counters do not reload the directory caches');
});

t.test("a unit's callback signing secret set on one host signs on the other; audited without the secret", async (tt) => {
  const nats = await startReplicationNats(tt);
  if (!nats) return;
  const { CallbackSecrets } = await import('../../src/outbound/secrets.js');
  const a = await startHost(tt, 'host-a', nats);
  const b = await startHost(tt, 'host-b', nats);
  const secretsOnB = new CallbackSecrets(b.env, {});
  secretsOnB.useDirectory((tenant) => b.directory.getCallbackSecret(tenant));
  await a.directory.createUnit(ROOT, { id: 'city', name: '市政府办公厅', sender: '10690002', grants: grants({ tiers: ['routine'] }) });
  await a.directory.createUnit(ROOT, { id: 'city-water', name: '市水务局', parent: 'city' });
  const first = 'first-secret-0123456789abcdef0123456789';
  const second = 'second-secret-0123456789abcdef012345678';
  await a.directory.setCallbackSecret(ROOT, 'city-water', { secret: first });
  await until('the secret on B', () => secretsOnB.currentSecret('city-water') === first, 10_000);
  tt.same(secretsOnB.validSecrets('city-water'), [first]);
  // Rotated on B: A signs with the new one and still accepts the old as previous.
  await b.directory.setCallbackSecret(ROOT, 'city-water', { secret: second });
  await until('the rotation on A', () => a.directory.getCallbackSecret('city-water')?.current === second, 10_000);
  tt.equal(a.directory.getCallbackSecret('city-water')?.previous, first, 'the old secret stays valid during the change');
  await a.directory.setCallbackSecret(ROOT, 'city-water', { dropPrevious: true });
  await until('the end of the rotation on B', () => secretsOnB.validSecrets('city-water').length === 1, 10_000);
  tt.same(secretsOnB.validSecrets('city-water'), [second]);
  await b.directory.setCallbackSecret(ROOT, 'city-water', { secret: null });
  await until('the removal on A', () => a.directory.getCallbackSecret('city-water') === undefined, 10_000);
  // Audited where the admin acted, without the secret.
  const onA = a.directory.queryAudit({ action: 'unit.callbackSecret', limit: 10 }).items;
  const onB = b.directory.queryAudit({ action: 'unit.callbackSecret', limit: 10 }).items;
  tt.same(onA.map((e) => (e.detail as { ops: string[] }).ops), [['endRotation'], ['set']], 'A: set, end of rotation (newest first)');
  tt.same(onB.map((e) => (e.detail as { ops: string[] }).ops), [['remove'], ['rotate']], 'B: rotate, remove');
  tt.match(onB[1], { targetType: 'unit', targetId: 'city-water', before: { set: true, previous: false }, after: { set: true, previous: true } });
  const all = JSON.stringify([...onA, ...onB, ...a.directory.queryAudit({ limit: 100 }).items, ...b.directory.queryAudit({ limit: 100 }).items]);
  tt.notMatch(all, /secret-0123/, 'no secret in any audit entry');
});
