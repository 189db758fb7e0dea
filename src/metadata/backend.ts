/**
 * Picks the keyv storage adapter for `metadata.store`:
 *   memory   — a Map in this process (the default; lost on restart);
 *   file     — keyv-file at `metadata.path`, for a single instance that keeps tag freshness across restarts;
 *   redis    — @keyv/redis at `metadata.url`, shared by replicas;
 *   postgres — @keyv/postgres at `metadata.url`, shared by replicas.
 * Adapters are imported only when chosen, so a memory deployment loads none of them.
 */
import type { KeyvStoreAdapter } from 'keyv';
import type { StevedoreConfig } from '../config/types.js';

export async function openMetadataBackend(config: StevedoreConfig['metadata']): Promise<KeyvStoreAdapter | Map<string, unknown>> {
  switch (config.store) {
    case 'memory':
      return new Map();
    case 'file': {
      if (config.path === undefined) throw new Error('metadata.store file needs metadata.path');
      const { KeyvFile } = await import('keyv-file');
      return new KeyvFile({ filename: config.path, writeDelay: 100 }) as unknown as KeyvStoreAdapter;
    }
    case 'redis': {
      if (config.url === undefined) throw new Error('metadata.store redis needs metadata.url (redis://host:6379)');
      const { default: KeyvRedis } = await import('@keyv/redis');
      return new KeyvRedis(config.url) as unknown as KeyvStoreAdapter;
    }
    case 'postgres': {
      if (config.url === undefined) throw new Error('metadata.store postgres needs metadata.url (postgresql://user@host/db)');
      const { default: KeyvPostgres } = await import('@keyv/postgres');
      return new KeyvPostgres({ uri: config.url, table: 'stevedore_metadata' }) as unknown as KeyvStoreAdapter;
    }
  }
}
