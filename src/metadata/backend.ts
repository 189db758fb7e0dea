/**
 * Picks the keyv storage adapter for `metadata.store`. Only the in-memory
 * store ships today; the others are named in config so deployments can plan
 * for them, and fail loudly at start rather than silently using memory.
 */
import type { KeyvStoreAdapter } from 'keyv';
import type { StevedoreConfig } from '../config/types.js';

export async function openMetadataBackend(config: StevedoreConfig['metadata']): Promise<KeyvStoreAdapter | Map<string, unknown>> {
  switch (config.store) {
    case 'memory':
      return new Map();
    default:
      throw new Error(`metadata.store ${config.store} is not available in this build yet; use memory`);
  }
}
