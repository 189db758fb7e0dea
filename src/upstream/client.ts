/**
 * The client of one upstream registry: where requests go, how they are
 * authenticated, and how failures are reported.
 *
 * Authentication follows what registries do: the first request goes out
 * anonymously; a 401 names the scheme. Basic → the configured credentials;
 * Bearer → a token for `repository:<repo>:pull` from the realm (tokens.ts),
 * then one retry. The scheme (and the bearer realm) is remembered, so later
 * requests carry credentials from the start and cost no extra 401 round trip.
 *
 * Blob redirects (to a CDN or object store) are followed (redirects.ts),
 * without the registry's Authorization on another origin.
 *
 * Error answers are read into memory before they are returned (first 64 KiB
 * kept) so their sockets go back to the pool; only a 2xx GET body streams.
 *
 * The circuit breaker judges the upstream, not one object of it:
 * - network errors and timeouts (RegistryError UNAVAILABLE), and 5xx answers
 *   of the token endpoint, count as failures;
 * - a 5xx answer about one object (a manifest, a blob; Docker Hub's CDN
 *   sends an occasional one) is that object's failure: the request is tried
 *   once more after a short backoff and the answer passed on. It also makes
 *   the client look at the registry base (`GET /v2/`, at most once per
 *   BASE_CHECK_INTERVAL_MS): a 5xx or a network failure there counts against
 *   the breaker, any other answer for it;
 * - any other answer counts for the upstream.
 * While the breaker is open, requests fail fast except one probe per
 * `failTimeoutMs`, whose success closes it.
 */
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { RegistryError } from '../registry/errors.js';
import { parseRepositoryName } from '../registry/names.js';
import { parseReference } from '../registry/reference.js';
import { CircuitBreaker, type BreakerState } from './breaker.js';
import { outcomeOf, type UpstreamObserver } from '../observability/metrics.js';
import { findChallenge, parseChallenges } from './challenge.js';
import { createDispatcher } from './dispatcher.js';
import { basicAuthorization, flattenHeaders, isAbort, networkReason, packageVersion, readLimited, withoutQuery } from './http.js';
import { followRedirects, isRedirect, type Exchange } from './redirects.js';
import { RateLimit, type RateLimitState } from './ratelimit.js';
import { TokenCache } from './tokens.js';

export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  repository: string;
  kind: 'manifests' | 'blobs' | 'referrers' | 'tags';
  /** Tag or digest; ignored for 'tags' (`/v2/<repo>/tags/list`). */
  reference: string;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  signal?: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  /** Lower-cased names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  /** 2xx GET: the live body, which the caller must consume or destroy. Otherwise already read into memory. */
  body: Readable;
  /** The registry URL asked (never a redirect target). */
  url: string;
}

export interface UpstreamClientOptions {
  name: string;
  url: string;
  username?: string;
  password?: string;
  timeouts: { connectMs: number; headersMs: number; bodyMs: number };
  /** Path of a PEM file with extra CAs. */
  caBundle?: string;
  tlsVerify: boolean;
  logger: Logger;
  /** Replaces the client's own Agent (tests); the caller then owns and closes it. */
  dispatcher?: Dispatcher;
  /** For the User-Agent; defaults to package.json's. */
  version?: string;
  breaker?: { maxFails?: number; failTimeoutMs?: number };
  now?: () => number;
  /**
   * Told the outcome of every request (status class; `error` without an
   * answer; `refused` by the breaker or rate limit, never sent) and its time
   * to response headers: metrics (observability/metrics.ts).
   */
  observe?: UpstreamObserver;
}

type Scheme = { kind: 'basic' } | { kind: 'bearer'; realm: string; service?: string };

/** Error bodies are kept for the caller up to this size; the rest is dropped. */
const MAX_BUFFERED_BODY = 64 * 1024;
/** Beyond this, an error body is not worth reading just to reuse the socket. */
const MAX_DRAINED_BODY = 1024 * 1024;
/** Statuses about one object that are worth one more try. */
const RETRIED_STATUSES = new Set([500, 502, 503, 504]);
/** The backoff before that try, unless the upstream's Retry-After asks for more (up to RETRY_AFTER_MAX_MS). */
const RETRY_BACKOFF_MS = 250;
const RETRY_AFTER_MAX_MS = 2_000;
/** How often a failing object makes the client check the registry base. */
const BASE_CHECK_INTERVAL_MS = 5_000;

/** Headers a caller may not pass through: ours to set, or the client's own credentials. */
const HOP_HEADERS = new Set(['authorization', 'host', 'connection', 'content-length', 'transfer-encoding', 'user-agent', 'cookie']);

export class UpstreamClient {
  private readonly base: URL;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly tokens: TokenCache;
  private readonly breaker: CircuitBreaker;
  private readonly rateLimit: RateLimit;
  private readonly log: Logger;
  private readonly userAgent: string;
  private readonly basic: string | undefined;
  private scheme: Scheme | undefined;
  private lastBaseCheck = Number.NEGATIVE_INFINITY;
  private baseCheck: Promise<void> | undefined;

  constructor(private readonly options: UpstreamClientOptions) {
    this.base = new URL(options.url.replace(/\/+$/, ''));
    this.log = options.logger.child({ upstream: options.name });
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher = options.dispatcher ?? createDispatcher(options);
    this.userAgent = `stevedore/${options.version ?? packageVersion()}`;
    const credentials =
      options.username !== undefined && options.username !== ''
        ? { username: options.username, password: options.password ?? '' }
        : undefined;
    this.basic = credentials && basicAuthorization(credentials.username, credentials.password);
    this.tokens = new TokenCache({
      upstream: options.name,
      dispatcher: this.dispatcher,
      userAgent: this.userAgent,
      logger: this.log,
      timeouts: options.timeouts,
      allowInsecureRealm: this.base.protocol === 'http:',
      ...(credentials ? { credentials } : {}),
      ...(options.now ? { now: options.now } : {}),
    });
    this.rateLimit = new RateLimit(options.name, this.log, options.now ?? Date.now);
    this.breaker = new CircuitBreaker({
      name: options.name,
      logger: options.logger,
      ...options.breaker,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  get name(): string {
    return this.options.name;
  }

  /** What the upstream's rate-limit headers said last (Docker Hub). */
  get rateLimitState(): Readonly<RateLimitState> {
    return this.rateLimit.current;
  }

  /** The circuit breaker's state: closed (online), open (offline), half-open (a probe may go or is out). */
  get breakerState(): BreakerState {
    return this.breaker.state;
  }

  /** True while the circuit breaker keeps requests from going out. */
  isOffline(): boolean {
    return this.breaker.isOpen();
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    // The grammars keep anything that could change the URL's meaning out of the path.
    parseRepositoryName(req.repository);
    if (req.kind !== 'tags') parseReference(req.reference);
    // Names arrive as the upstream knows them: Docker Hub's `library/` is added by routing, once.
    const { repository } = req;
    const url = this.urlFor(repository, req);
    const { observe } = this.options;
    const limited = this.rateLimit.refusal(req.kind, req.method);
    if (limited !== undefined) {
      observe?.(req.kind, 'refused', 0);
      throw limited;
    }
    const permit = this.breaker.allow();
    if (permit === undefined) {
      observe?.(req.kind, 'refused', 0);
      const seconds = Math.max(1, Math.ceil(this.breaker.retryInMs() / 1000));
      throw new RegistryError('UNAVAILABLE', `upstream ${this.name} unreachable: offline after repeated failures, next attempt in ${seconds}s`, {
        retryAfter: String(seconds),
        detail: { upstream: this.name },
      });
    }
    const started = observe === undefined ? 0n : process.hrtime.bigint();
    try {
      let exchange = await this.exchange(req, repository, url);
      if (RETRIED_STATUSES.has(exchange.status)) {
        // One object's failure, not the upstream's: one more try after a short backoff, then pass it on.
        const delay = retryDelay((await this.buffered(exchange)).headers['retry-after']);
        this.log.debug({ status: exchange.status, kind: req.kind, reference: req.reference, delayMs: delay }, 'upstream object request failed; trying once more');
        await sleep(delay, undefined, signalOption(req.signal));
        exchange = await this.exchange(req, repository, url);
      }
      this.rateLimit.observe(req.kind, exchange.status, exchange.headers);
      if (exchange.status >= 500) {
        this.breaker.release(permit);
        this.checkBase();
      } else this.breaker.success(permit);
      const response = await this.finish(req.method, exchange, url);
      observe?.(req.kind, outcomeOf(response.status), Number(process.hrtime.bigint() - started) / 1e9);
      return response;
    } catch (err) {
      observe?.(req.kind, 'error', Number(process.hrtime.bigint() - started) / 1e9);
      if (err instanceof RegistryError && err.code === 'UNAVAILABLE') this.breaker.failure(err.message, permit);
      else if (err instanceof RegistryError && !isLocal(err)) this.breaker.success(permit); // the upstream (or its token server) answered
      else this.breaker.release(permit);
      throw err;
    }
  }

  /**
   * Asks the registry base (`GET /v2/`) whether the upstream itself is
   * failing, in the background and at most once per BASE_CHECK_INTERVAL_MS:
   * a 5xx or a network failure there counts against the breaker.
   */
  private checkBase(): void {
    const now = (this.options.now ?? Date.now)();
    if (this.baseCheck !== undefined || now - this.lastBaseCheck < BASE_CHECK_INTERVAL_MS) return;
    this.lastBaseCheck = now;
    const permit = this.breaker.allow();
    if (permit === undefined) return;
    const base = new URL(`${this.base.pathname.replace(/\/$/, '')}/v2/`, this.base);
    this.baseCheck = this.send(base, 'GET', { 'user-agent': this.userAgent }, undefined)
      .then(
        async (exchange) => {
          await this.buffered(exchange);
          if (exchange.status >= 500) this.breaker.failure(`registry base answered ${exchange.status}`, permit);
          else this.breaker.success(permit);
        },
        (err: unknown) => this.breaker.failure(err instanceof Error ? err.message : 'base check failed', permit),
      )
      .finally(() => {
        this.baseCheck = undefined;
      });
  }

  async close(): Promise<void> {
    await this.baseCheck;
    this.tokens.clear();
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private urlFor(repository: string, req: UpstreamRequest): URL {
    const tail = req.kind === 'tags' ? 'tags/list' : `${req.kind}/${req.reference}`;
    const url = new URL(`${this.base.pathname.replace(/\/$/, '')}/v2/${repository}/${tail}`, this.base);
    for (const [key, value] of Object.entries(req.query ?? {})) url.searchParams.set(key, value);
    return url;
  }

  private async exchange(req: UpstreamRequest, repository: string, url: URL): Promise<Exchange> {
    const headers: Record<string, string> = { 'user-agent': this.userAgent };
    for (const [name, value] of Object.entries(req.headers ?? {})) {
      if (!HOP_HEADERS.has(name.toLowerCase())) headers[name.toLowerCase()] = value;
    }
    const scope = `repository:${repository}:pull`;
    let authorization = await this.preemptiveAuthorization(scope, req.signal);
    let response = await this.send(url, req.method, withAuthorization(headers, authorization), req.signal);
    if (response.status === 401) {
      // Read first: the token fetch may fail, and the socket should not wait on it.
      response = await this.buffered(response);
      const retry = await this.answerChallenge(response.headers['www-authenticate'], scope, authorization, req.signal);
      if (retry !== undefined) {
        authorization = retry;
        response = await this.send(url, req.method, withAuthorization(headers, authorization), req.signal);
      }
    }
    if (req.kind === 'blobs' && isRedirect(response.status)) {
      response = await followRedirects({
        upstream: this.name,
        registryOrigin: this.base.origin,
        start: url,
        first: response,
        headers,
        authorization,
        send: (next, nextHeaders) => this.send(next, req.method, nextHeaders, req.signal),
      });
    }
    return response;
  }

  private async preemptiveAuthorization(scope: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    const scheme = this.scheme;
    if (scheme?.kind === 'basic') return this.basic;
    if (scheme?.kind === 'bearer') return `Bearer ${await this.tokens.get(tokenRequest(scheme, scope), signalOption(signal))}`;
    return undefined;
  }

  /** The Authorization to retry with after a 401, or undefined to hand the 401 to the caller. */
  private async answerChallenge(
    header: string | undefined,
    scope: string,
    sent: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    const challenges = parseChallenges(header);
    const bearer = findChallenge(challenges, 'bearer');
    const realm = bearer?.params.realm;
    if (bearer !== undefined && realm !== undefined) {
      const sentToken = sent?.startsWith('Bearer ') ? sent.slice('Bearer '.length) : undefined;
      // A fresh token for this very scope that lacks access will not gain it by asking again.
      if (sentToken !== undefined && bearer.params.error === 'insufficient_scope') return undefined;
      const service = bearer.params.service;
      const scheme: Scheme = service === undefined ? { kind: 'bearer', realm } : { kind: 'bearer', realm, service };
      this.learn(scheme);
      const token = await this.tokens.get(tokenRequest(scheme, scope), {
        ...signalOption(signal),
        ...(sentToken === undefined ? {} : { rejected: sentToken }),
      });
      return `Bearer ${token}`;
    }
    if (findChallenge(challenges, 'basic') !== undefined && this.basic !== undefined && sent !== this.basic) {
      this.learn({ kind: 'basic' });
      return this.basic;
    }
    return undefined;
  }

  private learn(scheme: Scheme): void {
    const known = this.scheme;
    if (known?.kind === scheme.kind && (known.kind === 'basic' || JSON.stringify(known) === JSON.stringify(scheme))) return;
    this.scheme = scheme;
    const fields = scheme.kind === 'bearer' ? { scheme: 'bearer', realm: withoutQuery(scheme.realm), service: scheme.service } : { scheme: 'basic' };
    this.log.info(fields, 'upstream authentication scheme');
  }

  private async send(url: URL, method: 'GET' | 'HEAD', headers: Record<string, string>, signal: AbortSignal | undefined): Promise<Exchange> {
    try {
      const response = await this.dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method,
        headers,
        signal: signal ?? null,
        headersTimeout: this.options.timeouts.headersMs,
        bodyTimeout: this.options.timeouts.bodyMs,
      });
      return { status: response.statusCode, headers: flattenHeaders(response.headers), body: response.body };
    } catch (err) {
      if (isAbort(err, signal)) throw err;
      if ((err as { code?: unknown }).code === 'UND_ERR_INVALID_ARG') {
        throw new RegistryError('UPSTREAM_ERROR', `invalid request to upstream ${this.name}: ${networkReason(err)}`, { cause: err });
      }
      const where = url.origin === this.base.origin ? `upstream ${this.name}` : `upstream ${this.name} redirect target ${url.host}`;
      throw new RegistryError('UNAVAILABLE', `${where} unreachable: ${networkReason(err)}`, {
        cause: err,
        detail: { upstream: this.name },
      });
    }
  }

  /** 2xx GET bodies stream to the caller; any other body is read now so the socket goes back to the pool. */
  private async finish(method: 'GET' | 'HEAD', exchange: Exchange, url: URL): Promise<UpstreamResponse> {
    const live = method === 'GET' && exchange.status >= 200 && exchange.status < 300;
    const { status, headers, body } = live ? exchange : await this.buffered(exchange);
    return { status, headers, body, url: url.href };
  }

  private async buffered(exchange: Exchange): Promise<Exchange> {
    const { data } = await readLimited(exchange.body, MAX_BUFFERED_BODY, MAX_DRAINED_BODY);
    return { ...exchange, body: Readable.from(data.length === 0 ? [] : [data]) };
  }
}

/** The wait before retrying an object: a short backoff, or the upstream's Retry-After when it is short. */
function retryDelay(retryAfter: string | undefined): number {
  const seconds = Number(retryAfter);
  if (retryAfter === undefined || !Number.isFinite(seconds) || seconds < 0) return RETRY_BACKOFF_MS;
  return Math.min(Math.max(seconds * 1000, RETRY_BACKOFF_MS), RETRY_AFTER_MAX_MS);
}

function withAuthorization(headers: Record<string, string>, authorization: string | undefined): Record<string, string> {
  return authorization === undefined ? headers : { ...headers, authorization };
}

function tokenRequest(scheme: { realm: string; service?: string }, scope: string): { realm: string; service?: string; scopes: string[] } {
  return scheme.service === undefined ? { realm: scheme.realm, scopes: [scope] } : { realm: scheme.realm, service: scheme.service, scopes: [scope] };
}

/** An error raised before anything reached the network says nothing about the upstream's health. */
const isLocal = (err: RegistryError): boolean => (err.cause as { code?: unknown } | undefined)?.code === 'UND_ERR_INVALID_ARG';

function signalOption(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal === undefined ? {} : { signal };
}
