/**
 * Two processes with the PDA channel on one data dir (an ingest and a
 * dispatch process of one host both open it): each keeps caches of cursors
 * and active devices, so a transaction that finds the other process wrote
 * last must drop them. Two PdaStore instances on one environment stand in
 * for the two processes: appends from both to one device get distinct,
 * consecutive sequence numbers, a device revoked by one is not routed to by
 * the other, and status rows never overwrite each other.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { pino } from 'pino';
import { PdaClient } from '../../src/pda/client.js';
import { startPdaServer } from '../../src/pda/server.js';
import { PDA_DBS, PdaStore, type StoredDevice } from '../../src/pda/store.js';
import type { PdaMessage } from '../../src/pda/types.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { pdaConfig } from '../support/pda.js';
import { until } from '../support/wait.js';

const HOUR = 3_600_000;

function msg(id: string, index: number, over: Partial<PdaMessage> = {}): PdaMessage {
  return { messageId: id, index, personId: 'officer-1', priority: 2, expiresAt: Date.now() + HOUR, classification: 'police', senderUnit: '市公安局', body: `通知 ${id}`, ...over };
}

const device = (state: StoredDevice['s']): StoredDevice => ({ p: 'officer-1', u: 'police', s: state, v: 1, k: new Uint8Array(32), kx: Date.now() + 365 * 24 * HOUR, kid: 'test', c: Date.now(), m: Date.now() });

t.test('two processes appending to one device: sequences stay consecutive and revocations are seen', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-pda-procs-'));
  const env = open({ path: dir, maxDbs: 32 });
  t.teardown(async () => {
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const ingest = new PdaStore(env, createMetrics({ defaultMetrics: false }));
  const dispatch = new PdaStore(env, createMetrics({ defaultMetrics: false }));
  await ingest.write('register', (tx) => ingest.putDevice(tx, 'pda-1', device('active')));

  const route = (s: PdaStore, m: PdaMessage) => s.write('append', (tx) => s.append(tx, m, s.activeDevicesIn(tx, 'officer-1'), 1000, 'no device'));
  await route(dispatch, msg('m1', 0));
  await route(ingest, msg('m2', 0));
  await route(dispatch, msg('m3', 0));
  await route(ingest, msg('m4', 0));
  const seqs = [1, 2, 3, 4].map((seq) => dispatch.entry('pda-1', seq)?.entry.m);
  t.same(seqs, ['m1', 'm2', 'm3', 'm4'], 'four appends from two processes: seq 1..4, none overwritten');
  t.equal(ingest.cursorOf('pda-1')?.n, 5, 'the next sequence is 5 whichever process asks');

  // Revoked through one process: the other routes nothing more to it.
  await ingest.write('revoke', (tx) => ingest.putDevice(tx, 'pda-1', device('revoked'), 'officer-1'));
  await route(dispatch, msg('m5', 0));
  t.equal(dispatch.entry('pda-1', 5), undefined, 'no copy for a device revoked by the other process');

  // Status rows of both processes are all there: one per transaction that had statuses (each append's
  // `queued`, m5's `undeliverable`), none written over by the other process's.
  const statusRows = [...env.openDB<unknown, number>({ name: 'pda.status', encoding: 'msgpack' }).getKeys({})].filter((k) => typeof k === 'number');
  t.equal(statusRows.length, 5, `five status rows (${statusRows.join(', ')})`);
});

t.test('a device connected to one process gets what the other process appends (within a tick)', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-pda-procs2-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = pdaConfig();
  const env = open({ path: join(dataDir, 'pda.lmdb'), maxDbs: PDA_DBS + 2, compression: false });
  t.teardown(() => env.close());
  const logger = pino({ level: 'silent' });
  // Two channels on one environment stand in for the ingest process (devices connect there) and the
  // dispatch process (police messages are appended there).
  const ingest = await startPdaServer({ dataDir, env, config, logger, tickMs: 100 });
  t.teardown(() => ingest.stop());
  const dispatch = await startPdaServer({ dataDir, env, config, logger, tickMs: 100 });
  t.teardown(() => dispatch.stop());

  const { key } = await ingest.channel.registry.register({ deviceId: 'pda-x', personId: 'officer-x', unit: 'police' });
  const got: string[] = [];
  const client = new PdaClient({ url: ingest.url, deviceId: 'pda-x', key, heartbeat: false, onMessage: (m) => got.push(m.messageId) });
  await client.connect();
  t.teardown(() => client.close());

  const r = await dispatch.channel.deliver([msg('X1', 0, { personId: 'officer-x' }), msg('X2', 0, { personId: 'officer-x' })]);
  t.equal(r.copies, 2, 'appended by the other process');
  await until('the connected device received both', () => got.length >= 2, 5_000, 20);
  t.same(got, ['X1', 'X2'], 'the connected device received both, in order, through the process it is connected to');
  await new Promise((res) => setTimeout(res, 300));
  t.same(got, ['X1', 'X2'], 'once each');
});
