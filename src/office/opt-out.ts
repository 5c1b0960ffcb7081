/**
 * Unsubscribe by SMS: "TD" (office.mo.optOutKeyword) sent to a tenant's
 * sender code puts the number on the block list for that tenant — a
 * directory unit's scope (its sub-units' messages included), or the global
 * scope for a bootstrap tenant (the platform's own sender codes). The
 * dispatcher checks the block list just before sending, so messages
 * already queued are not sent either. Recorded in the audit log as actor
 * `sms-opt-out`; an admin can lift it (DELETE /v1/admin/blocks).
 *
 * Then a confirmation (office.mo.optOutReplyText) goes back to the number
 * from the same tenant, on office.mo.optOutReplyTier — a tier that ignores
 * the block list (config validation insists), or the block just written
 * would stop it. It passes the tenant's grants like every send: a tenant
 * without that tier gets no confirmation (the opt-out stands; the MO
 * record says why). Tiers with ignoreOptOut (emergency by default) still
 * reach the number: TD stops routine traffic, not warnings.
 */
import { parseKeyword } from '../core/mo.js';
import { normalizeNumber } from '../core/phone.js';
import type { DirectoryStore } from '../directory/store.js';
import type { MoContext, MoHandler, MoRouted } from './mo-inbox.js';
import { sendOrThrow, type Sends } from '../send/service.js';
import { isGatewayError } from '../core/errors.js';

export class OptOutByText implements MoHandler {
  readonly name = 'opt-out';

  constructor(private readonly deps: { directory: DirectoryStore; keyword: string; reply?: { text: string; tier: string; sends: Sends } }) {}

  async handle(mo: MoContext): Promise<MoRouted | undefined> {
    const kw = parseKeyword(mo.text, [this.deps.keyword]);
    // "TD" alone (or with words after it); "TD123" is not an opt-out.
    if (!kw || /^\d/.test(kw.argument)) return undefined;
    const n = normalizeNumber(mo.source, { allowInternational: true });
    if (!n.ok) return { route: this.name, state: 'handled', detail: `not a number that can be blocked: ${n.reason}` };
    const scope = this.deps.directory.getUnit(mo.tenant) ? mo.tenant : '*';
    await this.deps.directory.block({ name: 'sms-opt-out' }, { scope, number: n.number, reason: `opted out by SMS (${kw.keyword}) to ${mo.destination}` });
    const blocked = `blocked for ${scope === '*' ? 'every unit' : `unit ${scope}`}`;
    const reply = this.deps.reply;
    if (reply === undefined || reply.text === '') return { route: this.name, state: 'handled', ref: scope, detail: blocked };
    try {
      // One confirmation per MO: a redelivered MO finds the idempotency key and sends nothing again.
      // A `reply`: to the one number that just wrote in, from the receiving code (no `direct` needed).
      const sent = sendOrThrow((await reply.sends.sendAs(mo.tenant ?? '', [{
        command: {
          recipients: { kind: 'numbers', numbers: [n.number], origin: 'reply' },
          content: { kind: 'text', text: reply.text }, tier: reply.tier, channel: 'auto',
          idempotencyKey: `td.${mo.id}`, reference: 'opt-out-confirmation',
        },
      }]))[0]);
      return { route: this.name, state: 'handled', ref: scope, detail: `${blocked}; confirmation ${sent.id}` };
    } catch (e) {
      if (!isGatewayError(e)) throw e;
      return { route: this.name, state: 'handled', ref: scope, detail: `${blocked}; no confirmation: ${e.code} ${e.message}` };
    }
  }
}
