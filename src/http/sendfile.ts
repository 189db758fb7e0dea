/**
 * Copies a stored blob to a response through reused buffers. A stream would
 * allocate a fresh buffer per chunk; with many large downloads that external
 * memory churn drives V8 into repeated full collections (measured: warm
 * throughput halved after a burst of concurrent downloads). A buffer goes
 * back to the pool only when the socket has written it; the buffers of all
 * downloads together stay near BUDGET however many there are.
 */
import type { ServerResponse } from 'node:http';
import type { BlobFile } from '../registry/services.js';

/**
 * What the buffers of all downloads under way add up to, about: each
 * download holds one buffer while its socket takes it (a slow client holds
 * it until it reads). One download gets 512 KiB buffers (fewer reads per
 * blob); more share the budget, down to 64 KiB each past 128 at once.
 */
const BUDGET = 8 * 1024 * 1024;
const LARGEST = 512 * 1024;
const SMALLEST = 64 * 1024;
/** Idle buffers kept per size (64, 128, 256, 512 KiB): at most the budget in all. */
const pools = new Map<number, Buffer[]>([SMALLEST, 2 * SMALLEST, 4 * SMALLEST, LARGEST].map((size) => [size, []]));
let active = 0;

/** The buffer size for a download when `active` are under way: a power of two within the bounds. */
export function chunkSize(downloads: number): number {
  let size = LARGEST;
  while (size > SMALLEST && size * Math.max(1, downloads) > BUDGET) size /= 2;
  return size;
}

const take = (size: number): Buffer => pools.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
const give = (buffer: Buffer): void => {
  const pool = pools.get(buffer.byteLength);
  if (pool !== undefined && (pool.length + 1) * buffer.byteLength <= BUDGET / 4) pool.push(buffer);
};

function drained(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => () => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = done(true);
    const onClose = done(false);
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

/**
 * Sends bytes `start`..`end` (inclusive) of `file`; closes it. Throws if the
 * file ends early. `sent.bytes` grows as the socket takes each chunk.
 */
export async function sendFile(res: ServerResponse, file: BlobFile, start: number, end: number, sent: { bytes: number } = { bytes: 0 }): Promise<void> {
  active += 1;
  try {
    let position = start;
    while (position <= end) {
      if (res.destroyed) return;
      const buffer = take(chunkSize(active));
      const length = Math.min(buffer.byteLength, end - position + 1);
      let read: number;
      try {
        read = await file.read(buffer, length, position);
      } catch (err) {
        give(buffer);
        throw err;
      }
      if (read === 0) {
        give(buffer);
        throw new Error(`blob ended at byte ${position}, before ${end + 1}`);
      }
      position += read;
      const more = res.write(buffer.subarray(0, read), (err) => {
        if (err) return;
        sent.bytes += read;
        give(buffer);
      });
      if (!more && !(await drained(res))) return;
    }
    res.end();
  } finally {
    active -= 1;
    await file.close().catch(() => undefined);
  }
}
