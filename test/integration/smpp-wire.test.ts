/**
 * The hand-written encoders in src/smpp/wire.ts against the `smpp`
 * package's encoder (byte for byte) and decoder (field for field), and the
 * guards that must fire before anything reaches a socket.
 */
import t from 'tap';
import { isGatewayError } from '../../src/core/errors.js';
import {
  COMMAND_ID,
  STATUS,
  decodePdu,
  encodeBind,
  encodeEmptyPdu,
  encodeMessageIdResp,
  encodeMessagePdu,
  encodeWithPackage,
  messageText,
  receiptText,
  statusName,
  type MessageFields,
} from '../../src/smpp/wire.js';

const ucs2 = (s: string): Buffer => {
  const b = Buffer.from(s, 'utf16le');
  return b.swap16();
};

const submit: MessageFields = {
  service_type: '',
  source_addr_ton: 0,
  source_addr_npi: 1,
  source_addr: '10690000',
  dest_addr_ton: 1,
  dest_addr_npi: 1,
  destination_addr: '8613800138000',
  esm_class: 0x40,
  registered_delivery: 1,
  data_coding: 8,
  validity_period: '000000020000000R',
  short_message: Buffer.concat([Buffer.from([5, 0, 3, 0x2a, 2, 1]), ucs2('会议通知：明天上午九点')]),
};

t.test('submit_sm matches the package encoder and decodes back', async (t) => {
  const ours = encodeMessagePdu(0x04, 42, submit);
  const theirs = encodeWithPackage('submit_sm', { ...submit, short_message: Buffer.from(submit.short_message), sequence_number: 42 });
  t.same(ours.toString('hex'), theirs.toString('hex'), 'byte-identical');
  const pdu = decodePdu(ours);
  t.equal(pdu.command, 'submit_sm');
  if (pdu.command !== 'submit_sm') return;
  t.equal(pdu.sequence_number, 42);
  t.equal(pdu.command_length, ours.length);
  t.equal(pdu.source_addr, '10690000');
  t.equal(pdu.source_addr_npi, 1);
  t.equal(pdu.destination_addr, '8613800138000');
  t.equal(pdu.dest_addr_ton, 1);
  t.equal(pdu.esm_class, 0x40);
  t.equal(pdu.data_coding, 8);
  t.equal(pdu.registered_delivery, 1);
  t.equal(pdu.validity_period, '000000020000000R', 'times stay strings');
  t.ok(Buffer.isBuffer(pdu.short_message), 'short_message stays raw bytes');
  t.same(pdu.short_message, Buffer.from(submit.short_message));
  t.equal(messageText(pdu.short_message ?? Buffer.alloc(0), 8, 0x40), '会议通知：明天上午九点', 'UDH skipped, UCS-2 decoded');
});

t.test('deliver_sm receipt with TLVs matches the package encoder', async (t) => {
  const text = 'id:7B1F2C sub:001 dlvrd:001 submit date:2511221830 done date:2511221831 stat:DELIVRD err:000 text:';
  const fields: MessageFields = {
    source_addr_ton: 1,
    source_addr_npi: 1,
    source_addr: '8613800138000',
    dest_addr_ton: 0,
    dest_addr_npi: 1,
    destination_addr: '10690000',
    esm_class: 0x04,
    registered_delivery: 0,
    data_coding: 0,
    short_message: Buffer.from(text, 'latin1'),
    receipted_message_id: '7B1F2C',
    message_state: 2,
    network_error_code: Buffer.from([3, 0, 0]),
  };
  const ours = encodeMessagePdu(0x05, 7, fields);
  const theirs = encodeWithPackage('deliver_sm', { ...fields, sequence_number: 7 });
  t.equal(ours.toString('hex'), theirs.toString('hex'), 'byte-identical, TLVs included');
  const pdu = decodePdu(ours);
  if (pdu.command !== 'deliver_sm') {
    t.fail(`decoded as ${pdu.command}`);
    return;
  }
  t.equal(pdu.receipted_message_id, '7B1F2C');
  t.equal(pdu.message_state, 2);
  t.same(pdu.network_error_code, Buffer.from([3, 0, 0]));
  t.equal(receiptText(pdu.short_message ?? Buffer.alloc(0), 0), text);
});

t.test('responses and header-only PDUs match the package', async (t) => {
  t.equal(
    encodeMessageIdResp(COMMAND_ID.submit_sm_resp, 9, 0, '1000001').toString('hex'),
    encodeWithPackage('submit_sm_resp', { sequence_number: 9, message_id: '1000001' }).toString('hex'),
  );
  t.equal(
    encodeMessageIdResp(COMMAND_ID.submit_sm_resp, 9, STATUS.ESME_RTHROTTLED, 'ignored').toString('hex'),
    encodeWithPackage('submit_sm_resp', { sequence_number: 9, command_status: STATUS.ESME_RTHROTTLED }).toString('hex'),
    'an error response has no body',
  );
  t.equal(
    encodeMessageIdResp(COMMAND_ID.deliver_sm_resp, 3, 0).toString('hex'),
    encodeWithPackage('deliver_sm_resp', { sequence_number: 3 }).toString('hex'),
  );
  for (const command of ['enquire_link', 'enquire_link_resp', 'unbind', 'unbind_resp'] as const) {
    t.equal(encodeEmptyPdu(COMMAND_ID[command], 77).toString('hex'), encodeWithPackage(command, { sequence_number: 77 }).toString('hex'), command);
  }
  t.equal(
    encodeEmptyPdu(COMMAND_ID.generic_nack, 5, STATUS.ESME_RINVCMDID).toString('hex'),
    encodeWithPackage('generic_nack', { sequence_number: 5, command_status: STATUS.ESME_RINVCMDID }).toString('hex'),
  );
});

t.test('bind_transceiver always says interface_version 0x34', async (t) => {
  const ours = encodeBind('bind_transceiver', 1, { system_id: 'smsgw', password: 'secret', system_type: '' });
  const theirs = encodeWithPackage('bind_transceiver', { sequence_number: 1, system_id: 'smsgw', password: 'secret', system_type: '', interface_version: 0x34 });
  t.equal(ours.toString('hex'), theirs.toString('hex'));
  const pdu = decodePdu(ours);
  t.equal(pdu.command, 'bind_transceiver');
  if (pdu.command === 'bind_transceiver') t.equal(pdu.interface_version, 0x34);
});

t.test('guards fire before anything is written', async (t) => {
  const invalid = (fn: () => unknown, what: string): void => {
    try {
      fn();
      t.fail(`${what}: no error`);
    } catch (err) {
      t.ok(isGatewayError(err) && err.code === 'SMPP_PDU_INVALID', `${what}: SMPP_PDU_INVALID`);
    }
  };
  invalid(() => encodeMessagePdu(0x04, 1, { ...submit, short_message: new Uint8Array(255) }), '255 octets');
  t.equal(encodeMessagePdu(0x04, 1, { ...submit, short_message: new Uint8Array(254) }).length > 254, true, '254 octets is fine');
  invalid(() => encodeMessagePdu(0x04, 1, { ...submit, short_message: 'text' as unknown as Uint8Array }), 'a string body');
  invalid(() => encodeMessagePdu(0x04, 1, { ...submit, data_coding: undefined as unknown as number }), 'no data_coding');
  invalid(() => encodeMessagePdu(0x04, 1, { ...submit, destination_addr: '8'.repeat(21) }), 'destination too long');
  invalid(() => encodeMessagePdu(0x04, 1, { ...submit, source_addr: '政务' }), 'non-ASCII source');
  invalid(() => encodeMessagePdu(0x04, 1, { ...submit, esm_class: 256 }), 'esm_class not an octet');
  invalid(() => encodeMessagePdu(0x04, -1, submit), 'negative sequence');
  invalid(() => encodeBind('bind_transceiver', 1, { system_id: 'x', password: 'too-long-pw', system_type: '' }), 'password over 8');
});

t.test('text decoding by data_coding', async (t) => {
  t.equal(messageText(Buffer.from([0x48, 0x69, 0x00, 0x11]), 0, 0), 'Hi@_', 'GSM 03.38: 0x00 is @, 0x11 is _');
  t.equal(messageText(ucs2('收到'), 8, 0), '收到');
  t.equal(messageText(Buffer.from('caf\xe9', 'latin1'), 3, 0), 'café');
  t.equal(messageText(Buffer.from([5, 0, 3, 1, 2, 1, 0x41]), 0, 0x40), 'A', 'UDH skipped');
  t.equal(messageText(ucs2('是'), 0x18, 0), '是', 'GSM DCS group: UCS-2 with class');
  t.equal(receiptText(Buffer.from('id:a_b@1 stat:DELIVRD'), 0), 'id:a_b@1 stat:DELIVRD', 'receipts read as ASCII, not GSM');
});

t.test('status names', async (t) => {
  t.equal(statusName(0x58), 'ESME_RTHROTTLED');
  t.equal(statusName(0x14), 'ESME_RMSGQFUL');
  t.equal(statusName(0x0b), 'ESME_RINVDSTADR');
  t.equal(statusName(0x400), 'ESME_0x00000400', 'vendor codes keep their number');
});
