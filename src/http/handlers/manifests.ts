/** GET/HEAD, PUT and DELETE of /v2/<name>/manifests/<reference>. */
import { parseAccept } from '../../registry/mediatypes.js';
import type { RepositoryName } from '../../registry/names.js';
import { parseReference } from '../../registry/reference.js';
import { readBody } from '../body.js';
import { locationOf, repositoryOf, writerOf, type RequestContext } from '../context.js';

export async function getManifest(ctx: RequestContext, name: RepositoryName, rawReference: string): Promise<void> {
  const reference = parseReference(rawReference);
  const { manifests } = repositoryOf(ctx, name);
  const request = { accept: parseAccept(ctx.req.headers.accept), head: ctx.head };
  // A warm manifest is answered within this turn, without an await.
  const manifest = manifests.peek?.(reference, request) ?? (await manifests.get(reference, request));
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

/** PUT /v2/<name>/manifests/<reference>: 201 with `Location`, `Docker-Content-Digest`, and `OCI-Subject` for a referrer. */
export async function putManifest(ctx: RequestContext, name: RepositoryName, rawReference: string): Promise<void> {
  const reference = parseReference(rawReference);
  const { writer } = writerOf(ctx, name, 'push', 'a manifest push');
  const payload = await readBody(ctx.req, ctx.maxManifestBytes, 'manifest');
  const pushed = await writer.putManifest(reference, payload, ctx.req.headers['content-type']);
  ctx.fields.digest = pushed.digest.value;
  const headers: Record<string, string | number> = {
    Location: locationOf(ctx, name, `manifests/${pushed.digest.value}`),
    'Docker-Content-Digest': pushed.digest.value,
    'Content-Length': 0,
  };
  if (pushed.subject !== undefined) headers['OCI-Subject'] = pushed.subject.value;
  ctx.res.writeHead(201, headers);
  ctx.res.end();
}

/** DELETE /v2/<name>/manifests/<digest or tag>: 202 once unlinked. */
export async function deleteManifest(ctx: RequestContext, name: RepositoryName, rawReference: string): Promise<void> {
  const reference = parseReference(rawReference);
  const { writer } = writerOf(ctx, name, 'delete', reference.kind === 'tag' ? 'a tag delete' : 'a manifest delete');
  if (reference.kind === 'tag') await writer.deleteTag(reference.tag);
  else {
    ctx.fields.digest = reference.digest.value;
    await writer.deleteManifest(reference.digest);
  }
  ctx.res.writeHead(202, { 'Content-Length': 0 });
  ctx.res.end();
}
