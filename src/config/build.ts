/**
 * Turns checked values into the StevedoreConfig the program consumes, with
 * the checks that span several keys (addr syntax, tls pairs, metadata store
 * needs) and Distribution's rule that the proxy is on iff proxy.remoteurl is set.
 */
import type { NoticeLog } from './errors.js';
import type { Checked, Value } from './validate.js';
import { parsePlatform } from '../registry/negotiate.js';
import type { Platform } from '../registry/manifest.js';
import type { LogLevel, MetadataStore, StevedoreConfig, UpstreamConfig } from './types.js';

const DOCKER_HUB_HOSTS: ReadonlySet<string> = new Set(['registry-1.docker.io', 'docker.io', 'index.docker.io']);

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
    http: buildHttp(str, present, log),
    storage: {
      driver: 'filesystem',
      filesystem: { rootdirectory: str('storage.filesystem.rootdirectory') ?? '/var/lib/registry' },
      delete: { enabled: bool('storage.delete.enabled') },
      maintenance: {
        uploadpurging: {
          enabled: bool('storage.maintenance.uploadpurging.enabled'),
          ageMs: num('storage.maintenance.uploadpurging.age'),
          intervalMs: num('storage.maintenance.uploadpurging.interval'),
          dryrun: bool('storage.maintenance.uploadpurging.dryrun'),
        },
        readonly: bool('storage.maintenance.readonly.enabled'),
      },
    },
    metadata: { ...buildMetadata(str, log), maxSize: num('metadata.maxsize') },
    defaultPlatform: buildPlatform(str('defaultplatform') ?? 'linux/amd64', log),
    cache: {
      manifests: { maxEntries: num('cache.manifests.maxentries'), maxSize: num('cache.manifests.maxsize') },
      descriptors: { maxEntries: num('cache.descriptors.maxentries') },
    },
  };

  const remoteurl = str('proxy.remoteurl');
  if (remoteurl !== undefined) {
    config.proxy = buildProxy(remoteurl, str, num, bool, log);
  } else if ([...present].some((p) => p.startsWith('proxy.'))) {
    log.warn('proxy.remoteurl', 'not set, so the proxy section is ignored and Stevedore runs as a plain local registry');
  }

  if (present.has('auth.htpasswd')) {
    const realm = str('auth.htpasswd.realm');
    const path = str('auth.htpasswd.path');
    if (realm === undefined) log.error('auth.htpasswd.realm', 'required when auth.htpasswd is set');
    if (path === undefined) log.error('auth.htpasswd.path', 'required when auth.htpasswd is set');
    config.auth = { htpasswd: { realm: realm ?? '', path: path ?? '' } };
  }
  return config;
}

type Str = (path: string) => string | undefined;

function buildHttp(str: Str, present: ReadonlySet<string>, log: NoticeLog): StevedoreConfig['http'] {
  const addr = str('http.addr') ?? ':5000';
  if (str('http.net') === 'unix') log.error('http.net', 'unix sockets are not supported yet; use tcp');
  const { host, port } = splitHostPort(addr, log);
  const http: StevedoreConfig['http'] = { addr, host, port, prefix: normalizePrefix(str('http.prefix') ?? '') };

  const externalUrl = str('http.host');
  if (externalUrl !== undefined) http.externalUrl = externalUrl.replace(/\/+$/, '');

  const certificate = str('http.tls.certificate');
  const key = str('http.tls.key');
  if (certificate !== undefined && key !== undefined) {
    http.tls = { certificate, key };
  } else if ([...present].some((p) => p.startsWith('http.tls.'))) {
    // Serving plain HTTP where TLS was asked for would be worse than not starting.
    if (certificate === undefined) log.error('http.tls.certificate', 'required when http.tls is set');
    if (key === undefined) log.error('http.tls.key', 'required when http.tls is set');
  }
  return http;
}

/** Go's net.SplitHostPort, for TCP: 'host:port', '[v6]:port' or ':port' (all interfaces → host ''). */
function splitHostPort(addr: string, log: NoticeLog): { host: string; port: number } {
  const match = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  const port = Number(match?.[3]);
  if (match === null || port > 65535) {
    log.error('http.addr', `expected host:port, [ipv6]:port or :port, got "${addr}"`);
    return { host: '', port: 5000 };
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

/** '/a/b/' and 'a/b' → '/a/b'; '' and '/' → ''. */
function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '' : `/${trimmed}`;
}

function buildProxy(
  remoteurl: string,
  str: Str,
  num: (path: string) => number,
  bool: (path: string) => boolean,
  log: NoticeLog,
): UpstreamConfig {
  const url = remoteurl.replace(/\/+$/, '');
  const upstream: UpstreamConfig = {
    name: 'default',
    url,
    ttlMs: num('proxy.ttl'),
    tagTtlMs: num('proxy.tagttl'),
    dockerHub: DOCKER_HUB_HOSTS.has(new URL(url).hostname),
    timeouts: {
      connectMs: num('proxy.timeouts.connect'),
      headersMs: num('proxy.timeouts.headers'),
      bodyMs: num('proxy.timeouts.body'),
      resumeMs: num('proxy.timeouts.resume'),
      fillWaitMs: num('proxy.timeouts.fillwait'),
    },
    tlsVerify: bool('proxy.tlsverify'),
    breaker: { maxFails: num('proxy.breaker.maxfails'), probeIntervalMs: Math.max(1000, num('proxy.breaker.probeinterval')) },
  };
  const username = str('proxy.username');
  const password = str('proxy.password');
  if (username !== undefined) upstream.username = username;
  if (password !== undefined) upstream.password = password;
  if ((username === undefined) !== (password === undefined)) {
    log.warn(username === undefined ? 'proxy.username' : 'proxy.password', 'not set while its pair is: the upstream will be asked anonymously');
  }
  const caBundle = str('proxy.cabundle');
  if (caBundle !== undefined) upstream.caBundle = caBundle;
  if (!upstream.tlsVerify) log.warn('proxy.tlsverify', "false: the upstream's TLS certificate is not verified");
  return upstream;
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
