/**
 * Blobs through the proxy: served from storage when linked in the repository;
 * otherwise fetched once from the upstream and streamed to every client while
 * it is stored. A blob another repository already holds is linked here only
 * after the upstream confirmed this repository has it: content never leaks
 * across repositories through the cache.
 */
import { blobUnknown, RegistryError } from '../registry/errors.js';
import type { Digest } from '../registry/digest.js';
import { MediaType } from '../registry/mediatypes.js';
import type { RepositoryName } from '../registry/names.js';
import { type RangeSpec, resolveRange } from '../registry/range.js';
import type { BlobContent, BlobDescriptor, BlobRequest, BlobService } from '../registry/services.js';
import type { LocalBlobs } from '../storage/local.js';
import type { RemoteRepository } from '../upstream/remote.js';
import type { ProxyContext } from './context.js';
import type { BlobFill } from './fill.js';

export class ProxyBlobs implements BlobService {
  private readonly remote: RemoteRepository;

  /** Present only with storage.redirect on: the warm GET path otherwise does not even ask. */
  readonly redirect?: (digest: Digest) => Promise<string | undefined>;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly name: RepositoryName,
    private readonly local: LocalBlobs,
  ) {
    this.remote = ctx.remoteRepository(name);
    if (ctx.local.storage.redirects) this.redirect = (digest) => this.directUrl(digest);
  }

  private key(digest: Digest): string {
    return `${this.name}@${digest.value}`;
  }

  /**
   * The blob as stored and linked here, adopting it from the global store when
   * the upstream vouches for this repository; undefined when it must be fetched.
   * A link whose data is gone (removed by maintenance) counts as a miss.
   * Known links are remembered with the blob's size, so the warm path makes
   * no stat: a GET finds out by opening the file (see open()).
   */
  private async cached(digest: Digest): Promise<BlobDescriptor | undefined> {
    const key = this.key(digest);
    const known = this.ctx.caches.linkedBlobs.get(key);
    if (known !== undefined) return { digest, size: known, mediaType: MediaType.OctetStream };
    const { storage } = this.ctx.local;
    if (await this.local.linked(digest)) {
      const descriptor = await storage.blobs.stat(digest);
      if (descriptor !== undefined) this.ctx.caches.linkedBlobs.set(key, descriptor.size);
      return descriptor;
    }
    const global = await storage.blobs.stat(digest);
    if (global === undefined) return undefined;
    await this.confirm(digest);
    // Read-only: served as confirmed, without the link that would remember it.
    if (this.ctx.policy.readonly !== true) await storage.layers.link(this.name, digest);
    this.ctx.caches.linkedBlobs.set(key, global.size);
    return global;
  }

  /** Asks the upstream (HEAD, cached) whether this repository has the blob; returns its size. */
  private async confirm(digest: Digest): Promise<number> {
    const cached = this.ctx.caches.confirmedBlobs.get(this.key(digest));
    if (cached !== undefined) return cached;
    const { size } = await this.remote.blobs.stat(digest);
    this.ctx.caches.confirmedBlobs.set(this.key(digest), size);
    return size;
  }

  /** A stored blob's direct URL (storage.redirect); a blob not stored yet is filled through open(). */
  private async directUrl(digest: Digest): Promise<string | undefined> {
    const descriptor = await this.cached(digest);
    if (descriptor === undefined) return undefined;
    const url = await this.ctx.local.storage.redirectUrl(digest);
    if (url !== undefined) {
      this.ctx.hooks.metrics?.cache('blob', 'hit');
      this.ctx.touch(digest.value);
    }
    return url;
  }

  // Only content that is stored (or being stored) is touched: a probe for an
  // unknown digest must not leave an access record behind. A HEAD starts no
  // fill, so it is never refused by the fill limits.
  async stat(digest: Digest): Promise<BlobDescriptor> {
    const descriptor = await this.cached(digest);
    if (descriptor !== undefined) {
      this.ctx.hooks.metrics?.cache('blob', 'hit');
      this.ctx.touch(digest.value);
      return descriptor;
    }
    this.ctx.hooks.metrics?.cache('blob', 'miss');
    // A HEAD does not fill: it only tells whether the upstream has the blob.
    return { digest, size: await this.confirm(digest), mediaType: MediaType.OctetStream };
  }

  /** A miss starts a fill for `request.client`, within the fill limits; joining one is always allowed. */
  async open(digest: Digest, range?: RangeSpec, request?: BlobRequest): Promise<BlobContent> {
    const descriptor = await this.cached(digest);
    if (descriptor !== undefined) {
      try {
        return await this.serveStored(descriptor, range);
      } catch (err) {
        // Remembered as linked, but its data went (maintenance elsewhere): a miss.
        if (!(err instanceof RegistryError && err.code === 'BLOB_UNKNOWN')) throw err;
        this.ctx.caches.linkedBlobs.delete(this.key(digest));
      }
    }
    const fill = await this.joinOrStart(digest, request?.client);
    if (fill === undefined) {
      // Committed by a fill that ended while we looked: served from storage like any cached blob.
      const stored = await this.cached(digest);
      if (stored === undefined) throw blobUnknown(digest.value);
      return this.serveStored(stored, range);
    }
    this.ctx.hooks.metrics?.cache('blob', 'miss');
    this.ctx.touch(digest.value);
    const filling = { digest, size: fill.size, mediaType: MediaType.OctetStream };
    const resolved = range === undefined ? undefined : resolveRange(range, fill.size);
    return this.held(digest, async () => {
      const file = await fill.openFile();
      return resolved === undefined ? { descriptor: filling, file } : { descriptor: filling, range: resolved, file };
    });
  }

  private async serveStored(descriptor: BlobDescriptor, range: RangeSpec | undefined): Promise<BlobContent> {
    const { digest } = descriptor;
    this.ctx.touch(digest.value);
    const resolved = range === undefined ? undefined : resolveRange(range, descriptor.size);
    const { metrics } = this.ctx.hooks;
    if (metrics !== undefined) {
      // Counted as opened: what a client cuts short still counts as served.
      metrics.cache('blob', 'hit');
      metrics.bytes('cache', resolved === undefined ? descriptor.size : resolved.end - resolved.start + 1);
    }
    return this.held(digest, async () => {
      const body = await this.ctx.local.storage.blobs.body(digest, resolved);
      return resolved === undefined ? { descriptor, ...body } : { descriptor, ...body, range: resolved };
    });
  }

  /**
   * Opens a body that storage.quota must not delete until it is closed (held
   * before the open, so no eviction slips in between); as is without a quota.
   */
  private async held(digest: Digest, open: () => Promise<BlobContent>): Promise<BlobContent> {
    const { quota } = this.ctx.hooks;
    if (quota === undefined) return open();
    const release = quota.hold(digest);
    let content: BlobContent;
    try {
      content = await open();
    } catch (err) {
      release();
      throw err;
    }
    if (content.stream !== undefined) {
      content.stream.once('close', release);
      return content;
    }
    const { file } = content;
    return {
      ...content,
      file: {
        read: (buffer, length, position) => file.read(buffer, length, position),
        close: () => {
          release();
          return file.close();
        },
      },
    };
  }

  /**
   * The fill of `digest` to follow, or undefined when the blob is stored by
   * now. Another repository's fill is joined only once the upstream confirms
   * this repository has the blob too; if that fill fails to start, its error
   * is that repository's (say, it does not exist upstream), and this one
   * starts a fill of its own.
   */
  private async joinOrStart(digest: Digest, client: string | undefined): Promise<BlobFill | undefined> {
    const { fills, local } = this.ctx;
    this.ctx.assertWritable(`blob ${digest.value}`);
    const running = fills.current(this.ctx.upstream, digest);
    if (running !== undefined && running.repository !== this.name) {
      await this.confirm(digest);
      const fill = await running.started.catch(() => undefined);
      if (fill !== undefined && fill.state !== 'failed') {
        this.ctx.hooks.metrics?.follower();
        void fill.done.then(
          () => local.storage.layers.link(this.name, digest),
          () => undefined,
        );
        return fill;
      }
    }
    return fills.start(this.remote.blobs, this.ctx.upstream, this.name, digest, async (done) => {
      await local.storage.layers.link(done.repository, done.digest);
      this.ctx.caches.linkedBlobs.set(`${done.repository}@${done.digest.value}`, done.size);
    }, this.ctx.policy.fill, client, this.ctx.hooks.metrics);
  }
}
