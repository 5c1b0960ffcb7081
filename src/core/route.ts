/**
 * Number → operator routing by Chinese mobile number segment (号段).
 *
 * Operator accounts deliver best (and are often priced) on their own network,
 * so a recipient is routed to an account of the operator that issued its
 * segment. Since number portability (携号转网, 2019) a segment tells the
 * issuer, not always the current network; the networks interconnect SMS, so a
 * ported number still gets its message, one hop later.
 *
 * Segments not listed below (IoT 140–144, unassigned 154, 160, 161, 163, 164,
 * 168, 169, 179, 194) route as China Mobile, the largest network, rather
 * than failing: the number passed validation and any Chinese account can
 * reach it.
 */

export type Operator = 'cmcc' | 'cucc' | 'ctcc' | 'intl';

const CMCC = 1;
const CUCC = 2;
const CTCC = 3;
const OPERATOR_BY_CODE: readonly Operator[] = ['cmcc', 'cmcc', 'cucc', 'ctcc'];

/** Three-digit segments, each covering its ten four-digit sub-segments. */
const SEGMENTS: ReadonlyArray<readonly [number, readonly number[]]> = [
  // China Mobile. 192 is China Broadnet (中国广电), which runs on China
  // Mobile's radio network and shares its SMS interconnect: route it there.
  [CMCC, [134, 135, 136, 137, 138, 139, 147, 148, 150, 151, 152, 157, 158, 159, 165, 172, 178, 182, 183, 184, 187, 188, 192, 195, 197, 198]],
  // China Unicom.
  [CUCC, [130, 131, 132, 145, 146, 155, 156, 166, 167, 171, 175, 176, 185, 186, 196]],
  // China Telecom. 162 is a Telecom virtual-operator segment.
  [CTCC, [133, 149, 153, 162, 173, 174, 177, 180, 181, 189, 190, 191, 193, 199]],
];

/** Four-digit sub-segments that differ from their three-digit segment. */
const SUB_SEGMENTS: ReadonlyArray<readonly [number, readonly number[]]> = [
  // 1349 is Telecom's satellite phone block inside Mobile's 134.
  [CTCC, [1349, 1700, 1701, 1702]],
  // 170x: virtual operators (MVNO), each hosted by one network.
  [CMCC, [1703, 1705, 1706]],
  [CUCC, [1704, 1707, 1708, 1709]],
];

/** Index: the four digits after 86, minus 1000. Value: CMCC/CUCC/CTCC, 0 for unlisted. */
const BY_PREFIX = new Uint8Array(1000);
for (const [op, segments] of SEGMENTS) {
  for (const s of segments) BY_PREFIX.fill(op, s * 10 - 1000, s * 10 - 1000 + 10);
}
for (const [op, subs] of SUB_SEGMENTS) {
  for (const s of subs) BY_PREFIX[s - 1000] = op;
}

function digitAt(s: string, i: number): number {
  return s.charCodeAt(i) - 0x30;
}

/**
 * Operator for a normalised number (digits with country code, see
 * normalizeNumber). Only `86` + 11 digits starting with 1 is Chinese; every
 * other number, including bare 11-digit ones (which may be NANP), is 'intl'.
 */
export function operatorOf(number: string): Operator {
  if (number.length !== 13 || !number.startsWith('861')) return 'intl';
  const d1 = digitAt(number, 3);
  const d2 = digitAt(number, 4);
  const d3 = digitAt(number, 5);
  if (d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || d3 < 0 || d3 > 9) return 'intl';
  return OPERATOR_BY_CODE[BY_PREFIX[d1 * 100 + d2 * 10 + d3] as number] as Operator;
}

/**
 * The account to send through: the first whose `operators` lists `operator`,
 * else the first that lists `*`, else undefined (the caller finalises the
 * recipient as failed: no route).
 */
export function chooseAccount<T extends { name: string; operators: readonly string[] }>(
  operator: Operator,
  accounts: readonly T[],
): T | undefined {
  for (const a of accounts) {
    if (a.operators.includes(operator)) return a;
  }
  for (const a of accounts) {
    if (a.operators.includes('*')) return a;
  }
  return undefined;
}
