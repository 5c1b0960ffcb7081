/**
 * New-mail alerts over SMTP (issue 5, part 3): a mail server forwards (or
 * journals) mail to this listener; the people it is for get an SMS
 * "新邮件：来自 {sender}，主题 {subject}" (office.mail.alertText).
 *
 *   SMTP client (Postfix, Exchange) ─▶ smtp-server
 *     connect    client IP in allowedClients, or AUTH PLAIN/LOGIN later (office.mail.users)
 *     STARTTLS   when office.mail.tls is set
 *     MAIL FROM  AUTH or allowed IP, else 530; domain in office.mail.domains, else 550;
 *                SIZE over maxMessageBytes, else 552
 *     RCPT TO    envelope mode: any address of a domain in office.mail.domains, else 550
 *                (headers mode: anything). Whether a person has the address is NOT
 *                answered here: a per-RCPT "no such person" would be a directory oracle.
 *     DATA       header block kept, body drained (552 if it grew past the limit);
 *                recipients: envelope RCPT TO, or To/Cc (headers mode); the opted-in
 *                people among them (within office.mail.tenant's subtree when it is a
 *                unit) → NewMailAlerter (de-dup, rate cap, quiet hours)
 *                → 250 only when the alerts are durable or the digest entry is flushed;
 *                its text counts the recipients that got no alert (unknown, not opted
 *                in, or outside the tenant: one count, never which, never who);
 *                451 (retry later) when the pending-digest bound is reached or storage failed
 *
 * Nothing is logged per mail; see metrics.ts.
 */
import { readFileSync } from 'node:fs';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { GatewayError, isStorageFailure, type ErrorCode } from '../../core/errors.js';
import { storageHealth } from '../../storage/health.js';
import { parseIsoDuration } from '../../core/duration.js';
import { plainIp, senderAllowed, senderName, subjectLine } from '../../core/mail-alert.js';
import { compileConfigText, type CompiledTemplate } from '../../core/template.js';
import type { ResolvedConfig } from '../../config/load.js';
import type { Metrics } from '../../telemetry/metrics.js';
import type { DirectoryStore } from '../../directory/store.js';
import type { Person } from '../../directory/types.js';
import type { Sends } from '../../send/service.js';
import { MailAlertStore } from './store.js';
import { DEFAULT_MAX_PENDING_DIGESTS, DEFAULT_POLL_MS, NewMailAlerter } from './alerter.js';
import { messageKey, parseHeaderBlock, readHeaderBlock } from './headers.js';
import { mailMetrics, type MailOutcome } from './metrics.js';

export { MAIL_DBS } from './store.js';

export interface MailAlertDeps {
  readonly config: ResolvedConfig;
  /** The gateway's LMDB environment (open named databases `office.mail.*`). */
  readonly env: RootDatabase;
  readonly directory: DirectoryStore;
  readonly sends: Sends;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Clock (tests). */
  readonly now?: () => number;
  /** Digests that may wait at once (default 100,000); past it a mail that would start one more gets 451. */
  readonly maxPendingDigests?: number;
  /** How often due digests are looked for, ms (default 250). */
  readonly pollMs?: number;
  /** SMTP connections at once (default 500; past it smtp-server answers 421). */
  readonly maxClients?: number;
}

export interface MailAlerts {
  /** The SMTP port listened on. */
  readonly port: number;
  stop(): Promise<void>;
}

/** Default bound of SMTP connections (and so of mails in flight: one per connection). */
export const DEFAULT_MAX_CLIENTS = 500;
/** Recipients one SMTP transaction may name. */
export const MAX_RECIPIENTS = 1000;
/** How long stop() waits for mails being handled. */
const STOP_WAIT_MS = 10_000;

/** An SMTP refusal: a GatewayError with the reply code smtp-server sends. */
function smtpError(code: ErrorCode, responseCode: number, message?: string): GatewayError & { responseCode: number } {
  return Object.assign(new GatewayError(code, message), { responseCode });
}

interface Listener {
  readonly server: SMTPServer;
  readonly port: number;
}

export async function startMailAlerts(deps: MailAlertDeps): Promise<MailAlerts> {
  const c = deps.config.office.mail;
  const configError = (field: string, message: string): GatewayError =>
    new GatewayError('CONFIG_INVALID', `office.mail.${field}: ${message}`, { details: [{ field: `/office/mail/${field}`, message }] });
  if (c.domains.length === 0) throw configError('domains', 'list the sender domains whose mail may raise alerts (a mail from any other domain is refused)');
  if (c.users.length === 0 && c.allowedClients.length === 0) throw configError('users', 'give SMTP AUTH users or allowedClients (IP addresses of the mail server); with neither nobody could deliver');
  if (!deps.config.tierByName.has(c.tier)) throw configError('tier', `no tier ${c.tier}`);
  const dedupeTtlMs = parseIsoDuration(c.dedupeTtl);
  if (dedupeTtlMs === undefined) throw configError('dedupeTtl', 'an ISO-8601 duration, e.g. P7D');
  let alertText: CompiledTemplate;
  let digestText: CompiledTemplate;
  try {
    alertText = compileConfigText(c.alertText, '/office/mail/alertText');
    digestText = compileConfigText(c.digestText, '/office/mail/digestText');
  } catch (cause) {
    throw new GatewayError('CONFIG_INVALID', (cause as Error).message, { cause });
  }
  let tls: { key: Buffer; cert: Buffer } | undefined;
  if (c.tls) {
    try {
      tls = { key: readFileSync(c.tls.keyFile), cert: readFileSync(c.tls.certFile) };
    } catch (cause) {
      throw new GatewayError('CONFIG_INVALID', `office.mail.tls: ${(cause as Error).message}`, { cause, details: [{ field: '/office/mail/tls', message: (cause as Error).message }] });
    }
  }
  if (deps.sends.principalOf(c.tenant) === undefined) {
    deps.logger.warn({ tenant: c.tenant }, 'office.mail.tenant is neither an API key tenant nor a directory unit (yet): alerts are refused until it is');
  }
  if (c.users.length > 0 && !tls && !c.allowInsecureAuth) {
    deps.logger.warn('office.mail.users are set but neither office.mail.tls nor allowInsecureAuth: SMTP AUTH cannot be used (only allowedClients can deliver)');
  }

  const now = deps.now ?? Date.now;
  const metrics = mailMetrics(deps.metrics.registry);
  const store = new MailAlertStore(deps.env);
  const storage = storageHealth(deps.env);
  const alerter = new NewMailAlerter(
    {
      tenant: c.tenant,
      tier: c.tier,
      windowMs: c.digestSeconds * 1000,
      quietHours: c.quietHours,
      utcOffsetMinutes: deps.config.directory.utcOffsetMinutes,
      dedupeTtlMs,
      alertText,
      digestText,
      maxPendingDigests: deps.maxPendingDigests ?? DEFAULT_MAX_PENDING_DIGESTS,
      pollMs: deps.pollMs ?? DEFAULT_POLL_MS,
    },
    { store, directory: deps.directory, sends: deps.sends, metrics, logger: deps.logger, now },
  );

  const allowed = new Set(c.allowedClients.map(plainIp));
  const users = new Map(c.users.map((u) => [u.username, digest(u.password)]));
  const headersMode = c.recipientsFrom === 'headers';
  let stopping = false;
  const inflight = new Set<Promise<void>>();
  const count = (outcome: MailOutcome): void => metrics.messages.inc({ outcome });

  /** One mail (DATA): the reply text, or a refusal with its SMTP code. */
  const receive = async (stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> => {
    const { block } = await readHeaderBlock(stream);
    if (stream.sizeExceeded) {
      count('too_large');
      throw smtpError('MAIL_TOO_LARGE', 552, `message exceeds the limit of ${c.maxMessageBytes} bytes`);
    }
    const h = await parseHeaderBlock(block);
    const addresses = headersMode ? h.recipients : session.envelope.rcptTo.map((a) => a.address);
    const people = new Map<string, Person>();
    // Unknown addresses, people who did not opt in and people outside the tenant are one
    // count: the reply never tells which (no directory oracle), nor names anybody.
    const unalerted = new Set<string>();
    const scope = deps.directory.getUnit(c.tenant) !== undefined ? c.tenant : undefined;
    for (const address of addresses) {
      const p = deps.directory.personByEmail(address);
      if (p !== undefined && p.mailAlerts && (scope === undefined || deps.directory.isWithin(p.unit, scope))) people.set(p.id, p);
      else unalerted.add(address.toLowerCase());
    }
    const without = unalerted.size > 0 ? `; ${unalerted.size} recipient${unalerted.size === 1 ? '' : 's'} without an alert (unknown, not opted in, or not served)` : '';
    if (people.size === 0) {
      count('no_alert');
      return `OK: no alert${without}`;
    }
    const envelopeFrom = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
    const result = await alerter.handle({
      key: messageKey(h.messageId, block),
      summary: { sender: senderName(h.from, envelopeFrom), subject: subjectLine(h.subject) },
      people: [...people.values()],
    });
    if (result.deferred > 0) {
      count('deferred');
      throw smtpError('OVERLOADED', 451, 'too many digests waiting; try again later');
    }
    const handled = result.alerted + result.folded + result.failed;
    count(handled > 0 ? 'accepted' : 'duplicate');
    return `OK: ${result.alerted} alerted, ${result.folded} in a digest${result.duplicates > 0 ? `, ${result.duplicates} already alerted` : ''}${without}`;
  };

  const options: SMTPServerOptions = {
    banner: 'smsgw new-mail alerts',
    size: c.maxMessageBytes,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: true,
    allowInsecureAuth: c.allowInsecureAuth,
    disabledCommands: [...(c.users.length === 0 ? ['AUTH'] : []), ...(tls ? [] : ['STARTTLS'])],
    disableReverseLookup: true,
    logger: false,
    maxClients: deps.maxClients ?? DEFAULT_MAX_CLIENTS,
    maxRecipients: MAX_RECIPIENTS,
    closeTimeout: 500,
    ...(tls ? { key: tls.key, cert: tls.cert } : {}),
    onConnect(session, callback) {
      if (stopping) return callback(smtpError('NOT_READY', 421, 'shutting down; try again later'));
      if (users.size === 0 && !allowed.has(plainIp(session.remoteAddress))) {
        count('client_refused');
        return callback(smtpError('MAIL_AUTH_FAILED', 554, 'this client may not deliver here'));
      }
      callback();
    },
    onAuth(auth, _session, callback) {
      const want = auth.username !== undefined ? users.get(auth.username) : undefined;
      const got = digest(typeof auth.password === 'string' ? auth.password : '');
      if ((auth.method === 'PLAIN' || auth.method === 'LOGIN') && want !== undefined && timingSafeEqual(want, got)) {
        return callback(null, { user: auth.username });
      }
      count('auth_failed');
      callback(smtpError('MAIL_AUTH_FAILED', 535, 'authentication failed'));
    },
    onMailFrom(address, session, callback) {
      if (stopping) return callback(smtpError('NOT_READY', 421, 'shutting down; try again later'));
      // Storage full (src/storage/health.ts): the mail server keeps the mail and retries.
      if (storage.full) return callback(smtpError('STORAGE_FULL', 451, 'storage full; try again later'));
      if (!session.user && !allowed.has(plainIp(session.remoteAddress))) {
        count('auth_failed');
        return callback(smtpError('MAIL_AUTH_FAILED', 530, 'authentication required'));
      }
      if (!senderAllowed(address.address, c.domains)) {
        count('sender_refused');
        return callback(smtpError('MAIL_SENDER_REFUSED', 550, 'sender domain not accepted here'));
      }
      callback();
    },
    onRcptTo(address, _session, callback) {
      // Envelope mode: every address of a served domain is accepted, known person or not
      // (the answer must not tell who is in the directory); the DATA reply counts the rest.
      if (!headersMode && !senderAllowed(address.address, c.domains)) {
        count('recipient_refused');
        return callback(smtpError('MAIL_RECIPIENT_REFUSED', 550, 'recipient domain not served here'));
      }
      callback();
    },
    onData(stream, session, callback) {
      if (stopping) {
        stream.on('end', () => callback(smtpError('NOT_READY', 421, 'shutting down; try again later')));
        stream.resume();
        return;
      }
      metrics.inflight.inc();
      const task = receive(stream, session).then(
        (reply) => callback(null, reply),
        (e: unknown) => {
          if (e instanceof GatewayError && 'responseCode' in e) return callback(e);
          count('error');
          // Storage or parsing trouble: nothing was promised, the mail server retries.
          if (isStorageFailure(e) || (e instanceof GatewayError && isStorageFailure(e.cause))) return callback(smtpError('STORAGE_FULL', 451, 'storage full; try again later'));
          callback(smtpError('INTERNAL', 451, 'could not handle the message now; try again later'));
        },
      ).finally(() => {
        metrics.inflight.dec();
        inflight.delete(task);
      });
      inflight.add(task);
    },
  };

  const listener = await listen(options, c.host, c.port);
  alerter.start();

  let stopped: Promise<void> | undefined;
  return {
    port: listener.port,
    stop(): Promise<void> {
      stopped ??= (async () => {
        stopping = true;
        const deadline = Date.now() + STOP_WAIT_MS;
        while (inflight.size > 0 && Date.now() < deadline) {
          await Promise.race([Promise.allSettled([...inflight]), new Promise((r) => setTimeout(r, 100))]);
        }
        await new Promise<void>((resolve) => listener.server.close(() => resolve()));
        await alerter.stop();
        await store.settle();
      })();
      return stopped;
    },
  };
}

function listen(options: SMTPServerOptions, host: string, port: number): Promise<Listener> {
  const server = new SMTPServer(options);
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(new GatewayError('CONFIG_INVALID', `office.mail: cannot listen on ${host}:${port}: ${e.message}`, { cause: e }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      // Socket-level errors of clients (resets) must not crash the process; nothing to log per connection.
      server.on('error', () => undefined);
      resolve({ server, port: (server.server.address() as AddressInfo).port });
    });
  });
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
