/**
 * Positional row encodings for the receipt store's hottest rows (messages,
 * recipients, completion-callback state).
 *
 * lmdb-js packs `encoding: 'msgpack'` values with msgpackr records: with no
 * shared structures every row carries its own record definitions (the key
 * list of each object shape in it), and every read rebuilds a structure and
 * its reader from them. For a 3-part recipient row that is two definitions
 * per read, and these rows are read and rewritten several times per message:
 * under bench:peer `recordDefinition` was 6.4% of all bytes the gateway
 * allocated and about 3.5% of its main thread, `writeRecord` another 3.5%.
 *
 * Here such a row is written as a msgpack array in a fixed field order
 * (absent fields as nil, trailing ones left off), with no records: packing
 * and unpacking an array allocates only the array. A 3-part recipient row
 * packs in ~1.0 µs instead of ~1.5 and reads in ~0.8 instead of ~1.7
 * (scratch microbenchmark, lmdb-js's own encoder against this one).
 *
 * On-disk format: rows written before this encoding (msgpack objects with
 * inline records) still read, unchanged: a value that is not an array is
 * returned as it was decoded. The field order of each tuple below is the
 * format: append new fields at the end, never reorder or reuse a slot. A
 * version of the gateway older than this one cannot read the new rows, so
 * every process sharing an environment must run the same version (as the
 * upgrade notes in docs/DEPLOY.md say).
 */
import type { Database, Key, RootDatabase } from 'lmdb';
import { Packr } from 'msgpackr';
import type { CallbackState } from './store.js';
import type { StoredAttempt, StoredMessage, StoredRecipient, StoredSegment } from './records.js';

/** How one row type maps to and from its positional form. */
export interface RowShape<T> {
  toWire(value: T): unknown[];
  fromWire(tuple: readonly unknown[]): T;
}

/** msgpackr's encode mode flags (lmdb-js passes buffer-reuse flags); opaque here. */
type EncodeMode = number | undefined;

/**
 * The `encoder` option for `env.openDB`: lmdb-js builds one instance per
 * database with its own msgpackr options (copyBuffers etc.).
 */
export function rowEncoder<T>(shape: RowShape<T>): { readonly Encoder: new (options?: object) => Packr } {
  class PositionalRowPackr extends Packr {
    constructor(options?: object) {
      // No records: a tuple needs none. Old rows' inline record definitions are read by msgpackr whatever this says.
      super({ ...options, useRecords: false, mapsAsObjects: true });
      const encode = this.encode.bind(this) as (value: unknown, mode?: EncodeMode) => Buffer;
      const positional = (value: unknown, mode?: EncodeMode): Buffer => encode(shape.toWire(value as T), mode);
      this.encode = positional;
      this.pack = positional;
    }

    override unpack(source: Buffer | Uint8Array, options?: unknown): unknown {
      const value: unknown = super.unpack(source, options as never);
      return Array.isArray(value) ? shape.fromWire(value) : value;
    }

    override decode(source: Buffer | Uint8Array, options?: unknown): unknown {
      return this.unpack(source, options);
    }
  }
  return { Encoder: PositionalRowPackr };
}

/** `env.openDB(name)` with rows of `shape` in positional form (lmdb-js's `encoder` option, which its types leave out). */
export function openRowDatabase<V, K extends Key>(env: RootDatabase, name: string, shape: RowShape<V>): Database<V, K> {
  const options: { name: string; encoding: 'msgpack' } = Object.assign({ name, encoding: 'msgpack' as const }, { encoder: rowEncoder(shape) });
  return env.openDB<V, K>(options);
}

/** Trailing absent fields left off; absent fields before a present one as nil. */
function trim(t: unknown[]): unknown[] {
  let n = t.length;
  while (n > 0 && t[n - 1] === undefined) n--;
  if (n !== t.length) t.length = n;
  for (let i = 0; i < n; i++) if (t[i] === undefined) t[i] = null;
  return t;
}

function opt<T>(v: unknown): T | undefined {
  return v === null || v === undefined ? undefined : (v as T);
}

/** `out[key] = value` when the tuple has the field (nil and missing are absent). */
function present<T extends object, K extends keyof T>(out: T, key: K, value: unknown): void {
  if (value !== null && value !== undefined) out[key] = value as T[K];
}

// ------------------------------------------------------------------ segments

/** [s, c, o, t, d, e] */
function segmentToWire(g: StoredSegment): unknown[] {
  return trim([g.s, g.c, g.o, g.t, g.d, g.e]);
}

function segmentFromWire(t: readonly unknown[]): StoredSegment {
  const out: StoredSegment = { s: t[0] as StoredSegment['s'] };
  present(out, 'c', t[1]);
  present(out, 'o', t[2]);
  present(out, 't', t[3]);
  present(out, 'd', t[4]);
  present(out, 'e', t[5]);
  return out;
}

function segmentsToWire(g: readonly StoredSegment[]): unknown[][] {
  const out = new Array<unknown[]>(g.length);
  for (let i = 0; i < g.length; i++) out[i] = segmentToWire(g[i] as StoredSegment);
  return out;
}

function segmentsFromWire(t: readonly unknown[]): StoredSegment[] {
  const out = new Array<StoredSegment>(t.length);
  for (let i = 0; i < t.length; i++) out[i] = segmentFromWire(t[i] as readonly unknown[]);
  return out;
}

// ---------------------------------------------------------------- recipients

/** [g, s, e, u] */
function attemptToWire(a: StoredAttempt): unknown[] {
  return trim([segmentsToWire(a.g), a.s, a.e, a.u]);
}

function attemptFromWire(t: readonly unknown[]): StoredAttempt {
  const out: StoredAttempt = { g: segmentsFromWire(t[0] as readonly unknown[]), s: t[1] as StoredAttempt['s'], u: t[3] as number };
  present(out, 'e', t[2]);
  return out;
}

/** [n, s, a, u, g, e, r, p] */
export const RECIPIENT_ROW: RowShape<StoredRecipient> = {
  toWire: (r) => trim([r.n, r.s, r.a, r.u, segmentsToWire(r.g), r.e, r.r, r.p === undefined ? undefined : r.p.map(attemptToWire)]),
  fromWire: (t) => {
    const out: StoredRecipient = { n: t[0] as string, s: t[1] as StoredRecipient['s'], a: t[2] as number, u: t[3] as number, g: segmentsFromWire(t[4] as readonly unknown[]) };
    present(out, 'e', t[5]);
    present(out, 'r', t[6]);
    const p = opt<readonly unknown[]>(t[7]);
    if (p !== undefined) out.p = p.map((a) => attemptFromWire(a as readonly unknown[]));
    return out;
  },
};

// ------------------------------------------------------------------ messages

/** [t, r, c, n, s, k, a, x, g, f, i, u, p, v, w, h] */
export const MESSAGE_ROW: RowShape<StoredMessage> = {
  toWire: (m) => trim([m.t, m.r, m.c, m.n, m.s, m.k, m.a, m.x, m.g, m.f, m.i, m.u, m.p, m.v, m.w, m.h]),
  fromWire: (t) => {
    const out: StoredMessage = {
      t: t[0] as string, r: t[1] as string, c: t[2] as StoredMessage['c'], n: t[3] as StoredMessage['n'],
      s: t[4] as number, k: t[5] as number, a: t[6] as number, x: t[7] as number,
    };
    present(out, 'g', t[8]);
    present(out, 'f', t[9]);
    present(out, 'i', t[10]);
    present(out, 'u', t[11]);
    present(out, 'p', t[12]);
    present(out, 'v', t[13]);
    present(out, 'w', t[14]);
    present(out, 'h', t[15]);
    return out;
  },
};

// ----------------------------------------------------------------- callbacks

/** [state, attempts, nextAt, completedAt, lastError] */
export const CALLBACK_ROW: RowShape<CallbackState> = {
  toWire: (c) => trim([c.state, c.attempts, c.nextAt, c.completedAt, c.lastError]),
  fromWire: (t) => {
    const out: { -readonly [K in keyof CallbackState]: CallbackState[K] } = { state: t[0] as CallbackState['state'], attempts: t[1] as number, nextAt: t[2] as number };
    present(out, 'completedAt', t[3]);
    present(out, 'lastError', t[4]);
    return out;
  },
};
