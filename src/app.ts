/**
 * The composition root: config in, a listening registry out. The only place
 * that picks implementations (storage driver, metadata store, proxy or not).
 */
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { StevedoreConfig, UpstreamConfig } from './config/types.js';
import { createServer } from './http/server.js';
import { Metrics } from './observability/metrics.js';
import { writeError } from './http/errcode.js';
import { RegistryError } from './registry/errors.js';
import { Gate } from './auth/gate.js';
import type { Operations } from './http/operations.js';
import { watchCertificates } from './http/tls.js';
import { MetadataStore } from './metadata/store.js';
import { ProxyCaches, ProxyContext } from './proxy/context.js';
import { FillRegistry } from './proxy/fill.js';
import { ProxyRegistry } from './proxy/registry.js';
import { Routing, type RoutedUpstream } from './routing/routes.js';
import type { StorageDriver } from './storage/driver.js';
import { openStorageDriver } from './storage/open.js';
import { FilesystemDriver } from './storage/filesystem.js';
import { LocalRegistry } from './storage/local.js';
import { UpstreamClient } from './upstream/client.js';
import { RemoteRegistry } from './upstream/remote.js';
import { openMetadataBackend } from './metadata/backend.js';
import { ExpirySweeper } from './lifecycle/expiry.js';
import { QuotaKeeper, type QuotaOptions } from './lifecycle/quota.js';
import { AccessIndex } from './metadata/access.js';
import { recoverInterrupted, schedulePurging } from './lifecycle/uploads.js';
import { Readiness } from './lifecycle/readiness.js';
import { StatusDocuments, trafficFromMetrics } from './http/status.js';
import { packageVersion } from './upstream/http.js';
import type { LocalStorage } from './storage/local.js';
import { HostedRegistry } from './hosted/registry.js';
import { Leases } from './coordination/leases.js';
import { openLeaseStore } from './coordination/lease-store.js';
import type { UploadHooks } from './hosted/uploads.js';
import { accessMatcher } from './routing/patterns.js';

/** How long a redirect URL (storage.redirect) stays valid: Distribution's 20 minutes. */
const REDIRECT_EXPIRY_MS = 20 * 60 * 1000;

/** True when some repositories are hosted (pushed to): a plain registry, or `hosted` patterns beside upstreams. */
export const hostsRepositories = (config: StevedoreConfig): boolean =>
  (config.proxy === undefined && config.upstreams.length === 0) || config.hosted.length > 0;

/** Sweeps for expired content every tenth of the ttl, at least every hour and at most every minute. */
export const sweepInterval = (ttlMs: number): number => Math.min(Math.max(ttlMs / 10, 60_000), 3_600_000);

export interface App {
  server: Server;
  routing: Routing;
  sweeper?: ExpirySweeper;
  /** Present with `storage.quota`. */
  quota?: QuotaKeeper;
  address: AddressInfo;
  /** Where http.debug.addr's listener is, when configured. */
  debugAddress?: AddressInfo;
  /**
   * Reads http.tls's files again for new connections (open ones keep theirs);
   * false, old certificate kept and the error logged, if they are unusable,
   * or when there is no TLS. Also done by itself when the files change.
   */
  reloadTls(trigger?: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface BuiltRegistry {
  routing: Routing;
  driver: StorageDriver;
  /** Present when `proxy.ttl` is not 0 and an upstream is configured. */
  sweeper?: ExpirySweeper;
  /** Present with `storage.quota` and an upstream. */
  quota?: QuotaKeeper;
  /** Present when upstreams are proxied (not with none, nor with proxy.offline). */
  metadata?: MetadataStore;
  /** The local spool of fills, for a storage without random access (S3). */
  spool?: StorageDriver;
  /** One per proxied upstream, in configuration order. */
  clients?: readonly UpstreamClient[];
  /** What the status API reads: the local stores, and the pull times when upstreams are proxied. */
  storage: LocalStorage;
  /** Leases shared with other replicas (present when upstreams are proxied). */
  leases?: Leases;
  access?: AccessIndex;
  close(): Promise<void>;
}

export interface AppOptions {
  /** The clock tag freshness is measured with; tests inject their own. */
  now?: () => number;
  /** false: do not sweep on a timer (tests call sweep() themselves). */
  sweep?: boolean;
  /** Where the proxy, fills and upstream clients report (startApp makes one when metrics are on). */
  metrics?: Metrics;
  /** storage.quota's lease timings, retry and flush interval (tests shorten them). */
  quota?: Pick<QuotaOptions, 'lease' | 'retryMs' | 'flushIntervalMs'>;
}

function upstreamClient(upstream: UpstreamConfig, log: Logger, options: AppOptions): UpstreamClient {
  return new UpstreamClient({
    name: upstream.name,
    url: upstream.url,
    ...(upstream.username === undefined ? {} : { username: upstream.username }),
    ...(upstream.password === undefined ? {} : { password: upstream.password }),
    timeouts: upstream.timeouts,
    ...(upstream.caBundle === undefined ? {} : { caBundle: upstream.caBundle }),
    tlsVerify: upstream.tlsVerify,
    breaker: { maxFails: upstream.breaker.maxFails, failTimeoutMs: upstream.breaker.probeIntervalMs },
    logger: log,
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.metrics === undefined ? {} : { observe: options.metrics.upstream(upstream.name) }),
  });
}

export async function buildRegistry(config: StevedoreConfig, log: Logger, options: AppOptions = {}): Promise<BuiltRegistry> {
  const driver = await openStorageDriver(config.storage);
  const local = new LocalRegistry(driver, {
    manifestCacheBytes: config.cache.manifests.maxSize,
    platform: config.defaultPlatform,
    ...(config.storage.redirect ? { redirectMs: REDIRECT_EXPIRY_MS } : {}),
  });
  const upstreams = config.proxy === undefined ? config.upstreams : [config.proxy, ...config.upstreams];
  const hostedOptions = {
    deletes: config.storage.delete.enabled,
    readonly: config.storage.maintenance.readonly,
    maxManifestBytes: config.limits.manifestBytes,
  };
  if (upstreams.length === 0) {
    // A plain registry (Distribution without proxy mode): every repository is hosted.
    const hosted = new HostedRegistry(local, hostedOptions);
    return { routing: new Routing({ upstreams: [], local: hosted, unknownNs: config.routing.unknownNs }), driver, storage: local.storage, close: async () => undefined };
  }
  const hostedRoute = (hooks?: UploadHooks) =>
    config.hosted.length === 0 ? {} : { hosted: { registry: new HostedRegistry(local, { ...hostedOptions, ...(hooks === undefined ? {} : { hooks }) }), patterns: config.hosted } };
  if (config.offline) {
    // proxy.offline: names route to the same storage names as online, but local storage serves them all:
    // no upstream client, fill or metadata, so a miss is MANIFEST_UNKNOWN / BLOB_UNKNOWN; and no expiry,
    // since nothing removed could be fetched again.
    const offline = upstreams.map((u): RoutedUpstream => ({ name: u.name, hosts: u.hosts, namespace: u.namespace, dockerHub: u.dockerHub, allow: u.allow, deny: u.deny, registry: local }));
    const [head, ...rest] = offline;
    const routing = new Routing({
      ...(config.proxy === undefined || head === undefined ? {} : { defaultUpstream: head }),
      upstreams: config.proxy === undefined ? offline : rest,
      local,
      ...hostedRoute(),
      unknownNs: config.routing.unknownNs,
    });
    return { routing, driver, storage: local.storage, close: async () => undefined };
  }

  // A storage that cannot be read while it is written (S3) gets a local spool that fills' followers read.
  const spool = driver.open === undefined ? new FilesystemDriver(config.storage.spool) : undefined;
  const backend = await openMetadataBackend(config.metadata);
  // With a shared metadata store (Redis, PostgreSQL), replicas coordinate through leases there:
  // one fill per digest across them, one sweep at a time.
  const leases = new Leases(await openLeaseStore(config.metadata), { log: log.child({ task: 'leases' }) });
  const metadata = new MetadataStore({
    store: backend,
    namespace: config.metadata.namespace,
    log,
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  // Pull times per (repository, manifest) for proxy.ttl and storage.quota. With the memory store they get
  // a Map of their own: the bounded store may drop any entry, and an image whose entry is dropped is never evicted.
  const access = new AccessIndex({
    store: config.metadata.store === 'memory' ? new Map() : backend,
    namespace: config.metadata.namespace,
    log,
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  access.start(options.quota?.flushIntervalMs ?? 5_000);
  const quota =
    config.storage.quota === undefined
      ? undefined
      : new QuotaKeeper(
          local.storage,
          access,
          // Read-only storage: counted, never evicted from. Hosted repositories are pinned: never evicted.
          {
            ...config.storage.quota,
            pin: [...config.storage.quota.pin, ...config.hosted],
            persistent: config.metadata.store !== 'memory',
            auto: !config.storage.maintenance.readonly,
            ...options.quota,
            lease: { ...options.quota?.lease, shared: leases },
          },
          log.child({ task: 'quota' }),
          () => {
            caches.clear();
            options.metrics?.evicted();
          },
        );
  // One fill registry for all upstreams; each upstream's own timeouts bound its fills (ProxyPolicy.fill).
  const first = upstreams[0] as UpstreamConfig;
  const fills = new FillRegistry(
    driver,
    local.storage.blobs,
    {
      maxResumes: 3,
      resumeBudgetMs: first.timeouts.resumeMs,
      followerWaitMs: first.timeouts.fillWaitMs,
      log,
      leases,
      ...(quota === undefined ? {} : { quota }),
      ...(spool === undefined ? {} : { spool }),
    },
    { fills: config.limits.fills, fillsPerClient: config.limits.fillsPerClient },
  );
  const blobConfirmTtlMs = Math.max(first.tagTtlMs, 60_000);
  const caches = new ProxyCaches(
    { manifests: config.cache.manifests.maxEntries, manifestBytes: config.cache.manifests.maxSize, descriptors: config.cache.descriptors.maxEntries },
    blobConfirmTtlMs,
  );
  const clients: UpstreamClient[] = [];
  const routed = upstreams.map((upstream): RoutedUpstream => {
    const client = upstreamClient(upstream, log, options);
    clients.push(client);
    const ctx = new ProxyContext(
      local,
      new RemoteRegistry(client, { maxManifestBytes: config.limits.manifestBytes }),
      upstream.namespace,
      metadata,
      fills,
      {
        tagTtlMs: upstream.tagTtlMs,
        tagTtlRules: upstream.tagTtlRules,
        blobConfirmTtlMs,
        fill: { resumeBudgetMs: upstream.timeouts.resumeMs, followerWaitMs: upstream.timeouts.fillWaitMs },
        readonly: config.storage.maintenance.readonly,
      },
      log,
      caches,
      { access, leases, ...(quota === undefined ? {} : { quota }), ...(options.metrics === undefined ? {} : { metrics: options.metrics }) },
    );
    return {
      name: upstream.name,
      hosts: upstream.hosts,
      namespace: upstream.namespace,
      dockerHub: upstream.dockerHub,
      allow: upstream.allow,
      deny: upstream.deny,
      registry: new ProxyRegistry(ctx),
    };
  });
  const routing = new Routing({
    ...(config.proxy === undefined ? {} : { defaultUpstream: routed[0] as RoutedUpstream }),
    upstreams: config.proxy === undefined ? routed : routed.slice(1),
    local,
    ...hostedRoute(quota === undefined ? undefined : { committed: (digest, size) => quota.committed(digest, size) }),
    unknownNs: config.routing.unknownNs,
  });
  let sweeper: ExpirySweeper | undefined;
  if (first.ttlMs > 0) {
    const hostedNames = config.hosted.length === 0 ? undefined : accessMatcher(config.hosted, []);
    sweeper = new ExpirySweeper(local.storage, metadata, { ttlMs: first.ttlMs, pulls: access, leases, ...(hostedNames === undefined ? {} : { keep: hostedNames }) }, log.child({ task: 'expiry' }), (report) => {
      caches.clear();
      quota?.freed(report.bytesFreed);
    });
    if (options.sweep !== false) sweeper.start(sweepInterval(first.ttlMs));
  }
  // In the background: with the memory store it walks blobs/ once; pulls are served meanwhile.
  options.metrics?.watch({ upstreams: clients, fills, coordination: leases, ...(quota === undefined ? {} : { quota }) });
  quota?.start().catch((err: unknown) => log.error({ err }, 'storage.quota could not count the cache; nothing is evicted'));
  return {
    routing,
    driver,
    metadata,
    clients,
    storage: local.storage,
    access,
    leases,
    ...(spool === undefined ? {} : { spool }),
    ...(sweeper === undefined ? {} : { sweeper }),
    ...(quota === undefined ? {} : { quota }),
    async close() {
      // Fills first: each one still downloading is abandoned and its spool removed, a verified one committed.
      await fills.close();
      // The rest only gives up timers and connections: a sweep or an upstream request still
      // running (a client cut at the drain deadline) must not hold the exit for long.
      const rest = (async () => {
        await sweeper?.stop();
        await quota?.close(); // a pass stops after its current image; the count is written
        await access.close(); // pulls not written yet
        await Promise.all(clients.map((client) => client.close()));
        await metadata.close();
        await leases.close();
      })();
      const late = await Promise.race([rest.then(() => false), sleep(CLOSE_GRACE_MS, true, { ref: false })]);
      if (late) log.warn({ graceMs: CLOSE_GRACE_MS }, 'upstream connections or the expiry sweep did not close in time; exiting anyway');
    },
  };
}

/** After the fills are closed, how long a shutdown waits for upstream connections, metadata and a sweep to close. */
export const CLOSE_GRACE_MS = 2_000;

/**
 * The longest a shutdown may take before the CLI gives up on it and exits 1:
 * the drain (`http.draintimeout`), closing the fills (aborting them, removing
 * their spools, committing verified ones: well under a second) and
 * CLOSE_GRACE_MS, with room to spare for a loaded machine.
 */
export const shutdownDeadlineMs = (drainTimeoutMs: number): number => drainTimeoutMs + CLOSE_GRACE_MS + 3_000;

/**
 * Stops accepting, lets responses in flight finish, and closes keep-alive
 * connections as soon as they are idle (server.close alone waits for the
 * client to drop them), cutting whatever is left after `timeoutMs`
 * (`http.draintimeout`). Resolves once every connection is closed.
 */
export async function drainServer(server: Server, timeoutMs: number, log: Logger): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const idle = setInterval(() => server.closeIdleConnections(), 50);
  const cut = setTimeout(() => {
    server.getConnections((err, count) => {
      if (err === null && count > 0) log.warn({ connections: count, drainTimeoutMs: timeoutMs }, 'drain timeout reached: cutting responses still in flight');
      server.closeAllConnections();
    });
  }, timeoutMs);
  try {
    await closed;
  } finally {
    clearInterval(idle);
    clearTimeout(cut);
  }
}

/**
 * http.debug.addr, Distribution's debug listener: the metrics at
 * `prometheus.path` when `prometheus.enabled`; anything else is a 404 in the
 * OCI error format. Never registry content, so it needs no authentication.
 */
async function listenDebug(debug: NonNullable<StevedoreConfig['operations']['debug']>, metrics: Metrics | undefined): Promise<Server> {
  const source = debug.prometheus ? metrics : undefined;
  const server = createHttpServer((req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (source === undefined || path !== debug.path || (req.method !== 'GET' && req.method !== 'HEAD')) {
      writeError(req, res, new RegistryError('NOT_FOUND', `${path} is not served on http.debug.addr`));
      return;
    }
    source.render().then(
      (text) => {
        const body = Buffer.from(text);
        res.writeHead(200, { 'Content-Type': source.contentType, 'Content-Length': body.byteLength, 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => writeError(req, res, new RegistryError('UNKNOWN', `metrics could not be rendered: ${(err as Error).message}`)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(debug.port, debug.host === '' ? undefined : debug.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export async function startApp(config: StevedoreConfig, log: Logger, options: AppOptions = {}): Promise<App> {
  // First: a missing htpasswd file or a bad key stops startup before anything else starts.
  const gate =
    config.auth === undefined
      ? undefined
      : await Gate.create(config.auth, config.access, {
          log: log.child({ task: 'auth' }),
          prefix: config.http.prefix,
          ...(config.http.externalUrl === undefined ? {} : { externalUrl: config.http.externalUrl }),
        });
  // Made before the registry, so every upstream client and proxy context reports to it.
  const debug = config.operations.debug;
  const metrics = options.metrics ?? (config.operations.metrics || debug?.prometheus === true ? new Metrics() : undefined);
  const built = await buildRegistry(config, log, metrics === undefined ? options : { ...options, metrics });
  // In the background: the walk may take a while on a large tree, and nothing it removes is in use.
  const recovery = recoverInterrupted(built.driver, log.child({ task: 'recovery' }), built.spool).catch((err: unknown) => {
    log.error({ err }, 'removing what an interrupted run left behind failed');
  });
  const purging = config.storage.maintenance.uploadpurging;
  const stopPurging = purging.enabled
    ? schedulePurging(
        built.driver,
        { ageMs: purging.ageMs, dryRun: purging.dryrun, intervalMs: purging.intervalMs },
        log.child({ task: 'uploadpurging' }),
      )
    : () => undefined;
  // The operations endpoints: each part (metrics, health, status page) adds its source here.
  const operations: Operations = {};
  if (metrics !== undefined && config.operations.metrics) operations.metrics = metrics;
  operations.health = new Readiness({
    driver: built.driver,
    writable: !config.storage.maintenance.readonly,
    ...(built.metadata === undefined ? {} : { metadata: built.metadata }),
    upstreams: built.clients ?? [],
    ...(built.leases === undefined ? {} : { coordination: built.leases }),
    log: log.child({ task: 'readiness' }),
  });
  if (config.operations.ui) {
    // The status page and /api/v1/ (docs/api.md); hit figures come from /metrics' registry when it is on.
    const configured = config.proxy === undefined ? config.upstreams : [config.proxy, ...config.upstreams];
    const status = new StatusDocuments({
      routing: built.routing,
      storage: built.storage,
      ...(built.access === undefined ? {} : { access: built.access }),
      ...(built.quota === undefined ? {} : { quota: built.quota }),
      upstreams: configured.map((u, i) => {
        const client = built.clients?.[i];
        return { name: u.name, url: u.url, hosts: u.hosts, namespace: u.namespace, ...(client === undefined ? {} : { client }) };
      }),
      traffic: async () => (operations.metrics === undefined ? undefined : trafficFromMetrics(await operations.metrics.render())),
      version: packageVersion(),
    });
    status.start();
    operations.status = status;
  }
  let server: Server;
  let debugServer: Server | undefined;
  try {
    server = createServer({
      operations,
      routing: built.routing,
      ...(gate === undefined ? {} : { gate }),
      log,
      accessLog: config.log.accesslog,
      prefix: config.http.prefix,
      ...(config.http.tls ? { tls: config.http.tls } : {}),
      trustedProxies: config.http.trustedProxies,
      // A blob upload takes as long as it takes: with hosted repositories a request body is bounded by
      // http.timeouts.idle (no progress), not by http.timeouts.request.
      timeouts: hostsRepositories(config) ? { ...config.http.timeouts, requestMs: 0 } : config.http.timeouts,
      limits: config.limits,
      requestRate: { rate: config.limits.requestRate, burst: config.limits.requestBurst },
      ...(metrics === undefined ? {} : { metrics }),
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.http.port, config.http.host === '' ? undefined : config.http.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    if (debug !== undefined) {
      const listening = server;
      debugServer = await listenDebug(debug, metrics).catch((err: unknown) => {
        listening.close();
        throw err;
      });
    }
  } catch (err) {
    // Unusable TLS files or a port in use: give back what was started, then fail.
    stopPurging();
    await recovery;
    await built.close();
    throw err;
  }
  const certificates = config.http.tls === undefined ? undefined : watchCertificates(server, config.http.tls, log);
  let closing: Promise<void> | undefined;
  return {
    server,
    reloadTls: (trigger = 'request') => certificates?.reload(trigger) ?? Promise.resolve(false),
    routing: built.routing,
    ...(built.sweeper === undefined ? {} : { sweeper: built.sweeper }),
    ...(built.quota === undefined ? {} : { quota: built.quota }),
    address: server.address() as AddressInfo,
    ...(debugServer === undefined ? {} : { debugAddress: debugServer.address() as AddressInfo }),
    /**
     * Graceful shutdown: stop accepting at once, let responses in flight
     * finish within `http.draintimeout` and cut the rest, then close the
     * fills (see FillRegistry.close) and everything else. Resolves when
     * nothing is left running that could leave a file behind.
     */
    close() {
      // Once: a second call (a test's teardown after its own close) waits for the first.
      closing ??= (async () => {
        stopPurging();
        operations.status?.stop();
        const closingDebug = debugServer === undefined ? undefined : drainServer(debugServer, config.http.drainTimeoutMs, log);
        await Promise.all([drainServer(server, config.http.drainTimeoutMs, log), recovery, closingDebug]);
        await built.close();
      })();
      return closing;
    },
  };
}
