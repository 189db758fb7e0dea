/**
 * The error registry: every error code a client can see, its HTTP status and
 * its description, registered once; and the one function that writes an
 * error response. Anything that is not a RegistryError is an internal error:
 * logged with its stack, answered as UNKNOWN without internals.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isRegistryError, type OciErrorCode, RegistryError } from '../registry/errors.js';

export interface ErrorCodeInfo {
  status: number;
  description: string;
}

export const ERROR_CODES: Readonly<Record<OciErrorCode, ErrorCodeInfo>> = {
  BLOB_UNKNOWN: { status: 404, description: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, description: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, description: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, description: 'provided digest did not match uploaded content, or is malformed' },
  MANIFEST_BLOB_UNKNOWN: { status: 400, description: 'manifest references a blob unknown to the registry' },
  MANIFEST_INVALID: { status: 400, description: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, description: 'manifest unknown, or not of a type the client accepts' },
  MANIFEST_UNVERIFIED: { status: 400, description: 'manifest failed signature verification' },
  NAME_INVALID: { status: 400, description: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, description: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, description: 'provided length did not match content length' },
  TAG_INVALID: { status: 400, description: 'manifest tag did not match URI, or is malformed' },
  UNAUTHORIZED: { status: 401, description: 'authentication required' },
  DENIED: { status: 403, description: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, description: 'the operation is unsupported' },
  METHOD_NOT_ALLOWED: { status: 405, description: 'the method is not allowed on this endpoint' },
  NOT_FOUND: { status: 404, description: 'no such endpoint' },
  TOOMANYREQUESTS: { status: 429, description: 'too many requests' },
  RANGE_INVALID: { status: 416, description: 'the requested range cannot be satisfied' },
  PAGINATION_NUMBER_INVALID: { status: 400, description: 'invalid number of results requested' },
  UNAVAILABLE: { status: 503, description: 'the upstream registry is unavailable and the content is not cached' },
  UPSTREAM_ERROR: { status: 502, description: 'the upstream registry answered with an error' },
  NOT_ACCEPTABLE: { status: 406, description: 'no representation the client accepts' },
  HEADERS_TOO_LARGE: { status: 431, description: 'the request has more header lines than allowed' },
  UNKNOWN: { status: 500, description: 'unknown error' },
};

export interface ErrorBody {
  errors: { code: OciErrorCode; message: string; detail?: unknown }[];
}

/** Normalises anything thrown into a RegistryError; `internal` is set when it was not one. */
export function toRegistryError(err: unknown): { error: RegistryError; internal: boolean } {
  if (isRegistryError(err)) return { error: err, internal: false };
  return { error: new RegistryError('UNKNOWN', 'internal server error'), internal: true };
}

export function errorBody(error: RegistryError): ErrorBody {
  const entry: ErrorBody['errors'][number] = { code: error.code, message: error.message };
  if (error.detail !== undefined) entry.detail = error.detail;
  return { errors: [entry] };
}

/** Writes the OCI error body with the code's status; if headers are out already, cuts the connection instead. */
export function writeError(req: IncomingMessage, res: ServerResponse, error: RegistryError, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy(error);
    return;
  }
  const status = error.status ?? ERROR_CODES[error.code].status;
  const body = Buffer.from(JSON.stringify(errorBody(error)));
  const out: Record<string, string | number> = {
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': body.byteLength,
  };
  if (error.retryAfter !== undefined) out['Retry-After'] = error.retryAfter;
  if (error.challenge !== undefined) out['WWW-Authenticate'] = error.challenge;
  // A body the client is still sending would be read to the end to keep the connection: close it instead.
  if (!req.complete && (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0)) out.Connection = 'close';
  if (status === 416 && typeof error.detail === 'object' && error.detail !== null && 'size' in error.detail) {
    out['Content-Range'] = `bytes */${String((error.detail as { size: unknown }).size)}`;
  }
  res.writeHead(status, out);
  res.end(req.method === 'HEAD' ? undefined : body);
}
