/**
 * IP addresses and CIDR ranges, and the rule that decides where an outbound
 * callback (completion callback, status events, MO forward) may connect
 * (invariant 8: callbacks go only where the operator allows).
 *
 * An address is 16 bytes; an IPv4 address is stored IPv4-mapped
 * (::ffff:a.b.c.d), so `::ffff:127.0.0.1` and `127.0.0.1` are the same
 * address and one IPv4 range covers both spellings. Addresses that embed an
 * IPv4 address (NAT64 64:ff9b::/96, 6to4 2002::/16, IPv4-compatible ::/96)
 * are checked against the IPv4 ranges as well, so none of them is a way round.
 *
 * Pure: no I/O. The resolver that feeds addresses in lives in src/outbound.
 */

export type IpBytes = Uint8Array;

const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/** A dotted-quad IPv4 address (four decimal parts, no leading-zero octal). */
function parseV4(s: string): number[] | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

function parseV6(s: string): IpBytes | undefined {
  let text = s;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  if (text.length === 0 || text.length > 45) return undefined;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.slice(lastColon + 1).includes('.')) {
    const v4 = parseV4(text.slice(lastColon + 1));
    if (!v4) return undefined;
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    // "::1.2.3.4" → "::" + tail; "::ffff:1.2.3.4" → "::ffff" + tail
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const group = (g: string): number | undefined => (/^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : undefined);
  const list = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      const v = group(g);
      if (v === undefined) return undefined;
      out.push(v);
    }
    return out;
  };
  const head = list(halves[0]!);
  if (!head) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const rest = list(halves[1]!);
    if (!rest) return undefined;
    const fill = 8 - head.length - rest.length - tail.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest, ...tail];
  } else {
    groups = [...head, ...tail];
  }
  if (groups.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/** Parses an IPv4 (dotted quad) or IPv6 address (brackets and a zone allowed) into 16 bytes; undefined if it is neither. */
export function parseIp(s: string): IpBytes | undefined {
  const t = s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
  const v4 = parseV4(t);
  if (v4) return Uint8Array.from([...MAPPED_PREFIX, ...v4]);
  return t.includes(':') ? parseV6(t) : undefined;
}

export interface Cidr {
  readonly bytes: IpBytes;
  /** Prefix length over the 16-byte form (an IPv4 /n is 96 + n). */
  readonly bits: number;
}

/** "10.0.0.0/8", "fe80::/10", or a single address (a /32 or /128). */
export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/');
  const addr = slash >= 0 ? s.slice(0, slash) : s;
  const bytes = parseIp(addr);
  if (!bytes) return undefined;
  const v4 = parseV4(addr) !== undefined;
  const max = v4 ? 32 : 128;
  let bits = max;
  if (slash >= 0) {
    const b = s.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(b)) return undefined;
    bits = Number(b);
    if (bits > max) return undefined;
  }
  return { bytes, bits: v4 ? 96 + bits : bits };
}

export function inCidr(ip: IpBytes, c: Cidr): boolean {
  let bits = c.bits;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((ip[i]! & mask) !== (c.bytes[i]! & mask)) return false;
  }
  return true;
}

/** The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, IPv4-compatible), as its mapped form; else undefined. */
export function embeddedV4(ip: IpBytes): IpBytes | undefined {
  const isZero = (from: number, to: number): boolean => ip.slice(from, to).every((b) => b === 0);
  const mapped = (a: number): IpBytes => Uint8Array.from([...MAPPED_PREFIX, ip[a]!, ip[a + 1]!, ip[a + 2]!, ip[a + 3]!]);
  // 64:ff9b::/96 (NAT64 well-known prefix)
  if (ip[0] === 0 && ip[1] === 0x64 && ip[2] === 0xff && ip[3] === 0x9b && isZero(4, 12)) return mapped(12);
  // 2002::/16 (6to4): the IPv4 address is bytes 2..5
  if (ip[0] === 0x20 && ip[1] === 0x02) return mapped(2);
  // ::/96 (IPv4-compatible, deprecated), excluding :: and ::1 themselves
  if (isZero(0, 12) && !(isZero(12, 15) && (ip[15] === 0 || ip[15] === 1))) return mapped(12);
  return undefined;
}

export function formatIp(ip: IpBytes): string {
  if (MAPPED_PREFIX.every((b, i) => ip[i] === b)) return `${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((ip[i]! << 8) | ip[i + 1]!).toString(16));
  return groups.join(':');
}

/**
 * Ranges a callback may not reach unless `callbacks.allow` names them:
 * the gateway's own host and networks behind it.
 */
export const DEFAULT_REFUSED_RANGES: readonly string[] = [
  '0.0.0.0/8', // "this network", unspecified
  '127.0.0.0/8', // loopback
  '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', // RFC 1918
  '169.254.0.0/16', // link-local (cloud metadata lives here)
  '100.64.0.0/10', // CGNAT
  '192.0.0.0/24', // IETF protocol assignments
  '198.18.0.0/15', // benchmarking
  '224.0.0.0/4', '240.0.0.0/4', // multicast, reserved, broadcast
  '::/128', // unspecified
  '::1/128', // loopback
  'fe80::/10', // link-local
  'fc00::/7', // unique local
  'ff00::/8', // multicast
];

const REFUSED: readonly Cidr[] = DEFAULT_REFUSED_RANGES.map((r) => parseCidr(r)!);

/** Lower-case host name without a trailing dot; IP literals in their canonical form. */
export function canonicalHost(host: string): string {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const ip = parseIp(h);
  if (ip) return formatIp(ip);
  return h.toLowerCase().replace(/\.$/, '');
}

/**
 * Where callbacks may go. `allow` entries are host names (matched exactly,
 * case-insensitive) or addresses / CIDR ranges; an allowed host name may
 * resolve to any address, an allowed range opens that range. Everything in
 * DEFAULT_REFUSED_RANGES is refused otherwise; public addresses are allowed.
 */
export class TargetPolicy {
  private readonly hosts = new Set<string>();
  private readonly ranges: Cidr[] = [];

  constructor(allow: readonly string[]) {
    for (const entry of allow) {
      const c = parseCidr(entry);
      if (c) this.ranges.push(c);
      else this.hosts.add(canonicalHost(entry));
    }
  }

  /** Entries of `allow` that are neither a valid range nor a plausible host name (for config validation). */
  static invalidEntries(allow: readonly string[]): string[] {
    return allow.filter((e) => parseCidr(e) === undefined && !/^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/.test(e));
  }

  /** True when the URL's host name itself is allowed (any address it resolves to is then fine). */
  hostAllowed(host: string): boolean {
    return this.hosts.has(canonicalHost(host));
  }

  /** May a callback connect to `address` (already resolved)? */
  addressAllowed(address: string | IpBytes): boolean {
    const ip = typeof address === 'string' ? parseIp(address) : address;
    if (!ip) return false;
    const forms = [ip];
    const inner = embeddedV4(ip);
    if (inner) forms.push(inner);
    if (forms.some((f) => this.ranges.some((r) => inCidr(f, r)))) return true;
    return !forms.some((f) => REFUSED.some((r) => inCidr(f, r)));
  }
}
