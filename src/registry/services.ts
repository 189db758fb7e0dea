/**
 * The service interfaces the HTTP layer talks to. Local storage implements
 * them; the pull-through proxy decorates them with the same shape, so a
 * handler never knows where content comes from.
 */
import type { Readable } from 'node:stream';
import type { Digest } from './digest.js';
import type { RepositoryName, Tag } from './names.js';
import type { Reference } from './reference.js';
import type { RangeSpec, ResolvedRange } from './range.js';
import type { ReferrerDescriptor } from './referrers.js';

export interface BlobDescriptor {
  digest: Digest;
  size: number;
  mediaType: string;
}

/** Random access to stored content, for copying it out through reused buffers. */
export interface BlobFile {
  /** Reads up to `length` bytes at `position` into the start of `buffer`; 0 at the end. */
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

/** Content to send: a file the HTTP layer copies out itself (fast path), or a stream. */
export type BlobBody = { file: BlobFile; stream?: undefined } | { stream: Readable; file?: undefined };

export type BlobContent = BlobBody & {
  descriptor: BlobDescriptor;
  /** Present when a byte range of the blob is being served. */
  range?: ResolvedRange;
};

/** Per-request options of a blob read; the HTTP layer passes its request's origin as is. */
export interface BlobRequest {
  /** The client's address, for per-client limits. */
  readonly client?: string;
  /** Gives the request up (honoured by the upstream's blob service). */
  readonly signal?: AbortSignal;
}

export interface BlobService {
  /** Describes a blob visible in the repository; throws BLOB_UNKNOWN. */
  stat(digest: Digest, request?: BlobRequest): Promise<BlobDescriptor>;
  /**
   * Streams a blob (or a range of it); throws BLOB_UNKNOWN or RANGE_INVALID,
   * or, through the proxy, TOOMANYREQUESTS / UNAVAILABLE when a new upstream
   * download is beyond the limits.
   */
  open(digest: Digest, range?: RangeSpec, request?: BlobRequest): Promise<BlobContent>;
  /**
   * Where a client may fetch a stored blob directly (storage.redirect: a
   * presigned object-store URL); undefined when it is not stored here yet,
   * or redirects are off: then open() serves it.
   */
  redirect?(digest: Digest, request?: BlobRequest): Promise<string | undefined>;
}

export interface ManifestContent {
  digest: Digest;
  mediaType: string;
  payload: Buffer;
  /** Warnings for the client (`Warning: 299` headers), e.g. stale content served while the upstream is down. */
  warnings?: string[];
}

export interface ManifestRequest {
  /** Media types from the client's Accept header, lowercased; empty when it sent none. */
  accept: readonly string[];
  /** HEAD requests: the proxy may answer from its hot cache without a body. */
  head?: boolean;
}

export interface ManifestService {
  /** Throws MANIFEST_UNKNOWN, or NOT_ACCEPTABLE when the client's Accept rules the stored type out. */
  get(reference: Reference, request: ManifestRequest): Promise<ManifestContent>;
  /**
   * The answer `get` would give, when memory alone has it (a cached manifest,
   * a tag within its TTL, a type the client takes): with the same effects
   * (pull recorded, cache hit counted), but without waiting on anything.
   * Undefined when `get` must decide.
   */
  peek?(reference: Reference, request: ManifestRequest): ManifestContent | undefined;
}

export interface TagService {
  /** Every tag in the repository, sorted; throws NAME_UNKNOWN. */
  list(): Promise<string[]>;
}

export interface ReferrersResult {
  manifests: ReferrerDescriptor[];
  /** True when the artifactType filter was applied (`OCI-Filters-Applied`). */
  filtered: boolean;
  warnings?: string[];
}

export interface ReferrerService {
  /** Manifests whose subject is `subject`, optionally only those of one artifactType. */
  list(subject: Digest, artifactType?: string): Promise<ReferrersResult>;
}

export interface Repository {
  readonly name: RepositoryName;
  readonly blobs: BlobService;
  readonly manifests: ManifestService;
  readonly tags: TagService;
  readonly referrers: ReferrerService;
}

export interface Registry {
  repository(name: RepositoryName): Repository;
  /** Repository names in lexical order, after `last` if given, at most `limit`. */
  catalog(limit: number, last?: string): Promise<string[]>;
}

/** An upload session's state: what a client is told in `Range` and `Location`. */
export interface UploadStatus {
  id: string;
  /** Bytes received so far. */
  size: number;
}

/** A request body to write: the bytes, and what the client said about them. */
export interface UploadChunk {
  body: AsyncIterable<Uint8Array>;
  /** `Content-Range` start: where the client says the chunk begins (416 when it is not the current size). */
  start?: number;
  /** `Content-Length`, when the client sent one: a body of another length is refused. */
  length?: number;
}

/** Blob uploads in one repository (Distribution's `_uploads/<id>/`). */
export interface UploadService {
  /** Opens a session; `Location` is built from its id. */
  create(): Promise<UploadStatus>;
  /** Throws BLOB_UPLOAD_UNKNOWN. */
  status(id: string): Promise<UploadStatus>;
  /** Appends a chunk; throws RANGE_INVALID when it does not start where the upload ends. */
  append(id: string, chunk: UploadChunk): Promise<UploadStatus>;
  /**
   * Appends the last chunk (if any), verifies the whole upload against
   * `digest` and commits it as a blob linked in the repository. The session
   * is gone afterwards, also after a mismatch (DIGEST_INVALID), as in
   * Distribution; a last chunk refused before verification (RANGE_INVALID,
   * SIZE_INVALID, a cut body) leaves it as it was.
   */
  finish(id: string, digest: Digest, chunk?: UploadChunk): Promise<BlobDescriptor>;
  /** Throws BLOB_UPLOAD_UNKNOWN. */
  cancel(id: string): Promise<void>;
}

export interface PushedManifest {
  digest: Digest;
  /** The manifest's `subject`, for the `OCI-Subject` header. */
  subject?: Digest;
}

/**
 * The write side of a hosted repository. Only hosted repositories have one:
 * a proxied repository's content is the upstream's.
 */
export interface RepositoryWriter {
  readonly uploads: UploadService;
  /** Links a blob `from` (a repository name in storage) already holds; undefined when it holds none. */
  mount(digest: Digest, from: RepositoryName): Promise<BlobDescriptor | undefined>;
  /** Validates and stores a manifest, tagging it when the reference is a tag. */
  putManifest(reference: Reference, payload: Buffer, contentType: string | undefined): Promise<PushedManifest>;
  /** Unlinks a revision and every tag pointing at it; throws MANIFEST_UNKNOWN, or UNSUPPORTED when deletes are off. */
  deleteManifest(digest: Digest): Promise<void>;
  /** Removes a tag (its revisions stay); throws MANIFEST_UNKNOWN, or UNSUPPORTED. */
  deleteTag(tag: Tag): Promise<void>;
  /** Unlinks a blob from the repository; throws BLOB_UNKNOWN, or UNSUPPORTED. */
  deleteBlob(digest: Digest): Promise<void>;
}

/** A registry whose repositories can be written (hosted repositories). */
export interface WritableRegistry extends Registry {
  writer(name: RepositoryName): RepositoryWriter;
}

export const isWritable = (registry: Registry): registry is WritableRegistry =>
  typeof (registry as Partial<WritableRegistry>).writer === 'function';
