/**
 * deliveryCountMayReset (src/queue/nats/delivery.ts): which nats-server
 * versions can deliver a message again with its delivery count reset to 1
 * (nats-io/nats-server#5305, fixed in 2.10.14). No server.
 */
import t from 'tap';
import { deliveryCountMayReset } from '../../src/queue/nats/delivery.js';

t.test('before 2.10.14 affected, from it not', async (t) => {
  for (const v of ['2.9.10', 'v2.9.25', '2.10.0', '2.10.13', '1.4.0', '2.2.6-beta']) t.equal(deliveryCountMayReset(v), true, v);
  for (const v of ['2.10.14', '2.10.29', 'v2.11.0', '2.11.0-RC.1', '2.12.3', '3.0.0']) t.equal(deliveryCountMayReset(v), false, v);
});

t.test('a version it cannot read counts as affected', async (t) => {
  for (const v of ['', 'dev', '2.10']) t.equal(deliveryCountMayReset(v), true, JSON.stringify(v));
});
