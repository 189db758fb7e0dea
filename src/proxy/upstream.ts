/**
 * What the proxy needs from an upstream registry client (src/upstream
 * implements it), and the translation of upstream answers into domain errors.
 */
import type { UpstreamRequest, UpstreamResponse } from '../upstream/client.js';
import { RegistryError } from '../registry/errors.js';

export type { UpstreamRequest, UpstreamResponse } from '../upstream/client.js';

export interface Upstream {
  readonly name: string;
  request(request: UpstreamRequest): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

/** Discards a body we do not read, so the connection goes back to the pool. */
export function discard(response: UpstreamResponse): void {
  response.body.resume();
  response.body.on('error', () => undefined);
}

/** Gives up a body we will not read (a blob): its connection is closed rather than drained. */
export function abandon(response: UpstreamResponse): void {
  response.body.on('error', () => undefined);
  response.body.destroy();
}

/** Maps a non-2xx upstream answer to the error the client should see. */
export function upstreamError(
  upstream: string,
  status: number,
  headers: Record<string, string>,
  notFound: () => RegistryError,
): RegistryError {
  if (status === 404) return notFound();
  if (status === 401 || status === 403) {
    return new RegistryError('DENIED', `upstream ${upstream} refused access: the repository does not exist there or the configured credentials cannot read it`, {
      detail: { upstream, status },
    });
  }
  if (status === 429) {
    const retry = headers['retry-after'];
    return new RegistryError('TOOMANYREQUESTS', `upstream ${upstream} is rate-limiting requests and the content is not cached`, {
      detail: { upstream, status },
      ...(retry === undefined ? {} : { retryAfter: retry }),
    });
  }
  if (status >= 500) {
    return new RegistryError('UPSTREAM_ERROR', `upstream ${upstream} failed with status ${status} and the content is not cached`, {
      detail: { upstream, status },
    });
  }
  return new RegistryError('UPSTREAM_ERROR', `upstream ${upstream} answered with unexpected status ${status}`, {
    detail: { upstream, status },
  });
}

/** Reads a whole (small) upstream body: manifests, indexes, tag lists. Refuses more than `limit` bytes. */
export async function readBody(response: UpstreamResponse, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    total += chunk.byteLength;
    if (total > limit) {
      response.body.destroy();
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${what} larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
