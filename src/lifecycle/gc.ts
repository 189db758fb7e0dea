/**
 * `stevedore gc`: mark and sweep over the storage, as Distribution's
 * `registry garbage-collect` does it, and safe beside a running server.
 *
 * 1. Mark, repository by repository (mark.ts): every linked revision (with
 *    `deleteUntagged`, only those a tag points at) and what it needs: index
 *    children, referrers and subjects, configs and layers, schema1 signature
 *    blobs. The marked digests are the only set held for the whole run.
 * 2. Walk `blobs/`: an unmarked blob is a candidate once its data is older
 *    than the grace period; a younger one is kept (a fill just committed it,
 *    its link is on the way).
 * 3. Walk the repositories again: a revision linked since the mark keeps what
 *    it references; a candidate linked within the grace (a pull adopting it)
 *    is spared; layer links to candidates, links to blobs that are gone, and
 *    upload sessions idle for longer than the grace are collected.
 * 4. Sweep, holding the `sweep` lease (a server's eviction takes it too):
 *    untagged revisions (re-checked for a tag first), then each candidate
 *    (re-checked just before it goes), then the links and uploads. Losing the
 *    lease stops the sweep where it is.
 *
 * A server linking content while this runs does so within the grace period
 * (fills, adoptions, manifests), so what it is about to use is never taken.
 * `dryRun` reports the same and deletes nothing (and takes no lease).
 */
import type { Logger } from 'pino';
import { type Digest, tryParseDigest } from '../registry/digest.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import { listRepositories } from '../storage/catalog.js';
import { isPathNotFound, type StorageDriver } from '../storage/driver.js';
import { children, linkedDigests, readLink } from '../storage/links.js';
import type { LocalStorage } from '../storage/local.js';
import { fillSessionOwner, isDeadOwner, isFillSession, OWNER } from '../storage/owner.js';
import { pathFor } from '../storage/paths.js';
import { acquireLease, type Lease, type LeaseOptions } from './lease.js';
import { storedBlobs } from '../storage/blobs.js';
import { mapConcurrent, type MarkedRepository, markRepository, readRevision } from './mark.js';
import { ABANDONED_FILL_MS } from './uploads.js';

/** The host part of owner tags written here (owner.ts): `<host>-<pid>-<run>`. */
const THIS_HOST = OWNER.split('-')[0];

/** Repositories (and blob prefixes) worked on at once: the walk waits on the disk, not the CPU. */
const AT_ONCE = 8;

/** What a run reports as it goes, in order; the CLI prints them as Distribution does. */
export type GcEvent =
  | { kind: 'repository'; name: string }
  | { kind: 'markManifest'; name: string; digest: string }
  | { kind: 'markBlob'; name: string; digest: string }
  | { kind: 'manifestEligible'; name: string; digest: string }
  | { kind: 'deleteTagReference'; path: string }
  | { kind: 'deleteManifest'; path: string }
  | { kind: 'summary'; marked: number; blobs: number; manifests: number }
  | { kind: 'blobEligible'; digest: string; size: number }
  | { kind: 'deleteBlob'; path: string }
  | { kind: 'linkEligible'; path: string }
  | { kind: 'deleteLink'; path: string }
  | { kind: 'uploadEligible'; path: string; size: number }
  | { kind: 'deleteUpload'; path: string };

export interface GcOptions {
  dryRun: boolean;
  /** Remove revisions no tag points at (and what only they reference), like Distribution's --delete-untagged. */
  deleteUntagged: boolean;
  /** Unreferenced blobs, links and uploads younger than this are never swept. */
  graceMs: number;
  now?: () => number;
  lease?: LeaseOptions;
  emit?: (event: GcEvent) => void;
  log: Logger;
}

export interface GcReport {
  dryRun: boolean;
  repositories: number;
  /** Distinct digests marked (Distribution's "blobs marked": manifests and blobs). */
  marked: number;
  /** Untagged revisions removed (or, dry, to be removed). */
  manifests: number;
  /** Blobs eligible when the sweep began, and their bytes. */
  blobsEligible: number;
  bytesEligible: number;
  blobsDeleted: number;
  bytesFreed: number;
  /** Unmarked blobs kept because they are younger than the grace period (or were linked meanwhile). */
  youngBlobs: number;
  youngBytes: number;
  /** Layer and revision links removed (dry: to be removed): to swept blobs, or to blobs gone before. */
  links: number;
  /** Upload sessions idle for longer than the grace, removed (dry: to be removed), and their bytes. */
  uploads: number;
  uploadBytes: number;
  /** Set when the sweep stopped early: the lease was lost. */
  interrupted?: string;
}

interface Revision {
  name: RepositoryName;
  digest: Digest;
}

interface Upload {
  name: RepositoryName;
  id: string;
  size: number;
}

/** Runs a collection; throws LeaseHeld (from lease.ts) when another process is sweeping. */
export async function collectGarbage(storage: LocalStorage, options: GcOptions): Promise<GcReport> {
  const lease = options.dryRun ? undefined : await acquireLease(storage.driver, 'sweep', 'stevedore gc', options.lease);
  try {
    return await new Collector(storage, options, lease).run();
  } finally {
    await lease?.release();
  }
}

class Collector {
  private readonly driver: StorageDriver;
  private readonly now: () => number;
  /** Marked digest → whether its data was seen under `blobs/`. */
  private readonly marks = new Map<string, boolean>();
  /** Unmarked blobs old enough to go → their size. */
  private readonly candidates = new Map<string, number>();
  /** Unmarked blobs kept for their age (present in storage). */
  private readonly young = new Set<string>();
  private readonly untagged: Revision[] = [];
  private readonly untaggedKeys = new Set<string>();
  /** Kept revisions whose blob is gone: `name@digest`, for the link pass. */
  private readonly missing = new Set<string>();
  private readonly danglingRevisions: Revision[] = [];
  /** Layer links to candidates, removed once their blob is. */
  private readonly candidateLinks: Revision[] = [];
  private readonly danglingLinks: Revision[] = [];
  private readonly uploads: Upload[] = [];
  private readonly deleted = new Set<string>();
  private readonly report: GcReport;

  constructor(
    private readonly storage: LocalStorage,
    private readonly options: GcOptions,
    private readonly lease: Lease | undefined,
  ) {
    this.driver = storage.driver;
    this.now = options.now ?? Date.now;
    this.report = {
      dryRun: options.dryRun, repositories: 0, marked: 0, manifests: 0, blobsEligible: 0, bytesEligible: 0, blobsDeleted: 0,
      bytesFreed: 0, youngBlobs: 0, youngBytes: 0, links: 0, uploads: 0, uploadBytes: 0,
    };
  }

  private emit(event: GcEvent): void {
    this.options.emit?.(event);
  }

  /** Marks a digest; a candidate marked after the blob walk (by the re-check) is spared, and counted so. */
  private mark(value: string): void {
    const size = this.candidates.get(value);
    if (size !== undefined) {
      this.candidates.delete(value);
      this.report.youngBlobs += 1;
      this.report.youngBytes += size;
    }
    const present = size !== undefined || this.young.delete(value) || this.marks.get(value) === true;
    this.marks.set(value, present);
  }

  private old(modTime: Date): boolean {
    return this.now() - modTime.getTime() >= this.options.graceMs;
  }

  async run(): Promise<GcReport> {
    const started = Date.now();
    const repositories = await this.repositories(true);
    this.report.repositories = repositories.length;
    // A few repositories read at once, marked (and printed) in catalog order.
    for (let i = 0; i < repositories.length; i += AT_ONCE) {
      const chunk = repositories.slice(i, i + AT_ONCE);
      const read = await Promise.all(chunk.map((name) => this.readRepository(name)));
      read.forEach((marked, j) => this.markRepository(chunk[j] as RepositoryName, marked));
    }
    await this.walkBlobs();
    // Listed again for a real run: a repository created meanwhile may link a candidate.
    await mapConcurrent(this.options.dryRun ? repositories : await this.repositories(false), AT_ONCE, (name) => this.recheck(name));
    await this.sweep();
    this.report.marked = this.marks.size;
    this.options.log.info({ ...this.report, durationMs: Date.now() - started }, 'gc done');
    return this.report;
  }

  private async repositories(warn: boolean): Promise<RepositoryName[]> {
    const onInvalid = (path: string): void => {
      if (warn) this.options.log.warn({ path }, 'gc skips a directory that is not a valid repository name');
    };
    return (await listRepositories(this.driver, Number.MAX_SAFE_INTEGER, undefined, ['_manifests', '_layers', '_uploads'], onInvalid)) as RepositoryName[];
  }

  private async tagged(name: RepositoryName): Promise<Set<string>> {
    const out = new Set<string>();
    for (const tag of await children(this.driver, pathFor({ kind: 'tagsRoot', name }))) {
      const current = await readLink(this.driver, pathFor({ kind: 'tagCurrentLink', name, tag: tag as Tag }));
      if (current !== undefined) out.add(current.value);
    }
    return out;
  }

  private async readRepository(name: RepositoryName): Promise<MarkedRepository> {
    const tagged = this.options.deleteUntagged ? await this.tagged(name) : undefined;
    return markRepository(this.storage, name, { root: (d) => tagged === undefined || tagged.has(d.value), referrers: true });
  }

  private markRepository(name: RepositoryName, marked: MarkedRepository): void {
    this.emit({ kind: 'repository', name });
    for (const revision of marked.revisions) {
      const { digest } = revision;
      if (!revision.kept) {
        this.emit({ kind: 'manifestEligible', name, digest: digest.value });
        this.untagged.push({ name, digest });
        this.untaggedKeys.add(`${name}@${digest.value}`);
        continue;
      }
      // As Distribution: a revision whose blob is gone is not marked (its link goes in the sweep).
      if (revision.content?.state === 'missing') {
        this.missing.add(`${name}@${digest.value}`);
        continue;
      }
      this.emit({ kind: 'markManifest', name, digest: digest.value });
      this.mark(digest.value);
      const references = revision.content?.state === 'parsed' ? [...revision.content.manifest.blobs, ...revision.content.manifest.manifests] : [];
      if (revision.content?.state === 'invalid') {
        this.options.log.warn({ repository: name, digest: digest.value, reason: revision.content.error }, 'gc keeps a revision it cannot parse, and nothing on its account');
      }
      for (const { digest: blob } of [...references, ...revision.signatures.map((d) => ({ digest: d }))]) {
        this.emit({ kind: 'markBlob', name, digest: blob.value });
        this.mark(blob.value);
      }
    }
  }

  private async walkBlobs(): Promise<void> {
    if (this.driver.walk !== undefined) return this.walkListedBlobs();
    const root = pathFor({ kind: 'blobsRoot' });
    for (const algorithm of await children(this.driver, root)) {
      await mapConcurrent(await children(this.driver, `${root}/${algorithm}`), AT_ONCE, async (prefix) => {
        const unmarked: Digest[] = [];
        for (const hex of await children(this.driver, `${root}/${algorithm}/${prefix}`)) {
          const digest = tryParseDigest(`${algorithm}:${hex}`);
          if (digest === undefined) continue;
          if (this.marks.has(digest.value)) this.marks.set(digest.value, true);
          else unmarked.push(digest);
        }
        await mapConcurrent(unmarked, AT_ONCE, async (digest) => {
          const info = await this.driver.stat(pathFor({ kind: 'blobData', digest }));
          if (info !== undefined && !info.isDir) this.unmarked(digest, info.size, info.modTime);
        });
      });
    }
  }

  /** As walkBlobs, from one prefix walk whose listing carries each blob's size and time (an object store). */
  private async walkListedBlobs(): Promise<void> {
    for await (const { digest, size, modTime } of storedBlobs(this.driver)) {
      if (this.marks.has(digest.value)) this.marks.set(digest.value, true);
      else this.unmarked(digest, size, modTime);
    }
  }

  /** A blob nothing marked: a candidate for the sweep, or kept while younger than the grace period. */
  private unmarked(digest: Digest, size: number, modTime: Date): void {
    if (this.old(modTime)) {
      this.candidates.set(digest.value, size);
      return;
    }
    this.young.add(digest.value);
    this.report.youngBlobs += 1;
    this.report.youngBytes += size;
  }

  /** Whether the link file at `path` was written within the grace period. */
  private async recent(path: string): Promise<boolean> {
    const info = await this.driver.stat(path);
    return info !== undefined && !this.old(info.modTime);
  }

  /** Keeps a revision found after the mark, with what it references. */
  private async keepLate(name: RepositoryName, digest: Digest): Promise<void> {
    this.mark(digest.value);
    const content = await readRevision(this.storage, digest);
    if (content.state === 'parsed') for (const d of [...content.manifest.blobs, ...content.manifest.manifests]) this.mark(d.digest.value);
    for (const signature of await this.storage.signatures.digests(name, digest)) this.mark(signature.value);
  }

  private async recheck(name: RepositoryName): Promise<void> {
    const late: Digest[] = [];
    for (const digest of await linkedDigests(this.driver, pathFor({ kind: 'revisionsRoot', name }))) {
      const key = `${name}@${digest.value}`;
      if (this.missing.has(key)) {
        if (this.marks.get(digest.value) !== true && !(await this.recent(pathFor({ kind: 'revisionLink', name, digest })))) {
          this.danglingRevisions.push({ name, digest });
        }
      } else if (!this.marks.has(digest.value) && !this.untaggedKeys.has(key)) {
        late.push(digest); // all found before any is marked: an index's children are late revisions too
      }
    }
    for (const digest of late) {
      this.options.log.info({ repository: name, digest: digest.value }, 'a manifest was linked while gc ran: it is kept, with what it references');
      await this.keepLate(name, digest);
    }
    for (const digest of await linkedDigests(this.driver, pathFor({ kind: 'layersRoot', name }))) {
      const value = digest.value;
      if (this.marks.get(value) === true || this.young.has(value)) continue;
      const link = pathFor({ kind: 'layerLink', name, digest });
      if (this.candidates.has(value)) {
        if (await this.recent(link)) {
          this.options.log.info({ repository: name, digest: value }, 'an unreferenced blob was linked within the grace period: kept');
          this.mark(value);
        } else {
          this.candidateLinks.push({ name, digest });
        }
      } else if (!(await this.recent(link))) {
        this.danglingLinks.push({ name, digest }); // its blob is not in storage at all
      }
    }
    await this.staleUploads(name);
  }

  private async staleUploads(name: RepositoryName): Promise<void> {
    for (const id of await children(this.driver, pathFor({ kind: 'uploadsRoot', name }))) {
      let dir: string;
      try {
        dir = pathFor({ kind: 'uploadDir', name, id });
      } catch {
        continue; // not an upload id Stevedore or Distribution writes
      }
      // A client's upload session is resumable for as long as upload purging (storage.maintenance.uploadpurging,
      // by age: 168h by default) lets it live: gc leaves it alone, as Distribution's garbage-collect does.
      if (!isFillSession(id)) continue;
      const data = await this.driver.stat(pathFor({ kind: 'uploadData', name, id }));
      const owner = fillSessionOwner(id);
      // A fill of a live process of this host is never taken, one of a run that is over always;
      // a fill of another host once idle past the grace and ABANDONED_FILL_MS.
      if (owner !== undefined && !isDeadOwner(owner) && owner.split('-')[0] === THIS_HOST) continue;
      if (!(owner !== undefined && isDeadOwner(owner))) {
        const started = await this.driver.getContent(pathFor({ kind: 'uploadStartedAt', name, id })).then(
          (content) => Date.parse(content.toString('utf8').trim()),
          () => Number.NaN,
        );
        // The last write, else the start; the directory's own time only when neither is there.
        let activity = Math.max(started || 0, data?.modTime.getTime() ?? 0);
        if (activity === 0) activity = (await this.driver.stat(dir))?.modTime.getTime() ?? 0;
        if (this.now() - activity < Math.max(this.options.graceMs, ABANDONED_FILL_MS)) continue;
      }
      this.uploads.push({ name, id, size: data?.size ?? 0 });
    }
  }

  private async remove(path: string): Promise<void> {
    await this.driver.delete(path).catch((err: unknown) => {
      if (!isPathNotFound(err)) throw err;
    });
  }

  /** False once the lease is lost: nothing more may be deleted. */
  private mayDelete(): boolean {
    if (this.lease?.isLost() !== true) return true;
    this.report.interrupted ??= 'the sweep lease was taken over by another process';
    return false;
  }

  private async sweep(): Promise<void> {
    const { dryRun } = this.options;
    for (const revision of this.untagged) {
      if (!dryRun && !(await this.removeUntagged(revision))) continue;
      this.report.manifests += 1;
    }
    const candidates = [...this.candidates.keys()].sort();
    this.report.blobsEligible = candidates.length;
    this.report.bytesEligible = candidates.reduce((sum, value) => sum + (this.candidates.get(value) ?? 0), 0);
    this.emit({ kind: 'summary', marked: this.marks.size, blobs: candidates.length, manifests: this.report.manifests });
    for (const value of candidates) {
      const digest = tryParseDigest(value) as Digest;
      const size = this.candidates.get(value) ?? 0;
      if (dryRun) {
        this.emit({ kind: 'blobEligible', digest: value, size });
        continue;
      }
      if (!this.mayDelete()) break;
      // The last look: still unmarked (a late manifest marks), data still old (a fill may have rewritten it).
      const info = await this.driver.stat(pathFor({ kind: 'blobData', digest }));
      if (!this.candidates.has(value) || info === undefined || !this.old(info.modTime)) {
        this.options.log.info({ digest: value }, 'a blob eligible for deletion was spared at the last moment: linked or rewritten meanwhile');
        continue;
      }
      this.emit({ kind: 'blobEligible', digest: value, size });
      const path = pathFor({ kind: 'blobDir', digest });
      this.emit({ kind: 'deleteBlob', path });
      await this.remove(path);
      this.deleted.add(value);
      this.report.blobsDeleted += 1;
      this.report.bytesFreed += info.size;
    }
    const byPath = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
    const links = [
      ...this.candidateLinks.filter(({ digest }) => dryRun || this.deleted.has(digest.value)).map((l) => pathFor({ kind: 'layerDir', ...l })),
      ...this.danglingLinks.map((l) => pathFor({ kind: 'layerDir', ...l })),
      ...this.danglingRevisions.map((r) => pathFor({ kind: 'revisionDir', ...r })),
    ].sort(byPath);
    for (const path of links) {
      if (!dryRun && !this.mayDelete()) return;
      this.emit({ kind: 'linkEligible', path });
      if (!dryRun) {
        this.emit({ kind: 'deleteLink', path });
        await this.remove(path);
      }
      this.report.links += 1;
    }
    this.uploads.sort((a, b) => byPath(`${a.name}/${a.id}`, `${b.name}/${b.id}`));
    for (const { name, id, size } of this.uploads) {
      if (!dryRun && !this.mayDelete()) return;
      const path = pathFor({ kind: 'uploadDir', name, id });
      this.emit({ kind: 'uploadEligible', path, size });
      if (!dryRun) {
        this.emit({ kind: 'deleteUpload', path });
        await this.remove(path);
        if (isFillSession(id)) await this.remove(pathFor({ kind: 'fillJournalEntry', id }));
      }
      this.report.uploads += 1;
      this.report.uploadBytes += size;
    }
  }

  /**
   * Distribution's RemoveManifest: the revision's entries in every tag's
   * index, then the revision. A revision tagged since the mark is kept, with
   * what it references.
   */
  private async removeUntagged({ name, digest }: Revision): Promise<boolean> {
    if (!this.mayDelete()) return false;
    if ((await this.tagged(name)).has(digest.value)) {
      this.options.log.info({ repository: name, digest: digest.value }, 'an untagged manifest was tagged while gc ran: kept');
      await this.keepLate(name, digest);
      return false;
    }
    for (const tag of await children(this.driver, pathFor({ kind: 'tagsRoot', name }))) {
      const entry = pathFor({ kind: 'tagIndexEntryDir', name, tag: tag as Tag, digest });
      if ((await this.driver.stat(entry)) === undefined) continue;
      this.emit({ kind: 'deleteTagReference', path: entry });
      await this.remove(entry);
    }
    const path = pathFor({ kind: 'revisionDir', name, digest });
    this.emit({ kind: 'deleteManifest', path });
    await this.remove(path);
    this.storage.manifestCache.delete(digest.value);
    return true;
  }
}
