/**
 * Where a tenant's callback signing secret comes from (src/outbound/secrets.ts):
 * the directory's row, then a row an earlier version kept per host
 * (`callbacks.secrets`, read only, read once per tenant), then the config.
 */
import t from 'tap';
import { CallbackSecrets, type StoredSecret } from '../../src/outbound/secrets.js';
import { tempEnv } from '../support/temp-env.js';

t.test('directory row, then the earlier version\'s row, then the config; the earlier rows read once per tenant', async (t) => {
  const env = tempEnv(t);
  // As an earlier version left them.
  const legacy = env.openDB<StoredSecret, string>({ name: 'callbacks.secrets', encoding: 'msgpack' });
  await legacy.put('old', { current: 'legacy-old', previous: 'legacy-older', updatedAt: 1 });
  await legacy.put('both', { current: 'legacy-both', updatedAt: 1 });
  const units = new Map<string, StoredSecret>([['both', { current: 'dir-both', updatedAt: 2 }]]);
  const secrets = new CallbackSecrets(env, { old: { current: 'config-old' }, cfg: { current: 'config-cfg', previous: 'config-prev' } });
  secrets.useDirectory((tenant) => units.get(tenant));
  t.equal(secrets.currentSecret('old'), 'legacy-old', 'the earlier version\'s row wins over the config');
  t.same(secrets.validSecrets('old'), ['legacy-old', 'legacy-older']);
  t.equal(secrets.currentSecret('both'), 'dir-both', 'the directory wins');
  t.equal(secrets.currentSecret('cfg'), 'config-cfg');
  t.same(secrets.validSecrets('cfg'), ['config-cfg', 'config-prev']);
  t.equal(secrets.currentSecret('none'), undefined);
  t.same(secrets.view('old'), { set: true, previous: true, source: 'admin', updatedAt: 1 });
  t.same(secrets.view('none'), { set: false, previous: false });
  // A directory row set later wins at once (the directory is read every time).
  units.set('old', { current: 'dir-old', updatedAt: 3 });
  t.equal(secrets.currentSecret('old'), 'dir-old');
  units.delete('old');
  t.equal(secrets.currentSecret('old'), 'legacy-old', 'removed from the directory: the earlier row again');
  // Many tenants: the kept rows stay bounded and still answer right.
  t.ok(Array.from({ length: 10_000 }, (_, i) => `t${i}`).every((tenant) => secrets.currentSecret(tenant) === undefined), 'none of 10,000 others has one');
  t.equal(secrets.currentSecret('old'), 'legacy-old');
});
