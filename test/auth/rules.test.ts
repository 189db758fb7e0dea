// The access rules over (repository, caller): first match wins, no match
// denied, anonymous rules for everyone, groups from the token or a file.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import { ANONYMOUS, type Caller } from '../../src/auth/caller.js';
import { AccessRules, parseGroups, type Groups } from '../../src/auth/rules.js';
import { WatchedFile } from '../../src/auth/watched.js';
import type { AccessRule, Action } from '../../src/config/types.js';
import { captureLogger } from '../upstream/fixtures/fakes.js';

const rule = (over: Partial<AccessRule> & { repositories: string[] }): AccessRule => ({
  users: [],
  groups: [],
  anonymous: false,
  actions: ['pull'],
  ...over,
});
const basic = (user: string, groups: string[] = []): Caller => ({ user, groups, via: 'basic' });
const bearer = (user: string | undefined, groups: string[] = []): Caller => ({ ...(user === undefined ? {} : { user }), groups, via: 'bearer', grants: new Map() });
const ACTIONS: Action[] = ['pull', 'push', 'delete'];
const allowed = (rules: AccessRules, caller: Caller, name: string): Action[] => ACTIONS.filter((a) => rules.allows(caller, name, a));

t.test('no rules: any authenticated caller may do anything (Distribution); anonymous callers nothing', async (t) => {
  const rules = new AccessRules(undefined);
  t.same(allowed(rules, basic('alice'), 'library/alpine'), ['pull', 'push', 'delete']);
  t.same(allowed(rules, bearer('svc'), 'ghcr.io/x/y'), ['pull', 'push', 'delete'], "a token's own grants still bound it (gate.ts)");
  t.same(allowed(rules, bearer(undefined), 'a'), ['pull', 'push', 'delete'], 'a token need not name a subject');
  t.same(allowed(rules, ANONYMOUS, 'library/alpine'), []);
  t.equal(rules.anonymousPull, false);
});

t.test('an empty rule list denies everyone everything', async (t) => {
  const rules = new AccessRules([]);
  t.same(allowed(rules, basic('alice'), 'library/alpine'), []);
  t.same(allowed(rules, ANONYMOUS, 'library/alpine'), []);
});

t.test('the first rule matching repository and caller decides', async (t) => {
  const rules = new AccessRules([
    rule({ repositories: ['team/secret'], users: ['bob'], actions: [] }),
    rule({ repositories: ['team/**'], users: ['alice', 'bob'], actions: ['pull', 'push'] }),
    rule({ repositories: ['team/**'], users: ['carol'], actions: ['pull'] }),
    rule({ repositories: ['**'], users: ['alice'], actions: ['pull', 'push', 'delete'] }),
  ]);
  t.same(allowed(rules, basic('bob'), 'team/secret'), [], '`actions: []` denies, later rules are not consulted');
  t.same(allowed(rules, basic('bob'), 'team/app'), ['pull', 'push']);
  t.same(allowed(rules, basic('alice'), 'team/secret'), ['pull', 'push'], 'a rule not naming the caller is skipped');
  t.same(allowed(rules, basic('alice'), 'team/app'), ['pull', 'push'], 'an earlier match wins over a broader later one');
  t.same(allowed(rules, basic('alice'), 'other/app'), ['pull', 'push', 'delete']);
  t.same(allowed(rules, basic('carol'), 'team/app'), ['pull']);
  t.same(allowed(rules, basic('carol'), 'other/app'), [], 'no match: denied');
  t.same(allowed(rules, basic('dave'), 'team/app'), []);
  t.same(allowed(rules, ANONYMOUS, 'team/app'), []);
  t.same(allowed(rules, basic('Alice'), 'team/app'), [], 'user names are case-sensitive');
});

t.test('anonymous rules cover logged-in callers too', async (t) => {
  const rules = new AccessRules([
    rule({ repositories: ['library/**'], anonymous: true }),
    rule({ repositories: ['library/**'], users: ['alice'], actions: ['pull', 'push'] }),
    rule({ repositories: ['team/**'], users: ['alice'] }),
  ]);
  t.equal(rules.anonymousPull, true);
  t.same(allowed(rules, ANONYMOUS, 'library/alpine'), ['pull']);
  t.same(allowed(rules, basic('alice'), 'library/alpine'), ['pull'], 'the anonymous rule comes first, so it decides for alice too');
  t.same(allowed(rules, bearer(undefined), 'library/alpine'), ['pull']);
  t.same(allowed(rules, ANONYMOUS, 'team/app'), []);
  t.same(allowed(rules, basic('alice'), 'team/app'), ['pull']);
  t.equal(new AccessRules([rule({ repositories: ['x'], anonymous: true, actions: [] })]).anonymousPull, false, 'an anonymous deny lets nobody pull');
  t.equal(new AccessRules([rule({ repositories: ['x'], anonymous: true, actions: ['push'] })]).anonymousPull, false);
});

t.test("groups from the caller (a token's claim)", async (t) => {
  const rules = new AccessRules([
    rule({ repositories: ['ci/**'], groups: ['ci'], actions: ['pull', 'push'] }),
    rule({ repositories: ['**'], groups: ['readers'] }),
  ]);
  t.same(allowed(rules, bearer('svc', ['ci']), 'ci/build'), ['pull', 'push']);
  t.same(allowed(rules, basic('bob', ['readers', 'ci']), 'ci/build'), ['pull', 'push']);
  t.same(allowed(rules, basic('bob', ['readers']), 'ci/build'), ['pull']);
  t.same(allowed(rules, bearer('svc', ['CI']), 'ci/build'), [], 'group names are case-sensitive');
  t.same(allowed(rules, { ...ANONYMOUS, groups: ['ci'] }, 'ci/build'), [], 'groups do not make an anonymous caller anyone');
  t.same(allowed(rules, bearer(undefined, ['ci']), 'ci/build'), [], 'nor a token without a subject');
});

t.test('groupsOf reads the groups file', async (t) => {
  const dir = t.testdir({ 'groups.yml': 'ci: [bob, carol]\nadmins: [alice]\nempty: []\n' });
  const clock = { now: 0 };
  const file = new WatchedFile(join(dir, 'groups.yml'), parseGroups, captureLogger().logger, 'groups file', 1000, () => clock.now);
  await file.load();
  const rules = new AccessRules([rule({ repositories: ['**'], groups: ['ci'] })], file);
  t.same(await rules.groupsOf('bob'), ['ci']);
  t.same(await rules.groupsOf('alice'), ['admins']);
  t.same(await rules.groupsOf('nobody'), []);
  t.same(await rules.groupsOf(undefined), []);
  t.same(await new AccessRules(undefined).groupsOf('bob'), [], 'no groups file');
  writeFileSync(join(dir, 'groups.yml'), 'ci: [bob, carol]\nadmins: [alice, bob]\n');
  clock.now += 1000;
  t.same(await rules.groupsOf('bob'), ['ci', 'admins'], 'follows the file');
  t.same(allowed(rules, basic('bob'), 'x'), [], 'allows() looks at caller.groups only: the gate puts the file groups there');
  t.same(allowed(rules, basic('bob', await rules.groupsOf('bob')), 'x'), ['pull']);
});

t.test('patterns: `*` within a component, `**` across', async (t) => {
  const rules = new AccessRules([
    rule({ repositories: ['team/app-*'], users: ['a'] }),
    rule({ repositories: ['org/**'], users: ['b'] }),
    rule({ repositories: ['**/base'], users: ['c'] }),
    rule({ repositories: ['ghcr.io/*/tools'], users: ['d'] }),
    rule({ repositories: ['**'], users: ['e'] }),
    rule({ repositories: ['exact.name', 'other'], users: ['f'] }),
  ]);
  const may = (user: string, name: string) => rules.allows(basic(user), name, 'pull');
  t.ok(may('a', 'team/app-web'));
  t.ok(may('a', 'team/app-'));
  t.notOk(may('a', 'team/app-web/sub'), '* stays within a component');
  t.notOk(may('a', 'team/app'));
  t.notOk(may('a', 'xteam/app-web'), 'anchored');
  t.ok(may('b', 'org'), 'a/** covers a itself');
  t.ok(may('b', 'org/x'));
  t.ok(may('b', 'org/x/y/z'));
  t.notOk(may('b', 'organisation/x'));
  t.ok(may('c', 'library/base'));
  t.ok(may('c', 'a/b/c/base'));
  t.notOk(may('c', 'base'), '**/ needs something before it');
  t.ok(may('d', 'ghcr.io/myorg/tools'));
  t.notOk(may('d', 'ghcr.io/a/b/tools'));
  t.ok(may('e', 'anything/at/all'));
  t.ok(may('f', 'exact.name'));
  t.notOk(may('f', 'exactxname'), 'a dot is a dot');
  t.ok(may('f', 'other'));
});

t.test('parseGroups', async (t) => {
  const groups: Groups = parseGroups('ci: [bob, carol]\nadmins:\n  - alice\n');
  t.same(
    [...groups].map(([g, m]) => [g, [...m]]),
    [
      ['ci', ['bob', 'carol']],
      ['admins', ['alice']],
    ],
  );
  t.same(parseGroups('').size, 0, 'an empty file: no groups');
  t.same(parseGroups('# nothing yet\n').size, 0);
  t.same([...(parseGroups('g: []\n').get('g') ?? ['x'])], []);
  t.throws(() => parseGroups('[a, b]\n'), /expected a mapping of group names to lists of users/);
  t.throws(() => parseGroups('just text\n'), /expected a mapping/);
  t.throws(() => parseGroups('ci: bob\n'), /group ci: expected a list of user names/);
  t.throws(() => parseGroups('ci: [bob, [carol]]\n'), /group ci: expected a list/);
  t.same([...(parseGroups('ci: [bob, 1234]\n').get('ci') ?? [])], ['bob', '1234'], 'every scalar is a name, as in config.yml: 1234 is the user "1234"')
  t.throws(() => parseGroups('ci: ~\n'), /group ci/);
  t.throws(() => parseGroups('ci: [bob\n'), 'broken YAML');
});
