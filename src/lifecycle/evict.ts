/**
 * One eviction pass of `storage.quota`: whole images, least recently pulled
 * first, until enough is freed.
 *
 * Candidates come from the access index (metadata/access.ts), oldest pull
 * first: no walk of storage decides the order. For each candidate (a manifest
 * in a repository) the pass reads that repository only, and plans the image:
 *   - the manifest, and for an index its children that no other index of the
 *     repository lists, and the manifests of the repository whose subject is
 *     one of those (signatures, SBOMs);
 *   - the tags pointing at any of them;
 *   - the blobs only they reference: a blob a kept manifest of the
 *     repository references stays, and its data stays while any other
 *     repository links it (`_layers` or a revision).
 * It skips the candidate when it is pinned (its repository, or a pinned tag
 * pointing at it), when a child of it or the candidate itself was pulled
 * since the index was read, when it is a child of a kept index (it goes
 * with that index), or when a blob it would delete is being read right now.
 *
 * Whether another repository links a blob is read from storage, never from
 * metadata (which is advisory: store.ts): the first image that frees blob
 * data makes the pass list the link directories of every repository once
 * (a census of `_layers` and `_manifests/revisions`, names only). A digest
 * linked anew while the pass runs (references.ts) keeps its data.
 */
import type { Logger } from 'pino';
import type { AccessIndex } from '../metadata/access.js';
import { type Digest, tryParseDigest } from '../registry/digest.js';
import { type ParsedManifest, parseManifest } from '../registry/manifest.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import { repositoryPattern } from '../routing/patterns.js';
import { isPathNotFound } from '../storage/driver.js';
import { children, linkedDigests, readLink } from '../storage/links.js';
import type { LocalStorage } from '../storage/local.js';
import { pathFor } from '../storage/paths.js';
import type { Watch } from '../storage/references.js';
import { Census } from './census.js';

export interface EvictionReport {
  imagesEvicted: number;
  manifestsRemoved: number;
  tagsRemoved: number;
  blobLinksRemoved: number;
  blobsDeleted: number;
  bytesFreed: number;
  /** Index entries read. */
  candidatesRead: number;
  skippedPinned: number;
  /** Images left this round because a blob they would free is being read or filled. */
  skippedInUse: number;
  /** Repositories listed for the census (0 when no blob data had to be freed). */
  censusRepositories: number;
  /** 'target': freed enough; 'exhausted': no candidate left; 'stopped': lease lost or shutting down. */
  stopped: 'target' | 'exhausted' | 'stopped';
  startedAt: number;
  durationMs: number;
}

export interface EvictionInput {
  storage: LocalStorage;
  access: AccessIndex;
  pins: Pins;
  /** True while a blob is being read or filled in this process. */
  inUse(digest: string): boolean;
  /** True while more must be freed. */
  over(): boolean;
  /** Blob data of `bytes` was deleted. */
  freed(bytes: number): void;
  /** An image was removed: in-memory caches must stop serving it (called after each one, not only at the end). */
  removed(): void;
  /** True when the pass must stop now (lease lost, shutdown). */
  stop(): boolean;
  log: Logger;
}

/** `storage.quota.pin`: repository patterns (`team/**`) and tag patterns (`library/postgres:16*`). */
export class Pins {
  private readonly repositories: RegExp[] = [];
  private readonly tags: { repository: RegExp; tag: RegExp }[] = [];

  constructor(patterns: readonly string[]) {
    for (const pattern of patterns) {
      const colon = pattern.lastIndexOf(':');
      if (colon < 0) this.repositories.push(repositoryPattern(pattern));
      else this.tags.push({ repository: repositoryPattern(pattern.slice(0, colon)), tag: tagPattern(pattern.slice(colon + 1)) });
    }
  }

  repository(name: string): boolean {
    return this.repositories.some((p) => p.test(name));
  }

  /** The tag patterns that apply to a repository. */
  tagsOf(name: string): RegExp[] {
    return this.tags.filter((p) => p.repository.test(name)).map((p) => p.tag);
  }
}

/** `*` matches any run of characters in a tag. */
function tagPattern(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('.*')}$`);
}

interface Plan {
  manifests: Digest[];
  tags: string[];
  layerLinks: Digest[];
  /** Blob data no repository links once the plan's links are gone. */
  data: Digest[];
  /** Digests this repository stops linking (layer links and revisions). */
  unlinked: string[];
}

export class EvictionPass {
  private readonly parsed = new Map<string, ParsedManifest | undefined>();
  /** Index entries of what is gone, dropped from the index in one batch at the end. */
  private readonly forgotten: { repository: string; digest: string }[] = [];
  private census: Census | undefined;
  private readonly report: EvictionReport;

  constructor(
    private readonly input: EvictionInput,
    private readonly watch: Watch,
  ) {
    this.report = {
      imagesEvicted: 0, manifestsRemoved: 0, tagsRemoved: 0, blobLinksRemoved: 0, blobsDeleted: 0, bytesFreed: 0,
      candidatesRead: 0, skippedPinned: 0, skippedInUse: 0, censusRepositories: 0, stopped: 'exhausted',
      startedAt: Date.now(), durationMs: 0,
    };
  }

  async run(): Promise<EvictionReport> {
    const { input, report } = this;
    const gone = this.forgotten;
    try {
      for await (const entry of input.access.oldest()) {
        if (!input.over()) {
          report.stopped = 'target';
          break;
        }
        if (input.stop()) {
          report.stopped = 'stopped';
          break;
        }
        report.candidatesRead += 1;
        const pending = input.access.pendingPull(entry.repository, entry.digest);
        if (pending !== undefined && pending > entry.time) continue;
        const digest = tryParseDigest(entry.digest);
        if (digest === undefined) {
          gone.push(entry);
          continue;
        }
        if (input.pins.repository(entry.repository)) {
          report.skippedPinned += 1;
          continue;
        }
        const outcome = await this.evictImage(entry.repository as RepositoryName, digest, entry.time);
        if (outcome === 'gone') gone.push(entry);
      }
      if (report.stopped === 'exhausted' && !input.over()) report.stopped = 'target';
    } finally {
      if (gone.length > 0) await input.access.forget(gone);
      report.censusRepositories = this.census?.repositories ?? 0;
      report.durationMs = Date.now() - report.startedAt;
    }
    return report;
  }

  private async manifest(digest: Digest): Promise<ParsedManifest | undefined> {
    if (this.parsed.has(digest.value)) return this.parsed.get(digest.value);
    let parsed: ParsedManifest | undefined;
    try {
      parsed = parseManifest((await this.input.storage.readManifest(digest)).payload);
    } catch {
      parsed = undefined; // missing or unreadable: it references nothing
    }
    this.parsed.set(digest.value, parsed);
    return parsed;
  }

  /** Evicts one image; 'gone' when its manifest is no longer stored there (the entry is stale). */
  private async evictImage(name: RepositoryName, digest: Digest, time: number): Promise<'evicted' | 'skipped' | 'gone'> {
    const { storage, access, pins } = this.input;
    const { driver } = storage;
    const revisions = await linkedDigests(driver, pathFor({ kind: 'revisionsRoot', name }));
    if (!revisions.some((d) => d.value === digest.value)) return 'gone';
    const byValue = new Map(revisions.map((d) => [d.value, d]));
    const parsed = new Map<string, ParsedManifest | undefined>();
    for (const d of revisions) parsed.set(d.value, await this.manifest(d));

    // An index's child goes with its index, while that index is kept.
    for (const [value, m] of parsed) {
      if (value !== digest.value && m?.manifests.some((c) => c.digest.value === digest.value)) return 'skipped';
    }
    const remove = new Set([digest.value]);
    for (const child of parsed.get(digest.value)?.manifests ?? []) {
      const listedElsewhere = [...parsed].some(([v, m]) => v !== digest.value && m?.manifests.some((c) => c.digest.value === child.digest.value));
      if (byValue.has(child.digest.value) && !listedElsewhere) remove.add(child.digest.value);
    }
    // Pulled since the index was read (a child pulled by digest counts for its image; a referrer does not).
    for (const value of remove) {
      const last = await access.lastPulled(name, value);
      if (last !== undefined && last > time) {
        if (value !== digest.value) access.record(name, digest.value, last);
        return 'skipped';
      }
    }
    for (let grew = true; grew; ) {
      grew = false;
      for (const [value, m] of parsed) {
        if (!remove.has(value) && m?.subject !== undefined && remove.has(m.subject.digest.value)) {
          remove.add(value);
          grew = true;
        }
      }
    }

    const tagPins = pins.tagsOf(name);
    const tags: string[] = [];
    for (const tag of await children(driver, pathFor({ kind: 'tagsRoot', name }))) {
      const current = await readLink(driver, pathFor({ kind: 'tagCurrentLink', name, tag: tag as Tag }));
      if (current === undefined || !remove.has(current.value)) continue;
      if (tagPins.some((p) => p.test(tag))) {
        this.report.skippedPinned += 1;
        return 'skipped';
      }
      tags.push(tag);
    }

    const kept = new Set<string>();
    for (const [value, m] of parsed) {
      if (remove.has(value)) continue;
      kept.add(value);
      for (const b of m?.blobs ?? []) kept.add(b.digest.value);
      for (const c of m?.manifests ?? []) kept.add(c.digest.value);
    }
    const freed = new Map<string, Digest>();
    for (const value of remove) {
      const d = byValue.get(value) as Digest;
      freed.set(value, d);
      for (const b of parsed.get(value)?.blobs ?? []) if (!kept.has(b.digest.value)) freed.set(b.digest.value, b.digest);
      for (const s of await storage.signatures.digests(name, d)) freed.set(s.value, s);
    }
    const layers = new Set((await linkedDigests(driver, pathFor({ kind: 'layersRoot', name }))).map((d) => d.value));
    const layerLinks = [...freed.values()].filter((d) => layers.has(d.value) && !kept.has(d.value));
    const layerGone = new Set(layerLinks.map((d) => d.value));
    const linksNow = (v: string): boolean => byValue.has(v) || layers.has(v);
    const linksAfter = (v: string): boolean => (byValue.has(v) && !remove.has(v)) || (layers.has(v) && !layerGone.has(v));
    let data = [...freed.values()].filter((d) => !kept.has(d.value) && !linksAfter(d.value));
    if (data.length > 0) {
      this.census ??= await Census.take(storage.driver);
      const census = this.census;
      // Held elsewhere: some repository other than this one links it.
      data = data.filter((d) => census.count(d.value) - (linksNow(d.value) ? 1 : 0) <= 0);
    }
    if (data.some((d) => this.input.inUse(d.value))) {
      this.report.skippedInUse += 1;
      return 'skipped';
    }
    const plan: Plan = {
      manifests: [...remove].map((v) => byValue.get(v) as Digest),
      tags,
      layerLinks,
      data,
      unlinked: [...new Set([...remove, ...layerGone])].filter((v) => !linksAfter(v)),
    };
    await this.apply(name, plan);
    return 'evicted';
  }

  private async deletePath(path: string): Promise<void> {
    await this.input.storage.driver.delete(path).catch((err: unknown) => {
      if (!isPathNotFound(err)) throw err;
    });
  }

  /** Tags first (the image stops being reachable), then revisions, links, and the data no repository links. */
  private async apply(name: RepositoryName, plan: Plan): Promise<void> {
    const { storage } = this.input;
    const { report } = this;
    for (const tag of plan.tags) await this.deletePath(pathFor({ kind: 'tag', name, tag: tag as Tag }));
    for (const d of plan.manifests) {
      await this.deletePath(pathFor({ kind: 'revisionDir', name, digest: d }));
      storage.manifestCache.delete(d.value);
      this.forgotten.push({ repository: name, digest: d.value });
    }
    await Promise.all(plan.layerLinks.map((d) => this.deletePath(pathFor({ kind: 'layerDir', name, digest: d }))));
    for (const value of plan.unlinked) this.census?.drop(value);
    report.imagesEvicted += 1;
    report.tagsRemoved += plan.tags.length;
    report.manifestsRemoved += plan.manifests.length;
    report.blobLinksRemoved += plan.layerLinks.length;
    this.input.removed();
    await Promise.all(
      plan.data.map(async (d) => {
        // Linked anew (or opened) since the plan was made: the data stays.
        if (this.watch.seen.has(d.value) || this.input.inUse(d.value)) return;
        const info = await storage.driver.stat(pathFor({ kind: 'blobData', digest: d }));
        if (info === undefined) return;
        await this.deletePath(pathFor({ kind: 'blobDir', digest: d }));
        report.blobsDeleted += 1;
        report.bytesFreed += info.size;
        this.input.freed(info.size);
      }),
    );
  }
}
