/**
 * Configuration: `config/default.json`, then the file named by SMSGW_CONFIG
 * (deep-merged over it), then SMSGW_* environment variables, then overrides
 * passed in code (tests, CLI flags). Validated once against the schema with
 * unknown keys rejected, checked for conflicts, then frozen.
 *
 * Environment variables map onto the schema by path, `__` between levels and
 * `_` inside a camelCase name:  SMSGW_SERVER__MAX_BODY_BYTES=4194304.
 * Values are parsed as JSON when they parse (numbers, booleans, arrays), else
 * taken as strings. Short aliases exist for the common ones (see ENV_ALIASES).
 */
import { jsonBounds } from '../http/body.js';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { ConfigSchema, type Config, isCmppAccount } from './schema.js';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { parseIsoDuration } from '../core/duration.js';
import type { Tier } from '../core/message.js';
import { checkRules } from '../core/route.js';
import { normalizeNumber } from '../core/phone.js';
import { TargetPolicy } from '../core/ip-range.js';

export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_CONFIG_PATH = resolve(PACKAGE_ROOT, 'config', 'default.json');

/** Short names for the settings people change most. */
export const ENV_ALIASES: Readonly<Record<string, string>> = {
  SMSGW_PORT: 'server.port',
  SMSGW_HOST: 'server.host',
  SMSGW_DATA_DIR: 'dataDir',
  SMSGW_LOG_LEVEL: 'log.level',
  SMSGW_QUEUE: 'queue.kind',
};

/**
 * The well-known development API key of config/default.json. Accepted only
 * while the built-in simulator is the only SMSC (`checkDevKey`, at start);
 * while it is configured the default listen address is loopback.
 */
export const DEV_API_KEY = 'dev-key-change-me';

/** The shortest audit retention accepted: 180 days, the legal minimum for logs (retention.audit). */
export const MIN_RETENTION_MS = 180 * 86_400_000;

export interface ResolvedConfig extends Config {
  /** server.host resolved: the configured one, else 127.0.0.1 with the development key, else 0.0.0.0. */
  readonly server: Config['server'] & { readonly host: string };
  /** Tiers with parsed validity, highest priority first. */
  readonly tierList: readonly Tier[];
  readonly tierByName: ReadonlyMap<string, Tier>;
  readonly idempotencyTtlMs: number;
  readonly maxValidityMs: number;
  /** retention.messages and retention.audit in ms. */
  readonly retentionMs: { readonly messages: number; readonly audit: number };
  /** Tiers whose messages reach numbers on the block list (tiers[].ignoreOptOut). */
  readonly optOutExemptTiers: ReadonlySet<string>;
  /** Tiers whose new jobs wait while accepted work waits for its commit (tiers[].yieldToIntake). */
  readonly intakeYieldingTiers: ReadonlySet<string>;
}

/** Does the tier wait for the intake (dispatch.intakeFirstMs)? Absent flag: every tier but one named `emergency`. */
export function yieldsToIntake(t: { name: string; yieldToIntake?: boolean | undefined }): boolean {
  return t.yieldToIntake ?? t.name !== 'emergency';
}

/** Does the tier ignore the block list? Absent flag: only a tier named `emergency` does. */
export function ignoresOptOut(t: { name: string; ignoreOptOut?: boolean | undefined }): boolean {
  return t.ignoreOptOut ?? t.name === 'emergency';
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Objects merge key by key; arrays and scalars replace. */
export function deepMerge(base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isObject(b) && isObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

function readJsonFile(path: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new GatewayError('CONFIG_INVALID', `cannot read config file ${path}`, { cause, details: [{ field: path, message: (cause as Error).message }] });
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (!isObject(v)) throw new TypeError('top level must be an object');
    return v;
  } catch (cause) {
    const message = `not a JSON object: ${(cause as Error).message}`;
    throw new GatewayError('CONFIG_INVALID', `config file ${path} is ${message}`, { cause, details: [{ field: path, message }] });
  }
}

function parseEnvValue(raw: string): Json {
  try {
    return JSON.parse(raw) as Json;
  } catch {
    return raw;
  }
}

/** Resolve `SERVER__MAX_BODY_BYTES` to `['server','maxBodyBytes']` (and the setting's schema) by walking the schema. */
function envPath(segments: readonly string[]): { path: string[]; schema: TSchema } | undefined {
  let schema: TSchema = ConfigSchema;
  const path: string[] = [];
  for (const seg of segments) {
    const props: Record<string, TSchema> | undefined = (schema as { properties?: Record<string, TSchema> }).properties;
    if (!props) return undefined;
    const want = seg.replace(/_/g, '').toLowerCase();
    const key: string | undefined = Object.keys(props).find((k) => k.toLowerCase() === want);
    if (key === undefined) return undefined;
    path.push(key);
    schema = props[key] as TSchema;
  }
  return { path, schema };
}

/** Whether a setting takes a string only (its raw text is kept: a password or sender of digits stays a string). */
function wantsString(schema: TSchema): boolean {
  const s = schema as { type?: unknown; anyOf?: readonly TSchema[]; const?: unknown };
  if (s.type === 'string') return true;
  if (typeof s.const === 'string') return true;
  return Array.isArray(s.anyOf) && s.anyOf.length > 0 && s.anyOf.every((x: TSchema) => wantsString(x));
}

function setPath(obj: JsonObject, path: readonly string[], value: Json): JsonObject {
  const [head, ...rest] = path;
  if (head === undefined) return obj;
  const cur = obj[head];
  return { ...obj, [head]: rest.length === 0 ? value : setPath(isObject(cur) ? cur : {}, rest, value) };
}

export function envOverrides(env: NodeJS.ProcessEnv): { overrides: JsonObject; unknown: string[] } {
  let overrides: JsonObject = {};
  const unknown: string[] = [];
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('SMSGW_') || raw === undefined || name === 'SMSGW_CONFIG') continue;
    if (name === 'SMSGW_NATS_URL') {
      const servers = raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
      overrides = setPath(overrides, ['queue', 'nats', 'servers'], servers);
      overrides = setPath(overrides, ['queue', 'kind'], 'nats');
      continue;
    }
    const alias = ENV_ALIASES[name];
    const found = envPath(alias ? alias.split('.') : name.slice('SMSGW_'.length).split('__'));
    if (!found) {
      unknown.push(name);
      continue;
    }
    // The schema decides: a string setting keeps the raw text (a password or sender of digits);
    // any other is read as JSON (numbers, booleans, arrays), else kept as text for the schema to refuse.
    overrides = setPath(overrides, found.path, wantsString(found.schema) ? raw : parseEnvValue(raw));
  }
  return { overrides, unknown };
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Path to a JSON file merged over the defaults (else SMSGW_CONFIG). */
  file?: string;
  /** Merged last (tests, CLI flags). */
  overrides?: Record<string, unknown>;
}

export function loadConfig(options: LoadOptions = {}): ResolvedConfig {
  const env = options.env ?? process.env;
  let raw = readJsonFile(DEFAULT_CONFIG_PATH);
  const file = options.file ?? env['SMSGW_CONFIG'];
  if (file) raw = deepMerge(raw, readJsonFile(resolve(file)));
  const { overrides, unknown } = envOverrides(env);
  if (unknown.length > 0) {
    throw new GatewayError('CONFIG_INVALID', `unknown environment setting ${unknown.join(', ')} (expected SMSGW_<SECTION>__<KEY>, e.g. SMSGW_SERVER__PORT)`, {
      details: unknown.map((u) => ({ field: u, message: 'does not name a config setting' })),
    });
  }
  raw = deepMerge(raw, overrides);
  if (options.overrides) raw = deepMerge(raw, options.overrides as JsonObject);
  return validateConfig(raw);
}

export function validateConfig(raw: unknown): ResolvedConfig {
  // Fill schema defaults (e.g. smpp account tls/systemType) before checking.
  const withDefaults = Value.Default(ConfigSchema, structuredClone(raw));
  const problems: FieldProblem[] = [...Value.Errors(ConfigSchema, withDefaults)].slice(0, 20).map((e) => ({
    field: e.path || '/',
    message: describe(e.message, e.schema),
  }));
  if (problems.length > 0) {
    throw new GatewayError('CONFIG_INVALID', `invalid configuration: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`, { details: problems });
  }
  const config = withDefaults as Config;
  const conflicts: FieldProblem[] = [];
  const tierList: Tier[] = [];
  const seen = new Set<string>();
  config.tiers.forEach((t, i) => {
    if (seen.has(t.name)) conflicts.push({ field: `/tiers/${i}/name`, message: `duplicate tier ${t.name}` });
    seen.add(t.name);
    tierList.push({ name: t.name, priority: t.priority, defaultValidityMs: parseIsoDuration(t.defaultValidity) ?? 0 });
  });
  tierList.sort((a, b) => b.priority - a.priority);
  if (!seen.has(config.defaultTier)) conflicts.push({ field: '/defaultTier', message: `must name one of the tiers (${[...seen].join(', ')})` });
  const keys = new Set<string>();
  config.auth.apiKeys.forEach((k, i) => {
    if (keys.has(k.key)) conflicts.push({ field: `/auth/apiKeys/${i}/key`, message: 'duplicate API key' });
    keys.add(k.key);
    k.tiers.forEach((t, j) => {
      if (t !== '*' && !seen.has(t)) conflicts.push({ field: `/auth/apiKeys/${i}/tiers/${j}`, message: `unknown tier ${t}` });
    });
  });
  const names = new Set<string>();
  config.smpp.accounts.forEach((a, i) => {
    if (names.has(a.name)) conflicts.push({ field: `/smpp/accounts/${i}/name`, message: 'duplicate account name' });
    names.add(a.name);
    if (a.reconnectMaxMs < a.reconnectInitialMs) conflicts.push({ field: `/smpp/accounts/${i}/reconnectMaxMs`, message: 'must be ≥ reconnectInitialMs' });
    a.allowList?.forEach((raw, j) => {
      const n = normalizeNumber(raw, { allowInternational: true });
      if (!n.ok) conflicts.push({ field: `/smpp/accounts/${i}/allowList/${j}`, message: n.reason });
      else (a.allowList as string[])[j] = n.number; // stored normalised: routing compares digits with country code
    });
    // Converting a receipt id needs both bases: with `auto` the direction is not known before the first receipt.
    // (CMPP accounts have one Msg_Id form: nothing to check.)
    if (isCmppAccount(a)) return;
    for (const f of ['receiptTextIdFormat', 'receiptTlvIdFormat'] as const) {
      if ((a[f] ?? 'same') !== 'same' && (a.idFormat ?? 'auto') === 'auto') conflicts.push({ field: `/smpp/accounts/${i}/${f}`, message: 'a receipt id base other than same needs idFormat decimal or hex' });
    }
  });
  const exempt = new Set(config.tiers.filter(ignoresOptOut).map((t) => t.name));
  config.directory.frequencyCap.exemptTiers.forEach((t, i) => {
    if (!seen.has(t)) conflicts.push({ field: `/directory/frequencyCap/exemptTiers/${i}`, message: `unknown tier ${t}` });
  });
  if (config.office.mo.optOutReplyText !== '') {
    if (!seen.has(config.office.mo.optOutReplyTier)) conflicts.push({ field: '/office/mo/optOutReplyTier', message: `unknown tier ${config.office.mo.optOutReplyTier}` });
    else if (!exempt.has(config.office.mo.optOutReplyTier)) conflicts.push({ field: '/office/mo/optOutReplyTier', message: 'the confirmation must pass the block it confirms: name a tier with ignoreOptOut (or set optOutReplyText to "")' });
  }
  // Routing rules: accounts (when any is configured: else the built-in simulator's `sim`) and tiers must exist.
  const accountNames = config.smpp.accounts.length > 0 ? names : new Set(['sim']);
  checkRules(config.routing.rules, { accounts: accountNames, tiers: seen }).forEach((p) => conflicts.push({ field: `/routing/rules${p.field}`, message: p.message }));
  if (config.queue.kind === 'nats' && config.queue.nats.servers.length === 0) {
    conflicts.push({ field: '/queue/nats/servers', message: 'queue.kind is nats: give at least one server (or SMSGW_NATS_URL)' });
  }
  if (config.queue.nats.replication.pdaHandoff && !config.queue.nats.replication.enabled) {
    conflicts.push({ field: '/queue/nats/replication/pdaHandoff', message: 'the PDA hand-off is between hosts: set queue.nats.replication.enabled too' });
  }
  if (config.queue.nats.replication.enabled && config.queue.kind !== 'nats') {
    conflicts.push({ field: '/queue/nats/replication/enabled', message: 'receipt replication runs over NATS: set queue.kind to nats' });
  }
  for (const entry of TargetPolicy.invalidEntries(config.callbacks.allow)) {
    conflicts.push({ field: '/callbacks/allow', message: `${entry} is neither a host name nor an address / CIDR range` });
  }
  // A request the caps allow must fit the JSON bounds: `to` holds up to maxRecipientsPerRequest numbers, a batch maxBatchItems items.
  const json = jsonBounds(config.server.json);
  if (json.maxMembers < Math.max(config.server.maxRecipientsPerRequest, config.server.maxBatchItems)) {
    conflicts.push({ field: '/server/json/maxMembers', message: `must be ≥ server.maxRecipientsPerRequest and server.maxBatchItems (${Math.max(config.server.maxRecipientsPerRequest, config.server.maxBatchItems)})` });
  }
  if (json.maxValues < json.maxMembers) conflicts.push({ field: '/server/json/maxValues', message: 'must be ≥ server.json.maxMembers' });
  if (config.callbacks.maxBackoffMs < config.callbacks.backoffMs) conflicts.push({ field: '/callbacks/maxBackoffMs', message: 'must be ≥ callbacks.backoffMs' });
  const idempotencyTtlMs = parseIsoDuration(config.server.idempotencyTtl) ?? 86_400_000;
  const retentionMessagesMs = parseIsoDuration(config.retention.messages) ?? MIN_RETENTION_MS;
  const retentionAuditMs = parseIsoDuration(config.retention.audit) ?? MIN_RETENTION_MS;
  if (retentionAuditMs < MIN_RETENTION_MS) {
    conflicts.push({ field: '/retention/audit', message: `must be at least P180D: audit logs are kept 180 days at least (the legal minimum); got ${config.retention.audit}` });
  }
  // A key's answer must not outlive its message, and a reuse after a purge must be a new window (invariant 7).
  if (retentionMessagesMs <= idempotencyTtlMs) {
    conflicts.push({ field: '/retention/messages', message: `must be longer than server.idempotencyTtl (${config.server.idempotencyTtl})` });
  }
  if (conflicts.length > 0) {
    throw new GatewayError('CONFIG_INVALID', `invalid configuration: ${conflicts.map((p) => `${p.field}: ${p.message}`).join('; ')}`, { details: conflicts });
  }
  const devKey = config.auth.apiKeys.some((k) => k.key === DEV_API_KEY);
  const resolved: ResolvedConfig = {
    ...config,
    server: { ...config.server, host: config.server.host ?? (devKey ? '127.0.0.1' : '0.0.0.0') },
    tierList,
    tierByName: new Map(tierList.map((t) => [t.name, t])),
    idempotencyTtlMs,
    retentionMs: { messages: retentionMessagesMs, audit: retentionAuditMs },
    maxValidityMs: parseIsoDuration(config.sender.maxValidity) ?? 3 * 86_400_000,
    optOutExemptTiers: exempt,
    intakeYieldingTiers: new Set(config.tiers.filter(yieldsToIntake).map((t) => t.name)),
  };
  return deepFreeze(resolved);
}

/**
 * Start refuses the development key (auth.apiKeys has DEV_API_KEY, public in
 * this repository) unless the built-in simulator is the only SMSC: with any
 * account in smpp.accounts, real messages could go out under a key everyone
 * knows. Throws CONFIG_INVALID naming the setting.
 */
export function checkDevKey(config: Config): void {
  if (config.smpp.accounts.length === 0) return;
  const problems: FieldProblem[] = [];
  config.auth.apiKeys.forEach((k, i) => {
    if (k.key === DEV_API_KEY) {
      problems.push({
        field: `/auth/apiKeys/${i}/key`,
        message: `the development key ${DEV_API_KEY} is accepted only while the built-in simulator is the only SMSC (smpp.accounts is empty): set auth.apiKeys to keys of your own`,
      });
    }
  });
  if (problems.length > 0) {
    throw new GatewayError('CONFIG_INVALID', `refusing to start: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`, { details: problems });
  }
}

function describe(message: string, schema: TSchema): string {
  const s = schema as { description?: string; pattern?: string; minimum?: number; maximum?: number };
  const extra = s.description ? ` (${s.description})` : s.pattern ? ` (pattern ${s.pattern})` : '';
  return `${message}${extra}`;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o) && !(o instanceof Map)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
