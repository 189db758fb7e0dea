/**
 * Manifests through the proxy.
 *
 * By digest: immutable, served from storage once stored; on a miss fetched,
 * verified against the digest, stored and linked.
 * By tag: a tag the upstream confirmed less than `tagTtl` ago is served from
 * memory or storage without asking. Otherwise the upstream is asked with a
 * HEAD (free on Docker Hub's rate limit); a known digest only refreshes the
 * tag, an unknown one is fetched with a GET. When the upstream is down,
 * rate-limiting or failing, the cached tag is served stale with a warning.
 * Payloads are stored and served exactly as the upstream sent them.
 */
import { manifestUnknown, RegistryError } from '../registry/errors.js';
import { type Digest, digestOf, tryParseDigest } from '../registry/digest.js';
import { MAX_MANIFEST_SIZE, parseManifest } from '../registry/manifest.js';
import { accepts, MANIFEST_MEDIA_TYPES, MediaType } from '../registry/mediatypes.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import type { Reference } from '../registry/reference.js';
import type { ManifestContent, ManifestRequest, ManifestService } from '../registry/services.js';
import { checkAcceptable, type LocalManifests } from '../storage/local.js';
import type { HotManifest, ProxyContext } from './context.js';
import { discard, readBody, upstreamError, type UpstreamResponse } from './upstream.js';

const staleWarning = (upstream: string, why: string): string =>
  `stevedore: served from cache; upstream ${upstream} is unavailable (${why})`;

export class ProxyManifests implements ManifestService {
  constructor(
    private readonly ctx: ProxyContext,
    private readonly name: RepositoryName,
    private readonly local: LocalManifests,
  ) {}

  async get(reference: Reference, request: ManifestRequest): Promise<ManifestContent> {
    const content = reference.kind === 'digest' ? await this.byDigest(reference.digest, request) : await this.byTag(reference.tag, request);
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
    const key = `${this.name}@${digest.value}`;
    if ((await this.local.resolve({ kind: 'digest', digest, value: digest.value })) === undefined) return undefined;
    let read;
    try {
      read = await this.ctx.local.storage.servableManifest(this.name, digest);
    } catch (err) {
      // A revision link whose payload is gone (maintenance) is a miss, not an error.
      if (err instanceof RegistryError && err.code === 'BLOB_UNKNOWN') return undefined;
      throw err;
    }
    const { mediaType, payload } = read;
    const entry = { digest, mediaType, payload };
    this.ctx.hotManifests.set(key, entry);
    return entry;
  }

  private serve(entry: HotManifest, reference: Reference, request: ManifestRequest, warnings?: string[]): ManifestContent {
    checkAcceptable(this.name, reference, entry.mediaType, request.accept);
    const { digest, mediaType, payload } = entry;
    return warnings ? { digest, mediaType, payload, warnings } : { digest, mediaType, payload };
  }

  private async byDigest(digest: Digest, request: ManifestRequest): Promise<ManifestContent> {
    const reference: Reference = { kind: 'digest', digest, value: digest.value };
    const cached = await this.stored(digest);
    if (cached !== undefined) return this.serve(cached, reference, request);
    const fetched = await this.fetch(digest.value, request);
    if (fetched.digest.value !== digest.value) {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.ctx.upstream.name} sent a manifest that does not match its digest`, {
        detail: { expected: digest.value, actual: fetched.digest.value },
      });
    }
    return this.serve(fetched, reference, request);
  }

  private async byTag(tag: Tag, request: ManifestRequest): Promise<ManifestContent> {
    const reference: Reference = { kind: 'tag', tag, value: tag };
    const { ctx } = this;
    const key = `${this.name}:${tag}`;
    const known = ctx.hotTags.get(key) ?? (await this.knownTag(tag));
    const cached = known === undefined ? undefined : await this.stored(known.digest);
    if (known !== undefined && cached !== undefined && ctx.now - known.checkedAt < ctx.policy.tagTtlMs && accepts(request.accept, cached.mediaType)) {
      return this.serve(cached, reference, request);
    }
    try {
      const entry = await this.refreshTag(tag, request, cached);
      return this.serve(entry, reference, request);
    } catch (err) {
      const outage = err instanceof RegistryError && ['UNAVAILABLE', 'UPSTREAM_ERROR', 'TOOMANYREQUESTS'].includes(err.code);
      if (!outage || cached === undefined) throw err;
      ctx.log.warn({ repository: this.name, tag, upstream: ctx.upstream.name, reason: err.message }, 'serving a stale tag: upstream unavailable');
      return this.serve(cached, reference, request, [staleWarning(ctx.upstream.name, err.code)]);
    }
  }

  /** The tag as last recorded in metadata, else as found in storage (never confirmed: checkedAt 0). */
  private async knownTag(tag: Tag): Promise<{ digest: string; checkedAt: number } | undefined> {
    const recorded = await this.ctx.metadata.getTag(this.ctx.upstream.name, this.name, tag);
    if (recorded !== undefined) return recorded;
    const digest = await this.ctx.local.storage.tags.resolve(this.name, tag);
    return digest === undefined ? undefined : { digest: digest.value, checkedAt: 0 };
  }

  /** Asks the upstream what the tag points at now; fetches only what is not stored. */
  private async refreshTag(tag: Tag, request: ManifestRequest, cached: HotManifest | undefined): Promise<HotManifest> {
    const { ctx } = this;
    const head = await ctx.upstream.request({ method: 'HEAD', repository: this.name, kind: 'manifests', reference: tag, headers: this.acceptHeader(request) });
    discard(head);
    if (head.status !== 200) throw this.failure(head, tag);
    const announced = tryParseDigest(head.headers['docker-content-digest'] ?? '');
    let entry = announced === undefined ? undefined : cached?.digest.value === announced.value ? cached : await this.stored(announced);
    // Schema1 signatures differ from fetch to fetch: a GET collects the upstream's current ones.
    if (entry === undefined || entry.mediaType === MediaType.DockerSchema1Signed) entry = await this.fetch(tag, request);
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

  private acceptHeader(request: ManifestRequest): Record<string, string> {
    const wanted = request.accept.filter((type) => (MANIFEST_MEDIA_TYPES as readonly string[]).includes(type));
    return { Accept: (wanted.length > 0 ? wanted : MANIFEST_MEDIA_TYPES).join(', ') };
  }

  private failure(response: UpstreamResponse, reference: string): RegistryError {
    return upstreamError(this.ctx.upstream.name, response.status, response.headers, () => manifestUnknown(this.name, reference));
  }

  /** GETs a manifest from the upstream, verifies and stores it, links the revision. */
  private async fetch(reference: string, request: ManifestRequest): Promise<HotManifest> {
    const { ctx } = this;
    const response = await ctx.upstream.request({ method: 'GET', repository: this.name, kind: 'manifests', reference, headers: this.acceptHeader(request) });
    if (response.status !== 200) {
      discard(response);
      throw this.failure(response, reference);
    }
    const document = await readBody(response, MAX_MANIFEST_SIZE, 'manifest');
    const contentType = response.headers['content-type']?.split(';')[0]?.trim();
    let mediaType: string;
    try {
      mediaType = parseManifest(document, contentType).mediaType;
    } catch (err) {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${ctx.upstream.name} sent an invalid manifest: ${(err as Error).message}`, { cause: err });
    }
    if (mediaType === MediaType.DockerSchema1Signed) return this.fetchedSchema1(reference, document, response.headers['docker-content-digest']);
    const payload = document;
    const digest = digestOf(payload);
    const announced = response.headers['docker-content-digest'];
    if (announced !== undefined && announced !== digest.value && announced.startsWith('sha256:')) {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${ctx.upstream.name} sent a manifest whose content does not match its Docker-Content-Digest`, {
        detail: { announced, actual: digest.value },
      });
    }
    await ctx.local.storage.blobs.put(payload);
    await ctx.local.storage.revisions.link(this.name, digest);
    const entry = { digest, mediaType, payload };
    ctx.hotManifests.set(`${this.name}@${digest.value}`, entry);
    ctx.log.info({ repository: this.name, reference, digest: digest.value, mediaType, upstream: ctx.upstream.name }, 'manifest cached');
    return entry;
  }

  /** A schema1 signed manifest: verified, payload and signatures stored apart, served with every signature known. */
  private async fetchedSchema1(reference: string, document: Buffer, announced: string | undefined): Promise<HotManifest> {
    const { ctx } = this;
    const { digest, added } = await ctx.local.storage.schema1.ingest(this.name, document);
    if (announced !== undefined && announced !== digest.value && announced.startsWith('sha256:')) {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${ctx.upstream.name} sent a schema1 manifest whose payload does not match its Docker-Content-Digest`, {
        detail: { announced, actual: digest.value },
      });
    }
    const { mediaType, payload } = await ctx.local.storage.servableManifest(this.name, digest);
    const entry = { digest, mediaType, payload };
    ctx.hotManifests.set(`${this.name}@${digest.value}`, entry);
    ctx.log.info({ repository: this.name, reference, digest: digest.value, signaturesAdded: added, upstream: ctx.upstream.name }, 'schema1 manifest cached');
    return entry;
  }
}
