/**
 * In-memory caches bounded by entries and, where entries vary in size, by
 * bytes, without reserving memory for entries they do not hold.
 *
 * lru-cache's `max` pre-allocates its index arrays for `max` entries (and
 * two more for a TTL): about 2.8 MB per 100,000-entry cache, 4.4 MB with a
 * TTL, held from the start whether or not anything is cached (measured: 15 MiB
 * of a fresh server's 27 MiB heap). Here the entry bound is a size bound
 * instead, which lru-cache tracks in arrays that grow as entries arrive:
 * every entry costs at least `bytes / entries` (or 1 with no byte bound), so
 * the cache never holds more than `entries` of them, nor more than `bytes`.
 */
import { LRUCache } from 'lru-cache';

type Options<K extends {}, V extends {}> = Omit<LRUCache.Options<K, V, unknown>, 'max' | 'maxSize' | 'sizeCalculation' | 'maxEntrySize'>;

export interface CacheBounds<K, V> {
  /** Most entries held. */
  entries: number;
  /** Most bytes held, as `sizeOf` counts them; absent: bounded by entries only. */
  bytes?: number;
  sizeOf?: (value: V, key: K) => number;
}

export function boundedCache<K extends {}, V extends {}>(bounds: CacheBounds<K, V>, options: Options<K, V> = {}): LRUCache<K, V> {
  const entries = Math.max(1, Math.floor(bounds.entries));
  const { bytes, sizeOf } = bounds;
  if (bytes === undefined || sizeOf === undefined) {
    return new LRUCache<K, V>({ ...options, maxSize: entries, sizeCalculation: () => 1 });
  }
  const least = Math.max(1, Math.ceil(bytes / entries));
  return new LRUCache<K, V>({
    ...options,
    maxSize: Math.max(least, Math.floor(bytes)),
    sizeCalculation: (value, key) => Math.max(least, Math.ceil(sizeOf(value, key))),
  });
}
