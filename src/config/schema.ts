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
  /** Recipient groups (directory) this bootstrap key may address; `*` for all. Default: none. */
  groups: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
}, strict);

export const TierSchema = Type.Object({
  name: Type.String({ pattern: '^[a-z][a-z0-9_-]*$' }),
  priority: Type.Integer({ minimum: 0, maximum: 1000 }),
  defaultValidity: IsoDuration,
  /**
   * Local time (directory.utcOffsetMinutes) during which this tier is not
   * sent: its queue waits, and messages accepted then get their validity
   * counted from the end of the quiet hours. Absent: sent at any hour.
   */
  quietHours: Type.Optional(Type.Object({
    start: Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'HH:MM' }),
    end: Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'HH:MM' }),
  }, strict)),
  /**
   * Messages of this tier reach numbers on the block list (an SMS `TD`
   * opt-out stops routine traffic, not warnings; DESIGN invariant 9).
   * Absent: true for a tier named `emergency`, false for every other.
   */
  ignoreOptOut: Type.Optional(Type.Boolean()),
  /**
   * Intake first (dispatch.intakeFirstMs): while accepted work waits for its
   * commit, new jobs of this tier wait too. Absent: false for a tier named
   * `emergency`, true for every other (a warning is never held back).
   */
  yieldToIntake: Type.Optional(Type.Boolean()),
}, strict);

/** Keys of the admin API (/v1/admin/...), separate from sending keys. */
export const AdminKeySchema = Type.Object({
  key: Type.String({ minLength: 16, description: 'bearer token, at least 16 characters' }),
  /** Recorded as the actor in the audit log. */
  name: Type.String({ pattern: '^[A-Za-z0-9_.@-]{1,64}$' }),
  /** A delegated admin: may manage only this unit's subtree. Absent: the whole directory. */
  unit: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' })),
}, strict);

/** Content rules applied at ingest. */
export const ContentSchema = Type.Object({
  /** Sensitive words (in addition to wordListFile). */
  words: Type.Array(Type.String()),
  /** UTF-8 file, one word per line (# starts a comment); '' for none. */
  wordListFile: Type.String(),
  /** reject: 422 CONTENT_REJECTED; hold: accepted but held until an admin releases or rejects it. */
  onMatch: Type.Union([Type.Literal('reject'), Type.Literal('hold')]),
  /** Characters skipped when matching (so "法 轮" matches 法轮), e.g. " *.·-_". */
  ignoreChars: Type.String({ maxLength: 64 }),
}, strict);

export const DirectorySchema = Type.Object({
  /** Distinct members one group may expand to; more: 413 TOO_MANY_RECIPIENTS. */
  maxGroupMembers: Type.Integer({ minimum: 1 }),
  /** Rows read between yields to the event loop while expanding a group. */
  expansionChunk: Type.Integer({ minimum: 100, maximum: 100000 }),
  /** Local time for daily quotas and quiet hours (China: 480). */
  utcOffsetMinutes: Type.Integer({ minimum: -720, maximum: 840 }),
  /** Group member counts cached for the 202 (any directory change invalidates them); 0 disables. */
  countCacheEntries: Type.Integer({ minimum: 0 }),
  /** Largest CSV import body. */
  maxImportBytes: Type.Integer({ minimum: 1024 }),
  /**
   * Carriers' rule: at most `perDay` messages from one unit to one number per
   * local day, one limit across hosts (0: no cap). Over it a recipient ends
   * `rejected`. Tiers in `exemptTiers` are neither checked nor counted.
   */
  frequencyCap: Type.Object({
    perDay: Type.Integer({ minimum: 0, maximum: 10000 }),
    exemptTiers: Type.Array(Type.String({ minLength: 1 })),
  }, strict),
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
  /**
   * Operators routed to this account by the default routing rules: cmcc,
   * cucc, ctcc, intl, or * for all. Empty: only routing.rules that name the
   * account use it (e.g. an account kept for the emergency tier).
   */
  operators: Type.Array(Type.String()),
  /**
   * The carrier (operator family) running this account, e.g. cmcc, cucc,
   * ctcc or an aggregator's name: a reroute goes to an account of another
   * carrier. Absent: the one Chinese operator `operators` names, else the
   * account is a family of its own.
   */
  carrier: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,32}$' })),
  /**
   * Where this account's carrier wants the 【signature】: front (the
   * carriers' rule, and where ingest puts it) or end (moved at dispatch;
   * same characters, same parts).
   */
  signaturePosition: Type.Optional(Type.Union([Type.Literal('front'), Type.Literal('end')], { default: 'front' })),
  /**
   * Allow-list mode, for a carrier's test account: it carries only these
   * numbers (routing passes it over for any other, to the next rule or
   * account). Absent: every number.
   */
  allowList: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 40 }), { maxItems: 10000 })),
  /**
   * This account's access code in place of the platform's: a source starting
   * with `from` is sent as `to` + the rest, and an MO to `to` + rest is routed
   * as `from` + rest — replies reach the same unit whichever account carried
   * the message (failover). Absent: sources go as they are.
   */
  accessCode: Type.Optional(Type.Object({
    from: Type.String({ pattern: '^[0-9]{1,20}$' }),
    to: Type.String({ pattern: '^[0-9]{1,20}$' }),
  }, strict)),
  /**
   * Base of the message ids in this SMSC's submit_sm_resp. `auto`: not said;
   * receipts are then matched by the id as written (case and leading zeros
   * aside), and the base seen is only reported (src/core/dlr.ts).
   */
  idFormat: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('decimal'), Type.Literal('hex')], { default: 'auto' })),
  /** Base of the id in the receipt text (`id:`) when the SMSC writes it differently from its resp ids. Needs idFormat. */
  receiptTextIdFormat: Type.Optional(Type.Union([Type.Literal('same'), Type.Literal('decimal'), Type.Literal('hex')], { default: 'same' })),
  /** Base of the receipted_message_id TLV when the SMSC writes it differently from its resp ids. Needs idFormat. */
  receiptTlvIdFormat: Type.Optional(Type.Union([Type.Literal('same'), Type.Literal('decimal'), Type.Literal('hex')], { default: 'same' })),
}, strict);

const HhMmPattern = '^([01][0-9]|2[0-3]):[0-5][0-9]$';
const RuleName = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' });

/** One routing rule (docs/ARCHITECTURE.md, routing): the first rule whose match holds gives the accounts. */
export const RouteRuleSchema = Type.Object({
  name: RuleName,
  /** Every field present must hold (AND); an absent field matches anything. */
  match: Type.Object({
    tiers: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 64 })),
    /** Unit ids: the sending unit or one of its ancestors (the subtree); a bootstrap key's tenant name. */
    units: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 1000 })),
    operators: Type.Optional(Type.Array(Type.Union([Type.Literal('cmcc'), Type.Literal('cucc'), Type.Literal('ctcc'), Type.Literal('intl')]), { minItems: 1 })),
    /** Local time (directory.utcOffsetMinutes), may wrap midnight. */
    window: Type.Optional(Type.Object({
      start: Type.String({ pattern: HhMmPattern, description: 'HH:MM' }),
      end: Type.String({ pattern: HhMmPattern, description: 'HH:MM' }),
    }, strict)),
  }, strict),
  /** Account names: preference order (failover) or the rotation. */
  accounts: Type.Array(Type.String({ pattern: '^[A-Za-z0-9_-]+$' }), { minItems: 1, maxItems: 16 }),
  policy: Type.Union([Type.Literal('failover'), Type.Literal('round-robin'), Type.Literal('weighted')]),
  /** policy weighted: one integer weight (1–1000) per account. */
  weights: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 1000 }), { minItems: 1, maxItems: 16 })),
  /**
   * Reroute of failed recipients (docs/ARCHITECTURE.md, reroute; default off):
   * a recipient whose receipt says UNDELIV or REJECTD is tried once more
   * through an account of another carrier, from `rerouteTo` (else this
   * rule's `accounts`); its final state is the second attempt's.
   */
  reroute: Type.Optional(Type.Boolean()),
  /** Accounts for the second attempt, in preference order (down ones last); absent: the rule's `accounts`. Only those of a carrier the first attempt did not use are taken. */
  rerouteTo: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9_-]+$' }), { minItems: 1, maxItems: 16 })),
}, strict);

export const RoutingSchema = Type.Object({
  /** Ordered rules, tried before the per-operator rules derived from smpp.accounts[].operators. */
  rules: Type.Array(RouteRuleSchema, { maxItems: 1000 }),
  /** When an account is down for routing (its candidates go last). */
  health: Type.Object({
    /** No bound session for this long. */
    unboundMs: Type.Integer({ minimum: 0 }),
    /** Submits failing (expired, lost) with no success in between for this long. */
    failingMs: Type.Integer({ minimum: 0 }),
    /** A bound account down for failing is tried again after this long. */
    retryMs: Type.Integer({ minimum: 100 }),
  }, strict),
}, strict);

/**
 * A China Mobile CMPP 2.0 / 3.0 account (an SP's link to an ISMG). Its own
 * schema: SP_Id and shared secret do not fit SMPP's systemId ≤ 15 /
 * password ≤ 8, and CMPP_SUBMIT carries fee and service fields SMPP lacks.
 */
export const CmppAccountSchema = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9_-]+$' }),
  protocol: Type.Union([Type.Literal('cmpp2'), Type.Literal('cmpp3')]),
  host: Type.String({ minLength: 1 }),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  /** SP_Id: CONNECT's Source_Addr (6 characters, the SP's enterprise code). */
  spId: Type.String({ pattern: '^[A-Za-z0-9]{1,6}$' }),
  /** Shared secret of the AuthenticatorSource. */
  sharedSecret: Type.String({ minLength: 1, maxLength: 64 }),
  /** Service_Id of SUBMIT (≤ 10 characters, the service code the ISMG registered). */
  serviceId: Type.String({ pattern: '^[ -~]{0,10}$' }),
  /** Msg_src of SUBMIT; empty: spId. */
  msgSrc: Type.String({ pattern: '^[A-Za-z0-9]{0,6}$', default: '' }),
  /** The account's 106 access code (Src_Id prefix); the unit's extension is appended (≤ 21 digits in all). */
  accessCode: Type.String({ pattern: '^[0-9]{1,21}$' }),
  /** Fee_UserType: 0 charge the destination, 1 the source, 2 the SP, 3 Fee_terminal_Id. Government notices: 2. */
  feeUserType: Type.Integer({ minimum: 0, maximum: 3, default: 2 }),
  /** FeeType: 01 free, 02 per message, 03 monthly… */
  feeType: Type.String({ pattern: '^[0-9]{2}$', default: '01' }),
  /** FeeCode in fen (≤ 6 digits). */
  feeCode: Type.String({ pattern: '^[0-9]{1,6}$', default: '000000' }),
  /** Ask for status reports (Registered_Delivery = 1). The ISMG sends none unless asked. */
  registeredDelivery: Type.Boolean({ default: true }),
  /**
   * Send non-ASCII text as Msg_Fmt 15 (GB18030) instead of 8 (UCS-2): only
   * where the ISMG and the account allow it. Chinese mixed with digits and
   * Latin letters takes fewer octets, so fewer parts; text GB18030 cannot
   * encode still goes as UCS-2. Default off.
   */
  gb18030: Type.Optional(Type.Boolean({ default: false })),
  /** Connections to the ISMG. */
  links: Type.Integer({ minimum: 1, maximum: 64 }),
  /** Outstanding CMPP_SUBMIT per connection (the specification suggests 16). */
  window: Type.Integer({ minimum: 1, maximum: 1000, default: 16 }),
  /** Account-wide CMPP_SUBMIT per second; 0 = unlimited. */
  tps: Type.Number({ minimum: 0 }),
  responseTimeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
  /** ACTIVE_TEST after this much silence (the specification: 180 s). */
  activeTestMs: Type.Integer({ minimum: 1000, default: 180_000 }),
  reconnectInitialMs: Type.Integer({ minimum: 10, default: 1000 }),
  reconnectMaxMs: Type.Integer({ minimum: 10, default: 60_000 }),
  /** First back-off after SUBMIT_RESP Result 8 (flow control); doubles up to reconnectMaxMs. */
  throttleBackoffMs: Type.Integer({ minimum: 1, default: 1000 }),
  /** ISMG local time (timestamps, ValId_Time, report times), minutes east of UTC; China 480. */
  utcOffsetMinutes: Type.Integer({ minimum: -720, maximum: 840, default: 480 }),
  /** Operators routed to this account by the default routing rules (as SMPP accounts); empty: only rules naming it. */
  operators: Type.Array(Type.String()),
  /** The carrier running this account (as SMPP accounts); absent: cmcc (CMPP is China Mobile's protocol). */
  carrier: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,32}$' })),
  /** Where this account's carrier wants the 【signature】 (as SMPP accounts). */
  signaturePosition: Type.Optional(Type.Union([Type.Literal('front'), Type.Literal('end')], { default: 'front' })),
  /** Allow-list mode for a test account (as SMPP accounts). */
  allowList: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 40 }), { maxItems: 10000 })),
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
  /** The protocol the built-in simulator speaks: an SMSC (smpp) or a China Mobile ISMG (cmpp2 / cmpp3). */
  protocol: Type.Optional(Type.Union([Type.Literal('smpp'), Type.Literal('cmpp2'), Type.Literal('cmpp3')])),
  /** Message id of the first accepted submit_sm; then +1 each (many SMSCs number from 1). */
  firstMessageId: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 1 })),
  /**
   * How submit_sm_resp writes ids: decimal; hex (upper case); hex-all-digit:
   * hex, but only the ids whose hex writing has no letter (0x1…0x9, 0x10…),
   * so every id also reads as a decimal number (the hardest case for matching).
   */
  idFormat: Type.Optional(Type.Union([Type.Literal('decimal'), Type.Literal('hex'), Type.Literal('hex-all-digit')], { default: 'decimal' })),
  /**
   * How the receipt text writes the id: as in the resp (same), in the other
   * base (other: decimal for hex ids, lower-case hex for decimal ones), or
   * always zero-padded decimal / lower-case hex.
   */
  dlrTextIdFormat: Type.Optional(Type.Union([Type.Literal('same'), Type.Literal('other'), Type.Literal('decimal'), Type.Literal('hex')], { default: 'same' })),
  /**
   * How the receipted_message_id TLV writes the id (same choices as
   * dlrTextIdFormat); the gateway's account reads it with receiptTlvIdFormat.
   */
  dlrTlvIdFormat: Type.Optional(Type.Union([Type.Literal('same'), Type.Literal('other'), Type.Literal('decimal'), Type.Literal('hex')], { default: 'same' })),
  /** Receipts carry receipted_message_id and message_state TLVs (false: the text alone). */
  dlrTlvs: Type.Optional(Type.Boolean({ default: true })),
  /** Every receipt is sent before its submit_sm_resp (otherwise only for numbers ending 0007). */
  dlrBeforeResp: Type.Optional(Type.Boolean({ default: false })),
}, strict);

/** The police PDA channel (docs/pda-protocol.md). */
export const PdaSchema = Type.Object({
  /** Serve `/v1/pda` and `/v1/admin/pda/devices` on the gateway's port. */
  enabled: Type.Boolean(),
  /**
   * Secret the per-device keys are encrypted with at rest (AES-256-GCM, key
   * derived by HKDF-SHA-256). At least 32 characters when enabled; set it
   * through SMSGW_PDA__KEY_SECRET, never in a committed file. Changing it makes
   * every stored device key unreadable (re-provision the devices).
   */
  keySecret: Type.String(),
  /** Bearer key of the PDA admin API (`/v1/admin/pda/devices`); empty disables the admin API. */
  adminKey: Type.String(),
  /** Lifetime of a newly issued device key. */
  keyTtl: IsoDuration,
  /** Largest frame a device may send, header included (bigger: session closed, FRAME_TOO_LARGE). */
  maxInboundFrameBytes: Type.Integer({ minimum: 256, maximum: 32768 }),
  /** Largest message body, UTF-8 bytes (protocol ceiling 16384). */
  maxBodyBytes: Type.Integer({ minimum: 64, maximum: 16384 }),
  /** hello → response must complete within this; it is also the nonce's lifetime. */
  helloTimeoutMs: Type.Integer({ minimum: 100, maximum: 120000 }),
  /** WebSocket idle timeout (uWS, 4 s granularity); the server pings at about half of it. */
  idleTimeoutSec: Type.Integer({ minimum: 8, maximum: 960 }),
  /** MESSAGE frames sent and not yet acknowledged, per session. */
  window: Type.Integer({ minimum: 1, maximum: 4096 }),
  /** Bytes uWS may buffer for one slow device before we stop writing (and wait for drain). */
  maxBackpressureBytes: Type.Integer({ minimum: 65536 }),
  /** Entries one device's outbox may hold; a copy past it is refused (undeliverable, counted). */
  outboxMaxPerDevice: Type.Integer({ minimum: 1 }),
  /** Devices one officer may have registered (not revoked). */
  maxDevicesPerPerson: Type.Integer({ minimum: 1, maximum: 64 }),
  /** Live sessions (authenticated or not); more upgrades are answered 503. */
  maxSessions: Type.Integer({ minimum: 1 }),
  /** How often expired outbox entries are removed and reported expired. */
  expirySweepMs: Type.Integer({ minimum: 100 }),
  /** Status updates waiting for the receipt store beyond which `deliver` answers OVERLOADED. */
  maxStatusBacklog: Type.Integer({ minimum: 1000 }),
}, strict);

const HhMm = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'HH:MM' });

/**
 * Mobile-office services (src/office): templates, meeting notices with
 * replies, business-registration progress, two-way SMS, scheduled sending
 * and new-mail alerts over SMTP.
 */
export const OfficeSchema = Type.Object({
  templates: Type.Object({
    /** Templates one unit (tenant) may keep. */
    maxPerUnit: Type.Integer({ minimum: 1, maximum: 100000 }),
    /** Longest template body, characters. */
    maxBodyChars: Type.Integer({ minimum: 16, maximum: 8000 }),
  }, strict),
  meetings: Type.Object({
    /** Tier of notices, reminders, changes and cancellations. */
    tier: Type.String({ minLength: 1 }),
    /** Replies counted this long after the notice when the request gives no replyBy. */
    defaultReplyWindow: IsoDuration,
    /** Most people one meeting may invite (after expanding groups). */
    maxAttendees: Type.Integer({ minimum: 1 }),
    /** Texts (templates: {{title}}, {{time|date:"M月d日 HH:mm"}}, {{place}}, {{code}}, {{note}}). */
    noticeText: Type.String({ minLength: 1 }),
    reminderText: Type.String({ minLength: 1 }),
    changeText: Type.String({ minLength: 1 }),
    cancelText: Type.String({ minLength: 1 }),
  }, strict),
  workflow: Type.Object({
    tier: Type.String({ minLength: 1 }),
    /**
     * Events that arrive ahead of a missing sequence number (or every event
     * ordered by timestamp) wait this long for the ones before them, so
     * shuffled deliveries are still sent in order.
     */
    reorderMs: Type.Integer({ minimum: 0, maximum: 3600000 }),
    /** Timeline entries kept per case (oldest dropped). */
    maxTimeline: Type.Integer({ minimum: 1, maximum: 10000 }),
    /** Stage → SMS template ({{caseId}}, {{stage}}, {{stageName}}, {{missing|join:"、"}}, {{readyAt|date:"M月d日"}}, {{system}} and the event's params). A stage without one is recorded, not sent. */
    stages: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }), Type.String({ minLength: 1 })),
    /** Answer to a case query by SMS ({{caseId}}, {{stage}}, {{stageName}}, {{updatedAt|date:"M月d日 HH:mm"}}). */
    queryReplyText: Type.String({ minLength: 1 }),
    /** Answer when no case of that id belongs to the asking number ({{caseId}}). */
    queryUnknownText: Type.String({ minLength: 1 }),
  }, strict),
  mo: Type.Object({
    /** Keywords (case-insensitive, first word of the MO text). */
    caseQueryKeyword: Type.String({ pattern: '^[A-Za-z0-9]{1,16}$' }),
    optOutKeyword: Type.String({ pattern: '^[A-Za-z0-9]{1,16}$' }),
    /** Confirmation sent to a number that opted out ('' sends none). It must pass the block it confirms: */
    optOutReplyText: Type.String({ maxLength: 500 }),
    /** …so it goes on a tier that ignores opt-out (tiers[].ignoreOptOut). */
    optOutReplyTier: Type.String({ minLength: 1 }),
    /** Parts of a long MO message waiting for the rest are dropped (kept as unmatched fragments) after this. */
    partTimeoutMs: Type.Integer({ minimum: 1000 }),
    /** Incomplete multipart MO messages held at once. */
    maxOpenParts: Type.Integer({ minimum: 1 }),
    /** Forwarding to a unit's callback URL: attempts, and timeout of each. */
    callbackAttempts: Type.Integer({ minimum: 1, maximum: 20 }),
    callbackTimeoutMs: Type.Integer({ minimum: 100, maximum: 60000 }),
    /** Forwards waiting (in LMDB) at once; past it new MO is stored as unmatched-forward-failed. */
    maxPendingForwards: Type.Integer({ minimum: 1 }),
  }, strict),
  schedule: Type.Object({
    /** How far ahead scheduleAt may be. */
    maxAhead: IsoDuration,
    /** How often due entries are looked for. */
    pollMs: Type.Integer({ minimum: 10, maximum: 60000 }),
  }, strict),
  mail: Type.Object({
    /** Run the SMTP listener for new-mail alerts. */
    enabled: Type.Boolean(),
    host: Type.String(),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    /** Tenant (bootstrap key tenant or directory unit id) the alerts are sent as. */
    tenant: Type.String(),
    tier: Type.String({ minLength: 1 }),
    /** SMTP AUTH users of the forwarding mail server; empty: no AUTH (then allowedClients must be set). */
    users: Type.Array(Type.Object({ username: Type.String({ minLength: 1 }), password: Type.String({ minLength: 8 }) }, strict)),
    /** Client IP addresses accepted without AUTH (e.g. the mail server's); empty: AUTH required. */
    allowedClients: Type.Array(Type.String()),
    /** PEM key and certificate for STARTTLS; absent: AUTH over plain text only when allowInsecureAuth. */
    tls: Type.Optional(Type.Object({ keyFile: Type.String({ minLength: 1 }), certFile: Type.String({ minLength: 1 }) }, strict)),
    allowInsecureAuth: Type.Boolean(),
    /** Largest message accepted (SIZE). */
    maxMessageBytes: Type.Integer({ minimum: 1024 }),
    /** Sender domains accepted (MAIL FROM); a message from any other domain is refused. */
    domains: Type.Array(Type.String({ minLength: 1 })),
    /** Who gets an alert: the envelope recipients (forwarding) or the To/Cc headers (journaling). */
    recipientsFrom: Type.Union([Type.Literal('envelope'), Type.Literal('headers')]),
    /** Alert text: {{sender}}, {{subject}}. */
    alertText: Type.String({ minLength: 1 }),
    /** Digest text when several mails fall in one rate window: {{count}}, {{sender}}, {{subject}} (the latest). */
    digestText: Type.String({ minLength: 1 }),
    /** At most one SMS per person per this many seconds; more mail in the window is folded into one digest sent when it ends. */
    digestSeconds: Type.Integer({ minimum: 1, maximum: 86400 }),
    /** No alerts in these local hours; what arrives is sent as one digest when they end. */
    quietHours: Type.Optional(Type.Object({ start: HhMm, end: HhMm }, strict)),
    /** Message-IDs remembered for de-duplication this long. */
    dedupeTtl: IsoDuration,
  }, strict),
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
    /**
     * Listen address. Unset: 127.0.0.1 while the development key is configured
     * (auth.apiKeys has DEV_API_KEY), else 0.0.0.0.
     */
    host: Type.Optional(Type.String({ minLength: 1 })),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    maxBodyBytes: Type.Integer({ minimum: 1024 }),
    maxRecipientsPerRequest: Type.Integer({ minimum: 1 }),
    maxBatchItems: Type.Integer({ minimum: 1, maximum: 10000 }),
    /** Shape bounds of JSON bodies (within maxBodyBytes); past one: 422 JSON_TOO_LARGE. Defaults in src/http/body.ts. */
    json: Type.Optional(Type.Object({
      maxStringLength: Type.Optional(Type.Integer({ minimum: 1 })),
      maxMembers: Type.Optional(Type.Integer({ minimum: 1 })),
      maxValues: Type.Optional(Type.Integer({ minimum: 1 })),
    }, strict)),
    /** Requests waiting for durability at once; past it: 503 OVERLOADED. */
    maxInflightRequests: Type.Integer({ minimum: 1 }),
    /** Idempotency keys remembered this long. */
    idempotencyTtl: IsoDuration,
    /** Serve HTTPS (and wss:// for the PDA channel) with this PEM key and certificate. */
    tls: Type.Optional(Type.Object({
      keyFile: Type.String({ minLength: 1 }),
      certFile: Type.String({ minLength: 1 }),
      passphrase: Type.Optional(Type.String()),
    }, strict)),
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
    /** SMS parts one message may need per recipient (with the unit's signature); past it: 422 TOO_MANY_PARTS. */
    maxSegments: Type.Integer({ minimum: 1, maximum: 255 }),
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
      /**
       * Receipt-store replication between hosts (docs/DEPLOY.md): on when
       * gateway processes run on more than one host. Each host needs a
       * distinct id (empty: the machine's host name).
       */
      replication: Type.Object({
        enabled: Type.Boolean(),
        host: Type.String({ pattern: '^[A-Za-z0-9_-]{0,64}$' }),
        /** Changes kept in the stream: a host away longer must be re-seeded. */
        maxAgeMs: Type.Integer({ minimum: 60_000 }),
        /** A dispatcher waits at most this long for other hosts' changes before a redelivered job (then retries it later). */
        catchUpMs: Type.Integer({ minimum: 100 }),
        /**
         * The PDA channel runs on some hosts only: processes without it hand
         * police messages and PDA recipients to those with it through the
         * work queue (internal tier `_pda`), instead of refusing them.
         */
        pdaHandoff: Type.Boolean(),
      }, strict),
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
    /**
     * Intake first (src/dispatch/intake-first.ts): while accepted work waits for its commit, the
     * dispatcher starts no new jobs of yielding tiers (tiers[].yieldToIntake) for at most this long,
     * then fetches unheld for as long again; what is in flight goes on. 0 (the default): off. On, a burst is
     * answered faster and reaches the SMSC sooner, but its completion callbacks come later, it costs more
     * CPU per message, and under a sustained flood the queue's backlog grows (up to intakeFirstBacklog)
     * (docs/ARCHITECTURE.md, Intake first; bench/RESULTS.md).
     */
    intakeFirstMs: Type.Integer({ minimum: 0, maximum: 60_000, default: 0 }),
    /**
     * Intake first's second bound: no hold while this many recipients accepted by this process wait
     * untaken by its dispatcher, so a sustained flood cannot grow the queue's backlog (and the pages
     * of the store the dispatcher then reads) without bound. Only with intakeFirstMs > 0.
     */
    intakeFirstBacklog: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 100_000 }),
  }, strict),
  /**
   * Operator accounts, SMPP (the default) and CMPP (`protocol: cmpp2 | cmpp3`), in routing order.
   * (The section keeps its historical name.)
   */
  smpp: Type.Object({ accounts: Type.Array(Type.Union([SmppAccountSchema, CmppAccountSchema])) }, strict),
  routing: RoutingSchema,
  simulator: SimulatorSchema,
  pda: PdaSchema,
  /** How long rows are kept (docs/DEPLOY.md, "Retention"); src/storage/retention.ts. */
  retention: Type.Object({
    /** Final messages with their recipients, receipt index, callback and idempotency rows: removed this long after acceptance. */
    messages: IsoDuration,
    /** Audit entries: removed this long after they were recorded; at least P180D (the legal minimum for logs). */
    audit: IsoDuration,
    /** How often a sweep runs. */
    sweepMs: Type.Integer({ minimum: 1000 }),
    /** Rows removed in one write operation at most. */
    batchRows: Type.Integer({ minimum: 1, maximum: 100_000 }),
    /** Rows removed in one sweep at most (the rest waits for the next). */
    maxRowsPerSweep: Type.Integer({ minimum: 1 }),
    /** Message rows one sweep examines at most (it goes round all of them, a page a sweep). */
    scanMessages: Type.Integer({ minimum: 1 }),
  }, strict),
  admin: Type.Object({ keys: Type.Array(AdminKeySchema) }, strict),
  content: ContentSchema,
  directory: DirectorySchema,
  office: OfficeSchema,
  /** Settings of the Node process that `smsgw start` applies (not an in-process startGateway). */
  runtime: Type.Object({
    /**
     * V8's heap growing factor as a percentage over 100 (V8's --heap-growing-percent; 0: V8's own,
     * which grows the old generation up to 4× what survived the last full collection). Under a
     * flood the garbage promoted out of the young generation then piled up to twice the live heap
     * before it was collected; 50 collects it sooner, at no CPU cost seen (bench/RESULTS.md).
     */
    heapGrowingPercent: Type.Integer({ minimum: 0, maximum: 400, default: 50 }),
  }, strict),
  /** Full disk as a state (src/storage/health.ts, docs/DEPLOY.md "Storage full"). */
  storage: Type.Object({
    /** While full, a probe write is tried this often; the state clears when it commits. */
    probeIntervalMs: Type.Integer({ minimum: 100, maximum: 600_000 }),
    /**
     * Address space the LMDB environment maps (MiB; virtual, not memory or disk: the file grows
     * with the data). Large enough that the map never has to grow: each growth maps the file
     * again while the old mapping stays, and the pages resident in both count twice in RSS.
     */
    mapSizeMiB: Type.Integer({ minimum: 64, maximum: 16_777_216, default: 65_536 }),
    /**
     * Free space kept on the data directory's file system, and room kept for the data file under
     * the process's file-size limit (`ulimit -f`) when there is one (MiB; 0: off). Below it the
     * storage state is full before any write can fail there: a page write that fails outright
     * (ENOSPC, EFBIG) is the one failure lmdb's native code does not survive cleanly (docs/DEPLOY.md).
     */
    minFreeMiB: Type.Integer({ minimum: 0, maximum: 1_048_576, default: 256 }),
    /** How often the free space (a statfs) and the file-size limit (/proc/self/limits) are read. */
    freeSpaceCheckMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 1_000 }),
    /**
     * How often the process gives back pages it holds and does not need (ms; 0: never): the data
     * file's mapped pages (LMDB reads through a map of the whole file and every page read stays
     * resident, so RSS grew with the data kept; the pages stay in the page cache and a later read
     * maps them again without a disk read) and the malloc heap's free pages (left between live
     * blocks by a flood's large write transactions). src/storage/page-release.ts.
     */
    releasePagesMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 1_000 }),
    /**
     * Between those releases, the data file's mapped pages are given back as soon as the process's
     * file-backed resident pages grew this much (MiB) since the last release (checked every 100 ms);
     * 0: on the timer only. Keeps the peak flat under a flood that maps pages faster than the timer
     * gives them back. Only with releasePagesMs > 0.
     */
    releaseAboveMiB: Type.Integer({ minimum: 0, maximum: 1_048_576, default: 48 }),
  }, strict),
  /** Completion callbacks (a message's callbackUrl is POSTed once every recipient is final). */
  callbacks: Type.Object({
    attempts: Type.Integer({ minimum: 1, maximum: 50 }),
    timeoutMs: Type.Integer({ minimum: 100, maximum: 60000 }),
    /**
     * Host names and addresses / CIDR ranges callbacks and MO forwards may reach
     * although they are loopback, private (RFC 1918), link-local, CGNAT, ULA or
     * unspecified (refused otherwise), e.g. ["127.0.0.1/32", "oa.city.local"].
     */
    allow: Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 1000, default: [] }),
    /** POSTs in flight at once, over every host (completion callbacks and status events). */
    concurrency: Type.Integer({ minimum: 1, maximum: 10000, default: 256 }),
    /** Keep-alive connections per callback origin. */
    connectionsPerHost: Type.Integer({ minimum: 1, maximum: 1024, default: 32 }),
    /** Back-off before the second attempt; doubled each attempt up to maxBackoffMs (±20% jitter). */
    backoffMs: Type.Integer({ minimum: 10, maximum: 3600000, default: 1000 }),
    maxBackoffMs: Type.Integer({ minimum: 10, maximum: 86400000, default: 300000 }),
    /** Per-recipient status events (statusCallback): events per POST at most, and how long a lane's oldest event waits for the batch to fill. */
    events: Type.Object({
      maxBatch: Type.Integer({ minimum: 1, maximum: 5000, default: 500 }),
      lingerMs: Type.Integer({ minimum: 0, maximum: 60000, default: 200 }),
    }, { ...strict, default: { maxBatch: 500, lingerMs: 200 } }),
    /**
     * Signing secrets of bootstrap tenants (auth.apiKeys): tenant → { current, previous? }.
     * Callbacks are signed with `current`; keep the old one as `previous` while
     * receivers change over (they accept either). Units set theirs through the admin API.
     */
    secrets: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_-]+$' }), Type.Object({
      current: Type.String({ minLength: 16, maxLength: 256 }),
      previous: Type.Optional(Type.String({ minLength: 16, maxLength: 256 })),
    }, strict), { default: {} }),
  }, strict),
}, strict);

export type Config = Static<typeof ConfigSchema>;
export type ApiKeyConfig = Static<typeof ApiKeySchema>;
export type TierConfig = Static<typeof TierSchema>;
export type SmppAccountConfig = Static<typeof SmppAccountSchema>;
export type RoutingConfig = Static<typeof RoutingSchema>;
export type CmppAccountConfig = Static<typeof CmppAccountSchema>;
export type AccountConfig = SmppAccountConfig | CmppAccountConfig;

export function isCmppAccount(a: AccountConfig): a is CmppAccountConfig {
  return 'protocol' in a && (a.protocol === 'cmpp2' || a.protocol === 'cmpp3');
}
export type SimulatorConfig = Static<typeof SimulatorSchema>;
export type PdaConfig = Static<typeof PdaSchema>;
export type AdminKeyConfig = Static<typeof AdminKeySchema>;
export type ContentConfig = Static<typeof ContentSchema>;
export type DirectoryConfig = Static<typeof DirectorySchema>;
export type OfficeConfig = Static<typeof OfficeSchema>;
export type MailConfig = OfficeConfig['mail'];
