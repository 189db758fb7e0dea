/**
 * Every Prometheus metric Stevedore exports, in one registry (prom-client).
 * Code that serves reports through the small typed methods below; state that
 * already lives in other objects (breakers, fills, quota, rate limits) is read
 * when scraped, through `watch()`, so the request path pays nothing for it.
 *
 * Labels come from small fixed sets — route kinds, status classes, upstream
 * names from the config — never repository names or digests, so the series
 * count is bounded whatever is pulled.
 */
import { Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';

export type RouteKind = 'base' | 'catalog' | 'tags' | 'manifest' | 'blob' | 'referrers' | 'upload' | 'token' | 'operations' | 'other';
export type CacheKind = 'manifest' | 'blob';
export type CacheOutcome = 'hit' | 'miss';
export type ByteSource = 'cache' | 'upstream';
/** An upstream answer's status class, or why there was none. */
export type UpstreamOutcome = '2xx' | '3xx' | '4xx' | '5xx' | 'error' | 'refused';

/** What the proxy reports while it serves (ProxyHooks.metrics). */
export interface CacheMetrics {
  cache(kind: CacheKind, outcome: CacheOutcome): void;
  /** Blob content served from storage, or received from an upstream by a fill. */
  bytes(source: ByteSource, n: number): void;
  /** A request that joined a fill already under way instead of starting one. */
  follower(): void;
}

/** What one upstream client reports per request (UpstreamClientOptions.observe). */
export type UpstreamObserver = (kind: string, outcome: UpstreamOutcome, seconds: number) => void;

/** What is read at scrape time: one entry per upstream, and the shared fills and quota. */
export interface WatchedState {
  upstreams?: readonly { name: string; breakerState: 'closed' | 'open' | 'half-open'; rateLimitState: { remaining?: number } }[];
  fills?: { active: number };
  quota?: { total: number };
  /** Leases shared by replicas (a Redis or PostgreSQL metadata store). */
  coordination?: { health(): { kind: string; healthy: boolean } | undefined };
}

const ROUTE_KINDS: readonly RouteKind[] = ['base', 'catalog', 'tags', 'manifest', 'blob', 'referrers', 'upload', 'token', 'operations', 'other'];
const KIND_INDEX = Object.fromEntries(ROUTE_KINDS.map((kind, i) => [kind, i])) as Record<RouteKind, number>;
const METHOD_LABELS = ['GET', 'HEAD', 'other'] as const;

/** Upstream request kinds (UpstreamRequest.kind); anything else is 'other'. */
const UPSTREAM_KINDS = new Set(['manifests', 'blobs', 'referrers', 'tags']);

/** Status codes as label values, interned: no string is built per request. */
const STATUS_LABELS: string[] = Array.from({ length: 600 }, (_, i) => String(i));

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export const outcomeOf = (status: number): UpstreamOutcome =>
  status < 300 ? '2xx' : status < 400 ? '3xx' : status < 500 ? '4xx' : '5xx';

/**
 * A histogram by route kind kept in plain arrays: prom-client hashes a label
 * object on every observation (children too), too much for a warm HEAD.
 * Registered as a prom-client metric (the `get()` shape its registry renders).
 */
class KindHistogram {
  readonly type = 'histogram';
  private readonly counts: Float64Array[] = ROUTE_KINDS.map(() => new Float64Array(LATENCY_BUCKETS.length + 1));
  private readonly sums = new Float64Array(ROUTE_KINDS.length);

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  observe(k: number, seconds: number): void {
    const counts = this.counts[k] as Float64Array;
    let b = 0;
    while (b < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[b] as number)) b++;
    (counts[b] as number)++;
    (this.sums[k] as number) += seconds;
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { metricName: string; labels: Record<string, string | number>; value: number }[] }> {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    ROUTE_KINDS.forEach((kind, k) => {
      const counts = this.counts[k] as Float64Array;
      let total = 0;
      for (const n of counts) total += n;
      if (total === 0) return;
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, b) => {
        cumulative += counts[b] as number;
        values.push({ metricName: `${this.name}_bucket`, labels: { le, kind }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', kind }, value: total });
      values.push({ metricName: `${this.name}_sum`, labels: { kind }, value: this.sums[k] as number });
      values.push({ metricName: `${this.name}_count`, labels: { kind }, value: total });
    });
    return { name: this.name, help: this.help, type: this.type, aggregator: 'sum', values };
  }
}

const SLOTS_PER_KIND = METHOD_LABELS.length * (STATUS_LABELS.length + 1);

export class Metrics implements CacheMetrics {
  readonly registry = new Registry();
  // The request path only adds to these numbers; the counters read them when scraped.
  private readonly requestCounts = new Float64Array(ROUTE_KINDS.length * SLOTS_PER_KIND);
  private readonly requestSeconds = new KindHistogram('stevedore_http_request_duration_seconds', 'Time from request to response closed, by route kind.');
  /** hits and misses: [manifest hit, manifest miss, blob hit, blob miss]. */
  private readonly cacheCounts = new Float64Array(4);
  /** [saved (from cache), from upstream]. */
  private readonly byteCounts = new Float64Array(2);
  private readonly followers: Counter;
  private readonly upstreamRequests: Counter<'upstream' | 'kind' | 'outcome'>;
  private readonly upstreamSeconds: Histogram<'upstream' | 'kind'>;
  private readonly evictions: Counter;
  private watched: WatchedState = {};

  constructor() {
    const registers = [this.registry];
    const requests = this.requestCounts;
    new Counter({
      name: 'stevedore_http_requests_total',
      help: 'Requests answered, by route kind, method and status.',
      labelNames: ['kind', 'method', 'status'],
      registers,
      collect() {
        this.reset();
        requests.forEach((n, slot) => {
          if (n === 0) return;
          const kind = ROUTE_KINDS[Math.floor(slot / SLOTS_PER_KIND)] as RouteKind;
          const rest = slot % SLOTS_PER_KIND;
          const method = METHOD_LABELS[Math.floor(rest / (STATUS_LABELS.length + 1))] as string;
          this.inc({ kind, method, status: STATUS_LABELS[rest % (STATUS_LABELS.length + 1)] ?? 'other' }, n);
        });
      },
    });
    this.registry.registerMetric(this.requestSeconds as unknown as Metric);
    const cache = this.cacheCounts;
    // Separate hit and miss families, and bytes saved by name: the status page (http/status.ts) reads them so.
    const cacheCounter = (name: string, help: string, offset: number): Counter<'kind'> =>
      new Counter({
        name,
        help,
        labelNames: ['kind'],
        registers,
        collect() {
          this.reset();
          if ((cache[offset] as number) > 0) this.inc({ kind: 'manifest' }, cache[offset] as number);
          if ((cache[offset + 2] as number) > 0) this.inc({ kind: 'blob' }, cache[offset + 2] as number);
        },
      });
    cacheCounter('stevedore_cache_hits_total', 'Manifests and blobs answered from the cache.', 0);
    cacheCounter('stevedore_cache_misses_total', 'Manifests and blobs not in the cache: fetched from (or, for a blob HEAD, asked of) the upstream.', 1);
    const bytes = this.byteCounts;
    const byteCounter = (name: string, help: string, index: number): Counter =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(bytes[index] as number);
        },
      });
    byteCounter('stevedore_bytes_saved_total', 'Blob bytes served from the cache: upstream bandwidth saved.', 0);
    byteCounter('stevedore_upstream_bytes_total', 'Blob bytes received from upstreams by fills (resumed transfers included).', 1);
    this.followers = new Counter({ name: 'stevedore_fill_followers_total', help: 'Blob requests that joined a fill under way instead of fetching again.', registers });
    this.upstreamRequests = new Counter({ name: 'stevedore_upstream_requests_total', help: 'Requests to upstreams, by upstream, kind and outcome (status class, error, refused).', labelNames: ['upstream', 'kind', 'outcome'], registers });
    this.upstreamSeconds = new Histogram({ name: 'stevedore_upstream_request_duration_seconds', help: 'Upstream request time to response headers.', labelNames: ['upstream', 'kind'], buckets: LATENCY_BUCKETS, registers });
    this.evictions = new Counter({ name: 'stevedore_evicted_images_total', help: 'Images removed by storage.quota eviction passes.', registers });
    const watched = (): WatchedState => this.watched;
    new Gauge({
      name: 'stevedore_upstream_breaker_state',
      help: 'Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const u of watched().upstreams ?? []) this.set({ upstream: u.name }, u.breakerState === 'closed' ? 0 : u.breakerState === 'half-open' ? 1 : 2);
      },
    });
    new Gauge({
      name: 'stevedore_upstream_ratelimit_remaining',
      help: 'Pulls left in the rate-limit window, as the upstream last announced it (Docker Hub).',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const u of watched().upstreams ?? []) {
          const { remaining } = u.rateLimitState;
          if (remaining !== undefined) this.set({ upstream: u.name }, remaining);
        }
      },
    });
    new Gauge({
      name: 'stevedore_fills_in_flight',
      help: 'Blob fills downloading now.',
      registers,
      collect() {
        this.set(watched().fills?.active ?? 0);
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** The objects read at scrape time (set once the app has built them). */
  watch(state: WatchedState): void {
    this.watched = state;
    const { quota, coordination } = state;
    if (coordination !== undefined) this.watchCoordination(coordination);
    // Only storage.quota counts the cache: without one there is no figure to give, and no series.
    if (quota !== undefined && this.registry.getSingleMetric('stevedore_cache_size_bytes') === undefined) {
      new Gauge({
        name: 'stevedore_cache_size_bytes',
        help: 'Blob bytes held in the cache, as storage.quota counts them.',
        registers: [this.registry],
        collect() {
          this.set(quota.total);
        },
      });
    }
  }

  /** Whether the lease store replicas coordinate through answers (no series without one). */
  private watchCoordination(coordination: NonNullable<WatchedState['coordination']>): void {
    if (coordination.health() === undefined || this.registry.getSingleMetric('stevedore_coordination_up') !== undefined) return;
    new Gauge({
      name: 'stevedore_coordination_up',
      help: 'Whether the lease store replicas coordinate fills and sweeps through answers (1), or this replica serves on alone (0).',
      labelNames: ['store'],
      registers: [this.registry],
      collect() {
        const health = coordination.health();
        if (health !== undefined) this.set({ store: health.kind }, health.healthy ? 1 : 0);
      },
    });
  }

  request(kind: RouteKind, method: string, status: number, seconds: number): void {
    // Methods other than these two are refused anyway; they share one label.
    const m = method === 'GET' ? 0 : method === 'HEAD' ? 1 : 2;
    const k = KIND_INDEX[kind];
    const code = status >= 0 && status < STATUS_LABELS.length ? status : STATUS_LABELS.length;
    (this.requestCounts[k * SLOTS_PER_KIND + m * (STATUS_LABELS.length + 1) + code] as number)++;
    this.requestSeconds.observe(k, seconds);
  }

  cache(kind: CacheKind, outcome: CacheOutcome): void {
    (this.cacheCounts[(kind === 'manifest' ? 0 : 2) + (outcome === 'hit' ? 0 : 1)] as number)++;
  }

  bytes(source: ByteSource, n: number): void {
    if (n > 0) (this.byteCounts[source === 'cache' ? 0 : 1] as number) += n;
  }

  follower(): void {
    this.followers.inc();
  }

  evicted(images = 1): void {
    this.evictions.inc(images);
  }

  /** The observer one upstream client reports to. */
  upstream(name: string): UpstreamObserver {
    return (kind, outcome, seconds) => {
      const k = UPSTREAM_KINDS.has(kind) ? kind : 'other';
      this.upstreamRequests.inc({ upstream: name, kind: k, outcome });
      this.upstreamSeconds.observe({ upstream: name, kind: k }, seconds);
    };
  }
}
