// The `auth` section and the `access` rules as the configuration reads them:
// defaults, every key set, and each mistake reported at its path.
import t, { type Test } from 'tap';

import { isConfigError, parseConfig, type ConfigNotice } from '../../src/config/index.js';
import { isAddressOrCidr } from '../../src/config/auth.js';

const MINIMAL = 'version: 0.1\nstorage: {filesystem: {rootdirectory: /srv}}\n';
const HTPASSWD = 'auth: {htpasswd: {realm: basic, path: /htpasswd}}\n';

const parse = (yaml: string) => parseConfig(`${MINIMAL}${yaml}`, {}, 'test.yml');

/** The notices of the ConfigError `yaml` must raise. */
function failure(t: Test, yaml: string): ConfigNotice[] {
  try {
    parse(yaml);
  } catch (err) {
    if (isConfigError(err)) return [...err.notices];
    throw err;
  }
  t.fail('expected a ConfigError');
  return [];
}
const errors = (notices: ConfigNotice[]) => notices.filter((n) => n.level === 'error').map((n) => [n.path, n.message]);
const errorPaths = (notices: ConfigNotice[]) => notices.filter((n) => n.level === 'error').map((n) => n.path);

t.test('auth.htpasswd: the general keys take their defaults', async (t) => {
  const { config, notices } = parse(HTPASSWD);
  t.same(notices, []);
  t.same(config.auth, {
    cacheMs: 300_000,
    lockout: { attempts: 10, windowMs: 300_000 },
    htpasswd: { realm: 'basic', path: '/htpasswd' },
  });
  t.equal(config.access, undefined, 'no access section: not an empty rule list');
  // Distribution's string form names the provider without parameters: both are missing.
  t.same(errorPaths(failure(t, 'auth: htpasswd\n')), ['auth.htpasswd.realm', 'auth.htpasswd.path']);
});

t.test('auth.htpasswd and the general keys, every one set', async (t) => {
  const { config, notices } = parse(`auth:
  htpasswd: {realm: Registry Realm, path: /etc/registry/htpasswd}
  groups: /etc/registry/groups.yml
  cache: 30s
  lockout: {attempts: 3, window: 1m}
`);
  t.same(notices, []);
  t.same(config.auth, {
    cacheMs: 30_000,
    lockout: { attempts: 3, windowMs: 60_000 },
    groups: '/etc/registry/groups.yml',
    htpasswd: { realm: 'Registry Realm', path: '/etc/registry/htpasswd' },
  });
  t.same(config.auth?.token, undefined);
});

t.test('auth.htpasswd without realm or path', async (t) => {
  const both = failure(t, 'auth: {htpasswd: {}}\n');
  t.same(errorPaths(both), ['auth.htpasswd.realm', 'auth.htpasswd.path']);
  for (const [, message] of errors(both)) t.match(message, /required when auth\.htpasswd is set/);
  t.same(errorPaths(failure(t, 'auth: {htpasswd: {realm: r}}\n')), ['auth.htpasswd.path']);
  t.same(errorPaths(failure(t, 'auth: {htpasswd: {path: /p}}\n')), ['auth.htpasswd.realm']);
  t.same(errorPaths(failure(t, 'auth: {htpasswd: {realm: r, path: ""}}\n')), ['auth.htpasswd.path'], 'an empty path is no path');
  t.same(
    errors(failure(t, 'auth: {htpasswd: {realm: r, path: [a, b]}}\n')),
    [['auth.htpasswd.path', 'expected a single value, got a list']],
    'a value of the wrong type is reported once, not also as missing',
  );
});

t.test('auth.token with an external issuer: defaults and every key', async (t) => {
  const minimal = parse('auth: {token: {realm: "https://auth.example/token", service: registry, issuer: auth, rootcertbundle: /certs.pem}}\n');
  t.same(minimal.notices, []);
  t.same(minimal.config.auth, {
    cacheMs: 300_000,
    lockout: { attempts: 10, windowMs: 300_000 },
    token: {
      realm: 'https://auth.example/token',
      service: 'registry',
      issuer: 'auth',
      rootCertBundle: '/certs.pem',
      clockSkewMs: 60_000,
      groupsClaim: 'groups',
    },
  });
  const full = parse(`auth:
  token:
    realm: https://auth.example/token
    service: registry.example
    issuer: Acme auth server
    rootcertbundle: /certs.pem
    jwks: https://auth.example/jwks.json
    clockskew: 5s
    groupsclaim: roles
`);
  t.same(full.notices, []);
  t.same(full.config.auth?.token, {
    realm: 'https://auth.example/token',
    service: 'registry.example',
    issuer: 'Acme auth server',
    rootCertBundle: '/certs.pem',
    jwks: 'https://auth.example/jwks.json',
    clockSkewMs: 5000,
    groupsClaim: 'roles',
  });
  const jwksOnly = parse('auth: {token: {realm: "https://a/t", service: s, issuer: i, jwks: /jwks.json}}\n');
  t.same(jwksOnly.notices, [], 'a JWKS instead of a certificate bundle is enough');
  t.equal(jwksOnly.config.auth?.token?.rootCertBundle, undefined);
  const plainJwks = parse('auth: {token: {realm: "https://a/t", service: s, issuer: i, jwks: "http://auth/jwks.json"}}\n');
  t.match(plainJwks.notices, [{ level: 'warn', path: 'auth.token.jwks', message: /plain http/ }]);
});

t.test('auth.token without realm, service, issuer or keys', async (t) => {
  const empty = failure(t, 'auth: {token: {}}\n');
  t.same(errorPaths(empty), ['auth.token.realm', 'auth.token.service', 'auth.token.issuer', 'auth.token.rootcertbundle']);
  t.match(empty, [
    { message: /required when auth\.token is set \(unless auth\.token\.issue/ },
    {},
    {},
    { message: /or auth\.token\.jwks/ },
  ]);
  const base = { realm: '"https://a/t"', service: 's', issuer: 'i', rootcertbundle: '/b.pem' };
  for (const key of Object.keys(base) as Array<keyof typeof base>) {
    const rest = Object.entries(base).filter(([k]) => k !== key).map(([k, v]) => `${k}: ${v}`).join(', ');
    t.same(errorPaths(failure(t, `auth: {token: {${rest}}}\n`)), [`auth.token.${key}`], `without ${key}`);
  }
  t.same(
    errors(failure(t, 'auth: {token: {realm: not-a-url, service: s, issuer: i, rootcertbundle: /b.pem}}\n')),
    [['auth.token.realm', 'expected an absolute URL such as https://registry-1.docker.io, got "not-a-url"']],
    'a realm that is not a URL is reported once',
  );
  t.same(errorPaths(failure(t, 'auth: {token: {realm: "ftp://a/t", service: s, issuer: i, rootcertbundle: /b.pem}}\n')), ['auth.token.realm']);
  t.same(errorPaths(failure(t, 'auth: token\n')), ['auth.token.realm', 'auth.token.service', 'auth.token.issuer', 'auth.token.rootcertbundle']);
});

t.test('auth.token.issue: Stevedore issues tokens itself', async (t) => {
  const minimal = parse('auth: {token: {issue: {key: /keys/token.pem, users: /etc/htpasswd}}}\n');
  t.same(minimal.notices, [], 'no realm, service, issuer or certificates needed');
  t.same(minimal.config.auth?.token, {
    service: 'stevedore',
    issuer: 'stevedore',
    clockSkewMs: 60_000,
    groupsClaim: 'groups',
    issue: { key: '/keys/token.pem', users: '/etc/htpasswd', expiryMs: 900_000 },
  });
  const full = parse(`auth:
  token:
    realm: https://mirror.example/auth/token
    service: mirror
    issuer: mirror-issuer
    issue: {key: /k.pem, users: /u, expiry: 1h}
`);
  t.same(full.notices, []);
  t.same(full.config.auth?.token, {
    realm: 'https://mirror.example/auth/token',
    service: 'mirror',
    issuer: 'mirror-issuer',
    clockSkewMs: 60_000,
    groupsClaim: 'groups',
    issue: { key: '/k.pem', users: '/u', expiryMs: 3_600_000 },
  });
});

t.test('auth.token.issue without key or users, or with a too short expiry', async (t) => {
  const empty = failure(t, 'auth: {token: {issue: {}}}\n');
  t.same(errorPaths(empty), ['auth.token.issue.key', 'auth.token.issue.users']);
  t.match(empty, [{ message: /PEM private key/ }, { message: /htpasswd file/ }]);
  t.same(errorPaths(failure(t, 'auth: {token: {issue: ~}}\n')), ['auth.token.issue.key', 'auth.token.issue.users'], 'an empty issue section');
  t.same(errorPaths(failure(t, 'auth: {token: {issue: {key: /k.pem}}}\n')), ['auth.token.issue.users']);
  t.same(errorPaths(failure(t, 'auth: {token: {issue: {users: /u}}}\n')), ['auth.token.issue.key']);
  t.same(errors(failure(t, 'auth: {token: {issue: {key: /k, users: /u, expiry: 500ms}}}\n')), [['auth.token.issue.expiry', 'must be at least 1s']]);
});

t.test('at most one auth provider', async (t) => {
  const two = failure(t, `auth:
  htpasswd: {realm: r, path: /p}
  token: {realm: "https://a/t", service: s, issuer: i, rootcertbundle: /b.pem}
`);
  t.same(errors(two), [['auth', 'must configure at most one auth provider, found htpasswd, token']]);
});

t.test('auth settings without a provider do nothing, and say so', async (t) => {
  const { config, notices } = parse('auth: {lockout: {attempts: 3}, cache: 1m, groups: /g.yml}\n');
  t.equal(config.auth, undefined);
  t.match(notices, [{ level: 'warn', path: 'auth', message: /no provider .* do nothing/ }]);
  t.same(errorPaths(failure(t, 'auth: {htpasswd: {realm: r, path: /p}, lockout: {attempts: 0}}\n')), ['auth.lockout.attempts']);
});

t.test('access: rules as written, with users and groups apart', async (t) => {
  const { config, notices } = parse(`${HTPASSWD}access:
  - repositories: ["library/**"]
    anonymous: true
    actions: [pull]
  - repositories: ["team/**", "ghcr.io/myorg/*"]
    users: [alice, "group:ci"]
    actions: [pull, push, delete]
  - repositories: ["secret/**"]
    users: [bob]
    anonymous: false
    actions: []
  - repositories: ["x"]
    anonymous: YES
    actions: [pull]
`);
  t.same(notices, []);
  t.same(config.access, [
    { repositories: ['library/**'], users: [], groups: [], anonymous: true, actions: ['pull'] },
    { repositories: ['team/**', 'ghcr.io/myorg/*'], users: ['alice'], groups: ['ci'], anonymous: false, actions: ['pull', 'push', 'delete'] },
    { repositories: ['secret/**'], users: ['bob'], groups: [], anonymous: false, actions: [] },
    { repositories: ['x'], users: [], groups: [], anonymous: true, actions: ['pull'] },
  ]);
  t.same(parse(`${HTPASSWD}access: []\n`).config.access, [], 'an empty list is rules that allow nothing');
  t.equal(parse(`${HTPASSWD}access: ~\n`).config.access, undefined);
});

t.test('access: every mistake at the index of its rule', async (t) => {
  t.same(errors(failure(t, `${HTPASSWD}access: {repositories: [x]}\n`)), [['access', 'expected a list, got a mapping']], 'not a list');
  t.same(errors(failure(t, `${HTPASSWD}access: everything\n`)), [['access', 'expected a list, got "everything"']]);
  const cases: Array<[string, string, RegExp]> = [
    ['- users: [a]\n    actions: [pull]', 'access[0].repositories', /required: a list of repository patterns/],
    ['- repositories: []\n    users: [a]\n    actions: [pull]', 'access[0].repositories', /required/],
    ['- repositories: x\n    users: [a]\n    actions: [pull]', 'access[0].repositories', /required: a list/],
    ['- repositories: ["Team/App"]\n    users: [a]\n    actions: [pull]', 'access[0].repositories', /"Team\/App" is not a repository pattern/],
    ['- repositories: ["a b"]\n    users: [a]\n    actions: [pull]', 'access[0].repositories', /"a b" is not a repository pattern/],
    ['- repositories: ["x?"]\n    users: [a]\n    actions: [pull]', 'access[0].repositories', /is not a repository pattern/],
    ['- repositories: [x]\n    users: [a]\n    actions: [pull]\n    tags: [latest]', 'access[0].tags', /unknown key: a rule has repositories, users, anonymous and actions/],
    ['- repositories: [x]\n    actions: [pull]', 'access[0]', /names nobody: give users, or anonymous: true/],
    ['- repositories: [x]\n    users: []\n    actions: [pull]', 'access[0]', /names nobody/],
    ['- repositories: [x]\n    anonymous: false\n    actions: [pull]', 'access[0]', /names nobody/],
    ['- repositories: [x]\n    users: alice\n    actions: [pull]', 'access[0].users', /expected a list of user names and group:<name> entries/],
    ['- repositories: [x]\n    users: ["a b"]\n    actions: [pull]', 'access[0].users', /"a b" is not a user name or group:<name>/],
    ['- repositories: [x]\n    users: ["group:"]\n    actions: [pull]', 'access[0].users', /"group:" is not a user name/],
    ['- repositories: [x]\n    users: [a]\n    actions: [read]', 'access[0].actions', /"read" is not one of pull, push, delete/],
    ['- repositories: [x]\n    users: [a]\n    actions: [PULL]', 'access[0].actions', /"PULL" is not one of/],
    ['- repositories: [x]\n    users: [a]', 'access[0].actions', /required: a list of pull, push, delete \(\[\] denies\)/],
    ['- repositories: [x]\n    users: [a]\n    actions: pull', 'access[0].actions', /required: a list/],
    ['- repositories: [x]\n    anonymous: maybe\n    actions: [pull]', 'access[0].anonymous', /expected true or false/],
    ['- [x, y]', 'access[0]', /expected a mapping with repositories, users or anonymous, and actions/],
    ['- just a string', 'access[0]', /expected a mapping/],
  ];
  for (const [rule, path, message] of cases) {
    const notices = failure(t, `${HTPASSWD}access:\n  ${rule}\n`);
    t.ok(
      notices.some((n) => n.level === 'error' && n.path === path && message.test(n.message)),
      `${JSON.stringify(rule)} → ${path} ${String(message)}`,
      { found: errors(notices) },
    );
  }
  const second = failure(t, `${HTPASSWD}access:\n  - repositories: [x]\n    users: [a]\n    actions: [pull]\n  - repositories: [y]\n    actions: [fly]\n`);
  t.same(errorPaths(second), ['access[1]', 'access[1].actions'], 'the index of the rule at fault; a good rule says nothing');
});

t.test('access needs an auth provider', async (t) => {
  const rules = 'access:\n  - repositories: ["**"]\n    anonymous: true\n    actions: [pull]\n';
  t.same(errors(failure(t, rules)), [['access', 'rules need an auth provider (auth.htpasswd or auth.token) to tell callers apart']]);
  t.same(errorPaths(failure(t, `auth: {lockout: {attempts: 3}}\n${rules}`)), ['access'], 'general auth keys are no provider');
  t.same(parse(`auth: {token: {issue: {key: /k, users: /u}}}\n${rules}`).notices, [], 'an issuer is one');
});

t.test('http.trustedproxies: addresses and CIDR blocks only', async (t) => {
  const good = parse('http: {trustedproxies: [10.0.0.0/8, 127.0.0.1, "::1", "fd00::/8", "::ffff:10.0.0.0/104", 0.0.0.0/0]}\n');
  t.same(good.notices, []);
  t.same(good.config.http.trustedProxies, ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8', '::ffff:10.0.0.0/104', '0.0.0.0/0']);
  for (const bad of ['proxy.internal', '10.0.0.0/33', 'fd00::/129', '10.0.0.1/', '/8', '10.0.0.0/x', '10.0.0.0/8/8', '010.0.0.1', '10.0.0.0/-1']) {
    t.same(
      errors(failure(t, `http: {trustedproxies: [127.0.0.1, "${bad}"]}\n`)),
      [['http.trustedproxies', `"${bad}" is not an IP address or CIDR block (10.0.0.0/8, ::1)`]],
      bad,
    );
  }
  t.same(errorPaths(failure(t, 'http: {trustedproxies: 10.0.0.0/8}\n')), ['http.trustedproxies'], 'a single value is not a list');
  t.same(errorPaths(failure(t, 'http: {trustedproxies: ["", 10.0.0.1]}\n')), ['http.trustedproxies']);
});

t.test('isAddressOrCidr', async (t) => {
  for (const good of ['1.2.3.4', '1.2.3.4/32', '0.0.0.0/0', '::', '::/0', '2001:db8::/32', 'fe80::1/128']) t.ok(isAddressOrCidr(good), good);
  for (const bad of ['', '1.2.3', '1.2.3.4/33', '::/129', '1.2.3.4/ 8', '1.2.3.4/0008', 'localhost']) t.notOk(isAddressOrCidr(bad), bad);
});

t.test('http.tls.minimumtls and http.tls.clientauth', async (t) => {
  const TLS = 'http: {tls: {certificate: /c.pem, key: /k.pem';
  const defaults = parse(`${TLS}}}\n`);
  t.same(defaults.config.http.tls, {
    certificate: '/c.pem',
    key: '/k.pem',
    clientCas: [],
    clientAuth: 'require-and-verify-client-cert',
    minimumTls: 'TLSv1.2',
  });
  t.equal(parse(`${TLS}, minimumtls: tls1.2}}\n`).config.http.tls?.minimumTls, 'TLSv1.2');
  t.equal(parse(`${TLS}, minimumtls: TLS1.3}}\n`).config.http.tls?.minimumTls, 'TLSv1.3', 'compared lower-cased');
  for (const old of ['tls1.0', 'tls1.1', 'tls1.4', '1.2', 'TLSv1.2']) {
    t.same(errors(failure(t, `${TLS}, minimumtls: ${old}}}\n`)), [['http.tls.minimumtls', `must be one of tls1.2, tls1.3; got "${old}"`]], old);
  }
  const ifGiven = parse(`${TLS}, clientcas: [/ca.pem], clientauth: verify-client-cert-if-given}}\n`);
  t.same([ifGiven.config.http.tls?.clientCas, ifGiven.config.http.tls?.clientAuth], [['/ca.pem'], 'verify-client-cert-if-given']);
  t.equal(parse(`${TLS}, clientauth: require-and-verify-client-cert}}\n`).config.http.tls?.clientAuth, 'require-and-verify-client-cert');
  // Go's other ClientAuthType values are not offered: requesting without verifying is no authentication.
  for (const other of ['request-client-cert', 'require-any-client-cert', 'verify', 'none']) {
    t.same(errorPaths(failure(t, `${TLS}, clientauth: ${other}}}\n`)), ['http.tls.clientauth'], other);
  }
  t.same(errorPaths(failure(t, `${TLS}, clientcas: /ca.pem}}\n`)), ['http.tls.clientcas'], 'clientcas is a list');
  t.same(errorPaths(failure(t, 'http: {tls: {clientcas: [/ca.pem]}}\n')), ['http.tls.certificate', 'http.tls.key'], 'client CAs without a certificate of our own');
});

t.test('http.draintimeout, http.timeouts and limits: errors', async (t) => {
  t.same(errorPaths(failure(t, 'http: {draintimeout: soon}\n')), ['http.draintimeout']);
  t.same(errorPaths(failure(t, 'http: {timeouts: {headers: 10, idle: -1s}}\n')), ['http.timeouts.headers', 'http.timeouts.idle']);
  t.same(errors(failure(t, 'limits: {headerbytes: 1000}\n')), [['limits.headerbytes', 'must be at least 1024 bytes, got 1000']]);
  t.same(errors(failure(t, 'limits: {headers: 7}\n')), [['limits.headers', 'must be at least 8, got 7']]);
  t.same(errorPaths(failure(t, 'limits: {manifestbytes: 1KB, fills: 0, fillsperclient: 0, requestrate: -1, requestburst: 0}\n')), [
    'limits.manifestbytes',
    'limits.fills',
    'limits.fillsperclient',
    'limits.requestrate',
    'limits.requestburst',
  ]);
  t.equal(parse('limits: {manifestbytes: 1KiB}\n').config.limits.manifestBytes, 1024, 'the minimum itself');
  t.equal(parse('http: {draintimeout: 0s}\n').config.http.drainTimeoutMs, 0);
});
