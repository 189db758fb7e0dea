/**
 * Picks the keyv storage adapter for `metadata.store`:
 *   memory   — in this process (the default; lost on restart), bounded by
 *              `metadata.maxsize` bytes: least recently used entries go first;
 *   file     — keyv-file at `metadata.path`, for a single instance that keeps tag freshness across restarts;
 *   redis    — @keyv/redis at `metadata.url`, shared by replicas;
 *   postgres — @keyv/postgres at `metadata.url`, shared by replicas.
 * Adapters are imported only when chosen, so a memory deployment loads none of them.
 */
import type { KeyvStoreAdapter } from 'keyv';
import { LRUCache } from 'lru-cache';
import type { StevedoreConfig } from '../config/types.js';

/** What an entry costs beyond its key and serialized value. */
const ENTRY_OVERHEAD = 64;

/**
 * A keyv store in memory, bounded by bytes. keyv hands it serialized strings
 * and keeps expiry times inside them, so the store itself needs no TTLs.
 */
export function boundedMemoryStore(maxBytes: number): KeyvStoreAdapter {
  const entries = new LRUCache<string, string>({
    maxSize: maxBytes,
    sizeCalculation: (value, key) => key.length + value.length + ENTRY_OVERHEAD,
  });
  const store = {
    get: (key: string) => entries.get(key),
    set: (key: string, value: unknown) => {
      entries.set(key, typeof value === 'string' ? value : JSON.stringify(value));
      return true;
    },
    delete: (key: string) => entries.delete(key),
    clear: () => entries.clear(),
    has: (key: string) => entries.has(key),
    on: () => store,
  };
  return store as unknown as KeyvStoreAdapter;
}

export async function openMetadataBackend(config: StevedoreConfig['metadata']): Promise<KeyvStoreAdapter | Map<string, unknown>> {
  switch (config.store) {
    case 'memory':
      return boundedMemoryStore(config.maxSize);
    case 'file': {
      if (config.path === undefined) throw new Error('metadata.store file needs metadata.path');
      const { KeyvFile } = await import('keyv-file');
      return new KeyvFile({ filename: config.path, writeDelay: 100 }) as unknown as KeyvStoreAdapter;
    }
    case 'redis': {
      if (config.url === undefined) throw new Error('metadata.store redis needs metadata.url (redis://host:6379)');
      const { default: KeyvRedis } = await import('@keyv/redis');
      // Calls fail at once while Redis is down (keyv then reports and serves on) instead of queueing
      // until it is back, which would hold every request that reads metadata; it reconnects meanwhile.
      const store = new KeyvRedis(
        { url: config.url, disableOfflineQueue: true, socket: { connectTimeout: 2_000, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2_000) } },
        { throwOnConnectError: true, connectionTimeout: 2_000 },
      );
      // node-redis emits 'error' on its client when the connection drops, and @keyv/redis does not listen:
      // unheard, it would end the process. Passed on, keyv reports it as any failure of the store.
      store.client.on('error', (err: unknown) => store.emit('error', err));
      // Connected before the first request: @keyv/redis connects on the first command, and with the
      // offline queue off, the commands sent while that connect is under way fail (seen: the first
      // pull after start logged "The client is offline"). A store down at startup is not fatal: this
      // gives up after connectionTimeout and the client goes on reconnecting.
      await store.getClient().catch(() => undefined);
      return store as unknown as KeyvStoreAdapter;
    }
    case 'postgres': {
      if (config.url === undefined) throw new Error('metadata.store postgres needs metadata.url (postgresql://user@host/db)');
      const { default: KeyvPostgres } = await import('@keyv/postgres');
      return new KeyvPostgres({ uri: config.url, table: 'stevedore_metadata' }) as unknown as KeyvStoreAdapter;
    }
  }
}
