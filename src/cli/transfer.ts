/** `stevedore prefetch`, `export` and `import` (src/transfer/). */
import type { Logger } from 'pino';
import type { StevedoreConfig } from '../config/types.js';
import type { Command } from './args.js';

export type PrefetchCommand = Extract<Command, { kind: 'prefetch' }>;
export type ExportCommand = Extract<Command, { kind: 'export' }>;
export type ImportCommand = Extract<Command, { kind: 'import' }>;

export async function prefetchCommand(command: PrefetchCommand, config: StevedoreConfig, log: Logger): Promise<number> {
  void [command, config, log];
  throw new Error('prefetch is not built yet');
}

export async function exportCommand(command: ExportCommand, config: StevedoreConfig, log: Logger): Promise<number> {
  void [command, config, log];
  throw new Error('export is not built yet');
}

export async function importCommand(command: ImportCommand, config: StevedoreConfig, log: Logger): Promise<number> {
  void [command, config, log];
  throw new Error('import is not built yet');
}
