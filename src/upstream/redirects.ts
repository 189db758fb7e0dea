/**
 * Blob redirects, followed by hand: registries send blob GETs to a CDN or an
 * object store with a signed URL. The registry's Authorization header goes
 * only to the registry's own origin (a signed URL carries its own
 * authority, and an S3 presigned URL even fails when another is added).
 * Signed URLs are credentials of a kind: they are not returned, cached or
 * logged; only the target host may appear in messages.
 */
import type { Readable } from 'node:stream';
import { RegistryError } from '../registry/errors.js';
import { drain } from './http.js';

export interface Exchange {
  status: number;
  headers: Record<string, string>;
  body: Readable;
}

export type Send = (url: URL, headers: Record<string, string>) => Promise<Exchange>;

export const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export const isRedirect = (status: number): boolean => REDIRECTS.has(status);

/**
 * Follows `first` while it redirects, at most MAX_REDIRECTS hops. The method
 * is kept (a 303 turns a GET into a GET; a HEAD stays a HEAD, as Go's client
 * used by Distribution does). `authorization` is sent only to `registryOrigin`.
 */
export async function followRedirects(options: {
  upstream: string;
  registryOrigin: string;
  start: URL;
  first: Exchange;
  headers: Record<string, string>;
  authorization: string | undefined;
  send: Send;
}): Promise<Exchange> {
  const { upstream, registryOrigin, headers, authorization, send } = options;
  const fail = (what: string): RegistryError =>
    new RegistryError('UPSTREAM_ERROR', `upstream ${upstream} answered a blob request with ${what}`, { detail: { upstream } });
  let current = options.start;
  let response = options.first;
  for (let hop = 0; isRedirect(response.status); hop++) {
    drain(response.body);
    const location = response.headers.location;
    if (hop >= MAX_REDIRECTS) throw fail(`more than ${MAX_REDIRECTS} redirects`);
    if (location === undefined) throw fail(`status ${response.status} without a Location`);
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw fail('an invalid Location');
    }
    if (next.protocol !== 'https:' && next.protocol !== 'http:') throw fail(`a ${next.protocol} Location`);
    next.username = '';
    next.password = '';
    const sameOrigin = next.origin === registryOrigin;
    response = await send(next, sameOrigin && authorization !== undefined ? { ...headers, authorization } : headers);
    current = next;
  }
  return response;
}
