/**
 * The police PDA channel: what the composition root and the dispatcher use.
 * docs/pda-protocol.md is the wire specification.
 */
export { PdaChannel, MAX_DELIVER_BATCH, type PdaChannelOptions, type DeliverResult } from './channel.js';
export { attachPdaRoutes, PDA_PATH, PDA_ROUTES, PDA_SUBPROTOCOL, type PdaServer, type PdaRouteDeps } from './ws-route.js';
export { PDA_ADMIN_ROUTES, PDA_ADMIN_PREFIX, pdaAdminRealm, type PdaAdminRouteDeps } from './admin-routes.js';
export { DeviceRegistry } from './device-registry.js';
export { PDA_DBS } from './store.js';
export { registerPdaCommands } from './cli.js';
export type { PdaMessage, PdaPriority, PdaStatusSink, PdaStatusState, PdaStatusUpdate, DeviceState, DeviceView, IssuedKey } from './types.js';
