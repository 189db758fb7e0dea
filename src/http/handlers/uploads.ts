/**
 * Blob uploads into hosted repositories (OCI distribution-spec "push"):
 *
 *   POST   /v2/<name>/blobs/uploads/                      open a session (202)
 *   POST   /v2/<name>/blobs/uploads/?digest=<d>           monolithic upload (201)
 *   POST   /v2/<name>/blobs/uploads/?mount=<d>&from=<r>   cross-repository mount (201, else a session: 202)
 *   PATCH  /v2/<name>/blobs/uploads/<id>                  a chunk (202, `Range`)
 *   GET    /v2/<name>/blobs/uploads/<id>                  status (204, `Range`)
 *   PUT    /v2/<name>/blobs/uploads/<id>?digest=<d>       the last chunk, if any, and commit (201)
 *   DELETE /v2/<name>/blobs/uploads/<id>                  cancel (204)
 */
import { parseDigest, type Digest } from '../../registry/digest.js';
import { isRegistryError, methodUnsupported, RegistryError } from '../../registry/errors.js';
import { parseRepositoryName, type RepositoryName } from '../../registry/names.js';
import type { BlobDescriptor, RepositoryWriter, UploadStatus } from '../../registry/services.js';
import { chunkOf, hasBody } from '../body.js';
import { locationOf, scopeOf, writerOf, type RequestContext } from '../context.js';

/** `Range: 0-<last byte>`, as Distribution writes it (`0-0` for an empty upload). */
const rangeOf = (size: number): string => `0-${Math.max(size - 1, 0)}`;

function uploadHeaders(ctx: RequestContext, name: RepositoryName, status: UploadStatus): Record<string, string | number> {
  return {
    Location: locationOf(ctx, name, `blobs/uploads/${status.id}`),
    Range: rangeOf(status.size),
    'Docker-Upload-UUID': status.id,
    'Content-Length': 0,
  };
}

function sessionAnswer(ctx: RequestContext, name: RepositoryName, status: UploadStatus, code: 202 | 204): void {
  ctx.res.writeHead(code, uploadHeaders(ctx, name, status));
  ctx.res.end();
}

function blobCreated(ctx: RequestContext, name: RepositoryName, descriptor: BlobDescriptor): void {
  ctx.fields.digest = descriptor.digest.value;
  ctx.res.writeHead(201, {
    Location: locationOf(ctx, name, `blobs/${descriptor.digest.value}`),
    'Docker-Content-Digest': descriptor.digest.value,
    'Content-Length': 0,
  });
  ctx.res.end();
}

function requiredDigest(ctx: RequestContext): Digest {
  const value = ctx.query.get('digest');
  if (value === null || value === '') throw new RegistryError('DIGEST_INVALID', 'the digest query parameter is required to finish an upload', { detail: { digest: '' } });
  return parseDigest(value);
}

/**
 * A chunk that does not start where the upload ends is `416` (the spec's
 * status) with BLOB_UPLOAD_INVALID (a code of the spec's table), not
 * Distribution's RANGE_INVALID: the client asks the status and resumes.
 */
async function chunked<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof RegistryError && err.code === 'RANGE_INVALID') {
      throw new RegistryError('BLOB_UPLOAD_INVALID', err.message, { detail: err.detail, status: 416 });
    }
    throw err;
  }
}

export async function handleUpload(ctx: RequestContext, name: RepositoryName, id: string): Promise<void> {
  const method = ctx.req.method ?? 'GET';
  if (id === '') {
    if (method !== 'POST') throw methodUnsupported(method, 'POST');
    return startUpload(ctx, name);
  }
  switch (method) {
    case 'GET':
    case 'HEAD': {
      const { writer } = writerOf(ctx, name, 'push', 'an upload');
      return sessionAnswer(ctx, name, await writer.uploads.status(id), 204);
    }
    case 'PATCH': {
      const { writer } = writerOf(ctx, name, 'push', 'an upload');
      return sessionAnswer(ctx, name, await chunked(() => writer.uploads.append(id, chunkOf(ctx.req))), 202);
    }
    case 'PUT': {
      const { writer } = writerOf(ctx, name, 'push', 'an upload');
      const digest = requiredDigest(ctx);
      const descriptor = await chunked(() => writer.uploads.finish(id, digest, hasBody(ctx.req) ? chunkOf(ctx.req) : undefined));
      return blobCreated(ctx, name, descriptor);
    }
    case 'DELETE': {
      const { writer } = writerOf(ctx, name, 'push', 'an upload');
      await writer.uploads.cancel(id);
      ctx.res.writeHead(204, { 'Content-Length': 0 });
      ctx.res.end();
      return;
    }
    default:
      throw methodUnsupported(method, 'GET, HEAD, PATCH, PUT, DELETE');
  }
}

async function startUpload(ctx: RequestContext, name: RepositoryName): Promise<void> {
  const { writer } = writerOf(ctx, name, 'push', 'a blob upload');
  const mount = ctx.query.get('mount');
  if (mount !== null) {
    const mounted = await tryMount(ctx, writer, mount, ctx.query.get('from'));
    if (mounted !== undefined) return blobCreated(ctx, name, mounted);
  }
  const digest = ctx.query.get('digest');
  if (digest !== null && mount === null) {
    // Monolithic: the whole blob in this request.
    const expected = parseDigest(digest);
    const session = await writer.uploads.create();
    return blobCreated(ctx, name, await chunked(() => writer.uploads.finish(session.id, expected, chunkOf(ctx.req))));
  }
  sessionAnswer(ctx, name, await writer.uploads.create(), 202);
}

/**
 * Links the blob from `from` when the caller may pull it there and it is
 * stored there; otherwise undefined, and the client gets an upload session
 * (the spec's answer when a mount cannot be done), whatever the reason:
 * a refusal must not tell a caller what exists in a repository it cannot read.
 */
async function tryMount(ctx: RequestContext, writer: RepositoryWriter, mount: string, from: string | null): Promise<BlobDescriptor | undefined> {
  if (from === null || from === '') return undefined;
  let digest: Digest;
  let source: RepositoryName;
  try {
    digest = parseDigest(mount);
    source = scopeOf(ctx, parseRepositoryName(from), 'pull', false).name;
  } catch (err) {
    if (isRegistryError(err)) return undefined;
    throw err;
  }
  return writer.mount(digest, source);
}
