/**
 * Failed logins counted per client address and per user name in a fixed
 * window; past the limit a login is refused before its password is checked,
 * so guessing costs the guesser, not our CPU. Memory is bounded: the
 * counters live in an LRU of at most 100,000 keys.
 */
import { LRUCache } from 'lru-cache';
import { boundedCache } from '../registry/bounded-cache.js';

interface Counter {
  failures: number;
  since: number;
}

export class Lockout {
  private readonly counters: LRUCache<string, Counter>;

  constructor(
    private readonly attempts: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.counters = boundedCache({ entries: 100_000 });
  }

  /** Seconds until `keys` may try again; 0 when none of them is locked out. */
  retryAfter(keys: readonly string[]): number {
    const now = this.now();
    let wait = 0;
    for (const key of keys) {
      const counter = this.counters.get(key);
      if (counter === undefined || now - counter.since >= this.windowMs) continue;
      if (counter.failures >= this.attempts) wait = Math.max(wait, Math.ceil((counter.since + this.windowMs - now) / 1000));
    }
    return wait;
  }

  fail(keys: readonly string[]): void {
    const now = this.now();
    for (const key of keys) {
      const counter = this.counters.get(key);
      if (counter === undefined || now - counter.since >= this.windowMs) this.counters.set(key, { failures: 1, since: now });
      else counter.failures++;
    }
  }

  /** A good login clears its user's count (not the address's: one good password does not excuse the guesses). */
  succeed(userKey: string): void {
    this.counters.delete(userKey);
  }
}
