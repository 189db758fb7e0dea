/**
 * When each (repository, manifest) was last pulled, and the entries in order
 * of last pull: the order `storage.quota` evicts in and the clock `proxy.ttl`
 * counts manifests by.
 *
 * A pull is recorded in memory (`record`: a Map.set on the request path) and
 * written in batches every `flushIntervalMs` and on close: one write per
 * entry pulled since the last flush and one per time bucket touched, however
 * many pulls there were.
 *
 * keyv has no sorted sets common to every store, so the order is kept in time
 * buckets (keys in the metadata namespace):
 *
 *   pull:<repository>@<digest>   ms of the entry's last pull
 *   pulls:<bucket>.<shard>       { "<repository>@<digest>": ms } for the entries whose last pull falls in
 *                                the bucket (an hour), spread over SHARDS records by a hash of the entry
 *   pulls:buckets                the "<bucket>.<shard>" records that hold entries, oldest bucket first
 *
 * An entry is in exactly one record: a flush that moves it to a newer bucket
 * takes it out of the old. Shards keep each record small where a whole
 * cache falls in one bucket (every manifest found by the startup walk is
 * seeded at one time). Reading oldest first costs a read per record and one
 * per entry, never a walk of storage.
 *
 * Bucket records are read-modified-written by one flush at a time in this
 * process. Replicas sharing a store (Redis, PostgreSQL) can race on a bucket:
 * an entry then drops out of the order (it is not evicted before it is pulled
 * again); its `pull:` time, what `proxy.ttl` reads, is always written.
 */
import Keyv, { type KeyvStoreAdapter } from 'keyv';
import type { Logger } from 'pino';

export interface AccessEntry {
  repository: string;
  digest: string;
  /** ms since the epoch. */
  time: number;
}

export interface AccessIndexOptions {
  /** The keyv store adapter; in memory (unbounded) when absent. */
  store?: KeyvStoreAdapter | Map<string, unknown>;
  namespace?: string;
  now?: () => number;
  /** Width of one time bucket; default one hour. */
  bucketMs?: number;
  log?: Logger;
}

const BUCKETS = 'pulls:buckets';
const SHARDS = 16;
const entryKey = (repository: string, digest: string): string => `${repository}@${digest}`;
const pullKey = (entry: string): string => `pull:${entry}`;
const recordKey = (record: string): string => `pulls:${record}`;
const bucketOfRecord = (record: string): number => Number(record.slice(0, record.indexOf('.')));
const byAge = (a: string, b: string): number => bucketOfRecord(a) - bucketOfRecord(b) || (a < b ? -1 : a > b ? 1 : 0);

/** FNV-1a over the entry's last characters (the digest's hex): an even spread over the shards. */
function shardOf(entry: string): number {
  let h = 0x811c9dc5;
  for (let i = Math.max(0, entry.length - 16); i < entry.length; i++) h = Math.imul(h ^ entry.charCodeAt(i), 0x01000193);
  return (h >>> 0) % SHARDS;
}

function splitEntry(entry: string): { repository: string; digest: string } {
  const at = entry.lastIndexOf('@');
  return { repository: entry.slice(0, at), digest: entry.slice(at + 1) };
}

type BucketRecord = Record<string, number>;


export class AccessIndex {
  private readonly keyv: Keyv;
  readonly now: () => number;
  private readonly bucketMs: number;
  private readonly log: Logger | undefined;
  /** Pulls not written yet: entry → latest time. */
  private pending = new Map<string, number>();
  /** Times for entries that have none yet (storage seen without metadata); never move an existing record. */
  private seeds = new Map<string, number>();
  /** Flushes, forgets and seeds run one at a time (they read-modify-write buckets). */
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(options: AccessIndexOptions = {}) {
    this.keyv = new Keyv({ store: options.store ?? new Map(), namespace: options.namespace ?? 'stevedore' });
    this.keyv.on('error', () => undefined); // the store's own MetadataStore logs its failures
    this.now = options.now ?? Date.now;
    this.bucketMs = options.bucketMs ?? 3_600_000;
    this.log = options.log;
  }

  /** A pull, now: remembered in memory until the next flush. */
  record(repository: string, digest: string, at: number = this.now()): void {
    const key = entryKey(repository, digest);
    const known = this.pending.get(key);
    if (known === undefined || at > known) this.pending.set(key, at);
  }

  /** A time for an entry that has none (content found in storage without a record); ignored when it has one. */
  seed(repository: string, digest: string, at: number): void {
    this.seeds.set(entryKey(repository, digest), at);
  }

  /** The pull recorded in memory and not written yet, if any. */
  pendingPull(repository: string, digest: string): number | undefined {
    return this.pending.get(entryKey(repository, digest));
  }

  /** The last pull of `digest` in `repository`: what is in memory, else what the store holds. */
  async lastPulled(repository: string, digest: string): Promise<number | undefined> {
    const key = entryKey(repository, digest);
    const pending = this.pending.get(key);
    if (pending !== undefined) return pending;
    return (await this.keyv.get<number>(pullKey(key))) ?? this.seeds.get(key);
  }

  /** Flushes every `intervalMs` (a few seconds: losing that much on a crash costs only order precision). */
  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }

  private serial(task: () => Promise<void>): Promise<void> {
    const run = this.chain.then(task).catch((err: unknown) => this.log?.warn({ err }, 'writing pull times to the metadata store failed'));
    this.chain = run;
    return run;
  }

  /** Writes what was recorded since the last flush. */
  flush(): Promise<void> {
    return this.serial(async () => {
      const batch = this.pending;
      const seeds = this.seeds;
      if (batch.size === 0 && seeds.size === 0) return;
      this.pending = new Map();
      this.seeds = new Map();
      for (const key of batch.keys()) seeds.delete(key);
      const keys = [...batch.keys(), ...seeds.keys()];
      const previous = await this.keyv.getMany<number>(keys.map(pullKey));
      const moves = new Map<string, { from: number | undefined; to: number }>();
      keys.forEach((key, i) => {
        const before = previous[i] ?? undefined;
        const time = batch.get(key) ?? (seeds.get(key) as number);
        if (before === undefined || (batch.has(key) && time > before)) moves.set(key, { from: before, to: time });
      });
      await this.apply(moves);
    });
  }

  /**
   * Drops the entries (their content is gone). A pull recorded in memory and
   * not written yet stays: the content was pulled again, and is stored again.
   */
  forget(entries: readonly { repository: string; digest: string }[]): Promise<void> {
    return this.serial(async () => {
      const keys = entries.map((e) => entryKey(e.repository, e.digest));
      for (const key of keys) this.seeds.delete(key);
      const previous = await this.keyv.getMany<number>(keys.map(pullKey));
      const moves = new Map<string, { from: number | undefined; to: number | undefined }>();
      keys.forEach((key, i) => moves.set(key, { from: previous[i] ?? undefined, to: undefined }));
      await this.apply(moves);
    });
  }

  /** Moves entries between records (`to` undefined: out of the index) and writes their times. */
  private async apply(moves: Map<string, { from: number | undefined; to: number | undefined }>): Promise<void> {
    if (moves.size === 0) return;
    const recordOf = (key: string, time: number): string => `${Math.floor(time / this.bucketMs)}.${shardOf(key)}`;
    const edits = new Map<string, { add: Map<string, number>; remove: Set<string> }>();
    const edit = (record: string): { add: Map<string, number>; remove: Set<string> } => {
      let e = edits.get(record);
      if (e === undefined) edits.set(record, (e = { add: new Map(), remove: new Set() }));
      return e;
    };
    for (const [key, { from, to }] of moves) {
      const old = from === undefined ? undefined : recordOf(key, from);
      const next = to === undefined ? undefined : recordOf(key, to);
      if (old !== undefined && old !== next) edit(old).remove.add(key);
      if (next !== undefined && to !== undefined) edit(next).add.set(key, to);
    }
    const ids = [...edits.keys()];
    const records = await this.keyv.getMany<BucketRecord>(ids.map(recordKey));
    const listed = new Set((await this.keyv.get<string[]>(BUCKETS)) ?? []);
    let listChanged = false;
    const writes: { key: string; value: unknown }[] = [];
    const deletes: string[] = [];
    ids.forEach((id, i) => {
      const { add, remove } = edits.get(id) as { add: Map<string, number>; remove: Set<string> };
      const record: BucketRecord = { ...(records[i] ?? {}) };
      for (const key of remove) delete record[key];
      for (const [key, time] of add) record[key] = time;
      if (Object.keys(record).length === 0) {
        deletes.push(recordKey(id));
        listChanged = listed.delete(id) || listChanged;
      } else {
        writes.push({ key: recordKey(id), value: record });
        if (!listed.has(id)) {
          listed.add(id);
          listChanged = true;
        }
      }
    });
    for (const [key, { to }] of moves) {
      if (to === undefined) deletes.push(pullKey(key));
      else writes.push({ key: pullKey(key), value: to });
    }
    if (listChanged) writes.push({ key: BUCKETS, value: [...listed].sort(byAge) });
    if (writes.length > 0) await this.keyv.setMany(writes);
    if (deletes.length > 0) await this.keyv.deleteMany(deletes);
  }

  /**
   * Entries oldest first, read bucket by bucket (a bucket's entries sorted by
   * time). A copy left in an older bucket (a flush that could not remove it,
   * a replica's race) is skipped: the entry's own `pull:` time decides.
   * Pulls recorded after a bucket was read are not seen: a caller checks
   * `pendingPull` before acting on an entry.
   */
  async *oldest(): AsyncGenerator<AccessEntry> {
    const listed = (await this.keyv.get<string[]>(BUCKETS)) ?? [];
    for (let i = 0; i < listed.length; ) {
      // A bucket's shards together, sorted by time.
      const bucket = bucketOfRecord(listed[i] as string);
      const shards: string[] = [];
      while (i < listed.length && bucketOfRecord(listed[i] as string) === bucket) shards.push(listed[i++] as string);
      const records = await this.keyv.getMany<BucketRecord>(shards.map(recordKey));
      const entries = records.flatMap((r) => Object.entries(r ?? {})).sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
      const current = await this.keyv.getMany<number>(entries.map(([key]) => pullKey(key)));
      for (const [n, [key, time]] of entries.entries()) {
        const own = current[n] ?? undefined;
        if (own === undefined || own === time) yield { ...splitEntry(key), time };
      }
    }
  }

  /** Reads one stored value of this namespace (the quota keeps its total beside the pull times). */
  async get<T>(key: string): Promise<T | undefined> {
    return (await this.keyv.get<T>(key)) ?? undefined;
  }

  async set(key: string, value: unknown): Promise<void> {
    await this.keyv.set(key, value);
  }
}
