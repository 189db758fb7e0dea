/** What the proxy's services share: local storage, the upstream, metadata, fills and hot caches. */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { MetadataStore } from '../metadata/store.js';
import type { Digest } from '../registry/digest.js';
import type { LocalRegistry } from '../storage/local.js';
import type { FillRegistry } from './fill.js';
import type { UpstreamReferrers } from './referrers.js';
import type { Upstream } from './upstream.js';

export interface ProxyPolicy {
  /** How long a cached tag is served without asking the upstream. */
  tagTtlMs: number;
  /** How long an upstream confirmation that a repository holds a blob is trusted. */
  blobConfirmTtlMs: number;
}

/** A manifest known to be linked in a repository, kept in memory so a warm HEAD touches no disk. */
export interface HotManifest {
  digest: Digest;
  mediaType: string;
  payload: Buffer;
}

export interface HotTag {
  digest: string;
  checkedAt: number;
}

export interface CacheLimits {
  /** Entries of the per-tag and per-manifest caches. */
  manifests: number;
  /** Bytes of manifest payloads kept in memory (referrer lists get a quarter of it). */
  manifestBytes: number;
  /** Entries of the small per-blob caches. */
  descriptors: number;
}

/** What an entry costs beyond its payload: key, object, digest strings. */
const ENTRY_OVERHEAD = 256;

/** An estimate of a cached referrers answer's size: its descriptors, as JSON would be. */
function referrersSize(entry: UpstreamReferrers): number {
  let size = ENTRY_OVERHEAD;
  for (const descriptor of entry.manifests) size += 200 + JSON.stringify(descriptor.annotations ?? {}).length;
  return size;
}

export class ProxyContext {
  /** `repo@digest` → manifest linked there. Content-addressed, so never stale. */
  readonly hotManifests: LRUCache<string, HotManifest>;
  /** `repo:tag` → the digest and when the upstream last confirmed it. */
  readonly hotTags: LRUCache<string, HotTag>;
  /** `repo@subject` → what the upstream said about the subject's referrers. */
  readonly hotReferrers: LRUCache<string, UpstreamReferrers>;
  /** `repo@digest` → the blob is linked in the repository. */
  readonly linkedBlobs: LRUCache<string, true>;
  /** `repo@digest` → size the upstream announced for the blob in that repository. */
  readonly confirmedBlobs: LRUCache<string, number>;
  /** `repo:tag` → the upstream refresh of the tag under way, shared by everyone asking meanwhile. */
  readonly refreshes = new Map<string, Promise<HotManifest>>();
  /** Last time an access was written to metadata, to write at most once a minute per digest. */
  private readonly touched: LRUCache<string, number>;

  constructor(
    readonly local: LocalRegistry,
    readonly upstream: Upstream,
    readonly metadata: MetadataStore,
    readonly fills: FillRegistry,
    readonly policy: ProxyPolicy,
    readonly log: Logger,
    limits: CacheLimits,
  ) {
    // Manifests and referrer lists vary in size (a manifest may be 4 MiB): bounded by bytes too.
    this.hotManifests = new LRUCache({
      max: limits.manifests,
      maxSize: limits.manifestBytes,
      sizeCalculation: (entry) => entry.payload.byteLength + ENTRY_OVERHEAD,
    });
    this.hotTags = new LRUCache({ max: limits.manifests });
    this.hotReferrers = new LRUCache({
      max: limits.manifests,
      maxSize: Math.max(1024, Math.floor(limits.manifestBytes / 4)),
      sizeCalculation: (entry) => referrersSize(entry),
    });
    this.linkedBlobs = new LRUCache({ max: limits.descriptors });
    this.confirmedBlobs = new LRUCache({ max: limits.descriptors, ttl: policy.blobConfirmTtlMs });
    this.touched = new LRUCache({ max: limits.descriptors });
  }

  get now(): number {
    return this.metadata.now();
  }

  /** Records a pull for `proxy.ttl` accounting, off the request path. */
  touch(digest: string): void {
    const now = this.now;
    const last = this.touched.get(digest);
    if (last !== undefined && now - last < 60_000) return;
    this.touched.set(digest, now);
    this.metadata.touch(digest).catch((err: unknown) => this.log.warn({ err, digest }, 'metadata write failed'));
  }
}
