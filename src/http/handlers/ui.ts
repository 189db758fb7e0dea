/** The status page (/ui/, static files from the package) and its JSON API (/api/v1/…). */
import { RegistryError } from '../../registry/errors.js';
import type { RequestContext } from '../context.js';

/** What the page and the API read. */
export interface StatusSource {
  /** Placeholder: filled in by the status page work. */
  summary(): Promise<Record<string, unknown>>;
}

export async function serveUi(ctx: RequestContext, source: StatusSource): Promise<void> {
  void source;
  throw new RegistryError('NOT_FOUND', 'the status page is not built yet', { detail: { path: ctx.path } });
}

export async function serveApi(ctx: RequestContext, source: StatusSource): Promise<void> {
  const body = Buffer.from(JSON.stringify(await source.summary()));
  ctx.res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.byteLength });
  ctx.res.end(ctx.head ? undefined : body);
}
