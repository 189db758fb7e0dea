/**
 * The bundle: an OCI image layout in a tar, with Stevedore's own index of
 * every file first, so an import knows what to expect before the first blob
 * arrives and can check each entry as it streams past.
 *
 *   stevedore-bundle.json     this index: every file's path, digest and size;
 *                             per image its repository as stored, tag, manifest
 *                             digest, manifests, blobs, schema1 signatures,
 *                             referrers and the tags attached to it
 *   oci-layout                {"imageLayoutVersion":"1.0.0"}
 *   index.json                one descriptor per image, with
 *                             org.opencontainers.image.ref.name (what
 *                             `skopeo copy oci-archive:bundle.tar:<name>` asks
 *                             for), io.stevedore.repository, io.stevedore.reference
 *   blobs/<alg>/<hex>         every manifest, config, layer, schema1 signature
 *                             and referrer; a schema1 manifest as stored (its
 *                             payload, unsigned), its signatures beside it
 *
 * Nothing else: an import refuses any other entry name, any entry that is
 * not a regular file, and any listed file the tar lacks.
 */
import { type Digest, parseDigest } from '../registry/digest.js';
import { isRegistryError } from '../registry/errors.js';
import { parseRepositoryName, parseTag, type RepositoryName, type Tag } from '../registry/names.js';
import { TransferError } from './errors.js';

export const BUNDLE_INDEX_PATH = 'stevedore-bundle.json';
export const OCI_LAYOUT_PATH = 'oci-layout';
export const OCI_INDEX_PATH = 'index.json';
export const BUNDLE_FORMAT = 'stevedore-bundle/v1';
export const OCI_LAYOUT = { imageLayoutVersion: '1.0.0' } as const;

export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANNOTATION_REPOSITORY = 'io.stevedore.repository';
export const ANNOTATION_REFERENCE = 'io.stevedore.reference';

/** The bundle index and the layout's JSON files are read whole: bounded. */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;
export const MAX_LAYOUT_FILE_BYTES = 16 * 1024 * 1024;

export const blobPath = (digest: Digest): string => `blobs/${digest.algorithm}/${digest.hex}`;

export interface BundleFile {
  path: string;
  digest: Digest;
  size: number;
}

export interface BundleSignatures {
  /** The schema1 revision (payload digest). */
  revision: Digest;
  signatures: Digest[];
}

export interface BundleTag {
  tag: Tag;
  digest: Digest;
}

export interface BundleImage {
  /** The reference as given to export. */
  reference: string;
  /** The repository as stored (under its upstream's namespace). */
  repository: RepositoryName;
  /** The tag import points at `digest`; absent for an image exported by digest alone. */
  tag?: Tag;
  /** What the reference names: the image manifest or index. */
  digest: Digest;
  /** Its index.json name. */
  refName: string;
  /** Every manifest of the image: `digest` first, then the index children exported. */
  manifests: Digest[];
  /** Configs and layers of the image's manifests and of its referrers. */
  blobs: Digest[];
  /** Schema1 signatures, per revision. */
  signatures: BundleSignatures[];
  /** Manifests whose subject is one of the image's (signatures, SBOMs), and manifests attached by tag. */
  referrers: Digest[];
  /** Tags beside the image's own: cosign's `sha256-<hex>.sig`, the referrers tag schema's `sha256-<hex>`. */
  tags: BundleTag[];
}

export interface BundleIndex {
  format: typeof BUNDLE_FORMAT;
  files: BundleFile[];
  images: BundleImage[];
}

const bad = (why: string): TransferError => new TransferError('ERR_BUNDLE_INDEX', `${BUNDLE_INDEX_PATH} is not a valid bundle index: ${why}`);

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The JSON written to the bundle: digests as strings, keys in a fixed order. */
export function serializeBundleIndex(index: BundleIndex): Buffer {
  const images = index.images.map((image) => ({
    reference: image.reference,
    repository: image.repository,
    ...(image.tag === undefined ? {} : { tag: image.tag }),
    digest: image.digest.value,
    refName: image.refName,
    manifests: image.manifests.map((d) => d.value),
    blobs: image.blobs.map((d) => d.value),
    signatures: image.signatures.map((s) => ({ revision: s.revision.value, signatures: s.signatures.map((d) => d.value) })),
    referrers: image.referrers.map((d) => d.value),
    tags: image.tags.map((t) => ({ tag: t.tag, digest: t.digest.value })),
  }));
  const files = index.files.map((f) => ({ path: f.path, digest: f.digest.value, size: f.size }));
  return Buffer.from(`${JSON.stringify({ format: index.format, files, images }, null, 1)}\n`);
}

function digestField(value: unknown, where: string): Digest {
  if (typeof value !== 'string') throw bad(`${where} is not a digest`);
  try {
    return parseDigest(value);
  } catch (err) {
    throw bad(`${where}: ${isRegistryError(err) ? err.message : 'bad digest'}`);
  }
}

function digestList(value: unknown, where: string): Digest[] {
  if (!Array.isArray(value)) throw bad(`${where} is not a list`);
  return value.map((item, i) => digestField(item, `${where}[${i}]`));
}

function parseFile(value: unknown, where: string): BundleFile {
  if (!isObject(value)) throw bad(`${where} is not an object`);
  const { path, size } = value;
  if (typeof path !== 'string') throw bad(`${where}.path is not a string`);
  const digest = digestField(value.digest, `${where}.digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad(`${where}.size is not a size`);
  if (path === OCI_LAYOUT_PATH || path === OCI_INDEX_PATH) {
    if (size > MAX_LAYOUT_FILE_BYTES) throw bad(`${where}: ${path} larger than ${MAX_LAYOUT_FILE_BYTES} bytes`);
  } else if (path !== blobPath(digest)) {
    throw bad(`${where}.path ${JSON.stringify(path.slice(0, 300))} is not ${blobPath(digest)}, the layout's path for its digest`);
  }
  return { path, digest, size };
}

function parseImage(value: unknown, where: string, blobs: ReadonlySet<string>): BundleImage {
  if (!isObject(value)) throw bad(`${where} is not an object`);
  const { reference, repository, tag, refName } = value;
  if (typeof reference !== 'string') throw bad(`${where}.reference is not a string`);
  if (typeof refName !== 'string' || refName === '') throw bad(`${where}.refName is not a string`);
  const name = (() => {
    try {
      return parseRepositoryName(typeof repository === 'string' ? repository : '');
    } catch (err) {
      throw bad(`${where}.repository: ${(err as Error).message}`);
    }
  })();
  const tagOf = (text: unknown, at: string): Tag => {
    if (typeof text !== 'string') throw bad(`${at} is not a tag`);
    try {
      return parseTag(text);
    } catch {
      throw bad(`${at} ${JSON.stringify(text.slice(0, 200))} is not a valid tag`);
    }
  };
  const image: BundleImage = {
    reference,
    repository: name,
    ...(tag === undefined ? {} : { tag: tagOf(tag, `${where}.tag`) }),
    digest: digestField(value.digest, `${where}.digest`),
    refName,
    manifests: digestList(value.manifests, `${where}.manifests`),
    blobs: digestList(value.blobs, `${where}.blobs`),
    referrers: digestList(value.referrers, `${where}.referrers`),
    signatures: (() => {
      if (!Array.isArray(value.signatures)) throw bad(`${where}.signatures is not a list`);
      return value.signatures.map((entry: unknown, i) => {
        const at = `${where}.signatures[${i}]`;
        if (!isObject(entry)) throw bad(`${at} is not an object`);
        return { revision: digestField(entry.revision, `${at}.revision`), signatures: digestList(entry.signatures, `${at}.signatures`) };
      });
    })(),
    tags: (() => {
      if (!Array.isArray(value.tags)) throw bad(`${where}.tags is not a list`);
      return value.tags.map((entry: unknown, i) => {
        const at = `${where}.tags[${i}]`;
        if (!isObject(entry)) throw bad(`${at} is not an object`);
        return { tag: tagOf(entry.tag, `${at}.tag`), digest: digestField(entry.digest, `${at}.digest`) };
      });
    })(),
  };
  // Everything the image links must arrive in the bundle, verified: nothing is linked on the index's word alone.
  const all = [...image.manifests, ...image.blobs, ...image.referrers, ...image.signatures.flatMap((s) => [s.revision, ...s.signatures]), ...image.tags.map((t) => t.digest)];
  for (const digest of all) if (!blobs.has(digest.value)) throw bad(`${where} names ${digest.value}, which is not among the bundle's files`);
  if (image.manifests[0]?.value !== image.digest.value) throw bad(`${where}.manifests does not start with the image's digest`);
  const manifests = new Set([...image.manifests, ...image.referrers].map((d) => d.value));
  for (const s of image.signatures) if (!manifests.has(s.revision.value)) throw bad(`${where}: signatures of ${s.revision.value}, not one of its manifests`);
  for (const t of image.tags) if (!manifests.has(t.digest.value)) throw bad(`${where}: tag ${t.tag} points at ${t.digest.value}, not one of its manifests`);
  return image;
}

/** Parses and checks a bundle index; throws ERR_BUNDLE_INDEX saying what is wrong. */
export function parseBundleIndex(bytes: Buffer): BundleIndex {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  if (!isObject(json)) throw bad('not a JSON object');
  if (json.format !== BUNDLE_FORMAT) throw bad(`format is ${JSON.stringify(json.format)}, not ${BUNDLE_FORMAT}`);
  if (!Array.isArray(json.files)) throw bad('files is not a list');
  const files = json.files.map((f: unknown, i) => parseFile(f, `files[${i}]`));
  const paths = new Set<string>();
  for (const file of files) {
    if (paths.has(file.path)) throw bad(`${file.path} is listed twice`);
    paths.add(file.path);
  }
  for (const required of [OCI_LAYOUT_PATH, OCI_INDEX_PATH]) if (!paths.has(required)) throw bad(`${required} is not listed`);
  const blobs = new Set(files.filter((f) => f.path.startsWith('blobs/')).map((f) => f.digest.value));
  if (!Array.isArray(json.images) || json.images.length === 0) throw bad('images is not a list of at least one image');
  const images = json.images.map((image: unknown, i) => parseImage(image, `images[${i}]`, blobs));
  return { format: BUNDLE_FORMAT, files, images };
}

/** What a tar entry's header says, as far as the layout cares. */
export interface EntryHeader {
  path: string;
  type: string;
  size: number;
}

/** The files of a bundle by path, and which of them the tar has delivered. */
export class BundleEntries {
  private readonly byPath: Map<string, BundleFile>;
  private readonly seen = new Set<string>();

  constructor(readonly index: BundleIndex) {
    this.byPath = new Map(index.files.map((f) => [f.path, f]));
  }

  /**
   * The file a tar entry is, or why it is refused: a name outside the layout
   * (`..`, absolute, anything not listed), a link, device or directory, a
   * size other than listed, a second entry for one file.
   */
  check(entry: EntryHeader): BundleFile {
    const shown = JSON.stringify(entry.path.slice(0, 300));
    const file = this.byPath.get(entry.path);
    if (file === undefined) {
      if (escapes(entry.path)) throw new TransferError('ERR_BUNDLE_PATH', `entry ${shown} escapes the bundle's layout: refused`);
      throw new TransferError('ERR_BUNDLE_PATH', `entry ${shown} is not a file of the bundle (not in ${BUNDLE_INDEX_PATH}): refused`);
    }
    if (entry.type !== 'File' && entry.type !== 'OldFile') {
      const kind = entry.type === 'SymbolicLink' ? 'a symbolic link' : entry.type === 'Link' ? 'a hard link' : `of type ${entry.type}`;
      throw new TransferError('ERR_BUNDLE_ENTRY', `entry ${shown} is ${kind}; a bundle holds regular files only: refused`);
    }
    if (this.seen.has(entry.path)) throw new TransferError('ERR_BUNDLE_PATH', `entry ${shown} appears twice: refused`);
    if (entry.size !== file.size) {
      throw new TransferError('ERR_BUNDLE_DIGEST', `entry ${shown} is ${entry.size} bytes; ${BUNDLE_INDEX_PATH} says ${file.size}`);
    }
    this.seen.add(entry.path);
    return file;
  }

  /** Files listed in the index that no entry delivered. */
  missing(): BundleFile[] {
    return this.index.files.filter((f) => !this.seen.has(f.path));
  }
}

/** True for a name that would land outside a directory it were extracted into. */
export function escapes(path: string): boolean {
  if (path.startsWith('/') || path.includes('\\') || path.includes('\0') || /^[A-Za-z]:/.test(path)) return true;
  return path.split('/').some((part) => part === '..');
}
