/** What every handler receives. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from '../registry/services.js';

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  query: URLSearchParams;
  head: boolean;
  registry: Registry;
  log: Logger;
  /** Extra fields for the access log line (repository, digest, cache outcome). */
  fields: Record<string, unknown>;
  /** Body bytes of a streamed response (a blob) that reached the socket, for the access log. */
  streamed?: { bytes: number };
}

export const API_VERSION_HEADER = 'Docker-Distribution-API-Version';
export const API_VERSION = 'registry/2.0';
