/**
 * Configuration from the environment, Distribution style: REGISTRY_ followed
 * by the key path upper-cased and joined with '_' (REGISTRY_PROXY_REMOTEURL,
 * REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY), and the same with STEVEDORE_.
 *
 * A variable names the longest key path of the schema its name starts with;
 * what follows may only go on below a free-form key (REGISTRY_LOG_FIELDS_SERVICE
 * → log.fields.service). Overrides are applied shallow paths first, so a
 * variable for a whole section never wipes out one for a key inside it, and at
 * the same path STEVEDORE_ wins over REGISTRY_.
 *
 * Values of string keys are taken verbatim, so a password with '#', ': ' or
 * quotes survives (Distribution would parse it as YAML and mangle it); every
 * other value is parsed as YAML: 'true', '0', '10s', '{remoteurl: …}'.
 */
import type { NoticeLog } from './errors.js';
import { parseYaml, setRaw, type Raw, type RawMap } from './raw.js';
import { SCHEMA_BY_ENV_KEY, type Kind, type SchemaEntry } from './schema.js';

/** In increasing precedence. */
export const ENV_PREFIXES = ['REGISTRY_', 'STEVEDORE_'] as const;

/**
 * Not configuration keys: where the CLI looks for the configuration file
 * (REGISTRY_CONFIGURATION_PATH is Distribution's), in this order.
 */
export const CONFIG_PATH_ENV = ['STEVEDORE_CONFIGURATION_PATH', 'REGISTRY_CONFIGURATION_PATH'] as const;

export function configPathFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  for (const name of CONFIG_PATH_ENV) {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

const FREE_FORM: ReadonlySet<Kind> = new Set(['map', 'list', 'any']);
const VERBATIM: ReadonlySet<Kind> = new Set(['string', 'url']);

interface Override {
  name: string;
  rank: number;
  path: string;
  segments: string[];
  value: Raw;
}

/** The key path an environment variable sets (without its prefix), or undefined when it names none. */
export function envPath(rest: string): { segments: string[]; entry: SchemaEntry; exact: boolean } | undefined {
  const tokens = rest.split('_');
  if (tokens.includes('')) return undefined;
  for (let i = tokens.length; i > 0; i--) {
    const entry = SCHEMA_BY_ENV_KEY.get(tokens.slice(0, i).join('_'));
    if (entry === undefined) continue;
    const segments = entry.path.split('.');
    if (i === tokens.length) return { segments, entry, exact: true };
    if (!FREE_FORM.has(entry.kind)) return undefined;
    return { segments: [...segments, ...tokens.slice(i).map((t) => t.toLowerCase())], entry, exact: false };
  }
  return undefined;
}

/** Applies the overrides in `env` to `root` in place, recording in `log` which variable set which path. */
export function applyEnv(root: RawMap, env: NodeJS.ProcessEnv, log: NoticeLog): void {
  const overrides: Override[] = [];
  for (const [name, text] of Object.entries(env)) {
    const rank = ENV_PREFIXES.findIndex((prefix) => name.startsWith(prefix));
    const prefix = ENV_PREFIXES[rank];
    if (prefix === undefined || text === undefined) continue;
    if ((CONFIG_PATH_ENV as readonly string[]).includes(name)) continue;
    const target = envPath(name.slice(prefix.length));
    if (target === undefined) {
      log.warn(name, `unknown environment variable: it names no configuration key, so it is ignored`);
      continue;
    }
    let value: Raw | undefined;
    if (target.exact && VERBATIM.has(target.entry.kind)) value = text === '' ? null : text;
    else value = parseYaml(text, name, log);
    if (value === undefined) continue;
    overrides.push({ name, rank, path: target.segments.join('.'), segments: target.segments, value });
  }

  overrides.sort(
    (a, b) => a.segments.length - b.segments.length || a.rank - b.rank || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  for (const o of overrides) {
    if (setRaw(root, o.segments, o.value)) log.setOrigin(o.path, o.name);
    else log.warn(o.name, `list index out of range for ${o.path}; ignored`);
  }
}
