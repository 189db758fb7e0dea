/**
 * The local registry: the Registry service interfaces implemented over the
 * blob, link, revision and tag stores. The pull-through proxy decorates this.
 */
import { LRUCache } from 'lru-cache';
import { blobUnknown, manifestUnknown } from '../registry/errors.js';
import type { Digest } from '../registry/digest.js';
import { parseManifest } from '../registry/manifest.js';
import { MediaType } from '../registry/mediatypes.js';
import { negotiate, notAcceptable } from '../registry/negotiate.js';
import type { Platform } from '../registry/manifest.js';
import type { RepositoryName } from '../registry/names.js';
import { type RangeSpec, resolveRange } from '../registry/range.js';
import type { Reference } from '../registry/reference.js';
import type {
  BlobContent,
  BlobDescriptor,
  BlobService,
  ManifestContent,
  ManifestRequest,
  ManifestService,
  Registry,
  Repository,
  TagService,
} from '../registry/services.js';
import { BlobStore } from './blobs.js';
import { listRepositories } from './catalog.js';
import type { StorageDriver } from './driver.js';
import { LinkStore } from './links.js';
import { LocalReferrers, type SubjectInfo } from './referrers.js';
import { Schema1Store } from './schema1.js';
import { SignatureStore } from './signatures.js';
import { TagStore } from './tags.js';
import { ReferenceWatch } from './references.js';
import { pathFor } from './paths.js';
import { boundedCache } from '../registry/bounded-cache.js';

export interface LocalRegistryOptions {
  /** Bytes of manifest payloads kept in memory (content-addressed, so never stale). */
  manifestCacheBytes?: number;
  /** The child of an index served to a client that cannot take the index (by tag); default linux/amd64. */
  platform?: Platform;
  /** storage.redirect: how long the direct URLs of stored blobs are valid; absent: no redirects. */
  redirectMs?: number;
}

interface CachedManifest {
  mediaType: string;
  payload: Buffer;
}

/** Everything the local stores share, one instance per storage root. */
export class LocalStorage {
  readonly blobs: BlobStore;
  readonly layers: LinkStore;
  readonly revisions: LinkStore;
  readonly tags: TagStore;
  readonly schema1: Schema1Store;
  readonly signatures: SignatureStore;
  /** Digests referenced while a sweep runs (see references.ts). */
  readonly references = new ReferenceWatch();
  /** Manifest payloads by digest. */
  readonly manifestCache: LRUCache<string, CachedManifest>;
  /** What each manifest refers to (its subject), by digest: content-addressed, never stale. */
  readonly subjects = boundedCache<string, SubjectInfo>({ entries: 100_000 });
  readonly platform: Platform;
  private readonly redirectMs: number | undefined;

  constructor(
    readonly driver: StorageDriver,
    options: LocalRegistryOptions = {},
  ) {
    this.platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
    this.redirectMs = driver.urlFor === undefined ? undefined : options.redirectMs;
    this.blobs = new BlobStore(driver, this.references);
    this.layers = new LinkStore(driver, 'layerLink', this.references);
    this.revisions = new LinkStore(driver, 'revisionLink', this.references);
    this.tags = new TagStore(driver);
    this.signatures = new SignatureStore(driver, this.blobs);
    this.schema1 = new Schema1Store(this.blobs, this.revisions, this.signatures);
    this.manifestCache = new LRUCache<string, CachedManifest>({
      maxSize: options.manifestCacheBytes ?? 64 * 1024 * 1024,
      sizeCalculation: (entry) => entry.payload.byteLength + 256,
    });
  }

  /** Whether stored blobs are answered with their direct URL (storage.redirect, on a driver that has them). */
  get redirects(): boolean {
    return this.redirectMs !== undefined;
  }

  /** The direct URL of a stored blob, when redirects are on and the driver has such URLs. */
  async redirectUrl(digest: Digest): Promise<string | undefined> {
    if (this.redirectMs === undefined || this.driver.urlFor === undefined) return undefined;
    return this.driver.urlFor(pathFor({ kind: 'blobData', digest }), this.redirectMs);
  }

  /**
   * A revision as served in a repository: the stored bytes, except that a
   * schema1 payload is served as a signed document with its signatures.
   */
  async servableManifest(name: RepositoryName, digest: Digest): Promise<CachedManifest> {
    const stored = await this.readManifest(digest);
    // Only a bare schema1 payload needs its signatures; a signed document stored whole is served as is.
    if (stored.mediaType !== MediaType.DockerSchema1) return stored;
    return { mediaType: MediaType.DockerSchema1Signed, payload: await this.schema1.assemble(name, digest, stored.payload) };
  }

  /** Reads a stored manifest by digest (no repository check), via the memory cache. */
  async readManifest(digest: Digest): Promise<CachedManifest> {
    const cached = this.manifestCache.get(digest.value);
    if (cached !== undefined) return cached;
    const payload = await this.blobs.get(digest);
    const entry = { mediaType: parseManifest(payload).mediaType, payload };
    this.manifestCache.set(digest.value, entry);
    return entry;
  }
}

export class LocalRegistry implements Registry {
  readonly storage: LocalStorage;

  constructor(driver: StorageDriver, options: LocalRegistryOptions = {}) {
    this.storage = new LocalStorage(driver, options);
  }

  repository(name: RepositoryName): Repository {
    return new LocalRepository(this.storage, name);
  }

  catalog(limit: number, last?: string): Promise<string[]> {
    return listRepositories(this.storage.driver, limit, last);
  }
}

export class LocalRepository implements Repository {
  readonly blobs: LocalBlobs;
  readonly manifests: LocalManifests;
  readonly tags: LocalTags;
  readonly referrers: LocalReferrers;

  constructor(
    storage: LocalStorage,
    readonly name: RepositoryName,
  ) {
    this.blobs = new LocalBlobs(storage, name);
    this.manifests = new LocalManifests(storage, name);
    this.tags = new LocalTags(storage, name);
    this.referrers = new LocalReferrers(storage, name);
  }
}

/** Blobs visible in one repository through its `_layers` links (manifests are readable as blobs too, as in Distribution). */
export class LocalBlobs implements BlobService {
  /** Present only with storage.redirect on: the GET path otherwise does not even ask. */
  readonly redirect?: (digest: Digest) => Promise<string | undefined>;

  constructor(
    private readonly storage: LocalStorage,
    private readonly name: RepositoryName,
  ) {
    if (storage.redirects) this.redirect = (digest) => this.directUrl(digest);
  }

  async linked(digest: Digest): Promise<boolean> {
    return (
      (await this.storage.layers.has(this.name, digest)) || (await this.storage.revisions.has(this.name, digest))
    );
  }

  async stat(digest: Digest): Promise<BlobDescriptor> {
    if (!(await this.linked(digest))) throw blobUnknown(digest.value);
    const descriptor = await this.storage.blobs.stat(digest);
    if (descriptor === undefined) throw blobUnknown(digest.value);
    return descriptor;
  }

  private async directUrl(digest: Digest): Promise<string | undefined> {
    if (!(await this.linked(digest)) || (await this.storage.blobs.stat(digest)) === undefined) return undefined;
    return this.storage.redirectUrl(digest);
  }

  async open(digest: Digest, range?: RangeSpec): Promise<BlobContent> {
    const descriptor = await this.stat(digest);
    if (range === undefined) return { descriptor, ...(await this.storage.blobs.body(digest)) };
    const resolved = resolveRange(range, descriptor.size);
    return { descriptor, range: resolved, ...(await this.storage.blobs.body(digest, resolved)) };
  }
}

export class LocalManifests implements ManifestService {
  constructor(
    private readonly storage: LocalStorage,
    private readonly name: RepositoryName,
  ) {}

  /** The digest a reference names here, or undefined. */
  async resolve(reference: Reference): Promise<Digest | undefined> {
    const digest = reference.kind === 'tag' ? await this.storage.tags.resolve(this.name, reference.tag) : reference.digest;
    if (digest === undefined || !(await this.storage.revisions.has(this.name, digest))) return undefined;
    return digest;
  }

  async get(reference: Reference, request: ManifestRequest): Promise<ManifestContent> {
    const digest = await this.resolve(reference);
    if (digest === undefined) throw manifestUnknown(this.name, reference.value);
    const stored = await this.storage.servableManifest(this.name, digest);
    const decision = negotiate(this.name, reference, stored, request.accept, this.storage.platform);
    if (decision.kind === 'stored') return { digest, ...stored };
    const child = decision.descriptor.digest;
    if (!(await this.storage.revisions.has(this.name, child))) throw notAcceptable(this.name, reference, stored.mediaType, request.accept);
    return { digest: child, ...(await this.storage.servableManifest(this.name, child)) };
  }
}

export class LocalTags implements TagService {
  constructor(
    private readonly storage: LocalStorage,
    private readonly name: RepositoryName,
  ) {}

  list(): Promise<string[]> {
    return this.storage.tags.list(this.name);
  }
}
