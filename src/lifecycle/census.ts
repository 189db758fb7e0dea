/**
 * What storage holds, read from storage itself, for `storage.quota`: the
 * bytes under `blobs/` (the keeper's count when metadata has none), the
 * revisions of every repository (seeded into the pull index), and which
 * repositories link each digest (an eviction pass's check that no other
 * repository still needs a blob before its data goes). Names and sizes
 * only: no link file is read, no blob opened.
 */
import type { Digest } from '../registry/digest.js';
import type { RepositoryName } from '../registry/names.js';
import { storedBlobs } from '../storage/blobs.js';
import { listRepositories } from '../storage/catalog.js';
import type { StorageDriver } from '../storage/driver.js';
import { children, linkedDigests } from '../storage/links.js';
import { pathFor } from '../storage/paths.js';

/** The blob bytes under `blobs/` (a prefix walk, or a stat per blob); `saw` is told of each. */
export async function countBlobs(driver: StorageDriver, saw: (digest: Digest) => void = () => undefined): Promise<{ bytes: number; blobs: number }> {
  let bytes = 0;
  let blobs = 0;
  for await (const blob of storedBlobs(driver)) {
    saw(blob.digest);
    bytes += blob.size;
    blobs += 1;
  }
  return { bytes, blobs };
}

/** Every linked revision of every repository. */
export async function* storedRevisions(driver: StorageDriver): AsyncGenerator<{ repository: RepositoryName; digest: Digest }> {
  for (const name of await listRepositories(driver, Number.MAX_SAFE_INTEGER)) {
    const repository = name as RepositoryName;
    for (const digest of await linkedDigests(driver, pathFor({ kind: 'revisionsRoot', name: repository }))) yield { repository, digest };
  }
}

/** How many repositories link each digest (`_layers` or a revision), counted once and kept up to date by the pass. */
export class Census {
  private readonly holders = new Map<string, number>();
  repositories = 0;

  static async take(driver: StorageDriver): Promise<Census> {
    const census = new Census();
    for (const name of await listRepositories(driver, Number.MAX_SAFE_INTEGER, undefined, ['_manifests', '_layers'])) {
      census.repositories += 1;
      const repository = name as RepositoryName;
      const linked = new Set<string>();
      // Names only (no link read): a deleted link still counted as a holder only keeps a blob longer.
      for (const d of await linkedDigests(driver, pathFor({ kind: 'layersRoot', name: repository }), true)) linked.add(d.value);
      for (const d of await linkedDigests(driver, pathFor({ kind: 'revisionsRoot', name: repository }), true)) linked.add(d.value);
      for (const value of linked) census.holders.set(value, (census.holders.get(value) ?? 0) + 1);
    }
    return census;
  }

  /** Repositories linking `digest`. */
  count(digest: string): number {
    return this.holders.get(digest) ?? 0;
  }

  /** A repository no longer links `digest`. */
  drop(digest: string): void {
    const n = (this.holders.get(digest) ?? 0) - 1;
    if (n > 0) this.holders.set(digest, n);
    else this.holders.delete(digest);
  }
}
