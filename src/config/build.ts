/**
 * Turns checked values into the StevedoreConfig the program consumes, with
 * the checks that span several keys (addr syntax, tls pairs, metadata store
 * needs) and Distribution's rule that the proxy is on iff proxy.remoteurl is set.
 */
import type { NoticeLog } from './errors.js';
import type { Checked, Value } from './validate.js';
import { parsePlatform } from '../registry/negotiate.js';
import type { Platform } from '../registry/manifest.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LogLevel, MetadataStore, S3Config, StevedoreConfig, TagTtlRule, UpstreamConfig } from './types.js';
import { parseDuration } from './duration.js';
import { isRawMap, type Raw, type RawMap } from './raw.js';
import { buildAccess, buildAuth, isAddressOrCidr } from './auth.js';

/** Docker Hub's names: a remoteurl on one of them is Docker Hub, and a Docker Hub upstream stands for all three. */
const DOCKER_HUB_NAMES = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];

export function build({ values, present }: Checked, log: NoticeLog): StevedoreConfig {
  const get = (path: string): Value | undefined => values.get(path);
  const str = (path: string): string | undefined => {
    const v = get(path);
    return typeof v === 'string' ? v : undefined;
  };
  const num = (path: string): number => {
    const v = get(path);
    if (typeof v !== 'number') throw new Error(`internal: ${path} has no default number`);
    return v;
  };
  const bool = (path: string): boolean => {
    const v = get(path);
    if (typeof v !== 'boolean') throw new Error(`internal: ${path} has no default boolean`);
    return v;
  };

  const version = str('version');
  if (version === undefined) log.error('version', 'required: set version: 0.1');
  else if (version !== '0.1') log.error('version', `must be 0.1 (the only Distribution configuration version), got "${version}"`);

  let level = (str('log.level') ?? 'info') as LogLevel;
  const legacyLevel = str('loglevel');
  if (!present.has('log.level') && legacyLevel !== undefined) level = legacyLevel as LogLevel;
  let formatter = str('log.formatter') ?? 'json';
  if (formatter === 'logstash') {
    log.warn('log.formatter', 'the logstash formatter is not supported; using json');
    formatter = 'json';
  }

  const config: StevedoreConfig = {
    version: '0.1',
    log: { level, formatter: formatter === 'text' ? 'text' : 'json', accesslog: !bool('log.accesslog.disabled') },
    http: buildHttp(str, num, get, present, log),
    storage: {
      driver: present.has('storage.s3') ? 's3' : 'filesystem',
      filesystem: { rootdirectory: str('storage.filesystem.rootdirectory') ?? '/var/lib/registry' },
      spool: str('spool.directory') ?? join(tmpdir(), 'stevedore-spool'),
      redirect: !bool('storage.redirect.disable'),
      delete: { enabled: bool('storage.delete.enabled') },
      maintenance: {
        uploadpurging: {
          enabled: bool('storage.maintenance.uploadpurging.enabled'),
          ageMs: num('storage.maintenance.uploadpurging.age'),
          intervalMs: num('storage.maintenance.uploadpurging.interval'),
          dryrun: bool('storage.maintenance.uploadpurging.dryrun'),
        },
        readonly: bool('storage.maintenance.readonly.enabled'),
        gc: { graceMs: num('storage.maintenance.gc.grace') },
      },
    },
    offline: bool('proxy.offline'),
    operations: { metrics: bool('metrics.enabled'), ui: bool('ui.enabled') },
    metadata: { ...buildMetadata(str, log), maxSize: num('metadata.maxsize') },
    defaultPlatform: buildPlatform(str('defaultplatform') ?? 'linux/amd64', log),
    upstreams: [],
    hosted: buildHosted(get, log),
    routing: { unknownNs: str('routing.unknownns') === 'default' ? 'default' : 'reject' },
    cache: {
      manifests: { maxEntries: num('cache.manifests.maxentries'), maxSize: num('cache.manifests.maxsize') },
      descriptors: { maxEntries: num('cache.descriptors.maxentries') },
    },
    limits: {
      headerBytes: num('limits.headerbytes'),
      headers: num('limits.headers'),
      manifestBytes: num('limits.manifestbytes'),
      fills: num('limits.fills'),
      fillsPerClient: num('limits.fillsperclient'),
      requestRate: num('limits.requestrate'),
      requestBurst: num('limits.requestburst'),
    },
  };

  const remoteurl = str('proxy.remoteurl');
  if (remoteurl !== undefined) {
    config.proxy = buildUpstream('default', 'proxy', remoteurl, get, log);
  } else if ([...present].some((p) => p.startsWith('proxy.'))) {
    log.warn('proxy.remoteurl', 'not set, so the proxy section is ignored: names no configured upstream host routes are served from local storage, as a plain local registry');
  }
  config.upstreams = buildUpstreams(values, present, config.proxy, log);
  if (config.http.workers > 1 && config.metadata.store !== 'redis' && config.metadata.store !== 'postgres') {
    log.error('http.workers', `${config.http.workers} workers need a shared metadata.store (redis or postgres): they coordinate fills, tags, sweeps and the quota through it, as replicas do`);
  }
  if (config.hosted.length > 0 && config.proxy === undefined && config.upstreams.length === 0) {
    log.warn('hosted', 'without upstreams every repository is hosted: the patterns change nothing');
  }
  if (config.routing.unknownNs === 'default' && config.proxy === undefined) {
    log.error('routing.unknownns', '"default" needs a default upstream (proxy.remoteurl)');
  }

  const debugAddr = str('http.debug.addr');
  if (debugAddr !== undefined) {
    const { host, port } = splitHostPort(debugAddr, log, 'http.debug.addr');
    config.operations.debug = { host, port, prometheus: bool('http.debug.prometheus.enabled'), path: str('http.debug.prometheus.path') ?? '/metrics' };
  } else if (present.has('http.debug.prometheus.enabled') && bool('http.debug.prometheus.enabled')) {
    log.warn('http.debug.prometheus.enabled', 'needs http.debug.addr: metrics stay on the main port only (metrics.enabled)');
  }
  if (config.storage.driver === 's3') config.storage.s3 = buildS3(str, num, bool, log);
  const quota = buildQuota(get, str, present, log);
  if (quota !== undefined) config.storage.quota = quota;
  const auth = buildAuth(str, num, present, log);
  if (auth !== undefined) config.auth = auth;
  const access = get('access');
  if (access !== undefined) config.access = buildAccess(access, log);
  if (config.access !== undefined && config.auth === undefined) {
    log.error('access', 'rules need an auth provider (auth.htpasswd or auth.token) to tell callers apart');
  }
  return config;
}

/** `storage.s3`: region and bucket required, as Distribution requires them. */
function buildS3(str: Str, num: Num, bool: (path: string) => boolean, log: NoticeLog): S3Config {
  const region = str('storage.s3.region');
  const bucket = str('storage.s3.bucket');
  if (region === undefined) log.error('storage.s3.region', 'required with storage.s3 (any value for an endpoint that ignores it, e.g. us-east-1)');
  if (bucket === undefined) log.error('storage.s3.bucket', 'required with storage.s3');
  const accesskey = str('storage.s3.accesskey');
  const secretkey = str('storage.s3.secretkey');
  if ((accesskey === undefined) !== (secretkey === undefined)) log.error('storage.s3', 'accesskey and secretkey go together (without both, the AWS SDK finds credentials in the environment)');
  const regionendpoint = str('storage.s3.regionendpoint');
  return {
    region: region ?? '',
    bucket: bucket ?? '',
    ...(regionendpoint === undefined ? {} : { regionendpoint }),
    rootdirectory: str('storage.s3.rootdirectory') ?? '',
    ...(accesskey === undefined ? {} : { accesskey }),
    ...(secretkey === undefined ? {} : { secretkey }),
    forcepathstyle: bool('storage.s3.forcepathstyle'),
    secure: bool('storage.s3.secure'),
    skipverify: bool('storage.s3.skipverify'),
    chunksize: num('storage.s3.chunksize'),
    multipartcopychunksize: num('storage.s3.multipartcopychunksize'),
    multipartcopymaxconcurrency: num('storage.s3.multipartcopymaxconcurrency'),
    multipartcopythresholdsize: num('storage.s3.multipartcopythresholdsize'),
  };
}

/** `hosted`: repository patterns, as `allow`/`deny` write them. */
function buildHosted(get: (path: string) => Value | undefined, log: NoticeLog): string[] {
  const value = get('hosted');
  const patterns = Array.isArray(value) ? value.filter((x): x is string => typeof x === 'string') : [];
  for (const pattern of patterns) {
    if (!/^[a-z0-9._\-/*]+$/.test(pattern)) log.error('hosted', `"${pattern}" is not a repository pattern (name characters, "*" within a component, "**" across components)`);
  }
  return patterns;
}

type Str = (path: string) => string | undefined;
type Num = (path: string) => number;

/** `storage.quota`: maxsize required; lowwater a percentage of it (default 90%); pin patterns. */
function buildQuota(get: Get, str: Str, present: ReadonlySet<string>, log: NoticeLog): StevedoreConfig['storage']['quota'] {
  if (!present.has('storage.quota')) return undefined;
  const maxSize = get('storage.quota.maxsize');
  if (typeof maxSize !== 'number') {
    log.error('storage.quota.maxsize', 'required when storage.quota is set: the blob bytes the cache may hold (e.g. 200GiB)');
    return undefined;
  }
  const lowwater = str('storage.quota.lowwater') ?? '90%';
  const match = /^(\d{1,3}(?:\.\d+)?)%$/.exec(lowwater);
  const percent = match === null ? NaN : Number(match[1]);
  if (!(percent > 0 && percent <= 100)) log.error('storage.quota.lowwater', `expected a percentage above 0% and at most 100% (e.g. 90%), got "${lowwater}"`);
  const pins = get('storage.quota.pin');
  const pin = Array.isArray(pins) ? pins.filter((x): x is string => typeof x === 'string') : [];
  for (const pattern of pin) {
    if (!/^[a-z0-9._\-/*]+(?::[A-Za-z0-9_.*-]+)?$/.test(pattern)) log.error('storage.quota.pin', `"${pattern}" is not a repository pattern or repository:tag pattern`);
  }
  return { maxSize, lowWater: Math.floor(maxSize * ((Number.isFinite(percent) ? percent : 90) / 100)), pin };
}

function buildHttp(str: Str, num: Num, get: Get, present: ReadonlySet<string>, log: NoticeLog): StevedoreConfig['http'] {
  const addr = str('http.addr') ?? ':5000';
  if (str('http.net') === 'unix') log.error('http.net', 'unix sockets are not supported yet; use tcp');
  const { host, port } = splitHostPort(addr, log);
  const trusted = get('http.trustedproxies');
  const trustedProxies = Array.isArray(trusted) ? trusted.filter((x): x is string => typeof x === 'string') : [];
  for (const entry of trustedProxies) {
    if (!isAddressOrCidr(entry)) log.error('http.trustedproxies', `"${entry}" is not an IP address or CIDR block (10.0.0.0/8, ::1)`);
  }
  const http: StevedoreConfig['http'] = {
    addr,
    host,
    port,
    prefix: normalizePrefix(str('http.prefix') ?? ''),
    drainTimeoutMs: num('http.draintimeout'),
    workers: num('http.workers'),
    trustedProxies,
    timeouts: {
      headersMs: num('http.timeouts.headers'),
      requestMs: num('http.timeouts.request'),
      idleMs: num('http.timeouts.idle'),
      keepAliveMs: num('http.timeouts.keepalive'),
    },
  };

  const externalUrl = str('http.host');
  if (externalUrl !== undefined) http.externalUrl = externalUrl.replace(/\/+$/, '');

  const certificate = str('http.tls.certificate');
  const key = str('http.tls.key');
  if (certificate !== undefined && key !== undefined) {
    const cas = get('http.tls.clientcas');
    http.tls = {
      certificate,
      key,
      clientCas: Array.isArray(cas) ? cas.filter((x): x is string => typeof x === 'string') : [],
      clientAuth: str('http.tls.clientauth') === 'verify-client-cert-if-given' ? 'verify-client-cert-if-given' : 'require-and-verify-client-cert',
      minimumTls: str('http.tls.minimumtls') === 'tls1.3' ? 'TLSv1.3' : 'TLSv1.2',
    };
  } else if ([...present].some((p) => p.startsWith('http.tls.'))) {
    // Serving plain HTTP where TLS was asked for would be worse than not starting.
    if (certificate === undefined) log.error('http.tls.certificate', 'required when http.tls is set');
    if (key === undefined) log.error('http.tls.key', 'required when http.tls is set');
  }
  return http;
}

/** Go's net.SplitHostPort, for TCP: 'host:port', '[v6]:port' or ':port' (all interfaces → host ''). */
function splitHostPort(addr: string, log: NoticeLog, key = 'http.addr'): { host: string; port: number } {
  const match = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  const port = Number(match?.[3]);
  if (match === null || port > 65535) {
    log.error(key, `expected host:port, [ipv6]:port or :port, got "${addr}"`);
    return { host: '', port: 5000 };
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

/** '/a/b/' and 'a/b' → '/a/b'; '' and '/' → ''. */
function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '' : `/${trimmed}`;
}

type Get = (path: string) => Value | undefined;

/** A host usable as the first component of a repository name (no port). */
const NAMESPACE_HOST = /^[a-z0-9]+(?:(?:\.|-+)[a-z0-9]+)*$/;

/**
 * One upstream from `proxy.*` (name 'default') or `upstreams.<name>.*`; the
 * latter inherit every key they do not set from `proxy.*` (and its defaults).
 */
function buildUpstream(name: string, prefix: string, remoteurl: string, get: Get, log: NoticeLog): UpstreamConfig {
  const own = (key: string): Value | undefined => get(`${prefix}.${key}`);
  const value = (key: string): Value | undefined => own(key) ?? (prefix === 'proxy' ? undefined : get(`proxy.${key}`));
  const num = (key: string): number => {
    const v = value(key);
    if (typeof v !== 'number') throw new Error(`internal: ${prefix}.${key} has no default number`);
    return v;
  };
  const text = (key: string): string | undefined => {
    const v = own(key);
    return typeof v === 'string' ? v : undefined;
  };
  const list = (key: string): string[] => {
    const v = own(key);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  };
  const url = remoteurl.replace(/\/+$/, '');
  const parsed = new URL(url);
  const dockerHub = DOCKER_HUB_NAMES.includes(parsed.hostname);
  const tagttl = own('tagttl') ?? (prefix === 'proxy' ? undefined : get('proxy.tagttl'));
  const { tagTtlMs, tagTtlRules } = buildTagTtl(tagttl);
  const hosts = [...new Set([...list('hosts').map((h) => h.toLowerCase()), parsed.host.toLowerCase(), ...(dockerHub ? DOCKER_HUB_NAMES : [])])];
  const upstream: UpstreamConfig = {
    name,
    url,
    hosts,
    namespace: name === 'default' ? '' : (hosts.find((h) => NAMESPACE_HOST.test(h)) ?? name),
    allow: list('allow'),
    deny: list('deny'),
    ttlMs: typeof get('proxy.ttl') === 'number' ? (get('proxy.ttl') as number) : 0,
    tagTtlMs,
    tagTtlRules,
    dockerHub,
    timeouts: {
      connectMs: num('timeouts.connect'),
      headersMs: num('timeouts.headers'),
      bodyMs: num('timeouts.body'),
      resumeMs: num('timeouts.resume'),
      fillWaitMs: num('timeouts.fillwait'),
    },
    tlsVerify: value('tlsverify') !== false,
    breaker: { maxFails: num('breaker.maxfails'), probeIntervalMs: Math.max(1000, num('breaker.probeinterval')) },
  };
  for (const pattern of [...upstream.allow, ...upstream.deny]) {
    if (!/^[a-z0-9._\-/*]+$/.test(pattern)) log.error(`${prefix}.${upstream.allow.includes(pattern) ? 'allow' : 'deny'}`, `"${pattern}" is not a repository pattern (name characters, "*" within a component, "**" across components)`);
  }
  const username = text('username');
  const password = text('password');
  if (username !== undefined) upstream.username = username;
  if (password !== undefined) upstream.password = password;
  if ((username === undefined) !== (password === undefined)) {
    log.warn(`${prefix}.${username === undefined ? 'username' : 'password'}`, 'not set while its pair is: the upstream will be asked anonymously');
  }
  const caBundle = typeof value('cabundle') === 'string' ? (value('cabundle') as string) : undefined;
  if (caBundle !== undefined) upstream.caBundle = caBundle;
  if (!upstream.tlsVerify) log.warn(`${prefix}.tlsverify`, "false: the upstream's TLS certificate is not verified");
  return upstream;
}

/** `tagttl: 5m`, or `tagttl: {"latest": 1m, "v*": 24h, "*": 5m}` (the first match wins; `*` alone is the fallback). */
function buildTagTtl(raw: Value | undefined): { tagTtlMs: number; tagTtlRules: TagTtlRule[] } {
  if (typeof raw === 'number') return { tagTtlMs: raw, tagTtlRules: [] };
  if (!isRawMap(raw as Raw)) return { tagTtlMs: 300_000, tagTtlRules: [] };
  const rules: TagTtlRule[] = [];
  let fallback = 300_000;
  for (const [pattern, value] of raw as RawMap) {
    const ttlMs = parseDuration(String(value));
    if (pattern === '*') fallback = ttlMs;
    else rules.push({ pattern, ttlMs });
  }
  return { tagTtlMs: fallback, tagTtlRules: rules };
}

/** The upstreams of `upstreams:`, and the checks across all of them: a host stands for one upstream only. */
function buildUpstreams(values: ReadonlyMap<string, Value>, present: ReadonlySet<string>, proxy: UpstreamConfig | undefined, log: NoticeLog): UpstreamConfig[] {
  const names = [...present].filter((p) => /^upstreams\.[^.]+$/.test(p)).map((p) => p.slice('upstreams.'.length));
  const upstreams: UpstreamConfig[] = [];
  for (const name of names) {
    const remoteurl = values.get(`upstreams.${name}.remoteurl`);
    if (name === 'default') {
      log.error(`upstreams.${name}`, 'the name "default" is proxy.*\'s: choose another');
      continue;
    }
    if (typeof remoteurl !== 'string') {
      log.error(`upstreams.${name}.remoteurl`, 'required for every upstream');
      continue;
    }
    upstreams.push(buildUpstream(name, `upstreams.${name}`, remoteurl, (path) => values.get(path), log));
  }
  const owner = new Map<string, string>();
  for (const upstream of proxy === undefined ? upstreams : [proxy, ...upstreams]) {
    for (const host of upstream.hosts) {
      const other = owner.get(host);
      if (other !== undefined) {
        log.error(upstream.name === 'default' ? 'proxy.hosts' : `upstreams.${upstream.name}.hosts`, `host ${host} is listed for upstream ${other} already: a host stands for one upstream`);
      }
      owner.set(host, upstream.name);
    }
  }
  const namespaces = new Map<string, string>();
  for (const upstream of upstreams) {
    const other = namespaces.get(upstream.namespace);
    if (other !== undefined) log.error(`upstreams.${upstream.name}`, `stores under ${upstream.namespace}/ like upstream ${other}: give it a host of its own`);
    namespaces.set(upstream.namespace, upstream.name);
  }
  return upstreams;
}

const STORE_SCHEMES: Readonly<Record<MetadataStore, readonly string[]>> = {
  memory: [],
  file: [],
  redis: ['redis:', 'rediss:'],
  postgres: ['postgres:', 'postgresql:'],
};

function buildMetadata(str: Str, log: NoticeLog): Omit<StevedoreConfig['metadata'], 'maxSize'> {
  const store = (str('metadata.store') ?? 'memory') as MetadataStore;
  const metadata: Omit<StevedoreConfig['metadata'], 'maxSize'> = { store, namespace: str('metadata.namespace') ?? 'stevedore' };
  const url = str('metadata.url');
  const path = str('metadata.path');
  if (store === 'redis' || store === 'postgres') {
    if (url === undefined) log.error('metadata.url', `required when metadata.store is ${store}`);
    else if (!STORE_SCHEMES[store].includes(new URL(url).protocol)) {
      log.error('metadata.url', `a ${store} store needs a ${STORE_SCHEMES[store].join(' or ')}// URL`);
    }
  }
  if (store === 'file' && path === undefined) log.error('metadata.path', 'required when metadata.store is file');
  if (url !== undefined && store !== 'redis' && store !== 'postgres') log.warn('metadata.url', `ignored: metadata.store is ${store}`);
  if (path !== undefined && store !== 'file') log.warn('metadata.path', `ignored: metadata.store is ${store}`);
  if (url !== undefined) metadata.url = url;
  if (path !== undefined) metadata.path = path;
  return metadata;
}

function buildPlatform(value: string, log: NoticeLog): Platform {
  try {
    return parsePlatform(value);
  } catch (err) {
    log.error('defaultplatform', (err as Error).message);
    return { os: 'linux', architecture: 'amd64' };
  }
}
