/**
 * A child process for the crash-policy test: installs the policy with a drain
 * that prints, then lets an error escape every frame (argv[2]: `throw` from a
 * timer, or `reject` an unawaited promise).
 */
import { pino } from 'pino';
import { installCrashPolicy } from '../../src/app/crash-policy.js';

const logger = pino({ level: 'info' });
installCrashPolicy({
  logger,
  context: { role: 'test-child' },
  drain: async () => {
    await new Promise((r) => setTimeout(r, 20));
    process.stdout.write('{"drained":true}\n');
  },
});
process.stdout.write('{"ready":true}\n');
setTimeout(() => {
  if (process.argv[2] === 'reject') void Promise.reject(new Error('escaped rejection'));
  else throw new Error('escaped exception');
}, 10);
// Keeps the event loop alive, as a server's sockets would.
setInterval(() => undefined, 1000);
