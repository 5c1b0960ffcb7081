import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, envOverrides } from '../../src/config/load.js';
import { GatewayError } from '../../src/core/errors.js';
import { ConfigSchema } from '../../src/config/schema.js';
import type { TSchema } from '@sinclair/typebox';

const noEnv = {};

function refused(t: Test, fn: () => unknown, field: RegExp, what: string): void {
  try {
    fn();
    t.fail(`${what}: expected CONFIG_INVALID`);
  } catch (e) {
    t.ok(e instanceof GatewayError, `${what}: a GatewayError`);
    const err = e as GatewayError;
    t.equal(err.code, 'CONFIG_INVALID', `${what}: code`);
    t.ok(err.details?.some((d) => field.test(d.field)), `${what}: names the field (${err.message})`);
  }
}

t.test('defaults are valid, resolved and frozen', async (t) => {
  const c = loadConfig({ env: noEnv });
  t.equal(c.queue.kind, 'embedded');
  t.equal(c.tierList[0]?.name, 'emergency', 'highest priority first');
  t.equal(c.tierByName.get('routine')?.defaultValidityMs, 86_400_000);
  t.equal(c.idempotencyTtlMs, 86_400_000);
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.server), 'frozen');
  t.equal(c.auth.apiKeys[0]?.key, 'dev-key-change-me', 'documented development key');
});

t.test('SMSGW_* environment overrides by path and alias', async (t) => {
  const c = loadConfig({
    env: { SMSGW_PORT: '9099', SMSGW_SERVER__MAX_BODY_BYTES: '4096', SMSGW_LOG_LEVEL: 'warn', SMSGW_DATA_DIR: '/tmp/x', SMSGW_SIMULATOR__PASSWORD: '12345' },
  });
  t.equal(c.server.port, 9099);
  t.equal(c.server.maxBodyBytes, 4096);
  t.equal(c.log.level, 'warn');
  t.equal(c.dataDir, '/tmp/x');
  t.equal(c.simulator.password, '12345', 'a digit-only password stays a string');
});

/** Every setting the environment can reach (objects all the way down; not inside arrays or records), with its schema. */
function envLeaves(schema: TSchema, path: string[] = []): Array<{ path: string[]; schema: TSchema }> {
  const props = (schema as { properties?: Record<string, TSchema> }).properties;
  if (!props) return [{ path, schema }];
  return Object.entries(props).flatMap(([k, s]) => envLeaves(s, [...path, k]));
}
const envName = (path: readonly string[]): string => `SMSGW_${path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('__')}`;
const leafAt = (obj: unknown, path: readonly string[]): unknown => path.reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);

t.test('every numeric setting is a number from the environment, every string setting stays text (whatever its name)', async (t) => {
  // Once, settings whose name held "host" or "key" (connectionsPerHost) kept their text and the gateway refused to start.
  const leaves = envLeaves(ConfigSchema);
  let numbers = 0;
  let strings = 0;
  for (const { path, schema } of leaves) {
    const type = (schema as { type?: unknown }).type;
    const name = envName(path);
    const { overrides, unknown } = envOverrides({ [name]: '12345' });
    t.same(unknown, [], `${name} is known`);
    if (type === 'integer' || type === 'number') {
      numbers++;
      t.equal(leafAt(overrides, path), 12345, `${name}: a number`);
    } else if (type === 'string') {
      strings++;
      t.equal(leafAt(overrides, path), '12345', `${name}: text`);
    }
  }
  t.ok(numbers > 50 && strings > 10, `walked ${numbers} numeric and ${strings} string settings`);
  const c = loadConfig({ env: { SMSGW_CALLBACKS__CONNECTIONS_PER_HOST: '128', SMSGW_SERVER__HOST: '127.0.0.2' } });
  t.equal(c.callbacks.connectionsPerHost, 128);
  t.equal(c.server.host, '127.0.0.2');
});

t.test('SMSGW_NATS_URL selects the NATS queue', async (t) => {
  const c = loadConfig({ env: { SMSGW_NATS_URL: 'nats://a:4222, nats://b:4222' } });
  t.equal(c.queue.kind, 'nats');
  t.same(c.queue.nats.servers, ['nats://a:4222', 'nats://b:4222']);
});

t.test('unknown environment settings are refused, not ignored', async (t) => {
  t.same(envOverrides({ SMSGW_SERVER__PROT: '1' }).unknown, ['SMSGW_SERVER__PROT']);
  refused(t, () => loadConfig({ env: { SMSGW_SERVER__PROT: '1' } }), /SMSGW_SERVER__PROT/, 'typo in env');
});

t.test('bad values name the field and the expected form', async (t) => {
  refused(t, () => loadConfig({ env: { SMSGW_PORT: '70000' } }), /^\/server\/port$/, 'port out of range');
  refused(t, () => loadConfig({ env: noEnv, overrides: { server: { bogus: 1 } } }), /^\/server/, 'unknown key');
  refused(t, () => loadConfig({ env: noEnv, overrides: { defaultTier: 'nope' } }), /^\/defaultTier$/, 'unknown default tier');
  refused(t, () => loadConfig({ env: noEnv, overrides: { tiers: [{ name: 'x', priority: 1, defaultValidity: 'one hour' }], defaultTier: 'x' } }), /defaultValidity/, 'bad duration');
  refused(t, () => loadConfig({ env: noEnv, overrides: { auth: { apiKeys: [{ key: 'abcdefghij', tenant: 't', tiers: ['royal'] }] } } }), /apiKeys\/0\/tiers\/0/, 'unknown tier in key');
  refused(t, () => loadConfig({ env: { SMSGW_QUEUE: 'nats' } }), /queue\/nats\/servers/, 'nats without servers');
});

t.test('a config file is merged over the defaults', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ server: { port: 1234 } }));
  const c = loadConfig({ env: noEnv, file });
  t.equal(c.server.port, 1234);
  t.equal(c.server.maxBodyBytes, 2097152, 'other keys keep their defaults');
  writeFileSync(file, '{ not json');
  refused(t, () => loadConfig({ env: noEnv, file }), /.*/, 'broken file');
});

t.test('config/production.example.json is a valid configuration', async (t) => {
  const file = join(import.meta.dirname, '..', '..', 'config', 'production.example.json');
  const c = loadConfig({ env: { SMSGW_CONFIG: file } });
  t.equal(c.queue.kind, 'nats');
  t.equal(c.simulator.enabled, false);
  t.equal(c.office.mail.enabled, true);
  t.ok(c.office.mail.domains.length > 0, 'mail alerts name their sender domains');
});

t.test('receipt id formats: defaults, and a receipt base other than same needs idFormat', async (t) => {
  const account = { name: 'cm', host: '127.0.0.1', port: 2775, systemId: 'sys', password: 'pw', binds: 1, window: 10, tps: 0, responseTimeoutMs: 1000, enquireLinkMs: 30000, reconnectInitialMs: 100, reconnectMaxMs: 1000, throttleBackoffMs: 100, operators: ['*'] };
  const c = loadConfig({ env: noEnv, overrides: { smpp: { accounts: [account] as never } } });
  t.match(c.smpp.accounts[0], { idFormat: 'auto', receiptTextIdFormat: 'same', receiptTlvIdFormat: 'same' }, 'defaults filled');
  t.equal(c.simulator.firstMessageId, 1, 'the simulator numbers from 1');
  const ok = loadConfig({ env: noEnv, overrides: { smpp: { accounts: [{ ...account, idFormat: 'hex', receiptTextIdFormat: 'decimal' }] as never } } });
  t.equal((ok.smpp.accounts[0] as { receiptTextIdFormat?: string } | undefined)?.receiptTextIdFormat, 'decimal');
  refused(t, () => loadConfig({ env: noEnv, overrides: { smpp: { accounts: [{ ...account, receiptTextIdFormat: 'decimal' }] as never } } }), /receiptTextIdFormat/, 'text base without idFormat');
  refused(t, () => loadConfig({ env: noEnv, overrides: { smpp: { accounts: [{ ...account, idFormat: 'auto', receiptTlvIdFormat: 'hex' }] as never } } }), /receiptTlvIdFormat/, 'TLV base with idFormat auto');
  refused(t, () => loadConfig({ env: noEnv, overrides: { smpp: { accounts: [{ ...account, idFormat: 'octal' }] as never } } }), /smpp\/accounts\/0/, 'unknown idFormat');
  refused(t, () => loadConfig({ env: noEnv, overrides: { simulator: { idFormat: 'octal' } } }), /simulator\/idFormat/, 'unknown simulator idFormat');
});

t.test('safe defaults: the development key listens on loopback unless server.host is set, and start refuses it beside any SMSC account', async (t) => {
  const { checkDevKey, DEV_API_KEY } = await import('../../src/config/load.js');
  const { startGateway } = await import('../../src/app/gateway.js');
  const own = [{ key: 'a-key-of-our-own-0123', tenant: 'bureau', tiers: ['*'] }];
  const account = { name: 'cm', host: '10.0.0.9', port: 2775, systemId: 'sys', password: 'pw', binds: 1, window: 10, tps: 0, responseTimeoutMs: 1000, enquireLinkMs: 30000, reconnectInitialMs: 100, reconnectMaxMs: 1000, throttleBackoffMs: 100, operators: ['*'] };
  // Listen address: explicit wins; else loopback with the development key, all interfaces without it.
  t.equal(loadConfig({ env: noEnv }).server.host, '127.0.0.1', 'defaults (development key): loopback');
  t.equal(loadConfig({ env: { SMSGW_HOST: '0.0.0.0' } }).server.host, '0.0.0.0', 'SMSGW_HOST set: kept');
  t.equal(loadConfig({ env: noEnv, overrides: { server: { host: '::' } } }).server.host, '::', 'server.host set: kept');
  t.equal(loadConfig({ env: noEnv, overrides: { auth: { apiKeys: own } } }).server.host, '0.0.0.0', 'own keys: all interfaces');
  t.equal(loadConfig({ env: noEnv, overrides: { auth: { apiKeys: [...own, { key: DEV_API_KEY, tenant: 'dev', tiers: ['*'] }] } } }).server.host, '127.0.0.1', 'the development key among others: loopback');

  // The built-in simulator only (no account): accepted.
  checkDevKey(loadConfig({ env: noEnv }));
  checkDevKey(loadConfig({ env: noEnv, overrides: { simulator: { enabled: false } } }));
  // Any account (SMPP or CMPP, loopback or not): refused, naming the setting.
  for (const a of [account, { ...account, host: '127.0.0.1' }, { name: 'cm3', protocol: 'cmpp3', host: '10.0.0.9', port: 7890, spId: '901234', sharedSecret: 'pw', serviceId: 'MGOV', accessCode: '1065700', links: 1, window: 16, tps: 0, responseTimeoutMs: 5000, reconnectInitialMs: 20, reconnectMaxMs: 500, operators: ['*'] }]) {
    const c = loadConfig({ env: noEnv, overrides: { smpp: { accounts: [a] } } });
    refused(t, () => checkDevKey(c), /^\/auth\/apiKeys\/0\/key$/, `development key beside account ${a.name} at ${a.host}`);
    try {
      checkDevKey(c);
    } catch (e) {
      t.match((e as Error).message, /dev-key-change-me.*smpp\.accounts.*auth\.apiKeys/, 'the message names the key and the settings');
    }
    checkDevKey(loadConfig({ env: noEnv, overrides: { smpp: { accounts: [a] }, auth: { apiKeys: own } } }));
  }
  // Start itself refuses, before it opens anything.
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-devkey-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bad = loadConfig({ env: noEnv, overrides: { dataDir: join(dir, 'data'), log: { level: 'silent' }, smpp: { accounts: [account] } } });
  const pino = (await import('pino')).default;
  await t.rejects(startGateway(bad, { logger: pino({ level: 'silent' }) }), { code: 'CONFIG_INVALID', details: [{ field: '/auth/apiKeys/0/key' }] });
});

t.test('intake first: off by default; every tier yields but emergency, unless a tier says otherwise', async (t) => {
  const d = loadConfig({ env: {} });
  t.equal(d.dispatch.intakeFirstMs, 0);
  t.equal(loadConfig({ env: { SMSGW_DISPATCH__INTAKE_FIRST_MS: '5000' } }).dispatch.intakeFirstMs, 5000, 'set from the environment');
  t.same([...d.intakeYieldingTiers].sort(), d.tiers.map((x) => x.name).filter((n) => n !== 'emergency').sort());
  const tiers = [
    { name: 'emergency', priority: 100, defaultValidity: 'PT2H', yieldToIntake: true },
    { name: 'routine', priority: 40, defaultValidity: 'P1D', yieldToIntake: false },
    { name: 'bulk', priority: 20, defaultValidity: 'P2D' },
  ];
  const c = loadConfig({ env: {}, overrides: { tiers, dispatch: { intakeFirstMs: 2000 } } });
  t.equal(c.dispatch.intakeFirstMs, 2000);
  t.same([...c.intakeYieldingTiers].sort(), ['bulk', 'emergency'], 'the flags decide; bulk by default');
  t.throws(() => loadConfig({ env: {}, overrides: { dispatch: { intakeFirstMs: -1 } } }), 'a negative hold is refused');
  t.equal(d.dispatch.intakeFirstBacklog, 100_000, 'the backlog bound: 100,000 recipients by default');
  t.equal(loadConfig({ env: { SMSGW_DISPATCH__INTAKE_FIRST_BACKLOG: '5000' } }).dispatch.intakeFirstBacklog, 5000, 'set from the environment');
  t.throws(() => loadConfig({ env: {}, overrides: { dispatch: { intakeFirstBacklog: 0 } } }), 'a backlog bound of 0 is refused (0 would never hold: turn the gate off instead)');
});

t.test('storage: pages given back every second, and between times once 48 MiB more are mapped', async (t) => {
  const d = loadConfig({ env: {} });
  t.equal(d.storage.releasePagesMs, 1_000);
  t.equal(d.storage.releaseAboveMiB, 48);
  t.equal(loadConfig({ env: { SMSGW_STORAGE__RELEASE_ABOVE_MIB: '0' } }).storage.releaseAboveMiB, 0, 'set from the environment; 0: on the timer only');
  t.throws(() => loadConfig({ env: {}, overrides: { storage: { releaseAboveMiB: -1 } } }), 'a negative budget is refused');
});
