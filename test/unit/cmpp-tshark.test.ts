/**
 * An independent decoder: Wireshark's CMPP dissector (Debian's `tshark`)
 * reads our 3.0 vectors. The PDUs are wrapped in IPv4/TCP packets to port
 * 7890 (the dissector's port) in a pcap file. Skips when tshark is absent.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { authenticatorSource, composeMsgId, encodePdu, encodeStatusReport, timestampText } from '../../src/cmpp/codec.js';

const tshark = spawnSync('tshark', ['-v'], { encoding: 'utf8' });
const have = tshark.status === 0;

/** One pcap (LINKTYPE_RAW = IPv4) with each payload in its own TCP segment, client 40000 → 7890, sequence numbers continuous. */
function pcap(payloads: Buffer[]): Buffer {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(101, 20); // LINKTYPE_RAW
  const out: Buffer[] = [header];
  let seq = 1000;
  payloads.forEach((p, i) => {
    const ip = Buffer.alloc(20);
    ip.writeUInt8(0x45, 0);
    ip.writeUInt16BE(20 + 20 + p.length, 2);
    ip.writeUInt16BE(i + 1, 4);
    ip.writeUInt8(64, 8);
    ip.writeUInt8(6, 9);
    Buffer.from([127, 0, 0, 1]).copy(ip, 12);
    Buffer.from([127, 0, 0, 1]).copy(ip, 16);
    let sum = 0;
    for (let k = 0; k < 20; k += 2) sum += ip.readUInt16BE(k);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    ip.writeUInt16BE(~sum & 0xffff, 10);
    const tcp = Buffer.alloc(20);
    tcp.writeUInt16BE(40000, 0);
    tcp.writeUInt16BE(7890, 2);
    tcp.writeUInt32BE(seq, 4);
    tcp.writeUInt32BE(1, 8);
    tcp.writeUInt8(0x50, 12);
    tcp.writeUInt8(0x18, 13); // PSH ACK
    tcp.writeUInt16BE(65535, 14);
    seq += p.length;
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1_700_000_000 + i, 0);
    rec.writeUInt32LE(20 + 20 + p.length, 8);
    rec.writeUInt32LE(20 + 20 + p.length, 12);
    out.push(rec, ip, tcp, p);
  });
  return Buffer.concat(out);
}

t.test('tshark decodes our CMPP 3.0 PDUs with the fields the spec tables give', { skip: have ? false : 'tshark is not installed' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cmpp-tshark-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ts = timestampText(Date.UTC(2026, 11, 6, 3, 4, 5), 480);
  const id = composeMsgId({ month: 12, day: 6, hour: 11, minute: 4, second: 5, ismg: 123456, sequence: 7 });
  const pdus = [
    encodePdu({ command: 'connect', sequenceId: 1, sourceAddr: '901234', authenticatorSource: authenticatorSource('901234', 'pw', ts), version: 0x30, timestamp: Number(ts) }, 3),
    encodePdu({
      command: 'submit', sequenceId: 2, msgId: '0', pkTotal: 2, pkNumber: 1, registeredDelivery: 1, msgLevel: 1, serviceId: 'MGOV', feeUserType: 2,
      feeTerminalId: '', feeTerminalType: 0, tpPid: 0, tpUdhi: 1, msgFmt: 8, msgSrc: '901234', feeType: '01', feeCode: '000000', valIdTime: '261206120000032+',
      atTime: '', srcId: '1065700001234', destTerminalIds: ['8613800138000'], destTerminalType: 0,
      msgContent: new Uint8Array(Buffer.from('050003a70201' + '4f60597d', 'hex')), linkId: 'LINK1', reserve: '',
    }, 3),
    encodePdu({ command: 'submit_resp', sequenceId: 2, msgId: id, result: 8 }, 3),
    encodePdu({
      command: 'deliver', sequenceId: 3, msgId: '42', destId: '1065700001234', serviceId: 'MGOV', tpPid: 0, tpUdhi: 0, msgFmt: 0,
      srcTerminalId: '8613800138000', srcTerminalType: 0, registeredDelivery: 1,
      msgContent: encodeStatusReport({ msgId: id, stat: 'DELIVRD', submitTime: '2612061104', doneTime: '2612061105', destTerminalId: '8613800138000', smscSequence: 9 }, 3),
      linkId: '', reserve: '',
    }, 3),
    encodePdu({ command: 'deliver_resp', sequenceId: 3, msgId: '42', result: 0 }, 3),
    encodePdu({ command: 'active_test', sequenceId: 4 }, 3),
  ];
  const file = join(dir, 'cmpp3.pcap');
  writeFileSync(file, pcap(pdus));
  const fields = [
    'cmpp.Command_Id', 'cmpp.Sequence_Id', 'cmpp.Total_Length', 'cmpp.connect.Source_Addr', 'cmpp.Version', 'cmpp.connect.Timestamp',
    'cmpp.submit.Pk_total', 'cmpp.submit.Pk_number', 'cmpp.Servicd_Id', 'cmpp.TP_udhi', 'cmpp.Msg_Fmt', 'cmpp.submit.Msg_src', 'cmpp.submit.FeeType',
    'cmpp.submit.Src_Id', 'cmpp.submit.DestUsr_tl', 'cmpp.Dest_terminal_Id', 'cmpp.Msg_Length', 'cmpp.LinkID', 'cmpp.submit_resp.Result', 'cmpp.Msg_Id.ismg_code',
    'cmpp.Msg_Id.sequence_id', 'cmpp.deliver.Src_terminal_Id', 'cmpp.deliver.Report.Status', 'cmpp.Report.SMSC_sequence', 'cmpp.deliver_resp.Result',
  ];
  const r = spawnSync('tshark', ['-n', '-r', file, '-T', 'fields', '-E', 'separator=|', '-E', 'occurrence=a', '-E', 'aggregator=,', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  const rows = r.stdout.trim().split('\n').map((line) => Object.fromEntries(line.split('|').map((v, i) => [fields[i] as string, v])));
  t.equal(rows.length, 6, 'one CMPP PDU per packet');
  const [connect, submit, submitResp, deliver, deliverResp, active] = rows as Record<string, string>[];
  t.equal(connect?.['cmpp.Command_Id'], '0x00000001');
  t.equal(connect?.['cmpp.Total_Length'], '39');
  t.equal(connect?.['cmpp.connect.Source_Addr'], '901234');
  t.equal(connect?.['cmpp.Version'], '03.00');
  t.equal(connect?.['cmpp.connect.Timestamp'], '12/06 11:04:05');
  t.equal(submit?.['cmpp.Command_Id'], '0x00000004');
  t.equal(submit?.['cmpp.submit.Pk_total'], '2');
  t.equal(submit?.['cmpp.submit.Pk_number'], '1');
  t.equal(submit?.['cmpp.Servicd_Id'], 'MGOV');
  t.equal(submit?.['cmpp.TP_udhi'], '1');
  t.equal(submit?.['cmpp.Msg_Fmt'], '8');
  t.equal(submit?.['cmpp.submit.Msg_src'], '901234');
  t.equal(submit?.['cmpp.submit.FeeType'], '01');
  t.equal(submit?.['cmpp.submit.Src_Id'], '1065700001234');
  t.equal(submit?.['cmpp.submit.DestUsr_tl'], '1');
  t.equal(submit?.['cmpp.Dest_terminal_Id'], '8613800138000');
  t.equal(submit?.['cmpp.Msg_Length'], '10');
  t.equal(submit?.['cmpp.LinkID'], 'LINK1', 'LinkID found after the 32-octet ids, Dest_terminal_type and the content');
  t.equal(submitResp?.['cmpp.submit_resp.Result'], '8');
  t.equal(submitResp?.['cmpp.Msg_Id.sequence_id'], '7');
  t.equal(deliver?.['cmpp.deliver.Src_terminal_Id'], '8613800138000');
  t.equal(deliver?.['cmpp.deliver.Report.Status'], 'DELIVRD');
  t.equal(deliver?.['cmpp.Report.SMSC_sequence'], '9');
  t.match(deliver?.['cmpp.Msg_Id.sequence_id'] ?? '', /(^|,)7(,|$)/, 'the report\'s Msg_Id is the SUBMIT_RESP\'s');
  t.equal(deliverResp?.['cmpp.deliver_resp.Result'], '0');
  t.equal(active?.['cmpp.Command_Id'], '0x00000008');
});
