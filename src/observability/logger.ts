/**
 * pino loggers with stable field names. Credentials are redacted wherever
 * they could appear; `text` (`log.formatter: text`) renders the same records
 * through pino-pretty, one line per event, for people reading a terminal.
 *
 * The server's JSON log (stdout) is written asynchronously: lines queue in a
 * bounded buffer and go out in one write per batch, so a burst of requests
 * costs one syscall per batch instead of one per access line, and a stdout
 * nobody reads never blocks the event loop. The buffer is flushed
 * synchronously on exit, whatever ends the process short of SIGKILL.
 */
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { pino, type DestinationStream, type Logger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
export type { Logger };

export interface LoggerOptions {
  level: LogLevel;
  formatter: 'json' | 'text';
  /** Where lines go; absent: stdout, asynchronously for json (see above), synchronously for text. */
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

/** Lines queued for stdout beyond this are dropped (and counted): a stalled reader must not grow the process without bound. */
export const LOG_BUFFER_BYTES = 16 * 1024 * 1024;
/** How often dropped lines are reported, at most. */
const DROP_REPORT_MS = 10_000;

export function createLogger(options: LoggerOptions): Logger {
  const base = { level: options.level, base: { service: 'stevedore' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  if (options.formatter === 'text') return pino(base, textStream(options.destination ?? process.stdout));
  if (options.destination !== undefined) return pino(base, options.destination);
  const stdout = asyncStdout();
  const log = pino(base, stdout);
  reportDrops(stdout, log);
  return log;
}

/** fd 1 through sonic-boom, asynchronous, bounded, flushed synchronously on exit. */
function asyncStdout(): DestinationStream & NodeJS.EventEmitter & { flushSync(): void } {
  // sonic-boom joins queued lines into writes of at most maxWrite bytes (16 KiB by default): too few
  // bytes per write when lines come fast (measured: lines dropped at 15 MB/s of log), so up to 1 MiB.
  const stream = pino.destination({ fd: 1, sync: false, maxLength: LOG_BUFFER_BYTES, maxWrite: 1024 * 1024 });
  // pino registers its own exit flush too; this one also runs where that is skipped.
  process.once('exit', () => {
    try {
      stream.flushSync();
    } catch {
      // stdout already gone (EPIPE, closed): nothing left to flush to.
    }
  });
  return stream;
}

/** Counts lines dropped by a full buffer and says so, at most every DROP_REPORT_MS, once the buffer has room again. */
function reportDrops(stream: NodeJS.EventEmitter, log: Logger): void {
  let dropped = 0;
  let timer: NodeJS.Timeout | undefined;
  stream.on('drop', () => {
    dropped++;
    if (timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      log.warn({ droppedLines: dropped, bufferBytes: LOG_BUFFER_BYTES }, 'log output fell behind (stdout not read fast enough): lines were dropped');
      dropped = 0;
    }, DROP_REPORT_MS);
    timer.unref();
  });
}

/**
 * pino-pretty's formatter over the records pino has already redacted, one
 * line per event, written as each record comes (not through a worker
 * thread, so the last lines before an exit are not lost). Colours only on a
 * terminal. pino-pretty is loaded only for this formatter.
 */
function textStream(out: NodeJS.WritableStream): Writable {
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
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
