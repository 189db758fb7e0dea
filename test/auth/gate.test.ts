// The Gate: authentication (Basic against htpasswd, bearer tokens of our own
// issuer), authorization over routed names with the answers a client gets,
// the lockout, the token endpoint's grants, and the realm it advertises.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import t, { type Test } from 'tap';

import { ANONYMOUS, type Caller } from '../../src/auth/caller.js';
import { Gate, type ClientOrigin, type GateOptions, type RepositoryTarget } from '../../src/auth/gate.js';
import { parseScopes } from '../../src/auth/issuer.js';
import type { AccessRule, AuthConfig } from '../../src/config/types.js';
import { parseRepositoryName } from '../../src/registry/names.js';
import { RegistryError } from '../../src/registry/errors.js';
import { captureLogger } from '../upstream/fixtures/fakes.js';

const T0 = Date.parse('2024-06-01T12:00:00Z');
const ORIGIN: ClientOrigin = { client: '192.0.2.1', proto: 'https', host: 'mirror.example:5000' };
const OTHER: ClientOrigin = { ...ORIGIN, client: '192.0.2.2' };

const htpasswdLine = (user: string, password: string): string =>
  execFileSync('htpasswd', ['-nbBC', '4', user, password], { encoding: 'utf8' }).trim();
const USERS = `${htpasswdLine('alice', 'alice-pw')}\n${htpasswdLine('bob', 'bob:pw')}\n`;

const basicHeader = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

const RULES: AccessRule[] = [
  { repositories: ['team/secret'], users: [], groups: ['ci'], anonymous: false, actions: [] },
  { repositories: ['library/**'], users: [], groups: [], anonymous: true, actions: ['pull'] },
  { repositories: ['team/**'], users: ['alice'], groups: ['ci'], anonymous: false, actions: ['pull', 'push'] },
  { repositories: ['ghcr.io/myorg/**'], users: ['alice'], groups: [], anonymous: false, actions: ['pull'] },
];

const GENERAL = { cacheMs: 60_000, lockout: { attempts: 3, windowMs: 60_000 } };

interface Setup {
  gate: Gate;
  clock: { now: number };
  log: ReturnType<typeof captureLogger>;
  dir: string;
}

async function files(dir: string): Promise<{ users: string; groups: string }> {
  const users = join(dir, 'htpasswd');
  const groups = join(dir, 'groups.yml');
  writeFileSync(users, USERS);
  writeFileSync(groups, 'ci: [bob]\n');
  return { users, groups };
}

/** `rules` null: no `access` section. */
async function basicGate(dir: string, rules: AccessRule[] | null = RULES, options: Partial<GateOptions> = {}): Promise<Setup> {
  const { users, groups } = await files(dir);
  const clock = { now: T0 };
  const log = captureLogger();
  const config: AuthConfig = { ...GENERAL, groups, htpasswd: { realm: 'Stevedore "mirror"', path: users } };
  const gate = await Gate.create(config, rules ?? undefined, { log: log.logger, prefix: '', now: () => clock.now, ...options });
  return { gate, clock, log, dir };
}

async function tokenGate(dir: string, rules: AccessRule[] | null = RULES, options: Partial<GateOptions> = {}, realm?: string): Promise<Setup> {
  const { users, groups } = await files(dir);
  const clock = { now: T0 };
  const log = captureLogger();
  const config: AuthConfig = {
    ...GENERAL,
    groups,
    token: {
      ...(realm === undefined ? {} : { realm }),
      service: 'stevedore',
      issuer: 'stevedore',
      clockSkewMs: 60_000,
      groupsClaim: 'groups',
      issue: { key: join(dir, 'token.pem'), users, expiryMs: 900_000 },
    },
  };
  const gate = await Gate.create(config, rules ?? undefined, { log: log.logger, prefix: '', now: () => clock.now, ...options });
  return { gate, clock, log, dir };
}

/** The RegistryError `fn` throws (or rejects with). */
async function refusal(t: Test, fn: () => unknown): Promise<RegistryError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof RegistryError) return err;
    throw err;
  }
  t.fail('expected a RegistryError');
  return new RegistryError('UNKNOWN', 'nothing thrown');
}

const target = (url: string, stored = url, ns = false): RepositoryTarget => ({ url, stored, ns });

t.test('authenticate: no credentials are anonymous', async (t) => {
  const { gate } = await basicGate(t.testdir());
  t.equal(gate.kind, 'basic');
  t.equal(await gate.authenticate(undefined, ORIGIN), ANONYMOUS);
  t.equal(await gate.authenticate('', ORIGIN), ANONYMOUS);
  t.equal(await gate.authenticate('Basic Og==', ORIGIN), ANONYMOUS, 'Basic ":" is what some clients send with no credentials');
  t.equal(gate.bcryptRuns, 0);
});

t.test('authenticate: Basic credentials, right and wrong', async (t) => {
  const { gate, log } = await basicGate(t.testdir());
  t.same(await gate.authenticate(basicHeader('alice', 'alice-pw'), ORIGIN), { user: 'alice', groups: [], via: 'basic' });
  t.same(await gate.authenticate(basicHeader('bob', 'bob:pw'), ORIGIN), { user: 'bob', groups: ['ci'], via: 'basic' }, 'groups from the file; a colon in the password');
  t.same(await gate.authenticate(`basic ${Buffer.from('alice:alice-pw').toString('base64')}`, ORIGIN), { user: 'alice', groups: [], via: 'basic' }, 'the scheme in any case');
  // From different addresses, and no user three times: this is not about the lockout.
  const wrong = [['alice', 'wrong'], ['mallory', 'alice-pw'], ['', 'alice-pw'], ['alice', '']] as const;
  for (const [i, [user, password]] of wrong.entries()) {
    const err = await refusal(t, () => gate.authenticate(basicHeader(user, password), { ...ORIGIN, client: `198.51.100.${i}` }));
    t.equal(err.code, 'UNAUTHORIZED', `${user}:${password}`);
    t.equal(err.challenge, 'Basic realm="Stevedore mirror"', 'quotes cannot break out of the challenge');
    t.match(err.message, /wrong user name or password/);
  }
  const noColon = await refusal(t, () => gate.authenticate(`Basic ${Buffer.from('bob').toString('base64')}`, OTHER));
  t.equal(noColon.code, 'UNAUTHORIZED', 'no colon: a user without a password');
  t.notOk(log.lines.some((l) => l.includes('alice-pw') || l.includes('bob:pw')), 'passwords are never logged');
  t.ok(log.messages().includes('login failed'));
});

t.test('authenticate: malformed Basic and unsupported schemes', async (t) => {
  const { gate } = await basicGate(t.testdir());
  for (const header of ['Basic', 'Basic ', 'Basic !!!', 'Basic a b', `Basic ${'A'.repeat(3000)}`, 'Digest username="alice"', 'Bearer abc.def.ghi', 'alice:alice-pw']) {
    const err = await refusal(t, () => gate.authenticate(header, { ...ORIGIN, client: `198.51.100.${header.length % 250}` }));
    t.equal(err.code, 'UNAUTHORIZED', header.slice(0, 20));
    t.match(err.message, /unsupported or malformed Authorization header/);
    t.equal(err.challenge, 'Basic realm="Stevedore mirror"');
  }
});

t.test('lockout: after N failed logins, 429 with Retry-After, before bcrypt', async (t) => {
  const { gate, clock } = await basicGate(t.testdir());
  for (let i = 0; i < 3; i++) t.equal((await refusal(t, () => gate.authenticate(basicHeader('alice', `guess${i}`), ORIGIN))).code, 'UNAUTHORIZED');
  const runs = gate.bcryptRuns;
  const locked = await refusal(t, () => gate.authenticate(basicHeader('alice', 'alice-pw'), ORIGIN));
  t.equal(locked.code, 'TOOMANYREQUESTS', 'even the right password');
  t.equal(locked.retryAfter, '60');
  t.equal(gate.bcryptRuns, runs, 'the password is not checked');
  t.equal((await refusal(t, () => gate.authenticate(basicHeader('alice', 'alice-pw'), OTHER))).code, 'TOOMANYREQUESTS', 'the user is locked from other addresses too');
  t.equal((await refusal(t, () => gate.authenticate(basicHeader('bob', 'bob:pw'), ORIGIN))).code, 'TOOMANYREQUESTS', 'and the address for other users');
  t.same(await gate.authenticate(basicHeader('bob', 'bob:pw'), OTHER), { user: 'bob', groups: ['ci'], via: 'basic' });
  clock.now += 45_000;
  t.equal((await refusal(t, () => gate.authenticate(basicHeader('alice', 'alice-pw'), ORIGIN))).retryAfter, '15');
  clock.now += 15_000;
  t.same(await gate.authenticate(basicHeader('alice', 'alice-pw'), ORIGIN), { user: 'alice', groups: [], via: 'basic' }, 'the window is over');
});

t.test('lockout: malformed headers count against the address', async (t) => {
  const { gate } = await basicGate(t.testdir());
  for (let i = 0; i < 3; i++) await refusal(t, () => gate.authenticate('Digest x', ORIGIN));
  t.equal((await refusal(t, () => gate.authenticate(basicHeader('alice', 'alice-pw'), ORIGIN))).code, 'TOOMANYREQUESTS');
  t.same(await gate.authenticate(basicHeader('alice', 'alice-pw'), OTHER), { user: 'alice', groups: [], via: 'basic' });
});

t.test('authorize: the rules over stored names, and the answers', async (t) => {
  const { gate } = await basicGate(t.testdir());
  const alice: Caller = { user: 'alice', groups: [], via: 'basic' };
  const bob: Caller = { user: 'bob', groups: ['ci'], via: 'basic' };
  t.doesNotThrow(() => gate.authorize(ANONYMOUS, target('alpine', 'library/alpine'), 'pull', ORIGIN));
  t.doesNotThrow(() => gate.authorize(alice, target('team/app'), 'push', ORIGIN));
  t.doesNotThrow(() => gate.authorize(bob, target('team/app'), 'pull', ORIGIN), 'a group from the file');

  const anonymous = await refusal(t, () => gate.authorize(ANONYMOUS, target('team/app'), 'pull', ORIGIN));
  t.equal(anonymous.code, 'UNAUTHORIZED', 'an anonymous caller is asked to log in');
  t.equal(anonymous.challenge, 'Basic realm="Stevedore mirror"');
  t.same(anonymous.detail, [{ Type: 'repository', Class: '', Name: 'team/app', Action: 'pull' }]);

  for (const [caller, name, action] of [[bob, 'team/secret', 'pull'], [alice, 'other/app', 'pull'], [alice, 'other/app', 'push'], [bob, 'ghcr.io/myorg/app', 'pull']] as const) {
    const err = await refusal(t, () => gate.authorize(caller, target(name), action, ORIGIN));
    t.equal(err.code, 'NAME_UNKNOWN', `${caller.user} ${action} ${name}`);
    t.equal(err.message, 'repository name not known to registry');
    t.equal(err.detail, undefined, 'not even the name: as for a repository that does not exist');
    t.equal(err.challenge, undefined);
  }
  // A caller who may pull but not push is told so: hiding the repository would hide nothing.
  const push = await refusal(t, () => gate.authorize(alice, target('ghcr.io/myorg/app'), 'push', ORIGIN));
  t.equal(push.code, 'DENIED', 'alice may pull ghcr.io/myorg/app, not push to it');
  t.equal(push.challenge, undefined);
  const anonymousPush = await refusal(t, () => gate.authorize(ANONYMOUS, target('team/app'), 'push', ORIGIN));
  t.same(anonymousPush.detail, [{ Type: 'repository', Class: '', Name: 'team/app', Action: 'pull' }, { Type: 'repository', Class: '', Name: 'team/app', Action: 'push' }], 'a push asks for pull and push, as Distribution does');
  t.equal(anonymousPush.challenge, 'Basic realm="Stevedore mirror"');
  t.equal(gate.mayList(alice, 'team/app'), true);
  t.equal(gate.mayList(alice, 'other/app'), false);
  t.equal(gate.mayList(ANONYMOUS, 'library/alpine'), true);
});

t.test('authorize without rules: authenticated callers may do anything, anonymous ones nothing', async (t) => {
  const { gate } = await basicGate(t.testdir(), null);
  const alice: Caller = { user: 'alice', groups: [], via: 'basic' };
  t.doesNotThrow(() => gate.authorize(alice, target('anything/at/all'), 'pull', ORIGIN));
  t.doesNotThrow(() => gate.authorize(alice, target('x'), 'push', ORIGIN), 'as in Distribution: proxied repositories refuse writes themselves');
  t.doesNotThrow(() => gate.authorize(alice, target('x'), 'delete', ORIGIN));
  t.equal((await refusal(t, () => gate.authorize(ANONYMOUS, target('x'), 'push', ORIGIN))).code, 'UNAUTHORIZED');
  t.equal((await refusal(t, () => gate.authorize(ANONYMOUS, target('x'), 'pull', ORIGIN))).code, 'UNAUTHORIZED');
  t.equal((await refusal(t, () => gate.authorizeCatalog(ANONYMOUS, ORIGIN))).code, 'UNAUTHORIZED');
});

t.test('authorizeBase and authorizeCatalog', async (t) => {
  const { gate } = await basicGate(t.testdir());
  const alice: Caller = { user: 'alice', groups: [], via: 'basic' };
  t.doesNotThrow(() => gate.authorizeBase(alice, ORIGIN));
  t.equal((await refusal(t, () => gate.authorizeBase(ANONYMOUS, ORIGIN))).code, 'UNAUTHORIZED', '/v2/ challenges anonymous callers');
  t.doesNotThrow(() => gate.authorizeCatalog(alice, ORIGIN));
  t.doesNotThrow(() => gate.authorizeCatalog(ANONYMOUS, ORIGIN), 'anonymous callers may pull something here: the catalog shows it');
  const closed = await basicGate(t.testdir(), [RULES[2] as AccessRule]);
  const err = await refusal(t, () => closed.gate.authorizeCatalog(ANONYMOUS, ORIGIN));
  t.equal(err.code, 'UNAUTHORIZED');
  t.same(err.detail, [{ Type: 'registry', Class: '', Name: 'catalog', Action: '*' }]);
});

t.test('bearer tokens of our own issuer: grants and rules must both allow', async (t) => {
  const { gate } = await tokenGate(t.testdir());
  t.equal(gate.kind, 'bearer');
  const issuer = gate.issuer;
  if (issuer === undefined) throw new Error('expected an issuer');
  const { token } = await issuer.issue('alice', [
    { type: 'repository', name: 'team/app', actions: ['pull'] },
    { type: 'repository', name: 'other/app', actions: ['pull'] },
  ]);
  const caller = await gate.authenticate(`Bearer ${token}`, ORIGIN);
  t.match(caller, { user: 'alice', via: 'bearer', groups: [] });
  t.doesNotThrow(() => gate.authorize(caller, target('team/app'), 'pull', ORIGIN));

  const push = await refusal(t, () => gate.authorize(caller, target('team/app'), 'push', ORIGIN));
  t.equal(push.code, 'UNAUTHORIZED', 'the rules would allow it, the token does not');
  t.equal(push.challenge, 'Bearer realm="https://mirror.example:5000/auth/token",service="stevedore",scope="repository:team/app:pull,push",error="insufficient_scope"');
  t.same(push.detail, [{ Type: 'repository', Class: '', Name: 'team/app', Action: 'pull' }, { Type: 'repository', Class: '', Name: 'team/app', Action: 'push' }]);

  const ruled = await refusal(t, () => gate.authorize(caller, target('other/app'), 'pull', ORIGIN));
  t.equal(ruled.code, 'NAME_UNKNOWN', 'granted, but the rules refuse');

  const catalog = await refusal(t, () => gate.authorizeCatalog(caller, ORIGIN));
  t.equal(catalog.code, 'UNAUTHORIZED');
  t.match(catalog.challenge, /scope="registry:catalog:\*",error="insufficient_scope"$/);

  const base = await tokenGate(t.testdir());
  const foreign = await base.gate.authenticate(`Bearer ${token}`, ORIGIN);
  t.match(foreign, { via: 'bearer', rejected: /signature|no trusted key/ }, "another issuer's key");
});

t.test('a bearer token that does not verify is refused where it is used', async (t) => {
  const { gate, clock, log } = await tokenGate(t.testdir());
  for (const token of ['garbage', '', 'a.b.c']) {
    const caller = await gate.authenticate(`Bearer ${token}`, ORIGIN);
    t.match(caller, { via: 'bearer', rejected: String }, JSON.stringify(token));
    const err = await refusal(t, () => gate.authorize(caller, target('library/alpine'), 'pull', ORIGIN));
    t.equal(err.code, 'UNAUTHORIZED');
    t.match(err.challenge, /scope="repository:library\/alpine:pull",error="invalid_token"$/);
    t.equal((await refusal(t, () => gate.authorizeBase(caller, ORIGIN))).code, 'UNAUTHORIZED');
    t.match((await refusal(t, () => gate.authorizeCatalog(caller, ORIGIN))).challenge, /error="invalid_token"/);
  }
  t.ok(log.messages().includes('bearer token refused'));
  const { token } = await (gate.issuer as NonNullable<Gate['issuer']>).issue('alice', [{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
  clock.now += 900_000 + 61_000;
  t.match(await gate.authenticate(`Bearer ${token}`, ORIGIN), { rejected: /exp/ }, 'expired beyond the clock skew');
});

t.test('with ?ns=, the scope is the stored name and a URL-name grant does not count', async (t) => {
  const { gate } = await tokenGate(t.testdir());
  const issuer = gate.issuer as NonNullable<Gate['issuer']>;
  const viaNs = target('myorg/app', 'ghcr.io/myorg/app', true);
  const urlGrant = await gate.authenticate(`Bearer ${(await issuer.issue('alice', [{ type: 'repository', name: 'myorg/app', actions: ['pull'] }])).token}`, ORIGIN);
  const err = await refusal(t, () => gate.authorize(urlGrant, viaNs, 'pull', ORIGIN));
  t.equal(err.code, 'UNAUTHORIZED');
  t.match(err.challenge, /,scope="repository:ghcr\.io\/myorg\/app:pull",error="insufficient_scope"$/);
  const storedGrant = await gate.authenticate(`Bearer ${(await issuer.issue('alice', [{ type: 'repository', name: 'ghcr.io/myorg/app', actions: ['pull'] }])).token}`, ORIGIN);
  t.doesNotThrow(() => gate.authorize(storedGrant, viaNs, 'pull', ORIGIN));

  // Without ns the name in the URL is unambiguous: a grant for it or for the stored name will do.
  const hub = target('alpine', 'library/alpine', false);
  const forUrl = await gate.authenticate(`Bearer ${(await issuer.issue(undefined, [{ type: 'repository', name: 'alpine', actions: ['pull'] }])).token}`, ORIGIN);
  t.doesNotThrow(() => gate.authorize(forUrl, hub, 'pull', ORIGIN));
  const forStored = await gate.authenticate(`Bearer ${(await issuer.issue(undefined, [{ type: 'repository', name: 'library/alpine', actions: ['pull'] }])).token}`, ORIGIN);
  t.doesNotThrow(() => gate.authorize(forStored, hub, 'pull', ORIGIN));
  const none = await gate.authenticate(`Bearer ${(await issuer.issue(undefined, [])).token}`, ORIGIN);
  t.match((await refusal(t, () => gate.authorize(none, hub, 'pull', ORIGIN))).challenge, /scope="repository:alpine:pull"/, 'the scope names the URL name');
});

/** What a token issued by `gate` grants, as `type:name:actions`. */
async function grantsOf(gate: Gate, caller: Caller, scopes: string[], resolve: (name: string) => string | undefined = (n) => n): Promise<string[]> {
  const { token } = await gate.issue(caller, parseScopes(scopes), resolve);
  const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { access: Array<{ type: string; name: string; actions: string[] }> };
  return payload.access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`);
}

t.test('issue: exactly the actions the rules allow', async (t) => {
  const { gate, log } = await tokenGate(t.testdir());
  const alice = await gate.login('alice', 'alice-pw', ORIGIN);
  const bob = await gate.authenticate(basicHeader('bob', 'bob:pw'), ORIGIN);
  t.same(bob, { user: 'bob', groups: ['ci'], via: 'basic' }, 'Basic is accepted by a bearer gate with an issuer');
  t.same(await grantsOf(gate, alice, ['repository:team/app:pull,push,delete']), ['repository:team/app:pull,push']);
  t.same(await grantsOf(gate, alice, ['repository:team/app:*']), ['repository:team/app:pull,push'], '* is pull, push, delete as the rules allow');
  t.same(await grantsOf(gate, alice, ['repository:ghcr.io/myorg/x:*']), ['repository:ghcr.io/myorg/x:pull']);
  t.same(await grantsOf(gate, bob, ['repository:team/secret:pull', 'repository:team/app:pull']), ['repository:team/app:pull'], 'a denied scope is left out');
  t.same(await grantsOf(gate, alice, ['repository:team/app:fly']), [], 'unknown actions grant nothing');
  t.same(await grantsOf(gate, alice, ['registry:catalog:*']), ['registry:catalog:*'], 'the catalog for logged-in users');
  t.same(await grantsOf(gate, alice, ['registry:other:*', 'plugin:x:pull']), [], 'other resource types: nothing');
  t.same(await grantsOf(gate, ANONYMOUS, ['repository:alpine:pull,push', 'registry:catalog:*'], (n) => `library/${n}`), [
    'repository:alpine:pull',
    'registry:catalog:*',
  ], 'anonymous: what the anonymous rules allow, under the name asked for, on the name it routes to');
  t.ok(log.messages().includes('token issued'));
});

t.test('issue: names that resolve to nothing grant nothing', async (t) => {
  const { gate } = await tokenGate(t.testdir());
  const alice = await gate.login('alice', 'alice-pw', ORIGIN);
  // As the token endpoint resolves: through the repository name grammar, then routing.
  const resolve = (name: string): string | undefined => {
    try {
      return parseRepositoryName(name);
    } catch {
      return undefined;
    }
  };
  t.same(await grantsOf(gate, alice, ['repository:team/app:pull'], () => undefined), []);
  t.same(await grantsOf(gate, alice, ['repository:localhost:5000/team/app:pull', 'repository:Team/App:pull', 'repository:team/app:pull'], resolve), [
    'repository:team/app:pull',
  ]);
});

t.test('issue: without rules any logged-in user gets what it asks; the catalog only with an anonymous pull rule for anonymous callers', async (t) => {
  const { gate } = await tokenGate(t.testdir(), null);
  const alice = await gate.login('alice', 'alice-pw', ORIGIN);
  t.same(await grantsOf(gate, alice, ['repository:x/y:*', 'registry:catalog:*']), ['repository:x/y:pull,push,delete', 'registry:catalog:*']);
  t.same(await grantsOf(gate, ANONYMOUS, ['repository:x/y:pull', 'registry:catalog:*']), []);
});

t.test('issue: a gate without an issuer issues nothing', async (t) => {
  const { gate } = await basicGate(t.testdir());
  await t.rejects(gate.issue(ANONYMOUS, [], () => undefined), /this gate issues no tokens/);
});

t.test('realm: configured, or derived from externalUrl, the prefix and the origin', async (t) => {
  t.equal((await basicGate(t.testdir())).gate.realm(ORIGIN), 'Stevedore "mirror"');
  const own = await tokenGate(t.testdir());
  t.equal(own.gate.realm(ORIGIN), 'https://mirror.example:5000/auth/token');
  t.equal(own.gate.realm({ ...ORIGIN, proto: 'http', host: '10.0.0.5' }), 'http://10.0.0.5/auth/token');
  t.equal(own.gate.realm({ ...ORIGIN, host: '' }), 'https://localhost/auth/token', 'no Host header');
  const prefixed = await tokenGate(t.testdir(), RULES, { prefix: '/mirror' });
  t.equal(prefixed.gate.realm(ORIGIN), 'https://mirror.example:5000/mirror/auth/token');
  const external = await tokenGate(t.testdir(), RULES, { prefix: '/mirror', externalUrl: 'https://registry.example.com' });
  t.equal(external.gate.realm(ORIGIN), 'https://registry.example.com/mirror/auth/token', 'http.host wins over the request');
  const configured = await tokenGate(t.testdir(), RULES, { externalUrl: 'https://registry.example.com' }, 'https://auth.example/token');
  t.equal(configured.gate.realm(ORIGIN), 'https://auth.example/token');
  t.equal(
    configured.gate.challenge(ORIGIN, 'repository:a:pull'),
    'Bearer realm="https://auth.example/token",service="stevedore",scope="repository:a:pull"',
  );
});
