/**
 * The composition root: config in, a listening registry out. The only place
 * that picks implementations (storage driver, metadata store, proxy or not).
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { StevedoreConfig } from './config/types.js';
import { createServer } from './http/server.js';
import { MetadataStore } from './metadata/store.js';
import { ProxyContext } from './proxy/context.js';
import { FillRegistry } from './proxy/fill.js';
import { ProxyRegistry } from './proxy/registry.js';
import type { Registry } from './registry/services.js';
import type { StorageDriver } from './storage/driver.js';
import { FilesystemDriver } from './storage/filesystem.js';
import { LocalRegistry } from './storage/local.js';
import { UpstreamClient } from './upstream/client.js';
import { openMetadataBackend } from './metadata/backend.js';
import { ExpirySweeper } from './lifecycle/expiry.js';
import { recoverInterrupted, schedulePurging } from './lifecycle/uploads.js';

/** Sweeps for expired content every tenth of the ttl, at least every hour and at most every minute. */
export const sweepInterval = (ttlMs: number): number => Math.min(Math.max(ttlMs / 10, 60_000), 3_600_000);

export interface App {
  server: Server;
  registry: Registry;
  sweeper?: ExpirySweeper;
  address: AddressInfo;
  close(): Promise<void>;
}

export interface BuiltRegistry {
  registry: Registry;
  driver: StorageDriver;
  /** Present when `proxy.ttl` is not 0. */
  sweeper?: ExpirySweeper;
  close(): Promise<void>;
}

export interface AppOptions {
  /** The clock tag freshness is measured with; tests inject their own. */
  now?: () => number;
  /** false: do not sweep on a timer (tests call sweep() themselves). */
  sweep?: boolean;
}

export async function buildRegistry(config: StevedoreConfig, log: Logger, options: AppOptions = {}): Promise<BuiltRegistry> {
  const driver = new FilesystemDriver(config.storage.filesystem.rootdirectory);
  const local = new LocalRegistry(driver, { manifestCacheBytes: config.cache.manifests.maxSize, platform: config.defaultPlatform });
  const upstreamConfig = config.proxy;
  if (upstreamConfig === undefined) return { registry: local, driver, close: async () => undefined };

  const metadata = new MetadataStore({
    store: await openMetadataBackend(config.metadata),
    namespace: config.metadata.namespace,
    log,
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  const upstream = new UpstreamClient({
    name: upstreamConfig.name,
    url: upstreamConfig.url,
    ...(upstreamConfig.username === undefined ? {} : { username: upstreamConfig.username }),
    ...(upstreamConfig.password === undefined ? {} : { password: upstreamConfig.password }),
    dockerHub: upstreamConfig.dockerHub,
    timeouts: upstreamConfig.timeouts,
    ...(upstreamConfig.caBundle === undefined ? {} : { caBundle: upstreamConfig.caBundle }),
    tlsVerify: upstreamConfig.tlsVerify,
    breaker: { maxFails: upstreamConfig.breaker.maxFails, failTimeoutMs: upstreamConfig.breaker.probeIntervalMs },
    logger: log,
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  const fills = new FillRegistry(driver, local.storage.blobs, {
    maxResumes: 3,
    resumeBudgetMs: upstreamConfig.timeouts.resumeMs,
    followerWaitMs: upstreamConfig.timeouts.fillWaitMs,
    log,
  });
  const ctx = new ProxyContext(
    local,
    upstream,
    metadata,
    fills,
    { tagTtlMs: upstreamConfig.tagTtlMs, blobConfirmTtlMs: Math.max(upstreamConfig.tagTtlMs, 60_000) },
    log,
    { manifests: config.cache.manifests.maxEntries, manifestBytes: config.cache.manifests.maxSize, descriptors: config.cache.descriptors.maxEntries },
  );
  let sweeper: ExpirySweeper | undefined;
  if (upstreamConfig.ttlMs > 0) {
    sweeper = new ExpirySweeper(local.storage, metadata, { ttlMs: upstreamConfig.ttlMs }, log.child({ task: 'expiry' }), () => {
      ctx.hotManifests.clear();
      ctx.hotTags.clear();
      ctx.linkedBlobs.clear();
      ctx.hotReferrers.clear();
    });
    if (options.sweep !== false) sweeper.start(sweepInterval(upstreamConfig.ttlMs));
  }
  return {
    registry: new ProxyRegistry(ctx),
    driver,
    ...(sweeper === undefined ? {} : { sweeper }),
    async close() {
      await sweeper?.stop();
      await fills.close();
      await upstream.close();
      await metadata.close();
    },
  };
}

/** How long a shutdown waits for responses in flight (a long blob download) before cutting them. */
export const DRAIN_TIMEOUT_MS = 8_000;

/**
 * Stops accepting, lets responses in flight finish, and closes keep-alive
 * connections as soon as they are idle (server.close alone waits for the
 * client to drop them), cutting whatever is left after DRAIN_TIMEOUT_MS.
 */
async function drainServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const idle = setInterval(() => server.closeIdleConnections(), 50);
  const cut = setTimeout(() => server.closeAllConnections(), DRAIN_TIMEOUT_MS);
  try {
    await closed;
  } finally {
    clearInterval(idle);
    clearTimeout(cut);
  }
}

export async function startApp(config: StevedoreConfig, log: Logger, options: AppOptions = {}): Promise<App> {
  const built = await buildRegistry(config, log, options);
  // In the background: the walk may take a while on a large tree, and nothing it removes is in use.
  const recovery = recoverInterrupted(built.driver, log.child({ task: 'recovery' })).catch((err: unknown) => {
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
  const server = createServer({
    registry: built.registry,
    log,
    accessLog: config.log.accesslog,
    prefix: config.http.prefix,
    ...(config.http.tls ? { tls: config.http.tls } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.http.port, config.http.host === '' ? undefined : config.http.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    registry: built.registry,
    ...(built.sweeper === undefined ? {} : { sweeper: built.sweeper }),
    address: server.address() as AddressInfo,
    async close() {
      stopPurging();
      await recovery;
      await drainServer(server);
      await built.close();
    },
  };
}
