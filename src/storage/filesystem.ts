/**
 * Filesystem storage driver: the layout lives under one root directory,
 * exactly where Distribution's filesystem driver puts it. Small writes go to
 * a temp file and become visible by rename(2), so a reader never sees a
 * half-written file. Temp files live outside the layout, in
 * `<root>/.stevedore/tmp/` (Distribution never looks there), named after the
 * run that writes them: no listing of the layout can ever show one, and a
 * restart removes what a killed run left there without walking the tree.
 * (The root must be one filesystem, as rename(2) needs.)
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, truncate, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import type { BlobFile } from '../registry/services.js';
import {
  type ByteRange,
  checkPath,
  type FileInfo,
  type FileWriter,
  PathNotFoundError,
  type RecoverOptions,
  type ScratchReport,
  type StorageDriver,
} from './driver.js';
import { isDeadOwner, OWNER, ownerOf } from './owner.js';

const isNotFound = (err: unknown): boolean =>
  typeof err === 'object' && err !== null && ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

/** A temp file nobody renamed within this long is garbage, whoever wrote it: writes take milliseconds. */
const ABANDONED_TEMP_MS = 60 * 60 * 1000;

export class FilesystemDriver implements StorageDriver {
  readonly name = 'filesystem';
  /** Where temp files are written before they are renamed into place. */
  readonly scratchDirectory: string;

  constructor(readonly rootDirectory: string) {
    this.scratchDirectory = join(rootDirectory, '.stevedore', 'tmp');
  }

  /** Opens a fresh temp file for writing, creating the scratch directory when it is missing. */
  private async openTemp(): Promise<{ temp: string; handle: FileHandle }> {
    const temp = join(this.scratchDirectory, `${OWNER}-${randomBytes(8).toString('hex')}`);
    try {
      return { temp, handle: await open(temp, 'wx') };
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await mkdir(this.scratchDirectory, { recursive: true });
      return { temp, handle: await open(temp, 'wx') };
    }
  }

  /** Removes temp files of runs that are over (see owner.ts) and any older than an hour. */
  async recover(options: RecoverOptions = {}): Promise<ScratchReport> {
    const idleMs = options.idleMs ?? ABANDONED_TEMP_MS;
    const report: ScratchReport = { files: 0, bytes: 0 };
    let names: string[];
    try {
      names = await readdir(this.scratchDirectory);
    } catch (err) {
      if (isNotFound(err)) return report;
      throw err;
    }
    const now = Date.now();
    for (const name of names) {
      const path = join(this.scratchDirectory, name);
      const info = await stat(path).catch(() => undefined);
      if (info === undefined || !info.isFile()) continue;
      const owner = ownerOf(name);
      if (!(owner !== undefined && isDeadOwner(owner)) && now - info.mtimeMs < idleMs) continue;
      await unlink(path).then(
        () => {
          report.files += 1;
          report.bytes += info.size;
        },
        () => undefined,
      );
    }
    return report;
  }

  private full(path: string): string {
    return join(this.rootDirectory, checkPath(path));
  }

  async getContent(path: string): Promise<Buffer> {
    try {
      return await readFile(this.full(path));
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') throw new PathNotFoundError(path);
      throw err;
    }
  }

  async putContent(path: string, content: Uint8Array | string): Promise<void> {
    const target = this.full(path);
    await mkdir(dirname(target), { recursive: true });
    const { temp, handle } = await this.openTemp();
    try {
      try {
        await handle.writeFile(content);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, target);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
  }

  async reader(path: string, range?: ByteRange): Promise<Readable> {
    const full = this.full(path);
    // Open first so a missing file is a typed error rather than a stream error.
    let handle;
    try {
      handle = await open(full, 'r');
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path);
      throw err;
    }
    const info = await handle.stat();
    if (info.isDirectory()) {
      await handle.close();
      throw new PathNotFoundError(path);
    }
    return createReadStream('', {
      fd: handle,
      start: range?.start,
      end: range?.end,
      // 512 KiB: about twice the loopback throughput of 64 KiB reads, without
      // the memory of 1 MiB reads per slow client (two chunks in flight each).
      highWaterMark: 512 * 1024,
    });
  }

  async open(path: string): Promise<BlobFile> {
    let handle;
    try {
      handle = await open(this.full(path), 'r');
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path);
      throw err;
    }
    return {
      read: async (buffer, length, position) => (await handle.read(buffer, 0, length, position)).bytesRead,
      close: () => handle.close(),
    };
  }

  async writer(path: string, append = false): Promise<FileWriter> {
    const target = this.full(path);
    await mkdir(dirname(target), { recursive: true });
    return FilesystemWriter.open(path, target, append);
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    try {
      const info = await stat(this.full(path));
      return { path, size: info.size, modTime: info.mtime, isDir: info.isDirectory() };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      const entries = await readdir(this.full(path));
      return entries.sort();
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path);
      throw err;
    }
  }

  async move(source: string, destination: string): Promise<void> {
    const target = this.full(destination);
    await mkdir(dirname(target), { recursive: true });
    try {
      await rename(this.full(source), target);
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(source);
      throw err;
    }
  }

  async delete(path: string): Promise<void> {
    const full = this.full(path);
    if ((await this.stat(path)) === undefined) throw new PathNotFoundError(path);
    await rm(full, { recursive: true, force: true });
  }
}

/**
 * Writes in place, like Distribution's filesystem writer: callers write to a
 * private path (an upload) and move it to its final place, which is the
 * atomic step. In-place writing lets readers follow a file as it grows.
 */
class FilesystemWriter implements FileWriter {
  private written = 0;
  private flushedBytes = 0;
  private done = false;
  private failure: Error | undefined;
  onFlush?: () => void;

  private constructor(
    readonly path: string,
    private readonly target: string,
    private readonly stream: WriteStream,
    /** Appending: the size the file had before, which a cancel goes back to. */
    private readonly appendedTo: number | undefined,
  ) {
    // Kept, not thrown: the next write or the commit reports it; after cancel it is expected.
    stream.on('error', (err) => {
      this.failure ??= err;
    });
  }

  static async open(path: string, target: string, append: boolean): Promise<FilesystemWriter> {
    // flush: fsync before close, so a committed file survives a crash whole.
    // A 1 MiB buffer lets the network keep reading while the disk writes.
    // Appending to a file that is not there: a cancel removes it, as it would a new file's.
    const before = append ? await stat(target).then((info) => info.size, () => undefined) : undefined;
    const stream = createWriteStream(target, { flags: append ? 'a' : 'w', flush: true, highWaterMark: 1024 * 1024 });
    await once(stream, 'open');
    return new FilesystemWriter(path, target, stream, before);
  }

  get size(): number {
    return this.written;
  }

  get flushed(): number {
    return this.flushedBytes;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.done) throw new Error('write after commit or cancel');
    if (this.failure) throw this.failure;
    this.written += chunk.byteLength;
    const length = chunk.byteLength;
    // Chunks reach the file in order, so the callback order tracks the readable size.
    const more = this.stream.write(chunk, (err) => {
      if (err) return;
      this.flushedBytes += length;
      this.onFlush?.();
    });
    if (!more) await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        this.stream.off('drain', onDrain);
        reject(err);
      };
      const onDrain = (): void => {
        this.stream.off('error', onError);
        resolve();
      };
      this.stream.once('drain', onDrain);
      this.stream.once('error', onError);
    });
  }

  async commit(): Promise<void> {
    if (this.done) throw new Error('commit after commit or cancel');
    this.done = true;
    if (this.failure) throw this.failure;
    await new Promise<void>((resolve, reject) => {
      this.stream.once('error', reject);
      this.stream.end(() => resolve());
    });
    if (this.failure) throw this.failure;
  }

  async cancel(): Promise<void> {
    this.done = true;
    // Closed before the file is cut back, so no write still in flight lands after the truncation.
    if (!this.stream.closed) {
      await new Promise<void>((resolve) => {
        this.stream.once('close', () => resolve());
        if (!this.stream.destroyed) this.stream.destroy();
      });
    }
    if (this.appendedTo === undefined) await unlink(this.target).catch(() => undefined);
    else await truncate(this.target, this.appendedTo).catch(() => undefined);
  }
}
