/**
 * Simulated PDAs: N devices that connect, authenticate, receive, acknowledge,
 * now and then read, and drop and reconnect at random (a tunnel, a dead
 * spot) — seeded, so a run can be repeated. Used by `smsgw pda-sim`, the
 * tests and the benchmark.
 *
 * A "drop" cuts the TCP connection the moment a message arrives, before its
 * ACK leaves: the hardest case for the server (the frame was delivered, the
 * ack never came), which must end in a redelivery the client de-duplicates
 * by id, never in a loss.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CLOSE_REASON, type MessageFrame } from './codec.js';
import { PdaClient, PdaClosedError, newClientState, type PdaClientState } from './client.js';
import { seededRandom } from '../core/random.js';

export interface PdaSimDevice {
  readonly deviceId: string;
  /** base64url device key */
  readonly key: string;
}

export interface PdaSimOptions {
  /** ws://host:port/v1/pda */
  readonly url: string;
  /** Devices to run: given with their keys, or a count provisioned through the admin API (`adminKey`). */
  readonly devices: number | readonly PdaSimDevice[];
  /** Admin bearer key, to provision `devices: N` (ids `<prefix>-<i>`, officers `<prefix>-officer-<i>`). */
  readonly adminKey?: string;
  readonly prefix?: string;
  readonly unit?: string;
  readonly seed?: number;
  /** Chance, per received message, to cut the connection before acknowledging it. */
  readonly dropProbability?: number;
  /** Chance, per new message, to report it read. */
  readonly readProbability?: number;
  /** Wait before reconnecting, uniformly in [min, max] ms. */
  readonly reconnectDelayMs?: readonly [number, number];
  /** Connections being opened at once (loopback SYN backlog; default 64). */
  readonly connectConcurrency?: number;
  /** Remember every new message id per device, in arrival order (tests). */
  readonly recordIds?: boolean;
  readonly onMessage?: (deviceId: string, m: MessageFrame) => void;
  readonly ackEvery?: number;
  readonly heartbeat?: boolean;
}

export interface PdaSimStats {
  devices: number;
  /** Sessions that reached WELCOME. */
  connects: number;
  handshakeFailures: number;
  /** New messages (first time their id was seen). */
  messages: number;
  /** Frames received again (by sequence or id) and de-duplicated. */
  duplicates: number;
  drops: number;
  reads: number;
  acks: number;
  /** Devices that gave up (revoked, lost, wrong key). */
  stopped: number;
  closeReasons: Record<string, number>;
}

export { seededRandom };

/** Reasons after which reconnecting is pointless. */
const FATAL = new Set<number>([CLOSE_REASON.AUTH_FAILED, CLOSE_REASON.DEVICE_REVOKED, CLOSE_REASON.DEVICE_LOST, CLOSE_REASON.KEY_EXPIRED, CLOSE_REASON.DEVICE_REASSIGNED, CLOSE_REASON.UNSUPPORTED_VERSION]);

/** Register `n` devices through the admin API (rotating the key of those that exist). */
export async function provisionSimDevices(url: string, adminKey: string, n: number, prefix = 'sim', unit = 'sim'): Promise<PdaSimDevice[]> {
  const base = new URL(url);
  base.protocol = base.protocol === 'wss:' ? 'https:' : 'http:';
  const api = (path: string, body: unknown): Promise<Response> =>
    fetch(new URL(path, base), { method: 'POST', headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const out: PdaSimDevice[] = new Array<PdaSimDevice>(n);
  const width = String(Math.max(0, n - 1)).length;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      const deviceId = `${prefix}-${String(i).padStart(width, '0')}`;
      let res = await api('/v1/admin/pda/devices', { deviceId, personId: `${prefix}-officer-${i}`, unit });
      if (res.status === 409) res = await api(`/v1/admin/pda/devices/${deviceId}/key`, {});
      const json = (await res.json()) as { key?: string; error?: { message: string } };
      if (!res.ok || typeof json.key !== 'string') throw new Error(`cannot provision ${deviceId}: ${res.status} ${json.error?.message ?? ''}`);
      out[i] = { deviceId, key: json.key };
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, n) }, worker));
  return out;
}

export class PdaSim {
  readonly stats: PdaSimStats;
  /** deviceId → new message ids in arrival order (with `recordIds`). */
  readonly received = new Map<string, string[]>();
  readonly states = new Map<string, PdaClientState>();
  private stopping = false;
  private readonly clients = new Map<string, PdaClient>();
  private loops: Promise<void>[] = [];
  private connectSlots: number;
  private readonly slotWaiters: Array<() => void> = [];
  private readonly firstConnects: Promise<void>;
  private firstConnected = 0;
  private resolveFirst!: () => void;

  constructor(private readonly opts: PdaSimOptions, private readonly devices: readonly PdaSimDevice[]) {
    this.stats = { devices: devices.length, connects: 0, handshakeFailures: 0, messages: 0, duplicates: 0, drops: 0, reads: 0, acks: 0, stopped: 0, closeReasons: {} };
    this.connectSlots = opts.connectConcurrency ?? 64;
    this.firstConnects = new Promise((r) => {
      this.resolveFirst = r;
    });
    if (devices.length === 0) this.resolveFirst();
  }

  /** Resolves when every device has connected once (or given up). */
  allConnected(): Promise<void> {
    return this.firstConnects;
  }

  start(): this {
    const seed = this.opts.seed ?? 1;
    this.loops = this.devices.map((d, i) => this.deviceLoop(d, seededRandom(seed * 100_003 + i)));
    return this;
  }

  /** Close every device gracefully and wait for the loops to end. */
  async stop(): Promise<PdaSimStats> {
    this.stopping = true;
    for (const s of this.slotWaiters.splice(0)) s();
    await Promise.all([...this.clients.values()].map((c) => c.close()));
    await Promise.all(this.loops);
    return this.stats;
  }

  private async slot(): Promise<void> {
    if (this.connectSlots > 0) {
      this.connectSlots--;
      return;
    }
    await new Promise<void>((r) => this.slotWaiters.push(r));
  }

  private release(): void {
    const w = this.slotWaiters.shift();
    if (w) w();
    else this.connectSlots++;
  }

  private markFirst(counted: { done: boolean }): void {
    if (counted.done) return;
    counted.done = true;
    if (++this.firstConnected === this.devices.length) this.resolveFirst();
  }

  private async deviceLoop(d: PdaSimDevice, rnd: () => number): Promise<void> {
    const o = this.opts;
    const state = newClientState();
    this.states.set(d.deviceId, state);
    const ids: string[] = [];
    if (o.recordIds) this.received.set(d.deviceId, ids);
    const first = { done: false };
    const [minDelay, maxDelay] = o.reconnectDelayMs ?? [50, 500];
    const dropP = o.dropProbability ?? 0;
    const readP = o.readProbability ?? 0;
    while (!this.stopping) {
      await this.slot();
      if (this.stopping) {
        this.release();
        break;
      }
      const toRead: number[] = [];
      const client: PdaClient = new PdaClient({
        url: o.url,
        deviceId: d.deviceId,
        key: d.key,
        state,
        ...(o.ackEvery !== undefined ? { ackEvery: o.ackEvery } : {}),
        heartbeat: o.heartbeat ?? true,
        onFrame: (m, duplicate) => {
          if (duplicate) this.stats.duplicates++;
          else {
            this.stats.messages++;
            if (o.recordIds) ids.push(m.messageId);
            o.onMessage?.(d.deviceId, m);
            if (readP > 0 && rnd() < readP) toRead.push(m.seq);
          }
          if (dropP > 0 && rnd() < dropP) {
            this.stats.drops++;
            client.terminate();
          } else if (toRead.length > 0) {
            // After the ack of this turn: a read report names acknowledged sequences.
            const seqs = toRead.splice(0);
            setImmediate(() => {
              if (client.isOpen) {
                client.ack(); // the ACK first: a read report for an unacknowledged sequence is ignored
                client.read(seqs);
                this.stats.reads += seqs.length;
              }
            });
          }
        },
      });
      this.clients.set(d.deviceId, client);
      let fatal = false;
      try {
        await client.connect();
        this.stats.connects++;
        this.markFirst(first);
      } catch (e) {
        this.stats.handshakeFailures++;
        const reason = e instanceof PdaClosedError ? e.info.reason : undefined;
        if (reason !== undefined && FATAL.has(reason)) fatal = true;
      } finally {
        this.release();
      }
      const info = await client.closed;
      this.stats.acks += client.counts.acks;
      this.clients.delete(d.deviceId);
      const name = info.reasonName ?? `ws-${info.code}`;
      this.stats.closeReasons[name] = (this.stats.closeReasons[name] ?? 0) + 1;
      if (fatal || (info.reason !== undefined && FATAL.has(info.reason))) {
        this.stats.stopped++;
        this.markFirst(first);
        return;
      }
      if (this.stopping) break;
      await sleep(minDelay + Math.floor(rnd() * Math.max(0, maxDelay - minDelay)));
    }
    this.markFirst(first);
  }
}

/** Start simulated devices (provisioning them first when given a count). */
export async function startPdaSim(opts: PdaSimOptions): Promise<PdaSim> {
  let devices: readonly PdaSimDevice[];
  if (typeof opts.devices === 'number') {
    if (!opts.adminKey) throw new Error('pda-sim: give adminKey to provision devices, or pass devices with their keys');
    devices = await provisionSimDevices(opts.url, opts.adminKey, opts.devices, opts.prefix ?? 'sim', opts.unit ?? 'sim');
  } else devices = opts.devices;
  return new PdaSim(opts, devices).start();
}

/**
 * Run simulated PDAs until `durationMs` passes or `until(stats)` holds
 * (checked every 50 ms), then close them all.
 */
export async function runPdaSim(opts: PdaSimOptions & { durationMs?: number; until?: (s: PdaSimStats) => boolean; signal?: AbortSignal }): Promise<PdaSimStats> {
  const sim = await startPdaSim(opts);
  const deadline = Date.now() + (opts.durationMs ?? 60_000);
  while (Date.now() < deadline && !opts.signal?.aborted && !(opts.until?.(sim.stats) ?? false)) await sleep(50);
  return sim.stop();
}
