/**
 * Public shapes of the PDA channel: what the dispatcher hands it, what it
 * reports back to the receipt store, and the device records of the registry.
 */

/**
 * States the channel reports per recipient (message id + recipient index).
 * Proposed mapping onto the receipt store's recipient states:
 *
 *   queued               → `queued` (not final): copies wait in device outboxes
 *   delivered-to-device  → `delivered` (final): the first of the person's devices acknowledged it
 *   read                 → stays `delivered`; sets the recipient's `readAt` (an extra flag)
 *   expired              → `expired` (final): no device acknowledged it before its expiry
 *   undeliverable        → `undeliverable` (final): no active device took it (none registered,
 *                          every outbox full, or the device was revoked / lost / reassigned
 *                          before it acknowledged) — `error` says which
 *
 * For one recipient the channel reports at most one of the final states and
 * reports them in order (queued before the final one, read after delivered).
 * Delivery is at-least-once: after a crash the same update may come again,
 * so the sink must ignore a state a recipient already has (the receipt
 * store never moves a final state anyway).
 */
export type PdaStatusState = 'queued' | 'delivered-to-device' | 'read' | 'expired' | 'undeliverable';

export interface PdaStatusUpdate {
  readonly messageId: string;
  readonly index: number;
  readonly state: PdaStatusState;
  /** Epoch ms the state was reached (commit time of the change). */
  readonly at: number;
  /** The device that acknowledged or read it (delivered-to-device, read). */
  readonly deviceId?: string;
  /** That device's outbox sequence number. */
  readonly seq?: number;
  /** Why (expired, undeliverable). */
  readonly error?: string;
}

/** Implemented by the receipt store (the lead wires it). */
export interface PdaStatusSink {
  /** Record updates in order. Rejecting makes the channel retry the same batch later (with back-off). */
  recordPdaStates(updates: readonly PdaStatusUpdate[]): Promise<void>;
}

/** 0 routine, 1 urgent, 2 flash: higher jumps the queue on the wire. */
export type PdaPriority = 0 | 1 | 2;

/** One recipient of one message, for the PDA channel. */
export interface PdaMessage {
  readonly messageId: string;
  /** The recipient's index within its message (the receipt store's key). */
  readonly index: number;
  /** Deliver to every active device of this officer... */
  readonly personId?: string;
  /** ...or to exactly these devices (still only the active ones). */
  readonly deviceIds?: readonly string[];
  readonly priority: PdaPriority;
  /** Epoch ms of acceptance; defaults to the time of `deliver`. */
  readonly createdAt?: number;
  /** Epoch ms after which the message is not delivered and is reported expired. */
  readonly expiresAt: number;
  /** e.g. `police`; a–z 0–9 - up to 32. */
  readonly classification: string;
  /** Sending unit's name as shown on the PDA (UTF-8, up to 128 bytes). */
  readonly senderUnit: string;
  /** UTF-8, up to `pda.maxBodyBytes`. */
  readonly body: string;
}

export type DeviceState = 'active' | 'lost' | 'revoked';

/** A device as the admin API shows it (never its key). */
export interface DeviceView {
  readonly id: string;
  readonly personId: string;
  readonly unit: string;
  readonly state: DeviceState;
  readonly stateReason?: string;
  readonly keyVersion: number;
  /** ISO time the current key stops being accepted. */
  readonly keyExpiresAt: string;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** A key is shown exactly once, when issued. */
export interface IssuedKey {
  readonly device: DeviceView;
  /** 32 bytes, base64url. */
  readonly key: string;
}
