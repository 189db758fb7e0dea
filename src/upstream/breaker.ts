/**
 * A circuit breaker per upstream, after verdaccio's uplinks: `maxFails`
 * consecutive failures (network errors, timeouts, 5xx) take the upstream
 * offline for `failTimeoutMs`; then one probe request is let through
 * (half-open). Its success brings the upstream back, its failure starts
 * another offline period. While offline, callers fail fast and can serve
 * what they have cached instead of waiting on timeouts.
 *
 *   closed --maxFails failures--> open --failTimeout--> half-open --ok--> closed
 *                                  ^                        |
 *                                  +--------failure---------+
 *
 * Each permit `allow()` hands out must be settled by exactly one of
 * `success()`, `failure()` or `release()` (the request ended without telling
 * anything about the upstream, e.g. the client went away).
 */
import type { Logger } from 'pino';

export interface BreakerOptions {
  /** Upstream name, for log lines. */
  name: string;
  logger: Logger;
  /** Consecutive failures before going offline; default 3. */
  maxFails?: number;
  /** How long to stay offline before probing; default 30 s. */
  failTimeoutMs?: number;
  now?: () => number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Permission for one request; `probe` marks the single request of the half-open state. */
export interface Permit {
  readonly probe: boolean;
}

const REQUEST: Permit = Object.freeze({ probe: false });

export class CircuitBreaker {
  private readonly maxFails: number;
  private readonly failTimeoutMs: number;
  private readonly now: () => number;
  private failures = 0;
  private openedAt: number | undefined;
  private offlineSince: number | undefined;
  private probing = false;

  constructor(private readonly options: BreakerOptions) {
    this.maxFails = Math.max(1, options.maxFails ?? 3);
    this.failTimeoutMs = options.failTimeoutMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  get state(): BreakerState {
    if (this.openedAt === undefined) return 'closed';
    return this.probing || this.now() - this.openedAt >= this.failTimeoutMs ? 'half-open' : 'open';
  }

  /** True while a request would be refused: offline and not yet time to probe, or the probe is still out. */
  isOpen(): boolean {
    if (this.openedAt === undefined) return false;
    return this.probing || this.now() - this.openedAt < this.failTimeoutMs;
  }

  /** Milliseconds until a probe will be allowed (0 when closed or due). */
  retryInMs(): number {
    if (this.openedAt === undefined) return 0;
    return Math.max(0, this.openedAt + this.failTimeoutMs - this.now());
  }

  /** May a request go out now? Undefined means no; in half-open state only the one probe may. */
  allow(): Permit | undefined {
    if (this.openedAt === undefined) return REQUEST;
    if (this.isOpen()) return undefined;
    this.probing = true;
    this.options.logger.debug({ upstream: this.options.name }, 'probing offline upstream');
    return { probe: true };
  }

  /** The upstream answered (any status below 500): whoever's request it was, it is reachable. */
  success(_permit?: Permit): void {
    this.failures = 0;
    this.probing = false;
    if (this.openedAt === undefined) return;
    const offlineMs = this.now() - (this.offlineSince ?? this.now());
    this.openedAt = undefined;
    this.offlineSince = undefined;
    this.options.logger.info({ upstream: this.options.name, offlineMs }, 'upstream back online');
  }

  failure(reason: string, permit: Permit = REQUEST): void {
    this.failures++;
    if (this.openedAt !== undefined) {
      // A failed probe restarts the wait; a late failure of a request sent before going offline changes nothing.
      if (permit.probe) {
        this.probing = false;
        this.openedAt = this.now();
        this.options.logger.debug({ upstream: this.options.name, reason }, 'upstream still offline');
      }
      return;
    }
    if (this.failures < this.maxFails) return;
    this.openedAt = this.now();
    this.offlineSince = this.openedAt;
    this.options.logger.warn(
      { upstream: this.options.name, failures: this.failures, failTimeoutMs: this.failTimeoutMs, reason },
      'upstream offline',
    );
  }

  /** The request ended without a verdict; if it was the probe, the next request probes. */
  release(permit: Permit): void {
    if (permit.probe) this.probing = false;
  }
}
