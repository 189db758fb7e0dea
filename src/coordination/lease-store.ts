/**
 * The lease stores: the compare-and-set that leases.ts needs, on the engine
 * the replicas already share for metadata (`metadata.store`).
 *
 * - Redis: `SET key value NX PX ttl` takes a free key (Redis expires it), a
 *   Lua script renews or deletes it only for the token that holds it.
 * - PostgreSQL: a table `stevedore_leases`; an upsert whose `ON CONFLICT`
 *   update applies only to an expired row takes a lease, updates and deletes
 *   check the token. Expiry is judged by the database's clock, one clock for
 *   every replica.
 *
 * Calls fail fast while the store is down (no offline queue), so a replica
 * notices at once and goes on alone.
 */
import type { StevedoreConfig } from '../config/types.js';
import type { LeaseInfo, LeaseStore } from './leases.js';

interface Stored {
  token: string;
  info: LeaseInfo;
}

const parse = (value: string | null | undefined): Stored | undefined => {
  if (value === null || value === undefined) return undefined;
  try {
    const parsed = JSON.parse(value) as Stored;
    return typeof parsed.token === 'string' && typeof parsed.info?.holder === 'string' ? parsed : undefined;
  } catch {
    return undefined;
  }
};

const RENEW = `local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).token == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
return 0`;

const RELEASE = `local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).token == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

/** The slice of node-redis' client a lease needs. */
interface RedisLike {
  set(key: string, value: string, options: { NX: true; PX: number }): Promise<string | null>;
  get(key: string): Promise<string | null>;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  connect(): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): Promise<void>;
  on(event: 'error', listener: (err: Error) => void): unknown;
  readonly isReady: boolean;
}

export class RedisLeaseStore implements LeaseStore {
  readonly kind = 'redis';
  private connecting: Promise<unknown> | undefined;

  private constructor(
    private readonly client: RedisLike,
    private readonly prefix: string,
  ) {}

  static async open(url: string, namespace: string): Promise<RedisLeaseStore> {
    const { createClient } = await import('@redis/client');
    const client = createClient({
      url,
      // Fail calls at once while disconnected rather than queueing them; reconnect in the background.
      disableOfflineQueue: true,
      socket: { connectTimeout: 2_000, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2_000) },
    }) as unknown as RedisLike;
    // Unheard, a connection error would end the process; the calls report it.
    client.on('error', () => undefined);
    const store = new RedisLeaseStore(client, `${namespace}:lease:`);
    store.connecting = client.connect().catch(() => undefined);
    return store;
  }

  private ready(): void {
    if (!this.client.isReady) throw new Error('redis is not connected');
  }

  async setIfFree(key: string, token: string, info: LeaseInfo, ttlMs: number): Promise<boolean> {
    await this.connecting;
    this.ready();
    return (await this.client.set(this.prefix + key, JSON.stringify({ token, info }), { NX: true, PX: ttlMs })) === 'OK';
  }

  async renew(key: string, token: string, info: LeaseInfo, ttlMs: number): Promise<boolean> {
    this.ready();
    return (await this.client.eval(RENEW, { keys: [this.prefix + key], arguments: [token, JSON.stringify({ token, info }), String(ttlMs)] })) === 1;
  }

  async release(key: string, token: string): Promise<void> {
    this.ready();
    await this.client.eval(RELEASE, { keys: [this.prefix + key], arguments: [token] });
  }

  async read(key: string): Promise<LeaseInfo | undefined> {
    await this.connecting;
    this.ready();
    return parse(await this.client.get(this.prefix + key))?.info;
  }

  async close(): Promise<void> {
    await this.connecting;
    if (this.client.isReady) await this.client.quit().catch(() => undefined);
    else await this.client.disconnect().catch(() => undefined);
  }
}

/** The slice of pg's Pool a lease needs. */
interface PoolLike {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  end(): Promise<void>;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

export class PostgresLeaseStore implements LeaseStore {
  readonly kind = 'postgres';
  private table: Promise<unknown> | undefined;

  private constructor(
    private readonly pool: PoolLike,
    private readonly prefix: string,
  ) {}

  static async open(url: string, namespace: string): Promise<PostgresLeaseStore> {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 2_000, idleTimeoutMillis: 30_000 }) as unknown as PoolLike;
    // An idle client's error (the server went away) is reported by the next query instead.
    pool.on('error', () => undefined);
    return new PostgresLeaseStore(pool, `${namespace}:`);
  }

  /** Creates the table on first use (and again after a failure). */
  private async ensure(): Promise<void> {
    this.table ??= this.pool
      .query(
        `CREATE TABLE IF NOT EXISTS stevedore_leases (key text PRIMARY KEY, token text NOT NULL, info jsonb NOT NULL, expires_at timestamptz NOT NULL)`,
      )
      .catch((err: unknown) => {
        this.table = undefined;
        throw err;
      });
    await this.table;
  }

  async setIfFree(key: string, token: string, info: LeaseInfo, ttlMs: number): Promise<boolean> {
    await this.ensure();
    const { rows } = await this.pool.query(
      `INSERT INTO stevedore_leases (key, token, info, expires_at) VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
       ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, info = EXCLUDED.info, expires_at = EXCLUDED.expires_at
       WHERE stevedore_leases.expires_at < now()
       RETURNING token`,
      [this.prefix + key, token, JSON.stringify(info), ttlMs],
    );
    return rows[0]?.token === token;
  }

  async renew(key: string, token: string, info: LeaseInfo, ttlMs: number): Promise<boolean> {
    await this.ensure();
    const { rows } = await this.pool.query(
      `UPDATE stevedore_leases SET info = $3, expires_at = now() + $4 * interval '1 millisecond' WHERE key = $1 AND token = $2 RETURNING token`,
      [this.prefix + key, token, JSON.stringify(info), ttlMs],
    );
    return rows.length === 1;
  }

  async release(key: string, token: string): Promise<void> {
    await this.ensure();
    await this.pool.query(`DELETE FROM stevedore_leases WHERE key = $1 AND token = $2`, [this.prefix + key, token]);
  }

  async read(key: string): Promise<LeaseInfo | undefined> {
    await this.ensure();
    const { rows } = await this.pool.query(`SELECT info FROM stevedore_leases WHERE key = $1 AND expires_at >= now()`, [this.prefix + key]);
    const info = rows[0]?.info as LeaseInfo | undefined;
    return info !== undefined && typeof info.holder === 'string' ? info : undefined;
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }
}

/** The lease store of a shared metadata store; undefined for the single-node ones (memory, file). */
export async function openLeaseStore(metadata: StevedoreConfig['metadata']): Promise<LeaseStore | undefined> {
  if (metadata.url === undefined) return undefined;
  if (metadata.store === 'redis') return RedisLeaseStore.open(metadata.url, metadata.namespace);
  if (metadata.store === 'postgres') return PostgresLeaseStore.open(metadata.url, metadata.namespace);
  return undefined;
}
