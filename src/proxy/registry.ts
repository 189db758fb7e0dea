/**
 * The pull-through registry: the local registry decorated with an upstream.
 * Same interfaces as local storage, so the HTTP layer cannot tell them apart.
 */
import { LRUCache } from 'lru-cache';
import type { RepositoryName } from '../registry/names.js';
import type { Registry, Repository, TagService } from '../registry/services.js';
import { RegistryError, nameUnknown } from '../registry/errors.js';
import type { LocalTags } from '../storage/local.js';
import { LocalRepository } from '../storage/local.js';
import { ProxyBlobs } from './blobs.js';
import type { ProxyContext } from './context.js';
import { ProxyManifests } from './manifests.js';
import { ProxyReferrers } from './referrers.js';
import { discard, readBody, upstreamError } from './upstream.js';

export class ProxyRegistry implements Registry {
  /** Repository objects hold no state of their own: reuse them rather than build five per request. */
  private readonly repositories = new LRUCache<string, Repository>({ max: 1024 });

  constructor(readonly ctx: ProxyContext) {}

  repository(name: RepositoryName): Repository {
    let repository = this.repositories.get(name);
    if (repository === undefined) {
      repository = this.build(name);
      this.repositories.set(name, repository);
    }
    return repository;
  }

  private build(name: RepositoryName): Repository {
    const local = new LocalRepository(this.ctx.local.storage, name);
    const manifests = new ProxyManifests(this.ctx, name, local.manifests);
    return {
      name,
      blobs: new ProxyBlobs(this.ctx, name, local.blobs),
      manifests,
      tags: new ProxyTags(this.ctx, name, local.tags),
      referrers: new ProxyReferrers(this.ctx, name, manifests),
    };
  }

  /** The catalog lists what is cached here, as Distribution's proxy does. */
  catalog(limit: number, last?: string): Promise<string[]> {
    return this.ctx.local.catalog(limit, last);
  }
}

/** Tags from the upstream merged with the cached ones; only the cached ones while the upstream is down. */
class ProxyTags implements TagService {
  constructor(
    private readonly ctx: ProxyContext,
    private readonly name: RepositoryName,
    private readonly local: LocalTags,
  ) {}

  private async cached(): Promise<string[]> {
    try {
      return await this.local.list();
    } catch (err) {
      if (err instanceof RegistryError && err.code === 'NAME_UNKNOWN') return [];
      throw err;
    }
  }

  async list(): Promise<string[]> {
    const { upstream } = this.ctx;
    const cached = await this.cached();
    let response;
    try {
      response = await upstream.request({ method: 'GET', repository: this.name, kind: 'tags', reference: 'list' });
    } catch (err) {
      if (cached.length > 0) return cached;
      throw err;
    }
    if (response.status !== 200) {
      discard(response);
      if (response.status >= 500 && cached.length > 0) return cached;
      throw upstreamError(upstream.name, response.status, response.headers, () => nameUnknown(this.name));
    }
    const body = await readBody(response, 16 * 1024 * 1024, 'tag list');
    let remote: unknown;
    try {
      remote = (JSON.parse(body.toString('utf8')) as { tags?: unknown }).tags;
    } catch {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${upstream.name} sent an unreadable tag list`);
    }
    const tags = new Set(cached);
    if (Array.isArray(remote)) for (const tag of remote) if (typeof tag === 'string') tags.add(tag);
    return [...tags].sort();
  }
}
