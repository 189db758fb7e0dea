/**
 * pino loggers with stable field names. Credentials are redacted wherever
 * they could appear; `text` (`log.formatter: text`) renders the same records
 * through pino-pretty, one line per event, for people reading a terminal.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
export type { Logger };

export interface LoggerOptions {
  level: LogLevel;
  formatter: 'json' | 'text';
  destination?: NodeJS.WritableStream;
}

export const REDACT_PATHS = [
  'authorization',
  'password',
  'token',
  '*.authorization',
  '*.Authorization',
  '*.password',
  '*.token',
  'headers.authorization',
  'req.headers.authorization',
  'config.proxy.password',
];

export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? process.stdout;
  const base = { level: options.level, base: { service: 'stevedore' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  if (options.formatter === 'json') return pino(base, destination);
  return pino(base, textStream(destination));
}

/**
 * pino-pretty's formatter over the records pino has already redacted, one
 * line per event, written as each record comes (not through a worker
 * thread, so the last lines before an exit are not lost). Colours only on a terminal.
 */
function textStream(out: NodeJS.WritableStream): Writable {
  const format = prettyFactory({
    colorize: (out as { isTTY?: boolean }).isTTY === true,
    translateTime: "UTC:yyyy-mm-dd'T'HH:MM:ss.l'Z'",
    ignore: 'pid,hostname,service',
    singleLine: true,
  });
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.write(format(chunk.toString('utf8')));
      callback();
    },
  });
}
