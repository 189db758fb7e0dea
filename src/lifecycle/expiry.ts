/**
 * `proxy.ttl`: cached content lives for ttl after its LAST pull (Distribution
 * counts from the first fetch; its users asked for this instead).
 *
 * A sweep, per repository:
 *   1. manifest revisions not pulled within ttl expire, unless an index that
 *      is kept lists them; tags pointing at an expired revision go with it;
 *   2. blob links expire when not pulled within ttl AND no kept manifest of
 *      the repository references them;
 * then, globally:
 *   3. blob data no repository links any more is deleted, once it is older
 *      than a grace period (so a blob committed a moment ago, whose link is
 *      still being written, is never taken).
 * Content whose last pull is unknown (metadata lost on restart) has its clock
 * started now: a restart never shortens a lifetime.
 *
 * With `pulls` (the server wires metadata/access.ts), a manifest's last pull
 * is its pull in that repository, not of its digest anywhere; a per-digest
 * record of an older version still counts until the first new pull. Blob
 * links are timed per digest.
 */
import type { Logger } from 'pino';
import type { MetadataStore } from '../metadata/store.js';
import { type Digest, tryParseDigest } from '../registry/digest.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import { listRepositories } from '../storage/catalog.js';
import { storedBlobs } from '../storage/blobs.js';
import { isPathNotFound, type StorageDriver } from '../storage/driver.js';
import { acquireLease, LeaseHeld, type Lease } from './lease.js';
import type { Leases } from '../coordination/leases.js';
import { children, linkedDigests, readLink } from '../storage/links.js';
import type { LocalStorage } from '../storage/local.js';
import { pathFor } from '../storage/paths.js';
import { markRepository } from './mark.js';

export interface SweepReport {
  repositories: number;
  manifestsExpired: number;
  tagsRemoved: number;
  blobLinksRemoved: number;
  blobsDeleted: number;
  bytesFreed: number;
  /** Repositories that could not be swept (logged); no blob data is deleted in such a sweep. */
  failedRepositories: number;
  dryRun: boolean;
}

/** Pull times per (repository, manifest): metadata/access.ts. */
export interface ManifestPulls {
  lastPulled(repository: string, digest: string): Promise<number | undefined>;
  seed(repository: string, digest: string, at: number): void;
  forget(entries: readonly { repository: string; digest: string }[]): Promise<void>;
}

export interface ExpiryOptions {
  ttlMs: number;
  /** Manifests timed per (repository, manifest); per digest, like blobs, when absent. */
  pulls?: ManifestPulls;
  /** Unlinked blob data younger than this is never deleted. */
  graceMs?: number;
  dryRun?: boolean;
  /** Repositories that never expire (hosted ones): everything they link is kept. */
  keep?: (repository: string) => boolean;
  /** Leases shared by replicas: the sweep lease is taken there too (lease.ts). */
  leases?: Leases;
}

export class ExpirySweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SweepReport> | undefined;
  private readonly driver: StorageDriver;

  constructor(
    private readonly storage: LocalStorage,
    private readonly metadata: MetadataStore,
    private readonly options: ExpiryOptions,
    private readonly log: Logger,
    /** Called after a sweep that removed anything, so in-memory caches (and the quota's count) can forget it. */
    private readonly onRemoved: (report: SweepReport) => void = () => undefined,
  ) {
    this.driver = storage.driver;
  }

  /** Sweeps every `intervalMs`; one sweep at a time. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      this.sweep().catch((err: unknown) => this.log.error({ err }, 'expiry sweep failed'));
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  sweep(): Promise<SweepReport> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** True when `digest` was last pulled more than ttl ago; starts the clock for unknown digests. */
  private async expired(digest: Digest): Promise<boolean> {
    const now = this.metadata.now();
    const last = await this.metadata.lastAccess(digest.value);
    if (last === undefined) {
      await this.metadata.touch(digest.value);
      return false;
    }
    return now - last > this.options.ttlMs;
  }

  /** As expired(), for a manifest in a repository: its pulls there. */
  private async manifestExpired(name: RepositoryName, digest: Digest): Promise<boolean> {
    const { pulls } = this.options;
    if (pulls === undefined) return this.expired(digest);
    const now = this.metadata.now();
    const last = (await pulls.lastPulled(name, digest.value)) ?? (await this.metadata.lastAccess(digest.value));
    if (last === undefined) {
      pulls.seed(name, digest.value, now);
      return false;
    }
    return now - last > this.options.ttlMs;
  }

  private async remove(path: string): Promise<void> {
    if (this.options.dryRun) return;
    await this.driver.delete(path).catch((err: unknown) => {
      if (!isPathNotFound(err)) throw err;
    });
  }

  private async run(): Promise<SweepReport> {
    const started = Date.now();
    const report: SweepReport = {
      repositories: 0, manifestsExpired: 0, tagsRemoved: 0, blobLinksRemoved: 0, blobsDeleted: 0, bytesFreed: 0, failedRepositories: 0,
      dryRun: this.options.dryRun === true,
    };
    // `stevedore gc` and quota eviction sweep under the same lease: never two at once.
    let lease: Lease | undefined;
    if (!report.dryRun) {
      try {
        lease = await acquireLease(this.driver, 'sweep', 'proxy.ttl expiry', this.options.leases === undefined ? {} : { shared: this.options.leases });
      } catch (err) {
        if (!(err instanceof LeaseHeld)) throw err;
        this.log.info({ holder: err.holder, purpose: err.purpose }, 'expiry sweep postponed: another sweep holds the storage lease');
        return report;
      }
    }
    try {
      this.log.info({ ttlMs: this.options.ttlMs, dryRun: report.dryRun }, 'expiry sweep started: walking every repository for content unpulled for longer than proxy.ttl');
      return await this.sweepAll(report, started, lease);
    } finally {
      await lease?.release();
    }
  }

  private async sweepAll(report: SweepReport, started: number, lease: Lease | undefined): Promise<SweepReport> {
    const stillLinked = new Set<string>();
    // Content linked again while the sweep runs is spared, however old its data file is.
    const watch = this.storage.references.start();
    try {
      const repositories = await listRepositories(this.driver, Number.MAX_SAFE_INTEGER, undefined, ['_manifests', '_layers', '_uploads'], (path) =>
        this.log.warn({ path }, 'expiry skips a directory that is not a valid repository name'),
      );
      for (const name of repositories) {
        // Another process took the lease over (we stalled past its ttl): stop deleting.
        if (lease?.isLost() === true) {
          report.failedRepositories += 1;
          break;
        }
        report.repositories += 1;
        try {
          await this.sweepRepository(name as RepositoryName, report, stillLinked);
        } catch (err) {
          // One broken repository must not keep the others from expiring; its blobs stay (they may be linked).
          report.failedRepositories += 1;
          this.log.error({ err, repository: name }, 'expiry could not sweep a repository; no blob data is deleted this time');
        }
      }
      // Blob data goes only when every repository's links are known: a repository that could not be read may link it.
      if (report.failedRepositories === 0) await this.sweepBlobs(report, stillLinked, watch.seen);
    } finally {
      watch.stop();
    }
    return this.finish(report, started);
  }

  private finish(report: SweepReport, started: number): SweepReport {
    if (!report.dryRun && report.manifestsExpired + report.tagsRemoved + report.blobLinksRemoved + report.blobsDeleted > 0) this.onRemoved(report);
    this.log.info({ ...report, durationMs: Date.now() - started }, 'expiry sweep done');
    return report;
  }

  private async sweepRepository(name: RepositoryName, report: SweepReport, stillLinked: Set<string>): Promise<void> {
    // Kept: revisions pulled within the ttl, and what kept ones need (mark.ts): index children,
    // subjects, and the blobs they reference (schema1 signatures too), which stay whatever their links say.
    const hosted = this.options.keep?.(name) === true;
    const marked = await markRepository(this.storage, name, {
      root: async (digest) => hosted || !(await this.manifestExpired(name, digest)),
      referrers: false,
    });
    const { kept, blobs: referencedBlobs } = marked;
    for (const blob of referencedBlobs) stillLinked.add(blob);

    for (const tag of hosted ? [] : await children(this.driver, pathFor({ kind: 'tagsRoot', name }))) {
      const current = await readLink(this.driver, pathFor({ kind: 'tagCurrentLink', name, tag: tag as Tag }));
      if (current !== undefined && !kept.has(current.value)) {
        report.tagsRemoved += 1;
        await this.remove(pathFor({ kind: 'tag', name, tag: tag as Tag }));
      }
    }
    for (const { digest } of marked.revisions) {
      if (kept.has(digest.value)) {
        stillLinked.add(digest.value);
        continue;
      }
      report.manifestsExpired += 1;
      await this.remove(pathFor({ kind: 'revisionLink', name, digest }).replace(/\/link$/, ''));
      this.storage.manifestCache.delete(digest.value);
      if (!this.options.dryRun) await this.options.pulls?.forget([{ repository: name, digest: digest.value }]);
    }
    for (const digest of await linkedDigests(this.driver, pathFor({ kind: 'layersRoot', name }))) {
      if (hosted || referencedBlobs.has(digest.value) || !(await this.expired(digest))) {
        stillLinked.add(digest.value);
        continue;
      }
      report.blobLinksRemoved += 1;
      await this.remove(pathFor({ kind: 'layerLink', name, digest }).replace(/\/link$/, ''));
    }
  }

  private async sweepBlobs(report: SweepReport, stillLinked: Set<string>, relinked: ReadonlySet<string>): Promise<void> {
    const grace = this.options.graceMs ?? 60 * 60 * 1000;
    const now = this.metadata.now();
    for await (const { digest, size, modTime } of storedBlobs(this.driver)) {
      if (stillLinked.has(digest.value) || relinked.has(digest.value)) continue;
      if (now - modTime.getTime() < grace) continue;
      report.blobsDeleted += 1;
      report.bytesFreed += size;
      await this.remove(pathFor({ kind: 'blobDir', digest }));
      if (!this.options.dryRun) await this.metadata.forget(digest.value);
    }
  }
}
