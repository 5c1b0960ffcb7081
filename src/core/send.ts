/**
 * Who sends, and the shape of a send as admission sees it. Types only:
 * the send service (src/send) and the directory's rules
 * (src/directory/policy.ts) both use them, so they live here, not in a
 * part that does I/O.
 */
import type { Channel } from './message.js';

/** Who is calling: resolved from the API key (or, for a service's own send, from the tenant). */
export interface Principal {
  readonly tenant: string;
  /** Allowed tier names, or null for all (directory units: checked by the door rules). */
  readonly tiers: ReadonlySet<string> | null;
  readonly sender: string;
  /** The directory unit of a unit's key (then `tenant` is the unit id); absent for a bootstrap key from config. */
  readonly unit?: string;
  /** Groups a bootstrap key may address: null = all; absent = none. */
  readonly groups?: ReadonlySet<string> | null;
}

/**
 * Where a send's numbers came from; it decides the grant the send needs.
 *
 *   caller     numbers in the request (`to`, a meeting's `numbers`)          → grant `direct`
 *   workflow   an applicant's numbers on a workflow event (POST /v1/workflow-events)
 *                                                                           → grant `workflow`
 *   directory  numbers the gateway read from its own directory (a person's mobile,
 *              a granted group's members); the service checked the grant
 *              for the group or person when it read them                   → no number grant
 *   reply      the one number that just wrote in (an MO's source), answered by
 *              the receiving code                                          → no number grant,
 *                                                                             exactly one number
 *
 * Only `directory` means "resolved": a caller-supplied number is never
 * treated as one the directory vouched for.
 */
export type RecipientOrigin = 'caller' | 'workflow' | 'directory' | 'reply';

export const RECIPIENT_ORIGINS: readonly RecipientOrigin[] = ['caller', 'workflow', 'directory', 'reply'];

/** The shape of a send, as the grant checks see it. */
export interface SendShape {
  readonly tier: string;
  readonly group?: string;
  /** Where the numbers came from; absent for a group send (the group is checked instead). */
  readonly origin?: RecipientOrigin;
  readonly classification?: string;
  readonly channel: Channel;
}
