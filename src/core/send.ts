/**
 * Who sends, and the shape of a send as admission sees it. Types only:
 * the send service (src/send) and the directory's rules
 * (src/directory/policy.ts) both use them, so they live here, not in a
 * part that does I/O.
 */
import type { Channel, StatusCallback } from './message.js';

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

/** Who receives a send: numbers (normalised, with where they came from), a directory group, or directory people. */
export type Recipients =
  | {
    readonly kind: 'numbers';
    /** Normalised (digits with country code); repeats are sent once. */
    readonly numbers: readonly string[];
    readonly origin: RecipientOrigin;
  }
  | { readonly kind: 'group'; readonly group: string }
  /**
   * Directory people by id: the gateway reads their numbers from its own
   * directory (origin `directory`), only people the sender may address (a
   * unit: its own subtree); unknown and foreign ids answer alike.
   */
  | { readonly kind: 'people'; readonly people: readonly string[] };

/** What is sent: a text, or one of the tenant's named templates with its parameters. */
export type Content =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'template'; readonly name: string; readonly params: Readonly<Record<string, unknown>> };

/**
 * One send, as every sender states it (the HTTP door, templates, meetings,
 * workflow events, auto-replies, mail alerts): typed values, never an HTTP
 * body. Admission (src/send) checks it; nothing here is trusted beyond its
 * types.
 */
export interface SendCommand {
  readonly recipients: Recipients;
  /** Tier name. */
  readonly tier: string;
  readonly channel: Channel;
  readonly classification?: string;
  readonly content: Content;
  /** Epoch ms: held durably and sent then (cancellable until sent); now or past: sent at once. */
  readonly scheduleAt?: number;
  /** How long the carrier may keep trying; the tier's default when absent. */
  readonly validityMs?: number;
  /** Derives the message id; a repeat returns the first answer and sends nothing. At most 200 characters. */
  readonly idempotencyKey?: string;
  readonly reference?: string;
  readonly callbackUrl?: string;
  /** Per-recipient status events, batched (docs/CALLBACKS.md). */
  readonly statusCallback?: StatusCallback;
}

/** What an accepted send answers (the 202 body). */
export interface SendAccepted {
  readonly id: string;
  /** Distinct recipients (a group: its members now). */
  readonly recipients: number;
  /** SMS parts per recipient. */
  readonly segments: number;
  readonly totalSegments: number;
  readonly encoding: 'gsm7' | 'ucs2';
  readonly tier: string;
  readonly status: 'accepted' | 'held' | 'scheduled';
  /** RFC 3339; present when status is scheduled. */
  readonly scheduledAt?: string;
}
