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
import { requireNatsServer, startNatsCluster } from '../support/nats-server.js';
import {
  api,
  deploymentConfig,
  sharedDataDir,
  simulatorAccountConfig,
  startGatewayProcess,
  waitComplete,
} from '../support/gateway-process.js';
import { SmscSimulator } from '../../src/smpp/simulator.js';

const STREAM = 'SMSGW_WORK';
const REQUESTS = 240;
const PER = 20;
const CONCURRENCY = 16;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function numberAt(n: number): string {
  return `138${String(10_000_000 + n * 10 + 6).slice(-8)}`;
}

if (requireNatsServer(t)) {
  t.test('3-node cluster, R3: the stream leader killed mid-burst loses no accepted message', async (t) => {
    const cluster = await startNatsCluster(3);
    t.teardown(() => cluster.destroy());
    const sim = new SmscSimulator({ port: 0, host: '127.0.0.1', dlrDelayMs: 5 });
    await sim.start();
    t.teardown(() => sim.stop());
    const dataDir = sharedDataDir(t);
    const config = (account?: Record<string, unknown>): Record<string, unknown> =>
      deploymentConfig({ dataDir, natsUrls: cluster.urls, replicas: 3, ...(account ? { account } : {}), overrides: { queue: { batchSize: 50, ackWaitMs: 5_000 } } });
    const ingest = await startGatewayProcess(t, { role: 'ingest', config: config() });
    await startGatewayProcess(t, { role: 'dispatch', config: config(simulatorAccountConfig(sim.port)), ready: () => sim.stats().binds >= 2 });
    const url = ingest.url as string;

    const admin = await connect({ servers: cluster.urls });
    t.teardown(() => admin.close());
    const jsm = await jetstreamManager(admin, { timeout: 5_000 });
    const info = await jsm.streams.info(STREAM);
    t.equal(info.config.num_replicas, 3, 'work stream has 3 replicas');
    const leader = cluster.servers.find((s) => s.name === info.cluster?.leader);
    t.ok(leader, `stream leader is ${String(info.cluster?.leader)}`);
    if (!leader) return;

    const accepted = new Map<string, string[]>();
    const refused = new Map<string, number>();
    let started = 0;
    let done = 0;
    let inFlightAtKill = 0;
    let killed: Promise<void> | undefined;
    const sendOne = async (k: number): Promise<void> => {
      started++;
      const to = Array.from({ length: PER }, (_, j) => numberAt(k * PER + j));
      try {
        const r = await api(url, 'POST', '/v1/messages', { to, text: `Cluster burst ${k}: water supply notice.` });
        if (r.status === 202) accepted.set(r.json.id as string, to);
        else refused.set(String(r.json?.code ?? r.status), (refused.get(String(r.json?.code ?? r.status)) ?? 0) + 1);
      } catch (e) {
        refused.set(`transport: ${String(e)}`, (refused.get(`transport: ${String(e)}`) ?? 0) + 1);
      }
      done++;
      if (done === 80 && !killed) {
        inFlightAtKill = started - done;
        killed = leader.kill('SIGKILL'); // and it stays down
      }
    };
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let k = next++; k < REQUESTS; k = next++) await sendOne(k);
      }),
    );
    await killed;
    t.ok(killed !== undefined && inFlightAtKill > 0, `leader killed mid-burst (${inFlightAtKill} requests in flight)`);
    t.ok(accepted.size > 0, `${accepted.size} of ${REQUESTS} requests accepted (202)`);
    t.comment(`refused: ${JSON.stringify(Object.fromEntries(refused))}`);

    const all = [...accepted.values()].flat();
    const deadline = Date.now() + 90_000;
    for (let i = 0; i < 2_000 && Date.now() < deadline; i++) {
      const by = sim.stats().submitsByDestination;
      if (all.every((n) => (by.get(`86${n}`) ?? 0) > 0)) break;
      await sleep(200);
    }
    let incomplete = 0;
    for (const [id, to] of accepted) {
      const s = await waitComplete(url, id, 30_000);
      if (s.summary.delivered !== to.length) incomplete++;
    }
    t.equal(incomplete, 0, 'every accepted message delivered to every recipient');
    const by = sim.stats().submitsByDestination;
    t.equal(all.filter((n) => (by.get(`86${n}`) ?? 0) === 0).length, 0, 'no accepted recipient lost');
    t.equal(all.filter((n) => (by.get(`86${n}`) ?? 0) > 1).length, 0, 'no accepted recipient submitted twice');
    t.equal(sim.stats().duplicates, 0, 'the simulator saw no duplicate segment');
    const after = await jsm.streams.info(STREAM);
    t.not(after.cluster?.leader, leader.name, `a new leader took over (${String(after.cluster?.leader)})`);
  });
}
