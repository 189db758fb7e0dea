/**
 * Bearer tokens for one upstream, from the token server its challenge names
 * (the Docker token authentication spec: `GET realm?service=…&scope=…`).
 *
 * Tokens are cached per (realm, service, scopes) until shortly before they
 * expire, so a burst of pulls costs one token request rather than one per
 * upstream request (Distribution's proxy fetches one almost every time).
 * Concurrent requests for the same key share one fetch. The fetch itself is
 * not tied to any one caller's AbortSignal: a caller that gives up stops
 * waiting, the others still get the token.
 *
 * Nothing here logs or throws a token or a credential: messages name the
 * realm (origin and path only), the service and the scopes.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { RegistryError } from '../registry/errors.js';
import { basicAuthorization, drain, flattenHeaders, networkReason, raceAbort, readLimited } from './http.js';
import { boundedCache } from '../registry/bounded-cache.js';

export interface TokenRequest {
  realm: string;
  service?: string;
  /** e.g. ['repository:library/alpine:pull']; sent as repeated `scope` parameters. */
  scopes: readonly string[];
}

export interface TokenCacheOptions {
  /** The upstream's name, for messages. */
  upstream: string;
  dispatcher: Dispatcher;
  userAgent: string;
  logger: Logger;
  credentials?: { username: string; password: string };
  /**
   * Send credentials to an http:// realm. Off unless the upstream itself is
   * plain http: an https registry must not make us leak its password in clear.
   */
  allowInsecureRealm?: boolean;
  timeouts?: { headersMs: number; bodyMs: number };
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  maxEntries?: number;
}

export interface TokenGetOptions {
  signal?: AbortSignal;
  /** A token the upstream just refused: if it is the cached one, fetch another. */
  rejected?: string;
}

interface Entry {
  token: string;
  /** When to stop using it: a little before the token expires. */
  refreshAt: number;
}

/** The Docker token spec: a token without `expires_in` lives 60 seconds. */
export const DEFAULT_EXPIRES_IN_S = 60;
const MAX_REFRESH_MARGIN_MS = 10_000;
const MAX_TOKEN_RESPONSE_BYTES = 1 << 20;

/**
 * A refusal (wrong credentials, no access) is remembered this long, so a
 * misconfigured password does not send one credentialed request per client
 * request to the token server (and lock the account there).
 */
export const REFUSAL_MEMORY_MS = 30_000;

export class TokenCache {
  private readonly cache: LRUCache<string, Entry>;
  private readonly refusals: LRUCache<string, { error: RegistryError; until: number }>;
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly now: () => number;

  constructor(private readonly options: TokenCacheOptions) {
    this.now = options.now ?? Date.now;
    this.cache = boundedCache<string, Entry>({ entries: options.maxEntries ?? 1000 });
    this.refusals = boundedCache({ entries: options.maxEntries ?? 1000 });
  }

  async get(request: TokenRequest, options: TokenGetOptions = {}): Promise<string> {
    const key = keyOf(request);
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      if (cached.token !== options.rejected && this.now() < cached.refreshAt) return cached.token;
      this.cache.delete(key);
    }
    const refused = this.refusals.get(key);
    if (refused !== undefined && this.now() < refused.until) throw refused.error;
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      pending = this.fetchToken(key, request)
        .catch((err: unknown) => {
          if (err instanceof RegistryError && err.code === 'UNAUTHORIZED') this.refusals.set(key, { error: err, until: this.now() + REFUSAL_MEMORY_MS });
          throw err;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return raceAbort(pending, options.signal);
  }

  clear(): void {
    this.cache.clear();
    this.refusals.clear();
  }

  private async fetchToken(key: string, request: TokenRequest): Promise<string> {
    const { upstream, credentials } = this.options;
    const url = parseRealm(upstream, request.realm);
    const where = `${url.origin}${url.pathname}`;
    if (request.service !== undefined) url.searchParams.set('service', request.service);
    for (const scope of request.scopes) url.searchParams.append('scope', scope);
    const sendCredentials = credentials !== undefined && (url.protocol === 'https:' || this.options.allowInsecureRealm === true);
    if (sendCredentials) url.searchParams.set('account', credentials.username);
    const headers: Record<string, string> = { 'user-agent': this.options.userAgent, accept: 'application/json' };
    if (sendCredentials) headers.authorization = basicAuthorization(credentials.username, credentials.password);
    const context = { realm: where, service: request.service, scope: request.scopes.join(' ') };
    if (credentials !== undefined && !sendCredentials) {
      this.options.logger.warn(context, 'not sending upstream credentials to a token realm over plain http');
    }

    const startedAt = this.now();
    let response: Dispatcher.ResponseData;
    try {
      response = await this.options.dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers,
        headersTimeout: this.options.timeouts?.headersMs ?? null,
        bodyTimeout: this.options.timeouts?.bodyMs ?? null,
      });
    } catch (err) {
      throw new RegistryError('UNAVAILABLE', `token server ${where} of upstream ${upstream} unreachable: ${networkReason(err)}`, {
        cause: err,
        detail: { upstream, realm: where },
      });
    }

    const status = response.statusCode;
    if (status < 200 || status >= 300) {
      drain(response.body);
      throw tokenRefused(upstream, where, request, status, sendCredentials, flattenHeaders(response.headers)['retry-after']);
    }
    const { data, truncated } = await readLimited(response.body, MAX_TOKEN_RESPONSE_BYTES);
    const parsed = truncated ? undefined : parseTokenResponse(data.toString('utf8'));
    if (parsed === undefined) {
      throw new RegistryError('UNAUTHORIZED', `token server ${where} of upstream ${upstream} answered without a usable token`, {
        detail: { upstream, realm: where },
      });
    }

    const lifetimeMs = parsed.expiresInS * 1000;
    let expiresAt = startedAt + lifetimeMs;
    // The server's clock may differ from ours: issued_at may only shorten the
    // lifetime, and is ignored when it would make a fresh token useless.
    if (parsed.issuedAt !== undefined) {
      const serverExpiry = parsed.issuedAt + lifetimeMs;
      if (serverExpiry < expiresAt && serverExpiry - this.now() > lifetimeMs / 2) expiresAt = serverExpiry;
    }
    const refreshAt = expiresAt - Math.min(MAX_REFRESH_MARGIN_MS, lifetimeMs / 10);
    this.cache.set(key, { token: parsed.token, refreshAt });
    this.options.logger.debug({ ...context, expiresInS: parsed.expiresInS }, 'fetched upstream token');
    return parsed.token;
  }
}

function keyOf(request: TokenRequest): string {
  return JSON.stringify([request.realm, request.service ?? '', [...request.scopes].sort()]);
}

function parseRealm(upstream: string, realm: string): URL {
  let url: URL | undefined;
  try {
    url = new URL(realm);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw new RegistryError('UNAUTHORIZED', `upstream ${upstream} named an unusable token realm`, {
      detail: { upstream, realm: realm.slice(0, 200) },
    });
  }
  // Userinfo in a realm is never used: it would end up in messages.
  url.username = '';
  url.password = '';
  return url;
}

function tokenRefused(
  upstream: string,
  where: string,
  request: TokenRequest,
  status: number,
  withCredentials: boolean,
  retryAfter: string | undefined,
): RegistryError {
  const detail = { upstream, realm: where, status };
  const scope = request.scopes.join(' ');
  if (status === 429) {
    return new RegistryError('TOOMANYREQUESTS', `token server ${where} of upstream ${upstream} is rate-limiting requests`, {
      detail,
      ...(retryAfter === undefined ? {} : { retryAfter }),
    });
  }
  if (status >= 500) {
    return new RegistryError('UNAVAILABLE', `token server ${where} of upstream ${upstream} failed with status ${status}`, { detail });
  }
  const who = withCredentials ? 'the configured credentials' : 'an anonymous request';
  return new RegistryError('UNAUTHORIZED', `token server ${where} of upstream ${upstream} refused ${who} for scope "${scope}" (status ${status})`, {
    detail,
  });
}

interface ParsedToken {
  token: string;
  expiresInS: number;
  issuedAt?: number;
}

/** `token` or, for OAuth2 servers, `access_token`; `expires_in` seconds; `issued_at` RFC 3339. */
export function parseTokenResponse(text: string): ParsedToken | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const fields = body as Record<string, unknown>;
  const token = headerSafe(fields.token) ?? headerSafe(fields.access_token);
  if (token === undefined) return undefined;
  const expiresIn = fields.expires_in;
  const expiresInS = typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : DEFAULT_EXPIRES_IN_S;
  const issuedAt = typeof fields.issued_at === 'string' ? Date.parse(fields.issued_at) : Number.NaN;
  return Number.isFinite(issuedAt) ? { token, expiresInS, issuedAt } : { token, expiresInS };
}

/** A token goes into an Authorization header: visible ASCII only, or it is not a token. */
function headerSafe(value: unknown): string | undefined {
  return typeof value === 'string' && /^[\x21-\x7e]{1,16384}$/.test(value) ? value : undefined;
}
