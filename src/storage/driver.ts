/**
 * The storage driver contract: a flat namespace of slash-separated paths
 * ("/docker/registry/v2/…"), like Distribution's storagedriver.StorageDriver.
 * Nothing above this interface may assume a local disk: a driver for S3 or
 * any object store implements the same calls. Paths are absolute within the
 * driver (start with "/"), never contain "." or ".." components, NUL bytes
 * or empty components; drivers reject anything else with InvalidPathError.
 */
import type { Readable } from 'node:stream';
import type { BlobFile } from '../registry/services.js';

export interface FileInfo {
  path: string;
  size: number;
  modTime: Date;
  isDir: boolean;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

/**
 * A file written in place (as Distribution's drivers do): write to a private
 * path such as an upload, then `move` it where readers look: that move is the
 * atomic step.
 */
export interface FileWriter {
  readonly path: string;
  /** Bytes accepted by write() so far. */
  readonly size: number;
  /**
   * Bytes that readers of `path` can see already (handed to the storage, not
   * only buffered). Grows to `size`; `onFlush` is called each time it does.
   */
  readonly flushed: number;
  onFlush?: () => void;
  /** Resolves when the writer can take more (backpressure), not necessarily when the bytes are flushed. */
  write(chunk: Uint8Array): Promise<void>;
  /** Flushes everything durably (fsync). */
  commit(): Promise<void>;
  /**
   * Drops what this writer wrote (an appending writer leaves the file as it
   * was before); safe to call more than once, and after a failed commit.
   */
  cancel(): Promise<void>;
}

export interface StorageDriver {
  readonly name: string;
  /**
   * True when a writer's content appears at its path only at commit, whole
   * (an object store's multipart upload): content can then be written at
   * its final path directly, with no move. False or absent: writers write in
   * place (a file grows as it is written), so content goes to a private path
   * first and is moved into place.
   */
  readonly atomicWriters?: boolean;
  /** Reads a small file whole (links, startedat). Throws PathNotFoundError. */
  getContent(path: string): Promise<Buffer>;
  /** Writes a small file atomically (temp file then rename). */
  putContent(path: string, content: Uint8Array | string): Promise<void>;
  /** Streams a file, or the inclusive byte range of it. Throws PathNotFoundError. */
  reader(path: string, range?: ByteRange): Promise<Readable>;
  /**
   * Random access to a file, when the driver has it (a local disk does; an
   * object store would stream instead). Throws PathNotFoundError.
   */
  open?(path: string): Promise<BlobFile>;
  /**
   * A URL a client may fetch the file from directly for `expiresInMs` (an
   * object store's presigned GET), for `storage.redirect`; absent where the
   * storage has no such URLs (a local disk).
   */
  urlFor?(path: string, expiresInMs: number): Promise<string>;
  /**
   * Opens a writer at `path`, truncating what was there; with `append`, one
   * that adds to what is there (a blob upload resumed by a later request).
   */
  writer(path: string, append?: boolean): Promise<FileWriter>;
  /** Stat, or undefined when nothing is there. */
  stat(path: string): Promise<FileInfo | undefined>;
  /** Names of the direct children of a directory, sorted. Throws PathNotFoundError. */
  list(path: string): Promise<string[]>;
  /**
   * Every file under a directory, with its size and time, in no particular
   * order: one prefix walk (an object store lists a thousand a page with
   * their sizes) where list() and a stat() per file would make a request per
   * file. Nothing under the path: yields nothing. Optional, for drivers
   * whose listings carry sizes (an object store); a local disk, where a
   * stat is cheap and only some files need one, leaves it out, and
   * storedBlobs() then lists and stats.
   */
  walk?(path: string): AsyncIterable<FileInfo>;
  /** Moves a file, replacing the destination atomically. */
  move(source: string, destination: string): Promise<void>;
  /** Deletes a file or a whole directory tree. Throws PathNotFoundError. */
  delete(path: string): Promise<void>;
  /**
   * Removes the driver's own scratch files (temp files of atomic writes) that
   * runs which are over left behind. Optional: a driver whose writes are
   * atomic by nature has none.
   */
  recover?(options?: RecoverOptions): Promise<ScratchReport>;
}

export interface RecoverOptions {
  /**
   * Scratch untouched for this long is abandoned, whoever wrote it (a live
   * writer touches its scratch far more often); default one hour.
   */
  idleMs?: number;
}

export interface ScratchReport {
  files: number;
  bytes: number;
}

export class PathNotFoundError extends Error {
  readonly code = 'ERR_STORAGE_PATH_NOT_FOUND';
  constructor(readonly path: string) {
    super(`path not found: ${path}`);
    this.name = 'PathNotFoundError';
  }
}

export class InvalidPathError extends Error {
  readonly code = 'ERR_STORAGE_INVALID_PATH';
  constructor(readonly path: string) {
    super(`invalid storage path: ${JSON.stringify(path.slice(0, 200))}`);
    this.name = 'InvalidPathError';
  }
}

export const isPathNotFound = (err: unknown): err is PathNotFoundError => err instanceof PathNotFoundError;

const PATH_COMPONENT = /^[A-Za-z0-9._-]+$/;

/** Validates a driver path: absolute, no empty, "." or ".." components, only safe characters. */
export function checkPath(path: string): string {
  if (!path.startsWith('/') || path.length > 4096) throw new InvalidPathError(path);
  if (path === '/') return path;
  for (const component of path.slice(1).split('/')) {
    if (component === '.' || component === '..' || !PATH_COMPONENT.test(component)) throw new InvalidPathError(path);
  }
  return path;
}
