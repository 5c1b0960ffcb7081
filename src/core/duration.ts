/**
 * Durations and SMPP time strings.
 *
 * ISO-8601 durations come from the API (`validity`) and config; SMPP wants
 * validity_period as a relative time, or an absolute UTC time; delivery
 * receipts carry `submit date` and `done date` as YYMMDDhhmm[ss].
 */
import { GatewayError } from './errors.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;

/**
 * PnW, PnD and the time part TnHnMnS, in this order, each optional but at
 * least one present; the last one present may carry a fraction (`.` or `,`).
 * Years and months are refused: they have no fixed length in milliseconds.
 */
const ISO_DURATION =
  /^P(?:(\d+(?:[.,]\d+)?)W)?(?:(\d+(?:[.,]\d+)?)D)?(?:T(?:(\d+(?:[.,]\d+)?)H)?(?:(\d+(?:[.,]\d+)?)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$/;
const ISO_UNITS = [WEEK, DAY, HOUR, MINUTE, SECOND] as const;
const MAX_ISO_LENGTH = 64;

/** Milliseconds of an ISO-8601 duration such as P1D, PT1H30M, PT0.5S; undefined if malformed. */
export function parseIsoDuration(s: string): number | undefined {
  if (s.length > MAX_ISO_LENGTH) return undefined;
  const m = ISO_DURATION.exec(s);
  if (m === null) return undefined;
  // `T` must be followed by a component, and `P` alone says nothing.
  const tAt = s.indexOf('T');
  if (tAt === s.length - 1) return undefined;
  let ms = 0;
  let seen = false;
  for (let k = 0; k < ISO_UNITS.length; k++) {
    const part = m[k + 1];
    if (part === undefined) continue;
    const fractional = part.includes('.') || part.includes(',');
    // A fraction is only allowed on the last component present.
    if (fractional && m.slice(k + 2).some((later) => later !== undefined)) return undefined;
    ms += Number(part.replace(',', '.')) * (ISO_UNITS[k] as number);
    seen = true;
  }
  if (!seen) return undefined;
  const rounded = Math.round(ms);
  return Number.isSafeInteger(rounded) ? rounded : undefined;
}

function requireDuration(ms: number, what: string): void {
  if (!Number.isFinite(ms)) throw new GatewayError('INTERNAL', `${what}: ${ms} is not a finite number of milliseconds`);
}

/**
 * Canonical ISO-8601 for a non-negative number of milliseconds, in days,
 * hours, minutes and seconds: 5_400_000 → PT1H30M, 0 → PT0S, 1500 → PT1.5S.
 * parseIsoDuration(formatIsoDuration(ms)) === Math.round(ms).
 */
export function formatIsoDuration(ms: number): string {
  requireDuration(ms, 'formatIsoDuration');
  if (ms < 0) throw new GatewayError('INTERNAL', `formatIsoDuration: ${ms} is negative`);
  let rest = Math.round(ms);
  const days = Math.floor(rest / DAY);
  rest -= days * DAY;
  const hours = Math.floor(rest / HOUR);
  rest -= hours * HOUR;
  const minutes = Math.floor(rest / MINUTE);
  rest -= minutes * MINUTE;
  const seconds = Math.floor(rest / SECOND);
  const millis = rest - seconds * SECOND;

  let out = 'P';
  if (days > 0) out += `${days}D`;
  let time = '';
  if (hours > 0) time += `${hours}H`;
  if (minutes > 0) time += `${minutes}M`;
  if (millis > 0) {
    time += `${seconds}.${String(millis).padStart(3, '0').replace(/0+$/, '')}S`;
  } else if (seconds > 0 || (days === 0 && time === '')) {
    time += `${seconds}S`;
  }
  return time === '' ? out : `${out}T${time}`;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** 99 days 23:59:59, the longest relative time with YY and MM left at 00. */
const MAX_RELATIVE_MS = 99 * DAY + 23 * HOUR + 59 * MINUTE + 59 * SECOND;

/**
 * SMPP relative time `YYMMDDhhmmss000R` (SMPP 3.4 §7.1.1.2): 1 hour →
 * `000000010000000R`.
 *
 * YY and MM are always 00: the SMSC adds years and months by the calendar,
 * so they have no fixed length and could make the SMSC's validity outlast the
 * gateway's deadline. Whole days go in DD, which caps the value at 99 days
 * 23:59:59 — far above any SMSC's own maximum validity (usually days), which
 * it applies when asked for more.
 *
 * Fractions of a second are dropped (rounded down): the SMSC must give up no
 * later than the gateway's deadline, or a late "delivered" receipt could
 * contradict a recipient already finalised as expired. A negative duration
 * (the deadline passed while preparing the submit) becomes zero: expire now.
 */
export function smppRelativeValidity(ms: number): string {
  requireDuration(ms, 'smppRelativeValidity');
  let seconds = Math.floor(Math.min(Math.max(ms, 0), MAX_RELATIVE_MS) / SECOND);
  const days = Math.floor(seconds / 86_400);
  seconds -= days * 86_400;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  return `0000${pad2(days)}${pad2(hours)}${pad2(minutes)}${pad2(seconds)}000R`;
}

/**
 * SMPP absolute time in UTC, `YYMMDDhhmmsst00+` (t: tenths of a second; the
 * quarter-hour offset from UTC is 00). Years are 2000–2099.
 */
export function smppAbsoluteTime(epochMs: number): string {
  requireDuration(epochMs, 'smppAbsoluteTime');
  const d = new Date(epochMs);
  const year = d.getUTCFullYear();
  if (year < 2000 || year > 2099) {
    throw new GatewayError('INTERNAL', `smppAbsoluteTime: year ${year} has no two-digit SMPP form`);
  }
  const tenths = Math.floor(d.getUTCMilliseconds() / 100);
  return (
    pad2(year - 2000) +
    pad2(d.getUTCMonth() + 1) +
    pad2(d.getUTCDate()) +
    pad2(d.getUTCHours()) +
    pad2(d.getUTCMinutes()) +
    pad2(d.getUTCSeconds()) +
    `${tenths}00+`
  );
}

/** Two ASCII digits at i as a number, or -1. */
function twoDigits(s: string, i: number): number {
  const a = s.charCodeAt(i) - 0x30;
  const b = s.charCodeAt(i + 1) - 0x30;
  if (a < 0 || a > 9 || b < 0 || b > 9) return -1;
  return a * 10 + b;
}

/**
 * Epoch ms of a DLR `submit date:` / `done date:` value, YYMMDDhhmm or
 * YYMMDDhhmmss, read as UTC in 2000–2099. SMSCs that send local time need
 * the caller to shift by their offset. Undefined when malformed or not a
 * calendar date (e.g. 250230…).
 */
export function parseSmppDlrDate(s: string): number | undefined {
  if (s.length !== 10 && s.length !== 12) return undefined;
  const yy = twoDigits(s, 0);
  const month = twoDigits(s, 2);
  const day = twoDigits(s, 4);
  const hour = twoDigits(s, 6);
  const minute = twoDigits(s, 8);
  const second = s.length === 12 ? twoDigits(s, 10) : 0;
  if (yy < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23) return undefined;
  if (minute < 0 || minute > 59 || second < 0 || second > 59) return undefined;
  const ms = Date.UTC(2000 + yy, month - 1, day, hour, minute, second);
  // Date.UTC rolls 30 February into March; a date that moved was not real.
  if (new Date(ms).getUTCDate() !== day) return undefined;
  return ms;
}
