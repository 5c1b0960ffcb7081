/**
 * CmppSimulator: a China Mobile ISMG for tests, benchmarks and `npm start`
 * (`simulator.protocol: "cmpp2" | "cmpp3"`). It speaks through the same
 * codec as the client; the codec itself is cross-checked against Wireshark's
 * dissector (test/unit/cmpp-tshark.test.ts).
 *
 * Normal behaviour: CONNECT checked (unknown Source_Addr → Status 2, wrong
 * AuthenticatorSource → 3, another version → 4; the connection then closed),
 * answered with AuthenticatorISMG = MD5(Status + AuthenticatorSource +
 * secret); ACTIVE_TEST and TERMINATE answered; every SUBMIT answered with a
 * fresh Msg_Id (composed as an ISMG does: time, ISMG code, sequence) and,
 * when Registered_Delivery = 1, a status report dlrDelayMs later (DELIVRD
 * unless the suffix says otherwise). A report or MO without DELIVER_RESP
 * Result 0 within dlrRetryMs is sent again, up to dlrMaxAttempts sends.
 *
 * Limits: `tps` > 0 answers Result 8 (flow control) above that rate;
 * `disconnectEvery` N > 0 drops a connection on its N-th submit, after
 * accepting it and without answering it.
 *
 * Behaviour by the last four digits of Dest_terminal_Id:
 *
 *   | suffix | behaviour                                                   |
 *   |--------|-------------------------------------------------------------|
 *   | 0001   | never answered; not accepted                                |
 *   | 0003   | report EXPIRED                                              |
 *   | 0005   | report UNDELIV                                              |
 *   | 0006   | report with an ISMG code (MK:0005)                          |
 *   | 0007   | report sent BEFORE the SUBMIT_RESP                          |
 *   | 0008   | Result 8 (flow control) for the first 3 attempts            |
 *   | 0009   | accepted, no report ever                                    |
 *   | 0011   | Result 13 (bad Dest_terminal_Id: permanent reject)          |
 *
 * `receivedTexts(destination)` decodes what arrived (Msg_Fmt 0, 8 and 15
 * GB18030), long texts joined from their UDH parts.
 *
 * `sendMo(from, to, text)` sends a mobile-originated message (in UDH parts
 * when longer than one SMS). `stats()` counts submits, unique segments
 * (destination + Msg_Fmt + content) and duplicates, like the SMPP simulator.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { encodeUcs2 } from '../core/gsm7.js';
import { sameSecret } from '../core/constant-time.js';
import { moText } from './account.js';
import { TokenBucket } from '../core/token-bucket.js';
import type { Logger } from '../telemetry/logger.js';
import {
  MSG_FMT,
  VERSION_BYTE,
  authenticatorIsmg,
  authenticatorSource,
  composeMsgId,
  encodePdu,
  encodeStatusReport,
  timestampText,
  type CmppPdu,
  type CmppVersion,
  type SubmitPdu,
} from './codec.js';
import { CmppConnection } from './connection.js';

export interface CmppSimulatorOptions {
  readonly version: CmppVersion;
  readonly host?: string;
  readonly port?: number;
  readonly spId: string;
  readonly sharedSecret: string;
  /** Report delay after the SUBMIT_RESP. Default 0. */
  readonly dlrDelayMs?: number;
  readonly tps?: number;
  readonly disconnectEvery?: number;
  /** ISMG local time, minutes east of UTC. Default 480. */
  readonly utcOffsetMinutes?: number;
  /** Resend a report/MO without DELIVER_RESP Result 0 after this long. Default 1000. */
  readonly dlrRetryMs?: number;
  readonly dlrMaxAttempts?: number;
  /** Bound of the unique-segment set. Default 2,000,000. */
  readonly maxTracked?: number;
  /** Called for every SUBMIT received (benchmarks time the first one). */
  readonly observeSubmit?: ((destination: string) => void) | undefined;
}

export interface CmppSimulatorStats {
  readonly connects: number;
  readonly connectsRefused: number;
  readonly submits: number;
  readonly accepted: number;
  readonly uniqueSegments: number;
  readonly duplicates: number;
  readonly flowControlled: number;
  readonly reportsSent: number;
  readonly reportsAcked: number;
  readonly moSent: number;
  readonly moAcked: number;
  readonly deliverRetries: number;
  readonly activeTests: number;
  readonly terminates: number;
}

interface Delivery {
  readonly kind: 'report' | 'mo';
  readonly build: (seq: number) => Buffer;
  attempts: number;
  dueAt: number;
  sentAt: number;
  session: Session | undefined;
}

interface Session {
  readonly id: number;
  readonly conn: CmppConnection;
  bound: boolean;
  submits: number;
  seq: number;
  readonly awaiting: Map<number, Delivery>;
}

export class CmppSimulator {
  private server: Server | undefined;
  private readonly sessions = new Set<Session>();
  private readonly sockets = new Set<Socket>();
  private readonly pending: Delivery[] = [];
  private readonly seen = new Set<number>();
  private readonly attempts = new Map<string, number>();
  private readonly bucket: TokenBucket | undefined;
  /** The last RECENT submits, a ring (at = next slot). */
  private readonly submitted: SubmitPdu[] = [];
  private submittedAt = 0;
  /** DELIVER_RESP Results received, by Result. */
  private readonly results = new Map<number, number>();
  private nextSession = 1;
  private msgSeq = 0;
  private moRef = 0;
  private tick: NodeJS.Timeout | undefined;
  private readonly counters = {
    connects: 0, connectsRefused: 0, submits: 0, accepted: 0, uniqueSegments: 0, duplicates: 0, flowControlled: 0,
    reportsSent: 0, reportsAcked: 0, moSent: 0, moAcked: 0, deliverRetries: 0, activeTests: 0, terminates: 0,
  };

  constructor(private readonly options: CmppSimulatorOptions, private readonly logger?: Logger) {
    this.bucket = options.tps !== undefined && options.tps > 0 ? new TokenBucket(options.tps, Math.max(1, Math.ceil(options.tps / 20)), Date.now) : undefined;
  }

  async start(): Promise<{ port: number }> {
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port ?? 0, this.options.host ?? '127.0.0.1', () => resolve());
    });
    this.tick = setInterval(() => this.runDue(), 20);
    this.tick.unref();
    const addr = server.address();
    return { port: typeof addr === 'object' && addr !== null ? addr.port : 0 };
  }

  async stop(): Promise<void> {
    if (this.tick !== undefined) clearInterval(this.tick);
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  stats(): CmppSimulatorStats {
    return { ...this.counters };
  }

  /** DELIVER_RESP Results received so far, by Result (0 acknowledged; others re-sent after dlrRetryMs). */
  deliverResults(): ReadonlyMap<number, number> {
    return new Map(this.results);
  }

    /** The last submits received (at most 1000), for assertions on the wire format. */
  recentSubmits(): readonly SubmitPdu[] {
    return this.submitted.length < RECENT ? [...this.submitted] : [...this.submitted.slice(this.submittedAt), ...this.submitted.slice(0, this.submittedAt)];
  }

  /**
   * The texts that reached `destination` (Dest_terminal_Id, 11 digits), as a
   * handset shows them: each part decoded by its Msg_Fmt (0 ASCII, 8 UCS-2,
   * 15 GB18030), long ones joined by UDH reference in Pk_number order; only
   * complete ones, from the last RECENT submits, duplicates once.
   */
  receivedTexts(destination: string): string[] {
    const texts: string[] = [];
    const long = new Map<number, Map<number, string>>();
    const totals = new Map<number, number>();
    const seen = new Set<string>();
    for (const p of this.recentSubmits()) {
      if (p.destTerminalIds[0] !== destination) continue;
      const key = `${p.msgFmt}|${Buffer.from(p.msgContent).toString('base64')}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const udh = p.tpUdhi === 1 && p.msgContent.length >= 6 && p.msgContent[0] === 5 && p.msgContent[1] === 0 ? p.msgContent : undefined;
      if (udh === undefined) {
        texts.push(moText(p.msgContent, p.msgFmt));
        continue;
      }
      const ref = udh[3] as number;
      const parts = long.get(ref) ?? new Map<number, string>();
      long.set(ref, parts);
      totals.set(ref, udh[4] as number);
      parts.set(udh[5] as number, moText(p.msgContent.subarray(6), p.msgFmt));
    }
    for (const [ref, parts] of long) {
      const total = totals.get(ref) as number;
      if (parts.size !== total) continue;
      let text = '';
      for (let i = 1; i <= total; i++) text += parts.get(i) ?? '';
      texts.push(text);
    }
    return texts;
  }

  /** Drop every connection now (clients reconnect). */
  dropAll(): void {
    for (const s of this.sessions) s.conn.destroy();
  }

  /** Send an MO from `from` (11 digits) to `to` (access code + extension); UCS-2, in UDH parts when over 70 characters. */
  sendMo(from: string, to: string, text: string): void {
    const ascii = /^[\x20-\x7e]*$/.test(text);
    const bytes = ascii ? Buffer.from(text, 'latin1') : Buffer.from(encodeUcs2(text));
    const fmt = ascii ? MSG_FMT.ASCII : MSG_FMT.UCS2;
    const single = 140;
    const parts: Uint8Array[] = [];
    if (bytes.length <= single) parts.push(bytes);
    else {
      const per = ascii ? 134 : 134;
      const ref = this.moRef++ & 0xff;
      const n = Math.ceil(bytes.length / per);
      for (let i = 0; i < n; i++) parts.push(Buffer.concat([Buffer.from([5, 0, 3, ref, n, i + 1]), bytes.subarray(i * per, (i + 1) * per)]));
    }
    for (const content of parts) {
      const udhi = parts.length > 1 ? 1 : 0;
      const msgId = this.newMsgId();
      this.enqueue({
        kind: 'mo',
        build: (seq) => encodePdu({
          command: 'deliver', sequenceId: seq, msgId, destId: to, serviceId: '', tpPid: 0, tpUdhi: udhi, msgFmt: fmt,
          srcTerminalId: from, srcTerminalType: 0, registeredDelivery: 0, msgContent: content, linkId: '', reserve: '',
        }, this.options.version),
        attempts: 0, dueAt: Date.now(), sentAt: 0, session: undefined,
      });
    }
    this.runDue();
  }

  // ---------------------------------------------------------------- sessions

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    const conn = new CmppConnection(socket, this.options.version);
    const session: Session = { id: this.nextSession++, conn, bound: false, submits: 0, seq: 0, awaiting: new Map() };
    this.sessions.add(session);
    conn.onPdu((pdu) => this.onPdu(session, pdu));
    conn.onError(() => undefined);
    conn.onClose(() => {
      this.sessions.delete(session);
      // Deliveries awaiting a resp on this session go out again elsewhere.
      for (const d of session.awaiting.values()) {
        d.session = undefined;
        d.dueAt = Date.now();
        this.pending.push(d);
      }
      session.awaiting.clear();
    });
  }

  private onPdu(s: Session, pdu: CmppPdu): void {
    const v = this.options.version;
    switch (pdu.command) {
      case 'connect': {
        const ts = String(pdu.timestamp).padStart(10, '0');
        let status = 0;
        if (pdu.sourceAddr !== this.options.spId) status = 2;
        else if (!sameSecret(authenticatorSource(pdu.sourceAddr, this.options.sharedSecret, ts), pdu.authenticatorSource)) status = 3;
        else if (pdu.version !== VERSION_BYTE[v]) status = 4;
        s.conn.write(encodePdu({ command: 'connect_resp', sequenceId: pdu.sequenceId, status, authenticatorIsmg: authenticatorIsmg(v, status, pdu.authenticatorSource, this.options.sharedSecret), version: VERSION_BYTE[v] }, v));
        if (status === 0) {
          s.bound = true;
          this.counters.connects++;
          this.runDue();
        } else {
          this.counters.connectsRefused++;
          s.conn.close();
        }
        return;
      }
      case 'active_test':
        this.counters.activeTests++;
        s.conn.write(encodePdu({ command: 'active_test_resp', sequenceId: pdu.sequenceId, reserved: 0 }, v));
        return;
      case 'terminate':
        this.counters.terminates++;
        s.conn.write(encodePdu({ command: 'terminate_resp', sequenceId: pdu.sequenceId }, v));
        s.conn.close();
        return;
      case 'submit':
        if (s.bound) this.onSubmit(s, pdu);
        return;
      case 'deliver_resp': {
        const d = s.awaiting.get(pdu.sequenceId);
        if (d === undefined) return;
        s.awaiting.delete(pdu.sequenceId);
        this.results.set(pdu.result, (this.results.get(pdu.result) ?? 0) + 1);
        if (pdu.result === 0) {
          if (d.kind === 'report') this.counters.reportsAcked++;
          else this.counters.moAcked++;
          return;
        }
        this.retryLater(d);
        return;
      }
      default:
        return;
    }
  }

  private onSubmit(s: Session, pdu: SubmitPdu): void {
    const v = this.options.version;
    this.counters.submits++;
    this.options.observeSubmit?.(pdu.destTerminalIds[0] ?? '');
    if (this.submitted.length < RECENT) this.submitted.push(pdu);
    else {
      this.submitted[this.submittedAt] = pdu;
      this.submittedAt = (this.submittedAt + 1) % RECENT;
    }
    const dest = pdu.destTerminalIds[0] ?? '';
    const suffix = dest.slice(-4);
    if (suffix === '0001') return;
    const answer = (msgId: string, result: number): void => {
      s.conn.write(encodePdu({ command: 'submit_resp', sequenceId: pdu.sequenceId, msgId, result }, v));
    };
    if (this.bucket !== undefined && this.bucket.tryTake() > 0) {
      this.counters.flowControlled++;
      answer('0', 8);
      return;
    }
    const key = `${dest}|${pdu.msgFmt}|${Buffer.from(pdu.msgContent).toString('base64')}`;
    if (suffix === '0008') {
      const n = (this.attempts.get(key) ?? 0) + 1;
      this.attempts.set(key, n);
      if (n <= 3) {
        this.counters.flowControlled++;
        answer('0', 8);
        return;
      }
    }
    if (suffix === '0011') {
      answer('0', 13);
      return;
    }
    const msgId = this.newMsgId();
    this.counters.accepted++;
    const h = hash53(key);
    if (this.seen.has(h)) this.counters.duplicates++;
    else if (this.seen.size < (this.options.maxTracked ?? 2_000_000)) {
      this.seen.add(h);
      this.counters.uniqueSegments++;
    }
    s.submits++;
    const every = this.options.disconnectEvery ?? 0;
    if (every > 0 && s.submits % every === 0) {
      s.conn.destroy();
      return;
    }
    const wantReport = pdu.registeredDelivery === 1 && suffix !== '0009';
    if (wantReport) {
      const stat = suffix === '0003' ? 'EXPIRED' : suffix === '0005' ? 'UNDELIV' : suffix === '0006' ? 'MK:0005' : 'DELIVRD';
      const before = suffix === '0007';
      this.report(s, pdu, msgId, stat, before ? 0 : this.options.dlrDelayMs ?? 0, before);
    }
    if (suffix !== '0007') answer(msgId, 0);
    else setTimeout(() => answer(msgId, 0), 50); // the report goes first
  }

  private report(s: Session, pdu: SubmitPdu, msgId: string, stat: string, delayMs: number, now: boolean): void {
    const v = this.options.version;
    const offset = this.options.utcOffsetMinutes ?? 480;
    const t = timestampText(Date.now(), offset);
    const yymmddhhmm = `${String(new Date(Date.now() + offset * 60_000).getUTCFullYear() % 100).padStart(2, '0')}${t.slice(0, 8)}`;
    const dest = pdu.destTerminalIds[0] ?? '';
    const content = encodeStatusReport({ msgId, stat, submitTime: yymmddhhmm, doneTime: yymmddhhmm, destTerminalId: dest, smscSequence: this.msgSeq }, v);
    const d: Delivery = {
      kind: 'report',
      build: (seq) => encodePdu({
        command: 'deliver', sequenceId: seq, msgId: this.newMsgId(), destId: pdu.srcId, serviceId: pdu.serviceId, tpPid: 0, tpUdhi: 0, msgFmt: 0,
        srcTerminalId: dest, srcTerminalType: 0, registeredDelivery: 1, msgContent: content, linkId: '', reserve: '',
      }, v),
      attempts: 0, dueAt: Date.now() + delayMs, sentAt: 0, session: s,
    };
    if (now) this.send(d, s);
    else this.enqueue(d);
  }

  // ---------------------------------------------------------------- deliveries

  private enqueue(d: Delivery): void {
    this.pending.push(d);
  }

  private retryLater(d: Delivery): void {
    const max = this.options.dlrMaxAttempts ?? 4;
    if (d.attempts >= max) return;
    this.counters.deliverRetries++;
    d.dueAt = Date.now() + (this.options.dlrRetryMs ?? 1000);
    d.session = undefined;
    this.pending.push(d);
  }

  private send(d: Delivery, s: Session): void {
    const seq = ++s.seq;
    d.attempts++;
    d.sentAt = Date.now();
    s.awaiting.set(seq, d);
    if (d.kind === 'report') this.counters.reportsSent++;
    else this.counters.moSent++;
    s.conn.write(d.build(seq));
  }

  private runDue(): void {
    const now = Date.now();
    const retryMs = this.options.dlrRetryMs ?? 1000;
    // Unanswered deliveries past retryMs are sent again.
    for (const s of this.sessions) {
      for (const [seq, d] of s.awaiting) {
        if (now - d.sentAt < retryMs) break;
        s.awaiting.delete(seq);
        this.retryLater(d);
      }
    }
    if (this.pending.length === 0) return;
    const bound = [...this.sessions].filter((s) => s.bound && s.conn.writable);
    if (bound.length === 0) return;
    let k = 0;
    const keep: Delivery[] = [];
    for (const d of this.pending) {
      if (d.dueAt > now) {
        keep.push(d);
        continue;
      }
      const target = d.session !== undefined && d.session.bound && d.session.conn.writable ? d.session : (bound[k++ % bound.length] as Session);
      this.send(d, target);
    }
    this.pending.length = 0;
    this.pending.push(...keep);
  }

  private newMsgId(): string {
    const offset = this.options.utcOffsetMinutes ?? 480;
    const d = new Date(Date.now() + offset * 60_000);
    this.msgSeq = (this.msgSeq + 1) & 0xffff;
    return composeMsgId({ month: d.getUTCMonth() + 1, day: d.getUTCDate(), hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds(), ismg: 10086, sequence: this.msgSeq });
  }
}

const RECENT = 1000;

function hash53(s: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}
