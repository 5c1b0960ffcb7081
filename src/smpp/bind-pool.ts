/**
 * BindPool: one SMPP account's delivery path — a SubmitPool
 * (src/transport/pool.ts: lanes, TPS, throttle back-off, retries,
 * back-pressure) over `binds` transceiver Binds, with the SMPP parts here:
 * the submit_sm encoding, status names and throttling statuses
 * (ESME_RTHROTTLED 0x58, ESME_RMSGQFUL 0x14, also as generic_nack), and
 * deliver_sm/data_sm → receipt or MO.
 *
 * Receipts and MO: a deliver_sm/data_sm with esm_class 0x04 or a
 * receipted_message_id TLV is a receipt (TLVs preferred, Appendix B text as
 * fallback); anything else is an MO (text decoded by data_coding). The
 * SMSC gets ESME_ROK only after the handler's promise resolves, and
 * ESME_RX_T_APPN (retry later) when it rejects or no handler is set yet.
 *
 * Addresses. The source is sent TON 0 / NPI 1 when all digits — Chinese
 * service codes (10690000…) are neither international nor national numbers,
 * and 0/1 is what the operators' SMSCs expect — and TON 5 / NPI 0
 * (alphanumeric) otherwise. Destinations carry the country code: TON 1 / NPI 1.
 */
import type { SmppAccountConfig } from '../config/schema.js';
import { DlrScan, messageStateToState, receiptOperatorId, scanDlrText, statToState, type IdBase, type ReceiptIdBase, type ReceiptState } from '../core/dlr.js';
import { partFromUdh, type MoPart } from '../core/mo.js';
import type { DeliveryReceipt, MobileOriginated, SubmitRequest } from '../core/ports.js';
import { SubmitPool, type Inbound, type InboundAnswer, type PoolProtocol, type SubmitPoolOptions, type SubmitPoolStats } from '../transport/pool.js';
import { Bind, type InboundMessagePdu } from './bind.js';
import { ESM_DELIVERY_RECEIPT, ESM_UDHI, STATUS, encodeMessagePdu, isThrottleStatus, messageText, receiptText, statusName, userData } from './wire.js';

/** `status` of a `rejected` outcome for a request refused before sending (it could not be encoded). */
export const LOCAL_REJECT_STATUS = -1;

export interface BindPoolOptions extends SubmitPoolOptions {
  /** Receipt dates are SMSC local time; its offset from UTC in minutes (China +480). Default 0. */
  readonly dlrUtcOffsetMinutes?: number;
  /** Passed to every Bind (tests shorten them). */
  readonly bind?: { readonly sweepMs?: number; readonly stableAfterMs?: number; readonly connectTimeoutMs?: number };
  /** Extra TLS trust anchors (private CA). */
  readonly ca?: string | Buffer | (string | Buffer)[];
}

export interface BindPoolStats extends SubmitPoolStats {
  /**
   * The base this account's submit_sm_resp ids have shown: `hex` once one had
   * a letter a–f, `digits` while all were digits (decimal, or hex that has not
   * shown a letter yet), undefined before the first.
   */
  readonly idFormatSeen: 'digits' | 'hex' | undefined;
}

const HEX_LETTER = /[a-fA-F]/;

/** deliver_sm_resp status for how the pool handled the inbound message (deliverInbound's mapping, one promise less). */
const deliverStatus = (answer: InboundAnswer): number => (answer === 'ok' ? STATUS.ESME_ROK : STATUS.ESME_RX_T_APPN);

/** toReceipt's scan of the receipt text, reused (toReceipt is synchronous). */
const RECEIPT_SCAN = new DlrScan();

const RE_DIGITS = /^[0-9]+$/;

/** '00'…'99'. */
const TWO_DIGITS: readonly string[] = Array.from({ length: 100 }, (_, n) => (n < 10 ? `0${n}` : String(n)));
/** The last relativeValidity answer: the parts of a message, and messages of a job, share a deadline, so most calls repeat the previous second. */
let lastValiditySeconds = -1;
let lastValidity = '';

/** SMPP relative time (`YYMMDDhhmmss000R`) for a duration; days cap at 99. */
export function relativeValidity(ms: number): string {
  let s = Math.max(60, Math.ceil(ms / 1000)); // a minute at least: some SMSCs refuse shorter
  if (s === lastValiditySeconds) return lastValidity;
  const seconds = s;
  const days = Math.min(99, Math.floor(s / 86_400));
  if (days === 99) s = 99 * 86_400 + 86_399;
  s -= days * 86_400;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  lastValidity = `0000${TWO_DIGITS[days] as string}${TWO_DIGITS[h] as string}${TWO_DIGITS[m] as string}${TWO_DIGITS[sec] as string}000R`;
  lastValiditySeconds = seconds;
  return lastValidity;
}

function encodeSubmitSm(req: SubmitRequest, now: number): Buffer {
  const numeric = RE_DIGITS.test(req.source);
  return encodeMessagePdu(0x04, 0, {
    source_addr_ton: numeric ? 0 : 5,
    source_addr_npi: numeric ? 1 : 0,
    source_addr: req.source,
    dest_addr_ton: 1,
    dest_addr_npi: 1,
    destination_addr: req.destination,
    esm_class: req.esmClass,
    registered_delivery: req.registeredDelivery ? 1 : 0,
    data_coding: req.dataCoding,
    validity_period: relativeValidity(req.deadline - now),
    short_message: req.payload,
  });
}

export const SMPP_PROTOCOL: PoolProtocol = {
  name: 'SMPP',
  segmentProfile: 'smpp',
  metricFamily: 'smpp',
  encode: encodeSubmitSm,
  isOk: (status) => status === STATUS.ESME_ROK,
  isThrottle: isThrottleStatus,
  statusName,
};

export class BindPool extends SubmitPool {
  private readonly dlrOffset: number;
  /** Base of this account's submit_sm_resp ids; undefined for `auto`. */
  private readonly idBase: IdBase | undefined;
  private readonly textIdBase: ReceiptIdBase;
  private readonly tlvIdBase: ReceiptIdBase;
  /** What the resp ids have shown so far: 'hex' once one had a letter a–f (reported, see idFormatSeen). */
  private seenBase: 'digits' | 'hex' | undefined;

  constructor(account: SmppAccountConfig, options: BindPoolOptions) {
    const poolAccount = {
      name: account.name,
      links: account.binds,
      window: account.window,
      tps: account.tps,
      throttleBackoffMs: account.throttleBackoffMs,
      reconnectMaxMs: account.reconnectMaxMs,
    };
    // The deliver handler is a closure over `self`: Binds are made inside super(), before `this` is usable here.
    let self: BindPool | undefined;
    super(poolAccount, SMPP_PROTOCOL, (index, events) =>
      new Bind({
        account,
        index,
        events: { ...events, deliver: (pdu) => (self as BindPool).onDeliver(pdu) },
        logger: options.logger,
        metrics: options.metrics,
        ...(options.now !== undefined ? { now: options.now } : {}),
        ...(options.random !== undefined ? { random: options.random } : {}),
        ...(options.ca !== undefined ? { ca: options.ca } : {}),
        ...options.bind,
      }), options);
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the deliver closure was made inside super(), before `this` could be named
    self = this;
    this.dlrOffset = options.dlrUtcOffsetMinutes ?? 0;
    this.idBase = account.idFormat === 'decimal' || account.idFormat === 'hex' ? account.idFormat : undefined;
    this.textIdBase = account.receiptTextIdFormat ?? 'same';
    this.tlvIdBase = account.receiptTlvIdFormat ?? 'same';
  }

  override stats(): BindPoolStats {
    return { ...super.stats(), idFormatSeen: this.seenBase };
  }

  protected override accepted(messageId: string): void {
    if (this.seenBase !== 'hex') this.learnIdBase(messageId);
  }

  /** `auto` learns (and a configured decimal account checks) the base of the resp ids: a letter a–f means hex. */
  private learnIdBase(messageId: string): void {
    if (!HEX_LETTER.test(messageId)) {
      this.seenBase ??= 'digits';
      return;
    }
    this.seenBase = 'hex';
    if (this.idBase === 'decimal') {
      this.log.warn({ messageId }, 'idFormat is decimal but the SMSC answered a hexadecimal message id; receipts with letters will not match: check idFormat');
    } else if (this.idBase === undefined) {
      this.log.info('submit_sm_resp ids are hexadecimal (learned; idFormat auto matches receipts by the id as written)');
    }
  }

  private onDeliver(pdu: InboundMessagePdu): Promise<number> {
    return this.answerInbound(this.inbound(pdu)).then(deliverStatus);
  }

  private inbound(pdu: InboundMessagePdu): Inbound {
    const now = this.now();
    const esm = pdu.esm_class ?? 0;
    if ((esm & ESM_DELIVERY_RECEIPT) !== 0 || pdu.receipted_message_id !== undefined) {
      const receipt = this.toReceipt(pdu, now);
      return receipt === undefined ? { kind: 'bad', detail: `esm_class ${esm}` } : { kind: 'receipt', receipt };
    }
    const ud = userData(pdu);
    // A long MO arrives in parts: UDH (esm_class 0x40, IEI 0x00/0x08) or sar_* TLVs.
    const part: MoPart | undefined = (esm & ESM_UDHI) !== 0
      ? partFromUdh(ud)?.part
      : pdu.sar_msg_ref_num !== undefined && pdu.sar_total_segments !== undefined && pdu.sar_segment_seqnum !== undefined && pdu.sar_total_segments > 1
        ? { ref: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, seq: pdu.sar_segment_seqnum }
        : undefined;
    const mo: MobileOriginated = {
      account: this.account,
      source: pdu.source_addr ?? '',
      destination: pdu.destination_addr ?? '',
      text: messageText(ud, pdu.data_coding ?? 0, esm),
      receivedAt: now,
      ...(part !== undefined && part.total > 1 ? { part } : {}),
    };
    return { kind: 'mo', mo };
  }

  private toReceipt(pdu: InboundMessagePdu, now: number): DeliveryReceipt | undefined {
    const ud = userData(pdu);
    // The text's fields land in one reused scan object (this runs synchronously, start to end).
    const scan = RECEIPT_SCAN;
    const parsed = ud.length > 0 && scanDlrText(receiptText(ud, pdu.data_coding ?? 0), this.dlrOffset, scan);
    const tlvId = pdu.receipted_message_id?.trim();
    const fromTlv = tlvId !== undefined && tlvId.length > 0;
    const written = fromTlv ? tlvId : parsed ? scan.id : undefined;
    if (written === undefined) return undefined;
    // The one key this receipt is matched under, in the account's base (no second reading anywhere).
    const messageId = receiptOperatorId(written, fromTlv ? this.tlvIdBase : this.textIdBase, this.idBase);
    if (messageId.length === 0) return undefined;
    let state: ReceiptState | undefined = pdu.message_state !== undefined ? messageStateToState(pdu.message_state) : undefined;
    if (state === undefined && parsed && scan.stat !== undefined) state = statToState(scan.stat);
    if (state === undefined) return undefined;
    let error = parsed ? scan.err : undefined;
    if (error === undefined && pdu.network_error_code !== undefined && pdu.network_error_code.length > 0) {
      error = `network:${pdu.network_error_code.toString('hex')}`;
    }
    const doneAt = (parsed ? scan.doneDate : undefined) ?? now;
    return error === undefined
      ? { account: this.account, messageId, state, doneAt }
      : { account: this.account, messageId, state, error, doneAt };
  }
}
