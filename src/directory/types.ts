/**
 * The directory's public records: units (tenants) and their grants, API
 * keys, people, groups, the block list, the audit log. The stored (msgpack)
 * shapes are in `store.ts`.
 *
 *   Unit ──parent──▶ Unit ──▶ … (a tree; a sub-unit's grants are always within its parent's)
 *    ├── ApiKey* (hashed at rest)      ├── Person* (mobile, roles, channel preference, email + mail-alert opt-in)
 *    └── Group* (owner)  ── members: people, other groups, people by role (dynamic)
 */

/** Unit and group ids: they appear in queue subjects and URLs. */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$';
/** Person ids may also contain dots (employee numbers like 2023.0042). */
export const PERSON_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';
/**
 * Mail addresses of people: local@domain, no spaces, angle brackets,
 * quotes or commas, an ASCII (or punycode) domain with a dot; at most 254
 * characters (RFC 5321). Stored lower-case.
 */
export const EMAIL_PATTERN = '^[^\\s@<>(),;:"\\[\\]\\\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$';
export const EMAIL_RE = new RegExp(EMAIL_PATTERN);
export const MAX_EMAIL_CHARS = 254;
/** Role names (dynamic group membership). */
export const ROLE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$';
export const ID_RE = new RegExp(ID_PATTERN);
export const PERSON_ID_RE = new RegExp(PERSON_ID_PATTERN);
export const ROLE_RE = new RegExp(ROLE_PATTERN);

/** Deepest unit tree accepted (root = depth 1): bounds every walk up the chain. */
export const MAX_UNIT_DEPTH = 8;
/** Most roles one person has. */
export const MAX_ROLES = 32;
/** Most sub-groups and role rules in one group. */
export const MAX_GROUP_REFS = 256;

/** How a person wants to be reached. `both`: SMS for ordinary messages, PDA for police ones. */
export type ChannelPreference = 'sms' | 'pda' | 'both';
export const CHANNEL_PREFERENCES: readonly ChannelPreference[] = ['sms', 'pda', 'both'];

/** Message classifications with routing rules. `police`: PDA channel only, never SMS. */
export type Classification = 'police';

/**
 * What a unit may do. `*` in a list means "whatever the parent allows"; at
 * a root it means everything. Quotas count recipients and apply to the
 * unit's whole subtree (a parent's quota caps its sub-units together).
 */
export interface Grants {
  /** Tier names, or ['*']. */
  readonly tiers: readonly string[];
  /** Group ids the unit may address, or ['*']. */
  readonly groups: readonly string[];
  /** May send to explicit numbers (`to`), not only to groups. */
  readonly direct: boolean;
  /**
   * May send workflow-event SMS to the applicant numbers the event carries
   * (POST /v1/workflow-events): caller-supplied numbers, like `direct`, but
   * only with the unit's own `workflow.<stage>` texts. Absent: the unit's
   * own `direct`. Inherited: never wider than any parent's.
   */
  readonly workflow?: boolean;
  /** May send messages classified `police`. */
  readonly police: boolean;
  /** Recipients per day (calendar day in `directory.utcOffsetMinutes`); null = no limit at this level. */
  readonly dailyQuota: number | null;
  /** Recipients per minute (per gateway process); null = no limit at this level. */
  readonly perMinuteQuota: number | null;
  /**
   * SMS parts per day (recipients × parts per recipient, the 202's
   * `totalSegments`), for this unit and its sub-units together, counted
   * beside the recipients; null or absent = no limit at this level.
   */
  readonly dailyPartsQuota?: number | null;
}

export const NO_GRANTS: Grants = { tiers: [], groups: [], direct: false, police: false, dailyQuota: null, perMinuteQuota: null };

export interface Unit {
  readonly id: string;
  readonly name: string;
  /** Parent unit id; absent for a root. */
  readonly parent?: string;
  /** Full source address (sender code); when absent: the parent's effective sender + `extension`. */
  readonly sender?: string;
  /** Digits appended to the parent's effective sender, so replies route back to this unit. */
  readonly extension?: string;
  /** Appended to every message the unit sends, e.g. 【市政府办公厅】; inherited when absent. */
  readonly signature?: string;
  readonly grants: Grants;
  /** A disabled unit (or one under a disabled parent) may not send. */
  readonly disabled: boolean;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface ApiKeyInfo {
  readonly id: string;
  readonly unit: string;
  readonly label?: string;
  /** First characters of the key, to recognise it in a list; the rest is never stored. */
  readonly prefix: string;
  readonly createdAt: number;
  readonly expiresAt?: number;
  readonly revokedAt?: number;
}

export interface Person {
  readonly id: string;
  readonly name: string;
  /** Normalised, digits with country code (8613800138000). */
  readonly mobile: string;
  readonly unit: string;
  readonly roles: readonly string[];
  readonly channel: ChannelPreference;
  /** Mail address, lower-case, unique (a mail address belongs to one person): new-mail alerts find the person by it. */
  readonly email?: string;
  /** Opted in to new-mail alerts by SMS (src/office/mail). Default false; needs `email`. */
  readonly mailAlerts: boolean;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** Dynamic membership: every person with `role`, in `unit`'s subtree when given. */
export interface RoleRule {
  readonly role: string;
  readonly unit?: string;
}

export interface Group {
  readonly id: string;
  readonly name: string;
  /** Owning unit (who administers it; addressing it still needs a grant). */
  readonly unit: string;
  /** Nested groups (their members are members of this one). */
  readonly groups: readonly string[];
  readonly roles: readonly RoleRule[];
  /** Static members; counted, not listed (they can be 100,000): see the members endpoint. */
  readonly memberCount?: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** `*`: blocked for every unit; a unit id: blocked for that unit and its sub-units. */
export interface BlockEntry {
  readonly scope: string;
  readonly number: string;
  readonly reason?: string;
  readonly at: number;
  readonly by: string;
}

export interface AuditEntry {
  readonly seq: number;
  readonly at: number;
  /** Admin key name (or `system`). */
  readonly actor: string;
  /** e.g. unit.create, key.revoke, people.import, held.release */
  readonly action: string;
  readonly targetType: string;
  readonly targetId: string;
  readonly before?: unknown;
  readonly after?: unknown;
  /** Free-form detail (import counts, file digest). */
  readonly detail?: unknown;
}

/** Who is changing the directory. `unit`: a delegated admin, limited to that unit's subtree. */
export interface Actor {
  readonly name: string;
  readonly unit?: string;
}
