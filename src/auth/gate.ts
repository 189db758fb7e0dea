/**
 * Inbound access control in one place: who a request is from (Basic
 * against an htpasswd file, or a bearer token), whether it may do what it
 * asks (token grants and the access rules, over routed names), and what
 * to answer when not:
 *
 * - no or wrong credentials: `401 UNAUTHORIZED` with a challenge;
 * - a bearer token without the scope: `401` with `error="insufficient_scope"`
 *   (the client fetches a token for it, as Distribution's clients do);
 * - an authenticated caller the rules refuse: `404 NAME_UNKNOWN`, exactly as
 *   for a repository that does not exist, so nobody learns what is there.
 *
 * Whether a repository exists is never looked at before this decision.
 */
import type { Logger } from 'pino';
import type { AccessRule, Action, AuthConfig } from '../config/types.js';
import { RegistryError } from '../registry/errors.js';
import { ANONYMOUS, granted, type Caller } from './caller.js';
import { Htpasswd } from './htpasswd.js';
import { TokenIssuer, type IssuedToken, type Scope } from './issuer.js';
import { Lockout } from './lockout.js';
import { AccessRules, parseGroups } from './rules.js';
import { TokenRejected, TokenVerifier } from './verifier.js';
import { WatchedFile } from './watched.js';

/** Where the client reached us, for realms it can follow. */
export interface ClientOrigin {
  client: string;
  proto: string;
  host: string;
}

/** The names a repository request carries: as written in the URL, and where routing put it. */
export interface RepositoryTarget {
  /** The name in the URL. */
  url: string;
  /** The routed name in storage, which the rules are written over. */
  stored: string;
  /** Whether containerd's `?ns=` took part in routing (then the URL name alone is ambiguous). */
  ns: boolean;
}

const BASIC = /^Basic ([A-Za-z0-9+/]{1,2048}={0,2})$/i;
const BEARER = /^Bearer +(.*)$/i;

export interface GateOptions {
  log: Logger;
  /** http.prefix, for the default realm of Stevedore's own issuer. */
  prefix: string;
  /** http.host (externalUrl), preferred over the request's origin for realms. */
  externalUrl?: string;
  now?: () => number;
}

const quote = (value: string): string => `"${value.replace(/["\\]/g, '')}"`;

export class Gate {
  readonly kind: 'basic' | 'bearer';
  readonly rules: AccessRules;
  private readonly lockout: Lockout;

  private constructor(
    private readonly config: AuthConfig,
    rules: readonly AccessRule[] | undefined,
    groups: WatchedFile<ReturnType<typeof parseGroups>> | undefined,
    private readonly users: Htpasswd | undefined,
    private readonly verifier: TokenVerifier | undefined,
    readonly issuer: TokenIssuer | undefined,
    private readonly options: GateOptions,
  ) {
    this.kind = config.htpasswd !== undefined ? 'basic' : 'bearer';
    this.rules = new AccessRules(rules, groups);
    this.lockout = new Lockout(config.lockout.attempts, config.lockout.windowMs, options.now);
  }

  static async create(config: AuthConfig, rules: readonly AccessRule[] | undefined, options: GateOptions): Promise<Gate> {
    const { log } = options;
    const groups = config.groups === undefined ? undefined : new WatchedFile(config.groups, parseGroups, log, 'groups file', 1000, options.now);
    await groups?.load();
    const usersPath = config.htpasswd?.path ?? config.token?.issue?.users;
    const users = usersPath === undefined ? undefined : new Htpasswd(usersPath, { cacheMs: config.cacheMs, log, ...(options.now ? { now: options.now } : {}) });
    await users?.load();
    let issuer: TokenIssuer | undefined;
    let verifier: TokenVerifier | undefined;
    const token = config.token;
    if (token !== undefined) {
      if (token.issue !== undefined) {
        issuer = TokenIssuer.open(token.issue.key, { issuer: token.issuer, service: token.service, expiryMs: token.issue.expiryMs, log, ...(options.now ? { now: options.now } : {}) });
      }
      verifier = await TokenVerifier.create({
        issuer: token.issuer,
        service: token.service,
        clockSkewMs: token.clockSkewMs,
        groupsClaim: token.groupsClaim,
        ...(token.rootCertBundle === undefined ? {} : { rootCertBundle: token.rootCertBundle }),
        ...(token.jwks === undefined ? {} : { jwks: token.jwks }),
        ...(issuer === undefined ? {} : { ownKey: { key: issuer.publicKey, kid: issuer.kid } }),
        log,
        ...(options.now ? { now: options.now } : {}),
      });
    }
    return new Gate(config, rules, groups, users, verifier, issuer, options);
  }

  /** bcrypt comparisons run so far. */
  get bcryptRuns(): number {
    return this.users?.bcryptRuns ?? 0;
  }

  /** The realm of the challenge: configured, or (for our own issuer) this server's token endpoint. */
  realm(origin: ClientOrigin): string {
    if (this.config.htpasswd !== undefined) return this.config.htpasswd.realm;
    if (this.config.token?.realm !== undefined) return this.config.token.realm;
    const base = this.options.externalUrl ?? `${origin.proto}://${origin.host === '' ? 'localhost' : origin.host}`;
    return `${base}${this.options.prefix}/auth/token`;
  }

  challenge(origin: ClientOrigin, scope?: string, error?: 'invalid_token' | 'insufficient_scope'): string {
    // As Distribution writes it (`Basic realm=%q`).
    if (this.kind === 'basic') return `Basic realm=${quote(this.realm(origin))}`;
    let value = `Bearer realm=${quote(this.realm(origin))},service=${quote(this.config.token?.service ?? '')}`;
    if (scope !== undefined) value += `,scope=${quote(scope)}`;
    if (error !== undefined) value += `,error=${quote(error)}`;
    return value;
  }

  private unauthorized(origin: ClientOrigin, message: string, scope?: { type: string; name: string; action: string }, error?: 'invalid_token' | 'insufficient_scope'): RegistryError {
    const scopeText = scope === undefined ? undefined : `${scope.type}:${scope.name}:${scope.action}`;
    return new RegistryError('UNAUTHORIZED', message, {
      challenge: this.challenge(origin, scopeText, error),
      // One entry per action needed, as Distribution lists them.
      ...(scope === undefined ? {} : { detail: scope.action.split(',').map((action) => ({ Type: scope.type, Class: '', Name: scope.name, Action: action })) }),
    });
  }

  /**
   * Who the request is from. No credentials: anonymous (what anonymous
   * callers may do is decided per request). Wrong ones: 401; too many wrong
   * ones from this address or for this user: 429.
   */
  async authenticate(authorization: string | undefined, origin: ClientOrigin): Promise<Caller> {
    if (authorization === undefined || authorization === '') return ANONYMOUS;
    const bearer = BEARER.exec(authorization);
    if (bearer !== null && this.verifier !== undefined) {
      try {
        return await this.withFileGroups(await this.verifier.verify(bearer[1] as string));
      } catch (err) {
        if (!(err instanceof TokenRejected)) throw err;
        this.options.log.warn({ client: origin.client, reason: err.message }, 'bearer token refused');
        // Refused where the request is authorized, so the challenge can name the scope it needs.
        return { groups: [], via: 'bearer', grants: new Map(), rejected: err.message };
      }
    }
    const basic = BASIC.exec(authorization);
    if (basic !== null && this.users !== undefined) {
      const decoded = Buffer.from(basic[1] as string, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const user = colon < 0 ? decoded : decoded.slice(0, colon);
      const password = colon < 0 ? '' : decoded.slice(colon + 1);
      // Some clients send `Basic Og==` (":") when they have no credentials.
      if (user === '' && password === '') return ANONYMOUS;
      return this.withFileGroups(await this.login(user, password, origin));
    }
    this.lockout.fail([`addr:${origin.client}`]);
    throw this.unauthorized(origin, 'authentication required: unsupported or malformed Authorization header');
  }

  /** Checks a user's password (for Basic requests and the token endpoint), with the lockout. */
  async login(user: string, password: string, origin: ClientOrigin): Promise<Caller> {
    const keys = [`addr:${origin.client}`, `user:${user}`];
    const wait = this.lockout.retryAfter(keys);
    if (wait > 0) {
      this.options.log.warn({ user: user.slice(0, 64), client: origin.client }, 'login refused: too many failed logins');
      throw new RegistryError('TOOMANYREQUESTS', 'too many failed logins: try again later', { retryAfter: String(wait) });
    }
    if (this.users === undefined || user.length > 255 || password.length > 1024 || !(await this.users.verify(user, password))) {
      this.lockout.fail(keys);
      this.options.log.warn({ user: user.slice(0, 64), client: origin.client }, 'login failed');
      throw this.unauthorized(origin, 'authentication required: wrong user name or password');
    }
    this.lockout.succeed(`user:${user}`);
    return { user, groups: [], via: 'basic' };
  }

  private async withFileGroups(caller: Caller): Promise<Caller> {
    const fromFile = await this.rules.groupsOf(caller.user);
    return fromFile.length === 0 ? caller : { ...caller, groups: [...caller.groups, ...fromFile] };
  }

  /** The registry base (`/v2/`): any authenticated caller; anonymous ones are challenged. */
  authorizeBase(caller: Caller, origin: ClientOrigin): void {
    if (caller.rejected !== undefined) throw this.unauthorized(origin, `invalid token: ${caller.rejected}`, undefined, 'invalid_token');
    if (caller.via === 'anonymous') throw this.unauthorized(origin, 'authentication required');
  }

  /** Throws unless `caller` may do `action` on the repository. */
  authorize(caller: Caller, target: RepositoryTarget, action: Action, origin: ClientOrigin): void {
    // The scope clients should ask for: the name they use, unless `ns` made it ambiguous.
    // A push needs pull too (a client checks what exists before it uploads), as Distribution asks.
    const scope = { type: 'repository', name: target.ns ? target.stored : target.url, action: action === 'push' ? 'pull,push' : action };
    if (caller.rejected !== undefined) throw this.unauthorized(origin, `invalid token: ${caller.rejected}`, scope, 'invalid_token');
    if (caller.grants !== undefined) {
      const ok = granted(caller.grants, 'repository', target.stored, action) || (!target.ns && granted(caller.grants, 'repository', target.url, action));
      if (!ok) throw this.unauthorized(origin, 'authentication required: the token does not grant this', scope, 'insufficient_scope');
    }
    if (this.rules.allows(caller, target.stored, action)) return;
    if (caller.via === 'anonymous') throw this.unauthorized(origin, 'authentication required', scope);
    // A caller who may see the repository learns nothing from being told it may not change it.
    if (action !== 'pull' && this.rules.allows(caller, target.stored, 'pull')) {
      throw new RegistryError('DENIED', `requested access to the resource is denied: ${action} is not granted on this repository`, { detail: { name: target.url, action } });
    }
    // Refused to someone who is logged in: the answer for a repository that does not exist,
    // without even the name, so an existing and a missing one answer byte for byte alike.
    throw new RegistryError('NAME_UNKNOWN', 'repository name not known to registry');
  }

  /** The catalog: callers who can see something. Throws for anonymous ones when anonymous callers may pull nothing. */
  authorizeCatalog(caller: Caller, origin: ClientOrigin): void {
    const scope = { type: 'registry', name: 'catalog', action: '*' };
    if (caller.rejected !== undefined) throw this.unauthorized(origin, `invalid token: ${caller.rejected}`, scope, 'invalid_token');
    if (caller.grants !== undefined && !granted(caller.grants, 'registry', 'catalog', '*')) {
      throw this.unauthorized(origin, 'authentication required: the token does not grant the catalog', scope, 'insufficient_scope');
    }
    if (caller.via === 'anonymous' && !this.rules.anonymousPull) throw this.unauthorized(origin, 'authentication required', scope);
  }

  /** Whether a stored repository may be listed to `caller` (the catalog shows only what it may pull). */
  mayList(caller: Caller, stored: string): boolean {
    return this.rules.allows(caller, stored, 'pull');
  }

  /**
   * A token for `caller` (our own issuer): of each scope, the actions the
   * rules allow on the name it routes to (`resolve`; undefined: nothing).
   */
  async issue(caller: Caller, scopes: readonly Scope[], resolve: (name: string) => string | undefined): Promise<IssuedToken> {
    if (this.issuer === undefined) throw new Error('internal: this gate issues no tokens');
    const access: Scope[] = [];
    for (const scope of scopes) {
      let actions: string[] = [];
      if (scope.type === 'repository') {
        const stored = resolve(scope.name);
        if (stored !== undefined) {
          const wanted = scope.actions.includes('*') ? ['pull', 'push', 'delete'] : scope.actions;
          actions = wanted.filter((a): a is Action => (a === 'pull' || a === 'push' || a === 'delete') && this.rules.allows(caller, stored, a));
        }
      } else if (scope.type === 'registry' && scope.name === 'catalog') {
        // What was asked for (Docker asks `*`): the catalog itself lists only what the caller may pull.
        if (caller.user !== undefined || this.rules.anonymousPull) actions = scope.actions;
      }
      if (actions.length > 0) access.push({ type: scope.type, name: scope.name, actions });
    }
    this.options.log.info({ user: caller.user ?? null, granted: access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`) }, 'token issued');
    return this.issuer.issue(caller.user, access);
  }
}
