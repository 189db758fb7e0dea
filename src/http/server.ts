/**
 * The node:http front: routing, the API version header, one access log line
 * per request, and errors turned into OCI error bodies in one place.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { methodUnsupported, RegistryError } from '../registry/errors.js';
import { MAX_MANIFEST_SIZE } from '../registry/manifest.js';
import type { Routing } from '../routing/routes.js';
import type { LimitsConfig, StevedoreConfig, TlsConfig } from '../config/types.js';
import { TrustedProxies } from './forwarded.js';
import { API_VERSION, API_VERSION_HEADER, type RequestContext } from './context.js';
import { toRegistryError, writeError } from './errcode.js';
import { deleteBlob, getBlob, headBlob } from './handlers/blobs.js';
import { handleUpload } from './handlers/uploads.js';
import { listCatalog, listTags } from './handlers/listing.js';
import { deleteManifest, getManifest, putManifest } from './handlers/manifests.js';
import { listReferrers } from './handlers/referrers.js';
import { route } from './router.js';
import { RequestRateLimiter } from './ratelimit.js';
import { refusePlainHttp, tlsServerOptions, unverifiedClientCertificate } from './tls.js';
import { issueToken } from './handlers/token.js';
import { ANONYMOUS } from '../auth/caller.js';
import type { Gate } from '../auth/gate.js';
import { guardedEndpoint, openEndpoint, type Operations } from './operations.js';
import type { RouteKind } from '../observability/metrics.js';
import { AccessLog } from '../observability/access-log.js';

/** Stevedore's own token endpoint (auth.token.issue), under http.prefix. */
export const TOKEN_PATH = '/auth/token';

export interface ServerOptions {
  routing: Routing;
  /** Access control; absent: open to everyone. */
  gate?: Gate;
  /** /metrics, /healthz, /readyz, /ui/, /api/v1/. */
  operations?: Operations;
  log: Logger;
  accessLog: boolean;
  /** Distribution's http.prefix, e.g. '/registry'; '' to serve at the root. */
  prefix?: string;
  tls?: TlsConfig;
  /** http.trustedproxies: whose X-Forwarded-* headers are believed. */
  trustedProxies?: readonly string[];
  /** Connection timeouts (http.timeouts); defaults as in the config reference. */
  timeouts?: StevedoreConfig['http']['timeouts'];
  /** Header limits (limits.headerbytes, limits.headers); limits.manifestbytes for pushed manifests. */
  limits?: Pick<LimitsConfig, 'headerBytes' | 'headers'> & Partial<Pick<LimitsConfig, 'manifestBytes'>>;
  /** Per-client request rate (limits.requestrate, limits.requestburst); off when absent or the rate is 0. */
  requestRate?: { rate: number; burst: number };
  /** Request counts and latency by route kind (observability/metrics.ts); off when absent. */
  metrics?: { request(kind: RouteKind, method: string, status: number, seconds: number): void };
}

export const DEFAULT_TIMEOUTS: StevedoreConfig['http']['timeouts'] = { headersMs: 10_000, requestMs: 60_000, idleMs: 120_000, keepAliveMs: 65_000 };
export const DEFAULT_HEADER_LIMITS: Pick<LimitsConfig, 'headerBytes' | 'headers'> = { headerBytes: 16 * 1024, headers: 100 };

const READS = 'GET, HEAD';
/** The query of every request without one: read-only by use (nothing sets query parameters). */
const NO_QUERY = new URLSearchParams();

async function dispatch(ctx: RequestContext): Promise<void> {
  const method = ctx.req.method ?? 'GET';
  const { gate, operations } = ctx;
  const open = operations === undefined ? undefined : openEndpoint(ctx, operations);
  if (open !== undefined) return open;
  if (gate !== undefined) {
    if (ctx.path === TOKEN_PATH && gate.issuer !== undefined) return issueToken(ctx, gate);
    // Credentials first: what a request may learn, even that a method is unsupported, depends on them.
    ctx.caller = await gate.authenticate(ctx.req.headers.authorization, ctx.origin);
    if (ctx.caller.user !== undefined) ctx.fields.user = ctx.caller.user;
  }
  const guarded = operations === undefined ? undefined : guardedEndpoint(ctx, operations);
  if (guarded !== undefined) return guarded;
  const target = route(ctx.path);
  const read = method === 'GET' || method === 'HEAD';
  // Writes are decided by the handlers: only hosted repositories take them (UNSUPPORTED elsewhere).
  if (target.kind === 'upload') return handleUpload(ctx, target.name, target.id);
  if (target.kind === 'manifest' && method === 'PUT') return putManifest(ctx, target.name, target.reference);
  if (target.kind === 'manifest' && method === 'DELETE') return deleteManifest(ctx, target.name, target.reference);
  if (target.kind === 'blob' && method === 'DELETE') return deleteBlob(ctx, target.name, target.digest);
  if (!read) throw methodUnsupported(method, target.kind === 'manifest' ? `${READS}, PUT, DELETE` : target.kind === 'blob' ? `${READS}, DELETE` : READS);
  switch (target.kind) {
    case 'base':
      gate?.authorizeBase(ctx.caller, ctx.origin);
      ctx.res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': 2 });
      ctx.res.end(ctx.head ? undefined : '{}');
      return;
    case 'catalog':
      return listCatalog(ctx);
    case 'tags':
      return listTags(ctx, target.name);
    case 'manifest':
      return getManifest(ctx, target.name, target.reference);
    case 'blob':
      return ctx.head ? headBlob(ctx, target.name, target.digest) : getBlob(ctx, target.name, target.digest);
    case 'referrers':
      return listReferrers(ctx, target.name, target.digest);
  }
}

/**
 * Body bytes that went out: what a streamed response got through to the
 * socket (a cut transfer shows as short), else the whole body once finished.
 */
function bodyBytes(ctx: RequestContext): number {
  if (ctx.head) return 0;
  if (ctx.streamed !== undefined) return ctx.streamed.bytes;
  return ctx.res.writableFinished ? Number(ctx.res.getHeader('content-length') ?? 0) : 0;
}

/**
 * The route kind of a path, for metrics: string probes only (no parse, no
 * allocation), which is all a bounded label needs; the router decides the rest.
 */
export function routeKind(path: string): RouteKind {
  if (path === '/v2/' || path === '/v2') return 'base';
  if (!path.startsWith('/v2/')) return path === TOKEN_PATH ? 'token' : path === '/metrics' || path === '/healthz' || path === '/readyz' || path.startsWith('/ui') || path.startsWith('/api/') ? 'operations' : 'other';
  if (path.includes('/manifests/')) return 'manifest';
  if (path.includes('/blobs/uploads')) return 'upload';
  if (path.includes('/blobs/')) return 'blob';
  if (path.endsWith('/tags/list')) return 'tags';
  if (path.includes('/referrers/')) return 'referrers';
  if (path === '/v2/_catalog') return 'catalog';
  return 'other';
}

/** Request ids: a per-process random prefix and a counter; unique, and cheaper than a UUID per request. */
const idPrefix = randomBytes(4).toString('hex');
let idCounter = 0;
const nextRequestId = (): string => `${idPrefix}-${(idCounter++).toString(36)}`;
/** A request id we pass on into logs and headers: a short token, nothing that could forge a log field or split a header. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** A trusted proxy's X-Request-Id when it is a plain token, so one id follows a request through both; else our own. */
function requestIdOf(req: IncomingMessage, proxies: TrustedProxies): string {
  const given = req.headers['x-request-id'];
  if (typeof given === 'string' && REQUEST_ID.test(given) && proxies.trusts(req.socket.remoteAddress ?? '')) return given;
  return nextRequestId();
}

/** What is refused at the edge: an unverified client certificate, a client over its rate, too many header lines. */
function edgeRefusal(req: IncomingMessage, ctx: RequestContext, limiter: RequestRateLimiter | undefined, maxHeaders: number): RegistryError | undefined {
  const unverified = unverifiedClientCertificate(req.socket);
  if (unverified !== undefined) return new RegistryError('DENIED', `client certificate not verified: ${unverified}`);
  const refused = limiter?.refuse(ctx.origin.client);
  if (refused !== undefined) return refused;
  // Node keeps at most maxHeadersCount (set one above the limit) and drops the rest silently.
  if (req.rawHeaders.length > maxHeaders * 2) {
    return new RegistryError('HEADERS_TOO_LARGE', `more than ${maxHeaders} header lines`, { detail: { limit: maxHeaders } });
  }
  return undefined;
}

export function createRequestHandler(options: ServerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { routing, log, accessLog, gate, metrics } = options;
  // Request facts and ctx.fields only (names, digests, outcomes, the user name), never headers or credentials.
  const accessLines = accessLog ? AccessLog.of(log) : undefined;
  const prefix = options.prefix ?? '';
  const proxies = new TrustedProxies(options.trustedProxies ?? []);
  const encrypted = options.tls !== undefined;
  const limiter = options.requestRate !== undefined && options.requestRate.rate > 0 ? new RequestRateLimiter(options.requestRate) : undefined;
  const maxHeaders = (options.limits ?? DEFAULT_HEADER_LIMITS).headers;
  const maxManifestBytes = options.limits?.manifestBytes ?? MAX_MANIFEST_SIZE;
  return (req, res) => {
    const started = process.hrtime.bigint();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const fullPath = q < 0 ? url : url.slice(0, q);
    const path = prefix !== '' && fullPath.startsWith(`${prefix}/`) ? fullPath.slice(prefix.length) : fullPath;
    const ctx: RequestContext = {
      req,
      res,
      origin: proxies.origin(req, encrypted),
      path,
      query: q < 0 ? NO_QUERY : new URLSearchParams(url.slice(q + 1)),
      head: req.method === 'HEAD',
      routing,
      // Every request's context has the same shape (no optional spreads), so the warm path stays monomorphic.
      gate,
      operations: options.operations,
      caller: ANONYMOUS,
      log,
      fields: {},
      streamed: undefined,
      prefix,
      maxManifestBytes,
    };
    res.setHeader(API_VERSION_HEADER, API_VERSION);
    const requestId = requestIdOf(req, proxies);
    res.setHeader('X-Request-Id', requestId);

    if (accessLines !== undefined || metrics !== undefined) {
      res.once('close', () => {
        const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
        metrics?.request(routeKind(path), req.method ?? 'GET', res.statusCode, durationMs / 1e3);
        accessLines?.record({
          requestId,
          method: req.method ?? 'GET',
          path,
          status: res.statusCode,
          bytes: bodyBytes(ctx),
          durationMs: Math.round(durationMs * 100) / 100,
          client: ctx.origin.client,
          complete: res.writableFinished,
          fields: ctx.fields,
        });
      });
    }

    // Refusals that cost nothing: before any routing, authentication or storage.
    const refusal = edgeRefusal(req, ctx, limiter, maxHeaders);
    if (refusal !== undefined) return writeError(req, res, refusal);

    dispatch(ctx).catch((err: unknown) => {
      const { error, internal } = toRegistryError(err);
      if (res.headersSent) {
        // Mid-stream: a client that went away is routine; anything else cut a response short.
        if (req.destroyed || res.destroyed) log.debug({ requestId, path }, 'client closed the connection');
        else log.warn({ requestId, path, err: (err as Error).message }, 'response aborted mid-stream');
      } else if (internal) log.error({ err, requestId, path }, 'internal error');
      writeError(req, res, error);
    });
  };
}

export function createServer(options: ServerOptions): Server {
  const handler = createRequestHandler(options);
  const timeouts = options.timeouts ?? DEFAULT_TIMEOUTS;
  const limits = options.limits ?? DEFAULT_HEADER_LIMITS;
  const serverOptions = {
    maxHeaderSize: limits.headerBytes,
    requestTimeout: timeouts.requestMs,
    headersTimeout: timeouts.headersMs,
    // Node enforces both timeouts only when it checks, every 30 s by default: check often enough that they mean what they say.
    connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(timeouts.headersMs / 4))),
  };
  let server: Server;
  if (options.tls) {
    // A TLS handshake is bounded like a client's headers.
    const https = createHttpsServer({ ...serverOptions, ...tlsServerOptions(options.tls), handshakeTimeout: timeouts.headersMs }, handler);
    refusePlainHttp(https, timeouts.headersMs);
    server = https;
  } else server = createHttpServer(serverOptions, handler);
  // One more than the limit, so the handler sees that there were too many (Node drops the rest).
  server.maxHeadersCount = limits.headers + 1;
  server.keepAliveTimeout = timeouts.keepAliveMs;
  // headersTimeout bounds a slow client's headers (slowloris); requestTimeout
  // the whole request it sends, never the response: large layers take as long
  // as they take. A connection on which nothing moves for idleMs (a client
  // that stopped reading) is closed: no response waits forever on its client.
  server.headersTimeout = timeouts.headersMs;
  server.requestTimeout = timeouts.requestMs;
  server.timeout = timeouts.idleMs;
  return server;
}
