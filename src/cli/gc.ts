/** `stevedore gc`: garbage collection of the storage (src/lifecycle/gc.ts), with Distribution's output. */
import type { Logger } from 'pino';
import type { StevedoreConfig } from '../config/types.js';
import type { Command } from './args.js';

export type GcCommand = Extract<Command, { kind: 'gc' }>;

/** Runs the command; resolves to the process exit code. */
export async function gcCommand(command: GcCommand, config: StevedoreConfig, log: Logger): Promise<number> {
  void command;
  void config;
  void log;
  throw new Error('gc is not built yet');
}
