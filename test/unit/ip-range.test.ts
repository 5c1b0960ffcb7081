/**
 * The callback target policy: which addresses a callback may connect to.
 * Checked against a plain numeric reference model for IPv4 (every spelling
 * of an IPv4 address — dotted, IPv4-mapped, hex-mapped, NAT64, 6to4 — gets
 * the same answer) and against node's BlockList for IPv6 ranges.
 */
import t from 'tap';
import fc from 'fast-check';
import { BlockList } from 'node:net';
import { canonicalHost, formatIp, parseCidr, parseIp, TargetPolicy } from '../../src/core/ip-range.js';

const v4Ranges: Array<[number, number]> = [
  [0x00000000, 8], [0x7f000000, 8], [0x0a000000, 8], [0xac100000, 12], [0xc0a80000, 16], [0xa9fe0000, 16],
  [0x64400000, 10], [0xc0000000, 24], [0xc6120000, 15], [0xe0000000, 4], [0xf0000000, 4],
];
const refusedV4 = (n: number): boolean => v4Ranges.some(([base, bits]) => (n >>> (32 - bits)) === (base >>> (32 - bits)));
const dotted = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
const hex = (n: number): string => `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;

t.test('IPv4 in every spelling gets the reference answer', async (t) => {
  const policy = new TargetPolicy([]);
  fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => {
    const want = !refusedV4(n);
    for (const form of [dotted(n), `::ffff:${dotted(n)}`, `::ffff:${hex(n)}`, `[::ffff:${dotted(n)}]`, `64:ff9b::${hex(n)}`, `2002:${hex(n)}::1`]) {
      if (policy.addressAllowed(form) !== want) throw new Error(`${form}: expected ${want}`);
    }
    return true;
  }), { numRuns: 3000 });
  // the edges of each range, both sides
  for (const [base, bits] of v4Ranges) {
    const last = (base + 2 ** (32 - bits) - 1) >>> 0;
    for (const n of [base - 1, base, last, last + 1]) {
      if (n < 0 || n > 0xffffffff) continue;
      t.equal(policy.addressAllowed(dotted(n)), !refusedV4(n), dotted(n));
    }
  }
});

t.test('the ranges the issue names are refused by default; public addresses are not', async (t) => {
  const policy = new TargetPolicy([]);
  for (const a of ['127.0.0.1', '127.255.255.254', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.127.255.255', '0.0.0.0',
    '::', '::1', 'fe80::1', 'febf::1', 'fc00::1', 'fdff:ffff::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::127.0.0.1', 'fe80::1%eth0', '[::1]', 'ff02::1']) {
    t.notOk(policy.addressAllowed(a), `${a} refused`);
  }
  for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2001:db8::1', '2606:4700::1111', '::ffff:8.8.8.8', 'fec0::1']) {
    t.ok(policy.addressAllowed(a), `${a} allowed`);
  }
  t.notOk(policy.addressAllowed('not-an-ip'), 'garbage is refused');
});

t.test('callbacks.allow opens ranges and host names, nothing else', async (t) => {
  const policy = new TargetPolicy(['127.0.0.1/32', '10.20.0.0/16', 'fd00::/8', 'Hooks.Internal.']);
  t.ok(policy.addressAllowed('127.0.0.1'));
  t.ok(policy.addressAllowed('::ffff:127.0.0.1'), 'the mapped form of an allowed IPv4 address');
  t.notOk(policy.addressAllowed('127.0.0.2'));
  t.ok(policy.addressAllowed('10.20.5.5'));
  t.notOk(policy.addressAllowed('10.21.0.1'));
  t.ok(policy.addressAllowed('fd12::1'));
  t.notOk(policy.addressAllowed('fc00::1'));
  t.ok(policy.hostAllowed('hooks.internal'));
  t.ok(policy.hostAllowed('HOOKS.internal.'));
  t.notOk(policy.hostAllowed('evil.hooks.internal'));
  t.same(TargetPolicy.invalidEntries(['127.0.0.1/32', 'a.b', '10.0.0.0/33', 'x y', '::1/129']), ['10.0.0.0/33', 'x y', '::1/129']);
});

t.test('IPv6 parsing agrees with node:net BlockList on range membership', async (t) => {
  const block = new BlockList();
  block.addSubnet('fe80::', 10, 'ipv6');
  const c = parseCidr('fe80::/10')!;
  const { inCidr } = await import('../../src/core/ip-range.js');
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), (groups) => {
    const text = groups.map((g) => g.toString(16)).join(':');
    const ip = parseIp(text)!;
    return inCidr(ip, c) === block.check(text, 'ipv6') && formatIp(ip) === text;
  }), { numRuns: 2000 });
  t.equal(parseIp('1:2:3:4:5:6:7:8:9'), undefined);
  t.equal(parseIp('1::2::3'), undefined);
  t.equal(parseIp('01.2.3.4'), undefined, 'no octal dotted parts (URL parsing has normalised those already)');
  t.equal(canonicalHost('[::FFFF:127.0.0.1]'), '127.0.0.1');
  t.equal(canonicalHost('Example.COM.'), 'example.com');
});

t.test('config: callbacks.allow entries that are neither hosts nor ranges stop the start', async (t) => {
  const { loadConfig } = await import('../../src/config/load.js');
  const ok = loadConfig({ env: {}, overrides: { callbacks: { allow: ['127.0.0.1/32', 'oa.city.local', 'fd00::/8'] } } });
  t.same(ok.callbacks.allow, ['127.0.0.1/32', 'oa.city.local', 'fd00::/8']);
  t.same(loadConfig({ env: {}, overrides: {} }).callbacks.allow, [], 'nothing allowed by default');
  t.throws(() => loadConfig({ env: {}, overrides: { callbacks: { allow: ['10.0.0.0/33'] } } }), { code: 'CONFIG_INVALID' });
  t.throws(() => loadConfig({ env: {}, overrides: { callbacks: { allow: ['http://x/'] } } }), { code: 'CONFIG_INVALID' });
  t.throws(() => loadConfig({ env: {}, overrides: { callbacks: { backoffMs: 5000, maxBackoffMs: 1000 } } }), { code: 'CONFIG_INVALID' });
  t.throws(() => loadConfig({ env: {}, overrides: { callbacks: { secrets: { dev: { current: 'short' } } } } }), { code: 'CONFIG_INVALID' }, 'secrets of at least 16 characters');
});
