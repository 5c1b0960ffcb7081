/**
 * Baseline: the raw ceiling of the `smpp` package's client. `binds` sessions,
 * each with `window` outstanding submit_sm, push the same PDUs the gateway
 * would send (pre-encoded payloads, registered delivery on) and answer every
 * deliver_sm. No queue, no store, no retries: what the wire and the
 * simulator allow.
 */
import smpp, { type RawPdu, type RawSession } from 'smpp';

export interface RawRun {
  readonly submits: number;
  readonly elapsedMs: number;
  readonly perSecond: number;
  readonly receipts: number;
}

export async function rawSmppCeiling(opts: {
  host: string;
  port: number;
  binds: number;
  window: number;
  /** Payloads to submit (each one submit_sm). */
  pdus: readonly { destination: string; payload: Buffer; dataCoding: number; esmClass: number }[];
  timeoutMs: number;
}): Promise<RawRun> {
  const sessions: RawSession[] = [];
  let receipts = 0;
  for (let b = 0; b < opts.binds; b++) {
    const session = smpp.connect({ host: opts.host, port: opts.port });
    await new Promise<void>((resolve, reject) => {
      session.once('error', reject);
      session.send(
        new smpp.PDU('bind_transceiver', { system_id: 'smsgw', password: 'secret', interface_version: 0x34 }),
        (pdu: RawPdu) => (pdu.command_status === 0 ? resolve() : reject(new Error(`bind refused ${pdu.command_status}`))),
      );
    });
    session.on('pdu', (pdu: RawPdu) => {
      if (pdu.command === 'deliver_sm') {
        receipts++;
        session.send(pdu.response());
      } else if (pdu.command === 'enquire_link') session.send(pdu.response());
    });
    sessions.push(session);
  }
  const total = opts.pdus.length;
  let next = 0;
  let done = 0;
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`raw ceiling timed out with ${done}/${total}`)), opts.timeoutMs);
    const pump = (session: RawSession): void => {
      if (next >= total) return;
      const p = opts.pdus[next++];
      if (!p) return;
      session.send(
        new smpp.PDU('submit_sm', {
          source_addr_ton: 0,
          source_addr_npi: 1,
          source_addr: '10690000',
          dest_addr_ton: 1,
          dest_addr_npi: 1,
          destination_addr: p.destination,
          esm_class: p.esmClass,
          data_coding: p.dataCoding,
          registered_delivery: 1,
          short_message: p.payload,
        }),
        () => {
          done++;
          if (done === total) {
            clearTimeout(timer);
            resolve();
          } else pump(session);
        },
      );
    };
    for (const s of sessions) for (let w = 0; w < opts.window; w++) pump(s);
  });
  const elapsedMs = performance.now() - started;
  // Let receipts drain before closing so the simulator is idle for the next phase.
  const drainUntil = Date.now() + 5000;
  while (receipts < total && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
  for (const s of sessions) s.destroy();
  return { submits: total, elapsedMs, perSecond: (total * 1000) / elapsedMs, receipts };
}
