/**
 * docs/configuration.md must stay true to the schema table: every key in the
 * table of its status, with its type and default, and no key the code does
 * not know; the documented example mirror config must load with exactly the
 * notices the docs show.
 */
import { readFileSync } from 'node:fs';

import t from 'tap';

import { CONFIG_ERROR_CODES, parseConfig, SCHEMA, type Kind, type Status } from '../../src/config/index.js';
import { envKey, SCHEMA_BY_PATH } from '../../src/config/schema.js';

const docs = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

const HEADINGS: Record<Status, string> = {
  supported: 'Supported keys',
  extension: 'Stevedore extensions',
  unsupported: 'Accepted but not yet supported',
};

const TYPE_WORDS: Record<Kind, string> = {
  section: 'section',
  named: 'named sections',
  ttls: 'duration or mapping',
  strings: 'list of strings',
  string: 'string',
  bool: 'boolean',
  int: 'integer',
  duration: 'duration',
  size: 'size',
  url: 'URL',
  enum: 'one of',
  map: 'mapping',
  list: 'list',
  any: 'any',
};

function section(heading: string): string {
  const start = docs.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`docs/configuration.md has no "## ${heading}" section`);
  const end = docs.indexOf('\n## ', start + 1);
  return docs.slice(start, end < 0 ? undefined : end);
}

/** Table rows of a section, by key: the cells after the key. */
function rows(heading: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of section(heading).split('\n')) {
    const match = /^\| `([^`]+)` \|(.*)\|$/.exec(line);
    if (match?.[1] !== undefined && match[2] !== undefined) out.set(match[1], match[2].split(' | ').map((c) => c.trim()));
  }
  return out;
}

const plain = (text: string) => text.replace(/[`*]/g, '').toLowerCase();

t.test('every schema key is documented in the table of its status', async (t) => {
  for (const entry of SCHEMA) {
    const row = rows(HEADINGS[entry.status]).get(entry.path);
    if (row === undefined) {
      t.fail(`${entry.path} is missing from "## ${HEADINGS[entry.status]}"`);
      continue;
    }
    const [type = '', second = ''] = row;
    t.ok(type.startsWith(TYPE_WORDS[entry.kind]), `${entry.path}: type "${type}" should say ${TYPE_WORDS[entry.kind]}`);
    for (const value of entry.values ?? []) t.match(type, `\`${value}\``, `${entry.path}: lists ${value}`);
    if (entry.status === 'unsupported') {
      t.equal(second, entry.severity === 'error' ? '**error**' : 'warn', `${entry.path}: notice level`);
      if (entry.note !== undefined) t.match(plain(row.join(' ')), plain(entry.note), `${entry.path}: note`);
    } else if (entry.default !== undefined) {
      t.equal(second, `\`${entry.default}\``, `${entry.path}: default`);
    } else {
      t.notMatch(second, /^`/, `${entry.path}: no default in the code, none in the docs`);
    }
  }
});

t.test('the docs list no key the code does not know', async (t) => {
  for (const [status, heading] of Object.entries(HEADINGS)) {
    for (const key of rows(heading).keys()) {
      t.equal(SCHEMA_BY_PATH.get(key)?.status, status, `${key} in "## ${heading}"`);
    }
  }
});

t.test('schema keys are unambiguous as environment variables', async (t) => {
  const seen = new Map<string, string>();
  for (const entry of SCHEMA) {
    t.notMatch(entry.path, /_/, `${entry.path}: '_' separates levels in env names`);
    const key = envKey(entry.path);
    t.notOk(seen.has(key), `${entry.path} and ${seen.get(key) ?? ''} share ${key}`);
    seen.set(key, entry.path);
    const parent = entry.path.split('.').slice(0, -1).join('.');
    if (parent.endsWith('.*')) t.equal(SCHEMA_BY_PATH.get(parent.slice(0, -2))?.kind, 'named', `${entry.path}: under a named section`);
    else if (parent !== '') t.equal(SCHEMA_BY_PATH.get(parent)?.kind, 'section', `${entry.path}: parent is a section`);
  }
});

t.test('every error code is documented', async (t) => {
  for (const code of CONFIG_ERROR_CODES) t.match(docs, `| \`${code}\` |`, code);
});

t.test('the documented mirror example loads with the documented notices', async (t) => {
  const example = section('Example: a registry:2 Docker Hub mirror');
  const yaml = /```yaml\n([\s\S]*?)```/.exec(example)?.[1];
  const shown = /```text\n([\s\S]*?)```/.exec(example)?.[1];
  if (yaml === undefined || shown === undefined) throw new Error('example blocks missing');
  const { notices, config } = parseConfig(yaml, {}, 'example');
  t.equal(notices.map((n) => `${n.level} ${n.path}: ${n.message}\n`).join(''), shown);
  t.equal(config.proxy?.url, 'https://registry-1.docker.io');
});

t.test('the documented embedded default is the real one', async (t) => {
  const { EMBEDDED_DEFAULT_YAML } = await import('../../src/config/index.js');
  const indented = EMBEDDED_DEFAULT_YAML.trimEnd().split('\n').map((l) => `   ${l}`).join('\n');
  t.match(docs, `   \`\`\`yaml\n${indented}\n   \`\`\``);
});
