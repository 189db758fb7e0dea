/**
 * S3 storage driver, key for key where Distribution's s3-aws driver puts the
 * layout, so both can serve one bucket: the object key of a driver path is
 * `s3Key(rootdirectory, path)` (Distribution's `s3Path`: the root without
 * trailing slashes, then the path, without leading slashes):
 *
 *   rootdirectory ''        /docker/registry/v2/blobs/sha256/ab/ab…/data → docker/registry/v2/blobs/sha256/ab/ab…/data
 *   rootdirectory '/reg/'   the same path                                → reg/docker/registry/v2/blobs/sha256/ab/ab…/data
 *
 * Directories are implicit, as in Distribution: a directory is a key prefix
 * ending in '/' that some object has. Every object write is atomic by nature
 * (PutObject, CompleteMultipartUpload, CopyObject), so there are no temp
 * objects; the only scratch an interrupted run leaves is an open multipart
 * upload, which `recover` aborts once it is an hour old. A writer's bytes
 * become visible only when its commit completes the upload (`flushed` stays 0
 * until then), so there is no random access (`open`): blob fills need a
 * local spool. Every request has a timeout; a missing key is a
 * PathNotFoundError, anything else an S3RequestError naming the operation.
 * Writers (multipart uploads) are in s3-writer.ts, over this file's requests.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompletedPart,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import {
  type ByteRange,
  checkPath,
  type FileInfo,
  type FileWriter,
  PathNotFoundError,
  type RecoverOptions,
  type ScratchReport,
  type StorageDriver,
} from './driver.js';
import { MAX_PART_SIZE, MIN_PART_SIZE, S3Writer } from './s3-writer.js';

export { MAX_PART_SIZE, MIN_PART_SIZE } from './s3-writer.js';

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last), and its largest. */
/** ListObjectsV2 and DeleteObjects take at most this many keys. */
const MAX_KEYS = 1000;
/** A multipart upload nobody completed within this long is garbage: a writer completes or aborts its own at once. */
const ABANDONED_UPLOAD_MS = 60 * 60 * 1000;

/** Distribution's `storage.s3` keys, with its meanings and defaults; the last three are Stevedore's own. */
export interface S3DriverOptions {
  /** Required for AWS; with `regionendpoint` it defaults to us-east-1 (what S3-compatible stores sign with). */
  region?: string;
  bucket: string;
  /** An S3-compatible endpoint (radosgw, MinIO), with or without a scheme; without one `secure` picks it. */
  regionendpoint?: string;
  /** Key prefix of the whole layout. */
  rootdirectory?: string;
  /** Both, or neither for the SDK's default credential chain (environment, instance role). */
  accesskey?: string;
  secretkey?: string;
  forcepathstyle?: boolean;
  /** HTTPS (default true). */
  secure?: boolean;
  /** Accept any TLS certificate. */
  skipverify?: boolean;
  /** Multipart upload part size in bytes: default 10 MiB, at least 5 MiB. */
  chunksize?: number;
  /** Moves of objects larger than this copy in parts (default 32 MiB, as Distribution measured). */
  multipartcopythresholdsize?: number;
  /** Part size of those copies (default 32 MiB, at least 5 MiB). */
  multipartcopychunksize?: number;
  /** Parts copied at once (Distribution: 100; default here 16, within the socket pool). */
  multipartcopymaxconcurrency?: number;
  /** Per-request timeout in milliseconds (default 60 s); a reader's stream has it as an idle timeout. */
  requesttimeout?: number;
  /** Keys per list page, at most 1000 (the default): smaller only to test pagination. */
  listpagesize?: number;
  /** Clock for the age of abandoned uploads. */
  now?: () => number;
}

/** A request S3 refused or that failed (timeouts included); `s3Code` is S3's error code when it sent one. */
export class S3RequestError extends Error {
  readonly code = 'ERR_STORAGE_S3_REQUEST';
  constructor(
    readonly operation: string,
    readonly key: string,
    readonly s3Code: string | undefined,
    readonly status: number | undefined,
    options: { cause: unknown },
  ) {
    super(`s3 ${operation} ${JSON.stringify(key)}: ${describe(options.cause)}`, options);
    this.name = 'S3RequestError';
  }
}

export class S3OptionsError extends Error {
  readonly code = 'ERR_STORAGE_S3_OPTIONS';
  constructor(message: string) {
    super(`storage.s3: ${message}`);
    this.name = 'S3OptionsError';
  }
}

/** Distribution's `s3Path`: the object key of a driver path. */
export function s3Key(rootdirectory: string, path: string): string {
  return (rootdirectory.replace(/\/+$/, '') + path).replace(/^\/+/, '');
}

interface SdkError {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const describe = (err: unknown): string =>
  err instanceof Error ? `${err.name}: ${err.message}${err.name === 'UnknownError' ? ' (no error body)' : ''}` : String(err);

/** A key that is not there; a missing bucket or upload is a configuration or state error instead. */
const isMissingKey = (err: unknown): boolean => {
  const { name, $metadata } = (err ?? {}) as SdkError;
  if (name === 'NoSuchBucket' || name === 'NoSuchUpload') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || $metadata?.httpStatusCode === 404;
};

/** `count` byte ranges covering `size`, as even as can be, so none but possibly the last is under the minimum. */
export function partRanges(size: number, chunk: number): ByteRange[] {
  const count = Math.max(1, Math.floor(size / chunk), Math.ceil(size / MAX_PART_SIZE));
  return Array.from({ length: count }, (_, i) => ({
    start: Math.floor((i * size) / count),
    end: Math.floor(((i + 1) * size) / count) - 1,
  }));
}

function sizeOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const size = value ?? fallback;
  if (!Number.isSafeInteger(size) || size < min || size > max) throw new S3OptionsError(`${name} must be an integer from ${min} to ${max}, not ${size}`);
  return size;
}

export class S3Driver implements StorageDriver {
  readonly name = 's3';
  /** A writer's object appears whole at commit; a cancelled writer leaves what was at its path. */
  readonly atomicWriters = true;
  readonly client: S3Client;
  readonly bucket: string;
  readonly rootDirectory: string;
  readonly chunkSize: number;
  private readonly copyThreshold: number;
  readonly copyChunkSize: number;
  private readonly copyConcurrency: number;
  private readonly timeoutMs: number;
  private readonly pageSize: number;
  private readonly now: () => number;

  constructor(options: S3DriverOptions) {
    if (!options.bucket) throw new S3OptionsError('bucket is required');
    if (!options.region && !options.regionendpoint) throw new S3OptionsError('region is required without regionendpoint');
    if (Boolean(options.accesskey) !== Boolean(options.secretkey)) throw new S3OptionsError('accesskey and secretkey go together');
    this.bucket = options.bucket;
    this.rootDirectory = options.rootdirectory ?? '';
    this.chunkSize = sizeOption('chunksize', options.chunksize, 10 * MiB, MIN_PART_SIZE, MAX_PART_SIZE);
    this.copyThreshold = sizeOption('multipartcopythresholdsize', options.multipartcopythresholdsize, 32 * MiB, 0, MAX_PART_SIZE);
    this.copyChunkSize = sizeOption('multipartcopychunksize', options.multipartcopychunksize, 32 * MiB, MIN_PART_SIZE, MAX_PART_SIZE);
    this.copyConcurrency = sizeOption('multipartcopymaxconcurrency', options.multipartcopymaxconcurrency, 16, 1, 1000);
    this.timeoutMs = sizeOption('requesttimeout', options.requesttimeout, 60_000, 1, 3_600_000);
    this.pageSize = sizeOption('listpagesize', options.listpagesize, MAX_KEYS, 1, MAX_KEYS);
    this.now = options.now ?? Date.now;
    const secure = options.secure ?? true;
    let endpoint = options.regionendpoint || undefined;
    if (endpoint !== undefined && !/^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint)) endpoint = `${secure ? 'https' : 'http'}://${endpoint}`;
    // Small requests dominate (links, HEADs): keep connections alive; the idle timeout also bounds a stalled reader.
    const agent = { keepAlive: true, maxSockets: 64 };
    this.client = new S3Client({
      region: options.region || 'us-east-1',
      endpoint,
      forcePathStyle: options.forcepathstyle ?? false,
      tls: secure,
      ...(options.accesskey && options.secretkey ? { credentials: { accessKeyId: options.accesskey, secretAccessKey: options.secretkey } } : {}),
      // Checksums only where S3 demands them (DeleteObjects): S3-compatible stores lag on the newer ones,
      // and blob contents are verified by digest above this layer.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: Math.min(this.timeoutMs, 10_000),
        socketTimeout: this.timeoutMs,
        httpAgent: new HttpAgent(agent),
        httpsAgent: new HttpsAgent({ ...agent, ...(options.skipverify ? { rejectUnauthorized: false } : {}) }),
      },
    });
  }

  /** The object key of a path, after the path passed checkPath. */
  key(path: string): string {
    return s3Key(this.rootDirectory, checkPath(path));
  }

  /** The prefix of everything under a directory path. */
  private prefix(path: string): string {
    return path === '/' ? this.key('/') : `${this.key(path)}/`;
  }

  /**
   * Runs one request under a timeout and translates its failure (to
   * PathNotFoundError when `path` is given and the key is missing). The
   * timeout ends when `run` resolves: a GetObject whose body is handed on
   * streams for as long as it keeps moving (the socket's idle timeout).
   */
  async request<T>(operation: string, key: string, path: string | undefined, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
    try {
      return await run(controller.signal);
    } catch (err) {
      if (path !== undefined && isMissingKey(err)) throw new PathNotFoundError(path);
      const cause = controller.signal.aborted ? controller.signal.reason : err;
      const { name, $metadata } = err as SdkError;
      throw new S3RequestError(operation, key, $metadata === undefined ? undefined : name, $metadata?.httpStatusCode, { cause });
    } finally {
      clearTimeout(timer);
    }
  }

  async getContent(path: string): Promise<Buffer> {
    const key = this.key(path);
    return this.request('GetObject', key, path, async (abortSignal) => {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal });
      return Buffer.from((await out.Body?.transformToByteArray()) ?? []);
    });
  }

  async putContent(path: string, content: Uint8Array | string): Promise<void> {
    const key = this.key(path);
    const body = typeof content === 'string' ? Buffer.from(content) : content;
    await this.request('PutObject', key, undefined, (abortSignal) =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: 'application/octet-stream' }), { abortSignal }),
    );
  }

  async reader(path: string, range?: ByteRange): Promise<Readable> {
    const key = this.key(path);
    if (range !== undefined && !(range.start >= 0 && range.end >= range.start)) throw new RangeError(`invalid byte range ${range.start}-${range.end}`);
    try {
      const out = await this.request(
        'GetObject',
        key,
        path,
        (abortSignal) =>
          this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range && `bytes=${range.start}-${range.end}` }), { abortSignal }),
      );
      // In Node the body is the http.IncomingMessage itself.
      return (out.Body as Readable | undefined) ?? Readable.from([]);
    } catch (err) {
      // A range starting at or past the end reads nothing, as a file's does.
      if (range !== undefined && err instanceof S3RequestError && err.status === 416) return Readable.from([]);
      throw err;
    }
  }

  /** HEAD of one object: its size and time, or undefined when no object has this exact key (or the bucket is missing: a HEAD cannot tell). */
  async head(path: string): Promise<FileInfo | undefined> {
    const key = this.key(path);
    try {
      const out = await this.request('HeadObject', key, path, (abortSignal) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal }));
      return { path, size: out.ContentLength ?? 0, modTime: out.LastModified ?? new Date(0), isDir: false };
    } catch (err) {
      if (err instanceof PathNotFoundError) return undefined;
      throw err;
    }
  }

  private listPage(prefix: string, delimiter: boolean, token: string | undefined, startAfter?: string): Promise<ListObjectsV2CommandOutput> {
    return this.request('ListObjectsV2', prefix, undefined, (abortSignal) =>
      this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          Delimiter: delimiter ? '/' : undefined,
          MaxKeys: this.pageSize,
          ContinuationToken: token,
          StartAfter: startAfter,
        }),
        { abortSignal },
      ),
    );
  }

  /** A file, else a directory (a prefix with objects: its time is the newest of its first page), else undefined. */
  async stat(path: string): Promise<FileInfo | undefined> {
    const file = path === '/' ? undefined : await this.head(path);
    if (file !== undefined) return file;
    const page = await this.listPage(this.prefix(path), false, undefined);
    const objects = page.Contents ?? [];
    if (objects.length === 0) return undefined;
    const newest = Math.max(...objects.map((object) => object.LastModified?.getTime() ?? 0));
    return { path, size: 0, modTime: new Date(newest), isDir: true };
  }

  async *walk(path: string): AsyncGenerator<FileInfo> {
    const prefix = this.prefix(path);
    const base = this.key('/');
    let token: string | undefined;
    do {
      const page = await this.listPage(prefix, false, token);
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || object.Key.endsWith('/')) continue;
        yield { path: `/${object.Key.slice(base.length)}`, size: object.Size ?? 0, modTime: object.LastModified ?? new Date(0), isDir: false };
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async list(path: string): Promise<string[]> {
    const prefix = this.prefix(path);
    const names = new Set<string>();
    let token: string | undefined;
    do {
      const page = await this.listPage(prefix, true, token);
      for (const object of page.Contents ?? []) names.add(object.Key?.slice(prefix.length) ?? '');
      for (const common of page.CommonPrefixes ?? []) names.add(common.Prefix?.slice(prefix.length, -1) ?? '');
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    // A key ending in '/' (a folder marker some tools make) or holding '//' names nothing.
    names.delete('');
    if (names.size === 0 && path !== '/') throw new PathNotFoundError(path);
    return [...names].sort();
  }

  /** Copies an object (in parts when large), replacing the destination atomically, then deletes the source. Files only. */
  async move(source: string, destination: string): Promise<void> {
    const from = this.key(source);
    const to = this.key(destination);
    const info = await this.head(source);
    if (info === undefined) throw new PathNotFoundError(source);
    if (from === to) return;
    const copySource = this.copySource(from);
    if (info.size <= this.copyThreshold) {
      await this.request('CopyObject', to, undefined, (abortSignal) =>
        this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource: copySource }), { abortSignal }),
      );
    } else {
      const uploadId = await this.createUpload(to);
      try {
        const parts = await this.copyParts(to, uploadId, copySource, info.size, 1, this.copyChunkSize);
        await this.completeUpload(to, uploadId, parts);
      } catch (err) {
        await this.abortUpload(to, uploadId).catch(() => undefined);
        throw err;
      }
    }
    await this.request('DeleteObject', from, undefined, (abortSignal) =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: from }), { abortSignal }),
    );
  }

  /** Deletes the object at `path` and every object under `path/`, a page of keys per request. */
  async delete(path: string): Promise<void> {
    const key = this.key(path);
    const prefix = this.prefix(path);
    const [file, first] = await Promise.all([path === '/' ? undefined : this.head(path), this.listPage(prefix, false, undefined)]);
    if (file === undefined && !first.Contents?.length) throw new PathNotFoundError(path);
    // StartAfter, not a continuation token: the listing is consumed while it is read.
    for (let page: ListObjectsV2CommandOutput | undefined = first; page !== undefined; ) {
      const keys: string[] = (page.Contents ?? []).flatMap((object) => (object.Key === undefined ? [] : [object.Key]));
      if (keys.length > 0) await this.deleteKeys(prefix, keys);
      const last: string | undefined = keys.at(-1);
      page = page.IsTruncated && last !== undefined ? await this.listPage(prefix, false, undefined, last) : undefined;
    }
    if (file !== undefined) {
      await this.request('DeleteObject', key, undefined, (abortSignal) =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal }),
      );
    }
  }

  private async deleteKeys(prefix: string, keys: string[]): Promise<void> {
    const out = await this.request('DeleteObjects', prefix, undefined, (abortSignal) =>
      this.client.send(
        new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
        { abortSignal },
      ),
    );
    const failed = out.Errors?.[0];
    if (failed !== undefined) {
      const cause = new Error(`${out.Errors?.length} of ${keys.length} keys not deleted, first ${failed.Key}: ${failed.Code} ${failed.Message}`);
      throw new S3RequestError('DeleteObjects', failed.Key ?? prefix, failed.Code, undefined, { cause });
    }
  }

  async writer(path: string, append = false): Promise<FileWriter> {
    return S3Writer.open(this, path, this.key(path), append);
  }

  /** Aborts multipart uploads under the root older than an hour: what writers of runs that died left open. */
  /** A presigned GET of the object at `path` (storage.redirect): signed locally, no request made. */
  async urlFor(path: string, expiresInMs: number): Promise<string> {
    const key = this.key(checkPath(path));
    const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: Math.max(1, Math.floor(expiresInMs / 1000)) });
  }

  async recover(options: RecoverOptions = {}): Promise<ScratchReport> {
    const report: ScratchReport = { files: 0, bytes: 0 };
    const prefix = this.key('/');
    const cutoff = this.now() - (options.idleMs ?? ABANDONED_UPLOAD_MS);
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.request('ListMultipartUploads', prefix, undefined, (abortSignal) =>
        this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
          { abortSignal },
        ),
      );
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined) continue;
        if ((upload.Initiated?.getTime() ?? 0) >= cutoff) continue;
        // A live writer adds a part every chunksize: the newest part says when it last did.
        const parts = await this.uploadedParts(upload.Key, upload.UploadId).catch(() => ({ bytes: 0, lastModified: 0 }));
        if (parts.lastModified >= cutoff) continue;
        if (await this.abortUpload(upload.Key, upload.UploadId)) {
          report.files += 1;
          report.bytes += parts.bytes;
        }
      }
      if (!page.IsTruncated) return report;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /** The bytes of an upload's parts, and when the newest was uploaded (ms; 0 without parts). */
  private async uploadedParts(key: string, uploadId: string): Promise<{ bytes: number; lastModified: number }> {
    let bytes = 0;
    let lastModified = 0;
    let marker: string | undefined;
    for (;;) {
      const page = await this.request('ListParts', key, undefined, (abortSignal) =>
        this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }), { abortSignal }),
      );
      for (const part of page.Parts ?? []) {
        bytes += part.Size ?? 0;
        lastModified = Math.max(lastModified, part.LastModified?.getTime() ?? 0);
      }
      if (!page.IsTruncated) return { bytes, lastModified };
      marker = page.NextPartNumberMarker;
    }
  }

  copySource(key: string): string {
    return `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  async createUpload(key: string): Promise<string> {
    const out = await this.request('CreateMultipartUpload', key, undefined, (abortSignal) =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: 'application/octet-stream' }), { abortSignal }),
    );
    if (out.UploadId === undefined) throw new S3RequestError('CreateMultipartUpload', key, undefined, undefined, { cause: new Error('no UploadId') });
    return out.UploadId;
  }

  async uploadPart(key: string, uploadId: string, number: number, body: Buffer): Promise<CompletedPart> {
    const out = await this.request('UploadPart', key, undefined, (abortSignal) =>
      this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: number, Body: body }), { abortSignal }),
    );
    return { PartNumber: number, ETag: out.ETag };
  }

  /** Copies `size` bytes of `copySource` as parts `first`…, at most copyConcurrency at once. */
  async copyParts(key: string, uploadId: string, copySource: string, size: number, first: number, chunk: number): Promise<CompletedPart[]> {
    const ranges = partRanges(size, chunk);
    const parts: CompletedPart[] = new Array<CompletedPart>(ranges.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < ranges.length; i = next++) {
        const range = ranges[i] as ByteRange;
        const out = await this.request('UploadPartCopy', key, undefined, (abortSignal) =>
          this.client.send(
            new UploadPartCopyCommand({
              Bucket: this.bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: first + i,
              CopySource: copySource,
              CopySourceRange: `bytes=${range.start}-${range.end}`,
            }),
            { abortSignal },
          ),
        );
        parts[i] = { PartNumber: first + i, ETag: out.CopyPartResult?.ETag };
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.copyConcurrency, ranges.length) }, worker));
    return parts;
  }

  /** Completes an upload. Its answer's ETag is not read: radosgw sends an empty one. */
  async completeUpload(key: string, uploadId: string, parts: CompletedPart[]): Promise<void> {
    await this.request('CompleteMultipartUpload', key, undefined, (abortSignal) =>
      this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }), { abortSignal }),
    );
  }

  /** Aborts an upload; false when it was gone already. */
  async abortUpload(key: string, uploadId: string): Promise<boolean> {
    try {
      await this.request('AbortMultipartUpload', key, undefined, (abortSignal) =>
        this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }), { abortSignal }),
      );
      return true;
    } catch (err) {
      if (err instanceof S3RequestError && (err.s3Code === 'NoSuchUpload' || err.status === 404)) return false;
      throw err;
    }
  }

  /** Stops the client's connection pool. */
  destroy(): void {
    this.client.destroy();
  }
}
