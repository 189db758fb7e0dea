/**
 * The pull-through registry: the local registry decorated with an upstream.
 * Same interfaces as local storage, so the HTTP layer cannot tell them apart.
 */
import { LRUCache } from 'lru-cache';
import type { RepositoryName } from '../registry/names.js';
import type { Registry, Repository, TagService } from '../registry/services.js';
import { isUpstreamOutage, RegistryError } from '../registry/errors.js';
import type { LocalTags } from '../storage/local.js';
import { LocalRepository } from '../storage/local.js';
import { ProxyBlobs } from './blobs.js';
import type { ProxyContext } from './context.js';
import { ProxyManifests } from './manifests.js';
import { ProxyReferrers } from './referrers.js';
import { boundedCache } from '../registry/bounded-cache.js';


export class ProxyRegistry implements Registry {
  /** Repository objects hold no state of their own: reuse them rather than build five per request. */
  private readonly repositories = boundedCache<string, Repository>({ entries: 1024 });

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
    const cached = await this.cached();
    let remote: string[];
    try {
      remote = await this.ctx.remoteRepository(this.name).tags.list();
    } catch (err) {
      // Down, failing or rate-limiting: what is cached here is the best answer there is.
      if (isUpstreamOutage(err) && cached.length > 0) return cached;
      throw err;
    }
    return [...new Set([...cached, ...remote])].sort();
  }
}
