/**
 * Upload sessions left behind, and their removal.
 *
 * Upload purging (`storage.maintenance.uploadpurging`), as Distribution does
 * it: upload directories (`_uploads/<id>`) whose `startedat` is older than
 * `age` are removed every `interval`.
 *
 * Stevedore's blob fills spool into the same place, under `fill-<owner>-…`
 * ids (storage/owner.ts), so they are told apart from client uploads:
 * - a fill is journalled (`stevedore/v1/fills/<id>`) while it runs; at
 *   startup, the spools of the journalled fills of runs on this host that are
 *   over (a crash, a kill -9) are removed at once, with the driver's own
 *   scratch files, without walking the repositories;
 * - on every purge, a fill spool nobody wrote to for ABANDONED_FILL_MS is
 *   removed whoever owned it (a replica on another host that died), since a
 *   live fill writes or gives up within its timeouts.
 */
import type { Logger } from 'pino';
import { parseRepositoryName, type RepositoryName } from '../registry/names.js';
import { listRepositories } from '../storage/catalog.js';
import { isPathNotFound, type StorageDriver } from '../storage/driver.js';
import { fillSessionOwner, isDeadOwner, isFillSession } from '../storage/owner.js';
import { children } from '../storage/links.js';
import { pathFor } from '../storage/paths.js';

/** A fill spool untouched this long is abandoned: fills write continuously or fail within minutes. */
export const ABANDONED_FILL_MS = 60 * 60 * 1000;

export interface PurgeOptions {
  ageMs: number;
  dryRun: boolean;
  now?: () => number;
}

export interface PurgeReport {
  uploadsRemoved: number;
  dryRun: boolean;
}

interface UploadSession {
  repository: RepositoryName;
  id: string;
  dir: string;
}

/** Every upload session directory in storage, repository by repository. */
async function* uploadSessions(driver: StorageDriver, log: Logger): AsyncGenerator<UploadSession> {
  const repositories = await listRepositories(driver, Number.MAX_SAFE_INTEGER, undefined, ['_uploads'], (path) =>
    log.warn({ path }, 'skipping a directory that is not a valid repository name'),
  );
  for (const name of repositories) {
    const repository = name as RepositoryName;
    for (const id of await children(driver, pathFor({ kind: 'uploadsRoot', name: repository }))) {
      let dir: string;
      try {
        dir = pathFor({ kind: 'uploadDir', name: repository, id });
      } catch {
        continue; // not an upload id we or Distribution would write
      }
      yield { repository, id, dir };
    }
  }
}

export async function purgeUploads(driver: StorageDriver, options: PurgeOptions, log: Logger): Promise<PurgeReport> {
  const now = (options.now ?? Date.now)();
  const report: PurgeReport = { uploadsRemoved: 0, dryRun: options.dryRun };
  for await (const { repository, id, dir } of uploadSessions(driver, log)) {
    const started = await startedAt(driver, pathFor({ kind: 'uploadStartedAt', name: repository, id }), dir);
    let abandoned = started !== undefined && now - started > options.ageMs;
    if (!abandoned && isFillSession(id)) {
      const written = (await driver.stat(pathFor({ kind: 'uploadData', name: repository, id })))?.modTime.getTime() ?? started;
      abandoned = written !== undefined && now - written > ABANDONED_FILL_MS;
    }
    if (!abandoned) continue;
    report.uploadsRemoved += 1;
    log.info({ repository, upload: id, startedAt: started === undefined ? undefined : new Date(started).toISOString(), dryRun: options.dryRun }, 'purging abandoned upload');
    if (!options.dryRun) await driver.delete(dir).catch(() => undefined);
  }
  // Journal entries whose spool is gone (a replica on another host that died) go too.
  for await (const { id, entry, repository } of journalledFills(driver)) {
    const spool = repository === undefined ? undefined : await driver.stat(pathFor({ kind: 'uploadDir', name: repository, id }));
    if (spool === undefined && !options.dryRun) await driver.delete(entry).catch(() => undefined);
  }
  return report;
}

export interface RecoveryReport {
  /** Fill spools of runs that are over, removed. */
  spools: number;
  /** The storage driver's scratch files (temp files), removed. */
  scratchFiles: number;
  bytes: number;
}

/** The fills journal (`stevedore/v1/fills/<id>` → repository): fills started and not finished. */
async function* journalledFills(driver: StorageDriver): AsyncGenerator<{ id: string; entry: string; repository: RepositoryName | undefined }> {
  for (const id of await children(driver, pathFor({ kind: 'fillsJournal' }))) {
    let entry: string;
    try {
      entry = pathFor({ kind: 'fillJournalEntry', id });
    } catch {
      continue; // not a name Stevedore writes
    }
    const content = await driver.getContent(entry).catch(() => undefined);
    const name = content?.toString('utf8').trim();
    let repository: RepositoryName | undefined;
    try {
      repository = name === undefined ? undefined : parseRepositoryName(name);
    } catch {
      repository = undefined;
    }
    yield { id, entry, repository };
  }
}

/**
 * What runs of Stevedore on this host that are over left behind: the spools
 * of the fills they journalled and did not finish, and the driver's temp
 * files. It reads the journal and the scratch directory only, never walks
 * the repositories. Client upload sessions are never touched here (purging
 * handles them by age), nor spools of live processes.
 */
export async function recoverInterrupted(driver: StorageDriver, log: Logger, spool?: StorageDriver): Promise<RecoveryReport> {
  const report: RecoveryReport = { spools: 0, scratchFiles: 0, bytes: 0 };
  // A local spool in front of an object store: the copies of fills whose process is over.
  if (spool !== undefined) {
    for (const id of await children(spool, '/fills')) {
      const owner = fillSessionOwner(id);
      if (owner === undefined || !isDeadOwner(owner)) continue;
      const size = (await spool.stat(`/fills/${id}`).catch(() => undefined))?.size ?? 0;
      if (await spool.delete(`/fills/${id}`).then(() => true, () => false)) {
        report.spools += 1;
        report.bytes += size;
      }
    }
    const scratch = (await spool.recover?.()) ?? { files: 0, bytes: 0 };
    report.scratchFiles += scratch.files;
    report.bytes += scratch.bytes;
  }
  for await (const { id, entry, repository } of journalledFills(driver)) {
    const owner = fillSessionOwner(id);
    if (owner === undefined || !isDeadOwner(owner)) continue;
    if (repository !== undefined) {
      const size = (await driver.stat(pathFor({ kind: 'uploadData', name: repository, id })))?.size ?? 0;
      const removed = await driver.delete(pathFor({ kind: 'uploadDir', name: repository, id })).then(
        () => true,
        (err: unknown) => {
          if (isPathNotFound(err)) return false;
          throw err;
        },
      );
      if (removed) {
        report.spools += 1;
        report.bytes += size;
      }
    }
    await driver.delete(entry).catch(() => undefined);
  }
  const scratch = (await driver.recover?.()) ?? { files: 0, bytes: 0 };
  report.scratchFiles += scratch.files;
  report.bytes += scratch.bytes;
  if (report.spools + report.scratchFiles > 0) {
    log.info(report, 'removed what an interrupted run left behind: fill spools and temp files');
  } else {
    log.debug('nothing left behind by an interrupted run');
  }
  return report;
}

/** The upload's start time: its `startedat` file, else the directory's modification time. */
async function startedAt(driver: StorageDriver, file: string, dir: string): Promise<number | undefined> {
  try {
    const parsed = Date.parse((await driver.getContent(file)).toString('utf8').trim());
    if (!Number.isNaN(parsed)) return parsed;
  } catch (err) {
    if (!isPathNotFound(err)) throw err;
  }
  return (await driver.stat(dir))?.modTime.getTime();
}

/** The first purge waits up to this long, at random (Distribution's jitter), so replicas and restarts spread the walk. */
const FIRST_PURGE_JITTER_MS = 60 * 60 * 1000;

/**
 * Purges on a timer. The purge walks every repository, so it stays off
 * startup: like Distribution, the first one runs after a random delay of up
 * to an hour (never more than the interval), and each one logs what it did.
 */
export function schedulePurging(driver: StorageDriver, options: PurgeOptions & { intervalMs: number }, log: Logger): () => void {
  let running = false;
  const run = (): void => {
    if (running) return;
    running = true;
    const started = Date.now();
    purgeUploads(driver, options, log)
      .then(async (report) => {
        // The driver's own leftovers too: temp files of runs that are over, an object store's abandoned multipart uploads.
        // Scratch idle for the purge age (at most an hour: a live writer touches its own far more often) is abandoned.
        const scratch = options.dryRun ? undefined : await driver.recover?.({ idleMs: Math.min(options.ageMs, ABANDONED_FILL_MS) });
        log.info({ ...report, ...(scratch === undefined ? {} : { scratchFiles: scratch.files, scratchBytes: scratch.bytes }), durationMs: Date.now() - started }, 'upload purge done');
      })
      .catch((err: unknown) => log.error({ err }, 'upload purging failed'))
      .finally(() => {
        running = false;
      });
  };
  const delay = Math.floor(Math.random() * Math.min(FIRST_PURGE_JITTER_MS, options.intervalMs));
  log.info({ inMs: delay, intervalMs: options.intervalMs, ageMs: options.ageMs }, 'upload purging scheduled');
  const first = setTimeout(run, delay);
  const timer = setInterval(run, options.intervalMs);
  first.unref();
  timer.unref();
  return () => {
    clearTimeout(first);
    clearInterval(timer);
  };
}
