/**
 * Mobile-originated (MO) messages: what a reply from a phone means. Pure.
 *
 *   normalizeMoText   full-width → ASCII (NFKC), trimmed, spaces collapsed
 *   parseKeyword      "CX 2026-0001" / "cx2026-0001" → { keyword: 'CX', argument }
 *   parseMeetingReply "1" attend · "2" absent · "2 出差" absent with a reason
 *                     (also 参加 / 不参加 / 请假)
 *   ownerOfDestination  the tenant whose sender code is the longest prefix of
 *                     the number the phone replied to (sender + extension
 *                     + anything the phone appended)
 *   assembleParts     a long MO message's parts, in order, once all are there
 */

/** A part of a concatenated MO message (UDH IEI 0x00/0x08, or sar_* TLVs). */
export interface MoPart {
  /** Reference number shared by the parts (8- or 16-bit). */
  readonly ref: number;
  /** Number of parts, 1..255. */
  readonly total: number;
  /** This part's number, 1..total. */
  readonly seq: number;
}

export function normalizeMoText(text: string): string {
  return text.normalize('NFKC').replace(/\s+/g, ' ').trim();
}

/**
 * The keyword and what follows it, when `text` starts with one of
 * `keywords` (case-insensitive). The keyword may be followed by a space, a
 * separator or directly by the argument ("CX123").
 */
export function parseKeyword(text: string, keywords: readonly string[]): { keyword: string; argument: string } | undefined {
  const t = normalizeMoText(text);
  const upper = t.toUpperCase();
  for (const k of keywords) {
    const K = k.normalize('NFKC').toUpperCase();
    if (!upper.startsWith(K)) continue;
    const rest = t.slice(K.length);
    // "TDX" is not TD: after the keyword comes the end, a separator, or (for an argument) a digit.
    if (rest.length > 0 && !/^[\s:：,，、。!！#＃.-]/.test(rest) && !/^\d/.test(rest)) continue;
    return { keyword: K, argument: rest.replace(/^[\s:：,，、。!！#＃.-]+/, '').trim() };
  }
  return undefined;
}

export type MeetingAnswer = 'attend' | 'absent';

/** A reply to a meeting notice, or undefined when the text is not one. */
export function parseMeetingReply(text: string): { answer: MeetingAnswer; reason?: string } | undefined {
  const t = normalizeMoText(text);
  const m = /^([12])(?:$|[\s,，.。:：、;；!！-]+(.*)$|(\D.*)$)/s.exec(t);
  let answer: MeetingAnswer | undefined;
  let rest: string | undefined;
  if (m) {
    answer = m[1] === '1' ? 'attend' : 'absent';
    rest = (m[2] ?? m[3] ?? '').trim();
  } else {
    const w = /^(不参加|不能参加|无法参加|参加不了|参加不成|出席不了|请假|参加|出席)(?:$|[\s,，.。:：、;；!！-]*(.*)$)/s.exec(t);
    if (!w) return undefined;
    answer = w[1] === '参加' || w[1] === '出席' ? 'attend' : 'absent';
    rest = (w[2] ?? '').trim();
  }
  if (answer === 'absent' && rest !== undefined && rest.length > 0) {
    const cut = rest.slice(0, 200);
    return { answer, reason: /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut };
  }
  return { answer };
}

/**
 * The owner of the address an MO was sent to: the longest sender code that
 * is a prefix of `destination` (a phone may append digits). `senders` maps
 * sender code → tenant.
 */
export function ownerOfDestination(destination: string, senders: ReadonlyMap<string, string>): { tenant: string; sender: string; suffix: string } | undefined {
  const d = destination.replace(/\D/g, '');
  for (let len = d.length; len > 0; len--) {
    const code = d.slice(0, len);
    const tenant = senders.get(code);
    if (tenant !== undefined) return { tenant, sender: code, suffix: d.slice(len) };
  }
  return undefined;
}

/**
 * The whole text when every part 1..total is present (any order), else
 * undefined. Duplicated parts (a redelivered deliver_sm) count once.
 */
export function assembleParts(total: number, parts: readonly { seq: number; text: string }[]): string | undefined {
  if (!Number.isInteger(total) || total < 1) return undefined;
  const bySeq = new Array<string | undefined>(total);
  let have = 0;
  for (const p of parts) {
    if (!Number.isInteger(p.seq) || p.seq < 1 || p.seq > total) continue;
    if (bySeq[p.seq - 1] === undefined) have++;
    bySeq[p.seq - 1] = p.text;
  }
  return have === total ? bySeq.join('') : undefined;
}

/**
 * Concatenation information from a short_message's user-data header, when
 * esm_class has UDHI (0x40): IEI 0x00 (8-bit reference) or 0x08 (16-bit).
 * Returns the part and the header length to skip.
 */
export function partFromUdh(ud: Uint8Array): { part: MoPart; headerLength: number } | undefined {
  if (ud.length < 1) return undefined;
  const udhl = ud[0] as number;
  if (udhl + 1 > ud.length) return undefined;
  let i = 1;
  while (i + 1 < udhl + 1) {
    const iei = ud[i] as number;
    const len = ud[i + 1] as number;
    const v = i + 2;
    if (v + len > udhl + 1) return undefined;
    if (iei === 0x00 && len === 3) {
      const part = { ref: ud[v] as number, total: ud[v + 1] as number, seq: ud[v + 2] as number };
      return validPart(part) ? { part, headerLength: udhl + 1 } : undefined;
    }
    if (iei === 0x08 && len === 4) {
      const part = { ref: ((ud[v] as number) << 8) | (ud[v + 1] as number), total: ud[v + 2] as number, seq: ud[v + 3] as number };
      return validPart(part) ? { part, headerLength: udhl + 1 } : undefined;
    }
    i = v + len;
  }
  return undefined;
}

function validPart(p: MoPart): boolean {
  return p.total >= 1 && p.seq >= 1 && p.seq <= p.total;
}
