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
 */
import type { Logger } from 'pino';
import type { MetadataStore } from '../metadata/store.js';
import { type Digest, tryParseDigest } from '../registry/digest.js';
import { parseManifest } from '../registry/manifest.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import { listRepositories } from '../storage/catalog.js';
import { isPathNotFound, type StorageDriver } from '../storage/driver.js';
import { children, linkedDigests, readLink } from '../storage/links.js';
import type { LocalStorage } from '../storage/local.js';
import { pathFor } from '../storage/paths.js';

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

export interface ExpiryOptions {
  ttlMs: number;
  /** Unlinked blob data younger than this is never deleted. */
  graceMs?: number;
  dryRun?: boolean;
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
    /** Called after a sweep that removed anything, so in-memory caches can forget it. */
    private readonly onRemoved: () => void = () => undefined,
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
    const stillLinked = new Set<string>();
    // Content linked again while the sweep runs is spared, however old its data file is.
    const watch = this.storage.references.start();
    try {
      const repositories = await listRepositories(this.driver, Number.MAX_SAFE_INTEGER, undefined, ['_manifests', '_layers', '_uploads'], (path) =>
        this.log.warn({ path }, 'expiry skips a directory that is not a valid repository name'),
      );
      for (const name of repositories) {
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
    if (!report.dryRun && report.manifestsExpired + report.tagsRemoved + report.blobLinksRemoved + report.blobsDeleted > 0) this.onRemoved();
    this.log.info({ ...report, durationMs: Date.now() - started }, 'expiry sweep done');
    return report;
  }

  private async sweepRepository(name: RepositoryName, report: SweepReport, stillLinked: Set<string>): Promise<void> {
    const revisions = await linkedDigests(this.driver, pathFor({ kind: 'revisionsRoot', name }));
    const fresh = new Set<string>();
    for (const digest of revisions) if (!(await this.expired(digest))) fresh.add(digest.value);
    // Kept manifests, and what they reference: children of kept indexes are kept too.
    const kept = new Set(fresh);
    const referencedBlobs = new Set<string>();
    const queue = [...fresh];
    while (queue.length > 0) {
      const value = queue.pop() as string;
      const parsed = await this.readManifest(value);
      if (parsed === undefined) continue;
      for (const blob of parsed.blobs) referencedBlobs.add(blob.digest.value);
      for (const child of parsed.manifests) {
        if (!kept.has(child.digest.value) && revisions.some((d) => d.value === child.digest.value)) {
          kept.add(child.digest.value);
          queue.push(child.digest.value);
        }
      }
      if (parsed.subject) kept.add(parsed.subject.digest.value);
    }

    for (const tag of await children(this.driver, pathFor({ kind: 'tagsRoot', name }))) {
      const current = await readLink(this.driver, pathFor({ kind: 'tagCurrentLink', name, tag: tag as Tag }));
      if (current !== undefined && !kept.has(current.value)) {
        report.tagsRemoved += 1;
        await this.remove(pathFor({ kind: 'tag', name, tag: tag as Tag }));
      }
    }
    for (const digest of revisions) {
      if (kept.has(digest.value)) {
        stillLinked.add(digest.value);
        // A kept schema1 revision keeps its signature blobs.
        for (const signature of await this.storage.signatures.digests(name, digest)) stillLinked.add(signature.value);
        continue;
      }
      report.manifestsExpired += 1;
      await this.remove(pathFor({ kind: 'revisionLink', name, digest }).replace(/\/link$/, ''));
      this.storage.manifestCache.delete(digest.value);
    }
    for (const digest of await linkedDigests(this.driver, pathFor({ kind: 'layersRoot', name }))) {
      if (referencedBlobs.has(digest.value) || !(await this.expired(digest))) {
        stillLinked.add(digest.value);
        continue;
      }
      report.blobLinksRemoved += 1;
      await this.remove(pathFor({ kind: 'layerLink', name, digest }).replace(/\/link$/, ''));
    }
  }

  private async readManifest(value: string): Promise<ReturnType<typeof parseManifest> | undefined> {
    const digest = tryParseDigest(value);
    if (digest === undefined) return undefined;
    try {
      return parseManifest(await this.storage.blobs.get(digest));
    } catch {
      return undefined; // missing or unreadable: nothing to keep on its account
    }
  }

  private async sweepBlobs(report: SweepReport, stillLinked: Set<string>, relinked: ReadonlySet<string>): Promise<void> {
    const grace = this.options.graceMs ?? 60 * 60 * 1000;
    const now = this.metadata.now();
    const root = pathFor({ kind: 'blobsRoot' });
    for (const algorithm of await children(this.driver, root)) {
      for (const prefix of await children(this.driver, `${root}/${algorithm}`)) {
        for (const hex of await children(this.driver, `${root}/${algorithm}/${prefix}`)) {
          const digest = tryParseDigest(`${algorithm}:${hex}`);
          if (digest === undefined || stillLinked.has(digest.value) || relinked.has(digest.value)) continue;
          const info = await this.driver.stat(pathFor({ kind: 'blobData', digest }));
          if (info === undefined || now - info.modTime.getTime() < grace) continue;
          report.blobsDeleted += 1;
          report.bytesFreed += info.size;
          await this.remove(pathFor({ kind: 'blobDir', digest }));
          if (!this.options.dryRun) await this.metadata.forget(digest.value);
        }
      }
    }
  }
}
