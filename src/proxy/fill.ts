/**
 * One upstream download of one blob, shared by every client that wants it.
 *
 * The fill writes the upstream body to an upload file in storage while
 * hashing it, resumes with a Range request when the upstream connection
 * breaks, and commits (verify digest, atomic move) at the end. Clients never
 * read the upstream stream: each one follows the spool file as it grows, so
 * a slow or departed client neither slows nor stops the fill, and a late
 * client (or a Range request) starts from what is already on disk.
 *
 * The last byte is released only after the digest is verified, so a client
 * never receives a complete-looking body that is wrong: if verification
 * fails, every follower is cut short.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { blobUnknown, RegistryError } from '../registry/errors.js';
import type { Digest } from '../registry/digest.js';
import type { RepositoryName } from '../registry/names.js';
import type { BlobDescriptor, BlobFile } from '../registry/services.js';
import type { BlobIngest, BlobStore } from '../storage/blobs.js';
import { isPathNotFound, type StorageDriver } from '../storage/driver.js';
import { pathFor } from '../storage/paths.js';
import { discard, type Upstream, type UpstreamResponse, upstreamError } from './upstream.js';

/** filling → verified (digest checked, not yet durable) → committed (in place), or → failed. */
export type FillState = 'filling' | 'verified' | 'committed' | 'failed';


export interface FillOptions {
  maxResumes: number;
  log: Logger;
}

export class BlobFill extends EventEmitter {
  state: FillState = 'filling';
  error: Error | undefined;
  /** Resolves when the blob is committed; rejects when the fill failed. */
  readonly done: Promise<BlobDescriptor>;
  private resolveDone!: (d: BlobDescriptor) => void;
  private rejectDone!: (e: Error) => void;

  constructor(
    readonly repository: RepositoryName,
    readonly digest: Digest,
    /** Announced by the upstream's Content-Length. */
    readonly size: number,
    private readonly ingest: BlobIngest,
    private readonly driver: StorageDriver,
  ) {
    super();
    this.setMaxListeners(0);
    ingest.onFlush = () => this.emit('progress');
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined);
  }

  /** Bytes safely on disk. */
  get written(): number {
    return this.ingest.size;
  }

  async run(
    first: UpstreamResponse,
    upstream: Upstream,
    options: FillOptions,
    onCommit: (fill: BlobFill) => Promise<void>,
    signal: AbortSignal,
  ): Promise<void> {
    let response = first;
    let resumes = 0;
    try {
      for (;;) {
        try {
          for await (const chunk of response.body as AsyncIterable<Buffer>) await this.ingest.write(chunk);
          if (this.ingest.size >= this.size) break;
          throw new Error(`upstream body ended early at ${this.ingest.size} of ${this.size} bytes`);
        } catch (err) {
          if (signal.aborted || resumes >= options.maxResumes || this.ingest.size >= this.size) throw err;
          resumes += 1;
          options.log.warn(
            { digest: this.digest.value, offset: this.ingest.size, attempt: resumes, err: (err as Error).message },
            'upstream blob transfer interrupted; resuming with a Range request',
          );
          response = await this.resume(upstream, signal);
        }
      }
      // Verified first: followers may have the last byte while the blob is made durable.
      this.ingest.verify(this.size);
      this.state = 'verified';
      this.emit('progress');
      const descriptor = await this.ingest.commit(this.size);
      this.state = 'committed';
      this.emit('progress');
      // Link before anyone learns the fill is over, so the next request finds the blob in place.
      await onCommit(this).catch((err: unknown) => options.log.error({ err, digest: this.digest.value }, 'linking a filled blob failed'));
      this.resolveDone(descriptor);
    } catch (err) {
      await this.ingest.cancel();
      this.error = err instanceof RegistryError ? err : new RegistryError('UPSTREAM_ERROR', `upstream blob transfer failed: ${(err as Error).message}`);
      this.state = 'failed';
      this.rejectDone(this.error);
    }
    this.emit('progress');
  }

  private async resume(upstream: Upstream, signal: AbortSignal): Promise<UpstreamResponse> {
    const offset = this.ingest.size;
    const response = await upstream.request({
      signal,
      method: 'GET',
      repository: this.repository,
      kind: 'blobs',
      reference: this.digest.value,
      headers: { Range: `bytes=${offset}-` },
    });
    const range = /^bytes (\d+)-/.exec(response.headers['content-range'] ?? '');
    if (response.status !== 206 || Number(range?.[1]) !== offset) {
      discard(response);
      throw new Error(`upstream cannot resume at byte ${offset} (status ${response.status})`);
    }
    return response;
  }

  private nextProgress(): Promise<void> {
    return new Promise<void>((resolve) => this.once('progress', resolve));
  }

  /** Waits until the bytes before `target` are servable, or the fill ends. */
  private async waitFor(target: number): Promise<void> {
    while ((this.state === 'filling' || this.state === 'verified') && this.servable() < target) await this.nextProgress();
    if (this.state === 'failed') throw this.error;
  }

  /**
   * Bytes a follower may read: what is flushed to the spool, but the last
   * byte only once the digest is verified; everything once committed.
   */
  private servable(): number {
    if (this.state === 'committed') return this.size;
    if (this.state === 'verified') return this.ingest.flushed;
    return Math.min(this.ingest.flushed, this.size - 1);
  }

  /**
   * Random access that follows the fill: one open file for the whole response
   * (on a local disk the descriptor survives the commit's rename), read
   * through the HTTP layer's reused buffers. A read waits for its bytes.
   */
  async openFile(): Promise<BlobFile> {
    const open = spoolOpener(this.driver);
    let handle: BlobFile;
    try {
      handle = await open(this.ingest.spoolPath);
    } catch (err) {
      if (!isPathNotFound(err)) throw err;
      await this.done; // moved into place already (or failed: this throws)
      handle = await open(pathFor({ kind: 'blobData', digest: this.digest }));
    }
    return {
      read: async (buffer, length, position) => {
        await this.waitFor(Math.min(position + length, this.size));
        const available = this.servable() - position;
        return available <= 0 ? 0 : handle.read(buffer, Math.min(length, available), position);
      },
      close: () => handle.close(),
    };
  }
}

/**
 * Followers read the spool while it is written, which needs random access
 * (a local disk). A driver without it (an object store) will need a local
 * spool in front of it; until one exists, such a driver cannot fill.
 */
function spoolOpener(driver: StorageDriver): (path: string) => Promise<BlobFile> {
  if (driver.open === undefined) throw new Error(`storage driver ${driver.name} has no random access: blob fills need a local spool`);
  return driver.open.bind(driver);
}

/** The fills under way in this process, one per digest. */
export class FillRegistry {
  private readonly fills = new Map<string, Promise<BlobFill>>();
  /** Aborted on close: fills stop and clean up after themselves. */
  private readonly closing = new AbortController();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly options: FillOptions,
  ) {
    spoolOpener(driver); // refuse at startup, not on the first miss
  }

  get active(): number {
    return this.fills.size;
  }

  /** Stops every fill under way and waits until each has cleaned up. */
  async close(): Promise<void> {
    this.closing.abort();
    await Promise.allSettled([...this.fills.values()].map(async (started) => (await started).done));
  }

  current(digest: Digest): Promise<BlobFill> | undefined {
    return this.fills.get(digest.value);
  }

  /** Joins the fill of `digest` or starts one; resolves once the upstream answered with headers. */
  start(upstream: Upstream, repository: RepositoryName, digest: Digest, onCommit: (fill: BlobFill) => Promise<void>): Promise<BlobFill> {
    const existing = this.fills.get(digest.value);
    if (existing) return existing;
    const started = this.begin(upstream, repository, digest, onCommit);
    this.fills.set(digest.value, started);
    started.then(
      (fill) => fill.done.catch(() => undefined).finally(() => this.fills.delete(digest.value)),
      () => this.fills.delete(digest.value),
    );
    return started;
  }

  private async begin(
    upstream: Upstream,
    repository: RepositoryName,
    digest: Digest,
    onCommit: (fill: BlobFill) => Promise<void>,
  ): Promise<BlobFill> {
    const { signal } = this.closing;
    if (signal.aborted) throw new RegistryError('UNAVAILABLE', 'stevedore is shutting down');
    const response = await upstream.request({ method: 'GET', repository, kind: 'blobs', reference: digest.value, signal });
    if (response.status !== 200) {
      discard(response);
      throw upstreamError(upstream.name, response.status, response.headers, () => blobUnknown(digest.value));
    }
    const size = Number(response.headers['content-length']);
    if (!Number.isSafeInteger(size) || size < 0) {
      discard(response);
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${upstream.name} sent blob ${digest.value} without a Content-Length`);
    }
    const ingest = await this.blobs.begin(repository, digest);
    const fill = new BlobFill(repository, digest, size, ingest, this.driver);
    this.options.log.info({ repository, digest: digest.value, size, upstream: upstream.name }, 'blob fill started');
    const started = Date.now();
    void fill.run(response, upstream, this.options, onCommit, signal).then(() => {
      if (fill.state === 'committed') {
        this.options.log.info({ repository, digest: digest.value, size, durationMs: Date.now() - started }, 'blob fill committed');
      } else {
        this.options.log.warn({ repository, digest: digest.value, err: fill.error?.message }, 'blob fill failed; nothing was stored');
      }
    });
    return fill;
  }
}
