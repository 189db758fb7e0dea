/**
 * Prefetch: pulls images into the cache through the same services a client
 * pull goes through (the routed Repository's manifests, blobs and
 * referrers), so what is stored, how (verified fills, schema1 signatures
 * kept apart, tags recorded) and from where is exactly what a pull would
 * have left. Per image:
 *
 *   1. the manifest the reference names (a tag is refreshed like a pull's);
 *   2. for an index, the children for the platforms asked for (all with
 *      --all-platforms), each by digest;
 *   3. every config and layer, read to its end: a miss is filled from the
 *      upstream, and the image is done only once each blob is linked;
 *   4. the referrers of every manifest (the referrers API, or the tag
 *      schema's `sha256-<hex>` index), with their own blobs and referrers,
 *      and cosign's `sha256-<hex>.sig|.att|.sbom` tags of the image.
 *
 * Idempotent: what is stored is found stored (a tag is still re-checked
 * once its TTL is over, as for a pull).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type Digest, parseDigest } from '../registry/digest.js';
import { isRegistryError } from '../registry/errors.js';
import { parseManifest } from '../registry/manifest.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import type { Reference } from '../registry/reference.js';
import type { ManifestContent, Repository } from '../registry/services.js';
import type { Routing } from '../routing/routes.js';
import type { LocalStorage } from '../storage/local.js';
import { type PlatformChoice, selectChildren } from './platforms.js';
import { manifestReference, parseImageReference, storageScope } from './reference.js';

export interface PrefetchedImage {
  reference: string;
  /** The repository as stored. */
  repository: string;
  /** What the reference names. */
  digest: string;
  /** Manifests stored or found: the image's own, its index children, its referrers. */
  manifests: number;
  blobs: number;
  /** Referrer manifests and manifests attached by cosign tags. */
  referrers: number;
  /** Bytes of the image's blobs (fetched now or found stored). */
  bytes: number;
  /** Platforms asked for that the index has no child for. */
  missingPlatforms: string[];
}

/** What a prefetch tells its progress display about one image. */
export interface ImageProgress {
  /** `bytes` more became known to belong to the image. */
  total(bytes: number): void;
  /** `bytes` more were fetched or found stored. */
  advance(bytes: number): void;
}

export interface PrefetchOptions {
  platforms: PlatformChoice;
  /** Blobs of one image fetched at once; default 4. */
  blobConcurrency?: number;
  /** How long a blob read to its end may take to be committed and linked; default 30 s. */
  linkWaitMs?: number;
}

const COSIGN_SUFFIXES = ['.sig', '.att', '.sbom'];
const READ_CHUNK = 1024 * 1024;
const ALL: PlatformChoice = { all: true };

const isAbsent = (err: unknown): boolean =>
  isRegistryError(err) && (err.code === 'MANIFEST_UNKNOWN' || err.code === 'NAME_UNKNOWN' || err.code === 'NOT_FOUND');

const byDigest = (digest: Digest): Reference => ({ kind: 'digest', digest, value: digest.value });

export class Prefetcher {
  constructor(
    private readonly routing: Routing,
    /** The same storage the routed registries use, to tell what is linked already. */
    private readonly storage: LocalStorage,
    private readonly options: PrefetchOptions,
  ) {}

  /** Prefetches one image; throws (a RegistryError or TransferError) when any part of it cannot be had. */
  async image(input: string, progress: ImageProgress): Promise<PrefetchedImage> {
    const ref = parseImageReference(input);
    const scope = storageScope(this.routing, ref);
    const run = new ImageRun(scope.registry.repository(scope.name), scope.name, this.storage, this.options, progress);
    const root = await run.get(manifestReference(ref));
    await run.manifest(root, 'image', true);
    return {
      reference: ref.input,
      repository: scope.name,
      digest: root.digest.value,
      manifests: run.manifests.size,
      blobs: run.blobs.size,
      referrers: run.referrers,
      bytes: run.bytes,
      missingPlatforms: run.missingPlatforms,
    };
  }
}

class ImageRun {
  readonly manifests = new Set<string>();
  readonly blobs = new Set<string>();
  referrers = 0;
  bytes = 0;
  missingPlatforms: string[] = [];

  constructor(
    private readonly repository: Repository,
    private readonly name: RepositoryName,
    private readonly storage: LocalStorage,
    private readonly options: PrefetchOptions,
    private readonly progress: ImageProgress,
  ) {}

  /** A manifest as a fully capable client gets it: no Accept narrowing, so the stored type is what comes back. */
  get(reference: Reference): Promise<ManifestContent> {
    return this.repository.manifests.get(reference, { accept: [] });
  }

  async manifest(content: ManifestContent, role: 'image' | 'referrer', top = false): Promise<void> {
    if (this.manifests.has(content.digest.value)) return;
    this.manifests.add(content.digest.value);
    const parsed = parseManifest(content.payload, content.mediaType);
    if (parsed.manifests.length > 0) {
      const { selected, missing } = selectChildren(parsed.manifests, role === 'image' ? this.options.platforms : ALL);
      if (top) this.missingPlatforms = missing;
      if (selected.length === 0) {
        throw new Error(`the index has no child for ${missing.join(', ')}; choose with --platform, or --all-platforms`);
      }
      for (const child of selected) await this.manifest(await this.get(byDigest(child.digest)), role);
    }
    const unique = [...new Map(parsed.blobs.map((b) => [b.digest.value, b.digest])).values()];
    await forEachLimit(unique, this.options.blobConcurrency ?? 4, (digest) => this.blob(digest));
    await this.attached(content.digest, top);
  }

  /** Referrers of `subject`, and for the image itself cosign's tags; each with its blobs. */
  private async attached(subject: Digest, top: boolean): Promise<void> {
    let found: string[] = [];
    try {
      found = (await this.repository.referrers.list(subject)).manifests.map((d) => d.digest);
    } catch (err) {
      // No referrers API and no tag-schema index: nothing refers to it.
      if (!isAbsent(err)) throw err;
    }
    for (const digest of found) await this.referrer(() => this.get(byDigest(parseDigest(digest))));
    if (!top) return;
    for (const suffix of COSIGN_SUFFIXES) {
      const tag = `${subject.algorithm}-${subject.hex}${suffix}` as Tag;
      try {
        await this.referrer(() => this.get({ kind: 'tag', tag, value: tag }));
      } catch (err) {
        if (!isAbsent(err)) throw err;
      }
    }
  }

  private async referrer(fetch: () => Promise<ManifestContent>): Promise<void> {
    const content = await fetch();
    if (this.manifests.has(content.digest.value)) return;
    this.referrers += 1;
    await this.manifest(content, 'referrer');
  }

  private async blob(digest: Digest): Promise<void> {
    if (this.blobs.has(digest.value)) return;
    this.blobs.add(digest.value);
    if (await this.storage.layers.has(this.name, digest)) {
      // Linked here already: a stat (it counts as a pull for proxy.ttl) instead of reading it.
      const { size } = await this.repository.blobs.stat(digest);
      this.count(size, size);
      return;
    }
    const content = await this.repository.blobs.open(digest);
    const { size } = content.descriptor;
    this.count(size, 0);
    if (content.file !== undefined) {
      // Through the fill: the last byte is released only once the digest checked out.
      const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(size, 1)));
      try {
        for (let position = 0; position < size; ) {
          const read = await content.file.read(buffer, Math.min(buffer.length, size - position), position);
          if (read === 0) throw new Error(`blob ${digest.value} ended at byte ${position} of ${size}`);
          position += read;
          this.count(0, read);
        }
      } finally {
        await content.file.close().catch(() => undefined);
      }
    } else {
      for await (const chunk of content.stream as AsyncIterable<Buffer>) this.count(0, chunk.byteLength);
    }
    await this.linked(digest);
  }

  private count(total: number, done: number): void {
    if (total > 0) this.progress.total(total);
    if (done > 0) {
      this.bytes += done;
      this.progress.advance(done);
    }
  }

  /** A fill read to its end is verified; its commit and link follow within milliseconds. */
  private async linked(digest: Digest): Promise<void> {
    const deadline = Date.now() + (this.options.linkWaitMs ?? 30_000);
    while (!(await this.storage.layers.has(this.name, digest))) {
      if (Date.now() > deadline) throw new Error(`blob ${digest.value} was downloaded but is not stored: see the log`);
      await sleep(20);
    }
  }
}

/** Runs `fn` over `items`, at most `limit` at a time; the first failure is thrown once all have settled. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.err;
}
