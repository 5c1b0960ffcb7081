/**
 * A hand-driven ISMG (node:net + the codec) for the CMPP link's edge cases:
 * bad frames from the carrier, its ACTIVE_TEST and TERMINATE, a broken
 * stream. Loopback only; every socket closed at the end.
 */
import t, { type Test } from 'tap';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { CmppAccount } from '../../src/cmpp/account.js';
import { FrameReader, authenticatorIsmg, composeMsgId, decodePdu, encodePdu, encodeStatusReport, type CmppPdu } from '../../src/cmpp/codec.js';
import type { CmppAccountConfig } from '../../src/config/schema.js';
import type { DeliveryReceipt } from '../../src/core/ports.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { until } from '../support/wait.js';

interface Peer {
  readonly port: number;
  /** PDUs received from the client, per connection, in order. */
  readonly got: CmppPdu[][];
  readonly sockets: Socket[];
  send(conn: number, frame: Buffer): void;
  close(): Promise<void>;
}

async function fakeIsmg(t: Test): Promise<Peer> {
  const got: CmppPdu[][] = [];
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    const n = sockets.length;
    sockets.push(socket);
    got.push([]);
    const reader = new FrameReader();
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        const r = decodePdu(f, 3);
        if (!r.ok) continue;
        got[n]?.push(r.pdu);
        if (r.pdu.command === 'connect') {
          socket.write(encodePdu({ command: 'connect_resp', sequenceId: r.pdu.sequenceId, status: 0, authenticatorIsmg: authenticatorIsmg(3, 0, r.pdu.authenticatorSource, 'pw'), version: 0x30 }, 3));
        } else if (r.pdu.command === 'terminate') {
          socket.end(encodePdu({ command: 'terminate_resp', sequenceId: r.pdu.sequenceId }, 3));
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const peer: Peer = {
    port: (server.address() as AddressInfo).port,
    got,
    sockets,
    send: (conn, frame) => sockets[conn]?.write(frame),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  t.teardown(() => peer.close());
  return peer;
}

function account(port: number): CmppAccountConfig {
  return {
    name: 'cm', protocol: 'cmpp3', host: '127.0.0.1', port, spId: '901234', sharedSecret: 'pw', serviceId: 'MGOV', msgSrc: '', accessCode: '1065700',
    feeUserType: 2, feeType: '01', feeCode: '000000', registeredDelivery: true, links: 1, window: 16, tps: 0, responseTimeoutMs: 2000, activeTestMs: 60_000,
    reconnectInitialMs: 20, reconnectMaxMs: 100, throttleBackoffMs: 20, utcOffsetMinutes: 480, operators: ['*'],
  };
}

const lastOf = (peer: Peer, conn: number, command: CmppPdu['command']): CmppPdu | undefined => [...(peer.got[conn] ?? [])].reverse().find((p) => p.command === command);

t.test('bad frames from the ISMG: a truncated DELIVER is answered Result 1, unknown commands ignored, the link stays; a broken Total_Length reconnects', async (t) => {
  const peer = await fakeIsmg(t);
  const a = new CmppAccount(account(peer.port), { metrics: createMetrics(), logger: pino({ level: 'silent' }) });
  const receipts: DeliveryReceipt[] = [];
  a.onReceipt(async (r) => {
    receipts.push(r);
  });
  a.onMobileOriginated(async () => undefined);
  a.start();
  t.teardown(() => a.close());
  t.ok(await a.waitBound(1, 5000), 'connected');

  // A DELIVER whose body stops short (its Total_Length says so): refused in this frame only.
  const id = composeMsgId({ month: 12, day: 6, hour: 12, minute: 0, second: 0, ismg: 1, sequence: 1 });
  const full = encodePdu({
    command: 'deliver', sequenceId: 77, msgId: '5', destId: '1065700', serviceId: 'MGOV', tpPid: 0, tpUdhi: 0, msgFmt: 0, srcTerminalId: '13800138000', srcTerminalType: 0,
    registeredDelivery: 1, msgContent: encodeStatusReport({ msgId: id, stat: 'DELIVRD', submitTime: '2612061200', doneTime: '2612061201', destTerminalId: '13800138000', smscSequence: 1 }, 3), linkId: '', reserve: '',
  }, 3);
  const short = Buffer.from(full.subarray(0, 40));
  short.writeUInt32BE(40, 0);
  peer.send(0, short);
  // An unknown command and random octets inside a well-framed PDU.
  const junk = Buffer.alloc(30, 0xab);
  junk.writeUInt32BE(30, 0);
  junk.writeUInt32BE(0x00000042, 4);
  peer.send(0, junk);
  // Then the ISMG's own ACTIVE_TEST, and the real report.
  peer.send(0, encodePdu({ command: 'active_test', sequenceId: 78 }, 3));
  peer.send(0, full);
  await until('the report is applied', () => receipts.length === 1, 5000);
  t.equal(receipts[0]?.messageId, id);
  await until('answers', () => lastOf(peer, 0, 'deliver_resp')?.sequenceId === 77 && lastOf(peer, 0, 'active_test_resp') !== undefined, 5000);
  const answers = (peer.got[0] ?? []).filter((p) => p.command === 'deliver_resp');
  t.match(answers, [{ sequenceId: 77, result: 1 }, { sequenceId: 77, msgId: '5', result: 0 }], 'truncated: Result 1; whole: Result 0 echoing its Msg_Id');
  t.equal(a.boundCount, 1, 'still connected');

  // A Total_Length no frame can have: the stream has no next boundary; the link reconnects.
  const broken = Buffer.alloc(12);
  broken.writeUInt32BE(3, 0);
  peer.send(0, broken);
  await t.resolves(until('a second connection', () => peer.sockets.length === 2 && a.boundCount === 1, 5000), 'reconnected after a broken stream');
});

t.test('the ISMG terminates: TERMINATE_RESP, then a fresh connection', async (t) => {
  const peer = await fakeIsmg(t);
  const a = new CmppAccount(account(peer.port), { metrics: createMetrics(), logger: pino({ level: 'silent' }) });
  a.onReceipt(async () => undefined);
  a.onMobileOriginated(async () => undefined);
  a.start();
  t.teardown(() => a.close());
  t.ok(await a.waitBound(1, 5000));
  peer.send(0, encodePdu({ command: 'terminate', sequenceId: 9 }, 3));
  await until('terminate_resp', () => lastOf(peer, 0, 'terminate_resp')?.sequenceId === 9, 5000);
  await t.resolves(until('reconnected', () => peer.sockets.length === 2 && a.boundCount === 1, 5000), 'reconnected');
});
