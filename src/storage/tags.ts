/** The tag store: `_manifests/tags/<tag>/current/link` plus the `index/` history. */
import type { Digest } from '../registry/digest.js';
import { nameUnknown } from '../registry/errors.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import { isPathNotFound, type StorageDriver } from './driver.js';
import { readLink } from './links.js';
import { pathFor } from './paths.js';

export class TagStore {
  constructor(private readonly driver: StorageDriver) {}

  /** The digest a tag points at, or undefined. */
  async resolve(name: RepositoryName, tag: Tag): Promise<Digest | undefined> {
    return readLink(this.driver, pathFor({ kind: 'tagCurrentLink', name, tag }));
  }

  /** Points the tag at a revision, recording it in the tag's index as Distribution does. */
  async tag(name: RepositoryName, tag: Tag, digest: Digest): Promise<void> {
    await this.driver.putContent(pathFor({ kind: 'tagIndexLink', name, tag, digest }), digest.value);
    await this.driver.putContent(pathFor({ kind: 'tagCurrentLink', name, tag }), digest.value);
  }

  async list(name: RepositoryName): Promise<string[]> {
    try {
      return await this.driver.list(pathFor({ kind: 'tagsRoot', name }));
    } catch (err) {
      if (isPathNotFound(err)) throw nameUnknown(name);
      throw err;
    }
  }
}
