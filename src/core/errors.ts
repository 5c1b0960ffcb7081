/**
 * The error catalogue. Every failure the gateway reports has a stable `code`
 * (documented in docs/ERRORS.md; a unit test checks every code is there),
 * an HTTP status where it reaches a client, and keeps its `cause`.
 *
 * Callers branch on `code`, never on message text.
 */

export const ERROR_CODES = {
  // --- input at the edge (HTTP) ---
  BAD_JSON: { status: 400, text: 'the request body is not valid JSON' },
  BAD_PATH: { status: 400, text: 'the path has a malformed percent-escape' },
  VALIDATION: { status: 422, text: 'a field has the wrong form' },
  CALLBACK_SECRET_REQUIRED: { status: 422, text: 'callbacks are signed: the tenant has no signing secret yet' },
  BODY_TOO_LARGE: { status: 413, text: 'the request body is larger than the limit' },
  JSON_TOO_LARGE: { status: 422, text: 'the JSON body has a string, an array or object, or a count of values over its bound' },
  TOO_MANY_RECIPIENTS: { status: 413, text: 'more recipients than one request may carry' },
  TOO_MANY_PARTS: { status: 422, text: 'the text needs more SMS parts than one message may have' },
  TEXT_INVALID: { status: 422, text: 'the text contains a lone surrogate or a control character' },
  BAD_NUMBER: { status: 422, text: 'a phone number is not a valid mobile number' },
  UNAUTHORIZED: { status: 401, text: 'missing or unknown API key' },
  FORBIDDEN: { status: 403, text: 'the API key may not do this' },
  NOT_FOUND: { status: 404, text: 'no such resource' },
  METHOD_NOT_ALLOWED: { status: 405, text: 'method not allowed on this path' },
  UPGRADE_REQUIRED: { status: 426, text: 'this path takes only a WebSocket upgrade' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, text: 'the body must be application/json' },
  IDEMPOTENCY_CONFLICT: { status: 409, text: 'the same Idempotency-Key is in flight or was used for a different request' },
  NOT_READY: { status: 503, text: 'the gateway is not ready (starting or shutting down)' },
  OVERLOADED: { status: 503, text: 'the gateway is over its intake bound; retry later' },
  INTERNAL: { status: 500, text: 'internal error' },
  // --- configuration ---
  CONFIG_INVALID: { status: 500, text: 'the configuration is invalid' },
  // --- queue ---
  QUEUE_CLOSED: { status: 503, text: 'the queue is closed' },
  QUEUE_UNAVAILABLE: { status: 503, text: 'the queue cannot be reached' },
  // --- SMPP ---
  SMPP_TIMEOUT: { status: 504, text: 'the SMSC did not answer in time' },
  SMPP_CONNECTION_LOST: { status: 503, text: 'the SMPP connection was lost with requests outstanding' },
  SMPP_PDU_INVALID: { status: 500, text: 'a PDU could not be built (body too long or not bytes)' },
  SMPP_POOL_CLOSED: { status: 503, text: 'the bind pool is closed' },
  // --- CMPP (China Mobile) ---
  CMPP_PDU_INVALID: { status: 500, text: 'a CMPP PDU could not be built (a field does not fit its width)' },
  CMPP_CONNECT_FAILED: { status: 503, text: 'the ISMG refused CMPP_CONNECT (status named in the message)' },
  CMPP_TIMEOUT: { status: 504, text: 'the ISMG did not answer a CMPP_SUBMIT in time' },
  CMPP_CONNECTION_LOST: { status: 503, text: 'the CMPP connection was lost with submits outstanding' },
  CMPP_POOL_CLOSED: { status: 503, text: 'the CMPP account is closing' },
  // --- receipts ---
  STORE_CLOSED: { status: 503, text: 'the receipt store is closed' },
  STORAGE_FULL: { status: 503, text: 'the data directory cannot take writes (disk full or I/O error); retry later' },
  // --- directory: units, grants, content rules, admin API ---
  KEY_REVOKED: { status: 401, text: 'the API key was revoked' },
  KEY_EXPIRED: { status: 401, text: 'the API key has expired' },
  QUOTA_EXCEEDED: { status: 403, text: 'a daily or per-minute recipient quota would be exceeded' },
  CONTENT_REJECTED: { status: 422, text: 'the text contains a word on the sensitive-word list' },
  CHANNEL_REFUSED: { status: 422, text: 'the message may not go to a recipient over the channels it allows' },
  ALREADY_EXISTS: { status: 409, text: 'a resource with that id or number already exists' },
  SENDER_TAKEN: { status: 409, text: 'the sender code is claimed by another unit or bootstrap key' },
  IN_USE: { status: 409, text: 'the resource is still referenced and cannot be removed' },
  GROUP_CYCLE: { status: 422, text: 'the group would contain itself' },
  IMPORT_INVALID: { status: 422, text: 'the import file has errors; nothing was imported' },
  // --- PDA channel ---
  PDA_FRAME_INVALID: { status: 500, text: 'a PDA protocol frame could not be built (a field over its bound)' },
  PDA_DEVICE_EXISTS: { status: 409, text: 'a PDA device with this id is already registered' },
  PDA_DEVICE_STATE: { status: 409, text: 'the PDA device is not in a state that allows this' },
  PDA_CLOSED: { status: 503, text: 'the PDA channel is closed' },
  // --- mobile-office services ---
  TEMPLATE_INVALID: { status: 422, text: 'the template does not parse or uses a parameter it does not declare' },
  TEMPLATE_PARAMS: { status: 422, text: 'the parameters do not fit the template' },
  NOT_CANCELLABLE: { status: 409, text: 'it was already sent, cancelled or closed' },
  MAIL_AUTH_FAILED: { status: 401, text: 'SMTP: authentication failed (535)' },
  MAIL_SENDER_REFUSED: { status: 422, text: 'SMTP: the sender domain is not one this gateway serves (550)' },
  MAIL_RECIPIENT_REFUSED: { status: 422, text: 'SMTP: the recipient is in a domain this gateway does not serve (550)' },
  MAIL_TOO_LARGE: { status: 413, text: 'SMTP: the message is larger than the limit (552)' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface FieldProblem {
  /** JSON pointer-ish path of the offending field, e.g. `/to/3`. */
  readonly field: string;
  readonly message: string;
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: readonly FieldProblem[] | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: readonly FieldProblem[] }) {
    super(message ?? ERROR_CODES[code].text, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.details = options?.details;
  }

  /** The JSON body a client sees: stable code, human message, offending fields. */
  toJSON(): { error: { code: ErrorCode; message: string; details?: readonly FieldProblem[] } } {
    return this.details && this.details.length > 0
      ? { error: { code: this.code, message: this.message, details: this.details } }
      : { error: { code: this.code, message: this.message } };
  }
}

export function isGatewayError(e: unknown): e is GatewayError {
  return e instanceof GatewayError;
}

/** Retry-After (seconds) sent with STORAGE_FULL: the storage state's probe runs more often than this. */
export const STORAGE_RETRY_AFTER_S = 30;

/**
 * Is this a failed storage write (an LMDB commit that failed: disk full,
 * map full, I/O error)? lmdb rejects every write of a failed commit with
 * "Commit failed" and the cause on `commitError` (a promise); a synchronous
 * write throws the cause itself (ENOSPC, EIO, EFBIG, MDB_MAP_FULL). Pure:
 * looks at the error's shape only.
 */
export function isStorageFailure(e: unknown): boolean {
  if (e instanceof GatewayError) return e.code === 'STORAGE_FULL';
  if (!(e instanceof Error)) return false;
  if ('commitError' in e) return true;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') return STORAGE_ERRNO_NAMES.has(code);
  if (typeof code === 'number') return STORAGE_ERRNOS.has(code);
  return /MDB_MAP_FULL|No space left|Input\/output error|File too large/i.test(e.message);
}

/** ENOSPC, EIO, EFBIG, EDQUOT by name; lmdb's numeric codes: EIO 5, EFBIG 27, ENOSPC 28, EDQUOT 122, MDB_MAP_FULL -30792, MDB_TXN_FULL -30788. */
const STORAGE_ERRNO_NAMES = new Set(['ENOSPC', 'EIO', 'EFBIG', 'EDQUOT', 'MDB_MAP_FULL']);
const STORAGE_ERRNOS = new Set([5, 27, 28, 122, -30792, -30788]);
