// WatchedFile: content that follows its file, re-checked at most once per
// checkEveryMs of an injected clock; a broken or deleted file keeps the
// last good content.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import { WatchedFile } from '../../src/auth/watched.js';
import { captureLogger } from '../upstream/fixtures/fakes.js';

/** Numbers, one a line; anything else does not parse. */
function parseNumbers(text: string): number[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      if (!/^\d+$/.test(l)) throw new Error(`not a number: ${l}`);
      return Number(l);
    });
}

interface Setup {
  path: string;
  clock: { now: number };
  file: WatchedFile<number[]>;
  log: ReturnType<typeof captureLogger>;
  parses: () => number;
}

function setup(dir: string, content: string | undefined, checkEveryMs = 1000): Setup {
  const path = join(dir, 'numbers');
  if (content !== undefined) writeFileSync(path, content);
  const clock = { now: 10_000 };
  const log = captureLogger();
  let parses = 0;
  const parse = (text: string): number[] => {
    parses++;
    return parseNumbers(text);
  };
  const file = new WatchedFile(path, parse, log.logger, 'numbers file', checkEveryMs, () => clock.now);
  return { path, clock, file, log, parses: () => parses };
}

/** A new version of the file under the same name (a new inode, so the change is seen whatever the mtime granularity). */
function replace(path: string, content: string): void {
  writeFileSync(`${path}.tmp`, content);
  renameSync(`${path}.tmp`, path);
}

const entries = (log: ReturnType<typeof captureLogger>) => log.lines.map((l) => JSON.parse(l) as { level: number; msg: string; path?: string; err?: string });

t.test('load reads and parses the file', async (t) => {
  const { file } = setup(t.testdir(), '1\n2\n');
  t.same(await file.load(), [1, 2]);
  t.equal(file.version, 1);
  t.same(await file.get(), [1, 2]);
});

t.test('load throws on a missing or unparsable file', async (t) => {
  const dir = t.testdir({ sub: {} });
  const missing = setup(dir, undefined);
  await t.rejects(missing.file.load(), { code: 'ENOENT' });
  t.equal(missing.file.version, 0);
  await t.rejects(missing.file.get(), /numbers file .* could not be read/, 'nothing good was ever read');
  const broken = setup(join(dir, 'sub'), 'one\n');
  await t.rejects(broken.file.load(), /not a number: one/);
  t.equal(broken.file.version, 0);
  t.same(broken.log.lines, [], 'a startup error is thrown, not logged');
});

t.test('a changed file is re-read once checkEveryMs has passed', async (t) => {
  const { path, clock, file, log, parses } = setup(t.testdir(), '1\n');
  await file.load();
  replace(path, '1\n2\n');
  clock.now += 999;
  t.same(await file.get(), [1], 'not looked at before checkEveryMs');
  t.same(await file.get(), [1]);
  clock.now += 1;
  t.same(await file.get(), [1, 2], 'seen once checkEveryMs has passed');
  t.equal(file.version, 2);
  t.equal(parses(), 2);
  t.match(entries(log), [{ level: 30, msg: 'numbers file changed: reloaded', path }]);

  replace(path, '3\n');
  clock.now += 500;
  t.same(await file.get(), [1, 2], 'the clock restarts at each check');
  clock.now += 500;
  t.same(await file.get(), [3]);
  t.equal(file.version, 3);
});

t.test('an unchanged file is not parsed again', async (t) => {
  const { clock, file, parses, log } = setup(t.testdir(), '7\n');
  await file.load();
  for (let i = 0; i < 5; i++) {
    clock.now += 1000;
    t.same(await file.get(), [7]);
  }
  t.equal(parses(), 1);
  t.equal(file.version, 1, 'version bumps only on reloads');
  t.same(log.lines, []);
});

t.test('a later unparsable version keeps the last good content', async (t) => {
  const { path, clock, file, log, parses } = setup(t.testdir(), '1\n');
  await file.load();
  replace(path, 'garbage\n');
  clock.now += 1000;
  t.same(await file.get(), [1]);
  t.equal(file.version, 1, 'no version for a failed reload');
  t.match(entries(log), [{ level: 50, msg: 'numbers file could not be read again: keeping the last content read', path, err: 'not a number: garbage' }]);
  clock.now += 1000;
  t.same(await file.get(), [1]);
  t.equal(parses(), 2, 'the same broken version is not parsed (nor logged) again');
  t.equal(log.lines.length, 1);
  replace(path, '2\n');
  clock.now += 1000;
  t.same(await file.get(), [2], 'a fixed file is taken');
  t.equal(file.version, 2);
});

t.test('a deleted file keeps its content, and says so once', async (t) => {
  const { path, clock, file, log } = setup(t.testdir(), '5\n');
  await file.load();
  rmSync(path);
  clock.now += 1000;
  t.same(await file.get(), [5]);
  clock.now += 1000;
  t.same(await file.get(), [5]);
  t.equal(file.version, 1);
  const errors = entries(log).filter((e) => e.level === 50);
  t.match(errors, [{ msg: 'numbers file is gone: keeping the last content read', path, err: /ENOENT/ }]);
  t.equal(errors.length, 1, 'logged when it goes, not at every check');
  writeFileSync(path, '6\n');
  clock.now += 1000;
  t.same(await file.get(), [6], 'and follows it when it comes back');
  t.equal(file.version, 2);
});

t.test('concurrent gets make one check', async (t) => {
  const { path, clock, file, parses } = setup(t.testdir(), '1\n');
  await file.load();
  replace(path, '2\n');
  clock.now += 1000;
  const all = await Promise.all([file.get(), file.get(), file.get()]);
  // The first get checks; the others, within checkEveryMs of it, take what is there without waiting.
  t.same(all[0], [2]);
  t.equal(parses(), 2, 'one stat and one parse');
  t.equal(file.version, 2);
  t.same(await file.get(), [2]);
});

t.test('checkEveryMs 0 checks on every use', async (t) => {
  const { path, file } = setup(t.testdir(), '1\n', 0);
  await file.load();
  replace(path, '2\n');
  t.same(await file.get(), [2], 'without the clock moving');
});
