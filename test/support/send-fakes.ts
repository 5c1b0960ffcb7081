/**
 * In-memory fakes of the send service's store and queue for unit tests: the
 * store records the ids of the message rows it is asked to write, the queue
 * records what it is asked to publish and makes rows and jobs "durable
 * together" at once. A refused send shows as nothing in either list.
 */
import type { SendStore } from '../../src/send/index.js';
import type { QueueMessage, WorkQueue } from '../../src/queue/port.js';

export interface SendFakes {
  /** Ids of the message rows written (held ones included). */
  readonly rows: string[];
  /** Jobs published. */
  readonly published: QueueMessage[];
  readonly store: SendStore;
  readonly queue: WorkQueue;
}

export function sendFakes(): SendFakes {
  const rows: string[] = [];
  const published: QueueMessage[] = [];
  const store: SendStore = {
    putMessage: (m) => void rows.push(m.id),
    putPendingMessage: (m) => void rows.push(m.id),
    putIdempotency: () => undefined,
    getIdempotency: () => undefined,
    getMessage: () => undefined,
    flushed: async () => undefined,
  };
  const queue = {
    kind: 'embedded',
    lingerMs: 0,
    async persistTogether(w) {
      w.after();
      await Promise.all([w.rowsDurable(), w.publish()]);
    },
    async publish(ms) {
      published.push(...ms);
      return ms.map((m, i) => ({ msgId: m.msgId, seq: i, duplicate: false }));
    },
    claimKey: async () => ({ won: true }),
    fetch: async () => [],
    depth: async () => 0,
    onDeadLetter: () => undefined,
    close: async () => undefined,
  } as WorkQueue;
  return { rows, published, store, queue };
}
