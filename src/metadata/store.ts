/**
 * Cache metadata: tag freshness and last access times, in keyv so that
 * several replicas can share it (Redis, PostgreSQL) while a single instance
 * keeps it in memory. Everything here is advisory: losing it costs upstream
 * round trips, never correctness, because content lives in storage.
 */
import Keyv, { type KeyvStoreAdapter } from 'keyv';
import type { Logger } from 'pino';

export interface TagState {
  digest: string;
  /** When the upstream last confirmed the tag points at `digest` (ms since epoch). */
  checkedAt: number;
}

export interface MetadataOptions {
  /** A keyv store adapter (e.g. from @keyv/redis); in memory when absent. */
  store?: KeyvStoreAdapter | Map<string, unknown>;
  namespace?: string;
  now?: () => number;
  /** Where failures of the store are reported (at most one line per ERROR_LOG_INTERVAL_MS). */
  log?: Logger;
}

/** Failures of the store are logged at most this often, with the number left unsaid in between. */
const ERROR_LOG_INTERVAL_MS = 10_000;

export class MetadataStore {
  private readonly keyv: Keyv;
  readonly now: () => number;
  private pings = 0;

  constructor(options: MetadataOptions = {}) {
    this.keyv = new Keyv({ store: options.store ?? new Map(), namespace: options.namespace ?? 'stevedore' });
    this.now = options.now ?? Date.now;
    const { log } = options;
    let lastLogged = Number.NEGATIVE_INFINITY;
    let suppressed = 0;
    // Metadata is advisory: a failing store costs upstream round trips, so it is reported, never fatal.
    this.keyv.on('error', (err: unknown) => {
      const now = Date.now();
      if (now - lastLogged < ERROR_LOG_INTERVAL_MS) {
        suppressed += 1;
        return;
      }
      log?.warn({ err, suppressed }, 'metadata store failed; serving on without it');
      lastLogged = now;
      suppressed = 0;
    });
  }

  private static tagKey(upstream: string, repository: string, tag: string): string {
    return `tag:${upstream}:${repository}:${tag}`;
  }

  async getTag(upstream: string, repository: string, tag: string): Promise<TagState | undefined> {
    return (await this.keyv.get<TagState>(MetadataStore.tagKey(upstream, repository, tag))) ?? undefined;
  }

  async setTag(upstream: string, repository: string, tag: string, digest: string): Promise<TagState> {
    const state = { digest, checkedAt: this.now() };
    await this.keyv.set(MetadataStore.tagKey(upstream, repository, tag), state);
    return state;
  }

  /** A cached answer about a subject's referrers, per upstream and repository. */
  async getReferrers<T>(upstream: string, repository: string, subject: string): Promise<T | undefined> {
    return (await this.keyv.get<T>(`referrers:${upstream}:${repository}:${subject}`)) ?? undefined;
  }

  async setReferrers<T>(upstream: string, repository: string, subject: string, value: T): Promise<void> {
    await this.keyv.set(`referrers:${upstream}:${repository}:${subject}`, value);
  }

  /** Records a pull of a manifest or blob: `proxy.ttl` counts from here. */
  async touch(digest: string): Promise<void> {
    await this.keyv.set(`access:${digest}`, this.now());
  }

  /** Drops the access record of content that is gone, so records do not outlive what they describe. */
  async forget(digest: string): Promise<void> {
    await this.keyv.delete(`access:${digest}`);
  }

  async lastAccess(digest: string): Promise<number | undefined> {
    return (await this.keyv.get<number>(`access:${digest}`)) ?? undefined;
  }

  /**
   * A write and a read back of this instance's own key (kept a minute), for
   * /readyz: true only if the value came back. keyv turns a failing store
   * into `false` and `undefined` rather than throwing; a store that never
   * answers is left to the caller's timeout.
   */
  async ping(instance: string): Promise<boolean> {
    const key = `health:${instance}`;
    const token = `${this.now()}-${++this.pings}`;
    if (!(await this.keyv.set(key, token, 60_000))) return false;
    return (await this.keyv.get<string>(key)) === token;
  }

  async close(): Promise<void> {
    await this.keyv.disconnect();
  }
}
