/**
 * Tells a running sweep which digests gained a reference (a link written, a
 * manifest stored) while it ran. A sweep marks what is referenced, then
 * deletes the rest: content linked again between the two must survive, even
 * when its data file is old. Stores report every new reference here before
 * they write it; a sweep spares whatever it was told about.
 */
import type { Digest } from '../registry/digest.js';

export interface Watch {
  /** Digests referenced since the watch started. */
  readonly seen: ReadonlySet<string>;
  stop(): void;
}

export class ReferenceWatch {
  private readonly watches = new Set<Set<string>>();

  referenced(digest: Digest): void {
    for (const seen of this.watches) seen.add(digest.value);
  }

  start(): Watch {
    const seen = new Set<string>();
    this.watches.add(seen);
    return { seen, stop: () => this.watches.delete(seen) };
  }
}
