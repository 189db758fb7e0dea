/** GET/HEAD /v2/<name>/blobs/<digest>, streamed, with single byte ranges; DELETE. */
import { pipeline } from 'node:stream/promises';
import { sendFile } from '../sendfile.js';
import { parseDigest } from '../../registry/digest.js';
import type { RepositoryName } from '../../registry/names.js';
import { parseRange } from '../../registry/range.js';
import type { BlobDescriptor } from '../../registry/services.js';
import { repositoryOf, writerOf, type RequestContext } from '../context.js';

function blobHeaders(descriptor: BlobDescriptor): Record<string, string | number> {
  return {
    'Content-Type': descriptor.mediaType,
    'Docker-Content-Digest': descriptor.digest.value,
    'Accept-Ranges': 'bytes',
    ETag: `"${descriptor.digest.value}"`,
    'Cache-Control': 'max-age=31536000',
  };
}

export async function headBlob(ctx: RequestContext, name: RepositoryName, rawDigest: string): Promise<void> {
  const digest = parseDigest(rawDigest);
  ctx.fields.digest = digest.value;
  const descriptor = await repositoryOf(ctx, name).blobs.stat(digest, ctx.origin);
  ctx.res.writeHead(200, { ...blobHeaders(descriptor), 'Content-Length': descriptor.size });
  ctx.res.end();
}

export async function getBlob(ctx: RequestContext, name: RepositoryName, rawDigest: string): Promise<void> {
  const digest = parseDigest(rawDigest);
  ctx.fields.digest = digest.value;
  const range = parseRange(ctx.req.headers.range);
  const { blobs } = repositoryOf(ctx, name);
  // storage.redirect: a stored blob is fetched from the object store directly (a Range goes along).
  const direct = blobs.redirect === undefined ? undefined : await blobs.redirect(digest, ctx.origin);
  if (direct !== undefined) {
    ctx.res.writeHead(307, { Location: direct, 'Docker-Content-Digest': digest.value, 'Content-Length': 0 });
    ctx.res.end();
    return;
  }
  // The origin is passed as is (its `client` is the address the fill limits count by): no allocation.
  const content = await blobs.open(digest, range, ctx.origin);
  const headers = blobHeaders(content.descriptor);
  if (content.range) {
    const { start, end, size } = content.range;
    ctx.res.writeHead(206, { ...headers, 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${size}` });
  } else {
    ctx.res.writeHead(200, { ...headers, 'Content-Length': content.descriptor.size });
  }
  // A failure mid-stream destroys the response: the client sees a cut
  // connection, never a complete-looking body.
  const sent = { bytes: 0 };
  ctx.streamed = sent;
  if (content.file !== undefined) {
    await sendFile(ctx.res, content.file, content.range?.start ?? 0, content.range?.end ?? content.descriptor.size - 1, sent);
  } else {
    content.stream.on('data', (chunk: Buffer) => {
      sent.bytes += chunk.byteLength;
    });
    await pipeline(content.stream, ctx.res);
  }
}

/** DELETE /v2/<name>/blobs/<digest>: 202 once unlinked from the repository (the data goes with gc). */
export async function deleteBlob(ctx: RequestContext, name: RepositoryName, rawDigest: string): Promise<void> {
  const digest = parseDigest(rawDigest);
  ctx.fields.digest = digest.value;
  const { writer } = writerOf(ctx, name, 'delete', 'a blob delete');
  await writer.deleteBlob(digest);
  ctx.res.writeHead(202, { 'Content-Length': 0 });
  ctx.res.end();
}
