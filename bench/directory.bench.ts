/**
 * bench:directory — the directory's two hot paths, each against a baseline
 * measured in the same run, on the same data:
 *
 *   1. Group expansion with the grant check: a send to "all-staff" (ten
 *      departments of 10,500 static members with 500 shared between
 *      neighbours, plus a role rule, nested under one group: 100,000
 *      distinct people, 100 of them on the block list) — SendPolicy.admit
 *      (grants of the unit chain) + GroupFanout.plan, exactly what the
 *      dispatcher runs: nested groups, role rows, de-duplication, block
 *      list, channel preference, yielding to the event loop every chunk.
 *      Baseline: reading the same member rows straight from LMDB (a plain
 *      range read of dir.members for the ten departments, no logic).
 *      Target: expansion ≥ 0.5× the raw read.
 *   2. Sensitive-word filter: 10,000-word list, 10 KB texts (UTF-8) that
 *      contain no listed word (the worst case for both), Aho–Corasick
 *      (WordFilter) vs a naive loop of text.includes(word).
 *      Target: ≥ 20× the naive loop.
 *
 * Medians over BENCH_REPEATS runs, baseline and subject interleaved.
 *
 *   BENCH_REPEATS=7 npm run bench:directory
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { pino } from 'pino';
import { createMetrics } from '../src/telemetry/metrics.js';
import { WordFilter } from '../src/core/word-filter.js';
import { DirectoryStore } from '../src/directory/store.js';
import { GroupExpander, yieldToEventLoop } from '../src/directory/expansion.js';
import { QuotaLedger } from '../src/directory/quota.js';
import { SendPolicy } from '../src/directory/policy.js';
import { GroupFanout } from '../src/directory/fanout.js';
import { NO_GRANTS } from '../src/directory/types.js';
import type { WorkQueue } from '../src/queue/port.js';
import { envInt, median, peakRssMiB, table, writeSummary, type Row } from './lib/report.js';
import { seededRandom } from '../src/core/random.js';

const REPEATS = envInt('BENCH_REPEATS', 7);
const PEOPLE = envInt('BENCH_PEOPLE', 100_000);
const DEPARTMENTS = 10;
const OVERLAP = 500;
const BLOCKED = 100;
const WORDS = 10_000;
const TEXT_BYTES = 10 * 1024;
const TEXTS = envInt('BENCH_TEXTS', 20);
const TIERS = ['emergency', 'leadership', 'business', 'routine', 'bulk'];
const ACTOR = { name: 'bench' };

const rng = seededRandom;

const mobile = (i: number): string => `13${String(i * 10 + 6).padStart(9, '0')}`;
const log = (s: string): void => void process.stdout.write(`${s}\n`);

// ------------------------------------------------------------ 1. expansion

async function expansionBench(): Promise<{ rows: Row[]; summary: Record<string, unknown> }> {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-bench-dir-'));
  const env = open({ path: join(dir, 'gateway.lmdb'), maxDbs: 96, compression: false });
  try {
    const metrics = createMetrics({ defaultMetrics: false });
    const logger = pino({ level: 'silent' });
    const store = DirectoryStore.open({ env, tiers: TIERS, allowInternational: false, defaultSender: '10690000', maxGroupMembers: 2_000_000 });
    const t0 = performance.now();
    await store.createUnit(ACTOR, { id: 'city', name: 'City', grants: { ...NO_GRANTS, tiers: ['*'], groups: ['*'], direct: true } });
    const people = Array.from({ length: PEOPLE }, (_, i) => ({
      line: i + 2,
      input: { id: `p${i}`, name: `Person ${i}`, mobile: mobile(i), unit: 'city', roles: i % 100 === 0 ? ['chief'] : [], channel: i % 50 === 0 ? ('both' as const) : ('sms' as const) },
    }));
    await store.importPeople(ACTOR, people, { sha256: 'bench' });
    const per = PEOPLE / DEPARTMENTS;
    const departments: string[] = [];
    for (let d = 0; d < DEPARTMENTS; d++) {
      const id = `dept-${d}`;
      departments.push(id);
      await store.putGroup(ACTOR, { id, name: id, unit: 'city' }, 'create');
      const from = d * per;
      const to = Math.min(PEOPLE, from + per + OVERLAP);
      for (let s = from; s < to; s += 10_000) {
        await store.changeMembers(ACTOR, id, { add: Array.from({ length: Math.min(10_000, to - s) }, (_, k) => `p${s + k}`) });
      }
    }
    await store.putGroup(ACTOR, { id: 'all-staff', name: 'All staff', unit: 'city', groups: departments, roles: [{ role: 'chief', unit: 'city' }] }, 'create');
    await store.createUnit(ACTOR, { id: 'office', name: 'Office', parent: 'city', grants: { ...NO_GRANTS, tiers: ['routine', 'emergency'], groups: ['all-staff'], dailyQuota: 10_000_000 } });
    for (let b = 0; b < BLOCKED; b++) await store.block(ACTOR, { scope: b % 2 === 0 ? '*' : 'city', number: mobile(b * 997) });
    const setupMs = performance.now() - t0;
    log(`expansion: directory of ${PEOPLE.toLocaleString('en-US')} people set up in ${(setupMs / 1000).toFixed(1)} s`);

    const expander = new GroupExpander(store, { chunk: 5_000, maxMembers: 2_000_000, pause: yieldToEventLoop });
    const policy = new SendPolicy({
      store, expander, quotas: new QuotaLedger({ env, utcOffsetMinutes: 480 }), filter: WordFilter.build([]), onMatch: 'reject',
      metrics, pdaEnabled: false, defaultSender: '10690000', countCacheEntries: 0,
    });
    const fanout = new GroupFanout({
      env, directory: store, expander, receipts: undefined as never, queue: undefined as unknown as WorkQueue, prefix: 'smsgw', batchSize: 500,
      tierPriority: new Map(), metrics, logger, pause: yieldToEventLoop, chunk: 5_000,
    });
    const raw = env.openDB<string, [string, string]>({ name: 'dir.members', encoding: 'msgpack' });
    const principal = { tenant: 'office', unit: 'office', tiers: null, sender: '' };

    const baseline = (): { ms: number; rows: number } => {
      const start = performance.now();
      const numbers: string[] = [];
      for (const g of departments) {
        for (const { value } of raw.getRange({ start: [g, ''], end: [g, '\uffff'] })) numbers.push(value);
      }
      return { ms: performance.now() - start, rows: numbers.length };
    };
    const subject = async (): Promise<{ ms: number; members: number; sms: number; refused: number }> => {
      const start = performance.now();
      const admission = policy.admit(principal, { tier: 'routine', group: 'all-staff', channel: 'auto' }, '');
      const plan = await fanout.plan({ group: 'all-staff', channel: 'auto', ...(admission.unit !== undefined ? { unit: admission.unit } : {}) });
      return { ms: performance.now() - start, members: plan.numbers.length, sms: plan.sms, refused: plan.finals.size };
    };
    // Warm up both (page cache, JIT), then interleave.
    baseline();
    await subject();
    const base: number[] = [];
    const exp: number[] = [];
    let shape = { members: 0, sms: 0, refused: 0, rows: 0 };
    for (let r = 0; r < REPEATS; r++) {
      const b = baseline();
      const s = await subject();
      base.push(b.ms);
      exp.push(s.ms);
      shape = { members: s.members, sms: s.sms, refused: s.refused, rows: b.rows };
      log(`  run ${r + 1}/${REPEATS}: raw read ${b.ms.toFixed(1)} ms (${b.rows} rows), admit + expand ${s.ms.toFixed(1)} ms (${s.members} members)`);
    }
    if (shape.members !== PEOPLE) throw new Error(`expanded ${shape.members} members, expected ${PEOPLE}`);
    const baseMs = median(base);
    const expMs = median(exp);
    const rows: Row[] = [
      { metric: 'group expansion + grant check', value: PEOPLE / (expMs / 1000), unit: 'members/s', baseline: PEOPLE / (baseMs / 1000), baselineName: 'raw LMDB read of the member rows', target: 0.5 },
      { metric: `expansion time, ${(PEOPLE / 1000).toFixed(0)}k-member group`, value: expMs, unit: 'ms' },
      { metric: 'raw read time, same member rows', value: baseMs, unit: 'ms' },
    ];
    return {
      rows,
      summary: {
        people: PEOPLE, memberRows: shape.rows, distinctMembers: shape.members, sms: shape.sms, refusedAtExpansion: shape.refused,
        setupMs, runsMs: { baseline: base, expansion: exp }, medianMs: { baseline: baseMs, expansion: expMs }, ratio: baseMs / expMs, target: 0.5,
      },
    };
  } finally {
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// --------------------------------------------------------------- 2. filter

const HAN = '的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研';
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

function filterBench(): { rows: Row[]; summary: Record<string, unknown> } {
  const r = rng(2026);
  const words = new Set<string>();
  while (words.size < WORDS) {
    const ascii = r() < 0.1;
    const len = ascii ? 4 + Math.floor(r() * 6) : 2 + Math.floor(r() * 5);
    let w = '';
    for (let i = 0; i < len; i++) w += ascii ? LETTERS[Math.floor(r() * 26)] : HAN[Math.floor(r() * HAN.length)];
    words.add(w);
  }
  const list = [...words];
  const t0 = performance.now();
  const filter = WordFilter.build(list);
  const buildMs = performance.now() - t0;
  // Texts of the words' own characters with every accidental match broken by a comma: no listed
  // word in them (both sides must read everything), yet full of partial matches for the automaton.
  const texts: string[] = [];
  while (texts.length < TEXTS) {
    const chars: string[] = [];
    let size = 0;
    while (size < TEXT_BYTES) {
      const c = r() < 0.1 ? '，' : (HAN[Math.floor(r() * HAN.length)] as string);
      chars.push(c);
      size += Buffer.byteLength(c);
    }
    for (let pass = 0; pass < 100; pass++) {
      const found = filter.matchAll(chars.join(''), 100_000);
      if (found.length === 0) break;
      for (const m of found) chars[m.end - 1] = '，';
    }
    const text = chars.join('');
    if (!filter.test(text)) texts.push(text);
  }
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
  const naive = (text: string): boolean => {
    for (const w of list) if (text.includes(w)) return true;
    return false;
  };
  const run = (fn: (t: string) => boolean, rounds: number): number => {
    const start = performance.now();
    let hits = 0;
    for (let k = 0; k < rounds; k++) for (const text of texts) if (fn(text)) hits++;
    const ms = performance.now() - start;
    if (hits !== 0) throw new Error('a text matched');
    return (bytes * rounds) / 1_048_576 / (ms / 1000);
  };
  run((x) => filter.test(x), 3);
  run(naive, 1);
  const ac: number[] = [];
  const nv: number[] = [];
  for (let k = 0; k < REPEATS; k++) {
    nv.push(run(naive, 1));
    ac.push(run((x) => filter.test(x), 20));
    log(`  run ${k + 1}/${REPEATS}: naive ${nv[k]?.toFixed(2)} MB/s, Aho–Corasick ${ac[k]?.toFixed(1)} MB/s`);
  }
  const acM = median(ac);
  const nvM = median(nv);
  return {
    rows: [
      { metric: 'sensitive-word filter, 10 KB texts', value: acM, unit: 'MB/s', baseline: nvM, baselineName: 'naive includes() loop', target: 20 },
      { metric: 'automaton build, 10,000 words', value: buildMs, unit: 'ms' },
    ],
    summary: { words: WORDS, texts: TEXTS, textBytes: TEXT_BYTES, buildMs, mbPerSec: { ahoCorasick: ac, naive: nv }, median: { ahoCorasick: acM, naive: nvM }, ratio: acM / nvM, target: 20 },
  };
}

const expansion = await expansionBench();
log('filter: 10,000 words, 10 KB texts');
const filter = filterBench();
const out = [
  table(`Group expansion: ${PEOPLE.toLocaleString('en-US')}-member group (nested, role rule, block list), median of ${REPEATS}`, expansion.rows),
  table(`Sensitive-word filter: ${WORDS.toLocaleString('en-US')} words, ${TEXTS} texts of 10 KB, median of ${REPEATS}`, filter.rows),
].join('\n\n');
process.stdout.write(`\n${out}\n\n`);
const summary = { bench: 'directory', at: new Date().toISOString(), repeats: REPEATS, peakRssMiB: peakRssMiB(process.pid), expansion: expansion.summary, filter: filter.summary };
const file = writeSummary('directory', summary);
process.stdout.write(`JSON summary: ${file}\n${JSON.stringify({ expansionRatio: expansion.summary['ratio'], filterRatio: filter.summary['ratio'] })}\n`);
