/**
 * The mark of mark and sweep, one repository at a time, shared by `proxy.ttl`
 * expiry (src/lifecycle/expiry.ts) and `stevedore gc` (src/lifecycle/gc.ts).
 *
 * A repository's kept manifests are its root revisions (gc: every linked
 * revision, or only the tagged ones with --delete-untagged; expiry: those
 * pulled within the ttl) and, transitively:
 *   - the children of a kept index or manifest list (revisions too);
 *   - the subject of a kept referrer (a signature without its image is noise);
 *   - with `referrers`, every revision whose `subject` is a kept manifest
 *     (gc keeps an image's signatures and SBOMs with it; expiry lets them
 *     age on their own pulls).
 * What they reference is kept with them: config and layers (schema1:
 * fsLayers), and the schema1 signature blobs linked beside a revision.
 *
 * Only one repository's revisions are held at a time: the caller folds the
 * result into its own set of marked digests and lets the rest go.
 */
import type { Digest } from '../registry/digest.js';
import { isRegistryError } from '../registry/errors.js';
import { type ParsedManifest, parseManifest } from '../registry/manifest.js';
import { MediaType } from '../registry/mediatypes.js';
import type { RepositoryName } from '../registry/names.js';
import { linkedDigests } from '../storage/links.js';
import type { LocalStorage } from '../storage/local.js';
import { pathFor } from '../storage/paths.js';

/** A linked revision as read: parsed, or why not. */
export type RevisionContent =
  | { state: 'parsed'; manifest: ParsedManifest }
  /** The revision's blob is not in storage: a dangling link. */
  | { state: 'missing' }
  /** The blob is there but is no manifest this code can read (kept whole, its references unknown). */
  | { state: 'invalid'; error: string };

export interface MarkOptions {
  /** Whether a revision is kept in its own right. Called once per linked revision, in walk order. */
  root(digest: Digest): boolean | Promise<boolean>;
  /** Keep every revision whose subject is kept (gc); expiry does not. */
  referrers: boolean;
}

export interface MarkedRevision {
  digest: Digest;
  kept: boolean;
  /** Read for kept revisions, and for every revision when `referrers` is set; else undefined. */
  content?: RevisionContent;
  /** The schema1 signature blobs linked to a kept revision. */
  signatures: Digest[];
}

export interface MarkedRepository {
  /** Every linked revision, in the order a walk of `_manifests/revisions` lists them (Distribution's). */
  revisions: MarkedRevision[];
  /** Digest values of the kept revisions. */
  kept: Set<string>;
  /** Digest values of the blobs the kept manifests reference (configs, layers, signatures; not child manifests). */
  blobs: Set<string>;
}

/** Reads a revision's manifest, telling a missing blob from one that does not parse. */
export async function readRevision(storage: LocalStorage, digest: Digest): Promise<RevisionContent> {
  let payload: Buffer;
  try {
    payload = await storage.blobs.get(digest);
  } catch (err) {
    if (isRegistryError(err) && err.code === 'BLOB_UNKNOWN') return { state: 'missing' };
    throw err;
  }
  try {
    return { state: 'parsed', manifest: parseManifest(payload) };
  } catch (err) {
    return { state: 'invalid', error: (err as Error).message };
  }
}

/** Reads at once per repository: enough to keep the disk busy, few enough for any file limit. */
const READS_AT_ONCE = 16;

/** `fn` over `items`, at most `limit` at a time; results in the order of `items`. */
export async function mapConcurrent<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Only a schema1 revision has signatures beside it (or one that does not parse: it may be one). */
const mayHaveSignatures = (content: RevisionContent): boolean =>
  content.state === 'invalid' ||
  (content.state === 'parsed' && (content.manifest.mediaType === MediaType.DockerSchema1 || content.manifest.mediaType === MediaType.DockerSchema1Signed));

export async function markRepository(storage: LocalStorage, name: RepositoryName, options: MarkOptions): Promise<MarkedRepository> {
  const digests = await linkedDigests(storage.driver, pathFor({ kind: 'revisionsRoot', name }));
  const revisions = new Map<string, MarkedRevision>();
  for (const digest of digests) revisions.set(digest.value, { digest, kept: false, signatures: [] });

  const content = async (revision: MarkedRevision): Promise<RevisionContent> => {
    revision.content ??= await readRevision(storage, revision.digest);
    return revision.content;
  };
  // subject → the revisions referring to it, when referrers are kept with their subject.
  const referrersOf = new Map<string, string[]>();
  if (options.referrers) {
    for (const [i, read] of (await mapConcurrent([...revisions.values()], READS_AT_ONCE, content)).entries()) {
      const subject = read.state === 'parsed' ? read.manifest.subject?.digest.value : undefined;
      if (subject !== undefined) referrersOf.set(subject, [...(referrersOf.get(subject) ?? []), (digests[i] as Digest).value]);
    }
  }

  const kept = new Set<string>();
  let wave: MarkedRevision[] = [];
  const keep = (value: string): void => {
    const revision = revisions.get(value);
    if (revision === undefined || revision.kept) return; // not linked here: nothing of this repository to keep
    revision.kept = true;
    kept.add(value);
    wave.push(revision);
  };
  for (const revision of revisions.values()) if (await options.root(revision.digest)) keep(revision.digest.value);

  // Breadth first: what a wave of kept revisions keeps is the next wave.
  const blobs = new Set<string>();
  while (wave.length > 0) {
    const current = wave;
    wave = [];
    await mapConcurrent(current, READS_AT_ONCE, async (revision) => {
      const read = await content(revision);
      if (read.state === 'parsed') {
        for (const blob of read.manifest.blobs) blobs.add(blob.digest.value);
        for (const child of read.manifest.manifests) keep(child.digest.value);
        if (read.manifest.subject !== undefined) keep(read.manifest.subject.digest.value);
      }
      for (const referrer of referrersOf.get(revision.digest.value) ?? []) keep(referrer);
      if (mayHaveSignatures(read)) revision.signatures = await storage.signatures.digests(name, revision.digest);
      for (const signature of revision.signatures) blobs.add(signature.value);
    });
  }
  return { revisions: [...revisions.values()], kept, blobs };
}
