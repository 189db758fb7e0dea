/** GET /v2/<name>/referrers/<digest>[?artifactType=…] (OCI distribution-spec 1.1). */
import { parseDigest } from '../../registry/digest.js';
import { MediaType } from '../../registry/mediatypes.js';
import type { RepositoryName } from '../../registry/names.js';
import { referrersIndex } from '../../registry/referrers.js';
import { repositoryOf, type RequestContext } from '../context.js';

export async function listReferrers(ctx: RequestContext, name: RepositoryName, rawDigest: string): Promise<void> {
  const subject = parseDigest(rawDigest);
  ctx.fields.digest = subject.value;
  const artifactType = ctx.query.get('artifactType') ?? undefined;
  const result = await repositoryOf(ctx, name).referrers.list(subject, artifactType === '' ? undefined : artifactType);
  const payload = Buffer.from(JSON.stringify(referrersIndex(result.manifests)));
  const headers: Record<string, string | number | string[]> = {
    'Content-Type': MediaType.OciIndex,
    'Content-Length': payload.byteLength,
  };
  if (result.filtered) headers['OCI-Filters-Applied'] = 'artifactType';
  if (result.warnings?.length) headers.Warning = result.warnings.map((w) => `299 - ${JSON.stringify(w)}`);
  ctx.res.writeHead(200, headers);
  ctx.res.end(ctx.head ? undefined : payload);
}
