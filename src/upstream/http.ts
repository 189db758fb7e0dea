/**
 * Small helpers shared by the token cache and the upstream client: header
 * flattening, bounded body reads, and error reasons that are safe to show.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';

/** undici gives repeated headers as arrays; callers want one string per name (RFC 9110 §5.3 list join). */
export function flattenHeaders(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/**
 * Keeps the first `limit` bytes of a body. The rest is read and dropped, up
 * to `drainLimit` bytes in all, so the socket can serve the next request;
 * a body longer than that is destroyed (its socket closed). `truncated` is
 * set when anything was dropped.
 */
export async function readLimited(body: Readable, limit: number, drainLimit = limit): Promise<{ data: Buffer; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let kept = 0;
  let total = 0;
  try {
    for await (const chunk of body) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
      total += buf.length;
      if (kept < limit) {
        const part = buf.subarray(0, limit - kept);
        chunks.push(part);
        kept += part.length;
      }
      if (total > drainLimit) {
        body.destroy();
        break;
      }
    }
  } catch {
    return { data: Buffer.concat(chunks), truncated: true };
  }
  return { data: Buffer.concat(chunks), truncated: total > kept };
}

/** Lets a body we will not read go, without an unhandled 'error' event. */
export function drain(body: Readable): void {
  body.on('error', () => undefined);
  body.resume();
}

/**
 * A short reason for a network failure, for messages and logs. undici's
 * messages name hosts and ports, never headers, so they cannot carry
 * credentials; error codes are preferred because they are stable.
 */
export function networkReason(err: unknown): string {
  if (!(err instanceof Error)) return 'unknown error';
  const code = (err as { code?: unknown }).code;
  const message = err.message.length > 200 ? `${err.message.slice(0, 200)}…` : err.message;
  if (typeof code === 'string' && !message.includes(code)) return `${code}: ${message}`;
  return message;
}

export function isAbort(err: unknown, signal: AbortSignal | undefined): boolean {
  if (signal?.aborted) return true;
  return err instanceof Error && (err.name === 'AbortError' || (err as { code?: unknown }).code === 'UND_ERR_ABORTED');
}

/** Waits for `promise` unless `signal` aborts first; the promise itself keeps running (it may be shared). */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

/** Realms are logged without userinfo or query, which could carry secrets. */
export function withoutQuery(realm: string): string {
  try {
    const url = new URL(realm);
    return `${url.origin}${url.pathname}`;
  } catch {
    return '(invalid realm)';
  }
}

/** Stevedore's version, for the User-Agent (package.json is two levels up from src/upstream and dist/upstream alike). */
export function packageVersion(): string {
  try {
    const pkg: unknown = createRequire(import.meta.url)('../../package.json');
    const version = typeof pkg === 'object' && pkg !== null ? (pkg as { version?: unknown }).version : undefined;
    return typeof version === 'string' ? version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}
