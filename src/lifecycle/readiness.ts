/**
 * What /readyz reports: whether this instance can do its work. Storage must
 * take a write (a probe file under stevedore/v1/health/, deleted again) and
 * the metadata store must answer a round trip; upstreams are reported but
 * never make the instance unready, since what is cached is still served
 * while they are away. Each check is bounded by a timeout, and one report
 * answers every probe for `cacheMs`, so probes cannot load the storage.
 *
 * The report goes to anyone who asks (probes carry no credentials), so it
 * names checks and error codes (`EROFS`, `timeout`), never paths or
 * messages; those go to the log when readiness changes.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { MetadataStore } from '../metadata/store.js';
import type { StorageDriver } from '../storage/driver.js';
import { pathFor, STORAGE_PREFIX } from '../storage/paths.js';
import type { UpstreamClient } from '../upstream/client.js';

export interface CheckResult {
  ok: boolean;
  durationMs: number;
  /** Why it failed: an error code (`EROFS`, `EACCES`), `timeout`, or what did not come back. */
  error?: string;
}

/** closed: online; open: offline (requests fail fast); half-open: a probe may go or is out. */
export type UpstreamHealth = 'online' | 'offline' | 'probing';

export interface ReadinessReport {
  ready: boolean;
  /** The names of the checks that failed; empty when ready. */
  failed: string[];
  checks: Record<string, CheckResult>;
  /** Reported only: an offline upstream leaves the cache serving. */
  upstreams: Record<string, { state: UpstreamHealth }>;
  /**
   * Reported only, with a shared lease store: `false` while this replica
   * cannot reach it and fills on its own (no cross-replica single flight).
   */
  coordination?: { store: string; healthy: boolean };
}

export interface ReadinessSource {
  ready(): Promise<ReadinessReport>;
}

export interface ReadinessOptions {
  driver: StorageDriver;
  /** false (storage.maintenance.readonly): storage is only read, never written, by the check. */
  writable?: boolean;
  /** Absent when nothing is proxied (no metadata store is opened). */
  metadata?: Pick<MetadataStore, 'ping'>;
  upstreams?: readonly Pick<UpstreamClient, 'name' | 'breakerState'>[];
  /** The leases replicas coordinate through (coordination/leases.ts). */
  coordination?: { health(): { kind: string; healthy: boolean } | undefined; probe(): Promise<void> };
  log: Logger;
  /** The most one check may take; default 2 s. */
  timeoutMs?: number;
  /** How long one report answers every probe; default 1 s. */
  cacheMs?: number;
  now?: () => number;
}

const UPSTREAM_HEALTH = { closed: 'online', open: 'offline', 'half-open': 'probing' } as const;

class CheckFailed extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** What an unauthenticated caller may see of an error. */
function reasonOf(err: unknown): string {
  if (err instanceof CheckFailed) return err.reason;
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code) ? code : 'failed';
}

export class Readiness implements ReadinessSource {
  /** This process's own probe file and metadata key, so replicas sharing storage do not race. */
  private readonly instance = `${randomBytes(4).toString('hex')}-${process.pid}`;
  private readonly timeoutMs: number;
  private readonly cacheMs: number;
  private readonly now: () => number;
  /** A check still running past its timeout: the next report fails it rather than starting another. */
  private readonly running = new Map<string, Promise<unknown>>();
  private latest: { at: number; report: ReadinessReport } | undefined;
  private inflight: Promise<ReadinessReport> | undefined;

  constructor(private readonly options: ReadinessOptions) {
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.cacheMs = options.cacheMs ?? 1_000;
    this.now = options.now ?? Date.now;
  }

  ready(): Promise<ReadinessReport> {
    if (this.latest !== undefined && this.now() - this.latest.at < this.cacheMs) return Promise.resolve(this.latest.report);
    this.inflight ??= this.report().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async report(): Promise<ReadinessReport> {
    const { metadata, upstreams = [] } = this.options;
    const errors: Record<string, unknown> = {};
    const [storage, meta] = await Promise.all([
      this.check('storage', () => this.probeStorage(), errors),
      metadata === undefined ? undefined : this.check('metadata', () => this.probeMetadata(metadata), errors),
    ]);
    const checks: Record<string, CheckResult> = meta === undefined ? { storage } : { storage, metadata: meta };
    const failed = Object.entries(checks)
      .filter(([, result]) => !result.ok)
      .map(([name]) => name);
    const report: ReadinessReport = {
      ready: failed.length === 0,
      failed,
      checks,
      upstreams: Object.fromEntries(upstreams.map((u) => [u.name, { state: UPSTREAM_HEALTH[u.breakerState] }])),
    };
    await this.options.coordination?.probe();
    const coordination = this.options.coordination?.health();
    if (coordination !== undefined) report.coordination = { store: coordination.kind, healthy: coordination.healthy };
    const before = this.latest?.report.ready;
    if (!report.ready && before !== false) this.options.log.warn({ failed, errors }, 'not ready');
    else if (report.ready && before === false) this.options.log.info({}, 'ready again');
    this.latest = { at: this.now(), report };
    return report;
  }

  private async probeStorage(): Promise<void> {
    const { driver } = this.options;
    if (this.options.writable === false) {
      await driver.stat(STORAGE_PREFIX);
      return;
    }
    const path = pathFor({ kind: 'healthProbe', instance: this.instance });
    await driver.putContent(path, new Date(this.now()).toISOString());
    await driver.delete(path);
  }

  private async probeMetadata(metadata: Pick<MetadataStore, 'ping'>): Promise<void> {
    if (!(await metadata.ping(this.instance))) throw new CheckFailed('no round trip');
  }

  private async check(name: string, probe: () => Promise<void>, errors: Record<string, unknown>): Promise<CheckResult> {
    const started = performance.now();
    const result = (error?: unknown): CheckResult => {
      const durationMs = Math.round((performance.now() - started) * 10) / 10;
      if (error === undefined) return { ok: true, durationMs };
      errors[name] = error instanceof Error ? error.message : error;
      return { ok: false, durationMs, error: reasonOf(error) };
    };
    if (this.running.has(name)) return result(new CheckFailed('timeout'));
    const running = probe();
    this.running.set(name, running);
    void running.then(
      () => this.running.delete(name),
      () => this.running.delete(name),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed('timeout')), this.timeoutMs);
    });
    try {
      await Promise.race([running, timeout]);
      return result();
    } catch (err) {
      return result(err);
    } finally {
      clearTimeout(timer);
    }
  }
}
