/**
 * The configuration schema. `config/default.json` is validated against it at
 * start-up, after `SMSGW_*` environment overrides are applied; unknown keys
 * are errors (a typo must not silently fall back to a default).
 */
import { Type, type Static } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;

/** ISO-8601 duration such as PT1H, P1D, PT30M. */
const IsoDuration = Type.String({ pattern: '^P(?!$)(\\d+D)?(T(?=\\d)(\\d+H)?(\\d+M)?(\\d+(\\.\\d+)?S)?)?$', description: 'ISO-8601 duration, e.g. PT1H' });

export const ApiKeySchema = Type.Object({
  key: Type.String({ minLength: 8, description: 'bearer token' }),
  tenant: Type.String({ minLength: 1, pattern: '^[A-Za-z0-9_-]+$' }),
  /** Tier names this key may use; `*` for all. */
  tiers: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  /** Source address used for this tenant's messages (sender code + extension). */
  sender: Type.Optional(Type.String({ pattern: '^[0-9]{1,20}$' })),
}, strict);

export const TierSchema = Type.Object({
  name: Type.String({ pattern: '^[a-z][a-z0-9_-]*$' }),
  priority: Type.Integer({ minimum: 0, maximum: 1000 }),
  defaultValidity: IsoDuration,
}, strict);

export const SmppAccountSchema = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9_-]+$' }),
  host: Type.String({ minLength: 1 }),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  systemId: Type.String({ minLength: 1, maxLength: 15 }),
  password: Type.String({ maxLength: 8 }),
  systemType: Type.String({ maxLength: 12, default: '' }),
  tls: Type.Boolean({ default: false }),
  /** Number of transceiver binds. */
  binds: Type.Integer({ minimum: 1, maximum: 64 }),
  /** Outstanding submit_sm per bind. */
  window: Type.Integer({ minimum: 1, maximum: 1000 }),
  /** Account-wide submit_sm per second; 0 = unlimited. */
  tps: Type.Number({ minimum: 0 }),
  responseTimeoutMs: Type.Integer({ minimum: 100 }),
  enquireLinkMs: Type.Integer({ minimum: 1000 }),
  reconnectInitialMs: Type.Integer({ minimum: 10 }),
  reconnectMaxMs: Type.Integer({ minimum: 10 }),
  /** First back-off after ESME_RTHROTTLED / ESME_RMSGQFUL; doubles up to reconnectMaxMs. */
  throttleBackoffMs: Type.Integer({ minimum: 1 }),
  /** Operators routed to this account: cmcc, cucc, ctcc, intl, or * for all. */
  operators: Type.Array(Type.String(), { minItems: 1 }),
}, strict);

export const SimulatorSchema = Type.Object({
  /** auto: run the built-in simulator when no SMPP account is configured. */
  enabled: Type.Union([Type.Literal('auto'), Type.Boolean()]),
  host: Type.String(),
  port: Type.Integer({ minimum: 0, maximum: 65535 }),
  systemId: Type.String({ maxLength: 15 }),
  password: Type.String({ maxLength: 8 }),
  dlrDelayMs: Type.Integer({ minimum: 0 }),
  /** Relative weights of final receipt states. */
  dlrMix: Type.Object({
    DELIVRD: Type.Number({ minimum: 0 }),
    UNDELIV: Type.Number({ minimum: 0 }),
    EXPIRED: Type.Number({ minimum: 0 }),
    REJECTD: Type.Number({ minimum: 0 }),
  }, strict),
  /** submit_sm per second per simulator before answering ESME_RTHROTTLED; 0 = unlimited. */
  tps: Type.Number({ minimum: 0 }),
  /** Drop a session after this many submit_sm (0 = never). */
  disconnectEvery: Type.Integer({ minimum: 0 }),
}, strict);

export const ConfigSchema = Type.Object({
  dataDir: Type.String({ minLength: 1 }),
  log: Type.Object({
    level: Type.Union([
      Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'),
      Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent'),
    ]),
  }, strict),
  server: Type.Object({
    host: Type.String(),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    maxBodyBytes: Type.Integer({ minimum: 1024 }),
    maxRecipientsPerRequest: Type.Integer({ minimum: 1 }),
    maxBatchItems: Type.Integer({ minimum: 1, maximum: 10000 }),
    /** Requests waiting for durability at once; past it: 503 OVERLOADED. */
    maxInflightRequests: Type.Integer({ minimum: 1 }),
    /** Idempotency keys remembered this long. */
    idempotencyTtl: IsoDuration,
  }, strict),
  auth: Type.Object({ apiKeys: Type.Array(ApiKeySchema) }, strict),
  tiers: Type.Array(TierSchema, { minItems: 1 }),
  defaultTier: Type.String(),
  numbers: Type.Object({
    /** Accept E.164 numbers outside +86. */
    allowInternational: Type.Boolean(),
  }, strict),
  sender: Type.Object({
    /** Default source address when a tenant has none. */
    defaultSource: Type.String({ pattern: '^[0-9]{1,20}$' }),
    maxValidity: IsoDuration,
  }, strict),
  queue: Type.Object({
    kind: Type.Union([Type.Literal('embedded'), Type.Literal('nats')]),
    prefix: Type.String({ pattern: '^[A-Za-z0-9_-]+$' }),
    /** Recipients per job. */
    batchSize: Type.Integer({ minimum: 1, maximum: 10000 }),
    /**
     * Coalesce small messages of one (tier, tenant, group) into one job
     * (group commit). false: one publish per message (the benchmark baseline).
     */
    coalesce: Type.Boolean(),
    ackWaitMs: Type.Integer({ minimum: 1000 }),
    maxDeliver: Type.Integer({ minimum: 1 }),
    maxAckPending: Type.Integer({ minimum: 1 }),
    duplicateWindowMs: Type.Integer({ minimum: 1000 }),
    nats: Type.Object({
      servers: Type.Array(Type.String()),
      stream: Type.String({ pattern: '^[A-Za-z0-9_-]+$' }),
      replicas: Type.Integer({ minimum: 1, maximum: 5 }),
      /** Group-commit: flush a publish batch after this many ms... */
      flushMs: Type.Integer({ minimum: 0 }),
      /** ...or when it holds this many recipients, whichever first. */
      flushRecipients: Type.Integer({ minimum: 1 }),
    }, strict),
  }, strict),
  dispatch: Type.Object({
    /** Jobs fetched per pull. */
    fetchBatch: Type.Integer({ minimum: 1 }),
    /** Segments handed to the transports and not yet resolved, across all jobs. */
    maxInflightSegments: Type.Integer({ minimum: 1 }),
    /** How often open recipients past their validity are expired. */
    expirySweepMs: Type.Integer({ minimum: 100 }),
    /** Grace after validity for a final DLR to arrive before a submitted segment is expired. */
    receiptGraceMs: Type.Integer({ minimum: 0 }),
  }, strict),
  smpp: Type.Object({ accounts: Type.Array(SmppAccountSchema) }, strict),
  simulator: SimulatorSchema,
}, strict);

export type Config = Static<typeof ConfigSchema>;
export type ApiKeyConfig = Static<typeof ApiKeySchema>;
export type TierConfig = Static<typeof TierSchema>;
export type SmppAccountConfig = Static<typeof SmppAccountSchema>;
export type SimulatorConfig = Static<typeof SimulatorSchema>;
