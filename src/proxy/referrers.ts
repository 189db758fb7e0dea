/**
 * The referrers API through the proxy, cached like a tag.
 *
 * The upstream's answer (its referrers API, or for an upstream without one,
 * the tag-schema fallback: the `sha256-<hex>` tag's index) is kept for the
 * tag TTL, served stale while the upstream is down, and merged with what is
 * stored here for the subject (referrer manifests pulled earlier, or added
 * locally): one index, no duplicates. When neither the upstream nor this
 * cache knows any referrer and the upstream lacks the API, the 404 is passed
 * through so clients fall back to the tag schema themselves — never an empty
 * 200 that would hide signatures stored as tags.
 */
import { isUpstreamOutage, RegistryError } from '../registry/errors.js';
import type { Digest } from '../registry/digest.js';
import { MediaType } from '../registry/mediatypes.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import {
  descriptorsOfIndex,
  fallbackTag,
  filterReferrers,
  mergeReferrers,
  type ReferrerDescriptor,
} from '../registry/referrers.js';
import type { ManifestService, ReferrerService, ReferrersResult } from '../registry/services.js';
import { localReferrers } from '../storage/referrers.js';
import type { ProxyContext } from './context.js';

/** What the upstream said about a subject, and when. `found: false`: it has no referrers API and no fallback tag. */
export interface UpstreamReferrers {
  manifests: ReferrerDescriptor[];
  found: boolean;
  checkedAt: number;
}


export class ProxyReferrers implements ReferrerService {
  constructor(
    private readonly ctx: ProxyContext,
    private readonly name: RepositoryName,
    private readonly manifests: ManifestService,
  ) {}

  async list(subject: Digest, artifactType?: string): Promise<ReferrersResult> {
    const { ctx } = this;
    const local = await localReferrers(ctx.local.storage, this.name, subject);
    const key = `${this.name}@${subject.value}`;
    const cached = ctx.caches.hotReferrers.get(key) ?? (await ctx.metadata.getReferrers<UpstreamReferrers>(ctx.upstream, this.name, subject.value));
    let remote = cached;
    const warnings: string[] = [];
    if (cached === undefined || ctx.now - cached.checkedAt >= ctx.policy.tagTtlMs) {
      try {
        remote = await this.fetch(subject);
        ctx.caches.hotReferrers.set(key, remote);
        // "No referrers API and no fallback tag" is remembered in memory only (bounded), not in the
        // shared store: every subject a client ever probed would otherwise stay there forever.
        if (remote.found) await ctx.metadata.setReferrers(ctx.upstream, this.name, subject.value, remote);
      } catch (err) {
        if (!isUpstreamOutage(err) || (cached === undefined && local.length === 0)) throw err;
        ctx.log.warn({ repository: this.name, subject: subject.value, reason: err.message }, 'serving cached referrers: upstream unavailable');
        warnings.push(`stevedore: referrers served from cache; upstream ${ctx.upstream} is unavailable (${err.code})`);
      }
    }
    if (remote !== undefined && !remote.found && local.length === 0) {
      throw new RegistryError('NOT_FOUND', `upstream ${ctx.upstream} has no referrers API and no ${fallbackTag(subject)} tag: use the tag schema`, {
        detail: { subject: subject.value },
      });
    }
    const merged = mergeReferrers(remote?.manifests ?? [], local);
    const result: ReferrersResult = { manifests: filterReferrers(merged, artifactType), filtered: artifactType !== undefined };
    if (warnings.length > 0) result.warnings = warnings;
    return result;
  }

  private async fetch(subject: Digest): Promise<UpstreamReferrers> {
    try {
      const { manifests } = await this.ctx.remoteRepository(this.name).referrers.list(subject);
      return { manifests, found: true, checkedAt: this.ctx.now };
    } catch (err) {
      // NOT_FOUND: the upstream has no referrers API; the tag schema may still list them.
      if (err instanceof RegistryError && err.code === 'NOT_FOUND') return this.fallback(subject);
      throw err;
    }
  }

  /** The tag schema: referrers listed in the index tagged `sha256-<hex>`, cached like any tag. */
  private async fallback(subject: Digest): Promise<UpstreamReferrers> {
    const tag = fallbackTag(subject) as Tag;
    try {
      const index = await this.manifests.get({ kind: 'tag', tag, value: tag }, { accept: [MediaType.OciIndex] });
      return { manifests: descriptorsOfIndex(JSON.parse(index.payload.toString('utf8'))), found: true, checkedAt: this.ctx.now };
    } catch (err) {
      if (err instanceof RegistryError && (err.code === 'MANIFEST_UNKNOWN' || err.code === 'NAME_UNKNOWN')) {
        return { manifests: [], found: false, checkedAt: this.ctx.now };
      }
      throw err;
    }
  }
}
