import t from 'tap';
import { deriveRecipientState, type SegmentRecord } from '../../src/core/message.js';

t.test('recipient state is derived from all its segments', async (t) => {
  const seg = (state: SegmentRecord['state']): SegmentRecord => ({ state });
  t.equal(deriveRecipientState([], 'accepted'), 'accepted', 'no segments keeps the state');
  t.equal(deriveRecipientState([seg('delivered'), seg('delivered')], 'submitted'), 'delivered');
  t.equal(deriveRecipientState([seg('delivered'), seg('submitted')], 'submitted'), 'submitted', 'not final until every segment is');
  t.equal(deriveRecipientState([seg('delivered'), seg('undeliverable'), seg('expired')], 'submitted'), 'undeliverable', 'worst final segment wins');
  t.equal(deriveRecipientState([seg('rejected'), seg('undeliverable')], 'submitted'), 'rejected');
  t.equal(deriveRecipientState([seg('failed'), seg('expired')], 'queued'), 'failed');
  t.equal(deriveRecipientState([seg('pending'), seg('submitted')], 'queued'), 'queued');
  t.equal(deriveRecipientState([seg('pending')], 'accepted'), 'accepted');
  t.equal(deriveRecipientState([seg('undeliverable'), seg('pending')], 'queued'), 'queued', 'a pending segment keeps it open');
});
