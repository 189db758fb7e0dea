import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';

import {
  ConfigError,
  EMBEDDED_SOURCE,
  isConfigError,
  loadConfig,
  parseConfig,
  type ConfigNotice,
} from '../../src/config/index.js';

const MINIMAL = 'version: 0.1\nstorage: {filesystem: {rootdirectory: /srv}}\n';

const parse = (yaml: string, env: NodeJS.ProcessEnv = {}) => parseConfig(yaml, env, 'test.yml');

/** The notices of the ConfigError `yaml` must raise. */
function failure(t: Test, yaml: string, env: NodeJS.ProcessEnv = {}): ConfigNotice[] {
  try {
    parse(yaml, env);
  } catch (err) {
    if (isConfigError(err)) {
      t.equal(err.code, 'ERR_CONFIG_INVALID');
      return [...err.notices];
    }
    throw err;
  }
  t.fail('expected a ConfigError');
  return [];
}
const errorPaths = (notices: ConfigNotice[]) => notices.filter((n) => n.level === 'error').map((n) => n.path);

/** `http` as a file that sets none of it gets it. */
const HTTP_DEFAULTS = {
  addr: ':5000',
  host: '',
  port: 5000,
  prefix: '',
  drainTimeoutMs: 10_000,
  workers: 1,
  trustedProxies: [],
  timeouts: { headersMs: 10_000, requestMs: 60_000, idleMs: 120_000, keepAliveMs: 65_000 },
};
const LIMITS_DEFAULTS = {
  headerBytes: 16 * 1024,
  headers: 100,
  manifestBytes: 4 * 1024 * 1024,
  fills: 64,
  fillsPerClient: 16,
  requestRate: 0,
  requestBurst: 200,
};

t.test('the embedded default is a Docker Hub mirror under ./data', async (t) => {
  const { config, notices, source } = await loadConfig({ env: {} });
  t.equal(source, EMBEDDED_SOURCE);
  t.same(notices, []);
  t.same(config.log, { level: 'info', formatter: 'json', accesslog: true });
  t.same(config.http, HTTP_DEFAULTS);
  t.same(config.limits, LIMITS_DEFAULTS);
  t.same(config.storage.filesystem, { rootdirectory: './data' });
  t.same(config.metadata, { store: 'memory', namespace: 'stevedore', maxSize: 64 * 1024 * 1024 });
  t.same(config.cache, { manifests: { maxEntries: 10000, maxSize: 64 * 1024 * 1024 }, descriptors: { maxEntries: 100000 } });
  t.same(config.defaultPlatform, { os: 'linux', architecture: 'amd64' });
  t.same(config.proxy, {
    name: 'default',
    url: 'https://registry-1.docker.io',
    ttlMs: 168 * 3_600_000,
    tagTtlMs: 300_000,
    tagTtlRules: [],
    hosts: ['registry-1.docker.io', 'docker.io', 'index.docker.io'],
    namespace: '',
    allow: [],
    deny: [],
    dockerHub: true,
    timeouts: { connectMs: 10_000, headersMs: 30_000, bodyMs: 15_000, resumeMs: 30_000, fillWaitMs: 20_000 },
    tlsVerify: true,
    breaker: { maxFails: 3, probeIntervalMs: 10_000 },
  });
  t.equal(config.auth, undefined);
  t.equal(config.access, undefined);
});

t.test('the embedded default takes environment overrides', async (t) => {
  const { config } = await loadConfig({ env: { REGISTRY_PROXY_REMOTEURL: 'https://ghcr.io/', REGISTRY_HTTP_ADDR: '127.0.0.1:0' } });
  t.equal(config.proxy?.url, 'https://ghcr.io');
  t.equal(config.proxy?.dockerHub, false);
  t.same([config.http.host, config.http.port], ['127.0.0.1', 0]);
  const plain = await loadConfig({ env: { REGISTRY_PROXY_REMOTEURL: '' } });
  t.equal(plain.config.proxy, undefined, 'an empty remoteurl turns the proxy off, as in Distribution');
});

t.test('a real registry:2 Docker Hub mirror config loads with warnings only', async (t) => {
  const dir = t.testdir({
    'config.yml': `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
proxy:
  remoteurl: https://registry-1.docker.io
  username: u
  password: p
`,
  });
  const path = join(dir, 'config.yml');
  const { config, notices, source } = await loadConfig({ path, env: {} });
  t.equal(source, path);
  t.same(
    notices.map((n) => [n.level, n.path]),
    [
      ['warn', 'log.fields'],
      ['warn', 'storage.cache'],
      ['warn', 'http.headers'],
      ['warn', 'health'],
    ],
  );
  for (const n of notices) t.match(n.message, /accepted but not yet supported by Stevedore/);
  t.same(config.proxy, {
    name: 'default',
    url: 'https://registry-1.docker.io',
    username: 'u',
    password: 'p',
    ttlMs: 168 * 3_600_000,
    tagTtlMs: 300_000,
    tagTtlRules: [],
    hosts: ['registry-1.docker.io', 'docker.io', 'index.docker.io'],
    namespace: '',
    allow: [],
    deny: [],
    dockerHub: true,
    timeouts: { connectMs: 10_000, headersMs: 30_000, bodyMs: 15_000, resumeMs: 30_000, fillWaitMs: 20_000 },
    tlsVerify: true,
    breaker: { maxFails: 3, probeIntervalMs: 10_000 },
  });
  t.same(config.storage, {
    driver: 'filesystem',
    filesystem: { rootdirectory: '/var/lib/registry' },
    spool: join(tmpdir(), 'stevedore-spool'),
    redirect: false,
    delete: { enabled: false },
    maintenance: {
      uploadpurging: { enabled: true, ageMs: 168 * 3_600_000, intervalMs: 24 * 3_600_000, dryrun: false },
      readonly: false,
      gc: { graceMs: 3_600_000 },
    },
  });
  t.same(config.log, { level: 'info', formatter: 'json', accesslog: true });
});

t.test('a file config follows Distribution: no proxy section, no upstream', async (t) => {
  const { config, notices } = parse(MINIMAL);
  t.same(notices, []);
  t.equal(config.proxy, undefined);
  t.same(config.http, HTTP_DEFAULTS);
  t.equal(config.http.tls, undefined);
  t.same(config.limits, LIMITS_DEFAULTS);
  const bare = parse('version: 0.1\nstorage: filesystem\n');
  t.equal(bare.config.storage.filesystem.rootdirectory, '/var/lib/registry', 'string form, Distribution default root');
});

t.test('the result is deeply frozen', async (t) => {
  const loaded = parse(`${MINIMAL}proxy: {remoteurl: https://r.example}\n`);
  t.ok(Object.isFrozen(loaded));
  t.ok(Object.isFrozen(loaded.config.storage.maintenance.uploadpurging));
  t.ok(Object.isFrozen(loaded.config.proxy?.timeouts));
  t.ok(Object.isFrozen(loaded.notices));
  t.throws(() => {
    (loaded.config.http as { port: number }).port = 1;
  }, TypeError);
});

t.test('every key Stevedore reads, set explicitly', async (t) => {
  const { config, notices } = parse(`version: "0.1"
log: {level: DEBUG, formatter: text, accesslog: {disabled: yes}}
storage:
  filesystem: {rootdirectory: /data}
  delete: {enabled: true}
  maintenance:
    uploadpurging: {enabled: false, age: 1h, interval: 30m, dryrun: true}
    readonly: {enabled: true}
http:
  addr: "[::1]:8443"
  host: https://mirror.example.com/
  prefix: /nested/registry/
  tls: {certificate: /c.pem, key: /k.pem, clientcas: [/ca1.pem, /ca2.pem], clientauth: VERIFY-CLIENT-CERT-IF-GIVEN, minimumtls: tls1.3}
  draintimeout: 90s
  workers: 3
  trustedproxies: [10.0.0.0/8, "::1", 192.168.1.7, "fd00::/8"]
  timeouts: {headers: 5s, request: 2m, idle: 30s, keepalive: 10s}
limits:
  headerbytes: 32KiB
  headers: 50
  manifestbytes: 8MiB
  fills: 10
  fillsperclient: 2
  requestrate: 100
  requestburst: 400
proxy:
  remoteurl: http://registry.internal:5000
  ttl: 0
  tagttl: 30s
  timeouts: {connect: 1s, headers: 2s, body: 3s, resume: 4s, fillwait: 5s}
  breaker: {maxfails: 7, probeinterval: 2s}
  cabundle: /ca.pem
  tlsverify: false
metadata: {store: redis, url: "redis://:secret@cache:6379/2", namespace: mirror, maxsize: 2MiB}
cache: {manifests: {maxentries: 5, maxsize: 1.5MB}, descriptors: {maxentries: 6}}
defaultplatform: linux/arm64/v8
`);
  t.same(config.log, { level: 'debug', formatter: 'text', accesslog: false });
  t.same(config.http, {
    addr: '[::1]:8443',
    host: '::1',
    port: 8443,
    prefix: '/nested/registry',
    externalUrl: 'https://mirror.example.com',
    drainTimeoutMs: 90_000,
    workers: 3,
    trustedProxies: ['10.0.0.0/8', '::1', '192.168.1.7', 'fd00::/8'],
    timeouts: { headersMs: 5000, requestMs: 120_000, idleMs: 30_000, keepAliveMs: 10_000 },
    tls: {
      certificate: '/c.pem',
      key: '/k.pem',
      clientCas: ['/ca1.pem', '/ca2.pem'],
      clientAuth: 'verify-client-cert-if-given',
      minimumTls: 'TLSv1.3',
    },
  });
  t.same(config.limits, {
    headerBytes: 32 * 1024,
    headers: 50,
    manifestBytes: 8 * 1024 * 1024,
    fills: 10,
    fillsPerClient: 2,
    requestRate: 100,
    requestBurst: 400,
  });
  t.same(config.storage.maintenance, {
    uploadpurging: { enabled: false, ageMs: 3_600_000, intervalMs: 1_800_000, dryrun: true },
    readonly: true,
    gc: { graceMs: 3_600_000 },
  });
  t.equal(config.storage.delete.enabled, true);
  t.same(config.proxy, {
    name: 'default',
    url: 'http://registry.internal:5000',
    ttlMs: 0,
    tagTtlMs: 30_000,
    tagTtlRules: [],
    hosts: ['registry.internal:5000'],
    namespace: '',
    allow: [],
    deny: [],
    dockerHub: false,
    timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 3000, resumeMs: 4000, fillWaitMs: 5000 },
    caBundle: '/ca.pem',
    tlsVerify: false,
    breaker: { maxFails: 7, probeIntervalMs: 2000 },
  });
  t.same(config.metadata, { store: 'redis', url: 'redis://:secret@cache:6379/2', namespace: 'mirror', maxSize: 2 * 1024 * 1024 });
  t.same(config.cache, { manifests: { maxEntries: 5, maxSize: 1_500_000 }, descriptors: { maxEntries: 6 } });
  t.same(config.defaultPlatform, { os: 'linux', architecture: 'arm64', variant: 'v8' });
  t.equal(config.auth, undefined);
  t.same(
    notices.map((n) => n.path),
    ['proxy.tlsverify'],
  );
});

t.test('auth.htpasswd and auth.token are read; auth.silly is refused rather than ignored', async (t) => {
  const basic = parse(`${MINIMAL}auth: {htpasswd: {realm: basic, path: /htpasswd}}\n`);
  t.same(basic.notices, []);
  t.same(basic.config.auth?.htpasswd, { realm: 'basic', path: '/htpasswd' });
  const token = parse(`${MINIMAL}auth: {token: {realm: "https://auth.example/token", service: registry, issuer: auth, rootcertbundle: /certs.pem}}\n`);
  t.same(token.notices, []);
  t.match(token.config.auth?.token, { realm: 'https://auth.example/token', service: 'registry', issuer: 'auth', rootCertBundle: '/certs.pem' });
  // A half-written token section is an error, never an open registry.
  t.ok(errorPaths(failure(t, `${MINIMAL}auth: {token: {realm: "https://auth.example/token"}}\n`)).length > 0);
  const silly = failure(t, `${MINIMAL}auth: {silly: {realm: r}}\n`);
  t.same(errorPaths(silly), ['auth.silly']);
  t.match(silly[0]?.message, /accepted but not yet supported.*cannot be ignored.*use auth\.htpasswd/);
});

t.test('unknown keys are reported with their path', async (t) => {
  const { notices } = parse(`${MINIMAL}proxy: {remoteurl: https://r.example, remoteur1: x}\nfrobnicate: 1\nhttp: {tls: {}}\n`);
  t.same(
    notices.map((n) => [n.level, n.path]),
    [
      ['warn', 'proxy.remoteur1'],
      ['warn', 'frobnicate'],
    ],
  );
  t.match(notices[0]?.message, /unknown key.*did you mean proxy\.remoteurl\?/);
  t.match(notices[1]?.message, /^unknown key: neither a Distribution key nor a Stevedore extension; ignored$/);
});

t.test('unsupported Distribution keys are accepted with a notice', async (t) => {
  const { notices } = parse(`${MINIMAL}
notifications: {endpoints: [{name: a, url: http://x}]}
redis: {addr: localhost:6379}
validation: {disabled: true}
compatibility: {schema1: {enabled: true}}
middleware: {registry: [{name: x}]}
reporting: {bugsnag: {apikey: k}}
log: {hooks: [{type: mail}]}
http: {secret: s3cr3t, debug: {addr: :5001}, http2: {disabled: true}, relativeurls: true}
`);
  t.same(
    notices.map((n) => n.path),
    [
      'notifications', 'redis', 'validation', 'compatibility', 'middleware', 'reporting', 'log.hooks',
      'http.secret', 'http.http2', 'http.relativeurls',
    ],
  );
  for (const n of notices) t.equal(n.level, 'warn', n.path);
  t.notOk(notices.some((n) => n.message.includes('s3cr3t')), 'secrets are never echoed');
  const legacy = parse(`${MINIMAL}loglevel: debug\n`);
  t.equal(legacy.config.log.level, 'debug', 'the deprecated loglevel still applies');
  t.match(legacy.notices, [{ level: 'warn', path: 'loglevel', message: /deprecated: use log.level/ }]);
  t.equal(parse(`${MINIMAL}loglevel: debug\nlog: {level: warn}\n`).config.log.level, 'warn', 'log.level wins');
});

t.test('keys that would change what is served are errors', async (t) => {
  const notices = failure(t, `version: 0.1
storage: {gcs: {bucket: b}}
proxy: {remoteurl: https://r.example, remotenamespace: library}
`);
  t.same(errorPaths(notices), ['storage.gcs', 'proxy.remotenamespace']);
  t.match(notices[0]?.message, /accepted but not yet supported by Stevedore.*only the filesystem and s3 storage drivers/);
  // storage.s3 is a driver now: what it needs is checked, and the secret never echoed.
  const s3 = failure(t, 'version: 0.1\nstorage: {s3: {bucket: b, secretkey: hunter2, encrypt: true}}\n');
  t.same(errorPaths(s3), ['storage.s3.encrypt', 'storage.s3.region', 'storage.s3']);
  t.notMatch(JSON.stringify(s3), /hunter2/);
  t.same(errorPaths(failure(t, 'version: 0.1\nstorage: {filesystem: {}, inmemory: }\n')), ['storage.inmemory', 'storage']);
  t.same(errorPaths(failure(t, 'version: 0.1\nstorage: {filesystem: {}, ceph: {}}\n')), ['storage.ceph', 'storage']);
  t.same(errorPaths(failure(t, 'version: 0.1\nstorage: {delete: {enabled: true}}\n')), ['storage']);
  t.same(errorPaths(failure(t, 'version: 0.1\n')), ['storage']);
  t.same(errorPaths(failure(t, `${MINIMAL}http: {net: unix, addr: /run/registry.sock}\n`)), ['http.net', 'http.addr']);
});

t.test('invalid values, each reported with its path, all at once', async (t) => {
  let thrown: unknown;
  try {
    parse(`version: 0.2
log: {level: verbose, formatter: xml, accesslog: {disabled: maybe}}
storage:
  filesystem: {rootdirectory: [a, b]}
  maintenance: {uploadpurging: {age: 7d, interval: 10}}
http: {addr: localhost, host: not a url, tls: {certificate: /c.pem}}
proxy: {remoteurl: ftp://r.example, ttl: -1h, password: {x: 1}}
metadata: {store: file}
cache: {manifests: {maxentries: 0}, descriptors: {maxentries: lots}}
auth: {htpasswd: {realm: r}}
`);
  } catch (err) {
    thrown = err;
  }
  if (!(thrown instanceof ConfigError)) throw new Error('expected a ConfigError');
  t.equal(thrown.code, 'ERR_CONFIG_INVALID');
  t.equal(thrown.source, 'test.yml');
  const errors = thrown.notices.filter((n) => n.level === 'error');
  t.same(
    errors.map((n) => n.path).sort(),
    [
      'auth.htpasswd.path',
      'cache.descriptors.maxentries',
      'cache.manifests.maxentries',
      'http.addr',
      'http.host',
      'http.tls.key',
      'log.accesslog.disabled',
      'log.formatter',
      'log.level',
      'metadata.path',
      'proxy.password',
      'proxy.remoteurl',
      'proxy.ttl',
      'storage.filesystem.rootdirectory',
      'storage.maintenance.uploadpurging.age',
      'storage.maintenance.uploadpurging.interval',
      'version',
    ],
  );
  const message = (path: string) => errors.find((n) => n.path === path)?.message ?? '';
  t.match(message('version'), /must be 0.1/);
  t.match(message('log.level'), /must be one of trace, debug, info, warn, error, fatal; got "verbose"/);
  t.match(message('log.accesslog.disabled'), /expected true or false, got "maybe"/);
  t.match(message('storage.filesystem.rootdirectory'), /expected a single value, got a list/);
  t.match(message('storage.maintenance.uploadpurging.age'), /unknown unit "d"/);
  t.match(message('storage.maintenance.uploadpurging.interval'), /missing unit/);
  t.match(message('http.addr'), /expected host:port/);
  t.match(message('proxy.remoteurl'), /scheme must be http or https, got "ftp"/);
  t.match(message('proxy.ttl'), /negative duration/);
  t.match(message('proxy.password'), /expected a single value, got a mapping/);
  t.match(message('cache.manifests.maxentries'), /at least 1/);
  t.match(thrown.message, /invalid configuration in test\.yml:\n {2}- /);
  t.match(thrown.message, /version: must be 0.1/);
});

t.test('more rules', async (t) => {
  t.same(errorPaths(failure(t, 'storage: filesystem\n')), ['version']);
  t.same(errorPaths(failure(t, `${MINIMAL}proxy: {remoteurl: "https://u:pw@r.example"}\n`)), ['proxy.remoteurl']);
  t.same(errorPaths(failure(t, `${MINIMAL}metadata: {store: redis, url: "postgres://db"}\n`)), ['metadata.url']);
  t.same(errorPaths(failure(t, `${MINIMAL}metadata: {store: postgres}\n`)), ['metadata.url']);
  t.same(errorPaths(failure(t, `${MINIMAL}auth: {htpasswd: {realm: r, path: p}, silly: {}}\n`)), ['auth.silly', 'auth']);
  t.same(errorPaths(failure(t, `${MINIMAL}proxy: [1]\n`)), ['proxy']);
  t.same(errorPaths(failure(t, '- a list\n')), ['', 'storage', 'version']);
  t.same(errorPaths(failure(t, 'version: 0.1\nversion: 0.1\n')), ['']);
  t.match(failure(t, 'version: [0.1\n')[0]?.message, /^YAML: .*\(line 2, column 1\)$/);
  t.match(failure(t, 'a: 1\na: 2\n')[0]?.message, /^YAML: Map keys must be unique \(line 2, column 1\)$/);

  t.match(failure(t, `${MINIMAL}? [a, b]\n: 1\n`), [{ level: 'error', path: '', message: /not a plain string \(a list\)/ }]);
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (const c of 'bcdefghi') bomb.push(`${c}: &${c} [${Array(10).fill(`*${String.fromCharCode(c.charCodeAt(0) - 1)}`).join(', ')}]`);
  t.match(failure(t, `${MINIMAL}${bomb.join('\n')}\n`), [{ level: 'error', path: '', message: /^YAML: .*alias/i }]);
  t.match(parse(`${MINIMAL}http: {addr: !custom ":5001"}\n`), {
    config: { http: { port: 5001 } },
    notices: [{ level: 'warn', path: '', message: /^YAML: .*!custom \(line 3, column 14\)$/ }],
  });

  const proxyOff = parse(`${MINIMAL}proxy: {username: u}\n`);
  t.equal(proxyOff.config.proxy, undefined);
  t.match(proxyOff.notices, [{ path: 'proxy.remoteurl', message: /plain local registry/ }]);
  const half = parse(`${MINIMAL}proxy: {remoteurl: https://r.example, username: u}\n`);
  t.match(half.notices, [{ level: 'warn', path: 'proxy.password' }]);
  t.match(parse(`${MINIMAL}log: {formatter: logstash}\n`), {
    config: { log: { formatter: 'json' } },
    notices: [{ level: 'warn', path: 'log.formatter' }],
  });
  t.same(parse('version: 0.1\nstorage: {filesystem: ~}\n').config.storage.filesystem.rootdirectory, '/var/lib/registry');
  t.equal(parse(`${MINIMAL}http: {prefix: /}\n`).config.http.prefix, '');
  t.equal(parse(`${MINIMAL}proxy: {remoteurl: "https://index.docker.io/"}\n`).config.proxy?.dockerHub, true);
  t.equal(parse(`${MINIMAL}proxy: {password: 0123, username: "007", remoteurl: https://r.example}\n`).config.proxy?.password, '0123');
});

t.test('loadConfig reports an unreadable file', async (t) => {
  const dir = t.testdir({});
  await t.rejects(loadConfig({ path: join(dir, 'missing.yml'), env: {} }), {
    name: 'ConfigError',
    code: 'ERR_CONFIG_UNREADABLE',
    notices: [{ level: 'error', path: '', message: /cannot read the configuration file: ENOENT/ }],
  });
});

t.test('http.workers above 1 needs a shared metadata store', async (t) => {
  const notices = failure(t, `${MINIMAL}http: {addr: ':5000', workers: 2}\n`);
  t.same(errorPaths(notices), ['http.workers'], 'refused with the memory store');
  t.match(notices[0]?.message, /need a shared metadata\.store \(redis or postgres\)/);
  const { config } = parse(`${MINIMAL}http: {addr: ':5000', workers: 2}\nmetadata: {store: redis, url: 'redis://127.0.0.1:6379'}\n`);
  t.equal(config.http.workers, 2, 'taken with redis');
  t.same(errorPaths(failure(t, `${MINIMAL}http: {addr: ':5000', workers: 0}\n`)), ['http.workers'], 'at least 1');
});
