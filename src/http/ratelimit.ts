/**
 * Per-client request rate (`limits.requestrate` requests per second on
 * average, `limits.requestburst` at once): a token bucket per client
 * address, checked before anything else is done for a request. A client over
 * its rate gets TOOMANYREQUESTS with a Retry-After of the seconds until one
 * token is back (at least 1).
 *
 * Memory is bounded: the buckets live in an LRU of `maxClients` entries. A
 * client pushed out of it comes back with a full bucket, which is what it
 * would have after being idle: only a flood of more distinct addresses than
 * `maxClients` between two of its requests lets it past its rate. IPv6
 * clients are counted by their /64, the block one subscriber usually gets,
 * so cycling through the addresses of one's own prefix buys nothing.
 */
import { isIP } from 'node:net';
import { LRUCache } from 'lru-cache';
import { RegistryError } from '../registry/errors.js';
import { boundedCache } from '../registry/bounded-cache.js';

export interface RequestRateOptions {
  /** Tokens added per second; must be above 0. */
  rate: number;
  /** Bucket size: requests a rested client may make at once. */
  burst: number;
  /** Buckets kept at most. */
  maxClients?: number;
  /** Milliseconds; tests inject their own clock. */
  now?: () => number;
}

export const DEFAULT_MAX_CLIENTS = 100_000;

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date. */
  at: number;
}

/** The key a client's requests are counted under: its IPv4 address, or the /64 of its IPv6 address. */
export function clientKey(address: string): string {
  if (isIP(address) !== 6 || address.includes('.')) return address;
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export class RequestRateLimiter {
  private readonly buckets: LRUCache<string, Bucket>;
  private readonly rate: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(options: RequestRateOptions) {
    if (!(options.rate > 0) || !(options.burst >= 1)) throw new RangeError('request rate must be above 0 and burst at least 1');
    this.rate = options.rate;
    this.burst = options.burst;
    this.now = options.now ?? Date.now;
    this.buckets = boundedCache({ entries: options.maxClients ?? DEFAULT_MAX_CLIENTS });
  }

  /** Buckets held now (for tests of the bound). */
  get size(): number {
    return this.buckets.size;
  }

  /** Takes a token for `client`: 0 if it may go ahead, else the seconds until one is back (at least 1). */
  take(client: string): number {
    const key = clientKey(client);
    const now = this.now();
    const bucket = this.buckets.get(key);
    if (bucket === undefined) {
      this.buckets.set(key, { tokens: this.burst - 1, at: now });
      return 0;
    }
    // A clock that steps back adds nothing, rather than taking tokens away.
    bucket.tokens = Math.min(this.burst, bucket.tokens + (Math.max(0, now - bucket.at) * this.rate) / 1000);
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.rate));
  }

  /** The refusal for a request of `client` over its rate, or undefined when it may go ahead. */
  refuse(client: string): RegistryError | undefined {
    const wait = this.take(client);
    if (wait === 0) return undefined;
    return new RegistryError('TOOMANYREQUESTS', `too many requests from this client: at most ${this.rate} per second, ${this.burst} at once`, {
      detail: { rate: this.rate, burst: this.burst },
      retryAfter: String(wait),
    });
  }
}
