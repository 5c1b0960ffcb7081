/**
 * One JetStream pull request, spoken directly (JetStream ADR-13) instead of
 * through `consumer.fetch()` of @nats-io/jetstream, because the port needs
 * what that call cannot give:
 *
 * - `fetch(tier, max, 0)` must answer at once with what is there (the
 *   dispatcher polls its tiers with waitMs 0); the client's fetch() refuses
 *   `expires` below 1 s.
 * - `fetch(tier, max, waitMs)` must return as soon as the first messages are
 *   in, not hold them until `max` arrive or `expires` passes.
 *
 * The request is `{ batch, no_wait: true [, expires] }`. nats-server (2.9
 * and later, checked on 2.9.10) answers it like this:
 *
 *   no expires   what is stored now, then status 408 (fewer than batch) or
 *                404 (nothing); no status when exactly `batch` were sent
 *   expires      waits up to `expires` for the first message, then sends what
 *                is stored and 408; 408 with nothing when time is up
 *
 * The local timer (waitMs + grace) covers a server that never answers
 * (killed, disconnected). A message that arrives after the request was
 * settled is handed to `onLate` (the queue naks it so it is redelivered at
 * once instead of after ackWait).
 */
import { createInbox, nanos, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';

/** Extra wait for the server's closing status after `waitMs`, before giving up locally. */
export const PULL_GRACE_MS = 1_000;
/** After settling, keep listening this long so late messages are naked, not left to ackWait. */
export const PULL_LINGER_MS = 5_000;

export interface PullOutcome {
  readonly messages: Msg[];
  /** The server's closing status (404/408/409/503...), undefined if none came (batch full or local timeout). */
  readonly status: number | undefined;
  readonly description: string | undefined;
}

export interface PullRequest {
  readonly done: Promise<PullOutcome>;
  /** Settle now with nothing; what was collected so far is returned for the caller to give back. */
  cancel(): Msg[];
}

/** A JetStream message carries its ack subject as reply; status messages have none. */
function isStatus(m: Msg): boolean {
  return !m.reply && (m.headers?.code ?? 0) > 0;
}

export function startPull(
  nc: NatsConnection,
  nextSubject: string,
  batch: number,
  waitMs: number,
  onLate: (m: Msg) => void,
): PullRequest {
  const inbox = createInbox();
  const collected: Msg[] = [];
  let settled = false;
  let resolveDone!: (o: PullOutcome) => void;
  const done = new Promise<PullOutcome>((r) => (resolveDone = r));
  let softTimer: NodeJS.Timeout | undefined;
  let lingerTimer: NodeJS.Timeout | undefined;
  let sub: Subscription | undefined;

  const stopListening = (): void => {
    if (softTimer) clearTimeout(softTimer);
    if (lingerTimer) clearTimeout(lingerTimer);
    sub?.unsubscribe();
  };
  const settle = (status: number | undefined, description: string | undefined): void => {
    if (settled) return;
    settled = true;
    if (softTimer) clearTimeout(softTimer);
    resolveDone({ messages: collected.splice(0), status, description });
  };

  sub = nc.subscribe(inbox, {
    callback: (err, m) => {
      if (err) {
        // permission error or connection closed: nothing more will come
        settle(undefined, String(err));
        stopListening();
        return;
      }
      if (isStatus(m)) {
        const code = m.headers?.code ?? 0;
        if (code === 100) return; // idle heartbeat (not requested, but harmless)
        settle(code, m.headers?.description);
        stopListening();
        return;
      }
      if (settled) {
        onLate(m);
        return;
      }
      collected.push(m);
      if (collected.length >= batch) {
        // the server considers the request complete and sends no status
        settle(undefined, undefined);
        stopListening();
      }
    },
  });

  const body: { batch: number; no_wait: true; expires?: number } = { batch, no_wait: true };
  if (waitMs > 0) body.expires = nanos(waitMs);
  try {
    nc.publish(nextSubject, JSON.stringify(body), { reply: inbox });
  } catch (e) {
    // closed or draining connection
    settle(undefined, String(e));
    stopListening();
    return { done, cancel: () => [] };
  }

  softTimer = setTimeout(() => {
    settle(undefined, 'local timeout');
    lingerTimer = setTimeout(stopListening, PULL_LINGER_MS);
    lingerTimer.unref();
  }, waitMs + PULL_GRACE_MS);

  return {
    done,
    cancel: () => {
      const given = collected.splice(0);
      settle(undefined, 'cancelled');
      // the server may still answer the request until it expires; the queue drains the connection on close anyway
      if (!lingerTimer) {
        lingerTimer = setTimeout(stopListening, waitMs + PULL_GRACE_MS + PULL_LINGER_MS);
        lingerTimer.unref();
      }
      return given;
    },
  };
}
