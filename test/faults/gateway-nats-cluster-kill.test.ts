/**
 * A deployment on a 3-node NATS cluster (three routed nats-servers on
 * loopback, work stream with 3 replicas): one ingest process and one
 * dispatcher process, both given every node's URL. The work stream's leader
 * is killed with -9 in the middle of a burst of sends and stays down: the
 * two remaining nodes elect a new leader, publishes ride out the election,
 * and every message that got a 202 is delivered to every recipient, none
 * twice.
 */
import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { requireNatsServer } from '../support/nats-server.js';
import { waitComplete } from '../support/gateway-process.js';
import { burstWithFault, coverage, startNatsDeployment, startSimulator, until } from '../support/nats-deployment.js';

const STREAM = 'SMSGW_WORK';
const REQUESTS = 240;
const PER = 20;
const CONCURRENCY = 16;

if (requireNatsServer(t)) {
  t.test('3-node cluster, R3: the stream leader killed mid-burst loses no accepted message', async (t) => {
    const deployment = await startNatsDeployment(t, { nodes: 3, overrides: { queue: { batchSize: 50, ackWaitMs: 5_000 } } });
    const sim = await startSimulator(t);
    const ingest = await deployment.startIngest();
    await deployment.startDispatcher(sim);
    const url = ingest.url;

    const admin = await connect({ servers: deployment.urls });
    t.teardown(() => admin.close());
    const jsm = await jetstreamManager(admin, { timeout: 5_000 });
    const info = await jsm.streams.info(STREAM);
    t.equal(info.config.num_replicas, 3, 'work stream has 3 replicas');
    const leader = deployment.servers.find((s) => s.name === info.cluster?.leader);
    t.ok(leader, `stream leader is ${String(info.cluster?.leader)}`);
    if (!leader) return;

    const burst = await burstWithFault(url, {
      requests: REQUESTS,
      perRequest: PER,
      concurrency: CONCURRENCY,
      text: (k) => `Cluster burst ${k}: water supply notice.`,
      faultAfter: 80,
      fault: () => leader.kill('SIGKILL'), // and it stays down
    });
    const { accepted } = burst;
    t.ok(burst.faulted && burst.inFlightAtFault > 0, `leader killed mid-burst (${burst.inFlightAtFault} requests in flight)`);
    t.ok(accepted.size > 0, `${accepted.size} of ${REQUESTS} requests accepted (202)`);
    t.comment(`refused: ${JSON.stringify(Object.fromEntries(burst.refused))}`);

    const all = [...accepted.values()].flat();
    await until('every accepted recipient submitted', () => coverage(sim, all).missing === 0, 90_000, 200);
    let incomplete = 0;
    for (const [id, to] of accepted) {
      const s = await waitComplete(url, id, 30_000);
      if (s.summary.delivered !== to.length) incomplete++;
    }
    t.equal(incomplete, 0, 'every accepted message delivered to every recipient');
    const c = coverage(sim, all);
    t.equal(c.missing, 0, 'no accepted recipient lost');
    t.equal(c.twice, 0, 'no accepted recipient submitted twice');
    t.equal(sim.stats().duplicates, 0, 'the simulator saw no duplicate segment');
    const after = await jsm.streams.info(STREAM);
    t.not(after.cluster?.leader, leader.name, `a new leader took over (${String(after.cluster?.leader)})`);
  });
}
