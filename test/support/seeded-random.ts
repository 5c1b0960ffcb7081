/**
 * The seedable PRNG tests use, so a random schedule (kill points,
 * workloads) is the same on every run and a failure replays from its seed.
 * One implementation: src/core/random.ts.
 */
export { seededRandom } from '../../src/core/random.js';
