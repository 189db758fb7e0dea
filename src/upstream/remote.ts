/**
 * One upstream registry as the proxy sees it: the same read interfaces as
 * local storage (registry/services.ts), as Distribution's proxy composes a
 * local and a remote store. The upstream's HTTP answers become domain results
 * and RegistryErrors here, so nothing above reads a status code:
 *
 *   404 → MANIFEST_UNKNOWN / BLOB_UNKNOWN / NAME_UNKNOWN (referrers: NOT_FOUND,
 *         "no referrers API")
 *   401, 403 → DENIED; 429 → TOOMANYREQUESTS (Retry-After passed on)
 *   5xx, anything unexpected, a lying or unreadable answer → UPSTREAM_ERROR
 *   unreachable, timeouts → UNAVAILABLE (from the client)
 *
 * Manifests are asked for as a fully capable client (every type Stevedore
 * stores), never with a caller's Accept, and checked against the digest
 * asked for and the one announced before they are returned.
 */
import type { Readable } from 'node:stream';
import { blobUnknown, manifestUnknown, nameUnknown, RegistryError } from '../registry/errors.js';
import { type Digest, digestOf, tryParseDigest } from '../registry/digest.js';
import { MAX_MANIFEST_SIZE, parseManifest } from '../registry/manifest.js';
import { MANIFEST_MEDIA_TYPES, MediaType } from '../registry/mediatypes.js';
import type { RepositoryName } from '../registry/names.js';
import type { RangeSpec } from '../registry/range.js';
import type { Reference } from '../registry/reference.js';
import { descriptorsOfIndex } from '../registry/referrers.js';
import { parseSignedManifest, type SignedSchema1, verifySignatures } from '../registry/schema1.js';
import type {
  BlobContent,
  BlobDescriptor,
  BlobService,
  ManifestContent,
  ManifestService,
  ReferrerService,
  ReferrersResult,
  Registry,
  Repository,
  TagService,
} from '../registry/services.js';
import type { UpstreamRequest, UpstreamResponse } from './client.js';

/** What the remote registry needs of an upstream client (UpstreamClient implements it; tests script it). */
export interface UpstreamTransport {
  readonly name: string;
  request(request: UpstreamRequest): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

/** What every type Stevedore stores: the Accept of a fully capable client. */
export const FULL_ACCEPT: Readonly<Record<string, string>> = Object.freeze({ Accept: MANIFEST_MEDIA_TYPES.join(', ') });

/** Tag lists (each page) larger than this are refused. */
const MAX_TAG_LIST = 16 * 1024 * 1024;
/** Pages of a tag list followed at most. */
const MAX_TAG_PAGES = 100;

/** The query of the next page from a `Link: </v2/…/tags/list?n=…&last=…>; rel="next"` header. */
function nextPage(link: string | undefined): Record<string, string> | undefined {
  const target = link === undefined ? undefined : /<([^>]*)>\s*;\s*rel="?next"?/.exec(link)?.[1];
  if (target === undefined) return undefined;
  const params = new URL(target, 'http://upstream.invalid').searchParams;
  const last = params.get('last');
  if (last === null) return undefined;
  const query: Record<string, string> = { last };
  const n = params.get('n');
  if (n !== null) query.n = n;
  return query;
}

export interface RemoteManifestService extends ManifestService {
  /** The digest the upstream says `reference` names now (a HEAD, free on Docker Hub's rate limit); undefined when it does not say. */
  resolve(reference: Reference): Promise<Digest | undefined>;
}

export interface RemoteBlobService extends BlobService {
  open(digest: Digest, range?: RangeSpec, options?: { signal?: AbortSignal }): Promise<BlobContent & { stream: Readable }>;
}

export interface RemoteRepository extends Repository {
  readonly manifests: RemoteManifestService;
  readonly blobs: RemoteBlobService;
}

export interface RemoteOptions {
  /** limits.manifestbytes: the largest manifest (or referrers answer) read from the upstream. */
  maxManifestBytes?: number;
}

export class RemoteRegistry implements Registry {
  private readonly maxManifestBytes: number;

  constructor(
    readonly transport: UpstreamTransport,
    options: RemoteOptions = {},
  ) {
    this.maxManifestBytes = options.maxManifestBytes ?? MAX_MANIFEST_SIZE;
  }

  get name(): string {
    return this.transport.name;
  }

  repository(name: RepositoryName): RemoteRepository {
    const ask = (request: Omit<UpstreamRequest, 'repository'>): Promise<UpstreamResponse> => this.transport.request({ ...request, repository: name });
    const upstream = this.transport.name;
    return {
      name,
      manifests: new RemoteManifests(upstream, name, ask, this.maxManifestBytes),
      blobs: new RemoteBlobs(upstream, ask),
      tags: new RemoteTags(upstream, name, ask),
      referrers: new RemoteReferrers(upstream, ask, this.maxManifestBytes),
    };
  }

  catalog(): Promise<string[]> {
    return Promise.reject(new RegistryError('UNSUPPORTED', `the catalog of upstream ${this.name} is not asked for: the catalog lists what is cached`));
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}

type Ask = (request: Omit<UpstreamRequest, 'repository'>) => Promise<UpstreamResponse>;

/** Discards a small body we do not read, so the connection goes back to the pool. */
function discard(response: UpstreamResponse): void {
  response.body.on('error', () => undefined);
  response.body.resume();
}

/** Gives up a body we will not read (a blob): its connection is closed rather than drained. */
function abandon(response: UpstreamResponse): void {
  response.body.on('error', () => undefined);
  response.body.destroy();
}

/** The error a non-2xx answer means for the client. */
export function upstreamError(upstream: string, response: UpstreamResponse, notFound: () => RegistryError): RegistryError {
  const { status, headers } = response;
  if (status === 404) return notFound();
  const detail = { upstream, status };
  if (status === 401 || status === 403) {
    return new RegistryError('DENIED', `upstream ${upstream} refused access: the repository does not exist there or the configured credentials cannot read it`, { detail });
  }
  if (status === 429) {
    const retry = headers['retry-after'];
    return new RegistryError('TOOMANYREQUESTS', `upstream ${upstream} is rate-limiting requests and the content is not cached`, {
      detail,
      ...(retry === undefined ? {} : { retryAfter: retry }),
    });
  }
  if (status >= 500) return new RegistryError('UPSTREAM_ERROR', `upstream ${upstream} failed with status ${status} and the content is not cached`, { detail });
  return new RegistryError('UPSTREAM_ERROR', `upstream ${upstream} answered with unexpected status ${status}`, { detail });
}

/** Reads a whole (small) body: manifests, indexes, tag lists. Refuses more than `limit` bytes. */
async function readBody(response: UpstreamResponse, limit: number, what: string, upstream: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    total += chunk.byteLength;
    if (total > limit) {
      response.body.destroy();
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${upstream} sent a ${what} larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function readJson(response: UpstreamResponse, limit: number, what: string, upstream: string): Promise<unknown> {
  const body = await readBody(response, limit, what, upstream);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new RegistryError('UPSTREAM_ERROR', `upstream ${upstream} sent an unreadable ${what}`);
  }
}

class RemoteManifests implements RemoteManifestService {
  constructor(
    private readonly upstream: string,
    private readonly name: RepositoryName,
    private readonly ask: Ask,
    private readonly maxBytes: number,
  ) {}

  private failure(response: UpstreamResponse, reference: Reference): RegistryError {
    return upstreamError(this.upstream, response, () => manifestUnknown(this.name, reference.value));
  }

  private mismatch(what: string, expected: string, actual: string): RegistryError {
    return new RegistryError('UPSTREAM_ERROR', `upstream ${this.upstream} sent a manifest that does not match ${what}`, { detail: { expected, actual } });
  }

  async resolve(reference: Reference): Promise<Digest | undefined> {
    const head = await this.ask({ method: 'HEAD', kind: 'manifests', reference: reference.value, headers: FULL_ACCEPT });
    discard(head);
    if (head.status !== 200) throw this.failure(head, reference);
    return tryParseDigest(head.headers['docker-content-digest'] ?? '');
  }

  /**
   * The manifest as the upstream sent it, its digest computed (for schema1,
   * the payload's) and checked against the reference and the announced
   * Docker-Content-Digest. The caller's Accept plays no part.
   */
  async get(reference: Reference): Promise<ManifestContent> {
    const response = await this.ask({ method: 'GET', kind: 'manifests', reference: reference.value, headers: FULL_ACCEPT });
    if (response.status !== 200) {
      discard(response);
      throw this.failure(response, reference);
    }
    const payload = await readBody(response, this.maxBytes, 'manifest', this.upstream);
    let mediaType: string;
    try {
      mediaType = parseManifest(payload, response.headers['content-type']?.split(';')[0]?.trim(), this.maxBytes).mediaType;
    } catch (err) {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.upstream} sent an invalid manifest: ${(err as Error).message}`, { cause: err });
    }
    const announced = tryParseDigest(response.headers['docker-content-digest'] ?? '');
    const expected = reference.kind === 'digest' ? reference.digest : announced;
    // A signed schema1 document's signatures are checked first: a tampered one is MANIFEST_UNVERIFIED.
    const signed = mediaType === MediaType.DockerSchema1Signed ? this.signed(payload) : undefined;
    if (signed !== undefined) await verifySignatures(signed);
    // Its digest is its payload's (without signatures).
    const hashed = signed?.canonical ?? payload;
    const digest = digestOf(hashed, expected?.algorithm ?? 'sha256');
    if (reference.kind === 'digest' && digest.value !== reference.digest.value) throw this.mismatch('its digest', reference.digest.value, digest.value);
    if (announced !== undefined) {
      const actual = announced.algorithm === digest.algorithm ? digest : digestOf(hashed, announced.algorithm);
      if (actual.value !== announced.value) throw this.mismatch('its Docker-Content-Digest', announced.value, actual.value);
    }
    return { digest, mediaType, payload };
  }

  private signed(payload: Buffer): SignedSchema1 {
    try {
      return parseSignedManifest(payload);
    } catch (err) {
      if (err instanceof RegistryError) throw err; // MANIFEST_INVALID, MANIFEST_UNVERIFIED
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.upstream} sent an invalid schema1 manifest: ${(err as Error).message}`, { cause: err });
    }
  }

}

class RemoteBlobs implements RemoteBlobService {
  constructor(
    private readonly upstream: string,
    private readonly ask: Ask,
  ) {}

  async stat(digest: Digest): Promise<BlobDescriptor> {
    const response = await this.ask({ method: 'HEAD', kind: 'blobs', reference: digest.value });
    discard(response);
    if (response.status !== 200) throw upstreamError(this.upstream, response, () => blobUnknown(digest.value));
    return { digest, size: this.length(response, 'a blob HEAD'), mediaType: MediaType.OctetStream };
  }

  private length(response: UpstreamResponse, what: string): number {
    const size = Number(response.headers['content-length']);
    if (response.headers['content-length'] === undefined || !Number.isSafeInteger(size) || size < 0) {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.upstream} answered ${what} without a Content-Length`);
    }
    return size;
  }

  /**
   * The blob's body from the upstream. With a range `{kind: 'from', start}`
   * (a resume) the upstream must answer 206 from exactly that byte; any other
   * answer is an UPSTREAM_ERROR. The caller must consume or destroy `stream`.
   */
  async open(digest: Digest, range?: RangeSpec, options: { signal?: AbortSignal } = {}): Promise<BlobContent & { stream: Readable }> {
    if (range !== undefined && range.kind !== 'from') throw new RegistryError('UNSUPPORTED', 'only ranges from a byte on are asked of an upstream');
    const response = await this.ask({
      method: 'GET',
      kind: 'blobs',
      reference: digest.value,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(range === undefined ? {} : { headers: { Range: `bytes=${range.start}-` } }),
    });
    // The body may break before the caller reads it: that must reach the caller, not crash the process.
    response.body.on('error', () => undefined);
    if (range === undefined) {
      if (response.status !== 200) {
        discard(response);
        throw upstreamError(this.upstream, response, () => blobUnknown(digest.value));
      }
      let size: number;
      try {
        size = this.length(response, `blob ${digest.value}`);
      } catch (err) {
        abandon(response);
        throw err;
      }
      return { descriptor: { digest, size, mediaType: MediaType.OctetStream }, stream: response.body };
    }
    const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers['content-range'] ?? '');
    if (response.status !== 206 || match === null || Number(match[1]) !== range.start) {
      abandon(response);
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.upstream} cannot resume blob ${digest.value} at byte ${range.start} (status ${response.status})`);
    }
    const size = Number(match[3]);
    return {
      descriptor: { digest, size, mediaType: MediaType.OctetStream },
      range: { start: range.start, end: Number(match[2]), size },
      stream: response.body,
    };
  }
}

class RemoteTags implements TagService {
  constructor(
    private readonly upstream: string,
    private readonly name: RepositoryName,
    private readonly ask: Ask,
  ) {}

  /** Every tag, following the upstream's `Link: <…?last=…>; rel="next"` pages (at most MAX_TAG_PAGES). */
  async list(): Promise<string[]> {
    const all: string[] = [];
    let query: Record<string, string> | undefined;
    for (let page = 0; page < MAX_TAG_PAGES; page++) {
      const response = await this.ask({ method: 'GET', kind: 'tags', reference: 'list', ...(query === undefined ? {} : { query }) });
      if (response.status !== 200) {
        discard(response);
        throw upstreamError(this.upstream, response, () => nameUnknown(this.name));
      }
      const tags = ((await readJson(response, MAX_TAG_LIST, 'tag list', this.upstream)) as { tags?: unknown } | null)?.tags;
      if (Array.isArray(tags)) for (const tag of tags) if (typeof tag === 'string') all.push(tag);
      query = nextPage(response.headers.link);
      if (query === undefined) return all;
    }
    throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.upstream} paginates the tags of ${this.name} beyond ${MAX_TAG_PAGES} pages`);
  }
}

class RemoteReferrers implements ReferrerService {
  constructor(
    private readonly upstream: string,
    private readonly ask: Ask,
    private readonly maxBytes: number,
  ) {}

  /** The upstream's referrers of `subject`; NOT_FOUND when it has no referrers API (a 404). */
  async list(subject: Digest): Promise<ReferrersResult> {
    const response = await this.ask({ method: 'GET', kind: 'referrers', reference: subject.value, headers: { Accept: MediaType.OciIndex } });
    if (response.status !== 200) {
      discard(response);
      throw upstreamError(this.upstream, response, () => new RegistryError('NOT_FOUND', `upstream ${this.upstream} has no referrers API`));
    }
    return { manifests: descriptorsOfIndex(await readJson(response, this.maxBytes, 'referrers answer', this.upstream)), filtered: false };
  }
}
