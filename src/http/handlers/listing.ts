/** GET /v2/<name>/tags/list and GET /v2/_catalog, paginated. */
import type { RepositoryName } from '../../registry/names.js';
import { repositoryOf, type RequestContext } from '../context.js';
import { nextLink, paginate, parsePage } from '../pagination.js';

const MAX_PAGE = 10_000;
const CATALOG_DEFAULT_PAGE = 100;

function writeJson(ctx: RequestContext, body: unknown, link: string | undefined): void {
  const payload = Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': payload.byteLength,
  };
  if (link !== undefined) headers.Link = link;
  ctx.res.writeHead(200, headers);
  ctx.res.end(ctx.head ? undefined : payload);
}

export async function listTags(ctx: RequestContext, name: RepositoryName): Promise<void> {
  const page = parsePage(ctx.query, MAX_PAGE, MAX_PAGE);
  const tags = paginate(await repositoryOf(ctx, name).tags.list(), page);
  writeJson(ctx, { name, tags }, ctx.query.has('n') ? nextLink(ctx.path, page, tags) : undefined);
}

export async function listCatalog(ctx: RequestContext): Promise<void> {
  const page = parsePage(ctx.query, CATALOG_DEFAULT_PAGE, MAX_PAGE);
  const repositories = page.limit === 0 ? [] : await ctx.routing.catalog(page.limit, page.last);
  writeJson(ctx, { repositories }, nextLink(ctx.path, page, repositories));
}
