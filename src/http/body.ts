/**
 * Request bodies: a manifest is read whole, up to a bound; a blob chunk is
 * handed on as a stream, with what the client said about it.
 */
import type { IncomingMessage } from 'node:http';
import { RegistryError } from '../registry/errors.js';
import type { UploadChunk } from '../registry/services.js';

/** True when the request carries a body (a length above 0, or chunked). */
export function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && length !== '0';
}

/** `Content-Length` as a number, when sent. */
function contentLength(req: IncomingMessage): number | undefined {
  const value = req.headers['content-length'];
  if (value === undefined) return undefined;
  // Node has checked it is a non-negative integer before the request reached us.
  return Number(value);
}

/** Reads the whole body, refusing one over `max` bytes before reading it when it says so, else as soon as it passes. */
export async function readBody(req: IncomingMessage, max: number, what: string): Promise<Buffer> {
  const tooLarge = (): RegistryError =>
    new RegistryError('MANIFEST_INVALID', `${what} invalid: larger than ${max} bytes (limits.manifestbytes)`, { detail: { limit: max } });
  const declared = contentLength(req);
  if (declared !== undefined && declared > max) throw tooLarge();
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    size += part.byteLength;
    if (size > max) throw tooLarge();
    parts.push(part);
  }
  return Buffer.concat(parts, size);
}

const CONTENT_RANGE = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})$/;

/**
 * A blob chunk: the body, its `Content-Length`, and where `Content-Range`
 * says it starts. A range that does not describe the body is RANGE_INVALID
 * or SIZE_INVALID, as Distribution answers it.
 */
export function chunkOf(req: IncomingMessage): UploadChunk {
  const length = contentLength(req);
  const chunk: UploadChunk = { body: req, ...(length === undefined ? {} : { length }) };
  const range = req.headers['content-range'];
  if (range === undefined) return chunk;
  const match = CONTENT_RANGE.exec(range.trim());
  if (match === null) {
    throw new RegistryError('RANGE_INVALID', 'Content-Range must be <start>-<end>, the inclusive byte offsets of the chunk', { detail: { range: range.slice(0, 64) } });
  }
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start) throw new RegistryError('RANGE_INVALID', `Content-Range ${start}-${end} ends before it starts`, { detail: { range: range.slice(0, 64) } });
  if (length !== undefined && length !== end - start + 1) {
    throw new RegistryError('SIZE_INVALID', `Content-Range ${start}-${end} is ${end - start + 1} bytes, Content-Length says ${length}`, { detail: { range: range.slice(0, 64), length } });
  }
  return { ...chunk, start };
}
