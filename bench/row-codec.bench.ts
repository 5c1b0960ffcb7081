/**
 * The receipt store's row encodings: lmdb-js's msgpack records (every row
 * carries its record definitions; what every version before row-codec.ts
 * wrote) against the positional tuples of src/receipts/row-codec.ts, on the
 * rows read and rewritten per message. Both through the encoder objects a
 * real LMDB environment builds for its databases, in one process, one run.
 *
 *   node --import tsx bench/row-codec.bench.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import type { StoredMessage, StoredRecipient } from '../src/receipts/records.js';
import { CALLBACK_ROW, MESSAGE_ROW, openRowDatabase, RECIPIENT_ROW, type RowShape } from '../src/receipts/row-codec.js';
import type { CallbackState } from '../src/receipts/store.js';
import { envInt, table, writeSummary, type Row } from './lib/report.js';

const N = envInt('BENCH_N', 300_000);
const AT = 1_765_000_000_000;
const dir = mkdtempSync(join(tmpdir(), 'smsgw-rowbench-'));
const env = open({ path: dir });

interface Codec { encode(v: unknown): Uint8Array; decode(b: Uint8Array): unknown }
const encoderOf = (db: unknown): Codec => (db as { encoder: Codec }).encoder;

const recipient: StoredRecipient = {
  n: '8613800138000', s: 'delivered', a: AT, u: AT + 90,
  g: [1, 2, 3].map((i) => ({ s: 'delivered' as const, c: 'cmcc-1', o: `${1_000_000 + i}`, t: AT + 10, d: AT + 80 })),
};
const message: StoredMessage = { t: 'tenant-a', r: 'normal', c: 'sms', n: 'ucs2', s: 3, k: 1, a: AT, x: AT + 86_400_000, u: 'http://127.0.0.1:9999/cb' };
const callback: CallbackState = { state: 'waiting', attempts: 0, nextAt: AT, completedAt: AT };

function perOp(f: () => void): number {
  for (let i = 0; i < 20_000; i++) f();
  const start = process.hrtime.bigint();
  for (let i = 0; i < N; i++) f();
  return Number(process.hrtime.bigint() - start) / N / 1000;
}

const rows: Row[] = [];
const summary: Record<string, unknown> = {};
const cases: Array<[string, unknown, RowShape<never>]> = [
  ['3-part recipient row', recipient, RECIPIENT_ROW as RowShape<never>],
  ['message row', message, MESSAGE_ROW as RowShape<never>],
  ['callback row', callback, CALLBACK_ROW as RowShape<never>],
];
for (const [name, value, shape] of cases) {
  const records = encoderOf(env.openDB({ name: `records.${name}`, encoding: 'msgpack' }));
  const positional = encoderOf(openRowDatabase(env, `positional.${name}`, shape));
  const oldBytes = Buffer.from(records.encode(value));
  const newBytes = Buffer.from(positional.encode(value));
  const m = {
    encode: [perOp(() => positional.encode(value)), perOp(() => records.encode(value))],
    decode: [perOp(() => positional.decode(newBytes)), perOp(() => records.decode(oldBytes))],
    bytes: [newBytes.length, oldBytes.length],
  };
  summary[name] = m;
  rows.push({ metric: `${name}: encode`, value: m.encode[0] as number, unit: 'µs', baseline: m.encode[1], baselineName: 'msgpack records' });
  rows.push({ metric: `${name}: decode`, value: m.decode[0] as number, unit: 'µs', baseline: m.decode[1], baselineName: 'msgpack records' });
  rows.push({ metric: `${name}: bytes`, value: m.bytes[0] as number, unit: 'B', baseline: m.bytes[1], baselineName: 'msgpack records' });
}
await env.close();
rmSync(dir, { recursive: true, force: true });
process.stdout.write(`\n${table(`Row encodings: positional tuples vs msgpack records, N = ${N.toLocaleString('en-US')} per figure`, rows)}\n`);
const file = writeSummary('row-codec', summary);
process.stdout.write(`\nJSON summary: ${file}\n${JSON.stringify(summary)}\n`);
