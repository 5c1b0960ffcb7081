/**
 * Quiet hours of a tier: a daily local-time window (e.g. 22:00–07:00)
 * during which the tier is not sent. The window may wrap midnight; a window
 * with start = end is empty. Pure.
 */

export interface QuietHours {
  readonly start: string;
  readonly end: string;
}

const DAY = 86_400_000;

function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(':');
  return Number(h) * 60 + Number(m);
}

/**
 * When `at` falls inside the quiet window: the epoch ms at which it ends;
 * otherwise undefined.
 */
export function quietUntil(q: QuietHours | undefined, at: number, utcOffsetMinutes: number): number | undefined {
  if (q === undefined) return undefined;
  const start = minutesOf(q.start);
  const end = minutesOf(q.end);
  if (start === end) return undefined;
  const local = at + utcOffsetMinutes * 60_000;
  const dayStart = Math.floor(local / DAY) * DAY;
  const minute = (local - dayStart) / 60_000;
  let endLocal: number | undefined;
  if (start < end) {
    if (minute >= start && minute < end) endLocal = dayStart + end * 60_000;
  } else if (minute >= start) {
    endLocal = dayStart + DAY + end * 60_000; // wraps: ends tomorrow
  } else if (minute < end) {
    endLocal = dayStart + end * 60_000;
  }
  return endLocal === undefined ? undefined : endLocal - utcOffsetMinutes * 60_000;
}
