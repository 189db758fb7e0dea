/**
 * `stevedore prefetch`, `export` and `import` (src/transfer/), on the
 * storage, metadata and upstreams of the configuration serve would run
 * with. Each resolves to the exit code: 0, or 1 when any image failed or
 * the bundle was refused (named on stderr). Results go to stdout — bars
 * and lines for people on a terminal, JSON lines otherwise — logs to stderr.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { buildRegistry } from '../app.js';
import type { StevedoreConfig } from '../config/types.js';
import { isRegistryError } from '../registry/errors.js';
import { LocalStorage } from '../storage/local.js';
import { isTransferError } from '../transfer/errors.js';
import { exportBundle } from '../transfer/export.js';
import { importBundle } from '../transfer/import.js';
import { platformChoice } from '../transfer/platforms.js';
import { Prefetcher } from '../transfer/prefetch.js';
import { BarReporter, formatBytes, JsonLinesReporter, type PrefetchSummary } from '../transfer/progress.js';
import { parseImageList } from '../transfer/reference.js';
import type { Command } from './args.js';

export type PrefetchCommand = Extract<Command, { kind: 'prefetch' }>;
export type ExportCommand = Extract<Command, { kind: 'export' }>;
export type ImportCommand = Extract<Command, { kind: 'import' }>;

/** Where a command writes; tests pass their own. */
export interface CommandIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream;
}

const processIo = (): CommandIo => ({ stdout: process.stdout, stderr: process.stderr });

/** An error as one line: the OCI code of a registry error first. */
const describe = (err: unknown): string => (isRegistryError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err));

const line = (io: CommandIo, value: object): void => void io.stdout.write(`${JSON.stringify(value)}\n`);

export async function prefetchCommand(command: PrefetchCommand, config: StevedoreConfig, log: Logger, io: CommandIo = processIo()): Promise<number> {
  const images = [...command.images];
  if (command.file !== undefined) images.push(...parseImageList(await readFile(command.file, 'utf8')));
  if (images.length === 0) throw new Error(`${command.file ?? 'the command line'} names no images`);
  const platforms = platformChoice(command.platforms, command.allPlatforms, config.defaultPlatform);
  const tty = io.stdout.isTTY === true;
  // On a terminal the bars are the output: the proxy's per-blob info lines would tear them.
  const registryLog = tty && log.isLevelEnabled('info') ? log.child({}, { level: 'warn' }) : log;
  if (config.offline) log.warn('proxy.offline is set: prefetch fetches nothing, it only checks what is stored');
  const built = await buildRegistry(config, registryLog, { sweep: false });
  const prefetcher = new Prefetcher(built.routing, new LocalStorage(built.driver, { platform: config.defaultPlatform }), { platforms });
  const reporter = tty ? new BarReporter(io.stdout, images.length) : new JsonLinesReporter(io.stdout);
  const summary: PrefetchSummary = { images: images.length, done: 0, failed: 0, bytes: 0, failedImages: [] };
  const failures: string[] = [];
  try {
    for (const image of images) {
      const report = reporter.image(image);
      try {
        const result = await prefetcher.image(image, report);
        summary.done += 1;
        summary.bytes += result.bytes;
        report.done(result);
      } catch (err) {
        const message = describe(err);
        summary.failed += 1;
        summary.failedImages.push(image);
        failures.push(`${image}: ${message}`);
        report.failed(message);
      }
    }
  } finally {
    reporter.end(summary);
    await built.close();
  }
  if (failures.length === 0) return 0;
  io.stderr.write(`stevedore: prefetch failed for ${failures.length} of ${images.length} images:\n  ${failures.join('\n  ')}\n`);
  return 1;
}

/** Export and import work on storage alone: the registry is built offline (no upstream clients, no metadata). */
async function onStorage<T>(config: StevedoreConfig, log: Logger, run: (built: Awaited<ReturnType<typeof buildRegistry>>, storage: LocalStorage) => Promise<T>): Promise<T> {
  const built = await buildRegistry({ ...config, offline: true }, log, { sweep: false });
  try {
    return await run(built, new LocalStorage(built.driver, { platform: config.defaultPlatform }));
  } finally {
    await built.close();
  }
}

export async function exportCommand(command: ExportCommand, config: StevedoreConfig, log: Logger, io: CommandIo = processIo()): Promise<number> {
  let result;
  try {
    result = await onStorage(config, log, (built, storage) =>
      exportBundle({ routing: built.routing, storage, images: command.images, output: command.output, referrers: command.referrers, log }),
    );
  } catch (err) {
    if (!isTransferError(err) && !isRegistryError(err)) throw err;
    io.stderr.write(`stevedore: export failed: ${describe(err)}\n`);
    return 1;
  }
  for (const image of result.images) {
    if (io.stdout.isTTY === true) {
      const extra = [image.signatures > 0 ? `${image.signatures} signatures` : '', image.referrers > 0 ? `${image.referrers} referrers` : '', image.childrenNotCached > 0 ? `${image.childrenNotCached} platforms not cached` : '']
        .filter(Boolean)
        .join(', ');
      io.stdout.write(`exported ${image.reference} as oci-archive:${command.output}:${image.refName} (${image.manifests} manifests, ${image.blobs} blobs${extra ? `, ${extra}` : ''})\n`);
    } else {
      const { reference, ...rest } = image;
      line(io, { image: reference, status: 'exported', ...rest });
    }
  }
  if (io.stdout.isTTY === true) io.stdout.write(`${result.images.length} images, ${result.files} files, ${formatBytes(result.bytes)} in ${command.output}\n`);
  else line(io, { status: 'summary', bundle: command.output, images: result.images.length, files: result.files, bytes: result.bytes });
  return 0;
}

export async function importCommand(command: ImportCommand, config: StevedoreConfig, log: Logger, io: CommandIo = processIo()): Promise<number> {
  let result;
  try {
    result = await onStorage(config, log, (_, storage) => importBundle({ storage, bundle: command.bundle, log }));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES') {
      io.stderr.write(`stevedore: cannot read ${command.bundle}: ${(err as Error).message}\n`);
      return 1;
    }
    if (!isTransferError(err) && !isRegistryError(err)) throw err;
    io.stderr.write(`stevedore: import of ${command.bundle} refused: ${describe(err)}\nNothing was imported; the storage is as it was.\n`);
    return 1;
  }
  if (io.stdout.isTTY === true) {
    for (const image of result.images) io.stdout.write(`imported ${image.repository}${image.tag === undefined ? '' : `:${image.tag}`}@${image.digest}\n`);
    io.stdout.write(`${result.blobsAdded} blobs added (${formatBytes(result.bytesAdded)}), ${result.blobsPresent} already stored, ${result.linksAdded} links written\n`);
  } else {
    for (const image of result.images) line(io, { status: 'imported', ...image });
    const { images, ...totals } = result;
    line(io, { status: 'summary', bundle: command.bundle, images: images.length, ...totals });
  }
  return 0;
}
