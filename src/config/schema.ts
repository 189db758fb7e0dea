/**
 * Every configuration key Stevedore knows: CNCF Distribution's config.yml
 * (version 0.1) keys and Stevedore's extensions, one row each. The validator,
 * the environment-variable mapping and the defaults all read this table, and
 * a test checks docs/configuration.md lists every row in the section matching
 * its status, with its default, so code and docs cannot drift apart.
 *
 * status:
 * - 'supported'   a Distribution key with Distribution's meaning;
 * - 'extension'   a Stevedore-only key (Distribution would ignore it);
 * - 'unsupported' a Distribution key accepted but not acted on yet: reported
 *                 with a warn notice, or an error notice when ignoring it
 *                 would make Stevedore serve something different
 *                 (`severity: 'error'`). Its value is still type-checked.
 *
 * kind says how a value is read. 'section' is a mapping whose keys are rows of
 * this table; 'named' is a mapping of names the operator chooses, each a
 * section whose keys are the rows under `<path>.*` (`upstreams.*.remoteurl`);
 * 'ttls' is a duration or a mapping of tag patterns to durations; 'strings' a
 * list of strings; 'map', 'list' and 'any' hold free-form values that are not
 * looked into (an unsupported section is 'any' so its insides are not checked).
 */

export type Kind = 'section' | 'named' | 'string' | 'bool' | 'int' | 'duration' | 'ttls' | 'size' | 'strings' | 'url' | 'enum' | 'map' | 'list' | 'any';
export type Status = 'supported' | 'extension' | 'unsupported';

export interface SchemaEntry {
  readonly path: string;
  readonly kind: Kind;
  readonly status: Status;
  /** As it would be written in config.yml; applied when the key is absent. */
  readonly default?: string;
  /** kind 'enum': the accepted values, compared lower-cased. */
  readonly values?: readonly string[];
  /** kind 'url': the accepted schemes, without ':'. */
  readonly schemes?: readonly string[];
  /** kind 'int' and 'size': the smallest accepted value. */
  readonly min?: number;
  /** Never echoed in messages. A secret 'url' may carry credentials, others may not. */
  readonly secret?: boolean;
  /** A storage driver: `storage` must hold exactly one. */
  readonly driver?: boolean;
  /** status 'unsupported': an error rather than a warning. */
  readonly severity?: 'error';
  /** Added to the notice: what ignoring the key means, or what to use instead. */
  readonly note?: string;
  /** Still honoured, with a warning saying what replaces it. */
  readonly deprecated?: string;
}

type Extra = Omit<SchemaEntry, 'path' | 'kind' | 'status'>;
const supported = (path: string, kind: Kind, extra: Extra = {}): SchemaEntry => ({ path, kind, status: 'supported', ...extra });
const extension = (path: string, kind: Kind, extra: Extra = {}): SchemaEntry => ({ path, kind, status: 'extension', ...extra });
const unsupported = (path: string, kind: Kind, extra: Extra = {}): SchemaEntry => ({ path, kind, status: 'unsupported', ...extra });

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
const OTHER_DRIVER = 'only the filesystem and s3 storage drivers are supported, and serving from another storage than the one configured would be wrong';

export const SCHEMA: readonly SchemaEntry[] = [
  supported('version', 'string'),

  supported('log', 'section'),
  supported('log.level', 'enum', { values: LOG_LEVELS, default: 'info' }),
  supported('log.formatter', 'enum', { values: ['json', 'text', 'logstash'], default: 'json' }),
  supported('log.accesslog', 'section'),
  supported('log.accesslog.disabled', 'bool', { default: 'false' }),
  unsupported('log.fields', 'map', { note: 'the fields are not added to log lines' }),
  unsupported('log.hooks', 'list'),
  unsupported('log.reportcaller', 'bool'),
  supported('loglevel', 'enum', { values: ['error', 'warn', 'info', 'debug'], deprecated: 'use log.level' }),

  supported('storage', 'section'),
  supported('storage.filesystem', 'section', { driver: true }),
  supported('storage.filesystem.rootdirectory', 'string', { default: '/var/lib/registry' }),
  unsupported('storage.filesystem.maxthreads', 'int'),
  supported('storage.s3', 'section', { driver: true }),
  supported('storage.s3.region', 'string'),
  supported('storage.s3.bucket', 'string'),
  supported('storage.s3.regionendpoint', 'url', { schemes: ['http', 'https'] }),
  supported('storage.s3.rootdirectory', 'string'),
  supported('storage.s3.accesskey', 'string'),
  supported('storage.s3.secretkey', 'string', { secret: true }),
  supported('storage.s3.forcepathstyle', 'bool', { default: 'false' }),
  supported('storage.s3.secure', 'bool', { default: 'true' }),
  supported('storage.s3.skipverify', 'bool', { default: 'false' }),
  supported('storage.s3.chunksize', 'size', { min: 5 * 1024 * 1024, default: '10MiB' }),
  supported('storage.s3.multipartcopychunksize', 'size', { min: 5 * 1024 * 1024, default: '32MiB' }),
  supported('storage.s3.multipartcopymaxconcurrency', 'int', { min: 1, default: '100' }),
  supported('storage.s3.multipartcopythresholdsize', 'size', { min: 0, default: '32MiB' }),
  unsupported('storage.s3.v4auth', 'bool', { note: 'requests are always signed with SigV4' }),
  unsupported('storage.s3.encrypt', 'bool', { severity: 'error', note: 'server-side encryption is not requested; configure it as the bucket default instead' }),
  unsupported('storage.s3.keyid', 'string', { severity: 'error', note: 'server-side encryption is not requested; configure it as the bucket default instead' }),
  unsupported('storage.s3.storageclass', 'string', { note: "objects get the bucket's default storage class" }),
  unsupported('storage.s3.objectacl', 'string', { note: "objects get the bucket's default ACL" }),
  unsupported('storage.s3.useragent', 'string'),
  unsupported('storage.s3.usedualstack', 'bool'),
  unsupported('storage.s3.accelerate', 'bool'),
  unsupported('storage.s3.sessiontoken', 'string', { secret: true }),
  unsupported('storage.s3.loglevel', 'string'),
  unsupported('storage.gcs', 'any', { driver: true, severity: 'error', note: OTHER_DRIVER }),
  unsupported('storage.azure', 'any', { driver: true, severity: 'error', note: OTHER_DRIVER }),
  unsupported('storage.swift', 'any', { driver: true, severity: 'error', note: OTHER_DRIVER }),
  unsupported('storage.oss', 'any', { driver: true, severity: 'error', note: OTHER_DRIVER }),
  unsupported('storage.inmemory', 'any', { driver: true, severity: 'error', note: OTHER_DRIVER }),
  supported('storage.delete', 'section'),
  supported('storage.delete.enabled', 'bool', { default: 'false' }),
  unsupported('storage.cache', 'any', {
    note: 'Stevedore keeps its own in-memory descriptor cache instead (see cache.descriptors.maxentries)',
  }),
  supported('storage.redirect', 'section'),
  supported('storage.redirect.disable', 'bool', { default: 'true' }),
  unsupported('storage.tag', 'any'),
  supported('storage.maintenance', 'section'),
  supported('storage.maintenance.uploadpurging', 'section'),
  supported('storage.maintenance.uploadpurging.enabled', 'bool', { default: 'true' }),
  supported('storage.maintenance.uploadpurging.age', 'duration', { default: '168h' }),
  supported('storage.maintenance.uploadpurging.interval', 'duration', { default: '24h' }),
  supported('storage.maintenance.uploadpurging.dryrun', 'bool', { default: 'false' }),
  supported('storage.maintenance.readonly', 'section'),
  supported('storage.maintenance.readonly.enabled', 'bool', { default: 'false' }),
  extension('storage.maintenance.gc', 'section'),
  extension('storage.maintenance.gc.grace', 'duration', { default: '1h' }),
  extension('storage.quota', 'section'),
  extension('storage.quota.maxsize', 'size', { min: 1024 }),
  extension('storage.quota.lowwater', 'string', { default: '90%' }),
  extension('storage.quota.pin', 'strings'),

  supported('http', 'section'),
  supported('http.addr', 'string', { default: ':5000' }),
  supported('http.net', 'enum', { values: ['tcp', 'unix'], default: 'tcp' }),
  supported('http.host', 'url', { schemes: ['http', 'https'] }),
  supported('http.prefix', 'string'),
  unsupported('http.secret', 'string', { secret: true }),
  unsupported('http.relativeurls', 'bool'),
  supported('http.draintimeout', 'duration', { default: '10s' }),
  supported('http.tls', 'section'),
  supported('http.tls.certificate', 'string'),
  supported('http.tls.key', 'string'),
  supported('http.tls.clientcas', 'strings'),
  supported('http.tls.clientauth', 'enum', { values: ['require-and-verify-client-cert', 'verify-client-cert-if-given'], default: 'require-and-verify-client-cert' }),
  supported('http.tls.minimumtls', 'enum', { values: ['tls1.2', 'tls1.3'], default: 'tls1.2' }),
  unsupported('http.tls.ciphersuites', 'list', { note: "Node's default cipher suites apply" }),
  unsupported('http.tls.letsencrypt', 'any', { note: 'set http.tls.certificate and http.tls.key instead' }),
  supported('http.debug', 'section'),
  supported('http.debug.addr', 'string'),
  supported('http.debug.prometheus', 'section'),
  supported('http.debug.prometheus.enabled', 'bool', { default: 'false' }),
  supported('http.debug.prometheus.path', 'string', { default: '/metrics' }),
  extension('metrics', 'section'),
  extension('metrics.enabled', 'bool', { default: 'true' }),
  extension('ui', 'section'),
  extension('ui.enabled', 'bool', { default: 'true' }),
  unsupported('http.headers', 'map', { note: 'these headers are not added to responses' }),
  unsupported('http.http2', 'any'),
  unsupported('http.h2c', 'any'),
  extension('http.trustedproxies', 'strings'),
  extension('http.workers', 'int', { min: 1, default: '1' }),
  extension('http.timeouts', 'section'),
  extension('http.timeouts.headers', 'duration', { default: '10s' }),
  extension('http.timeouts.request', 'duration', { default: '1m' }),
  extension('http.timeouts.idle', 'duration', { default: '2m' }),
  extension('http.timeouts.keepalive', 'duration', { default: '65s' }),

  extension('limits', 'section'),
  extension('limits.headerbytes', 'size', { min: 1024, default: '16KiB' }),
  extension('limits.headers', 'int', { min: 8, default: '100' }),
  extension('limits.manifestbytes', 'size', { min: 1024, default: '4MiB' }),
  extension('limits.fills', 'int', { min: 1, default: '64' }),
  extension('limits.fillsperclient', 'int', { min: 1, default: '16' }),
  extension('limits.requestrate', 'int', { min: 0, default: '0' }),
  extension('limits.requestburst', 'int', { min: 1, default: '200' }),

  supported('auth', 'section'),
  supported('auth.htpasswd', 'section'),
  supported('auth.htpasswd.realm', 'string'),
  supported('auth.htpasswd.path', 'string'),
  supported('auth.token', 'section'),
  supported('auth.token.realm', 'url', { schemes: ['http', 'https'] }),
  supported('auth.token.service', 'string'),
  supported('auth.token.issuer', 'string'),
  supported('auth.token.rootcertbundle', 'string'),
  extension('auth.token.jwks', 'string'),
  unsupported('auth.token.autoredirect', 'bool'),
  unsupported('auth.token.signingalgorithms', 'strings'),
  extension('auth.token.clockskew', 'duration', { default: '60s' }),
  extension('auth.token.groupsclaim', 'string', { default: 'groups' }),
  extension('auth.token.issue', 'section'),
  extension('auth.token.issue.key', 'string'),
  extension('auth.token.issue.users', 'string'),
  extension('auth.token.issue.expiry', 'duration', { default: '15m' }),
  unsupported('auth.silly', 'any', { severity: 'error', note: 'a development mode that lets everyone in; use auth.htpasswd' }),
  extension('auth.groups', 'string'),
  extension('auth.cache', 'duration', { default: '5m' }),
  extension('auth.lockout', 'section'),
  extension('auth.lockout.attempts', 'int', { min: 1, default: '10' }),
  extension('auth.lockout.window', 'duration', { default: '5m' }),

  extension('access', 'list'),

  supported('proxy', 'section'),
  supported('proxy.remoteurl', 'url', { schemes: ['http', 'https'] }),
  supported('proxy.username', 'string'),
  supported('proxy.password', 'string', { secret: true }),
  supported('proxy.ttl', 'duration', { default: '168h' }),
  unsupported('proxy.exec', 'any', { note: 'use proxy.username and proxy.password' }),
  unsupported('proxy.remotenamespace', 'string', {
    severity: 'error',
    note: 'ignoring it would serve other repositories than the ones asked for',
  }),
  extension('proxy.tagttl', 'ttls', { default: '5m' }),
  extension('proxy.offline', 'bool', { default: 'false' }),
  extension('proxy.hosts', 'strings'),
  extension('proxy.allow', 'strings'),
  extension('proxy.deny', 'strings'),
  extension('proxy.timeouts', 'section'),
  extension('proxy.timeouts.connect', 'duration', { default: '10s' }),
  extension('proxy.timeouts.headers', 'duration', { default: '30s' }),
  extension('proxy.timeouts.body', 'duration', { default: '15s' }),
  extension('proxy.timeouts.resume', 'duration', { default: '30s' }),
  extension('proxy.timeouts.fillwait', 'duration', { default: '20s' }),
  extension('proxy.breaker', 'section'),
  extension('proxy.breaker.maxfails', 'int', { min: 1, default: '3' }),
  extension('proxy.breaker.probeinterval', 'duration', { default: '10s' }),
  extension('proxy.cabundle', 'string'),
  extension('proxy.tlsverify', 'bool', { default: 'true' }),

  extension('upstreams', 'named'),
  extension('upstreams.*.remoteurl', 'url', { schemes: ['http', 'https'] }),
  extension('upstreams.*.username', 'string'),
  extension('upstreams.*.password', 'string', { secret: true }),
  extension('upstreams.*.tagttl', 'ttls'),
  extension('upstreams.*.hosts', 'strings'),
  extension('upstreams.*.allow', 'strings'),
  extension('upstreams.*.deny', 'strings'),
  extension('upstreams.*.timeouts', 'section'),
  extension('upstreams.*.timeouts.connect', 'duration'),
  extension('upstreams.*.timeouts.headers', 'duration'),
  extension('upstreams.*.timeouts.body', 'duration'),
  extension('upstreams.*.timeouts.resume', 'duration'),
  extension('upstreams.*.timeouts.fillwait', 'duration'),
  extension('upstreams.*.breaker', 'section'),
  extension('upstreams.*.breaker.maxfails', 'int', { min: 1 }),
  extension('upstreams.*.breaker.probeinterval', 'duration'),
  extension('upstreams.*.cabundle', 'string'),
  extension('upstreams.*.tlsverify', 'bool'),

  extension('routing', 'section'),
  extension('routing.unknownns', 'enum', { values: ['reject', 'default'], default: 'reject' }),

  extension('defaultplatform', 'string', { default: 'linux/amd64' }),

  extension('metadata', 'section'),
  extension('metadata.store', 'enum', { values: ['memory', 'file', 'redis', 'postgres'], default: 'memory' }),
  extension('metadata.url', 'url', { schemes: ['redis', 'rediss', 'postgres', 'postgresql'], secret: true }),
  extension('metadata.path', 'string'),
  extension('metadata.namespace', 'string', { default: 'stevedore' }),
  extension('metadata.maxsize', 'size', { min: 1024, default: '64MiB' }),

  extension('hosted', 'strings'),
  extension('spool', 'section'),
  extension('spool.directory', 'string'),

  extension('cache', 'section'),
  extension('cache.manifests', 'section'),
  extension('cache.manifests.maxentries', 'int', { min: 1, default: '10000' }),
  extension('cache.manifests.maxsize', 'size', { min: 1024, default: '64MiB' }),
  extension('cache.descriptors', 'section'),
  extension('cache.descriptors.maxentries', 'int', { min: 1, default: '100000' }),

  unsupported('notifications', 'any', { note: 'no events are sent' }),
  unsupported('redis', 'any', { note: 'for a shared metadata store see metadata.store' }),
  unsupported('health', 'any'),
  unsupported('validation', 'any'),
  unsupported('compatibility', 'any'),
  unsupported('middleware', 'any'),
  unsupported('reporting', 'any'),
  unsupported('catalog', 'any'),
  unsupported('policy', 'any'),
];

export const SCHEMA_BY_PATH: ReadonlyMap<string, SchemaEntry> = new Map(SCHEMA.map((e) => [e.path, e]));

/** Parents whose children are named by the operator ('named' rows). */
const NAMED: readonly string[] = SCHEMA.filter((e) => e.kind === 'named').map((e) => e.path);

/** A key path as the schema writes it: `upstreams.ghcr.remoteurl` → `upstreams.*.remoteurl`. */
export function schemaPath(path: string): string {
  for (const parent of NAMED) {
    if (!path.startsWith(`${parent}.`)) continue;
    const rest = path.slice(parent.length + 1);
    const dot = rest.indexOf('.');
    return dot < 0 ? `${parent}.*` : `${parent}.*${rest.slice(dot)}`;
  }
  return path;
}

/** The schema row of a key path, named sections included. */
export const schemaEntry = (path: string): SchemaEntry | undefined => SCHEMA_BY_PATH.get(schemaPath(path));

/** Keys of `storage` that configure storage in general rather than name a driver (Distribution's list). */
export const STORAGE_NON_DRIVERS: ReadonlySet<string> = new Set(['delete', 'cache', 'maintenance', 'redirect', 'tag', 'quota']);

/** The environment-variable spelling of a path: 'storage.filesystem.rootdirectory' → 'STORAGE_FILESYSTEM_ROOTDIRECTORY'. */
export const envKey = (path: string): string => path.toUpperCase().replaceAll('.', '_');

export const SCHEMA_BY_ENV_KEY: ReadonlyMap<string, SchemaEntry> = new Map(SCHEMA.map((e) => [envKey(e.path), e]));

/** The known keys directly under `parent` ('' for the top level). */
export function childKeys(parent: string): string[] {
  const prefix = parent === '' ? '' : `${schemaPath(parent)}.`;
  return SCHEMA.filter((e) => e.path.startsWith(prefix) && !e.path.slice(prefix.length).includes('.')).map((e) =>
    e.path.slice(prefix.length),
  );
}
