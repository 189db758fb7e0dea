/**
 * Blob upload sessions of hosted repositories, in Distribution's layout:
 * `_uploads/<id>/data` grows with each chunk, `_uploads/<id>/startedat`
 * says when it began (for upload purging). Everything a session is lives in
 * storage, so a session survives a restart, and another replica (or
 * Distribution itself) can continue it.
 *
 * The running digest is kept in memory between chunks, keyed by session and
 * checked against the data's size before use; when it is missing or stale
 * (a restart, an eviction, a chunk another process wrote, a chunk that failed
 * half-way) it is recomputed by reading the data back. Nothing is committed
 * before the whole content hashes to the digest the client names: the data
 * is then moved to the blob's place and linked in the repository, and the
 * session directory removed.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { type Digest, type DigestAlgorithm } from '../registry/digest.js';
import { digestInvalid, RegistryError } from '../registry/errors.js';
import { MediaType } from '../registry/mediatypes.js';
import type { RepositoryName } from '../registry/names.js';
import type { BlobDescriptor, UploadChunk, UploadService, UploadStatus } from '../registry/services.js';
import { isPathNotFound, type StorageDriver } from '../storage/driver.js';
import type { LocalStorage } from '../storage/local.js';
import { pathFor } from '../storage/paths.js';
import { boundedCache } from '../registry/bounded-cache.js';

/** Client session ids are UUIDs, as Distribution's are; fill spools (`fill-…`) can never be addressed. */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const uploadUnknown = (id: string): RegistryError =>
  new RegistryError('BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry', { detail: { upload: id.slice(0, 80) } });

interface RunningHash {
  hash: Hash;
  /** Bytes the hash has seen: valid only while the data file has exactly this size. */
  size: number;
}

export interface UploadHooks {
  /** A blob appeared in blobs/ (storage.quota's count). */
  committed?(digest: Digest, size: number): void;
}

/**
 * What all sessions of one storage share: the running hashes (bounded; a
 * dropped one is recomputed) and which sessions a request is writing to.
 */
export class UploadSessions {
  private readonly hashes = boundedCache<string, RunningHash>({ entries: 4096 });
  /** Sessions a request is writing to now: a second writer is refused rather than interleaved. */
  private readonly busy = new Set<string>();

  constructor(
    private readonly storage: LocalStorage,
    private readonly hooks: UploadHooks = {},
  ) {}

  service(name: RepositoryName): UploadService {
    return new RepositoryUploads(this, name);
  }

  get driver(): StorageDriver {
    return this.storage.driver;
  }

  async create(name: RepositoryName): Promise<UploadStatus> {
    const id = randomUUID();
    try {
      await this.driver.putContent(pathFor({ kind: 'uploadStartedAt', name, id }), new Date().toISOString());
      await this.driver.putContent(pathFor({ kind: 'uploadData', name, id }), new Uint8Array(0));
    } catch (err) {
      await this.driver.delete(pathFor({ kind: 'uploadDir', name, id })).catch(() => undefined);
      throw err;
    }
    this.hashes.set(key(name, id), { hash: createHash('sha256'), size: 0 });
    return { id, size: 0 };
  }

  async status(name: RepositoryName, id: string): Promise<UploadStatus> {
    return { id, size: await this.size(name, id) };
  }

  /** The bytes received so far; BLOB_UPLOAD_UNKNOWN when there is no such session. */
  private async size(name: RepositoryName, id: string): Promise<number> {
    if (!SESSION_ID.test(id)) throw uploadUnknown(id);
    const info = await this.driver.stat(pathFor({ kind: 'uploadData', name, id }));
    if (info === undefined || info.isDir) throw uploadUnknown(id);
    return info.size;
  }

  async append(name: RepositoryName, id: string, chunk: UploadChunk): Promise<UploadStatus> {
    return this.exclusive(name, id, async () => ({ id, size: await this.write(name, id, chunk) }));
  }

  async finish(name: RepositoryName, id: string, digest: Digest, chunk?: UploadChunk): Promise<BlobDescriptor> {
    return this.exclusive(name, id, async () => {
      const size = chunk === undefined ? await this.size(name, id) : await this.write(name, id, chunk);
      const data = pathFor({ kind: 'uploadData', name, id });
      let actual: string;
      try {
        actual = await this.digestOf(name, id, digest.algorithm, size);
      } catch (err) {
        await this.remove(name, id);
        throw err;
      }
      if (actual !== digest.value) {
        // As Distribution does: a failed commit ends the session; the client starts over.
        await this.remove(name, id);
        throw digestInvalid(digest.value, `the upload hashes to ${actual}`);
      }
      const { blobs, layers, references } = this.storage;
      // Before the blob appears: a sweep running now must spare it (storage/references.ts).
      references.referenced(digest);
      try {
        const existing = await blobs.stat(digest);
        if (existing === undefined) {
          await this.driver.move(data, pathFor({ kind: 'blobData', digest }));
          this.hooks.committed?.(digest, size);
        }
        await layers.link(name, digest);
      } finally {
        await this.remove(name, id);
      }
      return { digest, size, mediaType: MediaType.OctetStream };
    });
  }

  async cancel(name: RepositoryName, id: string): Promise<void> {
    await this.exclusive(name, id, async () => {
      await this.size(name, id);
      await this.remove(name, id);
    });
  }

  private async remove(name: RepositoryName, id: string): Promise<void> {
    this.hashes.delete(key(name, id));
    await this.driver.delete(pathFor({ kind: 'uploadDir', name, id })).catch((err: unknown) => {
      if (!isPathNotFound(err)) throw err;
    });
  }

  /** Runs `work` as the only request writing to the session. */
  private async exclusive<T>(name: RepositoryName, id: string, work: () => Promise<T>): Promise<T> {
    const k = key(name, id);
    if (this.busy.has(k)) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload: send chunks one after the other', {
        detail: { upload: id },
      });
    }
    this.busy.add(k);
    try {
      return await work();
    } finally {
      this.busy.delete(k);
    }
  }

  /** Appends the chunk to the session's data; the new size. */
  private async write(name: RepositoryName, id: string, chunk: UploadChunk): Promise<number> {
    const start = await this.size(name, id);
    if (chunk.start !== undefined && chunk.start !== start) {
      throw new RegistryError('RANGE_INVALID', `the chunk starts at byte ${chunk.start}, but the upload holds ${start} bytes: resume from there`, {
        detail: { upload: id, offset: start },
      });
    }
    const k = key(name, id);
    const running = await this.runningHash(name, id, start);
    // Until this chunk is through, the hash and the data may disagree: forget it, so a failure leaves it recomputed.
    this.hashes.delete(k);
    const writer = await this.driver.writer(pathFor({ kind: 'uploadData', name, id }), true);
    let written = 0;
    try {
      for await (const bytes of chunk.body) {
        written += bytes.byteLength;
        if (chunk.length !== undefined && written > chunk.length) break;
        running.hash.update(bytes);
        await writer.write(bytes);
      }
      if (chunk.length !== undefined && written !== chunk.length) {
        throw new RegistryError('SIZE_INVALID', `the body has ${written > chunk.length ? 'more' : 'fewer'} bytes than its Content-Length ${chunk.length}`, {
          detail: { upload: id, length: chunk.length },
        });
      }
      await writer.commit();
    } catch (err) {
      await writer.cancel();
      throw err;
    }
    running.size = start + written;
    this.hashes.set(k, running);
    return running.size;
  }

  /** The running sha256 of the first `size` bytes: kept from the last chunk, or read back from the data. */
  private async runningHash(name: RepositoryName, id: string, size: number): Promise<RunningHash> {
    const kept = this.hashes.get(key(name, id));
    if (kept !== undefined && kept.size === size) return kept;
    return { hash: await this.rehash(name, id, 'sha256', size), size };
  }

  /** The digest of the first `size` bytes of the session's data. */
  private async digestOf(name: RepositoryName, id: string, algorithm: DigestAlgorithm, size: number): Promise<string> {
    const hash = algorithm === 'sha256' ? (await this.runningHash(name, id, size)).hash.copy() : await this.rehash(name, id, algorithm, size);
    return `${algorithm}:${hash.digest('hex')}`;
  }

  private async rehash(name: RepositoryName, id: string, algorithm: DigestAlgorithm, size: number): Promise<Hash> {
    const hash = createHash(algorithm);
    if (size === 0) return hash;
    const stream = await this.driver.reader(pathFor({ kind: 'uploadData', name, id }), { start: 0, end: size - 1 });
    let read = 0;
    for await (const bytes of stream as AsyncIterable<Buffer>) {
      hash.update(bytes);
      read += bytes.byteLength;
    }
    if (read !== size) throw new RegistryError('BLOB_UPLOAD_INVALID', 'the upload changed while it was read back: try again', { detail: { upload: id } });
    return hash;
  }
}

const key = (name: RepositoryName, id: string): string => `${name}/${id}`;

/** One repository's view of the sessions. */
class RepositoryUploads implements UploadService {
  constructor(
    private readonly sessions: UploadSessions,
    private readonly name: RepositoryName,
  ) {}

  create(): Promise<UploadStatus> {
    return this.sessions.create(this.name);
  }

  status(id: string): Promise<UploadStatus> {
    return this.sessions.status(this.name, id);
  }

  append(id: string, chunk: UploadChunk): Promise<UploadStatus> {
    return this.sessions.append(this.name, id, chunk);
  }

  finish(id: string, digest: Digest, chunk?: UploadChunk): Promise<BlobDescriptor> {
    return this.sessions.finish(this.name, id, digest, chunk);
  }

  cancel(id: string): Promise<void> {
    return this.sessions.cancel(this.name, id);
  }
}
