/**
 * Hosted repositories: local storage with a write side. Pushes go through
 * the same stores as the cache's fills (blob store, `_layers` links, the
 * revision and tag stores, schema1 signatures apart), so what is pushed here
 * is laid out exactly as Distribution lays out a push, and Distribution can
 * serve it, and the other way round.
 *
 * - A manifest is stored only once it parses as the type it claims and
 *   every blob and child manifest it references is in the repository; its
 *   `subject` need not be (referrers may arrive before their subject).
 * - A tag update is not destructive: the old revision stays reachable by
 *   digest, and the tag's `index/` keeps every revision it pointed at.
 * - Deletes unlink (soft delete, as Distribution does); the data goes with
 *   `stevedore gc`. With `storage.delete.enabled: false` every delete is
 *   UNSUPPORTED; with read-only storage every write is.
 */
import { type Digest, digestOf } from '../registry/digest.js';
import { blobUnknown, manifestUnknown, RegistryError } from '../registry/errors.js';
import { MediaType } from '../registry/mediatypes.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import type { Descriptor } from '../registry/manifest.js';
import { isForeignLayer, parsePushedManifest } from '../registry/push.js';
import type { Reference } from '../registry/reference.js';
import type { BlobDescriptor, PushedManifest, Repository, RepositoryWriter, UploadService, WritableRegistry } from '../registry/services.js';
import { isPathNotFound } from '../storage/driver.js';
import { children } from '../storage/links.js';
import type { LocalRegistry, LocalStorage } from '../storage/local.js';
import { pathFor } from '../storage/paths.js';
import { UploadSessions, type UploadHooks } from './uploads.js';

export interface HostedOptions {
  /** storage.delete.enabled */
  deletes: boolean;
  /** storage.maintenance.readonly.enabled */
  readonly: boolean;
  /** limits.manifestbytes */
  maxManifestBytes: number;
  hooks?: UploadHooks;
}

/** The registry of hosted repositories: reads as local storage does, writes through RepositoryWriter. */
export class HostedRegistry implements WritableRegistry {
  private readonly sessions: UploadSessions;

  constructor(
    private readonly local: LocalRegistry,
    private readonly options: HostedOptions,
  ) {
    this.sessions = new UploadSessions(local.storage, options.hooks);
  }

  repository(name: RepositoryName): Repository {
    return this.local.repository(name);
  }

  catalog(limit: number, last?: string): Promise<string[]> {
    return this.local.catalog(limit, last);
  }

  writer(name: RepositoryName): RepositoryWriter {
    return new HostedWriter(this.local.storage, name, this.sessions.service(name), this.options);
  }
}

const unsupported = (message: string): RegistryError => new RegistryError('UNSUPPORTED', message);

const manifestBlobUnknown = (digest: Digest, what: string): RegistryError =>
  new RegistryError('MANIFEST_BLOB_UNKNOWN', `manifest references ${what} ${digest.value}, which is not in the repository: push it first`, {
    detail: { digest: digest.value },
  });

class HostedWriter implements RepositoryWriter {
  readonly uploads: UploadService;

  constructor(
    private readonly storage: LocalStorage,
    private readonly name: RepositoryName,
    uploads: UploadService,
    private readonly options: HostedOptions,
  ) {
    this.uploads = options.readonly ? readOnlyUploads(uploads) : uploads;
  }

  private writable(what: string): void {
    if (this.options.readonly) throw unsupported(`the registry is read-only (storage.maintenance.readonly.enabled): ${what} is refused`);
  }

  private deletable(what: string): void {
    this.writable(what);
    if (!this.options.deletes) throw unsupported(`deletes are disabled (storage.delete.enabled: false): ${what} is refused`);
  }

  async mount(digest: Digest, from: RepositoryName): Promise<BlobDescriptor | undefined> {
    this.writable('a blob mount');
    const { layers, blobs } = this.storage;
    if (!(await layers.has(from, digest))) return undefined;
    const descriptor = await blobs.stat(digest);
    if (descriptor === undefined) return undefined;
    await layers.link(this.name, digest);
    return descriptor;
  }

  async putManifest(reference: Reference, payload: Buffer, contentType: string | undefined): Promise<PushedManifest> {
    this.writable('a manifest push');
    const parsed = parsePushedManifest(payload, contentType, this.options.maxManifestBytes);
    const { storage, name } = this;
    const algorithm = reference.kind === 'digest' ? reference.digest.algorithm : 'sha256';
    let digest: Digest;
    if (parsed.mediaType === MediaType.DockerSchema1Signed || parsed.mediaType === MediaType.DockerSchema1) {
      await this.checkReferences(parsed.blobs, []);
      // Signatures verified, payload and signatures stored apart (a second push with another signature adds it).
      ({ digest } = await storage.schema1.ingest(name, payload, reference.kind === 'digest' ? reference.digest : undefined));
    } else {
      digest = digestOf(payload, algorithm);
      if (reference.kind === 'digest' && reference.digest.value !== digest.value) {
        throw new RegistryError('DIGEST_INVALID', `provided digest did not match uploaded content: the manifest hashes to ${digest.value}`, {
          detail: { digest: reference.digest.value },
        });
      }
      await this.checkReferences(parsed.blobs, parsed.manifests);
      await storage.blobs.put(payload, algorithm);
      await storage.revisions.link(name, digest);
    }
    if (reference.kind === 'tag') await storage.tags.tag(name, reference.tag, digest);
    return parsed.subject === undefined ? { digest } : { digest, subject: parsed.subject.digest };
  }

  /** Every blob the manifest needs is linked here with the size it says; every child manifest is a revision here. */
  private async checkReferences(blobs: readonly Descriptor[], manifests: readonly { digest: Digest }[]): Promise<void> {
    const { storage, name } = this;
    for (const blob of blobs) {
      if (isForeignLayer(blob)) continue;
      const linked = (await storage.layers.has(name, blob.digest)) || (await storage.revisions.has(name, blob.digest));
      const stored = linked ? await storage.blobs.stat(blob.digest) : undefined;
      if (stored === undefined) throw manifestBlobUnknown(blob.digest, 'blob');
      // Schema1 layers carry no size (-1).
      if (blob.size >= 0 && stored.size !== blob.size) {
        throw new RegistryError('MANIFEST_INVALID', `manifest invalid: blob ${blob.digest.value} has ${stored.size} bytes, the manifest says ${blob.size}`, {
          detail: { digest: blob.digest.value },
        });
      }
    }
    for (const child of manifests) {
      if (!(await storage.revisions.has(name, child.digest))) throw manifestBlobUnknown(child.digest, 'manifest');
    }
  }

  async deleteManifest(digest: Digest): Promise<void> {
    this.deletable('a manifest delete');
    const { storage, name } = this;
    if (!(await storage.revisions.has(name, digest))) throw manifestUnknown(name, digest.value);
    await storage.revisions.unlink(name, digest);
    // Tags pointing at it go with it, as Distribution does (each tag directory whole, its index too).
    for (const tag of await children(storage.driver, pathFor({ kind: 'tagsRoot', name }))) {
      const current = await storage.tags.resolve(name, tag as Tag).catch(() => undefined);
      if (current?.value === digest.value) await this.removeTag(tag as Tag);
    }
  }

  async deleteTag(tag: Tag): Promise<void> {
    this.deletable('a tag delete');
    if ((await this.storage.tags.resolve(this.name, tag)) === undefined) throw manifestUnknown(this.name, tag);
    await this.removeTag(tag);
  }

  private async removeTag(tag: Tag): Promise<void> {
    await this.storage.driver.delete(pathFor({ kind: 'tag', name: this.name, tag })).catch((err: unknown) => {
      if (!isPathNotFound(err)) throw err;
    });
  }

  async deleteBlob(digest: Digest): Promise<void> {
    this.deletable('a blob delete');
    const { storage, name } = this;
    if (!(await storage.layers.has(name, digest))) throw blobUnknown(digest.value);
    await storage.layers.unlink(name, digest);
  }
}

/** Uploads refused in read-only mode (status and cancel still work: they change nothing that is served). */
function readOnlyUploads(uploads: UploadService): UploadService {
  const refuse = (): Promise<never> => Promise.reject(unsupported('the registry is read-only (storage.maintenance.readonly.enabled): uploads are refused'));
  return {
    create: refuse,
    status: (id) => uploads.status(id),
    append: refuse,
    finish: refuse,
    cancel: (id) => uploads.cancel(id),
  };
}
