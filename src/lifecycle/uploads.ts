/**
 * Upload purging (`storage.maintenance.uploadpurging`), as Distribution does
 * it: upload directories (`_uploads/<id>`) whose `startedat` is older than
 * `age` are removed every `interval`. Stevedore's blob fills spool into the
 * same place, so what a crash or a kill -9 leaves behind is purged too.
 */
import type { Logger } from 'pino';
import { listRepositories } from '../storage/catalog.js';
import { isPathNotFound, type StorageDriver } from '../storage/driver.js';
import { pathFor } from '../storage/paths.js';
import { parseRepositoryName } from '../registry/names.js';

export interface PurgeOptions {
  ageMs: number;
  dryRun: boolean;
  now?: () => number;
}

export interface PurgeReport {
  uploadsRemoved: number;
  dryRun: boolean;
}

export async function purgeUploads(driver: StorageDriver, options: PurgeOptions, log: Logger): Promise<PurgeReport> {
  const now = (options.now ?? Date.now)();
  const report: PurgeReport = { uploadsRemoved: 0, dryRun: options.dryRun };
  for (const repository of await listRepositories(driver, Number.MAX_SAFE_INTEGER, undefined, ['_uploads'])) {
    const name = parseRepositoryName(repository);
    let ids: string[];
    try {
      ids = await driver.list(pathFor({ kind: 'uploadsRoot', name }));
    } catch (err) {
      if (isPathNotFound(err)) continue;
      throw err;
    }
    for (const id of ids) {
      let dir: string;
      try {
        dir = pathFor({ kind: 'uploadDir', name, id });
      } catch {
        continue; // not an upload id we or Distribution would write
      }
      const started = await startedAt(driver, pathFor({ kind: 'uploadStartedAt', name, id }), dir);
      if (started === undefined || now - started <= options.ageMs) continue;
      report.uploadsRemoved += 1;
      log.info({ repository, upload: id, startedAt: new Date(started).toISOString(), dryRun: options.dryRun }, 'purging abandoned upload');
      if (!options.dryRun) await driver.delete(dir).catch(() => undefined);
    }
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

/** Purges on a timer; the first purge runs shortly after start, as in Distribution. */
export function schedulePurging(driver: StorageDriver, options: PurgeOptions & { intervalMs: number }, log: Logger): () => void {
  let running = false;
  const run = (): void => {
    if (running) return;
    running = true;
    purgeUploads(driver, options, log)
      .catch((err: unknown) => log.error({ err }, 'upload purging failed'))
      .finally(() => {
        running = false;
      });
  };
  const first = setTimeout(run, 5_000);
  const timer = setInterval(run, options.intervalMs);
  first.unref();
  timer.unref();
  return () => {
    clearTimeout(first);
    clearInterval(timer);
  };
}
