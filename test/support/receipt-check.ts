/**
 * What the SMSC simulator said of each submit, and the check that every
 * recipient ended with exactly that (issue 12 tests): numbers steered to
 * fail by suffix, an observeReceipt hook that records the receipts the
 * simulator makes per destination, and the expected recipient state derived
 * from them (multi-part: delivered only when every part was, the worst part
 * otherwise).
 */
import { deriveRecipientState, type FinalState, type RecipientState } from '../../src/core/message.js';
import type { SmscSimulatorOptions } from '../../src/smpp/simulator.js';

type Stat = 'DELIVRD' | 'UNDELIV' | 'EXPIRED' | 'REJECTD';
const STATE: Record<Stat, FinalState> = { DELIVRD: 'delivered', UNDELIV: 'undeliverable', EXPIRED: 'expired', REJECTD: 'rejected' };

/** The i-th number (i < 70,000): every tenth ends 0005 (UNDELIV), every tenth 0003 (EXPIRED), the rest 8888 (the mix). */
export function numberOf(i: number): string {
  const suffix = i % 10 === 0 ? '0005' : i % 10 === 1 ? '0003' : '8888';
  return `1${3 + Math.floor(i / 10_000)}8${String(i % 10_000).padStart(4, '0')}${suffix}`;
}

/** 149 Chinese characters: 3 parts of UCS-2 (at most 67 each). */
export const LONG_TEXT =
  '关于召开全市防汛工作紧急会议的通知：各区、各部门：为切实做好今年汛期防汛抗洪工作，经市政府研究，定于明日上午九时在市政府三号会议室召开全市防汛工作紧急会议。' +
  '请各单位主要负责同志准时参加，并提前十分钟签到。会议期间请将手机调至静音状态。如有特殊情况不能参会，请于今日下午五时前向市政府办公厅书面请假。';

export const FINAL_STATES: ReadonlySet<string> = new Set(['delivered', 'undeliverable', 'expired', 'rejected', 'failed']);

export class ReceiptLedger {
  /** destination (without country code) → the states of the receipts made for it, one per part. */
  private readonly byDestination = new Map<string, Stat[]>();

  /** Simulator options: ids from 1, receipts at 0 ms, a window of receipts that does not wait for us, a mix with failures. */
  simulatorOptions(over: SmscSimulatorOptions = {}): SmscSimulatorOptions {
    return {
      dlrDelayMs: 0,
      firstMessageId: 1,
      deliverWindow: 1000,
      dlrMix: { DELIVRD: 6, UNDELIV: 1, EXPIRED: 1, REJECTD: 1 },
      seed: 12,
      observeReceipt: (r) => {
        const to = r.destination.replace(/^\+?86/, '');
        const list = this.byDestination.get(to);
        if (list) list.push(r.stat);
        else this.byDestination.set(to, [r.stat]);
      },
      ...over,
    };
  }

  /** The state the receipts made for `number` give a recipient of `parts` parts (submitted while some are missing). */
  expected(number: string, parts: number): RecipientState {
    const stats = this.byDestination.get(number) ?? [];
    return stats.length === parts ? deriveRecipientState(stats.map((s) => ({ state: STATE[s] })), 'submitted') : 'submitted';
  }

  /** Compare (number, state) pairs with the receipts: counts of recipients not final and not as said, and a few examples. */
  compare(rows: Iterable<{ readonly to: string; readonly state: string | undefined }>, parts: number): { total: number; notFinal: number; wrong: number; examples: string[]; states: Set<string> } {
    let total = 0;
    let notFinal = 0;
    let wrong = 0;
    const examples: string[] = [];
    const states = new Set<string>();
    for (const row of rows) {
      total++;
      const to = row.to.replace(/^\+?86/, '');
      const want = this.expected(to, parts);
      if (row.state !== undefined) states.add(row.state);
      if (!FINAL_STATES.has(row.state ?? '')) notFinal++;
      if (row.state !== want) {
        wrong++;
        if (examples.length < 5) examples.push(`${to}: ${row.state} (receipts said ${(this.byDestination.get(to) ?? []).join(',')})`);
      }
    }
    return { total, notFinal, wrong, examples, states };
  }
}
