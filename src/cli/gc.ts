/**
 * `stevedore gc`: garbage collection of the storage (src/lifecycle/gc.ts).
 *
 * stdout carries the lines Distribution 2.8's `registry garbage-collect`
 * prints, in its words, so that runs of the two can be compared:
 *
 *   <repo>
 *   <repo>: marking manifest <digest>␠          (its trailing space too)
 *   <repo>: marking blob <digest>
 *   manifest eligible for deletion: <digest>   (--delete-untagged)
 *
 *   <N> blobs marked, <M> blobs and <K> manifests eligible for deletion
 *   blob eligible for deletion: <digest>
 *
 * and, without --dry-run, the lines Distribution logs as it deletes
 * (`deleting manifest tag reference: <path>`, `deleting manifest: <path>`,
 * `Deleting blob: <path>`). Then what Distribution does not do — links to
 * blobs that are gone, idle uploads — in the same style, and one line of
 * totals with bytes. Logs go to stderr.
 */
import type { Logger } from 'pino';
import { formatDuration } from '../config/duration.js';
import type { StevedoreConfig } from '../config/types.js';
import { collectGarbage, type GcEvent, type GcReport } from '../lifecycle/gc.js';
import { LeaseHeld } from '../lifecycle/lease.js';
import { Leases } from '../coordination/leases.js';
import { openLeaseStore } from '../coordination/lease-store.js';
import { openStorageDriver } from '../storage/open.js';
import { LocalStorage } from '../storage/local.js';
import type { Command } from './args.js';

export type GcCommand = Extract<Command, { kind: 'gc' }>;

/** One line of output per event, Distribution's text where it has one. */
export function gcLine(event: GcEvent): string {
  switch (event.kind) {
    case 'repository':
      return event.name;
    case 'markManifest':
      return `${event.name}: marking manifest ${event.digest} `;
    case 'markBlob':
      return `${event.name}: marking blob ${event.digest}`;
    case 'manifestEligible':
      return `manifest eligible for deletion: ${event.digest}`;
    case 'deleteTagReference':
      return `deleting manifest tag reference: ${event.path}`;
    case 'deleteManifest':
      return `deleting manifest: ${event.path}`;
    case 'summary':
      return `\n${event.marked} blobs marked, ${event.blobs} blobs and ${event.manifests} manifests eligible for deletion`;
    case 'blobEligible':
      return `blob eligible for deletion: ${event.digest}`;
    case 'deleteBlob':
      return `Deleting blob: ${event.path}`;
    case 'linkEligible':
      return `link eligible for deletion: ${event.path}`;
    case 'deleteLink':
      return `Deleting link: ${event.path}`;
    case 'uploadEligible':
      return `upload eligible for deletion: ${event.path}`;
    case 'deleteUpload':
      return `Deleting upload: ${event.path}`;
  }
}

/** Our own last line: what went (or would go), in bytes too, and what the grace period kept. */
export function totalsLine(report: GcReport, graceMs: number): string {
  const blobs = report.dryRun ? `${report.blobsEligible} blobs (${report.bytesEligible} bytes)` : `${report.blobsDeleted} blobs (${report.bytesFreed} bytes)`;
  const what = `${blobs}, ${report.manifests} manifests, ${report.links} links and ${report.uploads} uploads (${report.uploadBytes} bytes)`;
  const kept = `${report.youngBlobs} unreferenced blobs (${report.youngBytes} bytes) younger than the grace period (${formatDuration(graceMs)}) kept`;
  return `totals: ${what} ${report.dryRun ? 'eligible for deletion' : 'deleted'}; ${kept}`;
}

/** Lines gathered into large writes: a tree of 100,000 blobs prints as many lines. */
function bufferedStdout(): { line(text: string): void; flush(): Promise<void> } {
  let pending: string[] = [];
  let size = 0;
  const take = (): string => {
    const chunk = pending.join('');
    pending = [];
    size = 0;
    return chunk;
  };
  return {
    line(text) {
      pending.push(`${text}\n`);
      size += text.length + 1;
      if (size >= 64 * 1024) process.stdout.write(take());
    },
    // Resolves once everything written so far is handed to the OS (writes are queued in order).
    flush: () => new Promise((resolve, reject) => process.stdout.write(take(), (err) => (err ? reject(err) : resolve()))),
  };
}

/** Runs the command; resolves to the process exit code. */
export async function gcCommand(command: GcCommand, config: StevedoreConfig, log: Logger): Promise<number> {
  const storage = new LocalStorage(await openStorageDriver(config.storage));
  const graceMs = config.storage.maintenance.gc.graceMs;
  const out = bufferedStdout();
  let report: GcReport;
  // With a shared metadata store the sweep lease is taken there too, as the servers take it.
  const shared = command.dryRun ? undefined : new Leases(await openLeaseStore(config.metadata), { log });
  try {
    report = await collectGarbage(storage, {
      dryRun: command.dryRun,
      deleteUntagged: command.deleteUntagged,
      graceMs,
      log,
      emit: (event) => out.line(gcLine(event)),
      ...(shared === undefined ? {} : { lease: { shared } }),
    });
  } catch (err) {
    await out.flush();
    if (!(err instanceof LeaseHeld)) throw err;
    process.stderr.write(`stevedore gc: another process is sweeping this storage: ${err.message}. Nothing was deleted; try again once it is done.\n`);
    return 1;
  } finally {
    await shared?.close();
  }
  out.line(totalsLine(report, graceMs));
  await out.flush();
  if (report.interrupted !== undefined) {
    process.stderr.write(`stevedore gc: stopped before the end: ${report.interrupted}\n`);
    return 1;
  }
  return 0;
}
