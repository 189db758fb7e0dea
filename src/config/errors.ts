import type { ConfigNotice } from './types.js';

/**
 * Thrown when the configuration cannot be used. Every problem found is in
 * `notices` (errors and the warnings found alongside them), each with the key
 * path it is about, so the operator fixes everything in one go.
 */
export const CONFIG_ERROR_CODES = [
  /** The file or the environment holds values Stevedore cannot run with. */
  'ERR_CONFIG_INVALID',
  /** The configuration file could not be read. */
  'ERR_CONFIG_UNREADABLE',
] as const;
export type ConfigErrorCode = (typeof CONFIG_ERROR_CODES)[number];

export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  readonly notices: readonly ConfigNotice[];
  readonly source: string;

  constructor(code: ConfigErrorCode, source: string, notices: readonly ConfigNotice[], options?: { cause?: unknown }) {
    const errors = notices.filter((n) => n.level === 'error');
    const lines = errors.map((n) => `  - ${n.path === '' ? '(file)' : n.path}: ${n.message}`);
    super(`invalid configuration in ${source}:\n${lines.join('\n')}`, options);
    this.name = 'ConfigError';
    this.code = code;
    this.notices = notices;
    this.source = source;
  }
}

export const isConfigError = (err: unknown): err is ConfigError => err instanceof ConfigError;

/**
 * Collects notices while the configuration is read. Knows which key paths the
 * environment set, so a message about such a key names the variable to fix.
 */
export class NoticeLog {
  readonly notices: ConfigNotice[] = [];
  private readonly origins = new Map<string, string>();

  /** Records that environment variable `name` set the value at `path`. */
  setOrigin(path: string, name: string): void {
    this.origins.set(path, name);
  }

  warn(path: string, message: string): void {
    this.notices.push({ level: 'warn', path, message: this.withOrigin(path, message) });
  }

  error(path: string, message: string): void {
    this.notices.push({ level: 'error', path, message: this.withOrigin(path, message) });
  }

  get hasErrors(): boolean {
    return this.notices.some((n) => n.level === 'error');
  }

  private withOrigin(path: string, message: string): string {
    const names = new Set<string>();
    for (const [origin, name] of this.origins) {
      if (origin === path || path.startsWith(`${origin}.`) || origin.startsWith(`${path}.`)) names.add(name);
    }
    return names.size === 0 ? message : `${message} (set by ${[...names].join(', ')})`;
  }
}
