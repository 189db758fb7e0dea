/**
 * The service interfaces the HTTP layer talks to. Local storage implements
 * them; the pull-through proxy decorates them with the same shape, so a
 * handler never knows where content comes from.
 */
import type { Readable } from 'node:stream';
import type { Digest } from './digest.js';
import type { RepositoryName } from './names.js';
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
