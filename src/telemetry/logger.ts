/**
 * pino logger. Numbers and bodies never appear in clear (DESIGN invariant 5):
 * callers log masked numbers (`maskNumber`) and never log text; as a second
 * line of defence, the serializer-level `redact` removes fields that could
 * carry them if someone logs a whole object.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'text', '*.text', 'body', '*.body', 'to', '*.to', 'short_message', '*.short_message',
  'destination', '*.destination', 'destination_addr', '*.destination_addr', 'source_addr', '*.source_addr',
  'params', '*.params', 'authorization', '*.authorization', 'apiKey', '*.apiKey', 'password', '*.password',
];

export function createLogger(options: { level: LevelWithSilent; name?: string; destination?: NodeJS.WritableStream }): Logger {
  const opts = {
    level: options.level,
    name: options.name ?? 'smsgw',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination ? pino(opts, options.destination as pino.DestinationStream) : pino(opts);
}
