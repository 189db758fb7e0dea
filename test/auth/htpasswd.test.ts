// htpasswd files as Distribution reads them (bcrypt only), and Htpasswd's
// password checks: the cache of verified pairs, on an injected clock, and
// forgetting it when the file changes.
import { execFileSync } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import { Htpasswd, parseHtpasswd } from '../../src/auth/htpasswd.js';
import { captureLogger } from '../upstream/fixtures/fakes.js';

/** A bcrypt line as Apache's tool writes it (cost 4: fast enough for tests). */
const htpasswdLine = (user: string, password: string): string =>
  execFileSync('htpasswd', ['-nbBC', '4', user, password], { encoding: 'utf8' }).trim();

const ALICE = htpasswdLine('alice', 'wonderland');
const BOB = htpasswdLine('bob', 'b0b:with:colons');
/** The same hash as ALICE's, under the prefixes other bcrypt implementations write. */
const hashOf = (line: string): string => line.slice(line.indexOf(':') + 1);

t.test('parseHtpasswd keeps bcrypt lines and skips the others', async (t) => {
  const hash = hashOf(ALICE);
  t.match(hash, /^\$2y\$04\$/, 'htpasswd -B writes $2y$');
  const text = [
    '# users of the mirror',
    '',
    `alice:${hash}`,
    `a2:${hash.replace('$2y$', '$2a$')}`,
    `b2:${hash.replace('$2y$', '$2b$')}`,
    '   ',
    'md5:$apr1$Spfe44I3$Kw4fwieSDICYXENCgud640',
    'sha:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=',
    'crypt:akbMStoJlVEJ.',
    'plain:pw',
    'short:$2y$04$tooShort',
    'no-colon-line',
    ':nameless',
    `  indented:${hash}  `,
  ].join('\r\n');
  const { hashes, skipped } = parseHtpasswd(text);
  t.same([...hashes.keys()], ['alice', 'a2', 'b2', 'indented']);
  t.equal(hashes.get('alice'), hash);
  t.equal(hashes.get('indented'), hash, 'CRLF and surrounding blanks trimmed');
  t.same(skipped, ['md5', 'sha', 'crypt', 'plain', 'short'], 'other hash types are reported by user name');
  t.same(parseHtpasswd(''), { hashes: new Map(), skipped: [] });
  t.same(parseHtpasswd('# only a comment\n\n'), { hashes: new Map(), skipped: [] });
});

t.test('the user name ends at the first colon', async (t) => {
  const hash = hashOf(ALICE);
  // A bcrypt hash has no colon: anything with more is no bcrypt hash, and is skipped.
  const { hashes, skipped } = parseHtpasswd(`eve:${hash}:extra\nmallory:x:${hash}\n`);
  t.same([...hashes.keys()], []);
  t.same(skipped, ['eve', 'mallory']);
  t.equal(parseHtpasswd(`carol:${hash}\n`).hashes.get('carol'), hash);
});

interface Setup {
  path: string;
  clock: { now: number };
  users: Htpasswd;
  log: ReturnType<typeof captureLogger>;
}

async function setup(dir: string, lines: string[], cacheMs = 60_000): Promise<Setup> {
  const path = join(dir, 'htpasswd');
  writeFileSync(path, `${lines.join('\n')}\n`);
  const clock = { now: 1_700_000_000_000 };
  const log = captureLogger();
  const users = new Htpasswd(path, { cacheMs, log: log.logger, now: () => clock.now });
  await users.load();
  return { path, clock, users, log };
}

/** Replaces the file as htpasswd(1) and editors do: a new file renamed over the old one. */
function replace(path: string, lines: string[]): void {
  writeFileSync(`${path}.new`, `${lines.join('\n')}\n`);
  renameSync(`${path}.new`, path);
}

t.test('verify: right and wrong passwords, unknown users', async (t) => {
  const { users } = await setup(t.testdir(), [ALICE, BOB]);
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(await users.verify('alice', 'Wonderland'), false);
  t.equal(await users.verify('alice', ''), false);
  t.equal(await users.verify('bob', 'b0b:with:colons'), true, 'a colon in the password');
  t.equal(await users.verify('bob', 'b0b'), false);
  t.equal(users.bcryptRuns, 5);
  t.equal(await users.verify('carol', 'wonderland'), false, 'unknown user');
  t.equal(await users.verify('ALICE', 'wonderland'), false, 'user names are case-sensitive');
  t.equal(users.bcryptRuns, 5, 'no bcrypt for a user the file does not have');
});

t.test('verify accepts $2a$ and $2b$ hashes as well as $2y$', async (t) => {
  const hash = hashOf(ALICE);
  const { users } = await setup(t.testdir(), [`a:${hash.replace('$2y$', '$2a$')}`, `b:${hash.replace('$2y$', '$2b$')}`]);
  t.equal(await users.verify('a', 'wonderland'), true);
  t.equal(await users.verify('b', 'wonderland'), true);
  t.equal(await users.verify('b', 'nope'), false);
});

t.test('a verified pair is remembered: bcrypt runs once', async (t) => {
  const { users, clock } = await setup(t.testdir(), [ALICE]);
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(users.bcryptRuns, 1);
  clock.now += 30_000;
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(users.bcryptRuns, 1, 'cache hits within cacheMs run no bcrypt');
  t.equal(await users.verify('alice', 'wrong'), false);
  t.equal(await users.verify('alice', 'wrong'), false);
  t.equal(users.bcryptRuns, 3, 'a wrong password is never remembered');
});

// Bug: src/auth/htpasswd.ts builds its LRUCache with the injected clock but
// lru-cache's default ttlResolution of 1 ms: a staleness check reuses the
// `now` the previous one read until a real 1 ms timer fires, so right after a
// cache hit an injected clock moved past cacheMs is not seen
// (`ttlResolution: 0` when `now` is injected fixes it).
t.test('the cache forgets after cacheMs of the injected clock', async (t) => {
  // Under a second, so the file is not stat()ed in between: nothing but the clock moves.
  const { users, clock } = await setup(t.testdir(), [ALICE], 500);
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(await users.verify('alice', 'wonderland'), true, 'a cache hit');
  t.equal(users.bcryptRuns, 1);
  clock.now += 501;
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(users.bcryptRuns, 2, 'checked with bcrypt again');
});

t.test('a changed file forgets what it remembered', async (t) => {
  const { users, clock, path, log } = await setup(t.testdir(), [ALICE, BOB]);
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(await users.verify('bob', 'b0b:with:colons'), true);
  t.equal(users.bcryptRuns, 2);
  replace(path, [htpasswdLine('alice', 'looking-glass'), BOB]);
  clock.now += 999;
  t.equal(await users.verify('alice', 'wonderland'), true, 'within a second the file is not looked at');
  t.equal(users.bcryptRuns, 2);
  clock.now += 1;
  t.equal(await users.verify('alice', 'wonderland'), false, 'the old password no longer works');
  t.equal(await users.verify('alice', 'looking-glass'), true);
  t.equal(await users.verify('bob', 'b0b:with:colons'), true);
  t.equal(users.bcryptRuns, 5, "bob's unchanged pair is checked again too");
  t.ok(log.messages().includes('htpasswd file changed: reloaded'));
  replace(path, [BOB]);
  clock.now += 1000;
  t.equal(await users.verify('alice', 'looking-glass'), false, 'a removed user');
  t.equal(users.bcryptRuns, 5);
});

t.test('cacheMs 0 means no cache', async (t) => {
  const { users } = await setup(t.testdir(), [ALICE], 0);
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(await users.verify('alice', 'wonderland'), true);
  t.equal(users.bcryptRuns, 3);
});

t.test('load: warnings for skipped entries and a file nobody can log in with', async (t) => {
  const dir = t.testdir();
  const { log } = await setup(dir, [ALICE, 'md5:$apr1$Spfe44I3$Kw4fwieSDICYXENCgud640']);
  const lines = log.lines.map((l) => JSON.parse(l) as { level: number; msg: string; users?: string[] });
  t.match(lines, [{ level: 40, msg: /not bcrypt are skipped/, users: ['md5'] }]);
  const empty = captureLogger();
  writeFileSync(join(dir, 'empty'), 'plain:pw\n');
  await new Htpasswd(join(dir, 'empty'), { cacheMs: 0, log: empty.logger }).load();
  t.ok(empty.messages().some((m) => /no bcrypt users: nobody can log in/.test(m)));
  await t.rejects(new Htpasswd(join(dir, 'missing'), { cacheMs: 0, log: empty.logger }).load(), { code: 'ENOENT' });
});
