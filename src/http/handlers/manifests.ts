/** GET/HEAD /v2/<name>/manifests/<reference> */
import { parseAccept } from '../../registry/mediatypes.js';
import type { RepositoryName } from '../../registry/names.js';
import { parseReference } from '../../registry/reference.js';
import { repositoryOf, type RequestContext } from '../context.js';

export async function getManifest(ctx: RequestContext, name: RepositoryName, rawReference: string): Promise<void> {
  const reference = parseReference(rawReference);
  const manifest = await repositoryOf(ctx, name)
    .manifests.get(reference, { accept: parseAccept(ctx.req.headers.accept), head: ctx.head });
  ctx.fields.digest = manifest.digest.value;
  const etag = `"${manifest.digest.value}"`;
  const headers: Record<string, string | number | string[]> = {
    'Content-Type': manifest.mediaType,
    'Docker-Content-Digest': manifest.digest.value,
    'Content-Length': manifest.payload.byteLength,
    ETag: etag,
  };
  if (manifest.warnings?.length) headers.Warning = manifest.warnings.map((w) => `299 - ${JSON.stringify(w)}`);
  if (ctx.req.headers['if-none-match'] === etag) {
    delete headers['Content-Length'];
    ctx.res.writeHead(304, headers);
    ctx.res.end();
    return;
  }
  ctx.res.writeHead(200, headers);
  ctx.res.end(ctx.head ? undefined : manifest.payload);
}
