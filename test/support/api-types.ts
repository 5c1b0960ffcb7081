/**
 * Shapes of the gateway's JSON answers as the tests read them (see
 * docs/openapi.json). Test helpers return `unknown` unless the caller names
 * the shape it expects, so a test says what it reads instead of reaching into
 * an untyped value; the assertions still check the value at run time.
 */
export type RecipientState = 'accepted' | 'queued' | 'submitted' | 'delivered' | 'undeliverable' | 'expired' | 'rejected' | 'failed';

export interface SegmentView {
  readonly state: string;
  readonly operatorMessageId?: string;
  readonly submittedAt?: string;
  readonly doneAt?: string;
  readonly error?: string;
}

export interface AttemptView {
  readonly attempt: number;
  readonly state: RecipientState;
  readonly account?: string;
  readonly endedAt?: string;
  readonly error?: string;
  readonly segments: readonly SegmentView[];
}

export interface RecipientView {
  readonly index: number;
  readonly to: string;
  readonly state: RecipientState;
  readonly acceptedAt?: string;
  readonly updatedAt?: string;
  readonly error?: string;
  readonly segments?: readonly SegmentView[];
  readonly attempts?: readonly AttemptView[];
  readonly [field: string]: unknown;
}

/** GET /v1/messages/{id} */
export interface MessageStatus {
  readonly id: string;
  readonly tier: string;
  readonly channel?: string;
  readonly encoding?: string;
  readonly segments: number;
  readonly recipients: number;
  readonly createdAt?: string;
  readonly expiresAt?: string;
  readonly reference?: string;
  readonly status: 'scheduled' | 'in-progress' | 'complete';
  readonly scheduledAt?: string;
  readonly callback?: { readonly state: string; readonly attempts: number; readonly lastError?: string };
  readonly statusCallback?: { readonly events: readonly string[]; readonly failed: number; readonly lastError?: string };
  readonly summary: Readonly<Record<RecipientState, number>>;
  readonly items: readonly RecipientView[];
  readonly next?: number;
  readonly [field: string]: unknown;
}

/** The error envelope every refusal carries. */
export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly field?: string; readonly [field: string]: unknown };
}
