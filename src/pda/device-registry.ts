/**
 * The PDA device registry: which device belongs to which officer and unit,
 * whether it may receive (active / lost / revoked), and its key.
 *
 * State changes:
 *
 *   active ──lost──▶ lost ──revoked──▶ revoked   (final)
 *     │  ◀─active (new key)─┘
 *     └──────────revoked─────────────▶ revoked
 *
 * - lost / revoked: the live session is closed at once (before the change
 *   commits, and again after, so no handshake can slip in between) and the
 *   device's outbox is withdrawn in the same transaction as the state change:
 *   those copies are not delivered (a recipient left with no other copy is
 *   reported undeliverable). It gets nothing more.
 * - reactivating a lost device issues a new key: the old one may be in
 *   someone else's hands.
 * - reassigning a device to another officer withdraws its outbox too (those
 *   messages were for the previous officer) and closes its session.
 * - a revoked device keeps its (encrypted) key so that, if it ever connects
 *   and proves the key, it is told DEVICE_REVOKED and can wipe itself; a
 *   device that cannot prove the key only ever learns AUTH_FAILED.
 *
 * Keys: 32 random bytes, shown once (base64url) when issued, stored sealed
 * by KeyVault (keys.ts explains why encrypted rather than hashed), version
 * +1 on every issue, expiring after `keyTtlMs`.
 */
import { GatewayError, type FieldProblem } from '../core/errors.js';
import type { Logger } from '../telemetry/logger.js';
import { CLOSE_REASON, DEVICE_ID_PATTERN, type CloseReason } from './codec.js';
import { encodeDeviceKey, newDeviceKey, verifyResponse, type KeyVault } from './keys.js';
import type { PdaStore, PdaTx, StoredDevice } from './store.js';
import type { DeviceState, DeviceView, IssuedKey } from './types.js';

/** Officer (person) ids: as the directory issues them. */
export const PERSON_ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;
export const MAX_UNIT_BYTES = 128;
export const MAX_REASON_LENGTH = 200;
export const MAX_LIST_PAGE = 1000;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export type AuthVerdict =
  | { readonly ok: true; readonly personId: string }
  | { readonly ok: false; readonly reason: CloseReason; readonly outcome: string };

export interface DeviceRegistryOptions {
  readonly store: PdaStore;
  readonly vault: KeyVault;
  readonly keyTtlMs: number;
  readonly maxDevicesPerPerson: number;
  readonly logger: Logger;
  readonly now?: () => number;
}

export type DeviceChangeListener = (deviceId: string, reason: CloseReason) => void;

/** A dummy key so an unknown device costs the same HMAC as a known one. */
const DUMMY_KEY = Buffer.alloc(32, 0x5a);

export function viewOf(id: string, d: StoredDevice): DeviceView {
  return {
    id,
    personId: d.p,
    unit: d.u,
    state: d.s,
    ...(d.r !== undefined ? { stateReason: d.r } : {}),
    keyVersion: d.v,
    keyExpiresAt: new Date(d.kx).toISOString(),
    createdAt: new Date(d.c).toISOString(),
    updatedAt: new Date(d.m).toISOString(),
  };
}

function problem(field: string, message: string): GatewayError {
  return new GatewayError('VALIDATION', `${field.slice(1)}: ${message}`, { details: [{ field, message }] });
}

export function checkDeviceId(id: unknown, field = '/deviceId'): string {
  if (typeof id !== 'string' || !DEVICE_ID_PATTERN.test(id)) throw problem(field, '1-64 characters of A-Z a-z 0-9 . _ : -');
  return id;
}

export function checkPersonId(id: unknown, field = '/personId'): string {
  if (typeof id !== 'string' || !PERSON_ID_PATTERN.test(id)) throw problem(field, '1-128 characters of A-Z a-z 0-9 . _ : @ -');
  return id;
}

export function checkUnit(unit: unknown, field = '/unit'): string {
  if (typeof unit !== 'string' || unit.length === 0 || Buffer.byteLength(unit, 'utf8') > MAX_UNIT_BYTES || CONTROL.test(unit)) {
    throw problem(field, `1-${MAX_UNIT_BYTES} bytes of UTF-8 text without control characters`);
  }
  return unit;
}

export class DeviceRegistry {
  private readonly store: PdaStore;
  private readonly vault: KeyVault;
  private readonly now: () => number;
  private readonly logger: Logger;
  /** Devices with a lost / revoked / reassign / rotate change in flight: refused at handshake until it commits. */
  private readonly changing = new Map<string, { count: number; reason: CloseReason }>();
  private readonly listeners: DeviceChangeListener[] = [];
  private warnedUnreadable = false;

  constructor(private readonly opts: DeviceRegistryOptions) {
    this.store = opts.store;
    this.vault = opts.vault;
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger;
  }

  /** Called when a device must lose its session (at once, and again after the change commits). */
  onChange(listener: DeviceChangeListener): void {
    this.listeners.push(listener);
  }

  get(deviceId: string): DeviceView | undefined {
    const d = this.store.getDevice(deviceId);
    return d ? viewOf(deviceId, d) : undefined;
  }

  /** Active devices of a person (committed state; inside a write, what that transaction sees). */
  activeDevicesOf(personId: string): readonly string[] {
    return this.store.activeDevicesOf(personId);
  }

  /** Ids of these devices that are active. */
  activeAmong(deviceIds: readonly string[]): string[] {
    return deviceIds.filter((id) => this.store.getDevice(id)?.s === 'active');
  }

  hasActiveDevice(personId: string): boolean {
    return this.activeDevicesOf(personId).length > 0;
  }

  list(q: { personId?: string; unit?: string; state?: DeviceState; cursor?: string; limit: number }): { items: DeviceView[]; next?: string } {
    const limit = Math.min(Math.max(1, q.limit), MAX_LIST_PAGE);
    const keep = (d: StoredDevice): boolean => (q.unit === undefined || d.u === q.unit) && (q.state === undefined || d.s === q.state);
    const items: DeviceView[] = [];
    if (q.personId !== undefined) {
      // One officer has few devices: no paging needed.
      for (const id of this.store.devicesOf(q.personId)) {
        const d = this.store.getDevice(id);
        if (d && keep(d)) items.push(viewOf(id, d));
      }
      return { items };
    }
    // Filtered scans are bounded per page: at most 20 pages' worth of rows read per call.
    let after = q.cursor;
    let scanned = 0;
    while (items.length < limit && scanned < limit * 20) {
      const rows = this.store.scanDevices(after, limit);
      if (rows.length === 0) return { items };
      for (const r of rows) {
        scanned++;
        after = r.id;
        if (keep(r.device)) items.push(viewOf(r.id, r.device));
        if (items.length >= limit) break;
      }
    }
    return after !== undefined ? { items, next: after } : { items };
  }

  async register(input: { deviceId: string; personId: string; unit: string; keyTtlMs?: number }): Promise<IssuedKey> {
    const id = checkDeviceId(input.deviceId);
    const personId = checkPersonId(input.personId);
    const unit = checkUnit(input.unit);
    const ttl = this.ttl(input.keyTtlMs);
    const key = newDeviceKey();
    const { value } = await this.store.write('device', (tx) => {
      if (this.store.getDevice(id) !== undefined) throw new GatewayError('PDA_DEVICE_EXISTS', `device ${id} is already registered`);
      const held = this.store.devicesOf(personId).filter((d) => this.store.getDevice(d)?.s !== 'revoked').length;
      if (held >= this.opts.maxDevicesPerPerson) {
        throw problem('/personId', `officer ${personId} already has ${held} devices (pda.maxDevicesPerPerson)`);
      }
      const rec: StoredDevice = { p: personId, u: unit, s: 'active', v: 1, k: this.vault.seal(id, 1, key), kx: tx.now + ttl, kid: this.vault.kekId, c: tx.now, m: tx.now };
      this.store.putDevice(tx, id, rec);
      return rec;
    }, this.now(), true);
    return { device: viewOf(id, value), key: encodeDeviceKey(key) };
  }

  /** Change state; reactivating a lost device returns its new key. */
  async setState(deviceId: string, state: DeviceState, reason?: string): Promise<{ device: DeviceView; key?: string }> {
    checkDeviceId(deviceId);
    if (reason !== undefined && (reason.length > MAX_REASON_LENGTH || CONTROL.test(reason))) throw problem('/reason', `at most ${MAX_REASON_LENGTH} characters, no control characters`);
    const current = this.require(deviceId);
    if (current.s === state) return { device: viewOf(deviceId, current) };
    if (current.s === 'revoked') throw new GatewayError('PDA_DEVICE_STATE', `device ${deviceId} is revoked; register a new device`);
    if (state === 'active') {
      const issued = await this.issueKey(deviceId, undefined, 'lost', reason);
      return { device: issued.device, key: issued.key };
    }
    const closeReason = state === 'revoked' ? CLOSE_REASON.DEVICE_REVOKED : CLOSE_REASON.DEVICE_LOST;
    const device = await this.changeBlocking(deviceId, closeReason, (tx, d) => {
      if (d.s === 'revoked') throw new GatewayError('PDA_DEVICE_STATE', `device ${deviceId} is revoked; register a new device`);
      const rec: StoredDevice = { ...d, s: state, m: tx.now, ...(reason !== undefined ? { r: reason } : { r: state }) };
      this.store.putDevice(tx, deviceId, rec);
      this.store.withdraw(tx, deviceId, `device ${deviceId} was reported ${state} before it acknowledged`);
      return rec;
    });
    return { device };
  }

  /** New key for an active device; its session is closed (KEY_CHANGED) and must authenticate with the new key. */
  rotateKey(deviceId: string, keyTtlMs?: number): Promise<IssuedKey> {
    checkDeviceId(deviceId);
    return this.issueKey(deviceId, keyTtlMs, 'active');
  }

  /** Hand the device to another officer / unit: its outbox is withdrawn and its session closed. */
  async reassign(deviceId: string, to: { personId: string; unit: string }): Promise<DeviceView> {
    checkDeviceId(deviceId);
    const personId = checkPersonId(to.personId);
    const unit = checkUnit(to.unit);
    return this.changeBlocking(deviceId, CLOSE_REASON.DEVICE_REASSIGNED, (tx, d) => {
      if (d.s === 'revoked') throw new GatewayError('PDA_DEVICE_STATE', `device ${deviceId} is revoked; register a new device`);
      if (d.p !== personId) {
        const held = this.store.devicesOf(personId).filter((x) => this.store.getDevice(x)?.s !== 'revoked').length;
        if (held >= this.opts.maxDevicesPerPerson) throw problem('/personId', `officer ${personId} already has ${held} devices (pda.maxDevicesPerPerson)`);
        this.store.withdraw(tx, deviceId, `device ${deviceId} was reassigned before it acknowledged`);
      }
      const rec: StoredDevice = { ...d, p: personId, u: unit, m: tx.now };
      this.store.putDevice(tx, deviceId, rec, d.p);
      return rec;
    });
  }

  /**
   * Check a handshake response. The device's state is told only to a device
   * that proved its key; anything else is AUTH_FAILED (unknown device, wrong
   * key, unreadable key record).
   */
  authenticate(deviceId: string, nonce: Uint8Array, mac: Uint8Array): AuthVerdict {
    const d = this.store.getDevice(deviceId);
    if (!d) {
      verifyResponse(DUMMY_KEY, nonce, deviceId, mac);
      return { ok: false, reason: CLOSE_REASON.AUTH_FAILED, outcome: 'unknown-device' };
    }
    const key = this.vault.open(deviceId, d.v, d.k);
    if (!key) {
      if (!this.warnedUnreadable) {
        this.warnedUnreadable = true;
        this.logger.error({ deviceId, sealedWith: d.kid, current: this.vault.kekId }, 'a PDA device key cannot be decrypted: was pda.keySecret changed? (logged once)');
      }
      return { ok: false, reason: CLOSE_REASON.AUTH_FAILED, outcome: 'key-unreadable' };
    }
    if (!verifyResponse(key, nonce, deviceId, mac)) return { ok: false, reason: CLOSE_REASON.AUTH_FAILED, outcome: 'bad-mac' };
    if (d.s === 'revoked') return { ok: false, reason: CLOSE_REASON.DEVICE_REVOKED, outcome: 'device-revoked' };
    if (d.s === 'lost') return { ok: false, reason: CLOSE_REASON.DEVICE_LOST, outcome: 'device-lost' };
    if (d.kx <= this.now()) return { ok: false, reason: CLOSE_REASON.KEY_EXPIRED, outcome: 'key-expired' };
    const changing = this.changing.get(deviceId);
    if (changing) return { ok: false, reason: changing.reason, outcome: 'device-changing' };
    return { ok: true, personId: d.p };
  }

  // ---------------------------------------------------------------- internals

  private ttl(ms: number | undefined): number {
    const ttl = ms ?? this.opts.keyTtlMs;
    if (!Number.isInteger(ttl) || ttl < 60_000) throw problem('/keyTtl', 'at least one minute');
    return ttl;
  }

  private require(deviceId: string): StoredDevice {
    const d = this.store.getDevice(deviceId);
    if (!d) throw new GatewayError('NOT_FOUND', `no PDA device ${deviceId}`);
    return d;
  }

  private async issueKey(deviceId: string, keyTtlMs: number | undefined, from: DeviceState, reason?: string): Promise<IssuedKey> {
    const ttl = this.ttl(keyTtlMs);
    const key = newDeviceKey();
    const rec = await this.changeBlocking(deviceId, CLOSE_REASON.KEY_CHANGED, (tx, d) => {
      if (d.s !== from) {
        throw new GatewayError('PDA_DEVICE_STATE', from === 'active'
          ? `device ${deviceId} is ${d.s}: ${d.s === 'lost' ? 'reactivate it (which issues a new key)' : 'register a new device'}`
          : `device ${deviceId} is ${d.s}, not ${from}`);
      }
      const v = d.v + 1;
      const next: StoredDevice = {
        ...d, s: 'active', v, k: this.vault.seal(deviceId, v, key), kx: tx.now + ttl, kid: this.vault.kekId, m: tx.now,
        ...(from === 'lost' ? { r: reason ?? 'reactivated' } : {}),
      };
      this.store.putDevice(tx, deviceId, next);
      return next;
    });
    return { device: rec, key: encodeDeviceKey(key) };
  }

  /** A change that must end the device's session: refuse handshakes and disconnect before and after the commit. */
  private async changeBlocking(deviceId: string, reason: CloseReason, change: (tx: PdaTx, d: StoredDevice) => StoredDevice): Promise<DeviceView> {
    this.require(deviceId);
    const c = this.changing.get(deviceId);
    if (c) c.count++;
    else this.changing.set(deviceId, { count: 1, reason });
    this.notify(deviceId, reason);
    try {
      const { value } = await this.store.write('device', (tx) => change(tx, this.require(deviceId)), this.now(), true);
      this.notify(deviceId, reason);
      return viewOf(deviceId, value);
    } finally {
      const e = this.changing.get(deviceId);
      if (e && --e.count <= 0) this.changing.delete(deviceId);
    }
  }

  private notify(deviceId: string, reason: CloseReason): void {
    for (const l of this.listeners) l(deviceId, reason);
  }
}

export type { FieldProblem };
