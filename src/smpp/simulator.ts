/**
 * SmscSimulator: an SMSC for tests, benchmarks and the no-account default.
 * Built on the `smpp` package's server and decoder; what it sends back is
 * encoded by src/smpp/wire.ts's own encoders, so a codec bug on one side
 * shows up as a decode failure on the other instead of hiding.
 *
 * Normal behaviour: binds (transceiver, transmitter, receiver) checked
 * against systemId/password (unknown system_id → ESME_RBINDFAIL, wrong
 * password → ESME_RINVPASWD, the connection then closed); enquire_link
 * answered; every submit_sm answered with an incrementing message id from
 * `firstMessageId` (default 1, as many SMSCs number them), written as
 * `idFormat` says (decimal, hex, or hex-all-digit: hex ids whose writing has
 * no letter, so each also reads as a decimal number — the worst case for
 * matching receipts); a delivery receipt per accepted submit that
 * asked for one (registered_delivery & 1), dlrDelayMs later (0: written right
 * after the submit_sm_resp; `dlrBeforeResp`: right before it), as deliver_sm
 * esm_class 0x04 with the Appendix B text AND the receipted_message_id and
 * message_state TLVs (unless `dlrTlvs: false`), the text's id written as
 * `dlrTextIdFormat` says (e.g. `other`: in the other base) and the TLV's as
 * `dlrTlvIdFormat` says (same choices), final state drawn from
 * `dlrMix` with a seeded PRNG (deterministic for a given order of submits).
 * Receipts and MOs go to the submitting session when it can receive, else to
 * any bound transceiver/receiver, at most `deliverWindow` unanswered per
 * session (the rest wait, in order); one without a deliver_sm_resp within
 * dlrRetryMs, or with an error status, is re-sent, up to dlrMaxAttempts sends.
 *
 * Limits: `tps` > 0 answers ESME_RTHROTTLED above that rate;
 * `disconnectEvery` N > 0 drops a session on its N-th, 2N-th… submit_sm,
 * after accepting it and without answering it (responses written in the
 * same tick are lost with it: a mid-window disconnect).
 *
 * Behaviour by the last four digits of destination_addr:
 *
 *   | suffix | behaviour                                                        |
 *   |--------|------------------------------------------------------------------|
 *   | 0001   | never answered; not accepted (no receipt, not counted unique)     |
 *   | 0002   | answered after slowResponseMs (default 2 s)                       |
 *   | 0003   | receipt EXPIRED                                                   |
 *   | 0005   | receipt UNDELIV                                                   |
 *   | 0007   | receipt sent BEFORE the submit_sm_resp (all do: `dlrBeforeResp`) |
 *   | 0009   | accepted, no receipt ever                                         |
 *   | 0011   | ESME_RINVDSTADR (permanent reject)                                |
 *   | 0014   | ESME_RMSGQFUL on the first attempt of a given segment             |
 *   | 0058   | ESME_RTHROTTLED for the first `throttleAttempts` (3) attempts     |
 *   | 0099   | generic_nack ESME_RSYSERR in place of the submit_sm_resp          |
 *
 * Counters (`stats()`): a segment is identified by destination + data_coding
 * + payload bytes (UDH included), hashed to 53 bits; a second accepted
 * submit of the same segment counts as a duplicate — that is how tests count
 * duplicate SMS. Sending the same text twice to the same number on purpose
 * therefore also counts; tests vary the text. Per-destination counts and the
 * segment set stop growing at `maxTracked` entries (`untracked` counts the rest).
 */
import type { SimulatorConfig } from '../config/schema.js';
import { RingBuffer } from '../core/ring.js';
import { sameSecret } from '../core/constant-time.js';
import { TokenBucket } from '../core/token-bucket.js';
import type { Logger } from '../telemetry/logger.js';
import {
  COMMAND_ID,
  STATUS,
  createSmppServer,
  encodeBindResp,
  encodeEmptyPdu,
  encodeMessageIdResp,
  encodeMessagePdu,
  gsmDecode,
  gsmEncode,
  isResponse,
  messageText,
  utf16beEncode,
  type IncomingPdu,
  type MessageBody,
  type MessageFields,
  type PduHeader,
  type SmppServer,
  type SmppSession,
} from './wire.js';
import { seededRandom } from '../core/random.js';

export interface SimulatorKnobs {
  /** Delay before every submit_sm_resp, so windows fill up (tests). Default 0. */
  readonly responseDelayMs?: number;
  /** Delay for destinations ending 0002. Default 2000. */
  readonly slowResponseMs?: number;
  /** ESME_RTHROTTLED answers for destinations ending 0058. Default 3. */
  readonly throttleAttempts?: number;
  /** PRNG seed for the receipt mix. Default 1. */
  readonly seed?: number;
  /** Re-send a receipt/MO without a deliver_sm_resp after this long. Default 1000. */
  readonly dlrRetryMs?: number;
  /** Sends of one receipt/MO before it is dropped. Default 4. */
  readonly dlrMaxAttempts?: number;
  /** deliver_sm outstanding (sent, no resp yet) per session, like an SMSC's own window. Default 100. */
  readonly deliverWindow?: number;
  /** Bound of per-destination counts, the segment set and per-segment attempt counts. Default 2,000,000. */
  readonly maxTracked?: number;
  /** Receipts/MOs waiting to be sent. Default 1,000,000. */
  readonly maxPendingDeliveries?: number;
  /**
   * Receipts by suffix (0003 EXPIRED, 0005 UNDELIV) apply. False: those
   * numbers get the receipt mix like any other, as a second SMSC that can
   * reach them would (reroute tests). Default true.
   */
  readonly receiptSuffixes?: boolean;
  /** Submits remembered for inspection (`recentSubmits()`). Default 1000. */
  readonly recentCapacity?: number;
  /** Housekeeping tick (due receipts, delivery timeouts). Default 20. */
  readonly tickMs?: number;
  /** Serve SMPP over TLS with this key and certificate (PEM). */
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer } | undefined;
  /** Called for every submit_sm received on a bound session, before it is answered (benchmarks time the first one). */
  readonly observeSubmit?: ((destination: string) => void) | undefined;
  /** Called once per receipt made (not per send): what the SMSC says of that submit (tests compare final states with it). */
  readonly observeReceipt?: ((r: { readonly destination: string; readonly messageId: string; readonly stat: 'DELIVRD' | 'UNDELIV' | 'EXPIRED' | 'REJECTD' }) => void) | undefined;
}

export type SmscSimulatorOptions = Partial<SimulatorConfig> & SimulatorKnobs;

/** What the simulator saw of one submit_sm (for assertions on the wire format). */
export interface SubmitRecord {
  /** Simulator session (connection) number it arrived on. */
  readonly session: number;
  readonly sourceAddr: string;
  readonly sourceTon: number;
  readonly sourceNpi: number;
  readonly destinationAddr: string;
  readonly destTon: number;
  readonly destNpi: number;
  readonly esmClass: number;
  readonly dataCoding: number;
  readonly registeredDelivery: number;
  readonly validityPeriod: string;
  /** Decoded by data_coding (UDH skipped). */
  readonly text: string;
  /** As received, UDH included. */
  readonly shortMessage: Buffer;
  readonly status: number;
  readonly messageId: string;
}

export interface SimulatorStats {
  readonly binds: number;
  readonly bindsRefused: number;
  /** interface_version of the last bind. */
  readonly lastInterfaceVersion: number | undefined;
  readonly sessions: number;
  readonly submits: number;
  /** Live map (read it, do not keep it): destination → submit_sm received. */
  readonly submitsByDestination: ReadonlyMap<string, number>;
  readonly uniqueSegments: number;
  readonly duplicates: number;
  readonly throttled: number;
  readonly rejected: number;
  readonly unanswered: number;
  /** Highest number of submit_sm received and not yet answered on one session. */
  readonly maxOutstanding: number;
  readonly dlrsSent: number;
  readonly dlrsAcked: number;
  /** Re-sends of receipts and MOs (no resp in time, or an error resp). */
  readonly deliveryRetries: number;
  readonly deliveriesDropped: number;
  readonly moSent: number;
  readonly moAcked: number;
  readonly enquireLinks: number;
  readonly disconnects: number;
  readonly untracked: number;
}

type Mode = 'none' | 'tx' | 'rx' | 'trx';

interface SimSession {
  readonly id: number;
  readonly s: SmppSession;
  mode: Mode;
  submits: number;
  outstanding: number;
  seq: number;
  /** Receipts/MOs sent on this session awaiting deliver_sm_resp, by sequence number (send order). */
  readonly waiting: Map<number, Delivery>;
}

interface Delivery {
  readonly kind: 'dlr' | 'mo';
  readonly fields: MessageFields;
  /** The session that submitted the message (receipts prefer it). */
  readonly origin: SimSession | undefined;
  attempts: number;
  dueAt: number;
  sentAt: number;
  readonly done?: (acked: boolean) => void;
}

const EMPTY = Buffer.alloc(0);
const FINAL_STATS = ['DELIVRD', 'UNDELIV', 'EXPIRED', 'REJECTD'] as const;
type FinalStat = (typeof FINAL_STATS)[number];
const MESSAGE_STATE: Record<FinalStat, number> = { DELIVRD: 2, UNDELIV: 5, EXPIRED: 3, REJECTD: 8 };
const ERR_CODE: Record<FinalStat, string> = { DELIVRD: '000', UNDELIV: '001', EXPIRED: '002', REJECTD: '003' };

const DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  systemId: 'smsgw',
  password: 'secret',
  dlrDelayMs: 0,
  dlrMix: { DELIVRD: 1, UNDELIV: 0, EXPIRED: 0, REJECTD: 0 },
  tps: 0,
  disconnectEvery: 0,
} as const;

/** The receipt mix must be reproducible. */
const prng = seededRandom;

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** YYMMDDhhmm in UTC, as receipts write dates. */
function dlrDate(ms: number): string {
  const d = new Date(ms);
  return `${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}`;
}

// FNV-1a over the segment's identity, twice with different bases, folded into 53 bits (a JS-safe Set key).
function fnvString(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h = Math.imul(h ^ (c & 0xff), 0x01000193);
    h = Math.imul(h ^ (c >>> 8), 0x01000193);
  }
  return h;
}
function fnvBytes(h: number, b: Uint8Array): number {
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193);
  return h;
}

export class SmscSimulator {
  private readonly cfg: SimulatorConfig;
  private readonly knobs: Required<Omit<SimulatorKnobs, 'tls' | 'observeSubmit' | 'observeReceipt'>> & {
    readonly idFormat: 'decimal' | 'hex' | 'hex-all-digit';
    readonly dlrTextIdFormat: 'same' | 'other' | 'decimal' | 'hex';
    readonly dlrTlvIdFormat: 'same' | 'other' | 'decimal' | 'hex';
    readonly dlrTlvs: boolean;
    readonly firstMessageId: number;
    readonly dlrBeforeResp: boolean;
  };
  private readonly tls: SimulatorKnobs['tls'];
  private readonly observeSubmit: SimulatorKnobs['observeSubmit'];
  private readonly observeReceipt: SimulatorKnobs['observeReceipt'];
  private readonly log: Logger | undefined;
  private readonly random: () => number;
  private readonly bucket: TokenBucket | undefined;
  private server: SmppServer | undefined;
  private _port = 0;
  private tick: NodeJS.Timeout | undefined;
  private readonly sessions = new Set<SimSession>();
  private receivers: SimSession[] = [];
  private rr = 0;
  private nextSessionId = 1;
  private nextMessageId: number;
  private silent = false;
  private stopped = false;
  /** Receipts in dlrDelayMs order (constant delay ⇒ FIFO is time order). */
  private readonly dueDlrs: RingBuffer<Delivery>;
  /** Re-sends waiting out dlrRetryMs (constant ⇒ FIFO is time order). */
  private readonly retries: RingBuffer<Delivery>;
  /** Deliveries ready to go, waiting for a receiving session with room in its window. */
  private readonly backlog: RingBuffer<Delivery>;
  private readonly byDestination = new Map<string, number>();
  private readonly seen = new Set<number>();
  private readonly attemptsBySegment = new Map<number, number>();
  private readonly recent: RingBuffer<Omit<SubmitRecord, 'text'>>;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly counters = {
    binds: 0, bindsRefused: 0, submits: 0, uniqueSegments: 0, duplicates: 0, throttled: 0, rejected: 0, unanswered: 0,
    maxOutstanding: 0, dlrsSent: 0, dlrsAcked: 0, deliveryRetries: 0, deliveriesDropped: 0, moSent: 0, moAcked: 0,
    enquireLinks: 0, disconnects: 0, untracked: 0,
  };
  private lastInterfaceVersion: number | undefined;
  private readonly mixTotal: number;

  constructor(config: SmscSimulatorOptions = {}, logger?: Logger) {
    this.cfg = {
      enabled: config.enabled ?? true,
      host: config.host ?? DEFAULTS.host,
      port: config.port ?? DEFAULTS.port,
      systemId: config.systemId ?? DEFAULTS.systemId,
      password: config.password ?? DEFAULTS.password,
      dlrDelayMs: config.dlrDelayMs ?? DEFAULTS.dlrDelayMs,
      dlrMix: config.dlrMix ?? { ...DEFAULTS.dlrMix },
      tps: config.tps ?? DEFAULTS.tps,
      disconnectEvery: config.disconnectEvery ?? DEFAULTS.disconnectEvery,
    };
    this.knobs = {
      idFormat: config.idFormat ?? 'decimal',
      dlrTextIdFormat: config.dlrTextIdFormat ?? 'same',
      dlrTlvIdFormat: config.dlrTlvIdFormat ?? 'same',
      dlrTlvs: config.dlrTlvs ?? true,
      firstMessageId: config.firstMessageId ?? 1,
      dlrBeforeResp: config.dlrBeforeResp ?? false,
      responseDelayMs: config.responseDelayMs ?? 0,
      slowResponseMs: config.slowResponseMs ?? 2000,
      throttleAttempts: config.throttleAttempts ?? 3,
      seed: config.seed ?? 1,
      dlrRetryMs: config.dlrRetryMs ?? 1000,
      dlrMaxAttempts: config.dlrMaxAttempts ?? 4,
      deliverWindow: config.deliverWindow ?? 100,
      maxTracked: config.maxTracked ?? 2_000_000,
      maxPendingDeliveries: config.maxPendingDeliveries ?? 1_000_000,
      recentCapacity: config.recentCapacity ?? 1000,
      receiptSuffixes: config.receiptSuffixes ?? true,
      tickMs: config.tickMs ?? 20,
    };
    this.tls = config.tls;
    this.observeSubmit = config.observeSubmit;
    this.observeReceipt = config.observeReceipt;
    this.log = logger;
    this.random = prng(this.knobs.seed);
    this.nextMessageId = this.knobs.firstMessageId;
    this.bucket = this.cfg.tps > 0 ? new TokenBucket(this.cfg.tps, Math.max(1, Math.ceil(this.cfg.tps / 10)), Date.now) : undefined;
    this.dueDlrs = new RingBuffer<Delivery>(this.knobs.maxPendingDeliveries, 1024);
    this.retries = new RingBuffer<Delivery>(this.knobs.maxPendingDeliveries, 64);
    this.backlog = new RingBuffer<Delivery>(this.knobs.maxPendingDeliveries, 64);
    this.recent = new RingBuffer<Omit<SubmitRecord, 'text'>>(Math.max(1, this.knobs.recentCapacity), 64);
    const mix = this.cfg.dlrMix;
    this.mixTotal = mix.DELIVRD + mix.UNDELIV + mix.EXPIRED + mix.REJECTD;
  }

  get port(): number {
    return this._port;
  }

  /** Listen on config host/port (port 0: any free port). */
  async start(): Promise<{ port: number }> {
    if (this.server !== undefined) return { port: this._port };
    this.stopped = false;
    const server = createSmppServer((s) => this.onSession(s), this.tls);
    this._port = await server.listen(this.cfg.port, this.cfg.host);
    this.server = server;
    this.tick = setInterval(this.onTick, this.knobs.tickMs);
    this.tick.unref();
    this.log?.info({ host: this.cfg.host, port: this._port }, 'SMSC simulator listening');
    return { port: this._port };
  }

  /** Close every session and stop listening. Undelivered receipts are dropped; pending injectMo calls resolve false. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tick !== undefined) clearInterval(this.tick);
    this.tick = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const dropAll = (q: RingBuffer<Delivery>): void => {
      for (let d = q.shift(); d !== undefined; d = q.shift()) d.done?.(false);
    };
    dropAll(this.dueDlrs);
    dropAll(this.retries);
    dropAll(this.backlog);
    for (const ss of this.sessions) for (const d of ss.waiting.values()) d.done?.(false);
    const server = this.server;
    this.server = undefined;
    await server?.close();
    this.sessions.clear();
    this.receivers = [];
  }

  /** A hung SMSC: while on, every PDU is ignored (no responses, no enquire_link_resp) and nothing is sent. */
  setSilent(on: boolean): void {
    this.silent = on;
  }

  /** Drop every open session now (fault tests). */
  dropSessions(): void {
    for (const ss of this.sessions) ss.s.destroy();
  }

  /** The last `recentCapacity` submit_sm received, oldest first. */
  recentSubmits(): SubmitRecord[] {
    // Text is decoded here, not per submit: the hot path only keeps the bytes.
    return [...this.recent].map((r) => ({ ...r, text: messageText(r.shortMessage, r.dataCoding, r.esmClass) }));
  }

  stats(): SimulatorStats {
    const c = this.counters;
    return {
      ...c,
      lastInterfaceVersion: this.lastInterfaceVersion,
      sessions: this.sessions.size,
      submitsByDestination: this.byDestination,
    };
  }

  /**
   * Send an MO (deliver_sm, esm_class 0) to a bound transceiver/receiver:
   * GSM 03.38 (data_coding 0) when the text fits the alphabet, else UCS-2
   * (8). Resolves true once acknowledged with ESME_ROK, false when dropped
   * after dlrMaxAttempts sends or on stop().
   */
  injectMo(mo: { source: string; destination: string; text: string }): Promise<boolean> {
    if (this.stopped || this.server === undefined) return Promise.resolve(false);
    const gsm = gsmEncode(mo.text);
    const isGsm = gsmDecode(gsm) === mo.text;
    return this.offerMo(mo, 0, isGsm ? 0 : 8, isGsm ? gsm : utf16beEncode(mo.text));
  }

  /** Queue one MO deliver_sm; resolves true once acknowledged with ESME_ROK. */
  private offerMo(mo: { source: string; destination: string }, esmClass: number, dataCoding: number, shortMessage: Uint8Array): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const d: Delivery = {
        kind: 'mo',
        fields: {
          source_addr_ton: 1,
          source_addr_npi: 1,
          source_addr: mo.source,
          dest_addr_ton: 0,
          dest_addr_npi: 1,
          destination_addr: mo.destination,
          esm_class: esmClass,
          registered_delivery: 0,
          data_coding: dataCoding,
          short_message: shortMessage,
        },
        origin: undefined,
        attempts: 0,
        dueAt: Date.now(),
        sentAt: 0,
        done: resolve,
      };
      this.offer(d, Date.now());
    });
  }

  /**
   * A long MO as a phone sends it: `text` split into `parts` pieces, each a
   * deliver_sm with esm_class 0x40 and a UDH (05 00 03 ref total seq), sent
   * in `order` (1-based part numbers; default 1..parts, and a part may be
   * repeated to imitate a redelivery). Resolves true when every part was
   * acknowledged with ESME_ROK.
   */
  injectMoParts(mo: { source: string; destination: string; text: string; parts: number; ref: number; order?: readonly number[] }): Promise<boolean> {
    if (this.stopped || this.server === undefined) return Promise.resolve(false);
    const chars = Array.from(mo.text);
    const total = Math.max(1, Math.min(255, mo.parts));
    const per = Math.ceil(chars.length / total);
    const isGsm = gsmDecode(gsmEncode(mo.text)) === mo.text;
    const order = mo.order ?? Array.from({ length: total }, (_, k) => k + 1);
    const sends = order.map((seq) => {
      const piece = chars.slice((seq - 1) * per, seq * per).join('');
      const body = isGsm ? gsmEncode(piece) : utf16beEncode(piece);
      const udh = Buffer.from([0x05, 0x00, 0x03, mo.ref & 0xff, total, seq]);
      return this.offerMo(mo, 0x40, isGsm ? 0 : 8, Buffer.concat([udh, Buffer.from(body)]));
    });
    return Promise.all(sends).then((r) => r.every(Boolean));
  }

  // ---------------------------------------------------------------- sessions

  private onSession(s: SmppSession): void {
    const ss: SimSession = { id: this.nextSessionId++, s, mode: 'none', submits: 0, outstanding: 0, seq: 0, waiting: new Map() };
    this.sessions.add(ss);
    s.onPdu((pdu) => this.onPdu(ss, pdu));
    s.onError((err) => this.log?.debug({ session: ss.id, err: err.message }, 'simulator session error'));
    s.onClose(() => this.onClosed(ss));
  }

  private onClosed(ss: SimSession): void {
    this.sessions.delete(ss);
    this.receivers = this.receivers.filter((r) => r !== ss);
    // Unacknowledged receipts/MOs go out again on another session, like a real SMSC.
    const now = Date.now();
    for (const d of ss.waiting.values()) this.retryLater(d, now);
    ss.waiting.clear();
  }

  private onPdu(ss: SimSession, pdu: IncomingPdu): void {
    if (this.silent) return;
    if (isResponse(pdu)) {
      this.onResponse(ss, pdu);
      return;
    }
    switch (pdu.command) {
      case 'bind_transceiver':
      case 'bind_transmitter':
      case 'bind_receiver':
        this.onBind(ss, pdu);
        return;
      case 'submit_sm':
        this.onSubmit(ss, pdu);
        return;
      case 'enquire_link':
        this.counters.enquireLinks++;
        ss.s.write(encodeEmptyPdu(COMMAND_ID.enquire_link_resp, pdu.sequence_number));
        return;
      case 'unbind':
        ss.s.write(encodeEmptyPdu(COMMAND_ID.unbind_resp, pdu.sequence_number));
        this.receivers = this.receivers.filter((r) => r !== ss);
        ss.mode = 'none';
        ss.s.close();
        return;
      default:
        ss.s.write(encodeEmptyPdu(COMMAND_ID.generic_nack, pdu.sequence_number, STATUS.ESME_RINVCMDID));
    }
  }

  private onBind(ss: SimSession, pdu: PduHeader & { readonly command: 'bind_transceiver' | 'bind_transmitter' | 'bind_receiver'; readonly system_id?: string; readonly password?: string; readonly interface_version?: number }): void {
    const respCommand: 'bind_transceiver_resp' | 'bind_transmitter_resp' | 'bind_receiver_resp' = `${pdu.command}_resp`;
    this.lastInterfaceVersion = pdu.interface_version;
    let status: number = STATUS.ESME_ROK;
    if (ss.mode !== 'none') status = STATUS.ESME_RALYBND;
    else if (pdu.system_id !== this.cfg.systemId) status = STATUS.ESME_RBINDFAIL;
    else if (!sameSecret(pdu.password ?? '', this.cfg.password)) status = STATUS.ESME_RINVPASWD;
    ss.s.write(encodeBindResp(respCommand, pdu.sequence_number, status, 'SMSCSIM'));
    if (status === STATUS.ESME_RALYBND) return;
    if (status !== STATUS.ESME_ROK) {
      this.counters.bindsRefused++;
      ss.s.close();
      return;
    }
    this.counters.binds++;
    ss.mode = pdu.command === 'bind_transceiver' ? 'trx' : pdu.command === 'bind_transmitter' ? 'tx' : 'rx';
    if (ss.mode !== 'tx') {
      this.receivers.push(ss);
      // A new receiver: deliveries waiting for one go now, re-sends need not wait out their delay.
      const now = Date.now();
      this.moveRetries(now, true);
      this.drainBacklog(now);
    }
  }

  private onSubmit(ss: SimSession, pdu: PduHeader & MessageBody): void {
    const c = this.counters;
    c.submits++;
    const seq = pdu.sequence_number;
    if (ss.mode !== 'tx' && ss.mode !== 'trx') {
      ss.s.write(encodeMessageIdResp(COMMAND_ID.submit_sm_resp, seq, STATUS.ESME_RINVBNDSTS));
      return;
    }
    ss.submits++;
    const dest = pdu.destination_addr ?? '';
    this.observeSubmit?.(dest);
    const prev = this.byDestination.get(dest);
    if (prev !== undefined) this.byDestination.set(dest, prev + 1);
    else if (this.byDestination.size < this.knobs.maxTracked) this.byDestination.set(dest, 1);
    else c.untracked++;
    const suffix = dest.slice(-4);
    const dataCoding = pdu.data_coding ?? 0;
    const key = this.segmentKey(dest, dataCoding, pdu);

    let status: number = STATUS.ESME_ROK;
    if (suffix === '0001') {
      c.unanswered++;
      this.record(ss, pdu, STATUS.ESME_ROK, '');
      return;
    }
    if (suffix === '0099') {
      c.rejected++;
      this.record(ss, pdu, STATUS.ESME_RSYSERR, '');
      ss.s.write(encodeEmptyPdu(COMMAND_ID.generic_nack, seq, STATUS.ESME_RSYSERR));
      return;
    }
    if (this.bucket !== undefined && this.bucket.tryTake() > 0) status = STATUS.ESME_RTHROTTLED;
    else if (suffix === '0011') status = STATUS.ESME_RINVDSTADR;
    else if (suffix === '0058' || suffix === '0014') {
      const n = (this.attemptsBySegment.get(key) ?? 0) + 1;
      if (this.attemptsBySegment.size < this.knobs.maxTracked || this.attemptsBySegment.has(key)) this.attemptsBySegment.set(key, n);
      if (suffix === '0058' && n <= this.knobs.throttleAttempts) status = STATUS.ESME_RTHROTTLED;
      if (suffix === '0014' && n === 1) status = STATUS.ESME_RMSGQFUL;
    }
    if (status !== STATUS.ESME_ROK) {
      if (status === STATUS.ESME_RTHROTTLED || status === STATUS.ESME_RMSGQFUL) c.throttled++;
      else c.rejected++;
      this.record(ss, pdu, status, '');
      this.respond(ss, seq, status, '', suffix === '0002' ? this.knobs.slowResponseMs : this.knobs.responseDelayMs);
      return;
    }

    // Accepted: it now exists at the SMSC whether or not the client hears back.
    if (this.seen.has(key)) c.duplicates++;
    else if (this.seen.size < this.knobs.maxTracked) {
      this.seen.add(key);
      c.uniqueSegments++;
    } else {
      c.uniqueSegments++;
      c.untracked++;
    }
    const n = this.idValue(this.nextMessageId++);
    const messageId = this.knobs.idFormat === 'decimal' ? String(n) : this.knobs.idFormat === 'hex' ? n.toString(16).toUpperCase() : n.toString(16);
    this.record(ss, pdu, status, messageId);
    const wantsDlr = ((pdu.registered_delivery ?? 0) & 0x03) !== 0 && suffix !== '0009';
    const now = Date.now();
    let after: Delivery | undefined;
    if (wantsDlr) {
      const bySuffix = this.knobs.receiptSuffixes;
      const stat: FinalStat = bySuffix && suffix === '0005' ? 'UNDELIV' : bySuffix && suffix === '0003' ? 'EXPIRED' : this.drawStat();
      const dlr = this.receipt(ss, pdu, n, messageId, stat, now);
      this.observeReceipt?.({ destination: dest, messageId, stat });
      if (suffix === '0007' || this.knobs.dlrBeforeResp) this.offer(dlr, now); // before the resp below
      else if (this.cfg.dlrDelayMs <= 0) after = dlr;
      else if (!this.dueDlrs.push(dlr)) c.deliveriesDropped++;
    }
    if (this.cfg.disconnectEvery > 0 && ss.submits % this.cfg.disconnectEvery === 0) {
      c.disconnects++;
      ss.s.destroy();
      if (after !== undefined) this.offer(after, now); // the SMSC has the message: its receipt goes to another session
      return;
    }
    this.respond(ss, seq, status, messageId, suffix === '0002' ? this.knobs.slowResponseMs : this.knobs.responseDelayMs);
    // dlrDelayMs 0: the receipt right after the resp, in the same write (an SMSC that answers and delivers at once).
    if (after !== undefined) this.offer(after, now);
  }

  /**
   * The value of the k-th id: k itself, or for hex-all-digit the k-th number
   * whose hex writing has no letter (k's decimal digits read as hex).
   */
  private idValue(k: number): number {
    return this.knobs.idFormat === 'hex-all-digit' ? Number.parseInt(String(k), 16) : k;
  }

  private respond(ss: SimSession, seq: number, status: number, messageId: string, delayMs: number): void {
    if (delayMs <= 0) {
      ss.s.write(encodeMessageIdResp(COMMAND_ID.submit_sm_resp, seq, status, messageId));
      return;
    }
    ss.outstanding++;
    if (ss.outstanding > this.counters.maxOutstanding) this.counters.maxOutstanding = ss.outstanding;
    const t = setTimeout(() => {
      this.timers.delete(t);
      ss.outstanding--;
      if (!this.silent) ss.s.write(encodeMessageIdResp(COMMAND_ID.submit_sm_resp, seq, status, messageId));
    }, delayMs);
    this.timers.add(t);
  }

  private onResponse(ss: SimSession, pdu: IncomingPdu): void {
    const d = ss.waiting.get(pdu.sequence_number);
    if (d === undefined) return; // late, after a re-send
    ss.waiting.delete(pdu.sequence_number);
    const ok = (pdu.command === 'deliver_sm_resp' || pdu.command === 'data_sm_resp') && pdu.command_status === STATUS.ESME_ROK;
    const now = Date.now();
    if (ok) {
      if (d.kind === 'dlr') this.counters.dlrsAcked++;
      else this.counters.moAcked++;
      d.done?.(true);
    } else {
      // ESME_RX_T_APPN and friends: the ESME could not take it now; offer it again later.
      this.retryLater(d, now);
    }
    // A window slot came free.
    if (this.backlog.length > 0) this.drainBacklog(now);
  }

  // ---------------------------------------------------------------- receipts and MOs

  private receipt(origin: SimSession, pdu: MessageBody, n: number, messageId: string, stat: FinalStat, now: number): Delivery {
    const textId = this.receiptId(this.knobs.dlrTextIdFormat, n, messageId);
    const date = dlrDate(now);
    const text =
      `id:${textId} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} submit date:${date} done date:${date} ` +
      `stat:${stat} err:${ERR_CODE[stat]} text:`;
    const fields: MessageFields = {
      source_addr_ton: 1,
      source_addr_npi: 1,
      source_addr: pdu.destination_addr ?? '',
      dest_addr_ton: pdu.source_addr_ton ?? 0,
      dest_addr_npi: pdu.source_addr_npi ?? 0,
      destination_addr: pdu.source_addr ?? '',
      esm_class: 0x04,
      registered_delivery: 0,
      data_coding: 0,
      short_message: Buffer.from(text, 'latin1'),
      ...(this.knobs.dlrTlvs ? { receipted_message_id: this.receiptId(this.knobs.dlrTlvIdFormat, n, messageId), message_state: MESSAGE_STATE[stat] } : {}),
    };
    return { kind: 'dlr', fields, origin, attempts: 0, dueAt: now + this.cfg.dlrDelayMs, sentAt: 0 };
  }

  /** Submit `n`'s id (`messageId` as in the resp) written in a receipt as `f` says: as in the resp, in the other base, or always zero-padded decimal / lower-case hex. */
  private receiptId(f: 'same' | 'other' | 'decimal' | 'hex', n: number, messageId: string): string {
    const base = f === 'other' ? (this.knobs.idFormat === 'decimal' ? 'hex' : 'decimal') : f;
    return base === 'decimal' ? String(n).padStart(10, '0') : base === 'hex' ? n.toString(16) : messageId;
  }

  private drawStat(): FinalStat {
    if (this.mixTotal <= 0) return 'DELIVRD';
    let r = this.random() * this.mixTotal;
    const mix = this.cfg.dlrMix;
    for (const s of FINAL_STATS) {
      r -= mix[s];
      if (r < 0) return s;
    }
    return 'DELIVRD';
  }

  /** Send now if a receiving session has room, else queue behind what already waits (order kept). */
  private offer(d: Delivery, now: number): void {
    if (this.backlog.length === 0 && this.trySend(d, now)) return;
    if (!this.backlog.push(d)) {
      this.counters.deliveriesDropped++;
      d.done?.(false);
    }
  }

  private drainBacklog(now: number): void {
    for (let d = this.backlog.peek(); d !== undefined; d = this.backlog.peek()) {
      if (!this.trySend(d, now)) return;
      this.backlog.shift();
    }
  }

  /** False when nothing can take it now (no receiver with room, silent, stopped); true when sent or dropped. */
  private trySend(d: Delivery, now: number): boolean {
    if (this.silent || this.stopped) return false;
    const ss = this.pickReceiver(d.origin);
    if (ss === undefined) return false;
    ss.seq = ss.seq >= 0x7fffffff ? 1 : ss.seq + 1;
    const seq = ss.seq;
    let pdu: Buffer;
    try {
      pdu = encodeMessagePdu(0x05, seq, d.fields);
    } catch (err) {
      this.log?.error({ err: err instanceof Error ? err.message : String(err) }, 'simulator could not encode a deliver_sm; dropped');
      this.counters.deliveriesDropped++;
      d.done?.(false);
      return true;
    }
    if (!ss.s.write(pdu)) return false;
    if (d.attempts === 0) {
      if (d.kind === 'dlr') this.counters.dlrsSent++;
      else this.counters.moSent++;
    } else {
      this.counters.deliveryRetries++;
    }
    d.attempts++;
    d.sentAt = now;
    ss.waiting.set(seq, d);
    return true;
  }

  /** Sent without success (no resp in time, error resp, session lost): again after dlrRetryMs, up to dlrMaxAttempts sends. */
  private retryLater(d: Delivery, now: number): void {
    if (d.attempts >= this.knobs.dlrMaxAttempts) {
      this.counters.deliveriesDropped++;
      d.done?.(false);
      return;
    }
    d.dueAt = now + this.knobs.dlrRetryMs;
    if (!this.retries.push(d)) {
      this.counters.deliveriesDropped++;
      d.done?.(false);
    }
  }

  /** A receiving session with room in its window: the submitter's own if it can receive, else round-robin. */
  private pickReceiver(origin: SimSession | undefined): SimSession | undefined {
    const room = this.knobs.deliverWindow;
    if (origin !== undefined && origin.mode !== 'tx' && origin.mode !== 'none' && origin.s.writable && origin.waiting.size < room) return origin;
    const n = this.receivers.length;
    for (let i = 0; i < n; i++) {
      const ss = this.receivers[(this.rr + i) % n] as SimSession;
      if (ss.s.writable && ss.waiting.size < room) {
        this.rr = (this.rr + i + 1) % n;
        return ss;
      }
    }
    return undefined;
  }

  private moveRetries(now: number, all: boolean): void {
    for (let d = this.retries.peek(); d !== undefined && (all || d.dueAt <= now); d = this.retries.peek()) {
      this.retries.shift();
      this.offer(d, now);
    }
  }

  private readonly onTick = (): void => {
    if (this.silent) return;
    const now = Date.now();
    this.drainBacklog(now);
    for (let d = this.dueDlrs.peek(); d !== undefined && d.dueAt <= now; d = this.dueDlrs.peek()) {
      this.dueDlrs.shift();
      this.offer(d, now);
    }
    this.moveRetries(now, false);
    // Deliveries without a response in time: insertion order = send order, one timeout for all.
    for (const ss of this.sessions) {
      for (const [seq, d] of ss.waiting) {
        if (now - d.sentAt < this.knobs.dlrRetryMs) break;
        ss.waiting.delete(seq);
        this.retryLater(d, now);
      }
    }
  };

  // ---------------------------------------------------------------- bookkeeping

  private segmentKey(dest: string, dataCoding: number, pdu: MessageBody): number {
    let h1 = 0x811c9dc5;
    let h2 = 0x050c5d1f;
    h1 = fnvString(h1, dest);
    h2 = fnvString(h2, dest);
    h1 = Math.imul(h1 ^ dataCoding, 0x01000193);
    h2 = Math.imul(h2 ^ dataCoding, 0x01000193);
    const sm = pdu.short_message;
    if (sm !== undefined) {
      h1 = fnvBytes(h1, sm);
      h2 = fnvBytes(h2, sm);
    }
    return (h1 >>> 0) * 0x200000 + ((h2 >>> 0) & 0x1fffff);
  }

  private record(ss: SimSession, pdu: MessageBody, status: number, messageId: string): void {
    if (this.recent.isFull) this.recent.shift();
    this.recent.push({
      session: ss.id,
      sourceAddr: pdu.source_addr ?? '',
      sourceTon: pdu.source_addr_ton ?? 0,
      sourceNpi: pdu.source_addr_npi ?? 0,
      destinationAddr: pdu.destination_addr ?? '',
      destTon: pdu.dest_addr_ton ?? 0,
      destNpi: pdu.dest_addr_npi ?? 0,
      esmClass: pdu.esm_class ?? 0,
      dataCoding: pdu.data_coding ?? 0,
      registeredDelivery: pdu.registered_delivery ?? 0,
      validityPeriod: pdu.validity_period ?? '',
      shortMessage: pdu.short_message ?? EMPTY,
      status,
      messageId,
    });
  }
}
