/**
 * An account's access code (接入号) in the source address. Each carrier
 * account has its own code: a unit's sender code (the platform's numbering,
 * e.g. 10690001 + the unit's extension) is sent through an account whose code
 * differs as that account's code + the same extension, and a reply to it
 * comes back to that account's code + extension. Mapping the reply back
 * (`toCanonical`) makes it reach the same unit whichever account carried the
 * message — what failover between accounts needs. Pure.
 *
 *   toAccount   10690001 11 → 10655001 11   (from "10690001" to "10655001")
 *   toCanonical 10655001 11 → 10690001 11
 */

export interface AccessCodeRewrite {
  /** Prefix of the platform's codes (what units' senders start with). */
  readonly from: string;
  /** This account's access code, in its place. */
  readonly to: string;
}

/** The source as sent through the account: `from` replaced by `to`; any other source unchanged. */
export function toAccount(rw: AccessCodeRewrite | undefined, source: string): string {
  if (rw === undefined || !source.startsWith(rw.from)) return source;
  return rw.to + source.slice(rw.from.length);
}

/** An MO's destination mapped back to the platform's codes: `to` replaced by `from`; anything else unchanged. */
export function toCanonical(rw: AccessCodeRewrite | undefined, destination: string): string {
  if (rw === undefined || !destination.startsWith(rw.to)) return destination;
  return rw.from + destination.slice(rw.to.length);
}

/** How one carrier account writes a platform code on the air (src/directory/senders.ts checks ownership per account with it). */
export interface AirForm {
  readonly account: string;
  air(code: string): string;
}

/**
 * An account's on-air form of the platform's codes: an SMPP account's
 * `accessCode { from, to }` rewrite (toAccount), a CMPP account's access
 * code in front (src/cmpp/account.ts sourceId: kept when the code already
 * starts with it); undefined for an account that sends codes as they are.
 */
export function airFormOf(account: { readonly name: string; readonly accessCode?: AccessCodeRewrite | string | undefined }): AirForm | undefined {
  const ac = account.accessCode;
  if (ac === undefined) return undefined;
  if (typeof ac === 'string') return { account: account.name, air: (code) => (code.startsWith(ac) ? code : ac + code) };
  return { account: account.name, air: (code) => toAccount(ac, code) };
}
