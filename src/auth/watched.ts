/**
 * A file whose parsed content follows the file: re-read when its mtime, size
 * or inode change. Checked at most once per `checkEveryMs` on use, so a warm
 * request costs no syscall, and a changed file takes effect within a second
 * without signals or watchers. A file that stops parsing keeps the last good
 * content (and says so in the log) rather than locking everyone out.
 */
import { readFile, stat } from 'node:fs/promises';
import type { Logger } from 'pino';

export class WatchedFile<T> {
  private value: T | undefined;
  private signature = '';
  private checkedAt = -Infinity;
  private pending: Promise<void> | undefined;
  /** Bumped on every successful reload: caches keyed on it forget what the old file allowed. */
  version = 0;

  constructor(
    readonly path: string,
    private readonly parse: (text: string) => T,
    private readonly log: Logger,
    private readonly what: string,
    private readonly checkEveryMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Reads the file for the first time; throws when it cannot be read or parsed (a startup error). */
  async load(): Promise<T> {
    await this.refresh(true);
    return this.value as T;
  }

  /** The current content, re-read first if the file changed. */
  async get(): Promise<T> {
    if (this.now() - this.checkedAt >= this.checkEveryMs) {
      this.pending ??= this.refresh(false).finally(() => {
        this.pending = undefined;
      });
      await this.pending;
    }
    if (this.value === undefined) throw new Error(`${this.what} ${this.path} could not be read`);
    return this.value;
  }

  private async refresh(initial: boolean): Promise<void> {
    this.checkedAt = this.now();
    let signature: string;
    try {
      const s = await stat(this.path);
      signature = `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch (err) {
      if (initial) throw err;
      if (this.signature !== 'missing') this.log.error({ path: this.path, err: (err as Error).message }, `${this.what} is gone: keeping the last content read`);
      this.signature = 'missing';
      return;
    }
    if (signature === this.signature) return;
    try {
      const value = this.parse(await readFile(this.path, 'utf8'));
      this.value = value;
      this.version++;
      if (!initial) this.log.info({ path: this.path }, `${this.what} changed: reloaded`);
    } catch (err) {
      if (initial) throw err;
      this.log.error({ path: this.path, err: (err as Error).message }, `${this.what} could not be read again: keeping the last content read`);
    }
    this.signature = signature;
  }
}
