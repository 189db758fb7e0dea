/**
 * `storage.quota`: a bounded cache.
 *
 * The keeper counts the blob bytes Stevedore holds (every file under
 * `blobs/`, manifests included), adding on every commit (a fill, a stored
 * manifest) and subtracting on every deletion (eviction, `proxy.ttl` expiry).
 * The total lives in the metadata store (`quota:total`, written in batches
 * as a delta, so replicas sharing a store add up): a persisted store (`file`,
 * `redis`, `postgres`) hands it back at startup without a walk; with the
 * memory store, or a store that has no total yet, one walk of `blobs/` counts
 * it, and the same walk gives every stored manifest without a pull time the
 * time of the walk, so content cached before is evictable too (after
 * everything pulled since, in no particular order among itself).
 *
 * When a commit takes the total past `maxsize`, one eviction pass runs in
 * the background (evict.ts), down to `lowwater`, holding the `sweep` lease
 * (lease.ts) that `stevedore gc` takes too: if it is held, the pass is
 * postponed by `retryMs`. A blob announced larger than `maxsize` itself is
 * refused before anything is downloaded (403 DENIED naming
 * storage.quota.maxsize): evicting could never make room for it.
 *
 * `maxsize` is the level eviction restores, not a wall: fills are never held
 * back, so the total may pass it for as long as a pass takes.
 */
import type { Logger } from 'pino';
import { AccessIndex } from '../metadata/access.js';
import type { Digest } from '../registry/digest.js';
import { RegistryError } from '../registry/errors.js';
import { FilesystemDriver } from '../storage/filesystem.js';
import { LocalStorage } from '../storage/local.js';
import { countBlobs, storedRevisions } from './census.js';
import { EvictionPass, type EvictionReport, Pins } from './evict.js';
import { acquireLease, LeaseHeld, type LeaseOptions } from './lease.js';

export type { EvictionReport } from './evict.js';

export interface QuotaOptions {
  maxSize: number;
  lowWater: number;
  pin: readonly string[];
  /** The metadata store survives restarts (file, redis, postgres): a total found there is trusted at startup. */
  persistent: boolean;
  lease?: LeaseOptions;
  /** When the sweep lease is held elsewhere, the pass is tried again after this long; default 30 s. */
  retryMs?: number;
  /** The total is written this often (with the pull times); default 5 s. */
  flushIntervalMs?: number;
  /** false: passes run only when evict() is called (benchmarks, tools); default true. */
  auto?: boolean;
}

/** What the keeper learnt at startup. */
export interface QuotaStartReport {
  /** 'metadata': the stored total was used; 'walk': storage was counted. */
  source: 'metadata' | 'walk';
  bytes: number;
  blobs: number;
  manifestsSeeded: number;
  durationMs: number;
}

const TOTAL_KEY = 'quota:total';
/** The longest a fill waits for an eviction pass to make room for it before it downloads anyway. */
const ROOM_WAIT_MS = 10_000;
/** A pass that finds nothing more to evict while still over lowwater recounts storage at most this often. */
const RECOUNT_INTERVAL_MS = 10 * 60 * 1000;

export class QuotaKeeper {
  /** The total as last written to (or read from) the store. */
  private stored = 0;
  /** Bytes added (or, negative, freed) here since. */
  private delta = 0;
  private loaded = false;
  /** While the startup walk runs: digests committed meanwhile, and whether the walk saw them. */
  private walking: Map<string, { size: number; seen: boolean }> | undefined;
  private readonly pins: Pins;
  private readonly readers = new Map<string, number>();
  /** Bytes of fills under way, reserved before they download (see reserve()). */
  private pending = 0;
  private running: Promise<EvictionReport | undefined> | undefined;
  private again = false;
  private retry: NodeJS.Timeout | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private lastRecount = Number.NEGATIVE_INFINITY;
  private lastWarned = Number.NEGATIVE_INFINITY;
  /** Writes of the total, one at a time. */
  private persisting: Promise<void> = Promise.resolve();
  /** The last pass's report. */
  lastReport: EvictionReport | undefined;
  ready: Promise<QuotaStartReport> | undefined;

  constructor(
    readonly storage: LocalStorage,
    readonly access: AccessIndex,
    readonly options: QuotaOptions,
    private readonly log: Logger,
    /** Called after each image a pass removes, so in-memory caches forget it. */
    private readonly onRemoved: () => void = () => undefined,
  ) {
    this.pins = new Pins(options.pin);
  }

  /** Blob bytes held, as counted. */
  get total(): number {
    return this.stored + this.delta;
  }

  /** Loads the total (or counts it), then evicts if over; flushes every `flushIntervalMs`. */
  start(): Promise<QuotaStartReport> {
    if (this.ready === undefined) this.log.info({ maxSize: this.options.maxSize }, 'cache size: loading the recorded total, or counting blobs/ in the background');
    this.ready ??= this.load().then((report) => {
      this.loaded = true;
      this.timer = setInterval(() => {
        this.persist().catch((err: unknown) => this.log.warn({ err }, 'writing the cache size failed'));
      }, this.options.flushIntervalMs ?? 5_000);
      this.timer.unref();
      this.log.info({ ...report, maxSize: this.options.maxSize }, 'cache size known');
      this.check();
      return report;
    });
    return this.ready;
  }

  private async load(): Promise<QuotaStartReport> {
    const started = Date.now();
    if (this.options.persistent) {
      const saved = await this.access.get<number>(TOTAL_KEY);
      if (typeof saved === 'number' && Number.isFinite(saved)) {
        this.stored = saved;
        return { source: 'metadata', bytes: saved, blobs: 0, manifestsSeeded: 0, durationMs: Date.now() - started };
      }
    }
    const walk = await this.walk(true);
    await this.access.flush(); // the seeds
    await this.serialPersist(() => this.access.set(TOTAL_KEY, this.stored));
    return { source: 'walk', ...walk, bytes: this.total, durationMs: Date.now() - started };
  }

  /** One walk: the bytes under blobs/, and (`seed`) a pull time for every stored manifest that has none. */
  private async walk(seed: boolean): Promise<{ blobs: number; manifestsSeeded: number }> {
    const walking = new Map<string, { size: number; seen: boolean }>();
    this.walking = walking;
    let counted = { bytes: 0, blobs: 0 };
    let manifestsSeeded = 0;
    // As if pulled now, as proxy.ttl starts the clock of what it finds unknown: a restart never shortens a lifetime.
    const seededAt = this.access.now();
    try {
      counted = await countBlobs(this.storage.driver, (digest) => {
        const committed = walking.get(digest.value);
        if (committed !== undefined) committed.seen = true;
      });
      if (seed) {
        for await (const { repository, digest } of storedRevisions(this.storage.driver)) {
          this.access.seed(repository, digest.value, seededAt);
          manifestsSeeded += 1;
        }
      }
    } finally {
      // Commits the walk did not see are added; the ones it saw are in its count already.
      let late = 0;
      for (const { size, seen } of walking.values()) if (!seen) late += size;
      this.walking = undefined;
      this.stored = counted.bytes + late;
      this.delta = 0;
    }
    return { blobs: counted.blobs, manifestsSeeded };
  }

  /** Counts storage again (one walk of blobs/): after `stevedore gc` or anything else that deleted blobs behind the keeper's back. */
  async recount(): Promise<number> {
    const before = this.total;
    await this.walk(false);
    await this.serialPersist(() => this.access.set(TOTAL_KEY, this.stored));
    this.log.info({ before, after: this.total }, 'cache size recounted');
    return this.total;
  }

  private serialPersist(task: () => Promise<void>): Promise<void> {
    const run = this.persisting.then(task);
    this.persisting = run.catch(() => undefined);
    return run;
  }

  /**
   * Writes the delta since the last write onto the stored total (replicas
   * sharing a store each add theirs). The read and the write are one step
   * across replicas (the `quota-total` lease): when another replica is
   * writing, the delta waits for the next flush rather than overwrite its sum.
   */
  persist(): Promise<void> {
    return this.serialPersist(async () => {
      if (this.walking !== undefined) return;
      const shared = this.options.lease?.shared;
      const turn = shared?.shared === true ? await shared.acquire('quota-total', 'quota total', 10_000) : undefined;
      if (turn?.state === 'busy') return;
      try {
        const delta = this.delta;
        const current = (await this.access.get<number>(TOTAL_KEY)) ?? this.stored;
        const total = Math.max(0, current + delta);
        await this.access.set(TOTAL_KEY, total);
        this.delta -= delta;
        this.stored = total;
      } finally {
        if (turn?.state === 'held') await turn.lease.release();
      }
    });
  }

  /** storage.quota.maxsize refuses a blob the whole cache could not hold, before anything is downloaded. */
  refuse(digest: Digest, size: number): RegistryError | undefined {
    if (size <= this.options.maxSize) return undefined;
    return new RegistryError(
      'DENIED',
      `blob ${digest.value} is ${size} bytes, more than the whole cache may hold (storage.quota.maxsize: ${this.options.maxSize} bytes); it cannot be pulled through this cache`,
      { detail: { digest: digest.value, size, maxSize: this.options.maxSize } },
    );
  }

  /**
   * A fill of `size` bytes is about to download: make room for it first, so
   * the cache stays under maxsize rather than passing it and shrinking back.
   * Resolves once a pass made room, or after ROOM_WAIT_MS (a pass that takes
   * longer, or a sweep lease held by `stevedore gc`, does not hold the
   * download up longer: the pass after the commit catches up). The returned
   * function gives the reservation back (at commit, or when the fill fails).
   */
  async reserve(size: number): Promise<() => void> {
    this.pending += size;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.pending -= size;
    };
    if (!this.loaded || this.closing || this.options.auto === false || this.total + this.pending <= this.options.maxSize) return release;
    const target = Math.max(0, Math.min(this.options.lowWater, this.options.maxSize - this.pending));
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ROOM_WAIT_MS);
      timer.unref();
    });
    await Promise.race([this.evict(target).catch((err: unknown) => this.log.error({ err }, 'eviction pass failed')), waited]);
    clearTimeout(timer);
    return release;
  }

  /** A blob of `size` bytes was committed into place (a fill, a manifest). */
  committed(digest: Digest, size: number): void {
    if (this.walking !== undefined) {
      this.walking.set(digest.value, { size, seen: false });
      return;
    }
    this.delta += size;
    this.check();
  }

  /** Blob data of `bytes` was deleted by someone else (expiry). */
  freed(bytes: number): void {
    this.delta -= bytes;
  }

  /** Marks a blob as being read until the returned function is called: no pass deletes it meanwhile. */
  hold(digest: Digest): () => void {
    const key = digest.value;
    this.readers.set(key, (this.readers.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.readers.get(key) ?? 1) - 1;
      if (n > 0) this.readers.set(key, n);
      else this.readers.delete(key);
    };
  }

  inUse(digest: string): boolean {
    return this.readers.has(digest);
  }

  /** Starts a pass when over maxsize (one at a time; another after it when asked meanwhile). */
  private check(): void {
    if (!this.loaded || this.closing || this.options.auto === false || this.total <= this.options.maxSize) return;
    if (this.retry !== undefined) return; // backing off: the retry will look
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.evict().catch((err: unknown) => this.log.error({ err }, 'eviction pass failed'));
  }

  /**
   * One eviction pass down to `target` (default lowwater), unless one is
   * running (its result is returned). Undefined when postponed: the sweep
   * lease is held elsewhere (tried again after `retryMs`) or nothing is over.
   */
  evict(target: number = this.options.lowWater): Promise<EvictionReport | undefined> {
    this.running ??= this.pass(target).finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.check();
      }
    });
    return this.running;
  }

  /** Resolves once no pass is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running.catch(() => undefined);
  }

  private async pass(target: number): Promise<EvictionReport | undefined> {
    await this.ready;
    if (this.total <= target || this.closing) return undefined;
    await this.access.flush(); // the order includes the latest pulls
    let lease;
    try {
      lease = await acquireLease(this.storage.driver, 'sweep', 'quota eviction', this.options.lease);
    } catch (err) {
      if (!(err instanceof LeaseHeld)) throw err;
      this.log.info({ holder: err.holder, purpose: err.purpose, retryMs: this.options.retryMs ?? 30_000 }, 'eviction postponed: the sweep lease is held');
      this.backOff();
      return undefined;
    }
    const watch = this.storage.references.start();
    let report: EvictionReport;
    try {
      report = await new EvictionPass(
        {
          storage: this.storage,
          access: this.access,
          pins: this.pins,
          inUse: (digest) => this.inUse(digest),
          over: () => this.total > target,
          freed: (bytes) => this.freed(bytes),
          removed: () => this.onRemoved(),
          stop: () => this.closing || lease.isLost(),
          log: this.log,
        },
        watch,
      ).run();
    } finally {
      watch.stop();
      await lease.release();
    }
    this.lastReport = report;
    await this.persist().catch((err: unknown) => this.log.warn({ err }, 'writing the cache size failed'));
    this.log.info({ ...report, total: this.total, maxSize: this.options.maxSize, target }, 'eviction pass done');
    if (report.stopped === 'exhausted') await this.exhausted(target);
    return report;
  }

  /** Automatic passes wait `retryMs`, then look again. */
  private backOff(): void {
    this.retry ??= setTimeout(() => {
      this.retry = undefined;
      this.check();
    }, this.options.retryMs ?? 30_000);
    this.retry.unref();
  }

  /** Nothing left to evict yet over the target: everything is pinned or in use, or the count is off (recounted, at most every 10 min). */
  private async exhausted(target: number): Promise<void> {
    const now = Date.now();
    if (now - this.lastRecount > RECOUNT_INTERVAL_MS) {
      this.lastRecount = now;
      await this.recount().catch((err: unknown) => this.log.warn({ err }, 'recounting the cache size failed'));
      if (this.total <= target) return;
    }
    // Every commit would start a pass reading the whole index again: wait a while instead.
    this.backOff();
    if (now - this.lastWarned > RECOUNT_INTERVAL_MS) {
      this.lastWarned = now;
      this.log.warn({ total: this.total, maxSize: this.options.maxSize, target }, 'the cache is over storage.quota but nothing more can be evicted (pinned, in use, or not pulled through this cache)');
    }
  }

  /** Stops passes (a running one stops after its current image), writes the pull times and the total (the access index stays open: its owner closes it). */
  async close(): Promise<void> {
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retry) clearTimeout(this.retry);
    await this.ready?.catch(() => undefined);
    await this.idle();
    await this.access.flush();
    if (this.loaded) await this.persist().catch((err: unknown) => this.log.warn({ err }, 'writing the cache size failed'));
  }
}

/**
 * A keeper over a storage root by itself (memory metadata, so its start walks
 * the tree; passes only when asked), for benchmarks and tools: record pulls
 * with `keeper.access.record(repository, digest, time)` (then
 * `keeper.access.flush()`), and time `keeper.evict(target)`.
 */
export async function openQuotaKeeper(
  rootDirectory: string,
  options: Omit<QuotaOptions, 'persistent'> & { persistent?: boolean },
  log: Logger,
  now?: () => number,
): Promise<{ keeper: QuotaKeeper; start: QuotaStartReport; close(): Promise<void> }> {
  const storage = new LocalStorage(new FilesystemDriver(rootDirectory));
  const access = new AccessIndex(now === undefined ? { log } : { log, now });
  const keeper = new QuotaKeeper(storage, access, { persistent: false, auto: false, ...options }, log);
  const close = async (): Promise<void> => {
    await keeper.close();
    await access.close();
  };
  return { keeper, start: await keeper.start(), close };
}
