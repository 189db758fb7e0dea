/**
 * A small registry that speaks the distribution protocol for one repository
 * (or a few with the same content, `alsoServe`), for the faults a real
 * Distribution cannot produce: a wrong byte, a cut connection, a stall, a held
 * download, a fixed odd answer per endpoint. It counts the requests it receives.
 */
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';

/**
 * 'stall': half the blob, then silence (no FIN); a Range resume is served cleanly.
 * 'stall-always': resumes too get their headers and then silence: the upstream never finishes.
 */
export type BlobFault = 'none' | 'wrong-byte' | 'cut' | 'stall' | 'stall-always' | 'no-range';

/** What `answers` makes the fake reply to every GET and HEAD of one kind of endpoint. */
export interface FakeAnswer {
  status: number;
  headers?: Record<string, string>;
  /** Sent to GETs; HEADs get the headers only. */
  body?: Buffer | string;
  /** Send the body chunked, without Content-Length (a HEAD then has no Content-Length either). */
  chunked?: boolean;
}

export type FakeEndpoint = 'manifests' | 'blobs' | 'tags' | 'referrers';

export interface FakeUpstreamOptions {
  /** More repositories served with the same content as the first. */
  alsoServe?: string[];
}

export interface FakeBlob {
  content: Buffer;
  digest: string;
}

export interface FakeUpstream {
  url: string;
  host: string;
  blobs: Map<string, FakeBlob>;
  manifests: Map<string, { payload: Buffer; mediaType: string; digest: string }>;
  /** subject digest → referrers index; absent: 404, as from a registry without the API. */
  referrers: Map<string, Buffer>;
  /** Fault applied to the next blob GETs (not to Range resumes unless `faultResumes`). */
  fault: BlobFault;
  faultResumes: boolean;
  /** When set, every manifest request is answered with this status (e.g. 429 with Retry-After). */
  manifestOverride?: { status: number; headers: Record<string, string> };
  /** Extra headers on the normal manifest answers, per method (Docker Hub's `ratelimit-*`); absent: none. */
  manifestHeaders?: Partial<Record<'GET' | 'HEAD', Record<string, string>>>;
  /** When set, every blob GET and HEAD is answered with this status (a CDN's 5xx), the base and manifests still fine. */
  blobStatus?: number;
  /** When set, `GET /v2/<repo>/tags/list` lists these (as given, unsorted); absent: 404, as before. */
  tags?: string[];
  /** Per endpoint kind, a fixed answer that replaces the normal handling (for 401, 418, bad JSON, chunked bodies…). */
  answers: Partial<Record<FakeEndpoint, FakeAnswer>>;
  /** When set, blob GETs (not HEADs, not Range resumes) wait for it before answering: a held download. */
  blobGate?: Promise<void>;
  /** `METHOD path` of every request, in order. */
  log: string[];
  count(method: string, pathPart: string): number;
  close(): Promise<void>;
}

export const sha256 = (data: Buffer | string): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

export function blob(content: Buffer): FakeBlob {
  return { content, digest: sha256(content) };
}

export async function startFakeUpstream(repository: string, options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const sockets = new Set<Socket>();
  const state: Omit<FakeUpstream, 'url' | 'host' | 'close' | 'count'> = {
    blobs: new Map(),
    manifests: new Map(),
    referrers: new Map(),
    answers: {},
    fault: 'none',
    faultResumes: false,
    log: [],
  };
  const prefixes = [repository, ...(options.alsoServe ?? [])].map((name) => `/v2/${name}/`);

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '/';
    state.log.push(`${req.method} ${path}`);
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    if (path === '/v2/') {
      res.end('{}');
      return;
    }
    const prefix = prefixes.find((p) => path.startsWith(p));
    if (prefix === undefined) return notFound(res, 'NAME_UNKNOWN');
    const [kind, reference = ''] = path.slice(prefix.length).split('/');
    const answer = state.answers[kind as FakeEndpoint];
    if (answer !== undefined) return sendAnswer(req, res, answer);
    if (kind === 'tags' && reference.split('?')[0] === 'list' && state.tags !== undefined) {
      const body = JSON.stringify({ name: prefix.slice('/v2/'.length, -1), tags: state.tags });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (kind === 'manifests' && state.manifestOverride) {
      res.writeHead(state.manifestOverride.status, { 'Content-Type': 'application/json', ...state.manifestOverride.headers })
      res.end('{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}')
      return
    }
    if (kind === 'manifests') {
      const manifest = state.manifests.get(reference);
      if (!manifest) return notFound(res, 'MANIFEST_UNKNOWN');
      res.writeHead(200, {
        'Content-Type': manifest.mediaType,
        'Content-Length': manifest.payload.length,
        'Docker-Content-Digest': manifest.digest,
        ...state.manifestHeaders?.[req.method === 'HEAD' ? 'HEAD' : 'GET'],
      });
      res.end(req.method === 'HEAD' ? undefined : manifest.payload);
      return;
    }
    if (kind === 'referrers') {
      const index = state.referrers.get(reference.split('?')[0] ?? '')
      if (!index) return notFound(res, 'NOT_FOUND')
      res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.index.v1+json', 'Content-Length': index.length })
      res.end(index)
      return
    }
    if (kind !== 'blobs') return notFound(res, 'NOT_FOUND');
    if (state.blobStatus !== undefined) {
      res.writeHead(state.blobStatus, { 'Content-Type': 'application/json' });
      res.end('{"errors":[{"code":"UNKNOWN","message":"internal server error"}]}');
      return;
    }
    const found = state.blobs.get(reference);
    if (!found) return notFound(res, 'BLOB_UNKNOWN');
    const gate = req.method === 'GET' && req.headers.range === undefined ? state.blobGate : undefined;
    if (gate === undefined) serveBlob(req, res, found, state);
    else void gate.then(() => serveBlob(req, res, found, state));
  };

  const server: Server = createServer(handler);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    count: (method: string, pathPart: string) => state.log.filter((l) => l.startsWith(`${method} `) && l.includes(pathPart)).length,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}

function sendAnswer(req: IncomingMessage, res: ServerResponse, answer: FakeAnswer): void {
  const body = answer.body === undefined ? undefined : Buffer.from(answer.body);
  const headers: Record<string, string | number> = { ...answer.headers };
  if (body !== undefined && !answer.chunked) headers['Content-Length'] = body.length;
  res.writeHead(answer.status, headers);
  if (req.method === 'HEAD' || body === undefined) {
    res.end();
    return;
  }
  if (answer.chunked) {
    // A write before end: Node sends `Transfer-Encoding: chunked` rather than computing a length.
    res.write(body);
    res.end();
  } else res.end(body);
}

function notFound(res: ServerResponse, code: string): void {
  res.writeHead(404, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ errors: [{ code, message: code.toLowerCase() }] }));
}

function serveBlob(req: IncomingMessage, res: ServerResponse, found: FakeBlob, state: Pick<FakeUpstream, 'fault' | 'faultResumes'>): void {
  const size = found.content.length;
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  // A resume (Range request) is served cleanly unless `faultResumes`, in which case the
  // upstream ignores Range and the transfer cannot be resumed.
  const honourRange = range !== null && !state.faultResumes && state.fault !== 'no-range';
  const fault = range !== null && state.fault !== 'stall-always' ? 'none' : state.fault;
  if (req.method === 'HEAD') {
    res.writeHead(200, { 'Content-Length': size, 'Docker-Content-Digest': found.digest, 'Content-Type': 'application/octet-stream' });
    res.end();
    return;
  }
  if (range && honourRange) {
    const start = Number(range[1]);
    res.writeHead(206, { 'Content-Length': size - start, 'Content-Range': `bytes ${start}-${size - 1}/${size}` });
    if (fault === 'stall-always') res.flushHeaders(); // and then silence
    else res.end(found.content.subarray(start));
    return;
  }
  res.writeHead(200, { 'Content-Length': size, 'Docker-Content-Digest': found.digest, 'Content-Type': 'application/octet-stream' });
  const half = Math.floor(size / 2);
  switch (fault) {
    case 'wrong-byte': {
      const body = Buffer.from(found.content);
      body[half] = (body[half] ?? 0) ^ 0xff;
      res.end(body);
      return;
    }
    case 'cut':
      res.write(found.content.subarray(0, half), () => res.socket?.destroy());
      return;
    case 'stall':
    case 'stall-always':
      res.write(found.content.subarray(0, half));
      return; // never ends: the client's body timeout must fire
    default:
      res.end(found.content);
  }
}
