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

/** The most stored names one filtered catalog request looks at before it answers with what it found. */
const MAX_SCANNED = 50_000;

export async function listCatalog(ctx: RequestContext): Promise<void> {
  const page = parsePage(ctx.query, CATALOG_DEFAULT_PAGE, MAX_PAGE);
  const { gate } = ctx;
  if (gate === undefined) {
    const repositories = page.limit === 0 ? [] : await ctx.routing.catalog(page.limit, page.last);
    writeJson(ctx, { repositories }, nextLink(ctx.path, page, repositories));
    return;
  }
  gate.authorizeCatalog(ctx.caller, ctx.origin);
  // Only what the caller may pull: read on past what it may not see until the page is full.
  const repositories: string[] = [];
  let last = page.last;
  let scanned = 0;
  let more = page.limit > 0;
  while (more && repositories.length < page.limit && scanned < MAX_SCANNED) {
    const batch = await ctx.routing.catalog(Math.max(page.limit, CATALOG_DEFAULT_PAGE), last);
    for (const name of batch) {
      scanned++;
      last = name;
      if (gate.mayList(ctx.caller, name)) repositories.push(name);
      if (repositories.length === page.limit) break;
    }
    more = batch.length === Math.max(page.limit, CATALOG_DEFAULT_PAGE);
  }
  // A page cut short by the scan bound still links on, from the last name looked at.
  const cut = repositories.length < page.limit && more && last !== undefined;
  writeJson(ctx, { repositories }, cut ? `<${ctx.path}?${new URLSearchParams({ n: String(page.limit), last: last as string }).toString()}>; rel="next"` : nextLink(ctx.path, page, repositories));
}
