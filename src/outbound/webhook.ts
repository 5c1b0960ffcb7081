/**
 * Outbound webhooks: every HTTP request the gateway makes to a tenant's URL
 * (completion callbacks, per-recipient status events, MO forwards) goes
 * through one `Webhooks` client. It enforces invariant 8 — callbacks go only
 * where the operator allows and are signed:
 *
 *   URL ──▶ door check (checkCallbackUrl: http/https, no user:password@) ── 422
 *       ──▶ undici Agent (keep-alive pool per origin, `connectionsPerHost`)
 *             connect(): IP literal? check it : resolve the name ONCE
 *                         (every address must pass TargetPolicy, unless the
 *                         host name itself is in callbacks.allow)
 *                        ──▶ connect to that checked address (no second lookup,
 *                            so DNS rebinding between check and connect is moot;
 *                            TLS still verifies the certificate for the name)
 *       ──▶ POST, body signed (X-Smsgw-Timestamp, X-Smsgw-Signature), no redirects
 *       ──▶ 2xx: done; anything else one of four tenant-visible reasons
 *
 * The reason a tenant reads is only "refused target", "timeout",
 * "connection failed" or "HTTP <status>": nothing about which internal
 * addresses exist or answer, and never the URL (which may carry secrets in
 * its query).
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns';
import { Agent, buildConnector, type Dispatcher } from 'undici';
import { canonicalHost, parseIp, TargetPolicy } from '../core/ip-range.js';
import { StringMemo } from '../core/memo.js';

type DispatchHandler = Dispatcher.DispatchHandler;
type DispatchController = Dispatcher.DispatchController;

/** What a tenant may read about a failed delivery. */
export type DeliveryError = 'refused target' | 'timeout' | 'connection failed' | 'no signing secret' | `HTTP ${number}`;

export const SIGNATURE_HEADER = 'x-smsgw-signature';
export const TIMESTAMP_HEADER = 'x-smsgw-timestamp';

/** Hex HMAC-SHA-256(secret, timestamp + "." + body): what X-Smsgw-Signature carries. */
export function signBody(secret: string | KeyObject, timestamp: string, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

/** Why a callback URL is refused at the door (422), or undefined when its form is fine. */
export function checkCallbackUrl(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a valid URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http or https URL';
  if (url.username !== '' || url.password !== '') return 'must not carry user information (user:password@)';
  if (url.hostname === '') return 'has no host';
  return undefined;
}

/** Where a POST to a URL goes: undici's origin and path, or null when the URL is refused (checkCallbackUrl). */
type Target = { readonly origin: string; readonly path: string } | null;

/**
 * Callback URLs parsed once each (a tenant posts to the same few again and
 * again; one that differs per message costs what parsing it costs anyway).
 */
const TARGETS = new StringMemo<Target>('callback_targets', 1024, (url) => {
  if (checkCallbackUrl(url) !== undefined) return null;
  const u = new URL(url);
  return { origin: u.origin, path: u.pathname + u.search };
});

/** Where the signing secret of a tenant comes from (config bootstrap tenants, the admin API for units). */
export interface SigningSecrets {
  /** The current secret of a tenant; undefined: nothing is sent to it ("no signing secret"). */
  currentSecret(tenant: string): string | undefined;
}

/** `dns.lookup` with `all: true`, injectable for tests. */
export type Resolver = (host: string) => Promise<readonly string[]>;

export interface WebhooksOptions {
  /** callbacks.allow: host names and addresses / CIDR ranges a callback may reach beyond the public internet. */
  readonly allow: readonly string[];
  /** Whole request: connect, send, answer headers and body. */
  readonly timeoutMs: number;
  /** Keep-alive connections per origin (undici Pool `connections`). */
  readonly connectionsPerHost: number;
  readonly secrets: SigningSecrets;
  readonly resolve?: Resolver;
  /** Clock for X-Smsgw-Timestamp (epoch ms). */
  readonly now?: () => number;
}

const REFUSED_CODE = 'SMSGW_TARGET_REFUSED';
/** Signing keys kept (by secret; cleared when full). */
const MAX_KEYS = 256;
/** A callback's answer is read and dropped up to this size; a longer one closes its connection. */
const MAX_ANSWER_BYTES = 64 * 1024;

class TargetRefused extends Error {
  readonly code = REFUSED_CODE;
  constructor() {
    super('refused target');
  }
}

const systemResolve: Resolver = (host) =>
  new Promise((resolve, reject) => {
    dnsLookup(host, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses.map((a) => a.address))));
  });

export class Webhooks {
  private readonly policy: TargetPolicy;
  private readonly agent: Agent;
  private readonly resolve: Resolver;
  private readonly now: () => number;
  /** secret → its HMAC key object (createHmac with a string key converts and imports it every time). */
  private readonly keys = new Map<string, KeyObject>();
  /** The last X-Smsgw-Timestamp (epoch seconds) and its text. */
  private tsSecond = -1;
  private tsText = '';
  private tsPrefix = '';

  constructor(private readonly o: WebhooksOptions) {
    this.policy = new TargetPolicy(o.allow);
    this.resolve = o.resolve ?? systemResolve;
    this.now = o.now ?? Date.now;
    const base = buildConnector({ timeout: o.timeoutMs });
    this.agent = new Agent({
      connections: o.connectionsPerHost,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
      connect: (opts, callback) => {
        this.checkedAddress(opts.hostname).then(
          (address) => base({ ...opts, hostname: address }, callback),
          (err: unknown) => callback(err instanceof Error ? err : new Error(String(err)), null),
        );
      },
    });
  }

  /**
   * The address to connect to for `hostname`: the literal itself, or the
   * first address of a single lookup — after every address it resolved to
   * passed the policy (a name with one private address among public ones is
   * refused as a whole). Throws TargetRefused.
   */
  async checkedAddress(hostname: string): Promise<string> {
    const literal = parseIp(hostname);
    if (literal) {
      if (!this.policy.addressAllowed(literal)) throw new TargetRefused();
      return hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    }
    const named = this.policy.hostAllowed(hostname);
    const addresses = await this.resolve(canonicalHost(hostname));
    if (addresses.length === 0) throw new Error(`no address for the callback host`);
    if (!named && !addresses.every((a) => this.policy.addressAllowed(a))) throw new TargetRefused();
    return addresses[0]!;
  }

  /**
   * POSTs `body` (JSON text) to `url`, signed with the tenant's current
   * secret. Resolves undefined on any 2xx, else the tenant-visible reason;
   * never throws. Redirects are not followed (a 3xx is "HTTP 3xx").
   */
  post(tenant: string, url: string, body: string, timeoutMs = this.o.timeoutMs): Promise<DeliveryError | undefined> {
    const target = TARGETS.get(url);
    if (target === null) return Promise.resolve('refused target');
    // Nothing leaves unsigned: without a secret (removed after the message was accepted) the POST is not made.
    const secret = this.o.secrets.currentSecret(tenant);
    if (secret === undefined) return Promise.resolve('no signing secret');
    this.tick();
    // The body's bytes once: signed as they are and handed to undici as they are (a string it would encode again).
    const bytes = Buffer.from(body, 'utf8');
    const signature = createHmac('sha256', this.key(secret)).update(this.tsPrefix).update(bytes).digest('hex');
    const headers = ['content-type', 'application/json', TIMESTAMP_HEADER, this.tsText, 'user-agent', 'smsgw-callbacks', SIGNATURE_HEADER, signature];
    return this.send(target, headers, bytes, timeoutMs);
  }

  /** X-Smsgw-Timestamp (epoch seconds) and what the signature starts with (`<timestamp>.`): the texts made once per second. */
  private tick(): void {
    const second = Math.floor(this.now() / 1000);
    if (second !== this.tsSecond) {
      this.tsSecond = second;
      this.tsText = String(second);
      this.tsPrefix = `${this.tsText}.`;
    }
  }

  private key(secret: string): KeyObject {
    let key = this.keys.get(secret);
    if (key === undefined) {
      if (this.keys.size >= MAX_KEYS) this.keys.clear();
      key = createSecretKey(Buffer.from(secret, 'utf8'));
      this.keys.set(secret, key);
    }
    return key;
  }

  /**
   * One POST through the agent's dispatch API (no response stream, no
   * AbortSignal: a callback needs only the status). The whole request has
   * one deadline, a timer cleared when it ends; the answer's body is read
   * and dropped (up to 64 KiB, then the connection is closed) so the
   * connection goes back to the pool. Resolves the outcome; never rejects.
   */
  private send(target: NonNullable<Target>, headers: string[], body: Buffer, timeoutMs: number): Promise<DeliveryError | undefined> {
    const post = new Post(timeoutMs);
    try {
      this.agent.dispatch({ origin: target.origin, path: target.path, method: 'POST', headers, body }, post);
    } catch (e) {
      post.onResponseError(undefined, e instanceof Error ? e : new Error(String(e)));
    }
    return post.done;
  }

  /** Whether callbacks to `tenant` can be signed (a secret is set): callbackUrl, statusCallback and MO subscriptions need it. */
  canSign(tenant: string): boolean {
    return this.o.secrets.currentSecret(tenant) !== undefined;
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => this.agent.destroy());
  }
}

/**
 * One POST's handler and deadline: its state in fields and its steps as
 * methods (no closures made per request). `done` resolves once: at the end
 * of the answer, on an error, or at the deadline.
 */
class Post implements DispatchHandler {
  readonly done: Promise<DeliveryError | undefined>;
  private resolve!: (outcome: DeliveryError | undefined) => void;
  private status = 0;
  private bytes = 0;
  private settled = false;
  private controller: DispatchController | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(timeoutMs: number) {
    this.done = new Promise((resolve) => {
      this.resolve = resolve;
    });
    this.timer = setTimeout(onDeadline, timeoutMs, this);
  }

  /** The deadline passed: stop the request; without an answer it is a timeout, with one the status decides (the body is only dropped). */
  expire(): void {
    this.controller?.abort(timeoutError());
    this.settle(this.status === 0 ? 'timeout' : this.byStatus());
  }

  private settle(outcome: DeliveryError | undefined): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.resolve(outcome);
  }

  private byStatus(): DeliveryError | undefined {
    return this.status >= 200 && this.status < 300 ? undefined : `HTTP ${this.status}`;
  }

  onRequestStart(c: DispatchController): void {
    this.controller = c;
    // Timed out while waiting for a connection: do not send it now.
    if (this.settled) c.abort(timeoutError());
  }

  onResponseStart(_c: DispatchController, statusCode: number): void {
    this.status = statusCode;
  }

  onResponseData(c: DispatchController, chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.bytes > MAX_ANSWER_BYTES) c.abort(new Error('callback answer too large'));
  }

  onResponseEnd(): void {
    this.settle(this.byStatus());
  }

  onResponseError(_c: DispatchController | undefined, err: Error): void {
    this.settle(this.status === 0 ? classify(err) : this.byStatus());
  }
}

function onDeadline(post: Post): void {
  post.expire();
}

function timeoutError(): DOMException {
  return new DOMException('the callback took longer than its timeout', 'TimeoutError');
}

function classify(e: unknown): DeliveryError {
  let err: unknown = e;
  for (let depth = 0; depth < 4 && err instanceof Error; depth++) {
    const code = (err as { code?: unknown }).code;
    if (code === REFUSED_CODE) return 'refused target';
    if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'ETIMEDOUT' || err.name === 'TimeoutError') return 'timeout';
    err = err.cause;
  }
  return 'connection failed';
}
