/**
 * What the proxy's services share. ProxyCaches: the hot caches and in-flight
 * maps of the whole process (keys are storage names, which differ between
 * upstreams, or carry the upstream). ProxyContext: one upstream's view —
 * its remote registry, its storage namespace and policy — over the shared
 * local storage, metadata, fills and caches.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { TagTtlRule } from '../config/types.js';
import type { MetadataStore } from '../metadata/store.js';
import type { Digest } from '../registry/digest.js';
import { RegistryError } from '../registry/errors.js';
import type { RepositoryName } from '../registry/names.js';
import type { LocalRegistry } from '../storage/local.js';
import type { RemoteRegistry, RemoteRepository } from '../upstream/remote.js';
import type { FillLimits, FillRegistry } from './fill.js';
import type { UpstreamReferrers } from './referrers.js';
import type { CacheMetrics } from '../observability/metrics.js';
import type { Leases } from '../coordination/leases.js';
import { boundedCache } from '../registry/bounded-cache.js';

export interface ProxyPolicy {
  /** How long a cached tag is served without asking the upstream, when no rule matches. */
  tagTtlMs: number;
  /** Per-pattern tag TTLs; the first match wins. */
  tagTtlRules?: readonly TagTtlRule[];
  /** How long an upstream confirmation that a repository holds a blob is trusted. */
  blobConfirmTtlMs: number;
  /** Bounds of this upstream's blob fills; the fill registry's own when absent. */
  fill?: FillLimits;
  /** storage.maintenance.readonly.enabled: serve what is stored, store nothing new (no fills, links or tags). */
  readonly?: boolean;
}

/**
 * What lifecycle code learns from the proxy as it serves (wired in app.ts;
 * each one optional, and free when absent).
 */
export interface ProxyHooks {
  /** Pulls per (repository, manifest), kept in memory and written in batches (metadata/access.ts). */
  access?: { record(repository: string, digest: string): void };
  /** storage.quota (lifecycle/quota.ts): size accounting, and blobs that must not be deleted while read. */
  quota?: {
    committed(digest: Digest, size: number): void;
    hold(digest: Digest): () => void;
  };
  /** Cache hits and misses, blob bytes by source, fill followers (observability/metrics.ts). */
  metrics?: CacheMetrics;
  /** Leases shared with other replicas: tag refreshes one at a time across them. */
  leases?: Leases;
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

/** `*` matches any run of characters; everything else itself. */
function globToRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('.*')}$`);
}

export class ProxyCaches {
  /** `repo@digest` → manifest linked there (storage names). Content-addressed, so never stale. */
  readonly hotManifests: LRUCache<string, HotManifest>;
  /** `repo:tag` → the digest and when the upstream last confirmed it. */
  readonly hotTags: LRUCache<string, HotTag>;
  /** `repo@subject` → what the upstream said about the subject's referrers. */
  readonly hotReferrers: LRUCache<string, UpstreamReferrers>;
  /** `repo@digest` → the blob is linked in the repository, with its size: a warm blob HEAD or GET needs no stat. */
  readonly linkedBlobs: LRUCache<string, number>;
  /** `repo@digest` → size the upstream announced for the blob in that repository. */
  readonly confirmedBlobs: LRUCache<string, number>;
  /** `repo:tag` → the upstream refresh of the tag under way, shared by everyone asking meanwhile. */
  readonly refreshes = new Map<string, Promise<HotManifest>>();
  /** Last time an access was written to metadata, to write at most once a minute per digest. */
  readonly touched: LRUCache<string, number>;

  constructor(limits: CacheLimits, blobConfirmTtlMs: number) {
    // Manifests and referrer lists vary in size (a manifest may be 4 MiB): bounded by bytes too.
    this.hotManifests = boundedCache({
      entries: limits.manifests,
      bytes: limits.manifestBytes,
      sizeOf: (entry: HotManifest) => entry.payload.byteLength + ENTRY_OVERHEAD,
    });
    this.hotTags = boundedCache({ entries: limits.manifests });
    this.hotReferrers = boundedCache({
      entries: limits.manifests,
      bytes: Math.max(1024, Math.floor(limits.manifestBytes / 4)),
      sizeOf: (entry: UpstreamReferrers) => referrersSize(entry),
    });
    this.linkedBlobs = boundedCache({ entries: limits.descriptors });
    this.confirmedBlobs = boundedCache({ entries: limits.descriptors }, { ttl: blobConfirmTtlMs });
    this.touched = boundedCache({ entries: limits.descriptors });
  }

  /** Forgets everything derived from storage (after maintenance removed content). */
  clear(): void {
    this.hotManifests.clear();
    this.hotTags.clear();
    this.linkedBlobs.clear();
    this.hotReferrers.clear();
  }
}

export class ProxyContext {
  private readonly tagRules: readonly { match: RegExp; ttlMs: number }[];

  constructor(
    readonly local: LocalRegistry,
    readonly remote: RemoteRegistry,
    /** Storage name prefix of this upstream's repositories: '' for the default upstream, `ghcr.io` otherwise. */
    readonly namespace: string,
    readonly metadata: MetadataStore,
    readonly fills: FillRegistry,
    readonly policy: ProxyPolicy,
    readonly log: Logger,
    /** Shared by every upstream's context. */
    readonly caches: ProxyCaches,
    readonly hooks: ProxyHooks = {},
  ) {
    this.tagRules = (policy.tagTtlRules ?? []).map((rule) => ({ match: globToRegExp(rule.pattern), ttlMs: rule.ttlMs }));
  }

  /** The upstream's name, for logs, metadata keys and messages. */
  get upstream(): string {
    return this.remote.name;
  }

  get now(): number {
    return this.metadata.now();
  }

  /**
   * Refuses, in read-only mode, what would write to storage: `503
   * UNAVAILABLE` naming the key, an outage code, so a stale tag is served
   * rather than this error where one is cached.
   */
  assertWritable(what: string): void {
    if (this.policy.readonly !== true) return;
    throw new RegistryError(
      'UNAVAILABLE',
      `storage is read-only (storage.maintenance.readonly.enabled): ${what} is not cached and cannot be stored now`,
    );
  }

  /** How long `tag` is served from cache without asking the upstream. */
  tagTtl(tag: string): number {
    for (const rule of this.tagRules) if (rule.match.test(tag)) return rule.ttlMs;
    return this.policy.tagTtlMs;
  }

  /** The upstream's name for a repository stored here as `name`. */
  remoteName(name: RepositoryName): RepositoryName {
    return (this.namespace === '' ? name : name.slice(this.namespace.length + 1)) as RepositoryName;
  }

  /** The remote repository behind the repository stored here as `name`. */
  remoteRepository(name: RepositoryName): RemoteRepository {
    return this.remote.repository(this.remoteName(name));
  }

  /** Records a pull of a manifest in a repository (proxy.ttl, storage.quota): a Map.set, written later in a batch. */
  pulled(name: RepositoryName, digest: Digest): void {
    if (this.hooks.access === undefined) this.touch(digest.value); // timed per digest, as blobs are
    else this.hooks.access.record(name, digest.value);
  }

  /**
   * Runs `store` (which writes the blob `digest`) and tells the quota the
   * bytes it added, if the blob was not stored before.
   */
  async storing<T>(digest: Digest, store: () => Promise<T>): Promise<T> {
    const { quota } = this.hooks;
    if (quota === undefined) return store();
    const before = await this.local.storage.blobs.stat(digest);
    const result = await store();
    if (before === undefined) {
      const after = await this.local.storage.blobs.stat(digest);
      if (after !== undefined) quota.committed(digest, after.size);
    }
    return result;
  }

  /** Records a pull of a blob for `proxy.ttl` accounting, off the request path. */
  touch(digest: string): void {
    const now = this.now;
    const { touched } = this.caches;
    const last = touched.get(digest);
    if (last !== undefined && now - last < 60_000) return;
    touched.set(digest, now);
    this.metadata.touch(digest).catch((err: unknown) => this.log.warn({ err, digest }, 'metadata write failed'));
  }
}
