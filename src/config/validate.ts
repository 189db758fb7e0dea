/**
 * Checks the raw configuration against the schema table, key by key: unknown
 * keys, keys Stevedore does not support yet, and values of the wrong type all
 * become notices carrying the key path. What passes is typed (booleans,
 * numbers, durations in ms) and the schema's defaults fill in what is absent.
 */
import { DurationError, parseDuration } from './duration.js';
import { parseSize, SizeError } from './size.js';
import type { NoticeLog } from './errors.js';
import { describe, isRawMap, join, type Raw, type RawMap } from './raw.js';
import { childKeys, SCHEMA, schemaEntry, STORAGE_NON_DRIVERS, type SchemaEntry } from './schema.js';

export type Value = string | number | boolean | Raw;

export interface Checked {
  /** Typed values by key path, defaults included. Sections and null values are not in it. */
  readonly values: ReadonlyMap<string, Value>;
  /** Every key path written in the file or the environment, even with an empty value. */
  readonly present: ReadonlySet<string>;
}

type Coerced = { value: Value } | { error: string };

/** Keys of `auth` that are providers (Distribution's rule: at most one); the others configure auth in general. */
const AUTH_PROVIDERS: ReadonlySet<string> = new Set(['htpasswd', 'token', 'silly']);

/** Names of 'named' sections' entries (upstream names). */
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Tag patterns: tag characters and `*`. */
const TAG_PATTERN = /^[A-Za-z0-9_.*-]{1,128}$/;

export function check(root: Raw, log: NoticeLog): Checked {
  const values = new Map<string, Value>();
  const present = new Set<string>();
  let top: RawMap = new Map();
  if (isRawMap(root)) top = root;
  else if (root !== null) log.error('', `expected a mapping of configuration keys, got ${describe(root)}`);

  // Distribution accepts `storage: filesystem` and `auth: htpasswd` for a section with no parameters.
  for (const key of ['storage', 'auth']) {
    const value = top.get(key);
    if (typeof value === 'string' && value !== '') top.set(key, new Map([[value, null]]));
  }

  const walk = (map: RawMap, parent: string, noticed: boolean): void => {
    for (const [key, value] of map) {
      const path = join(parent, key);
      present.add(path);
      const entry = schemaEntry(path);
      if (entry === undefined) {
        unknownKey(log, parent, key);
        continue;
      }
      const reported = noticed || reportStatus(log, entry);
      if (value === null || (value === '' && ['string', 'url', 'enum'].includes(entry.kind))) continue;
      if (entry.kind === 'section') {
        if (isRawMap(value)) walk(value, path, reported);
        else log.error(path, `expected a mapping, got ${describe(value)}`);
        continue;
      }
      if (entry.kind === 'named') {
        if (!isRawMap(value)) {
          log.error(path, `expected a mapping of names, got ${describe(value)}`);
          continue;
        }
        for (const [name, section] of value) {
          const named = join(path, name);
          present.add(named);
          if (!NAME.test(name)) log.error(named, 'a name must be lower-case letters, digits and "-", starting with a letter or digit');
          else if (isRawMap(section)) walk(section, named, reported);
          else log.error(named, `expected a mapping, got ${describe(section)}`);
        }
        continue;
      }
      const typed = coerce(entry, value);
      if ('error' in typed) log.error(path, typed.error);
      else values.set(path, typed.value);
    }
  };
  walk(top, '', false);

  const storage = top.get('storage');
  if (storage === undefined || storage === null) {
    log.error('storage', 'required: configure exactly one storage driver, e.g. storage: {filesystem: {rootdirectory: /var/lib/registry}}');
  } else if (isRawMap(storage)) {
    const drivers = [...storage.keys()].filter((k) => !STORAGE_NON_DRIVERS.has(k));
    if (drivers.length === 0) log.error('storage', 'no storage driver configured: add storage.filesystem or storage.s3');
    if (drivers.length > 1) log.error('storage', `must configure exactly one storage driver, found ${drivers.join(', ')}`);
  }
  const auth = top.get('auth');
  const providers = isRawMap(auth) ? [...auth.keys()].filter((k) => AUTH_PROVIDERS.has(k)) : [];
  if (providers.length > 1) {
    log.error('auth', `must configure at most one auth provider, found ${providers.join(', ')}`);
  }

  for (const entry of SCHEMA) {
    // Rows of named sections have no defaults of their own: build() inherits them.
    if (entry.default === undefined || values.has(entry.path) || entry.path.includes('*')) continue;
    const typed = coerce(entry, entry.default);
    if ('error' in typed) throw new Error(`schema default of ${entry.path} is invalid: ${typed.error}`);
    values.set(entry.path, typed.value);
  }
  return { values, present };
}

/** Emits the notice an unsupported or deprecated key calls for; true when one about support was emitted. */
function reportStatus(log: NoticeLog, entry: SchemaEntry): boolean {
  if (entry.deprecated !== undefined) log.warn(entry.path, `deprecated: ${entry.deprecated}`);
  if (entry.status !== 'unsupported') return false;
  const note = entry.note === undefined ? '' : `: ${entry.note}`;
  if (entry.severity === 'error') {
    log.error(entry.path, `accepted but not yet supported by Stevedore, and it cannot be ignored${note}`);
  } else {
    log.warn(entry.path, `accepted but not yet supported by Stevedore; ignored${note}`);
  }
  return true;
}

function unknownKey(log: NoticeLog, parent: string, key: string): void {
  const path = join(parent, key);
  if (parent === 'storage') {
    log.error(path, `unknown storage driver "${key}": Stevedore supports the filesystem and s3 drivers`);
    return;
  }
  const near = childKeys(parent).find((known) => distance(known, key.toLowerCase()) <= 2);
  const hint = near === undefined ? '' : ` (did you mean ${join(parent, near)}?)`;
  log.warn(path, `unknown key: neither a Distribution key nor a Stevedore extension; ignored${hint}`);
}

function coerce(entry: SchemaEntry, value: Exclude<Raw, null>): Coerced {
  const got = describe(value, entry.secret === true);
  switch (entry.kind) {
    case 'map':
      return isRawMap(value) ? { value } : { error: `expected a mapping, got ${got}` };
    case 'list':
      return Array.isArray(value) ? { value } : { error: `expected a list, got ${got}` };
    case 'any':
      return { value };
    case 'section':
    case 'named':
      return { error: `expected a mapping, got ${got}` };
    case 'strings':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) return { error: `expected a list of strings, got ${got}` };
      return { value };
    case 'ttls':
      if (isRawMap(value)) return coerceTtls(value);
      break;
  }
  if (typeof value !== 'string') return { error: `expected a single value, got ${got}` };
  switch (entry.kind) {
    case 'string':
      return { value };
    case 'bool':
      if (/^(?:true|yes|on)$/i.test(value)) return { value: true };
      if (/^(?:false|no|off)$/i.test(value)) return { value: false };
      return { error: `expected true or false, got ${got}` };
    case 'int': {
      const n = Number(value);
      if (!/^[+-]?\d+$/.test(value) || !Number.isSafeInteger(n)) return { error: `expected a whole number, got ${got}` };
      if (entry.min !== undefined && n < entry.min) return { error: `must be at least ${entry.min}, got ${n}` };
      return { value: n };
    }
    case 'duration':
    case 'ttls':
      try {
        return { value: parseDuration(value) };
      } catch (err) {
        if (err instanceof DurationError) return { error: err.message };
        throw err;
      }
    case 'size':
      try {
        const n = parseSize(value);
        if (entry.min !== undefined && n < entry.min) return { error: `must be at least ${entry.min} bytes, got ${n}` };
        return { value: n };
      } catch (err) {
        if (err instanceof SizeError) return { error: err.message };
        throw err;
      }
    case 'enum': {
      const lower = value.toLowerCase();
      const allowed = entry.values ?? [];
      return allowed.includes(lower) ? { value: lower } : { error: `must be one of ${allowed.join(', ')}; got ${got}` };
    }
    case 'url':
      return checkUrl(entry, value, got);
  }
}

/** A mapping of tag patterns to durations, kept as written (order matters: the first match wins). */
function coerceTtls(map: RawMap): Coerced {
  for (const [pattern, raw] of map) {
    if (!TAG_PATTERN.test(pattern)) return { error: `"${pattern}" is not a tag pattern (tag characters and *)` };
    if (typeof raw !== 'string') return { error: `the TTL of "${pattern}" must be a duration` };
    try {
      parseDuration(raw);
    } catch (err) {
      if (err instanceof DurationError) return { error: `"${pattern}": ${err.message}` };
      throw err;
    }
  }
  return { value: map };
}

function checkUrl(entry: SchemaEntry, value: string, got: string): Coerced {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { error: `expected an absolute URL such as https://registry-1.docker.io, got ${got}` };
  }
  const schemes = entry.schemes ?? [];
  const scheme = url.protocol.slice(0, -1);
  if (!schemes.includes(scheme)) return { error: `the URL scheme must be ${schemes.join(' or ')}, got "${scheme}"` };
  if (entry.secret !== true && (url.username !== '' || url.password !== '')) {
    return { error: 'credentials do not belong in the URL, where they would be logged; use the username and password keys' };
  }
  if (url.search !== '' || url.hash !== '') return { error: `the URL must not have a query or fragment, got ${got}` };
  return { value };
}

/** Levenshtein distance, for "did you mean" hints on short keys. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
