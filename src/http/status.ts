/**
 * The documents of the status API (`/api/v1/…`, docs/api.md), built from
 * what the process already holds: the catalog and tags in local storage,
 * manifest and blob sizes from the blob store, pull times from the access
 * index, the quota count, each upstream client's breaker and rate-limit
 * state, and the hit figures of the metrics registry when there is one.
 * Every list is bounded: repositories come in pages (at most 1000, as the
 * catalog), tags at most MAX_TAGS per repository, history at most a day.
 */
import type { LocalStorage } from '../storage/local.js';
import type { Routing } from '../routing/routes.js';
import type { AccessIndex } from '../metadata/access.js';
import type { QuotaKeeper } from '../lifecycle/quota.js';
import type { UpstreamClient } from '../upstream/client.js';
import type { Digest } from '../registry/digest.js';
import { parseManifest } from '../registry/manifest.js';
import { parseTag, type RepositoryName } from '../registry/names.js';
import { isRegistryError } from '../registry/errors.js';

export const MAX_PAGE = 1000;
export const DEFAULT_PAGE = 100;
export const MAX_TAGS = 100;
/** One history point a minute, for a day. */
export const HISTORY_INTERVAL_MS = 60_000;
export const HISTORY_POINTS = 1440;

/** Cache hits and misses as the metrics registry counts them. */
export interface Traffic {
  hits: number;
  misses: number;
  /** Bytes served from the cache that did not come from an upstream. */
  bytesSaved: number;
}

export interface StatusUpstream {
  name: string;
  /** Without credentials. */
  url: string;
  hosts: readonly string[];
  namespace: string;
  /** Absent offline: nothing goes out. */
  client?: UpstreamClient;
}

export interface StatusOptions {
  routing: Routing;
  storage: LocalStorage;
  access?: AccessIndex;
  quota?: QuotaKeeper;
  upstreams: readonly StatusUpstream[];
  /** Read when a document is built: the metrics registry may be set up after the status source. */
  traffic?: () => Promise<Traffic | undefined>;
  version: string;
  now?: () => number;
}

export interface TagDocument {
  tag: string;
  digest: string;
  mediaType: string;
  /** Manifest, its children present here, and the blobs they need that are stored, in bytes. */
  size: number;
  /** ISO time of the last pull known, or null. */
  lastPull: string | null;
}

export interface RepositoryDocument {
  name: string;
  /** Sum of the listed tags' sizes (blobs shared between tags counted once). */
  size: number;
  tagCount: number;
  tags: TagDocument[];
  /** More than MAX_TAGS tags: the rest are not listed. */
  tagsTruncated: boolean;
  lastPull: string | null;
}

export interface HistoryPoint {
  time: string;
  cacheBytes: number | null;
  hits: number | null;
  misses: number | null;
  bytesSaved: number | null;
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** Strips user info, query and fragment: what the page may show of an upstream URL. */
export function publicUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname.replace(/\/+$/, '')}`;
  } catch {
    return '';
  }
}

/**
 * Reads hits, misses and bytes saved out of /metrics' text (src/observability/metrics.ts's
 * families, every label set summed): the API shows what a scraper sees, whatever registry renders it.
 */
export function trafficFromMetrics(text: string): Traffic | undefined {
  const sums = { hits: 0, misses: 0, bytesSaved: 0 };
  let seen = false;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+([0-9.eE+-]+)/.exec(line);
    if (match === null) continue;
    const name = match[1] as string;
    const value = Number(match[2]);
    if (!Number.isFinite(value)) continue;
    if (name === 'stevedore_cache_hits_total') sums.hits += value;
    else if (name === 'stevedore_cache_misses_total') sums.misses += value;
    else if (name === 'stevedore_bytes_saved_total') sums.bytesSaved += value;
    else continue;
    seen = true;
  }
  return seen ? sums : undefined;
}

export class StatusDocuments {
  private readonly now: () => number;
  private readonly points: HistoryPoint[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: StatusOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Samples the history now and every HISTORY_INTERVAL_MS (the timer does not hold the process). */
  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), HISTORY_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async point(): Promise<HistoryPoint> {
    const traffic = await this.traffic();
    return {
      time: new Date(this.now()).toISOString(),
      cacheBytes: this.options.quota?.total ?? null,
      hits: traffic?.hits ?? null,
      misses: traffic?.misses ?? null,
      bytesSaved: traffic?.bytesSaved ?? null,
    };
  }

  private async sample(): Promise<void> {
    const point = await this.point();
    this.points.push(point);
    if (this.points.length > HISTORY_POINTS) this.points.splice(0, this.points.length - HISTORY_POINTS);
  }

  private async traffic(): Promise<Traffic | undefined> {
    try {
      return await this.options.traffic?.();
    } catch {
      return undefined;
    }
  }

  async summary(): Promise<Record<string, unknown>> {
    const traffic = await this.traffic();
    const lookups = traffic === undefined ? 0 : traffic.hits + traffic.misses;
    const quota = this.options.quota;
    return {
      version: this.options.version,
      time: new Date(this.now()).toISOString(),
      cache: { bytes: quota?.total ?? null, maxBytes: quota?.options.maxSize ?? null },
      traffic:
        traffic === undefined ? null : { ...traffic, hitRatio: lookups === 0 ? null : traffic.hits / lookups },
      upstreams: this.upstreams(),
    };
  }

  upstreams(): Record<string, unknown>[] {
    return this.options.upstreams.map((u) => ({
      name: u.name,
      url: publicUrl(u.url),
      hosts: [...u.hosts],
      namespace: u.namespace,
      breaker: u.client === undefined ? 'none' : u.client.breakerState,
      healthy: u.client === undefined ? null : !u.client.isOffline(),
      rateLimit: u.client === undefined ? null : { ...u.client.rateLimitState },
    }));
  }

  async history(): Promise<Record<string, unknown>> {
    return { intervalSeconds: HISTORY_INTERVAL_MS / 1000, points: [...this.points, await this.point()] };
  }

  /**
   * One page of repositories after `last`, with at most `limit` names
   * looked at; `filter` keeps those containing it (and the caller may see,
   * by `visible`). `next` is the name to pass as `last` for the next page.
   */
  async repositories(limit: number, last: string | undefined, filter: string, visible: (name: string) => boolean): Promise<Record<string, unknown>> {
    const n = Math.min(Math.max(limit, 1), MAX_PAGE);
    const names = await this.options.routing.catalog(n, last);
    const wanted = names.filter((name) => name.includes(filter) && visible(name));
    const repositories: RepositoryDocument[] = [];
    for (const name of wanted) {
      const doc = await this.repository(name as RepositoryName);
      if (doc !== undefined) repositories.push(doc);
    }
    const next = names.length === n ? names[names.length - 1] : undefined;
    return { repositories, ...(next === undefined ? {} : { next }) };
  }

  async repository(name: RepositoryName): Promise<RepositoryDocument | undefined> {
    const { storage } = this.options;
    let all: string[];
    try {
      all = (await storage.tags.list(name)).sort();
    } catch (err) {
      if (isRegistryError(err) && err.code === 'NAME_UNKNOWN') return undefined;
      throw err;
    }
    const counted = new Set<string>();
    const tags: TagDocument[] = [];
    let size = 0;
    let lastPull: number | undefined;
    for (const tag of all.slice(0, MAX_TAGS)) {
      const digest = await storage.tags.resolve(name, parseTag(tag));
      if (digest === undefined || !(await storage.revisions.has(name, digest))) continue;
      const own = new Map<string, Digest>();
      const mediaType = await this.measure(name, digest, own);
      const tagSize = await this.bytes([...own.values()]);
      size += await this.bytes([...own.values()].filter((d) => !counted.has(d.value)));
      for (const d of own.keys()) counted.add(d);
      const pulled = await this.options.access?.lastPulled(name, digest.value);
      if (pulled !== undefined && (lastPull === undefined || pulled > lastPull)) lastPull = pulled;
      tags.push({ tag, digest: digest.value, mediaType, size: tagSize, lastPull: iso(pulled) });
    }
    return { name, size, tagCount: all.length, tags, tagsTruncated: all.length > MAX_TAGS, lastPull: iso(lastPull) };
  }

  /** Adds the manifest, its children stored in the repository and their blobs to `into`; returns its media type. */
  private async measure(name: RepositoryName, digest: Digest, into: Map<string, Digest>, depth = 0): Promise<string> {
    into.set(digest.value, digest);
    const { storage } = this.options;
    const stored = await storage.readManifest(digest);
    const parsed = parseManifest(stored.payload, stored.mediaType);
    for (const blob of parsed.blobs) into.set(blob.digest.value, blob.digest);
    if (depth === 0) {
      for (const child of parsed.manifests) {
        if (await storage.revisions.has(name, child.digest)) await this.measure(name, child.digest, into, 1);
      }
    }
    return stored.mediaType;
  }

  /** Stored bytes of the digests (those not in the blob store count 0). */
  private async bytes(digests: readonly Digest[]): Promise<number> {
    let total = 0;
    for (const digest of digests) {
      total += (await this.options.storage.blobs.stat(digest))?.size ?? 0;
    }
    return total;
  }
}
