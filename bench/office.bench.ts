/**
 * bench:office — the mobile-office services under load.
 *
 *   1. Meeting round trip: a meeting notice to a 10,000-person group, then
 *      10,000 replies injected as MO deliver_sm by the SMSC simulator, until
 *      GET /v1/meetings/{id} shows every answer — against the time to send
 *      the same notice to the same group as a plain group message (baseline,
 *      same gateway, same run). Reported as ms and the ratio of the two, plus
 *      replies/s taken.
 *   2. SMTP alerts: a burst of mails into the gateway's SMTP listener (each
 *      to a known, opted-in person) against a plain smtp-server sink that
 *      does no work (baseline) — see bench/office-mail.ts.
 *
 * Medians over BENCH_REPEATS runs; each run on a fresh gateway (temp dir).
 *
 *   BENCH_ATTENDEES=10000 BENCH_REPEATS=3 BENCH_MAILS=5000 npm run bench:office
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../src/config/load.js';
import { startGateway, simulatorAccount, type Gateway } from '../src/app/gateway.js';
import { SmscSimulator } from '../src/smpp/simulator.js';
import { envInt, median, table, writeSummary, type Row } from './lib/report.js';
import { mailBenchRows, runMailBench, type MailBenchResult } from './office-mail.js';

const ATTENDEES = envInt('BENCH_ATTENDEES', 10_000);
const REPEATS = envInt('BENCH_REPEATS', 3);
// 0 skips the SMTP part.
const MAILS = process.env['BENCH_MAILS'] === '0' ? 0 : envInt('BENCH_MAILS', 5_000);
const MO_CONCURRENCY = envInt('BENCH_MO_CONCURRENCY', 256);
const ADMIN = 'bench-admin-key-0123456789';
const ALL = { tiers: ['*'], groups: ['*'], direct: true, police: false, dailyQuota: null, perMinuteQuota: null };
const OFFICE_SENDER = '1069000211';

interface Run {
  noticeOnlyMs: number;
  meetingCreateMs: number;
  noticesMs: number;
  repliesMs: number;
  tallyMs: number;
  repliesPerSec: number;
}

const mobile = (i: number): string => `139${String(10_000_000 + i * 10 + 6).slice(-8)}`;

/** The parsed JSON answer; `T` is what the bench reads of it (not checked: a wrong answer fails the run further on). */
async function call<T = unknown>(url: string, key: string, method: string, path: string, body?: unknown): Promise<T> {
  const isText = typeof body === 'string';
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': isText ? 'text/csv' : 'application/json' } : {}) },
    ...(body !== undefined ? { body: isText ? body : JSON.stringify(body) } : {}),
  });
  const json = await res.json().catch(() => undefined);
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json as T;
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 300_000, pollMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

async function meetingRun(): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-bench-office-'));
  const sim = new SmscSimulator({ host: '127.0.0.1', port: 0, systemId: 'smsgw', password: 'secret', dlrDelayMs: 20, recentCapacity: 16 });
  const { port: simPort } = await sim.start();
  let gw: Gateway | undefined;
  try {
    const base = loadConfig({ env: {}, overrides: { dataDir: dir, log: { level: 'silent' } } });
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        log: { level: 'silent' },
        server: { host: '127.0.0.1', port: 0 },
        simulator: { enabled: false },
        admin: { keys: [{ key: ADMIN, name: 'bench' }] },
        // A key of its own: start refuses the development key beside an SMPP account.
        auth: { apiKeys: [{ key: 'bench-key-0123456789', tenant: 'dev', tiers: ['*'], sender: '10690001' }] },
        smpp: { accounts: [{ ...simulatorAccount(base, simPort), binds: 4, window: 128 }] as never },
      },
    });
    gw = await startGateway(config, { logger: pino({ level: 'silent' }) });
    const url = `http://127.0.0.1:${gw.port}`;
    await call(url, ADMIN, 'POST', '/v1/admin/units', { id: 'city', name: '市政府办公厅', sender: '10690002', grants: ALL });
    await call(url, ADMIN, 'POST', '/v1/admin/units', { id: 'office', name: '综合处', parent: 'city', extension: '11', grants: ALL });
    await call(url, ADMIN, 'POST', '/v1/admin/people/import', ['id,name,mobile,unit', ...Array.from({ length: ATTENDEES }, (_, i) => `p${i},人员${i},${mobile(i)},office`)].join('\n'));
    await call(url, ADMIN, 'POST', '/v1/admin/groups/import', ['group,name,unit,kind,member', ...Array.from({ length: ATTENDEES }, (_, i) => `staff,全体,office,person,p${i}`)].join('\n'));
    const key = (await call<{ key: string }>(url, ADMIN, 'POST', '/v1/admin/units/office/keys', {})).key;
    const time = new Date(Date.now() + 7 * 86_400_000).toISOString();
    const submitted = (): number => sim.stats().submits;

    // Baseline: the same notice text as a plain group message; time until every recipient was submitted.
    const text = '会议通知：全市防汛工作会议，时间1月15日 09:30，地点市政府3楼会议室。请回复1参加，回复2不参加（可附原因）。';
    let start = performance.now();
    const before = submitted();
    await call(url, key, 'POST', '/v1/messages', { group: 'staff', text, tier: 'business' });
    await until('plain notices submitted', () => submitted() - before >= ATTENDEES);
    const noticeOnlyMs = performance.now() - start;

    // Subject: the meeting — create (notice to the group), then every phone replies once the notices are out.
    const at = submitted();
    start = performance.now();
    const m = await call<{ id: string }>(url, key, 'POST', '/v1/meetings', { title: '全市防汛工作会议', time, place: '市政府3楼会议室', attendees: { groups: ['staff'] } });
    const meetingCreateMs = performance.now() - start;
    await until('meeting notices submitted', () => submitted() - at >= ATTENDEES);
    const noticesMs = performance.now() - start;
    const repliesStart = performance.now();
    let next = 0;
    let failed = 0;
    await Promise.all(Array.from({ length: MO_CONCURRENCY }, async () => {
      for (let i = next++; i < ATTENDEES; i = next++) {
        const ok = await sim.injectMo({ source: `86${mobile(i)}`, destination: OFFICE_SENDER, text: i % 3 === 0 ? '2 出差' : '1' });
        if (!ok) failed++;
      }
    }));
    if (failed > 0) throw new Error(`${failed} MO not acknowledged`);
    const repliesMs = performance.now() - repliesStart;
    let tally: { attend: number; absent: number } = { attend: 0, absent: 0 };
    await until('full tally', async () => {
      tally = (await call<{ tally: typeof tally }>(url, key, 'GET', `/v1/meetings/${m.id}?limit=1`)).tally;
      return tally.attend + tally.absent >= ATTENDEES;
    }, 300_000, 50);
    const tallyMs = performance.now() - start;
    const expectAbsent = Math.ceil(ATTENDEES / 3);
    if (tally.absent !== expectAbsent || tally.attend !== ATTENDEES - expectAbsent) throw new Error(`tally wrong: ${JSON.stringify(tally)}`);
    return { noticeOnlyMs, meetingCreateMs, noticesMs, repliesMs, tallyMs, repliesPerSec: ATTENDEES / (repliesMs / 1000) };
  } finally {
    await gw?.stop();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const runs: Run[] = [];
for (let r = 0; r < REPEATS; r++) {
  const run = await meetingRun();
  runs.push(run);
  process.stdout.write(`run ${r + 1}/${REPEATS}: ${JSON.stringify(Object.fromEntries((Object.keys(run) as (keyof Run)[]).map((k) => [k, Math.round(run[k])])))}\n`);
}
const med = (k: keyof Run): number => median(runs.map((x) => x[k]));
const rows: Row[] = [
  { metric: `meeting to ${ATTENDEES.toLocaleString('en-US')}: create → notices out → ${ATTENDEES.toLocaleString('en-US')} replies → full tally`, value: med('tallyMs'), unit: 'ms', baseline: med('noticeOnlyMs'), baselineName: 'plain group notice, all submitted' },
  { metric: 'meeting notices alone (create → all submitted)', value: med('noticesMs'), unit: 'ms', baseline: med('noticeOnlyMs'), baselineName: 'plain group notice' },
  { metric: 'MO replies taken (stored, matched, tallied)', value: med('repliesPerSec'), unit: 'replies/s' },
  { metric: 'POST /v1/meetings (expand group, write invitees, notice durable)', value: med('meetingCreateMs'), unit: 'ms' },
];
process.stdout.write(`\n${table('bench:office — meeting round trip (medians)', rows)}\n`);

let mail: MailBenchResult | undefined;
if (MAILS > 0) {
  mail = await runMailBench({ mails: MAILS, repeats: REPEATS });
  process.stdout.write(`\n${table('bench:office — SMTP new-mail alerts (medians)', mailBenchRows(mail))}\n`);
}

const summary = {
  bench: 'office',
  attendees: ATTENDEES,
  repeats: REPEATS,
  meeting: { runs, medians: { tallyMs: med('tallyMs'), noticeOnlyMs: med('noticeOnlyMs'), noticesMs: med('noticesMs'), repliesPerSec: med('repliesPerSec'), meetingCreateMs: med('meetingCreateMs') }, ratioTallyToNotice: med('tallyMs') / med('noticeOnlyMs') },
  ...(mail ? { mail } : {}),
};
const file = writeSummary('office', summary);
process.stdout.write(`JSON summary: ${file}\n${JSON.stringify({ ratioTallyToNotice: summary.meeting.ratioTallyToNotice, mailRatio: mail?.ratio })}\n`);
process.exit(0);
