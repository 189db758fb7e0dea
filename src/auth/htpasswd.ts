/**
 * Users of an htpasswd file, as Distribution reads it: `user:hash` lines with
 * bcrypt hashes (`htpasswd -B`); other hash types are skipped with a warning,
 * as Distribution refuses them too. bcrypt is slow by design (tens of
 * milliseconds), so a verified user/password pair is remembered for
 * `cacheMs`, keyed by a hash of the pair and the file's version: a changed
 * file forgets every remembered password.
 */
import { createHash } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { WatchedFile } from './watched.js';
import { boundedCache } from '../registry/bounded-cache.js';

interface Users {
  hashes: Map<string, string>;
  skipped: string[];
}

const BCRYPT = /^\$2[abxy]\$\d{2}\$[./A-Za-z0-9]{53}$/;

export function parseHtpasswd(text: string): Users {
  const hashes = new Map<string, string>();
  const skipped: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (BCRYPT.test(hash)) hashes.set(user, hash);
    else skipped.push(user);
  }
  return { hashes, skipped };
}

export interface HtpasswdOptions {
  cacheMs: number;
  log: Logger;
  now?: () => number;
}

export class Htpasswd {
  private readonly file: WatchedFile<Users>;
  private readonly verified: LRUCache<string, true>;
  /** bcrypt comparisons run so far (what the cache saves is visible in tests and logs). */
  bcryptRuns = 0;

  constructor(path: string, private readonly options: HtpasswdOptions) {
    this.file = new WatchedFile(path, (text) => this.parsed(parseHtpasswd(text)), options.log, 'htpasswd file', 1000, options.now);
    // An injected clock (tests) is read on every check: lru-cache otherwise reuses a reading for 1 ms of real time.
    this.verified = boundedCache({ entries: 10_000 }, { ttl: Math.max(1, options.cacheMs), ...(options.now ? { perf: { now: options.now }, ttlResolution: 0 } : {}) });
  }

  private parsed(users: Users): Users {
    if (users.skipped.length > 0) {
      this.options.log.warn({ path: this.file.path, users: users.skipped.slice(0, 20) }, 'htpasswd entries that are not bcrypt are skipped (use htpasswd -B)');
    }
    return users;
  }

  async load(): Promise<void> {
    const users = await this.file.load();
    if (users.hashes.size === 0) this.options.log.warn({ path: this.file.path }, 'the htpasswd file has no bcrypt users: nobody can log in');
  }

  /** True when the file has the user and the password matches its bcrypt hash. */
  async verify(user: string, password: string): Promise<boolean> {
    const users = await this.file.get();
    const hash = users.hashes.get(user);
    if (hash === undefined) return false;
    const key = createHash('sha256').update(`${this.file.version}\0${user}\0${password}`).digest('base64');
    if (this.options.cacheMs > 0 && this.verified.has(key)) return true;
    this.bcryptRuns++;
    // bcryptjs knows $2a$/$2b$; $2y$ (PHP, Apache) and $2x$ hash the same way.
    const ok = await bcrypt.compare(password, hash.replace(/^\$2[xy]\$/, '$2b$'));
    this.options.log.debug({ user, ok }, 'password checked with bcrypt');
    if (ok && this.options.cacheMs > 0) this.verified.set(key, true);
    return ok;
  }
}
