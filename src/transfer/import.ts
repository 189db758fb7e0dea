/**
 * Import: a bundle into local storage, in two phases.
 *
 *   1. Verify. The tar is read entry by entry (never a blob whole in
 *      memory): the bundle index must come first; every later entry must be
 *      a regular file the index lists, of the size it lists. Each blob goes
 *      through the blob store's verified ingest (an upload session, moved to
 *      its digest's place only if the digest matches); one already stored is
 *      hashed and compared all the same, so a damaged bundle is refused
 *      whatever the target holds. Then every listed file must have arrived,
 *      each manifest must find its blobs in the bundle, and schema1
 *      signatures must verify. A blob in place but linked nowhere is
 *      invisible to clients.
 *   2. Link, only once all of that passed: revisions, layers, schema1
 *      signatures, then tags (last, so a tag never names a revision that is
 *      not linked). Links already there are not written again, so importing
 *      twice changes nothing.
 *
 * If phase 1 fails, the blobs it added are removed (unless something linked
 * them meanwhile), with the directories it created: the storage is as it was.
 */
import { createReadStream } from 'node:fs';
import type { Logger } from 'pino';
import type { ReadEntry } from 'tar';
import { type Digest, Digester, digestOf } from '../registry/digest.js';
import { isRegistryError } from '../registry/errors.js';
import { parseManifest } from '../registry/manifest.js';
import type { RepositoryName } from '../registry/names.js';
import { buildPrettySignature, parseSignature, verifySignatures } from '../registry/schema1.js';
import type { StorageDriver } from '../storage/driver.js';
import type { LocalStorage } from '../storage/local.js';
import { pathFor } from '../storage/paths.js';
import { BUNDLE_INDEX_PATH, type BundleFile, type BundleIndex, BundleEntries, MAX_INDEX_BYTES, parseBundleIndex } from './bundle.js';
import { TransferError } from './errors.js';
import { tarEntries } from './tar.js';

export interface ImportOptions {
  storage: LocalStorage;
  /** Path of the bundle tar. */
  bundle: string;
  log: Logger;
}

export interface ImportResult {
  images: { repository: string; tag?: string; digest: string }[];
  /** Blobs written into storage. */
  blobsAdded: number;
  /** Blobs storage held already (verified against the bundle all the same). */
  blobsPresent: number;
  bytesAdded: number;
  /** Link files written: revisions, layers, signatures, tags. */
  linksAdded: number;
}

/** Reads a whole (small, size-checked) entry. */
async function readWhole(entry: ReadEntry): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of entry as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const truncated = (path: string, got: number, size: number): TransferError =>
  new TransferError('ERR_BUNDLE_TRUNCATED', `the bundle is truncated: ${path} ends after ${got} of ${size} bytes`);

const mismatch = (path: string, expected: Digest, actual: Digest): TransferError =>
  new TransferError('ERR_BUNDLE_DIGEST', `${path} does not match its digest: expected ${expected.value}, the content hashes to ${actual.value}; the bundle is damaged or was altered`);

/** Directories from `dir` up that do not exist yet (deepest first). */
async function missingDirectories(driver: StorageDriver, dir: string): Promise<string[]> {
  const out: string[] = [];
  for (let path = dir; path.length > 1 && (await driver.stat(path)) === undefined; path = path.slice(0, path.lastIndexOf('/'))) out.push(path);
  return out;
}

class Import {
  readonly added: Digest[] = [];
  /** Directories this import created, to remove again if it fails. */
  readonly createdDirs = new Set<string>();
  blobsPresent = 0;
  bytesAdded = 0;
  linksAdded = 0;
  private owners = new Map<string, RepositoryName>();

  constructor(
    private readonly storage: LocalStorage,
    readonly index: BundleIndex,
  ) {
    // Each blob's upload session goes under the first image that links it.
    for (const image of index.images) {
      for (const digest of [...image.manifests, ...image.blobs, ...image.referrers, ...image.signatures.flatMap((s) => s.signatures)]) {
        if (!this.owners.has(digest.value)) this.owners.set(digest.value, image.repository);
      }
    }
  }

  private async creating(dir: string): Promise<void> {
    for (const path of await missingDirectories(this.storage.driver, dir)) this.createdDirs.add(path);
  }

  /** A blob entry: verified into place, or verified against what is stored. */
  async blob(entry: ReadEntry, file: BundleFile): Promise<void> {
    const { blobs } = this.storage;
    if ((await blobs.stat(file.digest)) !== undefined) {
      const digester = new Digester(file.digest.algorithm);
      for await (const chunk of entry as AsyncIterable<Buffer>) digester.update(chunk);
      if (digester.size < file.size) throw truncated(file.path, digester.size, file.size);
      const actual = digester.digest();
      if (actual.value !== file.digest.value) throw mismatch(file.path, file.digest, actual);
      this.blobsPresent += 1;
      return;
    }
    const owner = this.owners.get(file.digest.value) ?? this.index.images[0]?.repository;
    if (owner === undefined) throw new TransferError('ERR_BUNDLE_INDEX', `${file.path} belongs to no image`);
    await this.creating(pathFor({ kind: 'uploadsRoot', name: owner }));
    await this.creating(pathFor({ kind: 'blobDir', digest: file.digest }));
    const ingest = await blobs.begin(owner, file.digest);
    try {
      for await (const chunk of entry as AsyncIterable<Buffer>) await ingest.write(chunk);
      if (ingest.size < file.size) throw truncated(file.path, ingest.size, file.size);
      try {
        ingest.verify(file.size);
      } catch (err) {
        if (isRegistryError(err) && err.code === 'DIGEST_INVALID') {
          const reason = err.message.replace(/^provided digest did not match uploaded content: /, '');
          throw new TransferError('ERR_BUNDLE_DIGEST', `${file.path} does not match its digest ${file.digest.value} (${reason}); the bundle is damaged or was altered`, { cause: err });
        }
        throw err;
      }
      await ingest.commit(file.size);
      this.added.push(file.digest);
      this.bytesAdded += file.size;
    } catch (err) {
      await ingest.cancel();
      throw err;
    }
  }

  /** Each image's manifests find their blobs in the bundle; schema1 signatures verify. */
  async check(): Promise<void> {
    const { storage } = this;
    for (const image of this.index.images) {
      const blobs = new Set(image.blobs.map((d) => d.value));
      for (const digest of [...image.manifests, ...image.referrers]) {
        let parsed;
        try {
          parsed = parseManifest(await storage.blobs.get(digest));
        } catch (err) {
          throw new TransferError('ERR_BUNDLE_INDEX', `${digest.value}, a manifest of ${image.repository}, is not a manifest: ${(err as Error).message}`);
        }
        for (const blob of parsed.blobs) {
          if (!blobs.has(blob.digest.value)) {
            throw new TransferError('ERR_BUNDLE_MISSING', `manifest ${digest.value} of ${image.repository} needs blob ${blob.digest.value}, which the bundle does not carry`);
          }
        }
      }
      for (const { revision, signatures } of image.signatures) {
        const canonical = await storage.blobs.get(revision);
        try {
          const parsed = await Promise.all(signatures.map(async (d) => parseSignature(await storage.blobs.get(d))));
          await verifySignatures({ canonical, signatures: parsed });
          buildPrettySignature(canonical, parsed);
        } catch (err) {
          throw new TransferError('ERR_BUNDLE_DIGEST', `the schema1 signatures of ${revision.value} in ${image.repository} do not verify: ${(err as Error).message}`);
        }
      }
    }
  }

  /** Phase 2: every link the images need that is not there yet. */
  async link(log: Logger): Promise<void> {
    const { storage } = this;
    for (const image of this.index.images) {
      const name = image.repository;
      for (const digest of [...image.manifests, ...image.referrers]) {
        if (await storage.revisions.has(name, digest)) continue;
        await storage.revisions.link(name, digest);
        this.linksAdded += 1;
      }
      for (const digest of image.blobs) {
        if (await storage.layers.has(name, digest)) continue;
        await storage.layers.link(name, digest);
        this.linksAdded += 1;
      }
      for (const { revision, signatures } of image.signatures) {
        for (const digest of signatures) {
          if (await storage.signatures.add(name, revision, parseSignature(await storage.blobs.get(digest)))) this.linksAdded += 1;
        }
      }
      const tags = [...(image.tag === undefined ? [] : [{ tag: image.tag, digest: image.digest }]), ...image.tags];
      for (const { tag, digest } of tags) {
        const current = await storage.tags.resolve(name, tag);
        if (current?.value === digest.value) continue;
        if (current !== undefined) log.info({ repository: name, tag, from: current.value, to: digest.value }, 'import moves a tag');
        await storage.tags.tag(name, tag, digest);
        this.linksAdded += 1;
      }
    }
  }

  /** Undoes phase 1: the blobs it added (unless linked by someone meanwhile), then the directories it created. */
  async rollback(log: Logger): Promise<void> {
    const { storage } = this;
    const repositories = [...new Set(this.index.images.map((i) => i.repository))];
    for (const digest of this.added) {
      let linked = false;
      for (const name of repositories) linked ||= (await storage.layers.has(name, digest)) || (await storage.revisions.has(name, digest));
      if (linked) continue;
      await storage.driver.delete(pathFor({ kind: 'blobDir', digest })).catch((err: unknown) => log.warn({ err, digest: digest.value }, 'removing a blob of a refused bundle failed'));
    }
    const deepestFirst = [...this.createdDirs].sort((a, b) => b.split('/').length - a.split('/').length);
    for (const dir of deepestFirst) {
      const entries = await storage.driver.list(dir).catch(() => undefined);
      if (entries !== undefined && entries.length === 0) await storage.driver.delete(dir).catch(() => undefined);
    }
  }
}

export async function importBundle(options: ImportOptions): Promise<ImportResult> {
  const { storage, log } = options;
  const source = createReadStream(options.bundle);
  // Opening errors (no such file) surface before anything is read.
  await new Promise<void>((resolve, reject) => {
    source.once('open', () => resolve());
    source.once('error', reject);
  });
  let run: Import | undefined;
  try {
    let entries: BundleEntries | undefined;
    for await (const entry of tarEntries(source)) {
      if (entries === undefined) {
        if (entry.path !== BUNDLE_INDEX_PATH || (entry.type !== 'File' && entry.type !== 'OldFile')) {
          throw new TransferError('ERR_BUNDLE_INDEX', `not a Stevedore bundle: its first entry is ${JSON.stringify(entry.path.slice(0, 300))}, not ${BUNDLE_INDEX_PATH}`);
        }
        if (entry.size > MAX_INDEX_BYTES) throw new TransferError('ERR_BUNDLE_INDEX', `${BUNDLE_INDEX_PATH} is larger than ${MAX_INDEX_BYTES} bytes`);
        const bytes = await readWhole(entry);
        if (bytes.byteLength < entry.size) throw truncated(BUNDLE_INDEX_PATH, bytes.byteLength, entry.size);
        entries = new BundleEntries(parseBundleIndex(bytes));
        run = new Import(storage, entries.index);
        continue;
      }
      const file = entries.check({ path: entry.path, type: entry.type, size: entry.size });
      if (file.path.startsWith('blobs/')) {
        await (run as Import).blob(entry, file);
      } else {
        const content = await readWhole(entry);
        if (content.byteLength < file.size) throw truncated(file.path, content.byteLength, file.size);
        const actual = digestOf(content, file.digest.algorithm);
        if (actual.value !== file.digest.value) throw mismatch(file.path, file.digest, actual);
      }
    }
    if (entries === undefined || run === undefined) throw new TransferError('ERR_BUNDLE_INDEX', 'not a Stevedore bundle: the tar is empty');
    const missing = entries.missing();
    if (missing.length > 0) {
      const shown = missing.slice(0, 3).map((f) => f.path).join(', ');
      throw new TransferError('ERR_BUNDLE_MISSING', `the bundle lacks ${missing.length} of the files its index lists (${shown}${missing.length > 3 ? ', …' : ''}): truncated, or altered`);
    }
    await run.check();
  } catch (err) {
    await run?.rollback(log);
    throw err;
  }
  await run.link(log);
  return {
    images: run.index.images.map((i) => ({ repository: i.repository, ...(i.tag === undefined ? {} : { tag: i.tag }), digest: i.digest.value })),
    blobsAdded: run.added.length,
    blobsPresent: run.blobsPresent,
    bytesAdded: run.bytesAdded,
    linksAdded: run.linksAdded,
  };
}
