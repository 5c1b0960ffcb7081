/**
 * OfficeSender: how the mobile-office services (meetings, workflow progress,
 * case queries, mail alerts, reminders) send SMS. Every send goes through
 * the same Intake as POST /v1/messages — the same grants, signature,
 * sensitive-word rules, quotas, durability (resolved only once the message
 * and its jobs are durable) and idempotency — on behalf of a tenant that is
 * either a bootstrap key's tenant (config auth.apiKeys) or a directory unit.
 *
 * `idempotencyKey` is mandatory: a service derives it from what it is
 * sending (meeting id + "notice", case + sequence, mail + person + window),
 * so a retry after a crash finds the first message and sends nothing twice.
 */
import { GatewayError } from '../core/errors.js';
import type { ResolvedConfig } from '../config/load.js';
import type { Intake } from '../ingest/intake.js';
import type { Principal, RecipientOrigin, SendShape } from '../core/send.js';
import type { DirectoryStore } from '../directory/store.js';
import { unitPrincipal } from '../directory/policy.js';
import { principalOfKey } from '../ingest/auth.js';

export interface OfficeMessage {
  /** Sending tenant: a bootstrap key's tenant or a directory unit id. */
  readonly tenant: string;
  /** Normalised numbers (digits with country code). */
  readonly to: readonly string[];
  readonly text: string;
  /** Tier name; the config default when absent. */
  readonly tier?: string;
  /** Derives the message id (see above). At most 200 characters. */
  readonly idempotencyKey: string;
  readonly reference?: string;
  /** Epoch ms: held durably and sent then (cancellable until sent). */
  readonly scheduleAt?: number;
  /**
   * Where `to` came from (src/core/send.ts): it decides the grant the send
   * needs. Default `caller` (grant `direct`).
   */
  readonly origin?: RecipientOrigin;
}

export interface OfficeSent {
  readonly id: string;
  readonly recipients: number;
  readonly segments: number;
  /** True when the idempotency key had been used: nothing new was sent. */
  readonly replayed: boolean;
}

export interface OfficeSender {
  /** Resolves when the message is durable (as a 202 would); throws GatewayError when refused. */
  send(message: OfficeMessage): Promise<OfficeSent>;
  /** Several messages of one tenant, written together (one flush). Per-item results, in order. */
  sendMany(tenant: string, messages: readonly Omit<OfficeMessage, 'tenant'>[]): Promise<({ ok: true; sent: OfficeSent } | { ok: false; error: GatewayError })[]>;
  /** The principal of a tenant, or undefined when it is neither a key's tenant nor a unit. */
  principalOf(tenant: string): Principal | undefined;
  /** The grant checks alone for a send of this shape by `tenant`; throws FORBIDDEN naming the grant. */
  authorize(tenant: string, shape: SendShape, prefix: string): void;
}

export interface IntakeOfficeSenderDeps {
  readonly config: ResolvedConfig;
  readonly intake: Intake;
  readonly directory: DirectoryStore;
}

/** The OfficeSender over the gateway's Intake. */
export class IntakeOfficeSender implements OfficeSender {
  constructor(private readonly deps: IntakeOfficeSenderDeps) {}

  principalOf(tenant: string): Principal | undefined {
    const { config, directory } = this.deps;
    const key = config.auth.apiKeys.find((k) => k.tenant === tenant);
    if (key) return principalOfKey(key, config.sender.defaultSource);
    const chain = directory.unitChain(tenant);
    return chain === undefined ? undefined : unitPrincipal(chain, directory);
  }

  authorize(tenant: string, shape: SendShape, prefix: string): void {
    const principal = this.principalOf(tenant);
    if (!principal) throw new GatewayError('FORBIDDEN', `tenant ${tenant} is neither an API key's tenant nor a directory unit`);
    this.deps.intake.authorize(principal, shape, prefix);
  }

  async send(message: OfficeMessage): Promise<OfficeSent> {
    const { tenant, ...rest } = message;
    const [r] = await this.sendMany(tenant, [rest]);
    if (!r) throw new GatewayError('INTERNAL', 'no result');
    if (!r.ok) throw r.error;
    return r.sent;
  }

  async sendMany(tenant: string, messages: readonly Omit<OfficeMessage, 'tenant'>[]): Promise<({ ok: true; sent: OfficeSent } | { ok: false; error: GatewayError })[]> {
    const principal = this.principalOf(tenant);
    if (!principal) {
      const error = new GatewayError('FORBIDDEN', `tenant ${tenant} is neither an API key's tenant nor a directory unit`);
      return messages.map(() => ({ ok: false as const, error }));
    }
    const results = await this.deps.intake.acceptMany(principal, messages.map((m, k) => ({
      request: {
        to: [...m.to],
        text: m.text,
        ...(m.tier !== undefined ? { tier: m.tier } : {}),
        ...(m.reference !== undefined ? { reference: m.reference } : {}),
        ...(m.scheduleAt !== undefined ? { scheduleAt: new Date(m.scheduleAt).toISOString() } : {}),
      },
      idempotencyKey: m.idempotencyKey,
      prefix: `/office/${k}`,
      ...(m.origin !== undefined ? { origin: m.origin } : {}),
    })));
    return results.map((r) => r.ok
      ? { ok: true as const, sent: { id: r.body.id, recipients: r.body.recipients, segments: r.body.segments, replayed: r.replayed } }
      : { ok: false as const, error: r.error });
  }
}
