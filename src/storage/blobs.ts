/**
 * The global, content-addressed blob store. Content is written to a private
 * upload path while it is hashed, and moved to its digest's place only when
 * the digest matches: a blob path never holds bytes that hash to something
 * else, whatever the source did (cut connection, wrong byte, crash).
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { blobUnknown, digestInvalid } from '../registry/errors.js';
import { type Digest, Digester, digestOf, tryParseDigest } from '../registry/digest.js';
import { MediaType } from '../registry/mediatypes.js';
import type { RepositoryName } from '../registry/names.js';
import type { BlobBody, BlobDescriptor } from '../registry/services.js';
import type { ByteRange, FileWriter, StorageDriver } from './driver.js';
import { isPathNotFound } from './driver.js';
import { children } from './links.js';
import { pathFor } from './paths.js';
import type { ReferenceWatch } from './references.js';

export class BlobStore {
  constructor(
    readonly driver: StorageDriver,
    private readonly references?: ReferenceWatch,
  ) {}

  async stat(digest: Digest): Promise<BlobDescriptor | undefined> {
    const info = await this.driver.stat(pathFor({ kind: 'blobData', digest }));
    if (info === undefined || info.isDir) return undefined;
    return { digest, size: info.size, mediaType: MediaType.OctetStream };
  }

  async get(digest: Digest): Promise<Buffer> {
    try {
      return await this.driver.getContent(pathFor({ kind: 'blobData', digest }));
    } catch (err) {
      if (isPathNotFound(err)) throw blobUnknown(digest.value);
      throw err;
    }
  }

  async reader(digest: Digest, range?: ByteRange): Promise<Readable> {
    try {
      return await this.driver.reader(pathFor({ kind: 'blobData', digest }), range);
    } catch (err) {
      if (isPathNotFound(err)) throw blobUnknown(digest.value);
      throw err;
    }
  }

  /** The blob as a file to copy from, or as a stream where the driver has no random access. */
  async body(digest: Digest, range?: ByteRange): Promise<BlobBody> {
    if (this.driver.open === undefined) return { stream: await this.reader(digest, range) };
    try {
      return { file: await this.driver.open(pathFor({ kind: 'blobData', digest })) };
    } catch (err) {
      if (isPathNotFound(err)) throw blobUnknown(digest.value);
      throw err;
    }
  }

  /** Stores small content whole (manifests, signatures); its digest is computed here. */
  async put(content: Buffer, algorithm: Digest['algorithm'] = 'sha256'): Promise<BlobDescriptor> {
    const digest = digestOf(content, algorithm);
    this.references?.referenced(digest);
    const existing = await this.stat(digest);
    if (existing === undefined) await this.driver.putContent(pathFor({ kind: 'blobData', digest }), content);
    return { digest, size: content.byteLength, mediaType: MediaType.OctetStream };
  }

  /**
   * Starts a verified write of a blob whose digest is known in advance, in
   * the upload session `id` (Distribution's `_uploads/<id>/` with its
   * `startedat`). If the session cannot be set up, nothing of it is left.
   *
   * With `spool` (a local driver, for storage that cannot be read while it
   * is written: S3), the bytes also go to `spool` at `/fills/<id>`, which is
   * what readers following the write read; and on a driver whose writers are
   * atomic the content is written at the blob's own path, visible only once
   * committed after verification.
   */
  async begin(repository: RepositoryName, expected: Digest, id: string = randomUUID(), spool?: StorageDriver): Promise<BlobIngest> {
    const uploadDir = pathFor({ kind: 'uploadDir', name: repository, id });
    const direct = spool !== undefined && this.driver.atomicWriters === true;
    let writer: FileWriter | undefined;
    try {
      if (!direct) await this.driver.putContent(pathFor({ kind: 'uploadStartedAt', name: repository, id }), new Date().toISOString());
      writer = await this.driver.writer(direct ? pathFor({ kind: 'blobData', digest: expected }) : pathFor({ kind: 'uploadData', name: repository, id }));
      const follow = spool === undefined ? undefined : await spool.writer(`/fills/${id}`);
      return new BlobIngest(this.driver, direct ? undefined : uploadDir, writer, expected, follow === undefined ? undefined : { driver: spool as StorageDriver, writer: follow });
    } catch (err) {
      await writer?.cancel().catch(() => undefined);
      if (!direct) await this.driver.delete(uploadDir).catch(() => undefined);
      throw err;
    }
  }
}

/** The local copy readers follow while the storage writer cannot be read (spool, in BlobStore.begin). */
interface Spool {
  driver: StorageDriver;
  writer: FileWriter;
}

/**
 * One blob being written: bytes in, hash updated, and on commit either the
 * blob appears at its digest's path or nothing does. The upload directory is
 * always removed at the end.
 */
export class BlobIngest {
  private readonly digester: Digester;
  private finished = false;
  private verified: Digest | undefined;

  constructor(
    private readonly driver: StorageDriver,
    /** The upload session directory, removed at the end; undefined when writing at the blob's path directly. */
    private readonly uploadDir: string | undefined,
    private readonly writer: FileWriter,
    readonly expected: Digest,
    private readonly spool?: Spool,
  ) {
    this.digester = new Digester(expected.algorithm);
  }

  /** What readers that follow a fill read: the spool when there is one, else the storage itself. */
  get spoolDriver(): StorageDriver {
    return this.spool?.driver ?? this.driver;
  }

  /** The path in `spoolDriver` being written, for readers that follow a fill. */
  get spoolPath(): string {
    return (this.spool?.writer ?? this.writer).path;
  }

  get size(): number {
    return this.digester.size;
  }

  /** Bytes readers of `spoolPath` can see already. */
  get flushed(): number {
    return (this.spool?.writer ?? this.writer).flushed;
  }

  /** Called whenever `flushed` grows. */
  set onFlush(listener: () => void) {
    (this.spool?.writer ?? this.writer).onFlush = listener;
  }

  /**
   * Checks the digest and size of what was written, before anything is made
   * durable: a follower may release the last byte once this passed.
   */
  verify(expectedSize?: number): void {
    const actual = this.digester.digest();
    this.verified = actual;
    if (actual.value !== this.expected.value) {
      throw digestInvalid(this.expected.value, `content hashed to ${actual.value}`);
    }
    if (expectedSize !== undefined && expectedSize !== this.digester.size) {
      throw digestInvalid(this.expected.value, `size ${this.digester.size} differs from the announced ${expectedSize}`);
    }
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.digester.update(chunk);
    if (this.spool === undefined) await this.writer.write(chunk);
    else await Promise.all([this.writer.write(chunk), this.spool.writer.write(chunk)]);
  }

  /**
   * Verifies the digest (unless verify() already did), makes the content
   * durable, then moves it into place. Throws DIGEST_INVALID and cleans up on mismatch.
   */
  async commit(expectedSize?: number): Promise<BlobDescriptor> {
    this.finished = true;
    try {
      if (this.verified === undefined) this.verify(expectedSize);
      // Written at the blob's path (atomic writers), it appears there now, whole; else it is moved there.
      await this.writer.commit();
      if (this.uploadDir !== undefined) await this.driver.move(this.writer.path, pathFor({ kind: 'blobData', digest: this.expected }));
      return { digest: this.expected, size: this.digester.size, mediaType: MediaType.OctetStream };
    } catch (err) {
      await this.writer.cancel().catch(() => undefined);
      throw err;
    } finally {
      await this.spool?.writer.cancel().catch(() => undefined);
      if (this.uploadDir !== undefined) await this.driver.delete(this.uploadDir).catch(() => undefined);
    }
  }

  async cancel(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.writer.cancel().catch(() => undefined);
    await this.spool?.writer.cancel().catch(() => undefined);
    if (this.uploadDir !== undefined) await this.driver.delete(this.uploadDir).catch(() => undefined);
  }
}

/** A blob in the global store, as a walk of `blobs/` finds it. */
export interface StoredBlob {
  digest: Digest;
  size: number;
  modTime: Date;
}

/**
 * Every blob under `blobs/`, with its size and time: one prefix walk where
 * the driver has one (an object store: a request per thousand blobs), else
 * a listing and a stat per blob. Entries that are not `<alg>/<xx>/<hex>/data`
 * of a valid digest are skipped.
 */
export async function* storedBlobs(driver: StorageDriver): AsyncGenerator<StoredBlob> {
  const root = pathFor({ kind: 'blobsRoot' });
  if (driver.walk !== undefined) {
    for await (const file of driver.walk(root)) {
      const parts = file.path.slice(root.length + 1).split('/');
      if (parts.length !== 4 || parts[3] !== 'data') continue;
      const digest = tryParseDigest(`${parts[0] ?? ''}:${parts[2] ?? ''}`);
      if (digest === undefined || digest.hex.slice(0, 2) !== parts[1]) continue;
      yield { digest, size: file.size, modTime: file.modTime };
    }
    return;
  }
  for (const algorithm of await children(driver, root)) {
    for (const prefix of await children(driver, `${root}/${algorithm}`)) {
      for (const hex of await children(driver, `${root}/${algorithm}/${prefix}`)) {
        const digest = tryParseDigest(`${algorithm}:${hex}`);
        if (digest === undefined) continue;
        const info = await driver.stat(pathFor({ kind: 'blobData', digest }));
        if (info === undefined || info.isDir) continue;
        yield { digest, size: info.size, modTime: info.modTime };
      }
    }
  }
}
