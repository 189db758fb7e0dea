/**
 * Schema1 signatures kept beside a manifest revision, in Distribution 2.0's
 * layout: each signature's JSON is a blob of its own, linked at
 * `_manifests/revisions/<alg>/<hex>/signatures/<alg>/<sig hex>/link`.
 * Later 2.x releases no longer write these (2.8 signs on every GET instead),
 * but reads of older trees, and Stevedore keeping an upstream's signatures,
 * use the same place.
 */
import { type Digest, digestOf } from '../registry/digest.js';
import { isRegistryError } from '../registry/errors.js';
import type { RepositoryName } from '../registry/names.js';
import { parseSignature, type Schema1Signature } from '../registry/schema1.js';
import type { BlobStore } from './blobs.js';
import type { StorageDriver } from './driver.js';
import { linkedDigests, readLink } from './links.js';
import { pathFor } from './paths.js';

export class SignatureStore {
  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
  ) {}

  /** Stores the signature blob and links it to the revision; true when the link is new. */
  async add(name: RepositoryName, revision: Digest, signature: Schema1Signature): Promise<boolean> {
    // the blob is (re)written even when linked, in case it was collected since
    const { digest } = await this.blobs.put(signature.raw);
    const path = pathFor({ kind: 'signatureLink', name, revision, signature: digest });
    if ((await readLink(this.driver, path))?.value === digest.value) return false;
    await this.driver.putContent(path, digest.value);
    return true;
  }

  /** Digests of the signature blobs linked to a revision. */
  async digests(name: RepositoryName, revision: Digest): Promise<Digest[]> {
    const root = pathFor({ kind: 'signaturesRoot', name, revision });
    const out: Digest[] = [];
    for (const dir of await linkedDigests(this.driver, root, true)) {
      const link = await readLink(this.driver, pathFor({ kind: 'signatureLink', name, revision, signature: dir }));
      if (link !== undefined) out.push(link);
    }
    return out;
  }

  /**
   * Every signature linked to a revision, in link order. A link whose blob is
   * gone or does not hold a signature is skipped; storage failures propagate,
   * so a flaky disk is not mistaken for a revision without signatures.
   */
  async list(name: RepositoryName, revision: Digest): Promise<Schema1Signature[]> {
    const out: Schema1Signature[] = [];
    for (const digest of await this.digests(name, revision)) {
      try {
        const content = await this.blobs.get(digest);
        if (digestOf(content, digest.algorithm).value !== digest.value) continue;
        out.push(parseSignature(content));
      } catch (err) {
        if (isRegistryError(err)) continue;
        throw err;
      }
    }
    return out;
  }
}
