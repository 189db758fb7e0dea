/**
 * Leases shared by replicas: who fills a blob, who refreshes a tag, who
 * sweeps. A lease store (lease-store.ts: Redis or PostgreSQL, the shared
 * metadata store's engine) sets a key only if it is free or expired and
 * renews or releases it only for the token that holds it: compare-and-set,
 * which neither a filesystem nor S3 gives us through the driver contract.
 *
 * A holder renews every ttl/3 and may publish progress with each renewal
 * (the bytes a fill has downloaded), so a replica waiting for it can tell a
 * slow holder from a dead one. A renewal that finds the lease taken marks it
 * lost. When the store is unreachable, `acquire` answers `unavailable`: the
 * caller goes on alone (a fill without cross-replica single flight), and the
 * store's health says so (/readyz detail, metrics) until it answers again.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { OWNER } from '../storage/owner.js';

/** What a lease says about its holder, for the replicas waiting on it. */
export interface LeaseInfo {
  holder: string;
  /** What the holder is doing (`fill`, `sweep`, `tag refresh`). */
  purpose: string;
  /** A measure of progress the holder publishes with each renewal (bytes downloaded). */
  progress?: number;
}

/** The compare-and-set primitives a lease needs (lease-store.ts). */
export interface LeaseStore {
  readonly kind: 'redis' | 'postgres';
  /** Sets `key` to (token, info) for `ttlMs` if it is free or expired; true when set. */
  setIfFree(key: string, token: string, info: LeaseInfo, ttlMs: number): Promise<boolean>;
  /** Extends `key` by `ttlMs` (and updates info) if `token` holds it; true when it does. */
  renew(key: string, token: string, info: LeaseInfo, ttlMs: number): Promise<boolean>;
  /** Deletes `key` if `token` holds it. */
  release(key: string, token: string): Promise<void>;
  /** The current holder's info, or undefined when free or expired. */
  read(key: string): Promise<LeaseInfo | undefined>;
  close(): Promise<void>;
}

export interface HeldLease {
  readonly key: string;
  /** True once a renewal found the lease taken over (we stalled past the ttl): stop the work. */
  isLost(): boolean;
  /** Where the progress published with each renewal is read from (a fill: the bytes it has). */
  track(read: () => number): void;
  release(): Promise<void>;
}

export type Acquired = { state: 'held'; lease: HeldLease } | { state: 'busy'; info: LeaseInfo } | { state: 'unavailable'; reason: string };

export interface LeasesOptions {
  /** Default lease ttl; renewed every third of it. */
  ttlMs?: number;
  /** How long a store call may take before it counts as unavailable. */
  timeoutMs?: number;
  log: Logger;
}

/** Leases over a shared store, or over nothing (one replica): then every acquire is held at once. */
export class Leases {
  private healthyState = true;
  private lastError: string | undefined;
  private readonly ttlMs: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly store: LeaseStore | undefined,
    private readonly options: LeasesOptions,
  ) {
    this.ttlMs = options.ttlMs ?? 15_000;
    this.timeoutMs = options.timeoutMs ?? 2_000;
  }

  /** Whether leases are shared with other replicas at all. */
  get shared(): boolean {
    return this.store !== undefined;
  }

  /** The store's state: undefined without a store; else whether its last call succeeded. */
  health(): { kind: string; healthy: boolean; error?: string } | undefined {
    if (this.store === undefined) return undefined;
    return { kind: this.store.kind, healthy: this.healthyState, ...(this.lastError === undefined ? {} : { error: this.lastError }) };
  }

  /** One round trip to the store, so that its health is current (for /readyz); never throws. */
  async probe(): Promise<void> {
    if (this.store !== undefined) await this.call(this.store.read('probe')).catch(() => undefined);
  }

  /** Takes `key` for `purpose` if nobody holds it. */
  async acquire(key: string, purpose: string, ttlMs = this.ttlMs): Promise<Acquired> {
    const { store } = this;
    if (store === undefined) return { state: 'held', lease: new LocalLease(key) };
    const token = `${OWNER}-${randomBytes(6).toString('hex')}`;
    const info: LeaseInfo = { holder: OWNER, purpose };
    try {
      if (await this.call(store.setIfFree(key, token, info, ttlMs))) {
        return { state: 'held', lease: new SharedLease(this, store, key, token, info, ttlMs) };
      }
      const current = await this.call(store.read(key));
      // Expired between the two calls: try once more.
      if (current === undefined) {
        if (await this.call(store.setIfFree(key, token, info, ttlMs))) return { state: 'held', lease: new SharedLease(this, store, key, token, info, ttlMs) };
        return { state: 'busy', info: (await this.call(store.read(key))) ?? { holder: 'unknown', purpose } };
      }
      return { state: 'busy', info: current };
    } catch (err) {
      return { state: 'unavailable', reason: (err as Error).message };
    }
  }

  /** The holder of `key`, undefined when free; throws when the store cannot be reached. */
  read(key: string): Promise<LeaseInfo | undefined> {
    if (this.store === undefined) return Promise.resolve(undefined);
    return this.call(this.store.read(key));
  }

  /** Runs a store call within the timeout, keeping the health state (logged on each change). */
  async call<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the lease store did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      const result = await Promise.race([work, timeout]);
      if (!this.healthyState) {
        this.healthyState = true;
        this.lastError = undefined;
        this.options.log.info({ store: this.store?.kind }, 'the lease store answers again: replicas coordinate fills and sweeps again');
      }
      return result;
    } catch (err) {
      work.catch(() => undefined);
      const message = (err as Error).message;
      if (this.healthyState) {
        this.options.log.warn({ store: this.store?.kind, err: message }, 'the lease store is unreachable: serving on alone (no cross-replica single flight) until it answers');
      }
      this.healthyState = false;
      this.lastError = message;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.store?.close();
  }
}

/** A lease nobody else can want: one replica. */
class LocalLease implements HeldLease {
  constructor(readonly key: string) {}
  isLost(): boolean {
    return false;
  }
  track(): void {}
  async release(): Promise<void> {}
}

class SharedLease implements HeldLease {
  private lost = false;
  private released = false;
  private readonly timer: NodeJS.Timeout;
  private renewing: Promise<void> | undefined;
  private tracked: (() => number) | undefined;

  constructor(
    private readonly leases: Leases,
    private readonly store: LeaseStore,
    readonly key: string,
    private readonly token: string,
    private readonly info: LeaseInfo,
    private readonly ttlMs: number,
  ) {
    this.timer = setInterval(() => {
      this.renewing ??= this.renew().finally(() => {
        this.renewing = undefined;
      });
    }, Math.max(50, Math.floor(ttlMs / 3)));
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (this.released || this.lost) return;
    if (this.tracked !== undefined) this.info.progress = this.tracked();
    try {
      if (!(await this.leases.call(this.store.renew(this.key, this.token, this.info, this.ttlMs)))) {
        this.lost = true;
        clearInterval(this.timer);
      }
    } catch {
      // Unreachable: we cannot tell; keep working and try again at the next tick.
    }
  }

  isLost(): boolean {
    return this.lost;
  }

  track(read: () => number): void {
    this.tracked = read;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    await this.renewing;
    if (this.lost) return;
    await this.leases.call(this.store.release(this.key, this.token)).catch(() => undefined);
  }
}
