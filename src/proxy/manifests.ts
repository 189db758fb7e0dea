/**
 * Manifests through the proxy.
 *
 * By digest: immutable, served from storage once stored; on a miss fetched,
 * checked against the digest before anything is stored, then stored and linked.
 * By tag: a tag the upstream confirmed less than `tagTtl` ago is served from
 * memory or storage without asking. Otherwise the upstream is asked with a
 * HEAD (free on Docker Hub's rate limit); a known digest only refreshes the
 * tag, an unknown one is fetched with a GET. One refresh per tag at a time:
 * a burst of requests at TTL expiry sends one HEAD. When the upstream is
 * down, rate-limiting or failing, the cached tag is served stale with a warning.
 *
 * What a tag points at is always what the upstream answers a fully capable
 * client (every manifest type Stevedore stores): the caller's Accept header
 * never reaches the upstream, so no client can narrow the answer recorded
 * for everyone. A caller that cannot take the stored type is answered from
 * what is stored (registry/negotiate.ts): an index's child for the default
 * platform, fetched by digest if needed, or MANIFEST_UNKNOWN.
 * Payloads are stored and served exactly as the upstream sent them.
 * Replicas sharing a lease store refresh a tag one at a time (askCoordinated).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isUpstreamOutage, RegistryError } from '../registry/errors.js';
import { type Digest, tryParseDigest } from '../registry/digest.js';
import { accepts, MediaType } from '../registry/mediatypes.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import { negotiate, notAcceptable } from '../registry/negotiate.js';
import type { Reference } from '../registry/reference.js';
import type { ManifestContent, ManifestRequest, ManifestService } from '../registry/services.js';
import type { LocalManifests } from '../storage/local.js';
import type { RemoteRepository } from '../upstream/remote.js';
import type { HotManifest, HotTag, ProxyContext } from './context.js';


/** Waiting for another replica's refresh of a tag: at most this long, looking this often; its lease lasts this long unrenewed. */
const TAG_WAIT_MS = 5_000;
const TAG_POLL_MS = 50;
const TAG_LEASE_MS = 10_000;

const staleWarning = (upstream: string, why: string): string =>
  `stevedore: served from cache; upstream ${upstream} is unavailable (${why})`;

const digestReference = (digest: Digest): Reference => ({ kind: 'digest', digest, value: digest.value });

export class ProxyManifests implements ManifestService {
  private readonly remote: RemoteRepository;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly name: RepositoryName,
    private readonly local: LocalManifests,
  ) {
    this.remote = ctx.remoteRepository(name);
  }

  async get(reference: Reference, request: ManifestRequest): Promise<ManifestContent> {
    const content = reference.kind === 'digest' ? await this.byDigest(reference, request) : await this.byTag(reference, request);
    this.ctx.pulled(this.name, content.digest);
    return content;
  }

  peek(reference: Reference, request: ManifestRequest): ManifestContent | undefined {
    const { ctx } = this;
    const { hotManifests, hotTags } = ctx.caches;
    let digest: string;
    if (reference.kind === 'digest') digest = reference.digest.value;
    else {
      const known = hotTags.get(`${this.name}:${reference.tag}`);
      if (!this.fresh(known, reference.tag)) return undefined;
      digest = known.digest;
    }
    const entry = hotManifests.get(`${this.name}@${digest}`);
    // Anything but the stored type as it is (an index's child, a refusal) is get's to work out.
    if (entry === undefined || !accepts(request.accept, entry.mediaType)) return undefined;
    ctx.hooks.metrics?.cache('manifest', 'hit');
    ctx.pulled(this.name, entry.digest);
    return { digest: entry.digest, mediaType: entry.mediaType, payload: entry.payload };
  }

  /** Whether the upstream confirmed the tag less than its TTL ago. */
  private fresh(state: HotTag | undefined, tag: string): state is HotTag {
    return state !== undefined && this.ctx.now - state.checkedAt < this.ctx.tagTtl(tag);
  }

  /** The manifest linked here under `digest`, from memory or storage; undefined when not stored. */
  private async stored(digest: Digest | string): Promise<HotManifest | undefined> {
    const value = typeof digest === 'string' ? digest : digest.value;
    const hot = this.ctx.caches.hotManifests.get(`${this.name}@${value}`);
    if (hot !== undefined) return hot;
    // Parsed only on a miss: the warm path never runs the digest grammar.
    return typeof digest === 'string' ? this.load(tryParseDigest(digest)) : this.load(digest);
  }

  private async load(digest: Digest | undefined): Promise<HotManifest | undefined> {
    if (digest === undefined) return undefined;
    if ((await this.local.resolve(digestReference(digest))) === undefined) return undefined;
    let read;
    try {
      read = await this.ctx.local.storage.servableManifest(this.name, digest);
    } catch (err) {
      // A revision link whose payload is gone (maintenance) is a miss, not an error.
      if (err instanceof RegistryError && err.code === 'BLOB_UNKNOWN') return undefined;
      throw err;
    }
    return this.remember({ digest, mediaType: read.mediaType, payload: read.payload });
  }

  private remember(entry: HotManifest): HotManifest {
    this.ctx.caches.hotManifests.set(`${this.name}@${entry.digest.value}`, entry);
    return entry;
  }

  /** The stored manifest by digest, fetched (and verified) first if it is not stored yet. */
  private async byDigestEntry(digest: Digest): Promise<HotManifest> {
    const stored = await this.stored(digest);
    this.ctx.hooks.metrics?.cache('manifest', stored === undefined ? 'miss' : 'hit');
    return stored ?? (await this.fetch(digestReference(digest)));
  }

  private async byDigest(reference: Reference & { kind: 'digest' }, request: ManifestRequest): Promise<ManifestContent> {
    return this.answer(reference, await this.byDigestEntry(reference.digest), request);
  }

  /**
   * What the caller gets for `entry` (what the reference names): the entry,
   * or for a tagged index the default platform's child, or MANIFEST_UNKNOWN.
   */
  private async answer(reference: Reference, entry: HotManifest, request: ManifestRequest, warnings?: string[]): Promise<ManifestContent> {
    const decision = negotiate(this.name, reference, entry, request.accept, this.ctx.local.storage.platform);
    let served = entry;
    if (decision.kind === 'child') {
      // The index is in use too: its pulls count (proxy.ttl, storage.quota) like the child's.
      this.ctx.pulled(this.name, entry.digest);
      served = await this.byDigestEntry(decision.descriptor.digest);
      // The index's descriptor may name another type than the child really has.
      if (!accepts(request.accept, served.mediaType)) throw notAcceptable(this.name, reference, entry.mediaType, request.accept);
    }
    const { digest, mediaType, payload } = served;
    return warnings ? { digest, mediaType, payload, warnings } : { digest, mediaType, payload };
  }

  private async byTag(reference: Reference & { kind: 'tag' }, request: ManifestRequest): Promise<ManifestContent> {
    const { ctx } = this;
    const { tag } = reference;
    const hot = ctx.caches.hotTags.get(`${this.name}:${tag}`);
    const known = hot ?? (await this.knownTag(tag));
    const cached = known === undefined ? undefined : await this.stored(known.digest);
    if (cached !== undefined && this.fresh(known, tag)) {
      // Confirmed by another replica or worker (the shared metadata store): kept here too, so the
      // next request is answered from memory (peek) instead of asking the store again.
      if (hot === undefined) ctx.caches.hotTags.set(`${this.name}:${tag}`, known);
      ctx.hooks.metrics?.cache('manifest', 'hit');
      return this.answer(reference, cached, request);
    }
    let entry: HotManifest;
    try {
      entry = await this.refreshTag(tag, cached);
    } catch (err) {
      const outage = isUpstreamOutage(err);
      if (!outage || cached === undefined) throw err;
      ctx.log.warn({ repository: this.name, tag, upstream: ctx.upstream, reason: err.message }, 'serving a stale tag: upstream unavailable');
      ctx.hooks.metrics?.cache('manifest', 'hit');
      return this.answer(reference, cached, request, [staleWarning(ctx.upstream, err.code)]);
    }
    return this.answer(reference, entry, request);
  }

  /** The tag as last recorded in metadata, else as found in storage (never confirmed: checkedAt 0). */
  private async knownTag(tag: Tag): Promise<{ digest: string; checkedAt: number } | undefined> {
    const recorded = await this.ctx.metadata.getTag(this.ctx.upstream, this.name, tag);
    if (recorded !== undefined) return recorded;
    const digest = await this.ctx.local.storage.tags.resolve(this.name, tag);
    return digest === undefined ? undefined : { digest: digest.value, checkedAt: 0 };
  }

  /** One refresh per tag at a time; everyone asking meanwhile shares its answer. */
  private refreshTag(tag: Tag, cached: HotManifest | undefined): Promise<HotManifest> {
    const { refreshes } = this.ctx.caches;
    const key = `${this.name}:${tag}`;
    let running = refreshes.get(key);
    if (running === undefined) {
      running = this.askCoordinated(tag, cached).finally(() => refreshes.delete(key));
      refreshes.set(key, running);
    }
    return running;
  }

  /**
   * Across replicas (a shared lease store), one refresh of a tag at a time:
   * the replica holding the tag's lease asks the upstream; the others wait
   * for the fresh record it leaves in the metadata store and serve that. A
   * store that cannot be reached, or a wait past TAG_WAIT_MS, asks alone.
   */
  private async askCoordinated(tag: Tag, cached: HotManifest | undefined): Promise<HotManifest> {
    const { leases } = this.ctx.hooks;
    if (leases === undefined || !leases.shared) return this.askUpstream(tag, cached);
    const key = `tag/${this.ctx.upstream}/${this.name}:${tag}`;
    const deadline = Date.now() + TAG_WAIT_MS;
    for (;;) {
      const got = await leases.acquire(key, 'tag refresh', TAG_LEASE_MS);
      if (got.state === 'unavailable') return this.askUpstream(tag, cached);
      if (got.state === 'held') {
        try {
          return (await this.freshRecord(tag)) ?? (await this.askUpstream(tag, cached));
        } finally {
          await got.lease.release();
        }
      }
      const fresh = await this.freshRecord(tag);
      if (fresh !== undefined) return fresh;
      if (Date.now() > deadline) return this.askUpstream(tag, cached);
      await sleep(TAG_POLL_MS);
    }
  }

  /** The tag as another replica recorded it within its ttl, when that manifest is stored: no need to ask. */
  private async freshRecord(tag: Tag): Promise<HotManifest | undefined> {
    const { ctx } = this;
    const state = await ctx.metadata.getTag(ctx.upstream, this.name, tag);
    if (!this.fresh(state, tag)) return undefined;
    const entry = await this.stored(state.digest);
    if (entry !== undefined) ctx.caches.hotTags.set(`${this.name}:${tag}`, state);
    return entry;
  }

  /** Asks the upstream what the tag points at now (a HEAD); fetches only what is not stored. */
  private async askUpstream(tag: Tag, cached: HotManifest | undefined): Promise<HotManifest> {
    const reference: Reference = { kind: 'tag', tag, value: tag };
    const announced = await this.remote.manifests.resolve(reference);
    let entry = announced === undefined ? undefined : cached?.digest.value === announced.value ? cached : await this.stored(announced);
    // Schema1 signatures differ from fetch to fetch: a GET collects the upstream's current ones.
    const fetching = entry === undefined || entry.mediaType === MediaType.DockerSchema1Signed;
    // Once per refresh: requests sharing it (refreshTag) are not counted again.
    this.ctx.hooks.metrics?.cache('manifest', fetching ? 'miss' : 'hit');
    if (fetching || entry === undefined) entry = await this.fetch(reference);
    await this.recordTag(tag, entry.digest);
    return entry;
  }

  private async recordTag(tag: Tag, digest: Digest): Promise<void> {
    const { ctx } = this;
    const current = await ctx.local.storage.tags.resolve(this.name, tag);
    if (current?.value !== digest.value) {
      ctx.assertWritable(`tag ${tag} moved to ${digest.value}`);
      await ctx.local.storage.tags.tag(this.name, tag, digest);
    }
    const state = await ctx.metadata.setTag(ctx.upstream, this.name, tag, digest.value);
    ctx.caches.hotTags.set(`${this.name}:${tag}`, state);
  }

  /**
   * GETs a manifest from the upstream (as a fully capable client, checked
   * against the digest asked for and the one announced: remote.ts), then
   * stores it and links the revision.
   */
  private async fetch(reference: Reference): Promise<HotManifest> {
    const { ctx } = this;
    ctx.assertWritable(`manifest ${reference.value}`);
    const { digest, mediaType, payload } = await this.remote.manifests.get(reference, { accept: [] });
    if (mediaType === MediaType.DockerSchema1Signed) return this.storeSchema1(reference, payload, digest);
    await ctx.storing(digest, () => ctx.local.storage.blobs.put(payload, digest.algorithm));
    await ctx.local.storage.revisions.link(this.name, digest);
    ctx.log.info({ repository: this.name, reference: reference.value, digest: digest.value, mediaType, upstream: ctx.upstream }, 'manifest cached');
    return this.remember({ digest, mediaType, payload });
  }

  /** A schema1 signed manifest: signatures verified, then payload and signatures stored apart, served with every signature known. */
  private async storeSchema1(reference: Reference, document: Buffer, digest: Digest): Promise<HotManifest> {
    const { ctx } = this;
    // Counted for storage.quota: the payload (its signatures are a few hundred bytes each, not counted).
    const { added } = await ctx.storing(digest, () => ctx.local.storage.schema1.ingest(this.name, document, digest));
    const { mediaType, payload } = await ctx.local.storage.servableManifest(this.name, digest);
    ctx.log.info({ repository: this.name, reference: reference.value, digest: digest.value, signaturesAdded: added, upstream: ctx.upstream }, 'schema1 manifest cached');
    return this.remember({ digest, mediaType, payload });
  }
}
