/** What every handler receives. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { RepositoryName } from '../registry/names.js';
import { isWritable, type Repository, type RepositoryWriter } from '../registry/services.js';
import { RegistryError } from '../registry/errors.js';
import type { RequestScope, Routing } from '../routing/routes.js';
import type { Origin } from './forwarded.js';
import type { Action } from '../config/types.js';
import type { Caller } from '../auth/caller.js';
import type { Gate } from '../auth/gate.js';
import type { Operations } from './operations.js';
import type { AccessEntry } from '../observability/access-log.js';

/** What a handler may add to the access line: names and digests, never headers or credentials. */
export type AccessFields = AccessEntry['fields'];

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** The client's address and the scheme and host it used, through trusted proxies. */
  origin: Origin;
  path: string;
  query: URLSearchParams;
  head: boolean;
  routing: Routing;
  /** Access control; undefined when the registry is open. */
  gate: Gate | undefined;
  /** The operations endpoints (metrics, health, status page). */
  operations: Operations | undefined;
  /** Who the request is from, once authenticated (anonymous until then). */
  caller: Caller;
  log: Logger;
  /** Extra fields for the access log line; typed, because that line is written without redaction. */
  fields: AccessFields;
  /** Body bytes of a streamed response (a blob) that reached the socket, for the access log. */
  streamed: { bytes: number } | undefined;
  /** http.prefix ('' at the root), for the URLs the registry hands out (`Location`). */
  prefix: string;
  /** limits.manifestbytes: the largest manifest body read. */
  maxManifestBytes: number;
}

/**
 * The repository a request for `name` (as written in the URL) is served
 * from, resolved in the request's scope (upstream by `?ns=` or path prefix,
 * storage namespace, policy); its storage name and upstream go to the access log.
 */
export function repositoryOf(ctx: RequestContext, name: RepositoryName, action: Action = 'pull'): Repository {
  const scope = scopeOf(ctx, name, action);
  return scope.registry.repository(scope.name);
}

/**
 * The scope of `name` in this request, for a caller allowed `action` there.
 * `logged`: the repository the request is about, recorded on its access
 * line (not for a second one it touches, such as a mount's source).
 */
export function scopeOf(ctx: RequestContext, name: RepositoryName, action: Action, logged = true): RequestScope {
  const ns = ctx.query.get('ns');
  const scope = ctx.routing.resolve(name, ns);
  if (logged) {
    ctx.fields.repository = scope.name;
    if (ns !== null) ctx.fields.ns = ns.slice(0, 255);
    if (scope.upstream !== undefined) ctx.fields.upstream = scope.upstream;
  }
  // Decided on names alone, before anything looks at what exists.
  ctx.gate?.authorize(ctx.caller, { url: name, stored: scope.name, ns: ns !== null && ns !== '' }, action, ctx.origin);
  return scope;
}

/**
 * The write side of a hosted repository, for a caller allowed `action`
 * (push or delete) there; UNSUPPORTED (405) for a proxied one, whose
 * content is its upstream's, as Distribution's proxy mode answers.
 */
export function writerOf(ctx: RequestContext, name: RepositoryName, action: Action, what: string): { writer: RepositoryWriter; stored: RepositoryName } {
  const scope = scopeOf(ctx, name, action);
  if (!isWritable(scope.registry)) {
    const why =
      scope.upstream === undefined
        ? 'only hosted repositories can be written (see the hosted setting)'
        : `${scope.name} is a cache of upstream ${scope.upstream}: only hosted repositories can be written (see the hosted setting)`;
    throw new RegistryError('UNSUPPORTED', `${what} is unsupported here: ${why}`, { detail: { name: scope.name } });
  }
  return { writer: scope.registry.writer(scope.name), stored: scope.name };
}

/** Where a resource of `name` (as the client wrote it) lives, for `Location` headers. */
export const locationOf = (ctx: RequestContext, name: RepositoryName, rest: string): string => `${ctx.prefix}/v2/${name}/${rest}`;

export const API_VERSION_HEADER = 'Docker-Distribution-API-Version';
export const API_VERSION = 'registry/2.0';
