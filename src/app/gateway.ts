/**
 * Composition root: the one place that knows every adapter. Opens the LMDB
 * environment, the receipt store, the queue (embedded or NATS), the SMSC
 * simulator when no operator account is configured, one BindPool per
 * account, the dispatcher and the HTTP front door — and stops them in the
 * reverse order.
 *
 * Shutdown order (SIGTERM): stop accepting (503) → wait for requests that
 * are being made durable → close the listen socket → stop fetching and let
 * segments in the bind windows finish → close binds (unbind) → close the
 * queue → flush and close LMDB → stop the simulator.
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { open } from 'lmdb';
import type { Logger } from 'pino';
import { checkDevKey, type ResolvedConfig } from '../config/load.js';
import { RetentionSweeper } from '../storage/retention.js';
import { isCmppAccount, type AccountConfig, type CmppAccountConfig, type SmppAccountConfig } from '../config/schema.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { ReceiptStore } from '../receipts/store.js';
import { ChangeLog, checkReplicaHost } from '../replication/change-log.js';
import { StatusCallbacks } from '../receipts/status-callbacks.js';
import { EventCallbacks } from '../receipts/event-callbacks.js';
import { CallbackSecrets } from '../outbound/secrets.js';
import { Webhooks } from '../outbound/webhook.js';
import { openQueue, startStatusEvents } from '../queue/open.js';
import type { QueueOptions, WorkQueue } from '../queue/port.js';
import { BindPool } from '../smpp/bind-pool.js';
import { SmscSimulator } from '../smpp/simulator.js';
import { Router, type StoredRouting } from '../dispatch/router.js';
import type { RouteRule } from '../core/route.js';
import { airFormOf, toAccount, toCanonical } from '../core/access-code.js';
import { canonicalDestination } from '../directory/senders.js';
import type { DirectoryStore } from '../directory/store.js';
import { CmppAccount } from '../cmpp/account.js';
import { CmppSimulator } from '../cmpp/simulator.js';
import type { SubmitPool } from '../transport/pool.js';
import { Dispatcher, type DispatchReplica } from '../dispatch/dispatcher.js';
import { QueuePdaHandoff } from '../dispatch/pda-handoff.js';
import { IntakeBacklog, IntakeFirstGate } from '../dispatch/intake-first.js';
import { RerouteRelay } from '../dispatch/reroute-relay.js';
import { carrierOf } from '../core/reroute.js';
import { PDA_HANDOFF_TIER } from '../core/job.js';
import { Intake } from '../ingest/intake.js';
import { MESSAGE_ROUTES } from '../ingest/server.js';
import { ADMIN_HTTP_ROUTES, AdminKeyRing } from '../ingest/admin.js';
import { ApiKeyRing } from '../ingest/auth.js';
import { HttpDoor } from '../http/door.js';
import { DOC_ROUTES, OPS_ROUTES, type Readiness } from '../http/ops.js';
import { bind } from '../http/route.js';
import { buildOpenApi } from '../http/openapi.js';
import { jsonBounds } from '../http/body.js';
import { Directory } from '../directory/directory.js';
import { PDA_ADMIN_ROUTES, PDA_ROUTES, PdaChannel, pdaAdminRealm } from '../pda/index.js';
import type { ReceiptReplication } from '../queue/nats/receipt-replication.js';
import { Office, OfficeStores } from '../office/index.js';
import { createAuthorizer, createSendService } from '../send/index.js';
import type { Principal } from '../core/send.js';
import { principalOfKey } from '../ingest/auth.js';
import { unitPrincipal } from '../directory/policy.js';
import { startMailAlerts, type MailAlerts } from '../office/mail/index.js';
import { attachStorageHealth, fileSizeRoomBytes, statfsFreeBytes, type StorageHealth } from '../storage/health.js';
import { assertLmdbFixed } from '../storage/lmdb-fix.js';
import { MappedPages, releasePagesEvery } from '../storage/page-release.js';

export type GatewayRole = 'all' | 'ingest' | 'dispatch';

/** The principal a service sends as: a bootstrap key's tenant, else a directory unit; undefined for neither. */
function tenantPrincipal(config: ResolvedConfig, directory: DirectoryStore, tenant: string): Principal | undefined {
  const key = config.auth.apiKeys.find((k) => k.tenant === tenant);
  if (key) return principalOfKey(key, config.sender.defaultSource);
  const chain = directory.unitChain(tenant);
  return chain === undefined ? undefined : unitPrincipal(chain, directory);
}

export interface GatewayOptions {
  logger: Logger;
  role?: GatewayRole;
  metrics?: Metrics;
}

export interface Gateway {
  readonly port: number;
  readonly config: ResolvedConfig;
  readonly metrics: Metrics;
  readonly store: ReceiptStore;
  readonly queue: WorkQueue;
  readonly simulator: SmscSimulator | undefined;
  /** The built-in ISMG simulator, when `simulator.protocol` is cmpp2 / cmpp3. */
  readonly cmppSimulator: CmppSimulator | undefined;
  /** The police PDA channel, when `pda.enabled`. */
  readonly pda: PdaChannel | undefined;
  /** The SMTP listener of new-mail alerts, when `office.mail.enabled` (ingest roles). */
  readonly mail: MailAlerts | undefined;
  /** Full disk as a state (src/storage/health.ts); the crash policy hands it lmdb's own commit-failure rejections. */
  readonly storage: StorageHealth;
  /** Mobile-office services: templates, meetings, workflow progress, MO inbox, scheduled sending. */
  readonly office: Office;
  /** Recipient → accounts (dispatch roles). */
  readonly router: Router | undefined;
  stop(): Promise<void>;
}

/** The account the built-in simulator is reached through. */
export function simulatorAccount(config: ResolvedConfig, port: number): SmppAccountConfig {
  return {
    name: 'sim',
    host: config.simulator.host,
    port,
    systemId: config.simulator.systemId,
    password: config.simulator.password,
    systemType: '',
    tls: false,
    binds: 4,
    window: 64,
    tps: 0,
    responseTimeoutMs: 10_000,
    enquireLinkMs: 30_000,
    reconnectInitialMs: 100,
    reconnectMaxMs: 5_000,
    throttleBackoffMs: 100,
    operators: ['*'],
  };
}

/** The routing rules stored through the admin API, in the router's shape (the admin API validated them). */
function storedRouting(directory: DirectoryStore): StoredRouting | undefined {
  const t = directory.getRoutingTable();
  return t === undefined ? undefined : { version: t.version, rules: t.rules as RouteRule[] | null };
}

/** SP_Id of the built-in ISMG simulator's account. */
export const SIMULATOR_SP_ID = '901234';

/** The CMPP account the built-in ISMG simulator is reached through. */
export function cmppSimulatorAccount(config: ResolvedConfig, port: number, protocol: 'cmpp2' | 'cmpp3'): CmppAccountConfig {
  return {
    name: 'sim',
    protocol,
    host: config.simulator.host,
    port,
    spId: SIMULATOR_SP_ID,
    sharedSecret: config.simulator.password || 'secret',
    serviceId: 'MGOV',
    msgSrc: '',
    accessCode: '1065700',
    feeUserType: 2,
    feeType: '01',
    feeCode: '000000',
    registeredDelivery: true,
    links: 4,
    window: 64,
    tps: 0,
    responseTimeoutMs: 10_000,
    activeTestMs: 30_000,
    reconnectInitialMs: 100,
    reconnectMaxMs: 5_000,
    throttleBackoffMs: 100,
    utcOffsetMinutes: 480,
    operators: ['*'],
  };
}

/** PDA recipients go between hosts through the work queue (config validation: only with replication, so on NATS). */
function pdaHandoffOn(config: ResolvedConfig): boolean {
  return config.queue.nats.replication.enabled && config.queue.nats.replication.pdaHandoff;
}

export function queueOptions(config: ResolvedConfig): QueueOptions {
  return {
    prefix: config.queue.prefix,
    tiers: [...(pdaHandoffOn(config) ? [PDA_HANDOFF_TIER] : []), ...config.tierList.map((t) => t.name)],
    ackWaitMs: config.queue.ackWaitMs,
    maxDeliver: config.queue.maxDeliver,
    maxAckPending: config.queue.maxAckPending,
    duplicateWindowMs: config.queue.duplicateWindowMs,
  };
}

/** What the dispatcher asks of replication (DispatchReplica). */
function replicaGate(store: ReceiptStore, replication: ReceiptReplication, catchUpMs: number): DispatchReplica {
  return {
    has: (id) => store.getMessage(id) !== undefined,
    caughtUp: () => replication.caughtUp(catchUpMs),
  };
}

export async function startGateway(config: ResolvedConfig, options: GatewayOptions): Promise<Gateway> {
  checkDevKey(config);
  const role = options.role ?? 'all';
  const logger = options.logger;
  const metrics = options.metrics ?? createMetrics();
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  // lmdb as fixed by scripts/patch-lmdb.mjs, or a failed commit can be reported as committed.
  assertLmdbFixed();
  // Named databases: receipts, queue (+1 per tier), directory, PDA channel, office services — with room to spare.
  // The data file: opened, watched for room under the file-size limit, its mapped pages given back.
  const dataFile = join(dataDir, 'gateway.lmdb');
  const env = open({ path: dataFile, maxDbs: 128, compression: false, mapSize: config.storage.mapSizeMiB * 2 ** 20 });
  // A failed commit (disk full, I/O error) is a state, not a crash: 503 at the door, not ready, SMSC told to retry.
  const storage = attachStorageHealth(env, {
    metrics,
    logger: logger.child({ part: 'storage' }),
    probeIntervalMs: config.storage.probeIntervalMs,
    minFreeBytes: config.storage.minFreeMiB * 2 ** 20,
    freeSpaceCheckMs: config.storage.freeSpaceCheckMs,
    freeBytes: () => statfsFreeBytes(dataDir),
    // The data file's room under the process's file-size limit (ulimit -f) counts as free space when it is less.
    fileRoomBytes: () => fileSizeRoomBytes(dataFile),
  });
  // Not ready from the start when the floor is not free (the timer reads it from now on).
  await storage.checkFreeSpace();
  // The data file's pages that reads mapped in, and the heap's free pages, given back now and then:
  // RSS follows the work in hand, not the data kept or the largest flood seen.
  const stopPageRelease = releasePagesEvery({
    mapped: new MappedPages(dataFile),
    intervalMs: config.storage.releasePagesMs,
    aboveBytes: config.storage.releaseAboveMiB * 2 ** 20,
    metrics,
    logger: logger.child({ part: 'storage' }),
  });
  const replicationConfig = config.queue.nats.replication;
  const hostId = replicationConfig.enabled ? replicationConfig.host || hostname().split('.')[0]!.replace(/[^A-Za-z0-9_-]/g, '-') : undefined;
  checkReplicaHost(env, hostId);
  const changeLog = hostId !== undefined ? new ChangeLog(env, hostId) : undefined;
  const store = ReceiptStore.open({
    env,
    metrics,
    logger,
    earlyReceiptTtlMs: 10 * 60_000,
    receiptGraceMs: config.dispatch.receiptGraceMs,
    ...(changeLog ? { changeLog } : {}),
  });
  const queue = await openQueue(config, queueOptions(config), env, metrics, logger);
  // Several hosts: this host's receipt changes out to the others, theirs applied here (docs/DEPLOY.md).
  let replication: ReceiptReplication | undefined;
  if (changeLog) {
    const { ReceiptReplication } = await import('../queue/nats/receipt-replication.js');
    replication = await ReceiptReplication.start({
      servers: config.queue.nats.servers,
      store,
      log: changeLog,
      options: { prefix: config.queue.prefix, stream: `${config.queue.nats.stream}_RECEIPTS`, replicas: config.queue.nats.replicas, maxAgeMs: replicationConfig.maxAgeMs },
      metrics,
      logger,
    });
  }
  // Completion callbacks (callbackUrl) from every role: final states are recorded in all of them.
  // Every outbound POST to a tenant's URL (completion callbacks, MO forwards) goes through one client:
  // target policy (callbacks.allow), keep-alive pools per origin, signing (src/outbound).
  const cb = config.callbacks;
  const callbackSecrets = new CallbackSecrets(env, cb.secrets);
  const webhooks = new Webhooks({ allow: cb.allow, timeoutMs: cb.timeoutMs, connectionsPerHost: cb.connectionsPerHost, secrets: callbackSecrets });
  const callbacks = new StatusCallbacks({
    env, store, webhooks, metrics, logger: logger.child({ part: 'callbacks' }),
    attempts: cb.attempts, timeoutMs: cb.timeoutMs, concurrency: cb.concurrency, perHost: cb.connectionsPerHost, backoffMs: cb.backoffMs, maxBackoffMs: cb.maxBackoffMs,
  });
  callbacks.start();
  // Per-recipient status events (statusCallback), batched per destination lane, from every role too.
  const eventCallbacks = new EventCallbacks({
    env, store, webhooks, metrics, logger: logger.child({ part: 'status-events' }),
    attempts: cb.attempts, timeoutMs: cb.timeoutMs, concurrency: cb.concurrency, backoffMs: cb.backoffMs, maxBackoffMs: cb.maxBackoffMs,
    maxBatch: cb.events.maxBatch, lingerMs: cb.events.lingerMs,
  });
  eventCallbacks.start();
  // Police PDA channel: outboxes in the same environment; states go to the receipt store.
  const pda = config.pda.enabled ? PdaChannel.open({ env, config: config.pda, sink: store, metrics, logger }) : undefined;
  // Several hosts, the PDA channel on some: without it here, PDA recipients go to a process that has it.
  const pdaHandoff = pdaHandoffOn(config);
  const pdaRoute = pda ?? (pdaHandoff ? new QueuePdaHandoff({ queue, prefix: config.queue.prefix }) : undefined);
  const directory = Directory.open({ env, config, queue, receipts: store, metrics, logger, ...(pdaRoute ? { pda: pdaRoute } : {}), ...(changeLog ? { changeLog } : {}) });
  callbackSecrets.useDirectory((tenant) => directory.store.getCallbackSecret(tenant));
  // Sender codes claimed twice (rows from before ownership was checked, or a replication race): reported, never a refusal to start.
  const senderCollisions = directory.senderCollisionReport(logger);
  // Final states as events on <prefix>.status.<tenant> for other services (NATS only; every role,
  // since expiry sweeps finalise recipients in ingest processes too).
  const statusEvents = await startStatusEvents(config, store, metrics, logger);

  const runDispatch = role === 'all' || role === 'dispatch';
  const runIngest = role === 'all' || role === 'ingest';

  let simulator: SmscSimulator | undefined;
  let cmppSimulator: CmppSimulator | undefined;
  const accounts: AccountConfig[] = [...config.smpp.accounts];
  const wantSim = config.simulator.enabled === true || (config.simulator.enabled === 'auto' && accounts.length === 0);
  const simProtocol = config.simulator.protocol ?? 'smpp';
  if (runDispatch && wantSim && simProtocol !== 'smpp') {
    cmppSimulator = new CmppSimulator({
      version: simProtocol === 'cmpp2' ? 2 : 3,
      host: config.simulator.host,
      port: config.simulator.port,
      spId: SIMULATOR_SP_ID,
      sharedSecret: config.simulator.password || 'secret',
      dlrDelayMs: config.simulator.dlrDelayMs,
      tps: config.simulator.tps,
      disconnectEvery: config.simulator.disconnectEvery,
    }, logger.child({ part: 'ismg-sim' }));
    const { port } = await cmppSimulator.start();
    if (accounts.length === 0) accounts.push(cmppSimulatorAccount(config, port, simProtocol));
    logger.info({ port, protocol: simProtocol }, 'built-in CMPP ISMG simulator listening (no operator account configured)');
  } else if (runDispatch && wantSim) {
    simulator = new SmscSimulator(config.simulator, logger.child({ part: 'smsc-sim' }));
    const { port } = await simulator.start();
    if (accounts.length === 0) accounts.push(simulatorAccount(config, port));
    logger.info({ port }, 'built-in SMSC simulator listening (no SMPP account configured)');
  }

  const pools: SubmitPool[] = [];
  let dispatcher: Dispatcher | undefined;
  // Intake first: does accepted work wait for its commit, and when did the last such write end (the dispatcher's clock)?
  // Set by the send service, which is made after the dispatcher (it wakes it).
  let writesWaiting = (): boolean => false;
  let lastWriteEnded = -Infinity;
  // Its backlog bound (dispatch.intakeFirstBacklog): recipients accepted here, not yet taken by the dispatcher.
  const intakeBacklog = config.dispatch.intakeFirstMs > 0 ? new IntakeBacklog((n) => metrics.dispatchIntakeBacklog.set(n)) : undefined;
  let router: Router | undefined;
  if (runDispatch) {
    for (const account of accounts) {
      // The pool's pending queue must hold everything the dispatcher may have in flight.
      const maxPending = Math.max(10_000, 2 * config.dispatch.maxInflightSegments);
      const pool: SubmitPool = isCmppAccount(account)
        ? new CmppAccount(account, { metrics, logger, maxPending })
        : new BindPool(account, { metrics, logger, maxPending });
      // Not an async function: one promise per receipt (the store's), not two.
      pool.onReceipt((r) => {
        try {
          storage.assertWritable();
        } catch (e) {
          return Promise.reject(e);
        }
        return store.applyReceipt(r);
      });
      pools.push(pool);
    }
    const routeLog = logger.child({ part: 'route' });
    router = new Router(
      accounts.map((a, i) => {
        const pool = pools[i] as SubmitPool;
        const rw = 'accessCode' in a && typeof a.accessCode === 'object' ? a.accessCode : undefined;
        return {
          name: a.name, operators: a.operators, signaturePosition: a.signaturePosition ?? 'front', transport: pool,
          carrier: carrierOf({ name: a.name, carrier: a.carrier, protocol: 'protocol' in a ? a.protocol : undefined, operators: a.operators }),
          ...(a.allowList !== undefined ? { allowList: new Set(a.allowList) } : {}),
          ...(rw !== undefined ? { sourceFor: (source: string) => toAccount(rw, source) } : {}),
          bound: () => pool.boundCount, shed: (reason: string) => pool.shed(reason),
        };
      }),
      { health: config.routing.health, utcOffsetMinutes: config.directory.utcOffsetMinutes, tiers: config.tierList.map((t) => t.name), rules: config.routing.rules },
      {
        metrics,
        unitsOf: (tenant) => directory.store.unitChain(tenant)?.map((u) => u.id),
        stored: () => storedRouting(directory.store),
        onChange: (account, up, reason) => (up ? routeLog.info({ account }, 'account up for routing') : routeLog.warn({ account, reason }, 'account down for routing: its recipients go to the next account')),
        onRejected: (version, problems) => routeLog.error({ version, problems }, 'stored routing rules do not fit this process\'s accounts; the table in force is kept'),
      },
    );
    router.start();
    dispatcher = new Dispatcher({
      queue,
      store,
      router: router,
      // With the hand-off, a process with the PDA channel also takes other hosts' PDA recipients, first.
      tiers: pda && pdaHandoff ? [{ name: PDA_HANDOFF_TIER, priority: Number.MAX_SAFE_INTEGER, defaultValidityMs: 0 }, ...config.tierList] : config.tierList,
      options: {
        fetchBatch: config.dispatch.fetchBatch,
        maxInflightSegments: config.dispatch.maxInflightSegments,
        maxInflightJobs: Math.max(4, Math.min(config.queue.maxAckPending, 2 * config.dispatch.fetchBatch)),
        idleWaitMs: 50,
        ackWaitMs: config.queue.ackWaitMs,
        nakDelayMs: 1000,
      },
      metrics,
      logger,
      fanout: directory.fanout,
      optOut: (tenant) => directory.policy.optOut(tenant),
      optOutExemptTiers: config.optOutExemptTiers,
      ...(directory.frequency.enabled ? { frequency: directory.frequency } : {}),
      quiet: directory.quietCheck(config),
      intakeFirst: new IntakeFirstGate({
        maxHoldMs: config.dispatch.intakeFirstMs,
        yieldingTiers: config.intakeYieldingTiers,
        writing: () => writesWaiting(),
        lastWriteEndedAt: () => lastWriteEnded,
        onHold: (holding, heldMs) => {
          metrics.dispatchHeldForIntake.set(holding ? 1 : 0);
          if (heldMs > 0) metrics.dispatchIntakeHoldSeconds.inc(heldMs / 1000);
        },
        ...(intakeBacklog ? { backlog: () => intakeBacklog.value, maxBacklog: config.dispatch.intakeFirstBacklog } : {}),
      }),
      ...(intakeBacklog ? { onTaken: (n: number) => intakeBacklog.taken(n) } : {}),
      ...(replication ? { replica: replicaGate(store, replication, replicationConfig.catchUpMs) } : {}),
      ...(pda && pdaHandoff ? { pdaLocal: pda } : {}),
    });
  }

  // The send service: every send path (the HTTP door, meetings, workflow events, case-query answers,
  // mail alerts) in every role goes through its one admission and the same durability.
  const principalOf = (tenant: string): Principal | undefined => tenantPrincipal(config, directory.store, tenant);
  const directoryRules = { rules: directory.policy, held: directory.held };
  const officeStores = new OfficeStores(
    { env, config, queue, receipts: store, directory, webhooks, metrics, logger: logger.child({ part: 'office' }), ...(changeLog ? { changeLog } : {}) },
    createAuthorizer({ config, principalOf, directory: directoryRules }),
  );
  const wake = dispatcher;
  const sends = createSendService({
    config, store, queue, metrics, logger, principalOf,
    canSign: (tenant) => webhooks.canSign(tenant),
    directory: directoryRules,
    templates: officeStores.templateRenderer,
    schedule: officeStores.scheduleSink,
    // Same process: poke the dispatcher so new work does not wait for its idle poll.
    ...(wake ? { onAccepted: () => { lastWriteEnded = Date.now(); wake.wake(); } } : {}),
    ...(wake && intakeBacklog ? { onQueued: (n: number) => intakeBacklog.queued(n) } : {}),
  });
  writesWaiting = () => sends.inflightRequests > 0;
  const intake = new Intake({ config, sends });
  const office = new Office({ env, config, queue, receipts: store, directory, webhooks, metrics, logger: logger.child({ part: 'office' }), stores: officeStores, sends });
  pools.forEach((pool, i) => {
    // An account with its own access code: a reply is routed by the code it arrives on AND this account —
    // to the owner of the code this account writes so (src/directory/senders.ts canonicalDestination),
    // else as to the platform's code (same unit whichever account carried the message).
    const a = accounts[i];
    const rw = a !== undefined && 'accessCode' in a && typeof a.accessCode === 'object' ? a.accessCode : undefined;
    const ac = a !== undefined && 'accessCode' in a && typeof a.accessCode === 'string' ? a.accessCode : undefined;
    const form = a !== undefined ? airFormOf({ name: a.name, accessCode: rw ?? ac }) : undefined;
    // Stored, re-assembled and routed (src/office/mo-inbox.ts) before the deliver_sm_resp.
    // While storage is full the SMSC is told to retry later (ESME_RX_T_APPN): it keeps the MO.
    pool.onMobileOriginated(async (mo) => {
      storage.assertWritable();
      if (form === undefined) return office.receive(mo);
      // CMPP: the account gives Dest_Id as it arrived (onAir); SMPP: destination is as it arrived.
      const owned = canonicalDestination(mo.onAir ?? mo.destination, directory.store.senderOwnership().owners, form);
      await office.receive({ ...mo, destination: owned ?? (rw !== undefined ? toCanonical(rw, mo.destination) : mo.destination) });
    });
    pool.start();
  });
  dispatcher?.start();
  office.start();
  // Second attempts of rerouted recipients (routing rules' reroute): their pending jobs are rows, published from here in every role.
  const rerouteRelay = new RerouteRelay({ store, queue, prefix: config.queue.prefix, logger: logger.child({ part: 'reroute' }) });
  rerouteRelay.start();

  // HTTP: the parts' route tables on one listener (src/http); 404/405, auth, bodies, errors and counts come from the tables.
  const bindsDetail = (): Record<string, unknown> => ({ role, queue: queue.kind, binds: pools.map((p) => ({ account: p.account, bound: p.boundCount })), ...(router ? { accounts: router.accounts() } : {}) });
  let frontDoor: HttpDoor | undefined;
  if (runIngest) {
    const keys = new ApiKeyRing(config.auth.apiKeys, config.sender.defaultSource, directory.policy);
    const adminRing = new AdminKeyRing(config.admin.keys);
    const pdaAdmin = pda ? pdaAdminRealm(config.pda.adminKey) : undefined;
    const door: HttpDoor = new HttpDoor({
      tls: config.server.tls,
      realms: { sending: (h) => keys.authenticate(h), admin: (h) => adminRing.authenticate(h), ...(pdaAdmin ? { pdaAdmin } : {}) },
      limits: { body: config.server.maxBodyBytes, import: config.directory.maxImportBytes, json: jsonBounds(config.server.json) },
      assertWritable: () => storage.assertWritable(),
      metrics,
      logger,
    });
    const readiness: Readiness = {
      ready: () => {
        const s = storage.readiness();
        return { ready: s.ok, detail: { ...bindsDetail(), ...senderCollisions(), ...s.detail } };
      },
    };
    door.mount([
      bind(OPS_ROUTES, { metrics, readiness, accepting: () => door.accepting }),
      bind(DOC_ROUTES, { document: JSON.stringify(buildOpenApi()) }),
      bind(MESSAGE_ROUTES, { config, intake, status: store, scheduled: office.scheduled }),
      office.routes(),
      ...(pda ? [bind(PDA_ROUTES, { channel: pda }), bind(PDA_ADMIN_ROUTES, { channel: pda, logger })] : []),
      bind(ADMIN_HTTP_ROUTES, { config, directory: directory.store, expander: directory.expander, quotas: directory.quotas, held: directory.held, readmit: (tenant, h) => sends.readmit(tenant, h), callbackSecrets, metrics, logger, ...(router ? { routing: router } : {}) }),
      office.archiveRoutes(store),
    ]);
    await door.listen(config.server.host, config.server.port);
    frontDoor = door;
    logger.info({ port: door.port, role, queue: queue.kind }, 'gateway listening');
  }

  // New-mail alerts: an SMTP listener in processes that take work in (ingest roles).
  let mail: MailAlerts | undefined;
  if (runIngest && config.office.mail.enabled) {
    mail = await startMailAlerts({ config, env, directory: directory.store, sends, metrics, logger: logger.child({ part: 'mail' }) });
    logger.info({ port: mail.port }, 'SMTP listener for new-mail alerts');
  }

  // A process without the API still answers /healthz, /readyz and /metrics on server.port.
  let monitor: HttpDoor | undefined;
  if (!runIngest) {
    const door: HttpDoor = new HttpDoor({ tls: config.server.tls, realms: {}, limits: { body: 0, import: 0 }, metrics, logger });
    const readiness: Readiness = {
      ready: () => {
        const s = storage.readiness();
        return { ready: s.ok && pools.every((p) => p.boundCount > 0), detail: { ...bindsDetail(), ...s.detail } };
      },
    };
    door.mount([bind(OPS_ROUTES, { metrics, readiness, accepting: () => door.accepting })]);
    await door.listen(config.server.host, config.server.port);
    monitor = door;
  }
  logger.info({ role, queue: queue.kind, port: frontDoor?.port ?? monitor?.port, pda: pda !== undefined }, 'gateway started');

  // Housekeeping: expire open recipients past validity, drop stale early receipts, export queue depth.
  const sweeps = setInterval(() => {
    store.expireDue().catch((e: unknown) => logger.error({ err: e }, 'expiry sweep failed'));
    store.sweepEarlyReceipts().catch((e: unknown) => logger.error({ err: e }, 'early receipt sweep failed'));
    for (const t of config.tierList) {
      queue.depth(t.name).then(
        (n) => metrics.queueDepth.set({ tier: t.name }, n),
        () => undefined,
      );
    }
  }, config.dispatch.expirySweepMs);
  sweeps.unref();
  // Old quota days and fan-out markers: a slow housekeeping, each run bounded.
  const directorySweeps = setInterval(() => {
    directory.sweep(config).catch((e: unknown) => logger.error({ err: e }, 'directory sweep failed'));
  }, 10 * 60_000);
  directorySweeps.unref();
  // Retention: final messages after retention.messages, audit entries after retention.audit (bounded sweeps).
  const retention = new RetentionSweeper({
    receipts: store,
    audit: directory.store,
    limits: {
      messagesMs: config.retentionMs.messages, auditMs: config.retentionMs.audit, batchRows: config.retention.batchRows,
      maxRowsPerSweep: config.retention.maxRowsPerSweep, scanMessages: config.retention.scanMessages,
    },
    metrics,
    logger: logger.child({ part: 'retention' }),
  });
  retention.start(config.retention.sweepMs);

  let stopped: Promise<void> | undefined;
  return {
    port: frontDoor?.port ?? monitor?.port ?? 0,
    config,
    metrics,
    store,
    queue,
    simulator,
    cmppSimulator,
    pda,
    mail,
    office,
    router,
    storage,
    stop(): Promise<void> {
      stopped ??= (async () => {
        clearInterval(sweeps);
        clearInterval(directorySweeps);
        await retention.stop();
        frontDoor?.drain();
        monitor?.drain();
        await mail?.stop();
        const deadline = Date.now() + 10_000;
        while (intake.inflightRequests > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        frontDoor?.close();
        await office.close();
        await dispatcher?.stop(15_000);
        await rerouteRelay.stop();
        router?.stop();
        // Sessions closed with SERVER_SHUTDOWN; pending acks committed and states relayed to the store.
        await pda?.close();
        await Promise.all(pools.map((p) => p.close()));
        await queue.close();
        await callbacks.close();
        await eventCallbacks.close();
        await webhooks.close();
        await replication?.stop();
        // With the disk full the last writes failed (and were never acknowledged): stop anyway.
        await store.flushed().catch((e: unknown) => logger.warn({ err: e, storage: storage.reason }, 'last writes not flushed at stop'));
        await store.close();
        // tenantOf() reads LMDB: the publisher stops before the environment closes.
        await statusEvents?.stop();
        monitor?.close();
        storage.close();
        stopPageRelease();
        await env.close();
        await simulator?.stop();
        await cmppSimulator?.stop();
        logger.info('gateway stopped');
      })();
      return stopped;
    },
  };
}
