/**
 * The queue port and its embedded adapter. The NATS adapter is not re-exported
 * here so that importing the queue does not load the NATS client; the gateway
 * imports `./nats/queue.js` only when configured for it.
 */
export type { DeadLetter, Delivery, PublishResult, QueueMessage, QueueOptions, WorkQueue } from './port.js';
export { EmbeddedQueue, EMBEDDED_QUEUE_FIXED_DBS, MAX_DELIVER_REASON, type EmbeddedQueueConfig } from './embedded/queue.js';
