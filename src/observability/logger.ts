/**
 * pino loggers with stable field names. Credentials are redacted wherever
 * they could appear; `text` output is a one-line-per-event rendering of the
 * same records for people reading a terminal.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

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

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

function textStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      try {
        const record = JSON.parse(chunk.toString('utf8')) as Record<string, unknown>;
        const { time, level, msg, service: _service, pid: _pid, hostname: _hostname, ...rest } = record;
        const fields = Object.entries(rest)
          .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
          .join(' ');
        const when = typeof time === 'number' ? new Date(time).toISOString() : '';
        out.write(`${when} ${LEVELS[Number(level)] ?? String(level)} ${String(msg ?? '')}${fields ? ` ${fields}` : ''}\n`);
      } catch {
        out.write(chunk);
      }
      callback();
    },
  });
}
