/**
 * The S3 driver's writer: one object written as a multipart upload (see the
 * comment of S3Writer), apart from the driver's requests (s3.ts).
 */
import { type CompletedPart, PutObjectCommand } from '@aws-sdk/client-s3';
import type { FileWriter } from './driver.js';
import type { S3Driver } from './s3.js';

const MiB = 1024 * 1024;
/** S3's bounds of a multipart upload part (all but the last part). */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;

/**
 * Streams into a multipart upload, a part of `chunkSize` at a time with one
 * part in flight while the next fills: a write resolves once the buffer is
 * under a part again (backpressure), so a writer holds about two parts.
 * Nothing is visible until commit completes the upload; a writer that never
 * filled a part commits with one PutObject. An appending writer starts a new
 * upload whose first parts are the existing object (copied by S3 when it is
 * at least a part's minimum, else read and put before the new bytes), so its
 * commit replaces the object and its cancel leaves it as it was. Cancel
 * always aborts the upload; abort failures are left to `recover`.
 */
export class S3Writer implements FileWriter {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private readonly parts: CompletedPart[] = [];
  private uploadId: string | undefined;
  private inFlight: Promise<void> | undefined;
  private failure: unknown;
  private written = 0;
  private flushedBytes = 0;
  private closed = false;
  private completed = false;
  onFlush?: () => void;

  private constructor(
    private readonly driver: S3Driver,
    readonly path: string,
    private readonly key: string,
  ) {}

  static async open(driver: S3Driver, path: string, key: string, append: boolean): Promise<S3Writer> {
    const writer = new S3Writer(driver, path, key);
    if (!append) return writer;
    const existing = await driver.head(path);
    if (existing === undefined || existing.size === 0) return writer;
    if (existing.size < MIN_PART_SIZE) {
      writer.buffer(await driver.getContent(path));
      return writer;
    }
    writer.uploadId = await driver.createUpload(key);
    try {
      writer.parts.push(...(await driver.copyParts(key, writer.uploadId, driver.copySource(key), existing.size, 1, driver.copyChunkSize)));
    } catch (err) {
      await writer.cancel();
      throw err;
    }
    return writer;
  }

  get size(): number {
    return this.written;
  }

  get flushed(): number {
    return this.flushedBytes;
  }

  private buffer(chunk: Uint8Array): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
  }

  /** The first `bytes` buffered bytes as one part body. */
  private take(bytes: number): Buffer {
    const out = Buffer.allocUnsafe(Math.min(bytes, this.pendingBytes));
    let filled = 0;
    while (filled < out.length) {
      const head = this.pending[0] as Uint8Array;
      const used = Math.min(head.byteLength, out.length - filled);
      out.set(used === head.byteLength ? head : head.subarray(0, used), filled);
      filled += used;
      if (used === head.byteLength) this.pending.shift();
      else this.pending[0] = head.subarray(used);
    }
    this.pendingBytes -= filled;
    return out;
  }

  /** Sends the next part; its failure is kept for the next write or the commit. */
  private send(body: Buffer): Promise<void> {
    const number = this.parts.length + 1;
    this.parts.push({ PartNumber: number });
    return (async () => {
      this.uploadId ??= await this.driver.createUpload(this.key);
      const part = await this.driver.uploadPart(this.key, this.uploadId, number, body);
      this.parts[number - 1] = part;
    })().catch((err: unknown) => {
      this.failure ??= err;
    });
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.closed) throw new Error('write after commit or cancel');
    if (this.failure !== undefined) throw this.failure;
    this.written += chunk.byteLength;
    this.buffer(chunk);
    while (this.pendingBytes >= this.driver.chunkSize) {
      await this.inFlight;
      if (this.failure !== undefined) throw this.failure;
      this.inFlight = this.send(this.take(this.driver.chunkSize));
    }
  }

  async commit(): Promise<void> {
    if (this.closed) throw new Error('commit after commit or cancel');
    this.closed = true;
    try {
      await this.inFlight;
      if (this.failure !== undefined) throw this.failure;
      if (this.uploadId === undefined && this.parts.length === 0) {
        const body = this.take(this.pendingBytes);
        await this.driver.request('PutObject', this.key, undefined, (abortSignal) =>
          this.driver.client.send(new PutObjectCommand({ Bucket: this.driver.bucket, Key: this.key, Body: body, ContentType: 'application/octet-stream' }), {
            abortSignal,
          }),
        );
      } else {
        if (this.pendingBytes > 0) await this.send(this.take(this.pendingBytes));
        if (this.failure !== undefined) throw this.failure;
        await this.driver.completeUpload(this.key, this.uploadId as string, this.parts);
        this.completed = true;
      }
    } catch (err) {
      // No upload stays open behind a failed commit, whether or not the caller cancels.
      await this.cancel();
      throw err;
    }
    this.flushedBytes = this.written;
    this.onFlush?.();
  }

  async cancel(): Promise<void> {
    this.closed = true;
    this.pending = [];
    this.pendingBytes = 0;
    // A part still on its way could land after the abort and keep the upload alive.
    await this.inFlight;
    const uploadId = this.uploadId;
    if (uploadId === undefined || this.completed) return;
    this.uploadId = undefined;
    this.completed = true;
    await this.driver.abortUpload(this.key, uploadId).catch(() => undefined);
  }
}
