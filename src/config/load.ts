/**
 * Reading the configuration: a Distribution config.yml (or, with no file, the
 * embedded default below), then the REGISTRY_… / STEVEDORE_… environment
 * overrides, then validation against the schema table. Every problem is
 * collected; errors are thrown together as one ConfigError, warnings are
 * returned as notices for the caller to log. The result is deeply frozen.
 */
import { readFile } from 'node:fs/promises';

import { build } from './build.js';
import { applyEnv } from './env.js';
import { ConfigError, NoticeLog } from './errors.js';
import { isRawMap, parseYaml, type RawMap } from './raw.js';
import type { LoadedConfig } from './types.js';
import { check } from './validate.js';

export const EMBEDDED_SOURCE = '(embedded default)';

/**
 * What Stevedore runs with when given no file: a Docker Hub mirror keeping
 * its data under ./data. Unlike Distribution's defaults (no proxy,
 * /var/lib/registry) it is meant to work for `stevedore serve` out of the box.
 */
export const EMBEDDED_DEFAULT_YAML = `version: 0.1
log:
  level: info
  formatter: json
storage:
  filesystem:
    rootdirectory: ./data
http:
  addr: :5000
metadata:
  store: memory
proxy:
  remoteurl: https://registry-1.docker.io
  ttl: 168h
  tagttl: 5m
`;

export interface LoadOptions {
  /** A Distribution config.yml; without it the embedded default is used. */
  path?: string;
  /** Where REGISTRY_… and STEVEDORE_… overrides are read; process.env by default. */
  env?: NodeJS.ProcessEnv;
}

export async function loadConfig(options: LoadOptions = {}): Promise<LoadedConfig> {
  const env = options.env ?? process.env;
  if (options.path === undefined) return parseConfig(EMBEDDED_DEFAULT_YAML, env, EMBEDDED_SOURCE);
  let text: string;
  try {
    text = await readFile(options.path, 'utf8');
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConfigError('ERR_CONFIG_UNREADABLE', options.path, [
      { level: 'error', path: '', message: `cannot read the configuration file: ${reason}` },
    ], { cause: err });
  }
  return parseConfig(text, env, options.path);
}

/** Pure: the same text and environment always give the same result. */
export function parseConfig(yamlText: string, env: NodeJS.ProcessEnv, source: string): LoadedConfig {
  const log = new NoticeLog();
  const parsed = parseYaml(yamlText, '', log);
  if (parsed === undefined) throw new ConfigError('ERR_CONFIG_INVALID', source, log.notices);

  // A file that is not a mapping is reported by check(); the environment still gets a mapping to fill.
  const root: RawMap = isRawMap(parsed) ? parsed : new Map();
  applyEnv(root, env, log);
  const checked = check(isRawMap(parsed) || parsed === null ? root : parsed, log);
  const config = build(checked, log);
  if (log.hasErrors) throw new ConfigError('ERR_CONFIG_INVALID', source, log.notices);
  return deepFreeze({ config, notices: log.notices, source });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
