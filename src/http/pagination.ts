/** `n`/`last` pagination for tag lists and the catalog, with RFC 5988 `Link` headers. */
import { RegistryError } from '../registry/errors.js';

export interface Page {
  limit: number;
  last?: string;
}

export function parsePage(query: URLSearchParams, defaultLimit: number, maxLimit: number): Page {
  const n = query.get('n');
  let limit = defaultLimit;
  if (n !== null) {
    if (!/^\d{1,9}$/.test(n)) {
      throw new RegistryError('PAGINATION_NUMBER_INVALID', 'invalid number of results requested: n must be a non-negative integer', {
        detail: { n: n.slice(0, 32) },
      });
    }
    limit = Math.min(Number(n), maxLimit);
  }
  const last = query.get('last');
  return last === null || last === '' ? { limit } : { limit, last };
}

/** The `Link` header pointing at the next page, when this one was full. */
export function nextLink(path: string, page: Page, items: readonly string[]): string | undefined {
  if (page.limit === 0 || items.length < page.limit) return undefined;
  const last = items[items.length - 1];
  if (last === undefined) return undefined;
  const query = new URLSearchParams({ n: String(page.limit), last });
  return `<${path}?${query.toString()}>; rel="next"`;
}

/** Applies a page to a sorted list. */
export function paginate(items: readonly string[], page: Page): string[] {
  const start = page.last === undefined ? 0 : items.findIndex((item) => item > (page.last as string));
  if (start < 0) return [];
  return items.slice(start, start + page.limit);
}
