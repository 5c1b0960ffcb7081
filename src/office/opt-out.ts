/**
 * Unsubscribe by SMS: "TD" (office.mo.optOutKeyword) sent to a tenant's
 * sender code puts the number on the block list for that tenant — a
 * directory unit's scope (its sub-units' messages included), or the global
 * scope for a bootstrap tenant (the platform's own sender codes). The
 * dispatcher checks the block list just before sending, so messages
 * already queued are not sent either. Recorded in the audit log as actor
 * `sms-opt-out`; an admin can lift it (DELETE /v1/admin/blocks).
 */
import { parseKeyword } from '../core/mo.js';
import { normalizeNumber } from '../core/phone.js';
import type { DirectoryStore } from '../directory/store.js';
import type { MoContext, MoHandler, MoRouted } from './mo-inbox.js';

export class OptOutByText implements MoHandler {
  readonly name = 'opt-out';

  constructor(private readonly deps: { directory: DirectoryStore; keyword: string }) {}

  async handle(mo: MoContext): Promise<MoRouted | undefined> {
    const kw = parseKeyword(mo.text, [this.deps.keyword]);
    // "TD" alone (or with words after it); "TD123" is not an opt-out.
    if (!kw || /^\d/.test(kw.argument)) return undefined;
    const n = normalizeNumber(mo.source, { allowInternational: true });
    if (!n.ok) return { route: this.name, state: 'handled', detail: `not a number that can be blocked: ${n.reason}` };
    const scope = this.deps.directory.getUnit(mo.tenant) ? mo.tenant : '*';
    await this.deps.directory.block({ name: 'sms-opt-out' }, { scope, number: n.number, reason: `opted out by SMS (${kw.keyword}) to ${mo.destination}` });
    return { route: this.name, state: 'handled', ref: scope, detail: `blocked for ${scope === '*' ? 'every unit' : `unit ${scope}`}` };
  }
}
