/**
 * The configuration the rest of Stevedore consumes: typed, validated, deeply
 * frozen. It is read from CNCF Distribution's own `config.yml` (version 0.1)
 * plus a few Stevedore extensions; docs/configuration.md is the reference and
 * src/config/schema.ts the table of every key.
 *
 * Durations are milliseconds (`…Ms`), already parsed from Go duration strings.
 */

import type { Platform } from '../registry/manifest.js';

/** One rule of a per-pattern tag TTL (`tagttl: {"latest": 1m, "v*": 24h}`); the first match wins. */
export interface TagTtlRule {
  /** A tag pattern: `*` matches any run of characters. */
  pattern: string;
  ttlMs: number;
}

export interface UpstreamConfig {
  /** Id used in logs and metrics; 'default' for proxy.remoteurl, the key under `upstreams:` otherwise. */
  name: string;
  /**
   * Registry host names this upstream stands for: containerd `?ns=` values
   * and leading path segments. Keys into the configured upstreams, never
   * hosts to connect to. Always holds the remoteurl's host; Docker Hub's
   * three names for a Docker Hub upstream.
   */
  hosts: string[];
  /**
   * Where its repositories live in storage, as a name prefix: '' for the
   * default upstream (registry:2's layout), a host name (`ghcr.io`) otherwise.
   */
  namespace: string;
  /** Repository patterns (`myorg/**`, `team/app-*`) this upstream serves; empty: all. */
  allow: string[];
  /** Repository patterns it never serves; deny wins over allow. */
  deny: string[];
  /** Per-pattern tag TTLs, tried before tagTtlMs. */
  tagTtlRules: TagTtlRule[];
  /** proxy.remoteurl without trailing slash, e.g. https://registry-1.docker.io */
  url: string;
  username?: string;
  password?: string;
  /** proxy.ttl: how long cached content lives since its LAST pull; default 168h; 0 = forever. */
  ttlMs: number;
  /** Extension proxy.tagttl: how long a cached tag is served without asking upstream; default 5m; 0 = always ask. The TTL of tags no rule matches. */
  tagTtlMs: number;
  /** True when the url host is registry-1.docker.io, docker.io or index.docker.io: single-segment names get 'library/'. */
  dockerHub: boolean;
  /**
   * Extension proxy.timeouts.{connect,headers,body}; defaults 10s, 30s, 60s.
   * bodyMs is the longest silence allowed between two chunks of a response
   * body (undici's bodyTimeout), not a cap on the whole transfer.
   */
  timeouts: {
    connectMs: number;
    headersMs: number;
    bodyMs: number;
    /** Extension proxy.timeouts.resume: how long one blob fill may spend resuming after its first interruption, in all. */
    resumeMs: number;
    /** Extension proxy.timeouts.fillwait: the longest a client following a fill waits for its next bytes before it is cut. */
    fillWaitMs: number;
  };
  /** Extension proxy.cabundle: path to a PEM file with extra CAs to trust for the upstream. */
  caBundle?: string;
  /** Extension proxy.tlsverify, default true. */
  tlsVerify: boolean;
  /**
   * Extension proxy.breaker: after maxFails consecutive failures of the
   * upstream itself (network errors, timeouts, 5xx of its base or token
   * endpoint) it is offline; one probe goes out every probeInterval.
   */
  breaker: { maxFails: number; probeIntervalMs: number };
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
export type MetadataStore = 'memory' | 'file' | 'redis' | 'postgres';

export interface StevedoreConfig {
  version: '0.1';
  log: {
    level: LogLevel;
    formatter: 'json' | 'text';
    /** !log.accesslog.disabled */
    accesslog: boolean;
  };
  http: {
    /** http.addr as written, default ':5000'. */
    addr: string;
    /**
     * The bind host parsed from addr; '' means all interfaces (':5000').
     * NOT Distribution's `http.host` key: that one is `externalUrl` below.
     */
    host: string;
    /** The bind port parsed from addr; 0 asks the OS for a free port. */
    port: number;
    tls?: TlsConfig;
    /** http.draintimeout: how long a shutdown lets responses in flight finish before cutting them; default 10s. */
    drainTimeoutMs: number;
    /** Server processes sharing the port (node:cluster); above 1 they coordinate as replicas do, through metadata.store. */
    workers: number;
    /** Extension http.trustedproxies: addresses or CIDRs whose X-Forwarded-Proto/Host/For are believed. */
    trustedProxies: string[];
    /** Extension http.timeouts: to receive a request's headers, a whole request, an idle connection's silence, keep-alive. */
    timeouts: { headersMs: number; requestMs: number; idleMs: number; keepAliveMs: number };
    /** http.prefix normalised to '/a/b' (leading slash, no trailing slash); '' when serving at the root. */
    prefix: string;
    /** Distribution's http.host: the externally reachable URL used to build absolute URLs, no trailing slash. */
    externalUrl?: string;
  };
  storage: {
    driver: 'filesystem' | 's3';
    /** rootdirectory as written (relative paths are relative to the working directory). */
    filesystem: { rootdirectory: string };
    /** With driver 's3'. */
    s3?: S3Config;
    /** storage.redirect: stored blobs are answered with a `307` to the object store (not `disable`d). */
    redirect: boolean;
    /**
     * Where fills spool what they download, for the clients following them,
     * when the storage cannot be read while it is written (s3); a local
     * directory (extension `spool.directory`).
     */
    spool: string;
    delete: { enabled: boolean };
    maintenance: {
      uploadpurging: { enabled: boolean; ageMs: number; intervalMs: number; dryrun: boolean };
      /** storage.maintenance.readonly.enabled */
      readonly: boolean;
      /** Extension storage.maintenance.gc.grace: blobs and uploads younger than this are never swept; default 1h. */
      gc: { graceMs: number };
    };
    /** Extension storage.quota: a bounded cache; absent: unbounded. */
    quota?: QuotaConfig;
  };
  /** Present only when proxy.remoteurl is set (or in the embedded default): the upstream named 'default'. */
  proxy?: UpstreamConfig;
  /** Extension `upstreams:`: the other upstreams, in the order written. */
  upstreams: UpstreamConfig[];
  /**
   * Repository patterns of hosted repositories (pushed here, never proxied).
   * Without upstreams every repository is hosted and this is not consulted.
   */
  hosted: string[];
  /** Extension `routing:`. */
  routing: {
    /** An `?ns=` naming no configured upstream: 'reject' (404 NAME_UNKNOWN) or 'default' (served by the default upstream). */
    unknownNs: 'reject' | 'default';
  };
  /** Extension top-level `metadata:`; default memory. */
  metadata: { store: MetadataStore; url?: string; path?: string; namespace: string; /** metadata.maxsize: bytes the memory store may hold. */ maxSize: number };
  /** Extension top-level `cache:`; defaults 10000 / 100000. */
  cache: { manifests: { maxEntries: number; maxSize: number }; descriptors: { maxEntries: number } };
  /** Extension defaultplatform: the index child served to a client that cannot take an index; default linux/amd64. */
  defaultPlatform: Platform;
  /** Inbound authentication; absent: the registry is open to everyone who can reach it. */
  auth?: AuthConfig;
  /**
   * Extension `access:`: who may do what, first match wins, no match denied.
   * Absent with auth set: every authenticated caller may pull everything.
   */
  access?: AccessRule[];
  /** Extension `limits:`. */
  limits: LimitsConfig;
  /** Extension proxy.offline: never contact an upstream; serve only what is stored. */
  offline: boolean;
  /** Operations endpoints: /metrics, the debug server, the status page. */
  operations: {
    /** Extension metrics.enabled: /metrics on the main port; default true. */
    metrics: boolean;
    /** http.debug.addr: a second listener for metrics only (Distribution's debug server); host and port. */
    debug?: { host: string; port: number; prometheus: boolean; path: string };
    /** Extension ui.enabled: the status page at /ui/ and its JSON API at /api/v1/; default true. */
    ui: boolean;
  };
}

/** `storage.s3`, Distribution's keys and meanings. */
export interface S3Config {
  region: string;
  bucket: string;
  regionendpoint?: string;
  rootdirectory: string;
  accesskey?: string;
  secretkey?: string;
  forcepathstyle: boolean;
  secure: boolean;
  skipverify: boolean;
  chunksize: number;
  multipartcopychunksize: number;
  multipartcopymaxconcurrency: number;
  multipartcopythresholdsize: number;
}

export interface QuotaConfig {
  /** Blob bytes on disk (Stevedore's own count) past which content is evicted. */
  maxSize: number;
  /** Evict down to this many bytes once maxSize is passed (lowwater × maxSize). */
  lowWater: number;
  /** Tag (`repo:tag*`) and repository (`team/**`) patterns never evicted. */
  pin: string[];
}

export interface TlsConfig {
  certificate: string;
  key: string;
  /** http.tls.clientcas: PEM files of the CAs client certificates must chain to; empty: no client certificates asked. */
  clientCas: string[];
  /** http.tls.clientauth: require a verified client certificate, or verify one only when given. */
  clientAuth: 'require-and-verify-client-cert' | 'verify-client-cert-if-given';
  minimumTls: 'TLSv1.2' | 'TLSv1.3';
}

export type Action = 'pull' | 'push' | 'delete';

export interface AccessRule {
  /** Repository patterns over routed (storage) names: `*` within a component, `**` across. */
  repositories: string[];
  /** User names this rule is for. */
  users: string[];
  /** Groups (from auth.groups or the token's groups claim) this rule is for, without `group:`. */
  groups: string[];
  /** The rule is for callers who sent no credentials. */
  anonymous: boolean;
  actions: Action[];
}

export interface AuthConfig {
  htpasswd?: { realm: string; path: string };
  token?: TokenAuthConfig;
  /** Extension auth.groups: a YAML file mapping group names to lists of users. */
  groups?: string;
  /** Extension auth.cache: how long a verified password (bcrypt is slow on purpose) is remembered. */
  cacheMs: number;
  /** Extension auth.lockout: failed logins allowed per client address and per user within the window. */
  lockout: { attempts: number; windowMs: number };
}

export interface TokenAuthConfig {
  /** Where clients get tokens; absent with `issue`: this server's /auth/token. */
  realm?: string;
  service: string;
  issuer: string;
  rootCertBundle?: string;
  /** A JWKS file path or an http(s) URL. */
  jwks?: string;
  clockSkewMs: number;
  /** The claim of external tokens that lists the subject's groups. */
  groupsClaim: string;
  /** Extension auth.token.issue: Stevedore issues tokens itself. */
  issue?: { key: string; users: string; expiryMs: number };
}

export interface LimitsConfig {
  headerBytes: number;
  headers: number;
  manifestBytes: number;
  /** Upstream blob fills at once, overall and started by one client. */
  fills: number;
  fillsPerClient: number;
  /** Requests per second per client; 0: unlimited. */
  requestRate: number;
  requestBurst: number;
}

export interface ConfigNotice {
  level: 'warn' | 'error';
  /** The key path, e.g. 'storage.s3.bucket'; an environment variable's name for notices about the environment. */
  path: string;
  message: string;
}

export interface LoadedConfig {
  config: StevedoreConfig;
  /** Warnings the operator should see at startup (errors are thrown as a ConfigError instead). */
  notices: ConfigNotice[];
  /** The file path, or '(embedded default)'. */
  source: string;
}
