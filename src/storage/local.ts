/**
 * The local registry: the Registry service interfaces implemented over the
 * blob, link, revision and tag stores. The pull-through proxy decorates this.
 */
import { LRUCache } from 'lru-cache';
import { blobUnknown, manifestUnknown, RegistryError } from '../registry/errors.js';
import type { Digest } from '../registry/digest.js';
import { parseManifest } from '../registry/manifest.js';
import { accepts, MediaType } from '../registry/mediatypes.js';
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

export interface LocalRegistryOptions {
  /** Bytes of manifest payloads kept in memory (content-addressed, so never stale). */
  manifestCacheBytes?: number;
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
  /** Manifest payloads by digest. */
  readonly manifestCache: LRUCache<string, CachedManifest>;
  /** What each manifest refers to (its subject), by digest: content-addressed, never stale. */
  readonly subjects = new LRUCache<string, SubjectInfo>({ max: 100_000 });

  constructor(
    readonly driver: StorageDriver,
    options: LocalRegistryOptions = {},
  ) {
    this.blobs = new BlobStore(driver);
    this.layers = new LinkStore(driver, 'layerLink');
    this.revisions = new LinkStore(driver, 'revisionLink');
    this.tags = new TagStore(driver);
    this.schema1 = new Schema1Store(this.blobs, this.revisions, new SignatureStore(driver, this.blobs));
    this.manifestCache = new LRUCache<string, CachedManifest>({
      maxSize: options.manifestCacheBytes ?? 64 * 1024 * 1024,
      sizeCalculation: (entry) => entry.payload.byteLength + 256,
    });
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
  constructor(
    private readonly storage: LocalStorage,
    private readonly name: RepositoryName,
  ) {}

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
    const { mediaType, payload } = await this.storage.servableManifest(this.name, digest);
    checkAcceptable(this.name, reference, mediaType, request.accept);
    return { digest, mediaType, payload };
  }
}

/**
 * A client that cannot take the stored type gets MANIFEST_UNKNOWN (404, what
 * Distribution answers an OCI-unaware client) with the reason, never bytes
 * it cannot parse: manifests are never converted, so digests never change.
 */
export function checkAcceptable(name: string, reference: Reference, mediaType: string, accept: readonly string[]): void {
  if (accepts(accept, mediaType)) return;
  throw new RegistryError('MANIFEST_UNKNOWN', `manifest is of type ${mediaType}, which the request's Accept header does not list`, {
    detail: { name, reference: reference.value, mediaType, accepted: accept.slice(0, 16) },
  });
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
