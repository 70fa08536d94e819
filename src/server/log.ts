// JSON logs. Handlers log events and counts, never IDs, keys, tokens or bodies.
import pino, { type Logger } from 'pino';

export const createLogger = (name: string, level: string): Logger =>
  pino({ name, level, base: { service: name }, timestamp: pino.stdTimeFunctions.isoTime });
