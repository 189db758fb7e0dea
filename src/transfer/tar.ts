/**
 * Tar in and out, with node-tar doing the format: headers (ustar, a pax
 * header when a name does not fit) on the way out, and its strict parser on
 * the way in, turned into an async iteration of entries. Content is
 * streamed both ways, never held whole: the parser is fed only as fast as
 * the current entry is consumed.
 */
import type { Readable } from 'node:stream';
import { Header, Parser, Pax, type ReadEntry } from 'tar';
import { TransferError } from './errors.js';

const BLOCK = 512;
/** Fixed, so exporting the same content twice gives the same bytes. */
const MTIME = new Date(0);

/** The header block(s) of a regular file of `size` bytes. */
export function fileHeader(path: string, size: number): Buffer {
  const data = { path, mode: 0o644, uid: 0, gid: 0, size, mtime: MTIME, type: 'File' as const, uname: '', gname: '' };
  const header = new Header(data);
  header.encode();
  const block = header.block as Buffer;
  if (!header.needPax) return block;
  return Buffer.concat([new Pax(data).encode(), block]);
}

/** Zero bytes after `size` bytes of content, up to the next block. */
export const padding = (size: number): Buffer => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);

/** The end-of-archive marker: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** The message a node-tar failure means for someone importing a bundle. */
function tarFailure(err: Error & { code?: string; tarCode?: string }): TransferError {
  const message = err.message.replace(/^TAR_[A-Z_]+: /, '');
  if (/truncated/i.test(message)) return new TransferError('ERR_BUNDLE_TRUNCATED', `the bundle is truncated: ${message}`, { cause: err });
  if (/checksum/i.test(message)) return new TransferError('ERR_BUNDLE_TRUNCATED', 'the bundle is damaged: a tar header fails its checksum', { cause: err });
  return new TransferError('ERR_BUNDLE_TRUNCATED', `the bundle is not a readable tar: ${message}`, { cause: err });
}

/**
 * The entries of the tar `source`, in order. Each must be consumed (read to
 * its end, or `resume()`d) before the next is asked for. Throws a
 * TransferError when the tar is damaged or ends early; breaking out of the
 * loop stops reading and destroys `source`.
 */
export async function* tarEntries(source: Readable): AsyncGenerator<ReadEntry> {
  const parser = new Parser({ strict: true });
  const ready: ReadEntry[] = [];
  let failure: Error | undefined;
  let ended = false;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    wake?.();
    wake = undefined;
  };
  parser.on('entry', (entry: ReadEntry) => {
    ready.push(entry);
    notify();
  });
  // The pump waits here when the parser is full; woken by a drain, a failure or the end of the loop.
  let resumePump: (() => void) | undefined;
  const release = (): void => {
    resumePump?.();
    resumePump = undefined;
  };
  parser.on('drain', release);
  parser.on('error', (err: Error) => {
    failure ??= tarFailure(err);
    notify();
    release();
  });
  // A tar cut between two entries, or inside a header, parses cleanly: only the missing end-of-archive marker tells.
  let sawEnd = false;
  parser.on('eof', () => {
    sawEnd = true;
  });
  parser.on('end', () => {
    if (!sawEnd) failure ??= new TransferError('ERR_BUNDLE_TRUNCATED', "the bundle is truncated: it ends without tar's end-of-archive marker");
    ended = true;
    notify();
  });
  let stopped = false;
  const pump = (async () => {
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        if (stopped) return;
        if (!parser.write(chunk) && !stopped && failure === undefined) await new Promise<void>((resolve) => (resumePump = resolve));
      }
      if (!stopped) parser.end();
    } catch (err) {
      failure ??= stopped ? undefined : new TransferError('ERR_BUNDLE_TRUNCATED', `reading the bundle failed: ${(err as Error).message}`, { cause: err });
      notify();
    }
  })();
  try {
    for (;;) {
      if (failure !== undefined) throw failure;
      const entry = ready.shift();
      if (entry !== undefined) {
        yield entry;
        continue;
      }
      if (ended) break;
      await new Promise<void>((resolve) => (wake = resolve));
    }
    await pump;
    if (failure !== undefined) throw failure;
  } finally {
    stopped = true;
    release();
    source.destroy();
    await pump.catch(() => undefined);
  }
}
