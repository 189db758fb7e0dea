/**
 * Link files make a global blob visible in one repository: `_layers` for
 * blobs, `_manifests/revisions` for manifests, `signatures` for schema1
 * signatures. A link holds the digest string, as Distribution writes it.
 */
import { type Digest, tryParseDigest } from '../registry/digest.js';
import type { RepositoryName } from '../registry/names.js';
import { isPathNotFound, type StorageDriver } from './driver.js';
import { pathFor, type PathSpec } from './paths.js';
import type { ReferenceWatch } from './references.js';

export type LinkKind = 'layerLink' | 'revisionLink';

export class LinkStore {
  constructor(
    private readonly driver: StorageDriver,
    private readonly kind: LinkKind,
    private readonly references?: ReferenceWatch,
  ) {}

  private path(name: RepositoryName, digest: Digest): string {
    return pathFor({ kind: this.kind, name, digest } as PathSpec);
  }

  /** True when the repository links the digest (and the link says so). */
  async has(name: RepositoryName, digest: Digest): Promise<boolean> {
    return (await readLink(this.driver, this.path(name, digest)))?.value === digest.value;
  }

  async link(name: RepositoryName, digest: Digest): Promise<void> {
    this.references?.referenced(digest);
    await this.driver.putContent(this.path(name, digest), digest.value);
  }

  async unlink(name: RepositoryName, digest: Digest): Promise<void> {
    await this.driver.delete(this.path(name, digest)).catch((err: unknown) => {
      if (!isPathNotFound(err)) throw err;
    });
  }
}

/** Reads a link file; undefined when it is missing or does not hold a valid digest. */
export async function readLink(driver: StorageDriver, path: string): Promise<Digest | undefined> {
  try {
    const content = await driver.getContent(path);
    return tryParseDigest(content.toString('utf8').trim());
  } catch (err) {
    if (isPathNotFound(err)) return undefined;
    throw err;
  }
}

/** Children of a directory; [] when it does not exist. */
export async function children(driver: StorageDriver, path: string): Promise<string[]> {
  try {
    return await driver.list(path);
  } catch (err) {
    if (isPathNotFound(err)) return [];
    throw err;
  }
}

/**
 * Digests linked under `<root>/<algorithm>/<hex>/link`, as link directories
 * are laid out. A directory whose `link` is gone is not a link: a delete
 * (ours or Distribution's) removes the file and leaves the directory, and a
 * revision's directory outlives its link when it holds signatures.
 * `namesOnly` lists the directories without reading a link (an upper bound,
 * for counts that may err on the side of keeping).
 */
export async function linkedDigests(driver: StorageDriver, root: string, namesOnly = false): Promise<Digest[]> {
  const out: Digest[] = [];
  for (const algorithm of await children(driver, root)) {
    for (const hex of await children(driver, `${root}/${algorithm}`)) {
      const digest = tryParseDigest(`${algorithm}:${hex}`);
      if (digest === undefined) continue;
      if (namesOnly || (await readLink(driver, `${root}/${algorithm}/${hex}/link`))?.value === digest.value) out.push(digest);
    }
  }
  return out;
}
