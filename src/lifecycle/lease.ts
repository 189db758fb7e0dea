/**
 * A lease under the storage root (`stevedore/v1/leases/<name>`), so that
 * processes sharing a storage take turns at work that must not overlap:
 * the sweep of `stevedore gc` and a server's quota eviction both hold the
 * `sweep` lease while they delete.
 *
 * The driver has no compare-and-swap (neither a filesystem nor S3 promise
 * one through our interface), so a lease is taken by writing our record,
 * waiting `settleMs`, and reading it back: if another process wrote after
 * us, its record is there and we back off. A holder renews the lease every
 * `ttlMs / 3`; a record past its expiry belongs to a process that died and
 * may be taken over. Losing a renewal race makes `lost` resolve, so the
 * holder stops deleting.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isPathNotFound, type StorageDriver } from '../storage/driver.js';
import { OWNER } from '../storage/owner.js';
import { pathFor } from '../storage/paths.js';
import type { HeldLease, Leases } from '../coordination/leases.js';

interface LeaseRecord {
  holder: string;
  /** What the holder is doing, for the message of whoever is refused. */
  purpose: string;
  /** ms since the epoch. */
  expires: number;
}

export interface Lease {
  readonly name: string;
  /** Resolves if another process took the lease over (our renewal found its record): stop the work. */
  readonly lost: Promise<void>;
  /** True once lost. */
  readonly isLost: () => boolean;
  release(): Promise<void>;
}

export interface LeaseOptions {
  /**
   * Leases shared by replicas (a Redis or PostgreSQL metadata store): the
   * lease is also taken there, with compare-and-set, which closes the race
   * window of the storage record. Unreachable, the storage record alone
   * decides (and the store's health says so).
   */
  shared?: Leases;
  /** How long a record holds without renewal; default 60 s. */
  ttlMs?: number;
  /** The wait between writing our record and reading it back; default 200 ms. */
  settleMs?: number;
  now?: () => number;
}

export class LeaseHeld extends Error {
  constructor(
    readonly lease: string,
    readonly holder: string,
    readonly purpose: string,
    readonly expires: number,
  ) {
    super(`the ${lease} lease is held by ${holder} (${purpose}) until ${new Date(expires).toISOString()}`);
    this.name = 'LeaseHeld';
  }
}

async function read(driver: StorageDriver, path: string): Promise<LeaseRecord | undefined> {
  try {
    const record = JSON.parse((await driver.getContent(path)).toString('utf8')) as Partial<LeaseRecord>;
    if (typeof record.holder !== 'string' || typeof record.expires !== 'number') return undefined;
    return { holder: record.holder, purpose: String(record.purpose ?? ''), expires: record.expires };
  } catch (err) {
    if (isPathNotFound(err)) return undefined;
    if (err instanceof SyntaxError) return undefined;
    throw err;
  }
}

/** Takes the lease `name`, or throws LeaseHeld naming the live holder. */
export async function acquireLease(driver: StorageDriver, name: string, purpose: string, options: LeaseOptions = {}): Promise<Lease> {
  const ttlMs = options.ttlMs ?? 60_000;
  const settleMs = options.settleMs ?? 200;
  const now = options.now ?? Date.now;
  const path = pathFor({ kind: 'lease', name });
  const holder = `${OWNER}-${randomBytes(4).toString('hex')}`;
  const current = await read(driver, path);
  if (current !== undefined && current.holder !== holder && current.expires > now()) {
    throw new LeaseHeld(name, current.holder, current.purpose, current.expires);
  }
  const write = (): Promise<void> => driver.putContent(path, JSON.stringify({ holder, purpose, expires: now() + ttlMs } satisfies LeaseRecord));
  await write();
  await sleep(settleMs);
  const after = await read(driver, path);
  if (after?.holder !== holder) {
    throw new LeaseHeld(name, after?.holder ?? 'another process', after?.purpose ?? '', after?.expires ?? now() + ttlMs);
  }

  let lost = false;
  let released = false;
  let markLost!: () => void;
  const lostPromise = new Promise<void>((resolve) => {
    markLost = resolve;
  });
  const renew = async (): Promise<void> => {
    if (released || lost) return;
    const record = await read(driver, path).catch(() => undefined);
    if (record !== undefined && record.holder !== holder) {
      lost = true;
      markLost();
      return;
    }
    await write().catch(() => undefined);
  };
  const timer = setInterval(() => void renew(), Math.max(10, Math.floor(ttlMs / 3)));
  timer.unref();
  const releaseRecord = async (): Promise<void> => {
    if (released) return;
    released = true;
    clearInterval(timer);
    const record = await read(driver, path).catch(() => undefined);
    if (record?.holder === holder) await driver.delete(path).catch(() => undefined);
  };
  let shared: HeldLease | undefined;
  if (options.shared?.shared === true) {
    const got = await options.shared.acquire(`sweep/${name}`, purpose, ttlMs);
    if (got.state === 'busy') {
      await releaseRecord();
      throw new LeaseHeld(name, got.info.holder, got.info.purpose, now() + ttlMs);
    }
    if (got.state === 'held') shared = got.lease;
  }
  return {
    name,
    lost: lostPromise,
    isLost: () => lost || shared?.isLost() === true,
    async release() {
      await shared?.release();
      await releaseRecord();
    },
  };
}
