/**
 * bench:office (mail part) — SMTP new-mail alerts: a burst of N mails over
 * several parallel SMTP connections (loopback) into
 *
 *   - sink:     a plain smtp-server that does no work (reads DATA, answers 250): the baseline
 *   - gateway:  the gateway's SMTP listener with alerts on — every mail is for a known,
 *               opted-in person (a different one each, so each mail is one immediate
 *               alert): header parse, directory look-up, de-dup check, rate decision,
 *               send service (durable) → state flushed → 250; meanwhile the
 *               dispatcher sends the alerts to an SMSC simulator (its own process)
 *
 * Each variant runs in its own process (fresh per repeat, fresh data dir), the
 * load generator (nodemailer, pooled, prebuilt raw messages) in this one. A
 * warm-up burst (not measured) goes first in both. Figure: mails/s from the
 * first send to the last 250; medians over repeats; the ratio is what to quote.
 * After each gateway burst the run checks that every mail caused exactly one
 * accepted (durable) SMS.
 *
 *   node --import tsx bench/office-mail.ts            (BENCH_MAILS=5000 BENCH_REPEATS=3 BENCH_MAIL_CONNECTIONS=8)
 *
 *   BENCH_CPU_PROF=1 …  writes CPU profiles of the children to bench/out/prof-mail-<role>/
 *
 * The gateway child runs from source under tsx (the sink too), not the compiled build.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import nodemailer from 'nodemailer';
import { envInt, median, peakRssMiB, table, writeSummary, type Row } from './lib/report.js';
import { ipcChild } from './lib/sim-child.js';

const SELF = fileURLToPath(import.meta.url);
const DOMAIN = 'office.gov.cn';
const ADMIN_KEY = 'bench-admin-key-0123456789';

export interface MailBenchOptions {
  /** Mails in the measured burst (default 5,000). */
  readonly mails: number;
  /** Repeats (fresh processes each); figures are medians. */
  readonly repeats: number;
  /** Parallel SMTP connections (default 8). */
  readonly connections?: number;
  /** Mails sent before the measured burst (default 200). */
  readonly warmup?: number;
}

export interface MailBenchRun {
  readonly gatewayMailsPerSec: number;
  readonly sinkMailsPerSec: number;
  readonly gatewayPeakRssMiB: number;
  readonly alertsAccepted: number;
}

export interface MailBenchResult {
  readonly gatewayMailsPerSec: number;
  readonly sinkMailsPerSec: number;
  /** gateway / sink (same run). */
  readonly ratio: number;
  readonly gatewayPeakRssMiB: number;
  readonly mails: number;
  readonly repeats: number;
  readonly connections: number;
  readonly runs: readonly MailBenchRun[];
}

// ======================================================================== children

interface ChildHandle {
  readonly proc: ChildProcess;
  readonly port: number;
  ask<T>(cmd: string): Promise<T>;
  stop(): Promise<void>;
}

async function startChild(role: 'sink' | 'gateway', people: number): Promise<ChildHandle> {
  const prof = process.env['BENCH_CPU_PROF'] === '1' ? ['--cpu-prof', `--cpu-prof-dir=${join(process.cwd(), 'bench', 'out', `prof-mail-${role}`)}`] : [];
  const proc = fork(SELF, ['--child', role, String(people)], { execArgv: ['--import', 'tsx', ...prof], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return { proc, ...(await ipcChild(proc, role)) };
}

async function sinkMain(): Promise<void> {
  const { SMTPServer } = await import('smtp-server');
  const server = new SMTPServer({
    authOptional: true, disabledCommands: ['AUTH', 'STARTTLS'], disableReverseLookup: true, logger: false, size: 26_214_400, maxClients: 500,
    onData(stream, _session, callback) {
      stream.on('end', () => callback(null, 'OK'));
      stream.resume();
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as import('node:net').AddressInfo).port;
  process.send?.({ port });
  process.on('message', (m: { cmd: string; id: number }) => {
    if (m.cmd === 'stop') server.close(() => process.exit(0));
    else process.send?.({ id: m.id });
  });
}

async function gatewayMain(people: number): Promise<void> {
  const { pino } = await import('pino');
  const { loadConfig } = await import('../src/config/load.js');
  const { startGateway } = await import('../src/app/gateway.js');
  const { startSimChild } = await import('./lib/sim-child.js');
  const { freePort } = await import('./lib/report.js');
  const sim = await startSimChild(4 * people);
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-bench-mail-'));
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      log: { level: 'warn' },
      server: { host: '127.0.0.1', port: await freePort() },
      simulator: { enabled: false },
      admin: { keys: [{ key: ADMIN_KEY, name: 'bench' }] },
      // A key of its own: start refuses the development key beside an SMPP account.
      auth: { apiKeys: [{ key: 'bench-key-0123456789', tenant: 'dev', tiers: ['*'], sender: '10690001' }] },
      smpp: {
        accounts: [{ name: 'sim', host: '127.0.0.1', port: sim.port, systemId: 'smsgw', password: 'secret', systemType: '', tls: false, binds: 4, window: 64, tps: 0, responseTimeoutMs: 10000, enquireLinkMs: 30000, reconnectInitialMs: 100, reconnectMaxMs: 2000, throttleBackoffMs: 50, operators: ['*'] }],
      },
      office: { mail: { enabled: true, host: '127.0.0.1', port: 0, tenant: 'dev', domains: [DOMAIN], allowedClients: ['127.0.0.1', '::ffff:127.0.0.1'], digestSeconds: 600 } },
    },
  });
  const gateway = await startGateway(config, { logger: pino({ level: 'warn' }) });
  const url = `http://127.0.0.1:${gateway.port}`;
  const admin = async (method: string, path: string, body: string, type: string): Promise<void> => {
    const r = await fetch(url + path, { method, headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': type }, body });
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  };
  await admin('POST', '/v1/admin/units', JSON.stringify({ id: 'office', name: '市政府办公厅' }), 'application/json');
  const rows = ['id,name,mobile,unit,email,mailAlerts'];
  for (let i = 0; i < people; i++) rows.push(`p${i},人员${i},${mobile(i)},office,${address(i)},true`);
  await admin('POST', '/v1/admin/people/import', rows.join('\r\n'), 'text/csv');
  process.send?.({ port: gateway.mail?.port });
  const metric = async (name: string): Promise<number> => {
    const m = gateway.metrics.registry.getSingleMetric(name);
    return m ? (await m.get()).values.reduce((a, v) => a + v.value, 0) : 0;
  };
  process.on('message', (m: { cmd: string; id: number }) => {
    if (m.cmd === 'stats') {
      void Promise.all([metric('smsgw_accepted_messages_total'), metric('smsgw_mail_alerts_total')]).then(([accepted]) => process.send?.({ id: m.id, accepted }));
    } else if (m.cmd === 'stop') {
      void (async () => {
        await gateway.stop();
        await sim.stop();
        rmSync(dataDir, { recursive: true, force: true });
        process.exit(0);
      })();
    }
  });
}

// ====================================================================== load

function mobile(i: number): string {
  return `139${String(10_000_000 + i * 10 + 6).slice(-8)}`;
}

function address(i: number): string {
  return `p${i}@${DOMAIN}`;
}

/** A realistic small mail (UTF-8 subject as an encoded word, ~2 KB base64 body). */
function rawMail(i: number, tag: string): Buffer {
  const subject = `关于第${i}期全市防汛工作会议材料报送的通知`;
  const body = Buffer.from('各单位：请于本周五前报送防汛工作会议材料。'.repeat(30)).toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.from([
    `From: =?UTF-8?B?${Buffer.from('市政府办公厅').toString('base64')}?= <office@${DOMAIN}>`,
    `To: <${address(i)}>`,
    `Subject: =?UTF-8?B?${Buffer.from(subject).toString('base64')}?=`,
    `Message-ID: <${tag}-${i}@${DOMAIN}>`,
    `Date: ${new Date().toUTCString()}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: base64',
    '',
    body,
    '',
  ].join('\r\n'));
}

/** Send mails [from, from + n) over `connections` pooled connections; mails per second. */
async function burst(port: number, from: number, n: number, connections: number, tag: string): Promise<number> {
  const mails = Array.from({ length: n }, (_, k) => rawMail(from + k, tag));
  const tr = nodemailer.createTransport({ pool: true, maxConnections: connections, maxMessages: Infinity, host: '127.0.0.1', port, secure: false, ignoreTLS: true } as never);
  try {
    const started = performance.now();
    await Promise.all(mails.map((raw, k) => tr.sendMail({ envelope: { from: `office@${DOMAIN}`, to: [address(from + k)] }, raw })));
    return (n * 1000) / (performance.now() - started);
  } finally {
    tr.close();
  }
}

// ====================================================================== run

export async function runMailBench(opts: MailBenchOptions): Promise<MailBenchResult> {
  const connections = opts.connections ?? 8;
  const warmup = opts.warmup ?? 200;
  const runs: MailBenchRun[] = [];
  for (let r = 0; r < opts.repeats; r++) {
    const sink = await startChild('sink', 0);
    let sinkRate: number;
    try {
      await burst(sink.port, opts.mails, warmup, connections, `w${r}`);
      sinkRate = await burst(sink.port, 0, opts.mails, connections, `m${r}`);
    } finally {
      await sink.stop();
    }
    const gw = await startChild('gateway', opts.mails + warmup);
    try {
      await burst(gw.port, opts.mails, warmup, connections, `w${r}`);
      const gatewayRate = await burst(gw.port, 0, opts.mails, connections, `m${r}`);
      const { accepted } = await gw.ask<{ accepted: number }>('stats');
      if (accepted !== opts.mails + warmup) throw new Error(`expected ${opts.mails + warmup} durable alerts, the gateway accepted ${accepted}`);
      runs.push({ gatewayMailsPerSec: gatewayRate, sinkMailsPerSec: sinkRate, gatewayPeakRssMiB: peakRssMiB(gw.proc.pid ?? 0), alertsAccepted: accepted });
    } finally {
      await gw.stop();
    }
  }
  const gatewayMailsPerSec = median(runs.map((x) => x.gatewayMailsPerSec));
  const sinkMailsPerSec = median(runs.map((x) => x.sinkMailsPerSec));
  return {
    gatewayMailsPerSec,
    sinkMailsPerSec,
    ratio: gatewayMailsPerSec / sinkMailsPerSec,
    gatewayPeakRssMiB: median(runs.map((x) => x.gatewayPeakRssMiB)),
    mails: opts.mails,
    repeats: opts.repeats,
    connections,
    runs,
  };
}

/** The table rows (for bench:office to print alongside its own). */
export function mailBenchRows(r: MailBenchResult): Row[] {
  return [
    { metric: `SMTP mails/s, alerts on (${r.mails} mails, ${r.connections} connections)`, value: r.gatewayMailsPerSec, unit: 'mails/s', baseline: r.sinkMailsPerSec, baselineName: 'smtp-server sink' },
    { metric: 'gateway peak RSS', value: r.gatewayPeakRssMiB, unit: 'MiB' },
  ];
}

// ====================================================================== main

if (process.argv[2] === '--child') {
  const role = process.argv[3];
  if (role === 'sink') await sinkMain();
  else await gatewayMain(Number(process.argv[4]));
} else if (process.argv[1] === SELF) {
  const mails = envInt('BENCH_MAILS', 5000);
  const repeats = envInt('BENCH_REPEATS', 3);
  const connections = envInt('BENCH_MAIL_CONNECTIONS', 8);
  const result = await runMailBench({ mails, repeats, connections });
  console.log(table('SMTP new-mail alerts (medians; baseline and ratio from the same run)', mailBenchRows(result)));
  console.log(`\nper repeat: ${result.runs.map((x) => `${Math.round(x.gatewayMailsPerSec)} / ${Math.round(x.sinkMailsPerSec)}`).join(', ')} (gateway / sink mails/s)`);
  const file = writeSummary('office-mail', result);
  console.log(JSON.stringify(result, null, 2));
  console.log(`summary: ${file}`);
}
