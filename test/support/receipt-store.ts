/**
 * A receipt store for one test on a fresh environment (test/support/temp-env.ts),
 * closed at teardown before its environment, with quiet defaults: its own
 * metrics registry, a silent logger, a 60 s early-receipt TTL and a 5 s
 * receipt grace. `storeOn` opens another store on the same environment (a
 * second process of the host, as far as the store can tell).
 */
import type { RootDatabase } from 'lmdb';
import { pino } from 'pino';
import type { Test } from 'tap';
import { ReceiptStore, type ReceiptStoreOptions } from '../../src/receipts/store.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { tempEnvAt, type TempEnv } from './temp-env.js';

export type StoreOptions = Partial<ReceiptStoreOptions>;

export function storeOn(temp: TempEnv, options: StoreOptions = {}): ReceiptStore {
  const store = ReceiptStore.open({
    env: temp.env, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }), earlyReceiptTtlMs: 60_000, receiptGraceMs: 5_000, ...options,
  });
  temp.closeFirst(() => store.close());
  return store;
}

export function tempReceiptStore(t: Pick<Test, 'teardown'>, options: StoreOptions = {}): { env: RootDatabase; store: ReceiptStore; temp: TempEnv } {
  const temp = tempEnvAt(t);
  return { env: temp.env, store: storeOn(temp, options), temp };
}
