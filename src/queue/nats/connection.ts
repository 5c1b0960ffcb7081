/**
 * The gateway's NATS connections (work queue, status events, receipt
 * replication) share one policy: reconnect for ever, notice a dead server
 * that did not close the socket within ~30 s (ping every 10 s, 3 missed),
 * and capture no Error with its stack up front for every request (each
 * publish and each confirmed ack is one; a failure still says what failed).
 * A first connect that fails is QUEUE_UNAVAILABLE, naming the servers.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { GatewayError } from '../../core/errors.js';

export interface GatewayConnectionOptions {
  /** Connection name shown by the server (`nats server report connections`). */
  readonly name: string;
  /** Wait between reconnect attempts, ms. */
  readonly reconnectTimeWaitMs: number;
  /** First connect gives up after this, ms (nats.js default when absent). */
  readonly timeoutMs?: number;
  /** Random extra wait added to each reconnect, ms (nats.js default when absent). */
  readonly reconnectJitterMs?: number;
}

/** `what` names the part in the error: "NATS queue", "status events", … */
export async function connectGateway(what: string, servers: readonly string[], o: GatewayConnectionOptions): Promise<NatsConnection> {
  try {
    return await connect({
      servers: [...servers],
      name: o.name,
      ...(o.timeoutMs !== undefined ? { timeout: o.timeoutMs } : {}),
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: o.reconnectTimeWaitMs,
      ...(o.reconnectJitterMs !== undefined ? { reconnectJitter: o.reconnectJitterMs } : {}),
      pingInterval: 10_000,
      maxPingOut: 3,
      noAsyncTraces: true,
    });
  } catch (e) {
    throw new GatewayError('QUEUE_UNAVAILABLE', `${what}: cannot connect to ${servers.join(', ')}: ${String(e)}`, { cause: e });
  }
}
