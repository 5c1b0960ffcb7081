/**
 * The pure decisions of new-mail alerts (core/mail-alert.ts): the rate
 * window and its digest, quiet hours, the send marker, retries; the texts
 * (sender, subject shortening) and the sender-domain rule.
 */
import t from 'tap';
import {
  afterSend, afterTransientFailure, arrive, digestValues, domainOf, dueStep, fold, MAX_RETRY_DELAY_MS, plainIp,
  senderAllowed, senderName, shortenForSms, subjectLine, type PersonMailState,
} from '../../src/core/mail-alert.js';

const W = 600_000;
const mail = (n: number) => ({ sender: `S${n}`, subject: `subject ${n}` });
let ids = 0;
const newId = (): string => `d${++ids}`;
const ctx = (now: number, quietEnd?: number) => ({ now, windowMs: W, quietEnd, newId });

t.test('the first mail alerts at once; mail inside the window folds into ONE digest due when the window ends', async (t) => {
  const a = arrive(undefined, mail(1), ctx(1000));
  t.same(a, { kind: 'alert', next: { lastSentAt: 1000 } });
  let s: PersonMailState = a.next;
  for (let i = 2; i <= 20; i++) {
    const r = arrive(s, mail(i), ctx(1000 + i * 1000));
    t.equal(r.kind, 'fold');
    s = r.next;
  }
  t.match(s.pending, { count: 19, sender: 'S20', subject: 'subject 20', dueAt: 1000 + W, attempts: 0 });
  const id = s.pending?.id;
  t.equal(fold(s, mail(21), 0, newId).next.pending?.id, id, 'one digest: the id stays');
  t.equal(arrive(s, mail(21), ctx(1000 + W + 5)).kind, 'fold', 'a due digest not yet sent still takes new mail');
});

t.test('after the window the next mail alerts again', async (t) => {
  t.equal(arrive({ lastSentAt: 0 }, mail(1), ctx(W)).kind, 'alert');
  t.equal(arrive({ lastSentAt: 0 }, mail(1), ctx(W - 1)).kind, 'fold');
});

t.test('quiet hours: everything folds, due when they end (or when the window ends, if later)', async (t) => {
  const q = arrive(undefined, mail(1), ctx(1000, 50_000));
  t.match(q, { kind: 'fold', newDigest: true, next: { pending: { count: 1, dueAt: 50_000 } } });
  const late = arrive({ lastSentAt: 40_000 }, mail(1), ctx(45_000, 50_000));
  t.equal(late.next.pending?.dueAt, 40_000 + W, 'the rate window still holds after the quiet hours');
  const pendingEarly: PersonMailState = { pending: { id: 'x', count: 1, sender: 'a', subject: 'b', dueAt: 10, attempts: 0 } };
  t.equal(arrive(pendingEarly, mail(2), ctx(5, 90_000)).next.pending?.dueAt, 90_000, 'a digest due inside quiet hours moves to their end');
});

t.test('due step: postpone in quiet hours; mark the send; a marked send is repeated exactly', async (t) => {
  const s: PersonMailState = { lastSentAt: 0, pending: { id: 'd1', count: 3, sender: 'S', subject: 'T', dueAt: 100, attempts: 0 } };
  const keyOf = (p: { id: string }) => `k:${p.id}`;
  const render = (p: { count: number }) => `n=${p.count}`;
  t.same(dueStep(s, 99, undefined, keyOf, render), { kind: 'none' }, 'not due yet');
  t.same(dueStep(undefined, 99, undefined, keyOf, render), { kind: 'none' });
  t.match(dueStep(s, 100, 5000, keyOf, render), { kind: 'postpone', next: { pending: { dueAt: 5000 } } });
  const step = dueStep(s, 100, undefined, keyOf, render);
  t.match(step, { kind: 'send', send: { key: 'k:d1', text: 'n=3', count: 3 } });
  if (step.kind !== 'send') return;
  // Two more mails fold in while it is being sent; a crash and a second attempt send the same thing.
  const grown = fold(fold(step.next, mail(4), 0, newId).next, mail(5), 0, newId).next;
  const again = dueStep(grown, 200, undefined, keyOf, render);
  t.match(again, { kind: 'send', send: { key: 'k:d1', text: 'n=3', count: 3 } });
  t.equal(again.kind === 'send' && again.next, grown, 'nothing new to store');
  const after = afterSend(grown, 3, 300, W, () => 'd2');
  t.same(after, { lastSentAt: 300, pending: { id: 'd2', count: 2, sender: 'S5', subject: 'subject 5', dueAt: 300 + W, attempts: 0 } }, 'what came meanwhile waits one window');
  t.same(afterSend(step.next, 3, 300, W, newId), { lastSentAt: 300 }, 'nothing left');
  t.same(afterSend(step.next, 3, undefined, W, newId), { lastSentAt: 0 }, 'refused for good: the window is not restarted');
});

t.test('transient failures back off exponentially up to a cap, keeping the marked send', async (t) => {
  let s: PersonMailState = { pending: { id: 'd', count: 2, sender: 'a', subject: 'b', dueAt: 0, attempts: 0, sending: { key: 'k', text: 'x', count: 2 } } };
  const delays: number[] = [];
  for (let i = 0; i < 12; i++) {
    s = afterTransientFailure(s, 1000);
    delays.push((s.pending?.dueAt ?? 0) - 1000);
  }
  t.same(delays.slice(0, 4), [1000, 2000, 4000, 8000]);
  t.equal(delays[11], MAX_RETRY_DELAY_MS);
  t.same(s.pending?.sending, { key: 'k', text: 'x', count: 2 });
  t.equal(s.pending?.attempts, 12);
});

t.test('a digest of one mail reads as an alert', async (t) => {
  t.same(digestValues({ count: 1, sender: 'a', subject: 'b' }), { kind: 'alert', values: { sender: 'a', subject: 'b' } });
  t.same(digestValues({ count: 7, sender: 'a', subject: 'b' }), { kind: 'digest', values: { count: '7', sender: 'a', subject: 'b' } });
});

t.test('texts: one line, shortened by characters with …, never splitting a character', async (t) => {
  t.equal(shortenForSms('  a\r\n\tb   c ', 10), 'a b c');
  t.equal(shortenForSms('关于召开2024年度全市防汛工作会议暨安全生产工作部署会议的通知（第二次修订稿）', 20), '关于召开2024年度全市防汛工作会议暨…');
  t.equal(Array.from(shortenForSms('😀'.repeat(50), 40)).length, 40);
  t.equal(shortenForSms('😀'.repeat(50), 40).endsWith('😀…'), true);
  t.equal(subjectLine(undefined), '(无主题)');
  t.equal(subjectLine('   '), '(无主题)');
  t.equal(Array.from(subjectLine('x'.repeat(100))).length, 40);
  t.equal(senderName({ name: '张三', address: 'zs@a.gov.cn' }, 'env@a.gov.cn'), '张三');
  t.equal(senderName({ name: '"  "', address: 'zs@a.gov.cn' }, 'env@a.gov.cn'), 'zs@a.gov.cn', 'an empty display name falls back to the address');
  t.equal(senderName(undefined, 'env@a.gov.cn'), 'env@a.gov.cn');
  t.equal(senderName(undefined, ''), '(未知发件人)');
});

t.test('sender domains: exact, or *.domain for its sub-domains; the null sender is refused', async (t) => {
  const domains = ['office.gov.cn', '*.city.gov.cn'];
  t.ok(senderAllowed('a@office.gov.cn', domains));
  t.ok(senderAllowed('a@OFFICE.gov.cn', domains), 'case-insensitive');
  t.notOk(senderAllowed('a@sub.office.gov.cn', domains), 'exact entries do not cover sub-domains');
  t.ok(senderAllowed('a@health.city.gov.cn', domains));
  t.notOk(senderAllowed('a@city.gov.cn', domains), '*.domain is sub-domains only');
  t.notOk(senderAllowed('a@evilcity.gov.cn', domains));
  t.notOk(senderAllowed('', domains));
  t.notOk(senderAllowed('nobody', domains));
  t.equal(domainOf('x@Example.COM.'), 'example.com');
  t.equal(plainIp('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(plainIp('::1'), '::1');
});
