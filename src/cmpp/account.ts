/**
 * CmppAccount: one China Mobile CMPP 2.0 / 3.0 account's delivery path — a
 * SubmitPool (src/transport/pool.ts: lanes, TPS, flow-control back-off,
 * retries, back-pressure) over `links` CmppLinks, the same transport port
 * the dispatcher uses for SMPP. What is CMPP's is here:
 *
 * CMPP_SUBMIT from a SubmitRequest (the dispatcher planned it with segment
 * profile `cmpp`: ASCII Msg_Fmt 0 or UCS-2 Msg_Fmt 8, ≤ 140 octets; with
 * `gb18030: true` profile `cmpp-gb18030`: other text GB18030, Msg_Fmt 15):
 *   Src_Id          the account's access code + the unit's extension: the
 *                   request's source when it already starts with the access
 *                   code, else access code + source (≤ 21 digits, else the
 *                   segment is rejected CMPP_PDU_INVALID)
 *   Dest_terminal_Id  the number without its 86 (ISMGs expect 11 digits)
 *   TP_udhi, Pk_total, Pk_number   from the 6-octet UDH (05 00 03 ref n i)
 *   ValId_Time      absolute, ISMG local time: YYMMDDhhmmss0 + quarter-hours + sign
 *   Registered_Delivery 1 unless the account turns receipts off (an ISMG
 *                   sends none unless asked)
 *   Service_Id, Msg_src, Fee_UserType, FeeType, FeeCode   the account's
 * SUBMIT_RESP Result 0 → accepted with the Msg_Id (canonical decimal);
 * Result 8 (flow control) → the pool's throttle back-off, as ESME_RTHROTTLED;
 * any other Result → rejected with its name.
 *
 * DELIVER with Registered_Delivery 1 is a status report: its Msg_Id (the
 * SUBMIT_RESP's, same canonical form) and Stat go into the same receipt path
 * as SMPP receipts (early ones included); a Stat that is not one of the
 * standard words (ISMG codes such as MK:0005, DB:0008) ends `undeliverable`
 * with the code as the error. Anything else is an MO (Msg_Fmt 0 ASCII, 8
 * UCS-2, 15 GB18030; TP_udhi 1: a part of a long one, re-assembled by the MO
 * inbox; its destination is the Dest_Id without the access code, so the unit
 * whose sender follows the access code owns it). The DELIVER_RESP (echoing
 * the DELIVER's own Msg_Id) says Result 0 only after the handler's durable
 * write; 8 (flow control: the temporary "not now") while storage is full
 * (src/storage/health.ts; SMPP answers ESME_RX_T_APPN), and 9 (other error)
 * when the handler fails otherwise — the ISMG keeps the report or MO and
 * sends it again either way.
 */
import type { CmppAccountConfig } from '../config/schema.js';
import { parseDlrDate, statToState } from '../core/dlr.js';
import { decodeUcs2 } from '../core/gsm7.js';
import { partFromUdh, type MoPart } from '../core/mo.js';
import type { MobileOriginated, SubmitRequest } from '../core/ports.js';
import type { Metrics } from '../telemetry/metrics.js';
import { SubmitPool, type Inbound, type InboundAnswer, type PoolProtocol, type SubmitPoolOptions } from '../transport/pool.js';
import { MSG_FMT, RESULT_FLOW_CONTROL, decodeStatusReport, encodePdu, resultName, type CmppVersion, type DeliverPdu } from './codec.js';
import { CmppLink, DELIVER_RETRY_RESULT, DELIVER_STORAGE_FULL_RESULT, versionOf } from './link.js';

const ESM_UDHI = 0x40;

export interface CmppAccountOptions extends SubmitPoolOptions {
  /** Passed to every link (tests shorten them). */
  readonly link?: { readonly sweepMs?: number; readonly stableAfterMs?: number; readonly connectTimeoutMs?: number };
}

/** The last ValId_Time computed (consecutive submits mostly share their deadline's second). */
let validityCache = { second: NaN, offset: NaN, text: '' };

/** ValId_Time: absolute time in the ISMG's zone, SMPP 3.3 form `YYMMDDhhmmsstnnp` (t tenths, nn quarter hours from UTC, p + or -). */
export function absoluteValidity(deadline: number, utcOffsetMinutes: number): string {
  const second = Math.floor(deadline / 1000);
  const cached = validityCache;
  if (cached.second === second && cached.offset === utcOffsetMinutes) return cached.text;
  const text = validityText(second * 1000, utcOffsetMinutes);
  validityCache = { second, offset: utcOffsetMinutes, text };
  return text;
}

function validityText(deadline: number, utcOffsetMinutes: number): string {
  const d = new Date(deadline + utcOffsetMinutes * 60_000);
  const two = (n: number): string => (n < 10 ? `0${n}` : String(n));
  const q = Math.floor(Math.abs(utcOffsetMinutes) / 15);
  return `${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}0${two(q)}${utcOffsetMinutes < 0 ? '-' : '+'}`;
}

/** Src_Id for a request's source: the access code + the unit's extension. */
export function sourceId(accessCode: string, source: string): string {
  return source.startsWith(accessCode) ? source : accessCode + source;
}

/** A Chinese number as ISMGs want it (11 digits, no 86); others unchanged. */
export function terminalId(number: string): string {
  return number.length === 13 && number.startsWith('861') ? number.slice(2) : number;
}

/** A terminal id from the ISMG as the gateway writes numbers: digits with country code. */
export function fromTerminalId(id: string): string {
  const digits = id.startsWith('+') ? id.slice(1) : id;
  return /^1[3-9][0-9]{9}$/.test(digits) ? `86${digits}` : digits;
}

const gb18030 = new TextDecoder('gb18030');

/** MO text by Msg_Fmt (0 ASCII, 8 UCS-2, 15 GB18030, else Latin-1). */
export function moText(content: Uint8Array, msgFmt: number): string {
  switch (msgFmt) {
    case MSG_FMT.UCS2:
      return decodeUcs2(content);
    case MSG_FMT.GB:
      return gb18030.decode(content);
    default:
      return Buffer.from(content).toString('latin1');
  }
}

/** DELIVER_RESP Result for how the report / MO was handled (0 only once durable). */
export function deliverResult(answer: InboundAnswer): number {
  return answer === 'ok' ? 0 : answer === 'storage-full' ? DELIVER_STORAGE_FULL_RESULT : DELIVER_RETRY_RESULT;
}

export function cmppProtocol(account: CmppAccountConfig): PoolProtocol {
  const version: CmppVersion = versionOf(account);
  const msgSrc = account.msgSrc === '' ? account.spId : account.msgSrc;
  return {
    name: 'CMPP',
    segmentProfile: account.gb18030 === true ? 'cmpp-gb18030' : 'cmpp',
    metricFamily: 'cmpp',
    encode(req: SubmitRequest, now: number): Buffer {
      void now;
      const udhi = (req.esmClass & ESM_UDHI) !== 0 && req.payload.length >= 6;
      return encodePdu({
        command: 'submit',
        sequenceId: 0,
        msgId: '0',
        pkTotal: udhi ? (req.payload[4] as number) : 1,
        pkNumber: udhi ? (req.payload[5] as number) : 1,
        registeredDelivery: req.registeredDelivery && account.registeredDelivery ? 1 : 0,
        msgLevel: 0,
        serviceId: account.serviceId,
        feeUserType: account.feeUserType,
        feeTerminalId: '',
        feeTerminalType: 0,
        tpPid: 0,
        tpUdhi: udhi ? 1 : 0,
        msgFmt: req.dataCoding,
        msgSrc,
        feeType: account.feeType,
        feeCode: account.feeCode,
        valIdTime: absoluteValidity(req.deadline, account.utcOffsetMinutes),
        atTime: '',
        srcId: sourceId(account.accessCode, req.source),
        destTerminalIds: [terminalId(req.destination)],
        destTerminalType: 0,
        msgContent: req.payload,
        linkId: '',
        reserve: '',
      }, version);
    },
    isOk: (status) => status === 0,
    isThrottle: (status) => status === RESULT_FLOW_CONTROL,
    statusName: resultName,
  };
}

export class CmppAccount extends SubmitPool {
  readonly version: CmppVersion;
  private readonly settings: CmppAccountConfig;
  private readonly metrics: Metrics;
  /** At most 3 kinds × 3 Results. */
  private readonly deliverCounters = new Map<string, { inc(): void }>();

  constructor(account: CmppAccountConfig, options: CmppAccountOptions) {
    let self: CmppAccount | undefined;
    super(
      { name: account.name, links: account.links, window: account.window, tps: account.tps, throttleBackoffMs: account.throttleBackoffMs, reconnectMaxMs: account.reconnectMaxMs },
      cmppProtocol(account),
      (index, events) =>
        new CmppLink({
          account,
          index,
          events: { ...events, deliver: (pdu) => (self as CmppAccount).onDeliver(pdu) },
          logger: options.logger,
          metrics: options.metrics,
          ...(options.now !== undefined ? { now: options.now } : {}),
          ...(options.random !== undefined ? { random: options.random } : {}),
          ...options.link,
        }),
      options,
    );
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the deliver closure was made inside super(), before `this` could be named
    self = this;
    this.metrics = options.metrics;
    this.settings = account;
    this.version = versionOf(account);
  }

  private onDeliver(pdu: DeliverPdu): Promise<number> {
    const inbound = this.inbound(pdu);
    return this.answerInbound(inbound).then((answer) => {
      const result = deliverResult(answer);
      this.countDeliver(inbound.kind, result);
      return result;
    });
  }

  /** smsgw_cmpp_deliver_total, through cached children (one per kind and Result seen). */
  private countDeliver(kind: Inbound['kind'], result: number): void {
    const key = `${kind}:${result}`;
    let c = this.deliverCounters.get(key);
    if (c === undefined) {
      c = this.metrics.cmppDelivers.labels(this.account, kind === 'receipt' ? 'report' : kind, String(result));
      this.deliverCounters.set(key, c);
    }
    c.inc();
  }

  private inbound(pdu: DeliverPdu): Inbound {
    const now = this.now();
    if (pdu.registeredDelivery === 1) {
      const report = decodeStatusReport(pdu.msgContent, this.version);
      if (report === undefined) return { kind: 'bad', detail: `status report of ${pdu.msgContent.length} octets` };
      const stat = report.stat.trim().toUpperCase();
      const known = statToState(stat);
      const state = known ?? 'undeliverable';
      const doneAt = parseDlrDate(report.doneTime, this.settings.utcOffsetMinutes) ?? now;
      return {
        kind: 'receipt',
        receipt: state === 'delivered'
          ? { account: this.account, messageId: report.msgId, state, doneAt }
          : { account: this.account, messageId: report.msgId, state, error: stat, doneAt },
      };
    }
    let content = pdu.msgContent;
    let part: MoPart | undefined;
    if (pdu.tpUdhi === 1) {
      const udh = partFromUdh(content);
      if (udh !== undefined) {
        part = udh.part;
        content = content.subarray(udh.headerLength);
      } else if (content.length > 0 && (content[0] as number) + 1 <= content.length) {
        content = content.subarray((content[0] as number) + 1); // a UDH without concatenation: skip it
      }
    }
    const mo: MobileOriginated = {
      account: this.account,
      source: fromTerminalId(pdu.srcTerminalId),
      // Src_Id was access code + the unit's sender: the unit is found by what follows the access code.
      destination: pdu.destId.startsWith(this.settings.accessCode) && pdu.destId.length > this.settings.accessCode.length ? pdu.destId.slice(this.settings.accessCode.length) : pdu.destId,
      // …and as it arrived: the gateway routes by it and this account (src/directory/senders.ts canonicalDestination).
      onAir: pdu.destId,
      text: moText(content, pdu.msgFmt),
      receivedAt: now,
      ...(part !== undefined && part.total > 1 ? { part } : {}),
    };
    return { kind: 'mo', mo };
  }
}
