/**
 * One upstream download of one blob, shared by every client that wants it.
 *
 * The fill writes the upstream body to an upload session in storage (a
 * `fill-<owner>-…` id, so a restart can tell its own interrupted spools from
 * client uploads) while hashing it, resumes with a Range request when the
 * upstream connection breaks, and commits (verify digest, atomic move) at the
 * end. Clients never read the upstream stream: each one follows the spool
 * file as it grows, so a slow or departed client neither slows nor stops the
 * fill, and a late client (or a Range request) starts from what is on disk.
 *
 * The last byte is released only after the digest is verified, so a client
 * never receives a complete-looking body that is wrong: if verification
 * fails, every follower is cut short.
 *
 * Every wait is bounded: the upstream's silence by the body timeout; resuming
 * by `maxResumes` attempts and a total time budget; a follower's wait for
 * its next bytes by `followerWaitMs` (it is cut, the fill goes on).
 *
 * At shutdown (FillRegistry.close) a fill still downloading is abandoned and
 * its spool removed; one whose digest is verified is committed. New fills are
 * admitted within `limits.fills` and `limits.fillsperclient` (admission.ts).
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Readable } from 'node:stream';
import { RegistryError } from '../registry/errors.js';
import type { Digest } from '../registry/digest.js';
import type { RepositoryName } from '../registry/names.js';
import type { BlobDescriptor, BlobFile } from '../registry/services.js';
import type { BlobIngest, BlobStore } from '../storage/blobs.js';
import { isPathNotFound, type StorageDriver } from '../storage/driver.js';
import { fillSessionId } from '../storage/owner.js';
import { pathFor } from '../storage/paths.js';
import type { RemoteBlobService } from '../upstream/remote.js';
import { type AdmissionLimits, FillAdmission, type Release } from './admission.js';
import type { HeldLease, Leases } from '../coordination/leases.js';

/** filling → verified (digest checked, not yet durable) → committed (in place), or → failed. */
export type FillState = 'filling' | 'verified' | 'committed' | 'failed';

/** The bounds of one upstream's fills (its `timeouts.resume` and `timeouts.fillwait`). */
export type FillLimits = Pick<FillOptions, 'resumeBudgetMs' | 'followerWaitMs'>;

export interface FillOptions {
  /** Range requests one fill may make after interruptions, in all. */
  maxResumes: number;
  /** Time one fill may spend getting resumed (from each interruption to the resumed answer), in all. */
  resumeBudgetMs: number;
  /** The longest a follower waits for its next bytes before it is cut (the fill goes on). */
  followerWaitMs: number;
  log: Logger;
  /** storage.quota: refuses a blob too large for the cache before anything is written, counts what is committed. */
  quota?: FillQuota;
  /** Per fill, from the caller (FillRegistry.start). */
  metrics?: FillMetrics;
  /** Leases shared with other replicas (a shared metadata store): one replica fills each digest. */
  leases?: Leases;
  /**
   * A local driver fills also write to, for their followers to read, when
   * the storage cannot be read while it is written (S3: `spool.directory`).
   */
  spool?: StorageDriver;
}

const shuttingDown = (): RegistryError => new RegistryError('UNAVAILABLE', 'stevedore is shutting down');

/** How often a replica waiting for another's fill looks at storage and the lease. */
const TURN_POLL_MS = 200;

/** Bytes received from the upstream and followers joining, for metrics (ProxyHooks.metrics). */
export interface FillMetrics {
  bytes(source: 'upstream', n: number): void;
  follower(): void;
}

export interface FillQuota {
  /** The error to answer for a blob announced at `size` bytes, or undefined to fill it. */
  refuse(digest: Digest, size: number): RegistryError | undefined;
  /** Makes room for `size` bytes before they download (bounded wait); the function gives the reservation back. */
  reserve(size: number): Promise<() => void>;
  committed(digest: Digest, size: number): void;
}

/** A failure of local storage while writing: resuming the download would not help. */
class LocalWriteError extends Error {
  constructor(override readonly cause: Error) {
    super(`writing the blob to storage failed: ${cause.message}`);
  }
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
    private readonly followerWaitMs: number,
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

  async run(
    first: Readable,
    upstream: RemoteBlobService,
    options: FillOptions,
    onCommit: (fill: BlobFill) => Promise<void>,
    signal: AbortSignal,
  ): Promise<void> {
    const resuming = { attempts: 0, spentMs: 0 };
    let body = first;
    // Closing stops the download wherever it is, even if the transport ignores the signal once it answered.
    const abandon = (): void => {
      body.destroy(new Error('stevedore is shutting down'));
    };
    signal.addEventListener('abort', abandon);
    try {
      if (signal.aborted) abandon();
      for (;;) {
        let interruption: Error;
        try {
          await this.copy(body, options.metrics);
          if (this.ingest.size >= this.size) break;
          interruption = new Error(`upstream body ended early at ${this.ingest.size} of ${this.size} bytes`);
        } catch (err) {
          if (err instanceof LocalWriteError) throw err;
          // Every byte is here and only the end of the stream broke: let the digest decide.
          if (this.ingest.size >= this.size) break;
          if (signal.aborted) throw err;
          interruption = err as Error;
        }
        body = await this.resume(upstream, options, signal, interruption, resuming);
      }
      // From here on the fill is not abandoned at shutdown: verifying and committing take
      // milliseconds, and a blob whose digest checked out is worth keeping (see FillRegistry.close).
      signal.removeEventListener('abort', abandon);
      // Verified first: followers may have the last byte while the blob is made durable.
      this.ingest.verify(this.size);
      this.state = 'verified';
      this.emit('progress');
      const descriptor = await this.ingest.commit(this.size).catch((err: unknown) => {
        throw err instanceof RegistryError ? err : new LocalWriteError(err as Error);
      });
      this.state = 'committed';
      this.emit('progress');
      // Link before anyone learns the fill is over, so the next request finds the blob in place.
      await onCommit(this).catch((err: unknown) => options.log.error({ err, digest: this.digest.value }, 'linking a filled blob failed'));
      this.resolveDone(descriptor);
    } catch (err) {
      signal.removeEventListener('abort', abandon);
      await this.ingest.cancel();
      this.error = err instanceof RegistryError ? err : new RegistryError('UPSTREAM_ERROR', `upstream blob transfer failed: ${(err as Error).message}`);
      if (err instanceof LocalWriteError) this.error = new RegistryError('UNAVAILABLE', `stevedore cannot store blob ${this.digest.value}: ${err.cause.message}`);
      else if (signal.aborted && !(err instanceof RegistryError)) this.error = new RegistryError('UNAVAILABLE', 'stevedore is shutting down; the download was abandoned');
      this.state = 'failed';
      this.rejectDone(this.error);
    }
    this.emit('progress');
  }

  /** Writes an upstream body to the spool; a storage failure is a LocalWriteError. */
  private async copy(body: Readable, metrics: FillMetrics | undefined): Promise<void> {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      metrics?.bytes('upstream', chunk.byteLength);
      try {
        await this.ingest.write(chunk);
      } catch (err) {
        throw new LocalWriteError(err as Error);
      }
    }
  }

  /**
   * A resumed answer from the byte the spool has reached, after attempts with
   * a short backoff; throws when the attempts or the time budget run out.
   */
  private async resume(
    upstream: RemoteBlobService,
    options: FillOptions,
    signal: AbortSignal,
    interruption: Error,
    resuming: { attempts: number; spentMs: number },
  ): Promise<Readable> {
    const started = Date.now();
    let reason = interruption;
    try {
      for (;;) {
        const spent = resuming.spentMs + (Date.now() - started);
        if (resuming.attempts >= options.maxResumes || spent >= options.resumeBudgetMs) {
          throw new Error(`${reason.message} (gave up after ${resuming.attempts} resume attempts in ${Math.round(spent / 1000)} s)`);
        }
        resuming.attempts += 1;
        options.log.warn(
          { digest: this.digest.value, offset: this.ingest.size, attempt: resuming.attempts, err: reason.message },
          'upstream blob transfer interrupted; resuming with a Range request',
        );
        try {
          // The remote checks the answer starts at exactly this byte (a 206), or throws.
          return (await upstream.open(this.digest, { kind: 'from', start: this.ingest.size }, { signal })).stream;
        } catch (err) {
          if (signal.aborted) throw err;
          reason = err as Error;
          const left = options.resumeBudgetMs - (resuming.spentMs + (Date.now() - started));
          await sleep(Math.max(0, Math.min(250 * 2 ** (resuming.attempts - 1), left)), undefined, { signal });
        }
      }
    } finally {
      resuming.spentMs += Date.now() - started;
    }
  }

  /**
   * Waits until the bytes before `target` are servable, or the fill ends.
   * Throws the fill's error, or UNAVAILABLE when the fill made no progress
   * for `followerWaitMs`: the follower is cut, the fill goes on.
   */
  private waitFor(target: number): Promise<void> {
    const ready = (): boolean => this.state === 'failed' || this.state === 'committed' || this.servable() >= target;
    if (ready()) return this.state === 'failed' ? Promise.reject(this.error) : Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onProgress = (): void => {
        if (!ready()) {
          timer.refresh();
          return;
        }
        stop();
        if (this.state === 'failed') reject(this.error);
        else resolve();
      };
      const timer = setTimeout(() => {
        stop();
        const seconds = Math.round(this.followerWaitMs / 1000);
        reject(new RegistryError('UNAVAILABLE', `upstream sent nothing of blob ${this.digest.value} for ${seconds} s; the download goes on, try again`));
      }, this.followerWaitMs);
      const stop = (): void => {
        clearTimeout(timer);
        this.off('progress', onProgress);
      };
      this.on('progress', onProgress);
    });
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
    const open = spoolOpener(this.ingest.spoolDriver);
    let handle: BlobFile;
    try {
      handle = await open(this.ingest.spoolPath);
    } catch (err) {
      if (!isPathNotFound(err)) throw err;
      await this.done; // moved into place already (or failed: this throws)
      handle = await committedFile(this.driver, pathFor({ kind: 'blobData', digest: this.digest }));
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
 * (a local disk): the storage itself, or the local spool in front of a
 * storage that has none (an object store: FillOptions.spool).
 */
function spoolOpener(driver: StorageDriver): (path: string) => Promise<BlobFile> {
  if (driver.open === undefined) throw new Error(`storage driver ${driver.name} has no random access: blob fills need a local spool (spool.directory)`);
  return driver.open.bind(driver);
}

/** The committed blob, for a follower that came after the spool was gone: random access, or ranged reads where there is none. */
async function committedFile(driver: StorageDriver, path: string): Promise<BlobFile> {
  if (driver.open !== undefined) return driver.open(path);
  return {
    read: async (buffer, length, position) => {
      if (length === 0) return 0;
      let filled = 0;
      for await (const chunk of (await driver.reader(path, { start: position, end: position + length - 1 })) as AsyncIterable<Buffer>) {
        chunk.copy(buffer, filled, 0, Math.min(chunk.byteLength, length - filled));
        filled += chunk.byteLength;
      }
      return Math.min(filled, length);
    },
    close: async () => undefined,
  };
}

/** A fill in the registry: known by its upstream and repository before the upstream has answered. */
export interface RunningFill {
  readonly upstream: string;
  readonly repository: RepositoryName;
  /**
   * Resolves once the upstream answered with headers: the fill, or undefined
   * when the blob turned out to be stored already (committed a moment ago).
   */
  readonly started: Promise<BlobFill | undefined>;
}

/**
 * The fills under way in this process, one per upstream and digest, and the
 * admission of new ones (proxy/admission.ts): a fill that would start a new
 * upstream download beyond the limits is refused; joining one never is.
 */
export class FillRegistry {
  private readonly fills = new Map<string, RunningFill>();
  /** Every fill not yet cleaned up (spool and journal entry removed, or blob committed). */
  private readonly ending = new Set<Promise<void>>();
  /** Aborted on close: fills stop and clean up after themselves. */
  private readonly closing = new AbortController();
  private readonly admission: FillAdmission;

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly options: FillOptions,
    /** limits.fills and limits.fillsperclient; unlimited when absent. */
    limits: AdmissionLimits = { fills: Number.POSITIVE_INFINITY, fillsPerClient: Number.POSITIVE_INFINITY },
  ) {
    spoolOpener(options.spool ?? driver); // refuse at startup, not on the first miss
    this.admission = new FillAdmission(limits);
  }

  get active(): number {
    return this.fills.size;
  }

  /** Fills holding an admission slot: started, not yet over. */
  get admitted(): number {
    return this.admission.active;
  }

  /**
   * Stops every fill under way and waits until each has cleaned up: a fill
   * still downloading is abandoned, its spool (upload session) and journal
   * entry removed; a fill whose digest is verified already is committed (a
   * correct blob, in place) rather than thrown away. No fill starts after.
   */
  async close(): Promise<void> {
    this.closing.abort();
    while (this.ending.size > 0) await Promise.allSettled([...this.ending]);
  }

  current(upstream: string, digest: Digest): RunningFill | undefined {
    return this.fills.get(`${upstream}@${digest.value}`);
  }

  /**
   * Joins the fill of `digest` or starts one. Resolves once the upstream
   * answered with headers, to undefined when the blob is stored already.
   * Starting one for `client` beyond the admission limits rejects at once
   * with TOOMANYREQUESTS or UNAVAILABLE (and a `Retry-After`), before
   * anything is asked of the upstream or written.
   */
  start(
    remote: RemoteBlobService,
    upstream: string,
    repository: RepositoryName,
    digest: Digest,
    onCommit: (fill: BlobFill) => Promise<void>,
    limits?: FillLimits,
    client?: string,
    metrics?: FillMetrics,
  ): Promise<BlobFill | undefined> {
    const key = `${upstream}@${digest.value}`;
    const existing = this.fills.get(key);
    if (existing) {
      metrics?.follower();
      return existing.started;
    }
    let release: Release;
    try {
      release = this.admission.admit(client);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const forget = (): void => {
      release();
      if (this.fills.get(key) === entry) this.fills.delete(key);
    };
    const options = limits === undefined ? this.options : { ...this.options, ...limits };
    const launched = this.begin(remote, upstream, repository, digest, onCommit, metrics === undefined ? options : { ...options, metrics });
    const started = launched.then(
      (run) => {
        if (run === undefined) forget();
        else void run.fill.done.catch(() => undefined).finally(forget);
        return run?.fill;
      },
      (err: unknown) => {
        forget();
        throw err;
      },
    );
    const ended = launched.then((run) => run?.ended).catch(() => undefined);
    this.ending.add(ended);
    void ended.finally(() => this.ending.delete(ended));
    const entry: RunningFill = { upstream, repository, started };
    this.fills.set(key, entry);
    return started;
  }

  /** The fill started, and a promise that settles once it is over and cleaned up. */
  private async begin(
    remote: RemoteBlobService,
    upstream: string,
    repository: RepositoryName,
    digest: Digest,
    onCommit: (fill: BlobFill) => Promise<void>,
    options: FillOptions,
  ): Promise<{ fill: BlobFill; ended: Promise<void> } | undefined> {
    const { signal } = this.closing;
    if (signal.aborted) throw shuttingDown();
    const turn = await this.takeTurn(digest, upstream, options, signal);
    if (turn === 'stored') return undefined;
    const lease = turn;
    try {
      return await this.download(remote, upstream, repository, digest, onCommit, options, lease);
    } catch (err) {
      await lease?.release();
      throw signal.aborted ? shuttingDown() : err;
    }
  }

  /**
   * Cross-replica single flight (with a shared lease store): the replica
   * holding the digest's lease fills it; the others wait until the blob is
   * in storage, while the holder's published progress moves, then serve it
   * from there. A holder that makes no progress for `followerWaitMs` (or a
   * store that cannot be reached) leaves this replica to fill on its own.
   */
  private async takeTurn(digest: Digest, upstream: string, options: FillOptions, signal: AbortSignal): Promise<HeldLease | 'stored' | undefined> {
    const { leases } = options;
    let progress: number | undefined;
    let movedAt = Date.now();
    let following = false;
    for (;;) {
      // A fill that committed between the caller's look at storage and now is not fetched again.
      if ((await this.blobs.stat(digest)) !== undefined) return 'stored';
      if (leases === undefined || !leases.shared) return undefined;
      const got = await leases.acquire(`fill/${digest.value}`, 'fill');
      if (got.state === 'held') {
        if ((await this.blobs.stat(digest)) === undefined) return got.lease;
        await got.lease.release(); // committed by the previous holder just now
        return 'stored';
      }
      if (got.state === 'unavailable') return undefined;
      if (!following) options.metrics?.follower(); // once per request, as a local follower counts
      following = true;
      if (got.info.progress !== progress) {
        progress = got.info.progress;
        movedAt = Date.now();
      } else if (Date.now() - movedAt > options.followerWaitMs) {
        options.log.warn({ digest: digest.value, upstream, holder: got.info.holder, progress }, 'the replica filling this blob made no progress: filling it here as well');
        return undefined;
      }
      await sleep(TURN_POLL_MS, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) throw shuttingDown();
    }
  }

  private async download(
    remote: RemoteBlobService,
    upstream: string,
    repository: RepositoryName,
    digest: Digest,
    onCommit: (fill: BlobFill) => Promise<void>,
    options: FillOptions,
    lease: HeldLease | undefined,
  ): Promise<{ fill: BlobFill; ended: Promise<void> } | undefined> {
    const { signal } = this.closing;
    const { descriptor, stream } = await remote.open(digest, undefined, { signal });
    // Refused on the announced size, before a byte is read or anything is written.
    const refusal = options.quota?.refuse(digest, descriptor.size);
    if (refusal !== undefined) {
      stream.destroy();
      options.log.warn({ repository, digest: digest.value, size: descriptor.size, upstream }, refusal.message);
      throw refusal;
    }
    // Room first (storage.quota), so the cache does not pass maxsize and shrink back.
    const unreserve = (await options.quota?.reserve(descriptor.size)) ?? (() => undefined);
    const id = fillSessionId();
    const journal = pathFor({ kind: 'fillJournalEntry', id });
    let ingest: BlobIngest;
    try {
      // Journalled first: a restart finds the spool of a fill this process did not finish without walking the tree.
      await this.driver.putContent(journal, repository);
      ingest = await this.blobs.begin(repository, digest, id, this.options.spool);
    } catch (err) {
      await this.driver.delete(journal).catch(() => undefined);
      unreserve();
      stream.destroy(); // the body will not be read: give its connection up now
      options.log.error({ err, repository, digest: digest.value }, 'cannot start storing a blob');
      throw new RegistryError('UNAVAILABLE', `stevedore cannot store blob ${digest.value}: ${(err as Error).message}`);
    }
    const { size } = descriptor;
    const fill = new BlobFill(repository, digest, size, ingest, this.driver, options.followerWaitMs);
    lease?.track(() => ingest.size);
    options.log.info({ repository, digest: digest.value, size, upstream }, 'blob fill started');
    const began = Date.now();
    const ended = fill.run(stream, remote, options, onCommit, signal).finally(async () => {
      unreserve();
      await lease?.release();
    }).then(async () => {
      await this.driver.delete(journal).catch(() => undefined);
      if (fill.state === 'committed') {
        options.quota?.committed(digest, size);
        options.log.info({ repository, digest: digest.value, size, durationMs: Date.now() - began }, 'blob fill committed');
      } else if (signal.aborted) {
        options.log.warn({ repository, digest: digest.value, received: ingest.size, size }, 'blob fill abandoned at shutdown; its spool was removed');
      } else {
        options.log.warn({ repository, digest: digest.value, err: fill.error?.message }, 'blob fill failed; nothing was stored');
      }
    });
    return { fill, ended };
  }
}
