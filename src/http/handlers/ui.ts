/**
 * The status page (`/ui/`: static files shipped in the package's `ui/`
 * directory, read once) and its JSON API (`/api/v1/…`, docs/api.md). Both
 * sit behind the registry's authentication: with auth on, an anonymous
 * caller is challenged as at `/v2/`, and the repository list holds only
 * what the caller may list.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { RegistryError } from '../../registry/errors.js';
import type { RequestContext } from '../context.js';
import { DEFAULT_PAGE, MAX_PAGE } from '../status.js';

/** What the page and the API read (StatusDocuments). */
export interface StatusSource {
  summary(): Promise<Record<string, unknown>>;
  upstreams(): Record<string, unknown>[];
  history(): Promise<Record<string, unknown>>;
  repositories(limit: number, last: string | undefined, filter: string, visible: (name: string) => boolean): Promise<Record<string, unknown>>;
  /** Stops sampling the history (at shutdown). */
  stop(): void;
}

/** src/http/handlers or dist/http/handlers → the package root's ui/. */
const UI_DIR = new URL('../../../ui/', import.meta.url);

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

const loaded = new Map<string, Promise<Buffer>>();

function asset(name: string): Promise<Buffer> {
  let file = loaded.get(name);
  if (file === undefined) {
    file = readFile(fileURLToPath(new URL(name, UI_DIR)));
    file.catch(() => loaded.delete(name));
    loaded.set(name, file);
  }
  return file;
}

const notFound = (path: string): RegistryError => new RegistryError('NOT_FOUND', 'no such page', { detail: { path: path.slice(0, 256) } });

function readOnly(ctx: RequestContext): void {
  const method = ctx.req.method ?? 'GET';
  if (method !== 'GET' && method !== 'HEAD') {
    throw new RegistryError('UNSUPPORTED', `${method} is not supported: the status API is read-only`, { detail: { method } });
  }
}

export async function serveUi(ctx: RequestContext, source: StatusSource): Promise<void> {
  void source;
  ctx.gate?.authorizeBase(ctx.caller, ctx.origin);
  readOnly(ctx);
  if (ctx.path === '/ui') {
    // Relative, so a configured http.prefix stays in front.
    ctx.res.writeHead(301, { Location: 'ui/', 'Content-Length': 0 });
    ctx.res.end();
    return;
  }
  const name = ctx.path === '/ui/' ? 'index.html' : ctx.path.slice('/ui/'.length);
  const type = Object.hasOwn(FILES, name) ? FILES[name] : undefined;
  if (type === undefined) throw notFound(ctx.path);
  const body = await asset(name);
  ctx.res.writeHead(200, {
    'Content-Type': type,
    'Content-Length': body.byteLength,
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
  });
  ctx.res.end(ctx.head ? undefined : body);
}

function pageSize(ctx: RequestContext): number {
  const raw = ctx.query.get('n');
  if (raw === null || raw === '') return DEFAULT_PAGE;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) {
    throw new RegistryError('PAGINATION_NUMBER_INVALID', `n must be an integer from 1 to ${MAX_PAGE}`, { detail: { n: raw.slice(0, 32) } });
  }
  return n;
}

export async function serveApi(ctx: RequestContext, source: StatusSource): Promise<void> {
  ctx.gate?.authorizeBase(ctx.caller, ctx.origin);
  readOnly(ctx);
  let document: unknown;
  switch (ctx.path) {
    case '/api/v1/summary':
      document = await source.summary();
      break;
    case '/api/v1/upstreams':
      document = { upstreams: source.upstreams() };
      break;
    case '/api/v1/history':
      document = await source.history();
      break;
    case '/api/v1/repositories': {
      const last = ctx.query.get('last') ?? undefined;
      const filter = (ctx.query.get('q') ?? '').slice(0, 256);
      const gate = ctx.gate;
      const visible = gate === undefined ? () => true : (name: string) => gate.mayList(ctx.caller, name);
      document = await source.repositories(pageSize(ctx), last === '' ? undefined : last, filter, visible);
      break;
    }
    default:
      throw notFound(ctx.path);
  }
  const body = Buffer.from(JSON.stringify(document));
  ctx.res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.byteLength, 'Cache-Control': 'no-store' });
  ctx.res.end(ctx.head ? undefined : body);
}
