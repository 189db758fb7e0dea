/**
 * GET and POST /auth/token: Stevedore's own token endpoint (auth.token.issue).
 *
 * - `GET /auth/token?service=…&scope=…` with optional Basic credentials:
 *   Docker's token protocol (docker, skopeo, podman, containerd's fallback);
 * - `POST /auth/token` with a form body `grant_type=password&username=…&
 *   password=…&scope=…`: the OAuth2 flavour containerd tries first.
 *
 * No credentials: a token with what anonymous callers may do. Wrong ones:
 * 401 (and the lockout). The token grants of each scope what the rules
 * allow on the name the scope routes to.
 */
import type { Caller } from '../../auth/caller.js';
import { ANONYMOUS } from '../../auth/caller.js';
import type { Gate } from '../../auth/gate.js';
import { parseScopes } from '../../auth/issuer.js';
import { RegistryError } from '../../registry/errors.js';
import { parseRepositoryName } from '../../registry/names.js';
import type { RequestContext } from '../context.js';

const MAX_FORM_BYTES = 64 * 1024;

async function readForm(ctx: RequestContext): Promise<URLSearchParams> {
  const type = (ctx.req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new RegistryError('UNSUPPORTED', 'POST /auth/token takes an application/x-www-form-urlencoded body');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > MAX_FORM_BYTES) throw new RegistryError('UNSUPPORTED', `the form body is larger than ${MAX_FORM_BYTES} bytes`);
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function oauthError(ctx: RequestContext, status: number, error: string, description: string): void {
  const body = Buffer.from(JSON.stringify({ error, error_description: description }));
  ctx.res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.byteLength, 'Cache-Control': 'no-store' });
  ctx.res.end(body);
}

export async function issueToken(ctx: RequestContext, gate: Gate): Promise<void> {
  const method = ctx.req.method ?? 'GET';
  let params = ctx.query;
  let caller: Caller;
  if (method === 'POST') {
    params = await readForm(ctx);
    const grant = params.get('grant_type');
    if (grant !== 'password') {
      oauthError(ctx, 400, 'unsupported_grant_type', 'only the password grant is supported (no refresh tokens are issued)');
      return;
    }
    caller = await gate.login(params.get('username') ?? '', params.get('password') ?? '', ctx.origin);
  } else if (method === 'GET' || method === 'HEAD') {
    caller = await gate.authenticate(ctx.req.headers.authorization, ctx.origin);
    // A token can only be traded for a password here, not for another token.
    if (caller.via === 'bearer') caller = ANONYMOUS;
  } else {
    throw new RegistryError('METHOD_NOT_ALLOWED', `${method} is not allowed on /auth/token`);
  }
  const scopes = parseScopes(params.getAll('scope'));
  const resolve = (name: string): string | undefined => {
    try {
      return ctx.routing.resolve(parseRepositoryName(name), null).name;
    } catch {
      return undefined;
    }
  };
  const issued = await gate.issue(caller, scopes, resolve);
  if (caller.user !== undefined) ctx.fields.user = caller.user;
  const body = Buffer.from(JSON.stringify(issued));
  ctx.res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.byteLength, 'Cache-Control': 'no-store' });
  ctx.res.end(ctx.head ? undefined : body);
}
