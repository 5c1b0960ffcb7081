/**
 * Gateway processes on several hosts (each its own data dir, so its own
 * LMDB receipt store), sharing one NATS: receipt replication
 * (docs/DEPLOY.md, "Several hosts") makes every host's store complete.
 *
 * 1. Ingest on host A, dispatchers on hosts B and C: every recipient is
 *    submitted once, and A's status API shows every final state although
 *    all submits and receipts happened on B and C.
 * 2. kill -9 of host B's dispatcher mid-batch: its jobs are redelivered to
 *    host C's dispatcher, which first applies every change published so far
 *    (B's submits) and skips what B had recorded. Sent twice: at most the
 *    segments B had on the wire and not recorded (its maxInflightSegments)
 *    plus the submits B had recorded but its relay had not published yet
 *    when it died (counted from B's outbox after the kill). Receipts B had
 *    recorded (and answered, so the SMSC will not send them again) but not
 *    published reach A only when B is back: until then A has every final
 *    state but those. B restarted publishes that rest, and A ends complete.
 */
import t from 'tap';
import { join } from 'node:path';
import { open, type Database } from 'lmdb';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { setTimeout as sleep } from 'node:timers/promises';
import { PdaClient } from '../../src/pda/client.js';
import type { OutboxEntry, OutboxKey } from '../../src/replication/change-log.js';
import { requireNatsServer } from '../support/nats-server.js';
import { api, waitComplete } from '../support/gateway-process.js';
import type { MessageStatus, SegmentView } from '../support/api-types.js';
import { coverage, numberAt, resends, startKillingSimulator, startNatsDeployment, startSimulator, until } from '../support/nats-deployment.js';

/**
 * What host B had recorded and its relay had not published when it died, read from B's outbox (B
 * being dead): the submits, and the receipts whose submit was published. A receipt of a submit that
 * was not published either is not waited for: host C sends that segment again and records its own.
 */
async function unpublishedChanges(dataDir: string): Promise<{ submits: number; receiptsOnlyOnB: number }> {
  return readOutbox(dataDir, (outbox) => {
    const submitted = new Set<string>();
    const receipted: string[] = [];
    for (const { value } of outbox.getRange({})) {
      for (const op of value.ops) {
        if (op.k === 's') for (const r of op.results) if (r.kind === 'submitted') submitted.add(r.opId);
        if (op.k === 'd') receipted.push(op.r.messageId);
      }
    }
    return { submits: submitted.size, receiptsOnlyOnB: receipted.filter((id) => !submitted.has(id)).length };
  });
}

/** A host's replication outbox, read-only (LMDB allows readers beside a running writer, or after a dead one). */
async function readOutbox<T>(dataDir: string, read: (outbox: Database<OutboxEntry, OutboxKey>) => T): Promise<T> {
  const env = open({ path: join(dataDir, 'gateway.lmdb'), maxDbs: 128, compression: false, readOnly: true });
  try {
    return read(env.openDB<OutboxEntry, OutboxKey>({ name: 'receipts.outbox', encoding: 'msgpack' }));
  } finally {
    await env.close();
  }
}

/** Recipients shown delivered on a host, over all the messages. */
async function deliveredOn(url: string, ids: readonly string[]): Promise<number> {
  let n = 0;
  for (const id of ids) n += (await api<{ summary?: { delivered?: number } }>(url, 'GET', `/v1/messages/${id}?limit=1`)).json.summary?.delivered ?? 0;
  return n;
}

if (requireNatsServer(t)) {
  t.test('three hosts: ingest on A, dispatch on B and C; A sees every final state', async (t) => {
    const deployment = await startNatsDeployment(t, { overrides: { queue: { batchSize: 200 } } });
    const sim = await startSimulator(t);
    const ingest = await deployment.startIngest({ host: 'host-a' });
    await deployment.startDispatcher(sim, { name: 'dispatch-b', host: 'host-b' });
    await deployment.startDispatcher(sim, { name: 'dispatch-c', host: 'host-c' });

    const MESSAGES = 6;
    const PER = 300;
    const ids: string[] = [];
    for (let m = 0; m < MESSAGES; m++) {
      const to = Array.from({ length: PER }, (_, j) => numberAt(m * PER + j));
      const r = await api<{ id: string }>(ingest.url, 'POST', '/v1/messages', { to, text: `Flood warning ${m}: move vehicles off the riverside road.` });
      t.equal(r.status, 202, `message ${m} accepted on A`);
      ids.push(r.json.id);
    }
    for (const id of ids) {
      const s = await waitComplete(ingest.url, id, 60_000, 200);
      t.equal(s.summary.delivered, PER, `A: every recipient of ${id} delivered (submitted and receipted on B and C)`);
    }
    const cov = coverage(sim, Array.from({ length: MESSAGES * PER }, (_, i) => numberAt(i)));
    t.same(cov, { missing: 0, twice: 0, total: MESSAGES * PER }, 'every recipient submitted exactly once across the two dispatch hosts');
    const page = await api<{ items: Array<{ segments: SegmentView[] }> }>(ingest.url, 'GET', `/v1/messages/${ids[0]}?limit=2`);
    const seg = page.json.items[0]!.segments[0]!;
    t.equal(seg.state, 'delivered', 'A lists the segment\'s state recorded on another host');
    t.ok(typeof seg.operatorMessageId === 'string' && seg.operatorMessageId.length > 0, 'with its operator id');
    t.ok(typeof seg.submittedAt === 'string', 'and its submit time');

    // Status events: each final state published once, by A (the messages' host), not again by B or C.
    const nc = await connect({ servers: deployment.urls });
    t.teardown(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const events = async (): Promise<Map<string, number>> => {
      const info = await jsm.streams.info('SMSGW_WORK_STATUS');
      const seen = new Map<string, number>();
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && seq < info.state.first_seq + 10_000; seq++) {
        const m = await jsm.streams.getMessage('SMSGW_WORK_STATUS', { seq });
        for (const e of m?.json<{ events: Array<{ messageId: string; index: number }> }>().events ?? []) {
          const k = `${e.messageId}/${e.index}`;
          seen.set(k, (seen.get(k) ?? 0) + 1);
        }
      }
      return seen;
    };
    await until('every final state published as an event', async () => (await events()).size === MESSAGES * PER, 20_000, 250);
    const seen = await events();
    t.equal([...seen.values()].filter((n) => n > 1).length, 0, 'no final state published twice (three hosts saw each)');
  });

  t.test('directory on host A, group expanded on hosts B and C: units, keys, people and groups are replicated', async (t) => {
    const ADMIN = 'hosts-admin-key-0123456789';
    const deployment = await startNatsDeployment(t, { overrides: { admin: { keys: [{ key: ADMIN, name: 'root-admin' }] }, directory: { expansionChunk: 100 } } });
    const sim = await startSimulator(t);
    const ingest = await deployment.startIngest({ host: 'host-a' });
    await deployment.startDispatcher(sim, { name: 'dispatch-b', host: 'host-b' });
    await deployment.startDispatcher(sim, { name: 'dispatch-c', host: 'host-c' });
    const admin = async <T = unknown>(method: string, path: string, body: unknown): Promise<T> => {
      const r = await api<T>(ingest.url, method, path, body, { authorization: `Bearer ${ADMIN}` });
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
      return r.json;
    };
    const ALL = { tiers: ['*'], groups: ['*'], direct: true, police: false, dailyQuota: null, perMinuteQuota: null };
    await admin('POST', '/v1/admin/units', { id: 'flood', name: '市防汛办', sender: '10690003', signature: '【市防汛办】', grants: ALL });
    const key = (await admin<{ key: string }>('POST', '/v1/admin/units/flood/keys', { label: 'hosts' })).key;
    const PEOPLE = 400;
    const csv = ['id,name,mobile,unit', ...Array.from({ length: PEOPLE }, (_, i) => `f${i},队员${i},${numberAt(50_000 + i)},flood`)].join('\n');
    const imported = await fetch(`${ingest.url}/v1/admin/people/import`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'text/csv' }, body: csv });
    t.equal(imported.status, 200, 'people imported on A');
    await admin('POST', '/v1/admin/groups', { id: 'rescue', name: '抢险队', unit: 'flood', members: Array.from({ length: PEOPLE }, (_, i) => `f${i}`) });
    await admin('POST', '/v1/admin/blocks', { scope: 'flood', number: numberAt(50_007), reason: 'TD' });

    const r = await api<{ id: string }>(ingest.url, 'POST', '/v1/messages', { group: 'rescue', text: '今晚有暴雨，抢险队员请于20:00前到岗。' }, { authorization: `Bearer ${key}` });
    t.equal(r.status, 202, 'a group send with a key made on A');
    let done!: MessageStatus;
    await until('the group send complete on A', async () => {
      done = (await api<MessageStatus>(ingest.url, 'GET', `/v1/messages/${r.json.id}?limit=1`, undefined, { authorization: `Bearer ${key}` })).json;
      return done.status === 'complete';
    }, 60_000, 200);
    t.equal(done.summary.delivered, PEOPLE - 1, 'every member but the blocked one delivered: the group was expanded on B or C from the replicated directory');
    t.equal(done.summary.rejected, 1, 'the block list made on A was applied on the dispatch host');
    const cov = coverage(sim, Array.from({ length: PEOPLE }, (_, i) => numberAt(50_000 + i)).filter((n) => n !== numberAt(50_007)));
    t.same(cov, { missing: 0, twice: 0, total: PEOPLE - 1 }, 'each member submitted once');
    t.equal(sim.stats().submitsByDestination.get(`86${numberAt(50_007)}`) ?? 0, 0, 'the blocked number never reached the SMSC');
  });

  t.test('PDA channel on host P only: host B\'s dispatcher hands police recipients to P through the queue', async (t) => {
    const ADMIN = 'hosts-admin-key-0123456789';
    const PDA_ADMIN = 'hosts-pda-admin-0123456789';
    const pdaConfig = { enabled: true, keySecret: 'h'.repeat(40), adminKey: PDA_ADMIN };
    const deployment = await startNatsDeployment(t, {
      overrides: { admin: { keys: [{ key: ADMIN, name: 'root-admin' }] }, queue: { nats: { replication: { pdaHandoff: true } } } },
    });
    const sim = await startSimulator(t);
    const ingest = await deployment.startIngest({ host: 'host-a' });
    // Host B dispatches first and alone: every job is its, and it has no PDA channel.
    await deployment.startDispatcher(sim, { name: 'dispatch-b', host: 'host-b' });
    // Host P: devices connect to its ingest process (the PDA WebSocket); its dispatcher starts later.
    const pIngest = await deployment.startIngest({ name: 'ingest-p', host: 'host-p', overrides: { pda: pdaConfig } });
    const admin = async <T = unknown>(url: string, key: string, path: string, body: unknown): Promise<T> => {
      const r = await api<T>(url, 'POST', path, body, { authorization: `Bearer ${key}` });
      if (r.status >= 300) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.json)}`);
      return r.json;
    };
    await admin(ingest.url, ADMIN, '/v1/admin/units', {
      id: 'psb', name: '市公安局', sender: '10690110', signature: '【市公安局】',
      grants: { tiers: ['*'], groups: ['*'], direct: true, police: true, dailyQuota: null, perMinuteQuota: null },
    });
    const key = (await admin<{ key: string }>(ingest.url, ADMIN, '/v1/admin/units/psb/keys', { label: 'command' })).key;
    const officers = ['cop-1', 'cop-2', 'cop-3'];
    for (const [i, id] of officers.entries()) await admin(ingest.url, ADMIN, '/v1/admin/people', { id, name: `警员${i}`, mobile: numberAt(70_000 + i), unit: 'psb', channel: 'pda' });
    await admin(ingest.url, ADMIN, '/v1/admin/groups', { id: 'night-shift', name: '夜班', unit: 'psb', members: officers });

    const got = new Map<string, string[]>();
    const clients: PdaClient[] = [];
    t.teardown(() => Promise.all(clients.map((c) => c.close())));
    for (const id of officers) {
      const device = await admin<{ key: string }>(pIngest.url, PDA_ADMIN, '/v1/admin/pda/devices', { deviceId: `pda-${id}`, personId: id, unit: '市公安局' });
      const bodies: string[] = [];
      got.set(id, bodies);
      const c = new PdaClient({ url: `${pIngest.url.replace('http', 'ws')}/v1/pda`, deviceId: `pda-${id}`, key: device.key, onMessage: (m) => bodies.push(m.body) });
      await c.connect();
      clients.push(c);
    }
    // The directory made on A has reached host B (its dispatcher expands the group).
    const ids: string[] = [];
    for (const text of ['今晚22:00人民广场集合', '集合地点改为东门']) {
      const r = await api<{ id: string }>(ingest.url, 'POST', '/v1/messages', { group: 'night-shift', text, classification: 'police' }, { authorization: `Bearer ${key}` });
      t.equal(r.status, 202, JSON.stringify(r.json));
      ids.push(r.json.id);
    }
    await sleep(1_500);
    t.same([...got.values()].map((b) => b.length), [0, 0, 0], 'nothing reaches a PDA while no process with the channel dispatches');
    // Host B took the jobs and handed the officers over: they wait on the PDA hand-off tier, not as the original jobs.
    const nc = await connect({ servers: deployment.urls });
    t.teardown(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await until('hand-off jobs stored', async () => (await jsm.consumers.info('SMSGW_WORK', 'work-_pda')).num_pending >= 1, 10_000);
    const routine = await jsm.consumers.info('SMSGW_WORK', 'work-routine');
    t.equal(routine.num_pending + routine.num_ack_pending, 0, 'the original jobs were all taken and acknowledged by host B');

    await deployment.startDispatcher(sim, { name: 'dispatch-p', host: 'host-p', overrides: { pda: pdaConfig } });
    await until('every officer got both', () => [...got.values()].every((b) => b.length >= 2), 30_000);
    for (const [id, bodies] of got) t.same(bodies.map((b) => b.replace(/^【市公安局】/, '').replace(/【市公安局】$/, '')).sort(), ['今晚22:00人民广场集合', '集合地点改为东门'].sort(), `${id}: each message once, through host B's hand-off to host P`);
    for (const id of ids) {
      let done!: MessageStatus;
      await until(`message ${id} complete on A`, async () => {
        done = (await api<MessageStatus>(ingest.url, 'GET', `/v1/messages/${id}?limit=1`, undefined, { authorization: `Bearer ${key}` })).json;
        return done.status === 'complete';
      }, 30_000, 200);
      t.equal(done.summary.delivered, 3, 'delivered-to-device for every officer, seen on host A');
    }
    t.equal(sim.stats().submits, 0, 'nothing went by SMS');
  });

  t.test('kill -9 of host B\'s dispatcher mid-batch: host C finishes its jobs, skipping what B recorded', async (t) => {
    const MESSAGES = 8;
    const PER = 1_000;
    const BATCH = 500;
    const KILL_AT = 300;
    const FIRST_INFLIGHT = 16;
    const deployment = await startNatsDeployment(t, { overrides: { queue: { batchSize: BATCH, ackWaitMs: 2_000 }, dispatch: { fetchBatch: 4 } } });

    const killing = await startKillingSimulator(t, KILL_AT);
    const sim = killing.sim;
    const ingest = await deployment.startIngest({ host: 'host-a' });
    const ids: string[] = [];
    for (let m = 0; m < MESSAGES; m++) {
      const to = Array.from({ length: PER }, (_, j) => numberAt(m * PER + j));
      const r = await api<{ id: string }>(ingest.url, 'POST', '/v1/messages', { to, text: `Road closure ${m}: use the east bridge.` });
      t.equal(r.status, 202);
      ids.push(r.json.id);
    }

    const first = await deployment.startDispatcher(sim, {
      name: 'dispatch-b',
      host: 'host-b',
      account: { binds: 1, window: 10 },
      overrides: { dispatch: { maxInflightSegments: FIRST_INFLIGHT } },
    });
    killing.victim = first;
    await until('host B\'s dispatcher killed mid-batch', () => killing.killed(), 60_000);
    await first.kill('SIGKILL');
    t.equal(first.lastExit()?.signal, 'SIGKILL');
    await until('host B\'s sessions closed', () => sim.stats().sessions === 0, 10_000);
    const byFirst = new Map(sim.stats().submitsByDestination);
    const { submits: unpublished, receiptsOnlyOnB } = await unpublishedChanges(deployment.hostDataDir('host-b'));
    t.comment(`host B submitted ${byFirst.size}; ${unpublished} recorded submits and ${receiptsOnlyOnB} receipts of published submits were still in its outbox when it died`);

    await deployment.startDispatcher(sim, { name: 'dispatch-c', host: 'host-c' });
    // Host C has taken and acknowledged every job: what the simulator counts is final.
    const nc = await connect({ servers: deployment.urls });
    t.teardown(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await until('host C has done every job', async () => {
      for await (const c of jsm.consumers.list('SMSGW_WORK')) if (c.num_pending + c.num_ack_pending > 0) return false;
      return true;
    }, 90_000, 250);
    // Without B, A can show all but the receipts only B holds (more when one of those also reached C:
    // B recorded it and died before answering, and the SMSC sent it again).
    const TOTAL = MESSAGES * PER;
    const expected = TOTAL - receiptsOnlyOnB;
    await until(`A shows ${expected} recipients delivered`, async () => (await deliveredOn(ingest.url, ids)) >= expected, 30_000, 250);
    const delivered = await deliveredOn(ingest.url, ids);
    t.ok(delivered >= expected && delivered <= TOTAL, `A: ${delivered} of ${TOTAL} delivered without host B, all but (at most) the ${receiptsOnlyOnB} whose receipt only B holds`);
    const { missing, twice, resentOfFirst } = resends(sim, MESSAGES * PER, byFirst);
    t.equal(missing, 0, 'every recipient submitted');
    t.equal(twice, resentOfFirst, 'only recipients host B had submitted were sent again');
    t.ok(twice <= FIRST_INFLIGHT + unpublished,
      `sent twice: ${twice} ≤ ${FIRST_INFLIGHT} in flight on B + ${unpublished} recorded on B but not yet published`);
    t.ok(byFirst.size - resentOfFirst >= KILL_AT - FIRST_INFLIGHT - unpublished,
      `${byFirst.size - resentOfFirst} of host B's ${byFirst.size} submits were seen on host C (replicated) and skipped`);

    // Host B comes back: its outbox is published; A stays complete and consistent.
    await first.restart();
    await until('host B\'s outbox published', async () => (await readOutbox(deployment.hostDataDir('host-b'), (outbox) => outbox.getCount())) === 0, 20_000);
    for (const id of ids) {
      const s = await waitComplete(ingest.url, id, 20_000, 250);
      t.equal(s.summary.delivered, PER, `A: message ${id} delivered to every recipient`);
    }
  });
}
