/**
 * Docker Hub's pull rate limit, as its answers announce it:
 * `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600`
 * (pulls per window of w seconds). Only manifest GETs count; HEADs are free.
 *
 * - A 429 means "stop": every manifest request is refused here, without
 *   asking, until its Retry-After (else the window, else a minute) has passed.
 * - `remaining: 0` on an answer means the next GET would be refused: manifest
 *   GETs are refused here for the window, while free HEADs still go out and
 *   lift the block as soon as one reports pulls left.
 * Refused requests get TOOMANYREQUESTS with a Retry-After, so cached content
 * is served (stale tags with a warning) and uncached content is a clear 429.
 * The remaining count is logged when it falls low.
 */
import type { Logger } from 'pino';
import { RegistryError } from '../registry/errors.js';

/** Remaining pulls at or below this share of the limit are logged. */
const LOW_SHARE = 0.1;
const DEFAULT_BLOCK_MS = 60_000;

export interface RateLimitState {
  limit?: number;
  remaining?: number;
  windowSeconds?: number;
}

/** `76;w=21600` → { count: 76, window: 21600 }. */
function parseLimit(header: string | undefined): { count: number; window?: number } | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?/.exec(header);
  if (match === null) return undefined;
  return match[2] === undefined ? { count: Number(match[1]) } : { count: Number(match[1]), window: Number(match[2]) };
}

export class RateLimit {
  private state: RateLimitState = {};
  /** Until then no manifest request goes out (after a 429). */
  private blockedUntil = 0;
  /** Until then no manifest GET goes out (pulls exhausted). */
  private pullsBlockedUntil = 0;
  private warnedLow = false;

  constructor(
    private readonly upstream: string,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  get current(): Readonly<RateLimitState> {
    return this.state;
  }

  /** The refusal for a request that must not go out now, or undefined. */
  refusal(kind: string, method: string): RegistryError | undefined {
    if (kind !== 'manifests') return undefined;
    const now = this.now();
    const until = method === 'GET' ? Math.max(this.blockedUntil, this.pullsBlockedUntil) : this.blockedUntil;
    if (now >= until) return undefined;
    const seconds = Math.max(1, Math.ceil((until - now) / 1000));
    return new RegistryError('TOOMANYREQUESTS', `upstream ${this.upstream} pull rate limit reached; not asking again for ${seconds}s`, {
      retryAfter: String(seconds),
      detail: { upstream: this.upstream, ...this.state },
    });
  }

  /** Learns from an answer's status and rate-limit headers. */
  observe(kind: string, status: number, headers: Record<string, string>): void {
    const limit = parseLimit(headers['ratelimit-limit']);
    const remaining = parseLimit(headers['ratelimit-remaining']);
    if (limit !== undefined) this.state.limit = limit.count;
    const window = remaining?.window ?? limit?.window;
    if (window !== undefined) this.state.windowSeconds = window;
    const now = this.now();
    if (status === 429) {
      const retry = Number(headers['retry-after']);
      const ms = Number.isFinite(retry) && retry > 0 ? retry * 1000 : window !== undefined ? window * 1000 : DEFAULT_BLOCK_MS;
      this.blockedUntil = now + ms;
      this.log.warn({ upstream: this.upstream, retryAfterMs: ms, ...this.state }, 'upstream rate limit hit: serving from cache, not asking until it allows');
    }
    if (remaining === undefined) return;
    this.state.remaining = remaining.count;
    if (remaining.count === 0 && kind === 'manifests' && status !== 429) {
      this.pullsBlockedUntil = now + (window !== undefined ? window * 1000 : DEFAULT_BLOCK_MS);
      this.log.warn({ upstream: this.upstream, ...this.state }, 'upstream pull rate limit exhausted: manifest GETs wait, cached content is served');
    } else if (remaining.count > 0) {
      this.pullsBlockedUntil = 0;
    }
    const low = this.state.limit !== undefined && remaining.count <= this.state.limit * LOW_SHARE;
    if (low && !this.warnedLow) this.log.warn({ upstream: this.upstream, ...this.state }, 'upstream pull rate limit running low');
    this.warnedLow = low;
  }
}
