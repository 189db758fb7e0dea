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
 */
import { manifestUnknown, RegistryError } from '../registry/errors.js';
import { type Digest, digestOf, tryParseDigest } from '../registry/digest.js';
import { MAX_MANIFEST_SIZE, parseManifest } from '../registry/manifest.js';
import { accepts, MANIFEST_MEDIA_TYPES, MediaType } from '../registry/mediatypes.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import { negotiate, notAcceptable } from '../registry/negotiate.js';
import type { Reference } from '../registry/reference.js';
import type { ManifestContent, ManifestRequest, ManifestService } from '../registry/services.js';
import type { LocalManifests } from '../storage/local.js';
import type { HotManifest, ProxyContext } from './context.js';
import { discard, readBody, upstreamError, type UpstreamResponse } from './upstream.js';

/** What a fully capable client sends: every type Stevedore stores. Never the caller's Accept. */
const FULL_ACCEPT: Readonly<Record<string, string>> = Object.freeze({ Accept: MANIFEST_MEDIA_TYPES.join(', ') });

const OUTAGES = new Set(['UNAVAILABLE', 'UPSTREAM_ERROR', 'TOOMANYREQUESTS']);

const staleWarning = (upstream: string, why: string): string =>
  `stevedore: served from cache; upstream ${upstream} is unavailable (${why})`;

const digestReference = (digest: Digest): Reference => ({ kind: 'digest', digest, value: digest.value });

export class ProxyManifests implements ManifestService {
  constructor(
    private readonly ctx: ProxyContext,
    private readonly name: RepositoryName,
    private readonly local: LocalManifests,
  ) {}

  async get(reference: Reference, request: ManifestRequest): Promise<ManifestContent> {
    const content = reference.kind === 'digest' ? await this.byDigest(reference, request) : await this.byTag(reference, request);
    this.ctx.touch(content.digest.value);
    return content;
  }

  /** The manifest linked here under `digest`, from memory or storage; undefined when not stored. */
  private async stored(digest: Digest | string): Promise<HotManifest | undefined> {
    const value = typeof digest === 'string' ? digest : digest.value;
    const hot = this.ctx.hotManifests.get(`${this.name}@${value}`);
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
    this.ctx.hotManifests.set(`${this.name}@${entry.digest.value}`, entry);
    return entry;
  }

  /** The stored manifest by digest, fetched (and verified) first if it is not stored yet. */
  private async byDigestEntry(digest: Digest): Promise<HotManifest> {
    return (await this.stored(digest)) ?? (await this.fetch(digestReference(digest)));
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
      // The index is in use too: its pulls count for proxy.ttl like the child's.
      this.ctx.touch(entry.digest.value);
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
    const known = ctx.hotTags.get(`${this.name}:${tag}`) ?? (await this.knownTag(tag));
    const cached = known === undefined ? undefined : await this.stored(known.digest);
    if (known !== undefined && cached !== undefined && ctx.now - known.checkedAt < ctx.policy.tagTtlMs) {
      return this.answer(reference, cached, request);
    }
    let entry: HotManifest;
    try {
      entry = await this.refreshTag(tag, cached);
    } catch (err) {
      const outage = err instanceof RegistryError && OUTAGES.has(err.code);
      if (!outage || cached === undefined) throw err;
      ctx.log.warn({ repository: this.name, tag, upstream: ctx.upstream.name, reason: err.message }, 'serving a stale tag: upstream unavailable');
      return this.answer(reference, cached, request, [staleWarning(ctx.upstream.name, err.code)]);
    }
    return this.answer(reference, entry, request);
  }

  /** The tag as last recorded in metadata, else as found in storage (never confirmed: checkedAt 0). */
  private async knownTag(tag: Tag): Promise<{ digest: string; checkedAt: number } | undefined> {
    const recorded = await this.ctx.metadata.getTag(this.ctx.upstream.name, this.name, tag);
    if (recorded !== undefined) return recorded;
    const digest = await this.ctx.local.storage.tags.resolve(this.name, tag);
    return digest === undefined ? undefined : { digest: digest.value, checkedAt: 0 };
  }

  /** One refresh per tag at a time; everyone asking meanwhile shares its answer. */
  private refreshTag(tag: Tag, cached: HotManifest | undefined): Promise<HotManifest> {
    const { refreshes } = this.ctx;
    const key = `${this.name}:${tag}`;
    let running = refreshes.get(key);
    if (running === undefined) {
      running = this.askUpstream(tag, cached).finally(() => refreshes.delete(key));
      refreshes.set(key, running);
    }
    return running;
  }

  /** Asks the upstream what the tag points at now; fetches only what is not stored. */
  private async askUpstream(tag: Tag, cached: HotManifest | undefined): Promise<HotManifest> {
    const { ctx } = this;
    const head = await ctx.upstream.request({ method: 'HEAD', repository: this.name, kind: 'manifests', reference: tag, headers: FULL_ACCEPT });
    discard(head);
    if (head.status !== 200) throw this.failure(head, tag);
    const announced = tryParseDigest(head.headers['docker-content-digest'] ?? '');
    let entry = announced === undefined ? undefined : cached?.digest.value === announced.value ? cached : await this.stored(announced);
    // Schema1 signatures differ from fetch to fetch: a GET collects the upstream's current ones.
    if (entry === undefined || entry.mediaType === MediaType.DockerSchema1Signed) entry = await this.fetch({ kind: 'tag', tag, value: tag });
    await this.recordTag(tag, entry.digest);
    return entry;
  }

  private async recordTag(tag: Tag, digest: Digest): Promise<void> {
    const { ctx } = this;
    const current = await ctx.local.storage.tags.resolve(this.name, tag);
    if (current?.value !== digest.value) await ctx.local.storage.tags.tag(this.name, tag, digest);
    const state = await ctx.metadata.setTag(ctx.upstream.name, this.name, tag, digest.value);
    ctx.hotTags.set(`${this.name}:${tag}`, state);
  }

  private failure(response: UpstreamResponse, reference: string): RegistryError {
    return upstreamError(this.ctx.upstream.name, response.status, response.headers, () => manifestUnknown(this.name, reference));
  }

  private mismatch(what: string, expected: string, actual: string): RegistryError {
    return new RegistryError('UPSTREAM_ERROR', `upstream ${this.ctx.upstream.name} sent a manifest that does not match ${what}`, {
      detail: { expected, actual },
    });
  }

  /**
   * GETs a manifest from the upstream as a fully capable client, checks it
   * against the digest asked for and the one announced, and only then stores
   * it and links the revision.
   */
  private async fetch(reference: Reference): Promise<HotManifest> {
    const { ctx } = this;
    const response = await ctx.upstream.request({ method: 'GET', repository: this.name, kind: 'manifests', reference: reference.value, headers: FULL_ACCEPT });
    if (response.status !== 200) {
      discard(response);
      throw this.failure(response, reference.value);
    }
    const document = await readBody(response, MAX_MANIFEST_SIZE, 'manifest');
    const contentType = response.headers['content-type']?.split(';')[0]?.trim();
    let mediaType: string;
    try {
      mediaType = parseManifest(document, contentType).mediaType;
    } catch (err) {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${ctx.upstream.name} sent an invalid manifest: ${(err as Error).message}`, { cause: err });
    }
    const announced = tryParseDigest(response.headers['docker-content-digest'] ?? '');
    const expected = reference.kind === 'digest' ? reference.digest : announced;
    if (mediaType === MediaType.DockerSchema1Signed) return this.fetchedSchema1(reference, document, expected);
    const digest = digestOf(document, expected?.algorithm ?? 'sha256');
    if (reference.kind === 'digest' && digest.value !== reference.digest.value) throw this.mismatch('its digest', reference.digest.value, digest.value);
    if (announced !== undefined && digestOf(document, announced.algorithm).value !== announced.value) {
      throw this.mismatch('its Docker-Content-Digest', announced.value, digestOf(document, announced.algorithm).value);
    }
    await ctx.local.storage.blobs.put(document, digest.algorithm);
    await ctx.local.storage.revisions.link(this.name, digest);
    ctx.log.info({ repository: this.name, reference: reference.value, digest: digest.value, mediaType, upstream: ctx.upstream.name }, 'manifest cached');
    return this.remember({ digest, mediaType, payload: document });
  }

  /** A schema1 signed manifest: verified, checked, then payload and signatures stored apart, served with every signature known. */
  private async fetchedSchema1(reference: Reference, document: Buffer, expected: Digest | undefined): Promise<HotManifest> {
    const { ctx } = this;
    let ingested;
    try {
      ingested = await ctx.local.storage.schema1.ingest(this.name, document, expected);
    } catch (err) {
      if (err instanceof RegistryError && err.code === 'DIGEST_INVALID') {
        throw new RegistryError('UPSTREAM_ERROR', `upstream ${ctx.upstream.name} sent a schema1 manifest whose payload does not match its digest`, { cause: err });
      }
      throw err;
    }
    const { digest, added } = ingested;
    const { mediaType, payload } = await ctx.local.storage.servableManifest(this.name, digest);
    ctx.log.info({ repository: this.name, reference: reference.value, digest: digest.value, signaturesAdded: added, upstream: ctx.upstream.name }, 'schema1 manifest cached');
    return this.remember({ digest, mediaType, payload });
  }
}
