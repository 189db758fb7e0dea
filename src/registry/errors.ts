/**
 * Typed errors of the domain. Every error a client can see is a
 * RegistryError carrying one of the OCI distribution error codes; the HTTP
 * layer maps codes to statuses in one place (src/http/errcode.ts) and is the
 * only writer of error bodies. Lower layers throw these, or their own typed
 * errors that the layer above translates at its boundary.
 */

/** OCI distribution-spec error codes, plus the ones Distribution adds. */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'MANIFEST_UNVERIFIED'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'TAG_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'RANGE_INVALID'
  | 'PAGINATION_NUMBER_INVALID'
  | 'UNAVAILABLE'
  | 'UPSTREAM_ERROR'
  | 'NOT_ACCEPTABLE'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'HEADERS_TOO_LARGE'
  | 'UNKNOWN';

export interface RegistryErrorOptions {
  detail?: unknown;
  cause?: unknown;
  /** Seconds, for TOOMANYREQUESTS / UNAVAILABLE answers. */
  retryAfter?: string;
  /** UNAUTHORIZED answers: how to authenticate (a `WWW-Authenticate` value). */
  challenge?: string;
  /**
   * An HTTP status other than the code's own, where the spec names one for
   * a case its code table does not: set by the HTTP layer only (an upload
   * chunk out of order is `416` with BLOB_UPLOAD_INVALID).
   */
  status?: number;
}

export class RegistryError extends Error {
  readonly code: OciErrorCode;
  readonly detail: unknown;
  readonly retryAfter: string | undefined;
  readonly challenge: string | undefined;
  readonly status: number | undefined;

  constructor(code: OciErrorCode, message: string, options: RegistryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RegistryError';
    this.code = code;
    this.detail = options.detail;
    this.retryAfter = options.retryAfter;
    this.challenge = options.challenge;
    this.status = options.status;
  }
}

export const isRegistryError = (err: unknown): err is RegistryError => err instanceof RegistryError;

export const nameInvalid = (name: string, reason: string): RegistryError =>
  new RegistryError('NAME_INVALID', `invalid repository name: ${reason}`, { detail: { name: truncate(name) } });

export const nameUnknown = (name: string): RegistryError =>
  new RegistryError('NAME_UNKNOWN', 'repository name not known to registry', { detail: { name } });

export const manifestUnknown = (name: string, reference: string): RegistryError =>
  new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown', { detail: { name, reference: truncate(reference) } });

export const blobUnknown = (digest: string): RegistryError =>
  new RegistryError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest: truncate(digest) } });

export const digestInvalid = (digest: string, reason: string): RegistryError =>
  new RegistryError('DIGEST_INVALID', `provided digest did not match uploaded content: ${reason}`, {
    detail: { digest: truncate(digest) },
  });

export const tagInvalid = (tag: string): RegistryError =>
  new RegistryError('TAG_INVALID', 'manifest tag did not match URI', { detail: { tag: truncate(tag) } });

/** A method the endpoint does not serve: UNSUPPORTED (405), as Distribution answers it, naming the ones it does. */
export const methodUnsupported = (method: string, allowed: string): RegistryError =>
  new RegistryError('UNSUPPORTED', `${method} is not supported on this endpoint (allowed: ${allowed})`, { detail: { method } });

export const unsupported = (what: string): RegistryError =>
  new RegistryError('UNSUPPORTED', `the operation is unsupported: ${what}`);

/** Keeps hostile input from bloating error bodies and logs. */
export function truncate(value: string, max = 256): string {
  return value.length > max ? `${value.slice(0, max)}…` : value;
}

/** Codes that mean "the upstream cannot serve now" (down, failing, rate-limiting): cached content may be served instead. */
const OUTAGE_CODES: ReadonlySet<string> = new Set(['UNAVAILABLE', 'UPSTREAM_ERROR', 'TOOMANYREQUESTS']);

export const isUpstreamOutage = (err: unknown): err is RegistryError => err instanceof RegistryError && OUTAGE_CODES.has(err.code);
