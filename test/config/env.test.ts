import t from 'tap';

import { configPathFromEnv, isConfigError, parseConfig, type ConfigNotice } from '../../src/config/index.js';
import { envPath } from '../../src/config/env.js';

const MIRROR = `version: 0.1
storage: {filesystem: {rootdirectory: /var/lib/registry}}
proxy: {remoteurl: https://registry-1.docker.io}
`;
const parse = (env: NodeJS.ProcessEnv, yaml = MIRROR) => parseConfig(yaml, env, 'test.yml');

t.test('an env var names the longest known key path', async (t) => {
  const table: [string, string | undefined][] = [
    ['STORAGE_FILESYSTEM_ROOTDIRECTORY', 'storage.filesystem.rootdirectory'],
    ['PROXY_REMOTEURL', 'proxy.remoteurl'],
    ['PROXY', 'proxy'],
    ['PROXY_TIMEOUTS_CONNECT', 'proxy.timeouts.connect'],
    ['LOG_FIELDS_SERVICE', 'log.fields.service'], // below a free-form key
    ['STORAGE_S3_REGIONENDPOINT', 'storage.s3.regionendpoint'],
    ['HEALTH_FILE_0_FILE', 'health.file.0.file'],
    ['PROXY_NOPE', undefined], // below a section, only known keys
    ['HTTP_ADDR_X', undefined], // below a scalar, nothing
    ['PORT', undefined],
    ['', undefined],
    ['HTTP__ADDR', undefined],
    ['http_addr', undefined], // upper case only, as in Distribution
  ];
  for (const [rest, path] of table) t.equal(envPath(rest)?.segments.join('.'), path, rest);
});

t.test('REGISTRY_ and STEVEDORE_ overrides, typed by the key', async (t) => {
  const { config, notices } = parse({
    REGISTRY_HTTP_ADDR: '127.0.0.1:5001',
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/somewhere',
    REGISTRY_LOG_LEVEL: 'debug',
    REGISTRY_STORAGE_DELETE_ENABLED: 'true',
    REGISTRY_PROXY_TTL: '0',
    STEVEDORE_PROXY_TAGTTL: '1m',
    STEVEDORE_CACHE_MANIFESTS_MAXENTRIES: '42',
    REGISTRY_PROXY_USERNAME: 'bot',
    REGISTRY_PROXY_PASSWORD: '#not: a comment "or yaml"',
  });
  t.same(notices, []);
  t.same([config.http.host, config.http.port], ['127.0.0.1', 5001]);
  t.equal(config.storage.filesystem.rootdirectory, '/somewhere');
  t.equal(config.log.level, 'debug');
  t.equal(config.storage.delete.enabled, true);
  t.equal(config.proxy?.ttlMs, 0);
  t.equal(config.proxy?.tagTtlMs, 60_000);
  t.equal(config.cache.manifests.maxEntries, 42);
  t.equal(config.proxy?.password, '#not: a comment "or yaml"', 'string values are taken verbatim');
});

t.test('STEVEDORE_ wins over REGISTRY_; a deeper key wins over its section', async (t) => {
  const same = parse({ REGISTRY_PROXY_REMOTEURL: 'https://a.example', STEVEDORE_PROXY_REMOTEURL: 'https://b.example' });
  t.equal(same.config.proxy?.url, 'https://b.example');
  const nested = parse({
    STEVEDORE_PROXY: '{remoteurl: https://c.example, ttl: 1h}',
    REGISTRY_PROXY_TTL: '2h',
  });
  t.equal(nested.config.proxy?.url, 'https://c.example', 'a whole section from YAML');
  t.equal(nested.config.proxy?.ttlMs, 7_200_000, 'the deeper variable is applied after the section');
  const storage = parse({ REGISTRY_STORAGE: 'filesystem', REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/x' });
  t.equal(storage.config.storage.filesystem.rootdirectory, '/x');
});

t.test('env overrides apply to a file without the section', async (t) => {
  const { config } = parse({ REGISTRY_PROXY_REMOTEURL: 'https://registry-1.docker.io' }, 'version: 0.1\nstorage: filesystem\n');
  t.equal(config.proxy?.dockerHub, true);
  const off = parse({ REGISTRY_PROXY_REMOTEURL: '' });
  t.equal(off.config.proxy, undefined, 'empty clears the key, as Go zero values do');
});

t.test('unknown and unsupported variables give warn notices', async (t) => {
  const { notices } = parse({
    REGISTRY_PORT: 'tcp://10.0.0.1:5000', // a Kubernetes service link
    STEVEDORE_PROXY_NOPE: '1',
    REGISTRY_HTTP_SECRET: 'hunter2',
    REGISTRY_CONFIGURATION_PATH: '/etc/docker/registry/config.yml',
    HOME: '/root',
  });
  t.same(
    notices.map((n) => [n.level, n.path]),
    [
      ['warn', 'REGISTRY_PORT'],
      ['warn', 'STEVEDORE_PROXY_NOPE'],
      ['warn', 'http.secret'],
    ],
  );
  t.match(notices[0]?.message, /unknown environment variable/);
  t.match(notices[2]?.message, /accepted but not yet supported by Stevedore.*\(set by REGISTRY_HTTP_SECRET\)/);
  t.notOk(notices.some((n) => n.message.includes('hunter2')));
});

t.test('invalid values from the environment name the variable', async (t) => {
  let notices: readonly ConfigNotice[] = [];
  try {
    parse({ REGISTRY_PROXY_TTL: '7d', STEVEDORE_STORAGE_DELETE_ENABLED: 'sometimes', REGISTRY_LOG: '{level: [' });
  } catch (err) {
    if (!isConfigError(err)) throw err;
    notices = err.notices;
  }
  const about = (path: string) => notices.filter((n) => n.path === path);
  t.match(about('REGISTRY_LOG'), [{ level: 'error', message: /^YAML: / }]);
  t.match(about('proxy.ttl'), [{ level: 'error', message: /unknown unit "d".*\(set by REGISTRY_PROXY_TTL\)$/ }]);
  t.match(about('storage.delete.enabled'), [
    { level: 'error', message: /true or false, got "sometimes" \(set by STEVEDORE_STORAGE_DELETE_ENABLED\)$/ },
  ]);
});

t.test('a number indexes into an existing list', async (t) => {
  const yaml = `version: 0.1\nstorage: filesystem\nhealth: {file: [{file: /a}]}\n`;
  const { notices } = parse({ REGISTRY_HEALTH_FILE_0_FILE: '/b', REGISTRY_HEALTH_FILE_1_FILE: '/c', REGISTRY_HEALTH_FILE_5_FILE: '/d' }, yaml);
  t.match(notices, [
    { level: 'warn', path: 'REGISTRY_HEALTH_FILE_5_FILE', message: /list index out of range for health.file.5.file/ },
    { level: 'warn', path: 'health', message: /\(set by REGISTRY_HEALTH_FILE_0_FILE, REGISTRY_HEALTH_FILE_1_FILE\)$/ },
  ]);
});

t.test('configPathFromEnv', async (t) => {
  t.equal(configPathFromEnv({}), undefined);
  t.equal(configPathFromEnv({ REGISTRY_CONFIGURATION_PATH: '/r.yml' }), '/r.yml');
  t.equal(configPathFromEnv({ REGISTRY_CONFIGURATION_PATH: '/r.yml', STEVEDORE_CONFIGURATION_PATH: '/s.yml' }), '/s.yml');
  t.equal(configPathFromEnv({ STEVEDORE_CONFIGURATION_PATH: '' }), undefined);
});
