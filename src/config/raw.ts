/**
 * The configuration as written, before it is typed: YAML read the way Go's
 * yaml decoder feeds Distribution. Every scalar stays the text it was written
 * as ('0.1', '0123', 'yes'); only the key's kind in the schema decides whether
 * it is a boolean, a number or a duration, as the Go struct field's type does.
 * That keeps `version: 0.1` a string and `password: 0123` intact.
 */
import { LineCounter, parseDocument, type ScalarTag, type YAMLError } from 'yaml';

import type { NoticeLog } from './errors.js';

export type Raw = string | null | Raw[] | RawMap;
export interface RawMap extends Map<string, Raw> {}

export const isRawMap = (value: Raw | undefined): value is RawMap => value instanceof Map;

/** Plain `~`, `null` and empty values are null, as in YAML's core schema; quoted ones stay strings. */
const nullTag: ScalarTag = {
  tag: 'tag:yaml.org,2002:null',
  default: true,
  test: /^(?:~|[Nn]ull|NULL)?$/,
  resolve: () => null,
  identify: (value: unknown) => value === null,
  stringify: () => 'null',
};

/**
 * Parses one YAML document. Syntax errors become error notices at `path`
 * ('' for the file itself) and the result is then undefined.
 */
export function parseYaml(text: string, path: string, log: NoticeLog): Raw | undefined {
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter: lines,
    schema: 'failsafe',
    customTags: [nullTag],
    merge: true,
    uniqueKeys: true,
    prettyErrors: false,
  });
  const where = (problem: YAMLError): string => {
    const { line, col } = lines.linePos(problem.pos[0]);
    return ` (line ${line}, column ${col})`;
  };
  for (const warning of doc.warnings) log.warn(path, `YAML: ${warning.message}${where(warning)}`);
  if (doc.errors.length > 0) {
    for (const error of doc.errors) log.error(path, `YAML: ${error.message}${where(error)}`);
    return undefined;
  }
  let js: unknown;
  try {
    js = doc.toJS({ mapAsMap: true });
  } catch (err) {
    // Alias expansion beyond the limit (a "billion laughs" file) ends up here.
    log.error(path, `YAML: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
  return toRaw(js, path, log);
}

function toRaw(value: unknown, path: string, log: NoticeLog): Raw {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map((item: unknown, i) => toRaw(item, join(path, String(i)), log));
  if (value instanceof Map) {
    const out: RawMap = new Map();
    for (const [key, item] of value as Map<unknown, unknown>) {
      if (typeof key !== 'string') {
        log.error(path, `a key of this mapping is not a plain string (${describe(toRaw(key, path, log))})`);
        continue;
      }
      out.set(key, toRaw(item, join(path, key), log));
    }
    return out;
  }
  // The failsafe schema yields only strings, arrays and maps; anything else is a tag we did not ask for.
  return String(value);
}

export const join = (parent: string, key: string): string => (parent === '' ? key : `${parent}.${key}`);

/** A short description of a value for messages; never the value itself when it is secret. */
export function describe(value: Raw, secret = false): string {
  if (value === null) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (isRawMap(value)) return 'a mapping';
  if (secret) return 'a value (not shown: secret)';
  const shown = value.length > 64 ? `${value.slice(0, 64)}…` : value;
  return JSON.stringify(shown);
}

/**
 * Sets `value` at `segments` below `root`, creating mappings on the way and
 * replacing whatever was not a mapping. A numeric segment indexes into a list
 * that is already there (appending at its length), as in Distribution; false
 * when such an index is out of range.
 */
export function setRaw(root: RawMap, segments: readonly string[], value: Raw): boolean {
  let node: RawMap | Raw[] = root;
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1;
    if (Array.isArray(node)) {
      const list: Raw[] = node;
      const index = Number(segment);
      if (!/^\d+$/.test(segment) || index > list.length) return false;
      if (last) list[index] = value;
      else node = descend(list[index], (child) => void (list[index] = child));
    } else {
      const map: RawMap = node;
      if (last) map.set(segment, value);
      else node = descend(map.get(segment), (child) => void map.set(segment, child));
    }
  }
  return true;
}

function descend(current: Raw | undefined, replace: (child: RawMap) => void): RawMap | Raw[] {
  if (isRawMap(current) || Array.isArray(current)) return current;
  const child: RawMap = new Map();
  replace(child);
  return child;
}
