/**
 * API keys of test gateways. Start refuses the development key of
 * config/default.json beside any SMPP/CMPP account (a simulator the test
 * steers is one), so gateways with an account get this key of their own;
 * DEV_KEY is for gateways whose one SMSC is the built-in simulator.
 */
import { DEV_API_KEY } from '../../src/config/load.js';

export const DEV_KEY = DEV_API_KEY;
export const TEST_KEY = 'smsgw-test-key-loopback-only';
/** auth.apiKeys of a test gateway (tenant dev, every tier). */
export const TEST_API_KEYS = [{ key: TEST_KEY, tenant: 'dev', tiers: ['*'], sender: '10690001' }];
