/**
 * Reading a mail for an alert: only the header block is kept (the body is
 * drained), wherever the chunks split; mailparser decodes the header; the
 * de-duplication key follows the Message-ID.
 */
import t from 'tap';
import { PassThrough } from 'node:stream';
import { messageKey, parseHeaderBlock, readHeaderBlock } from '../../src/office/mail/headers.js';

function streamOf(chunks: readonly Buffer[]): PassThrough {
  const s = new PassThrough();
  setImmediate(() => {
    for (const c of chunks) s.write(c);
    s.end();
  });
  return s;
}

const HEADER = [
  'Received: from mx.office.gov.cn by gw',
  `From: =?UTF-8?B?${Buffer.from('张三').toString('base64')}?= <ZhangSan@office.gov.cn>`,
  'To: "Alice" <Alice@Office.gov.cn>, Team: bob@office.gov.cn, carol@office.gov.cn;',
  'Cc: alice@office.gov.cn, dave@office.gov.cn',
  `Subject: =?UTF-8?B?${Buffer.from('关于召开').toString('base64')}?=`,
  ` =?UTF-8?B?${Buffer.from('防汛会议的通知').toString('base64')}?=`,
  'Message-ID: <abc.123@office.gov.cn>',
].join('\r\n');

t.test('the header block is kept and the body drained, whatever the chunk boundaries', async (t) => {
  const body = Buffer.alloc(1_000_000, 0x61);
  const whole = Buffer.concat([Buffer.from(`${HEADER}\r\n\r\n`), body]);
  for (const cut of [1, 7, HEADER.length - 1, HEADER.length, HEADER.length + 1, HEADER.length + 2, HEADER.length + 3, 65536]) {
    const r = await readHeaderBlock(streamOf([whole.subarray(0, cut), whole.subarray(cut, cut + 10), whole.subarray(cut + 10)]));
    t.equal(r.block.toString(), `${HEADER}\r\n`, `split at ${cut}`);
    t.equal(r.bytes, whole.length);
  }
  const lf = await readHeaderBlock(streamOf([Buffer.from('Subject: x\nFrom: a@b.cn\n\nbody\n')]));
  t.equal(lf.block.toString(), 'Subject: x\nFrom: a@b.cn\n', 'bare LF line ends too');
  const noBody = await readHeaderBlock(streamOf([Buffer.from('Subject: only a header\r\n')]));
  t.equal(noBody.block.toString(), 'Subject: only a header\r\n');
  const huge = await readHeaderBlock(streamOf([Buffer.from(`X-Long: ${'y'.repeat(100)}\r\n`.repeat(10_000))]), 4096);
  t.ok(huge.block.length <= 4096, 'a header block over the bound is cut');
  t.ok(huge.block.toString().endsWith('\r\n'), 'at a line end');
});

t.test('mailparser decodes the fields an alert needs', async (t) => {
  const h = await parseHeaderBlock(Buffer.from(`${HEADER}\r\n`));
  t.same(h.from, { name: '张三', address: 'ZhangSan@office.gov.cn' });
  t.equal(h.subject, '关于召开防汛会议的通知', 'encoded words across a folded line');
  t.equal(h.messageId, '<abc.123@office.gov.cn>');
  t.same(h.recipients, ['alice@office.gov.cn', 'bob@office.gov.cn', 'carol@office.gov.cn', 'dave@office.gov.cn'], 'To and Cc, groups flattened, lower-case, each once');
  const bare = await parseHeaderBlock(Buffer.from('X-Nothing: here\r\n'));
  t.same(bare, { from: undefined, subject: undefined, messageId: undefined, recipients: [] });
});

t.test('the de-duplication key: the Message-ID, else the header block', async (t) => {
  const a = messageKey('<abc@x.cn>', Buffer.from('one'));
  t.equal(a, messageKey('abc@x.cn', Buffer.from('two')), 'angle brackets and the rest of the header do not matter');
  t.not(a, messageKey('<ABC@x.cn>', Buffer.from('one')), 'Message-IDs are case-sensitive');
  t.equal(a.length, 22);
  t.equal(messageKey(undefined, Buffer.from('h')), messageKey(undefined, Buffer.from('h')));
  t.not(messageKey(undefined, Buffer.from('h')), messageKey(undefined, Buffer.from('i')));
});
