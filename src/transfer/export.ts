/**
 * Export: cached images, read from local storage only (nothing is fetched),
 * written as a bundle (bundle.ts). Each image is planned whole first — its
 * manifests, the index children that are cached, configs and layers,
 * schema1 signatures, and with `referrers` the manifests that refer to it —
 * and an image the cache does not hold whole fails the export before a byte
 * is written. The tar goes to a temp file beside the output and is renamed
 * into place at the end; every blob is hashed on its way out, so a damaged
 * cache cannot produce a bundle that looks sound.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { type Digest, Digester, digestOf, tryParseDigest } from '../registry/digest.js';
import { isRegistryError } from '../registry/errors.js';
import { parseManifest } from '../registry/manifest.js';
import { MediaType } from '../registry/mediatypes.js';
import type { RepositoryName, Tag } from '../registry/names.js';
import type { Routing } from '../routing/routes.js';
import type { LocalStorage } from '../storage/local.js';
import { localReferrers } from '../storage/referrers.js';
import {
  ANNOTATION_REF_NAME,
  ANNOTATION_REFERENCE,
  ANNOTATION_REPOSITORY,
  BUNDLE_FORMAT,
  BUNDLE_INDEX_PATH,
  type BundleFile,
  type BundleImage,
  type BundleSignatures,
  blobPath,
  OCI_INDEX_PATH,
  OCI_LAYOUT,
  OCI_LAYOUT_PATH,
  serializeBundleIndex,
} from './bundle.js';
import { TransferError } from './errors.js';
import { parseImageReference, storageScope } from './reference.js';
import { END_OF_ARCHIVE, fileHeader, padding } from './tar.js';

export interface ExportOptions {
  routing: Routing;
  storage: LocalStorage;
  images: readonly string[];
  output: string;
  referrers: boolean;
  log: Logger;
}

export interface ExportedImage {
  reference: string;
  repository: string;
  digest: string;
  /** What `skopeo copy oci-archive:<bundle>:<refName>` asks for. */
  refName: string;
  manifests: number;
  blobs: number;
  signatures: number;
  referrers: number;
  /** Children of the index that are not cached, so not in the bundle. */
  childrenNotCached: number;
}

export interface ExportResult {
  images: ExportedImage[];
  files: number;
  bytes: number;
}

const COSIGN_SUFFIXES = ['.sig', '.att', '.sbom'];

const notCached = (message: string): TransferError => new TransferError('ERR_NOT_CACHED', message);

/** The cosign and tag-schema tags that may hold what is attached to `subject`. */
const attachedTags = (subject: Digest): Tag[] => ['', ...COSIGN_SUFFIXES].map((suffix) => `${subject.algorithm}-${subject.hex}${suffix}` as Tag);

/** A manifest graph as stored: what a bundle needs to carry it. */
interface Collected {
  manifests: Digest[];
  blobs: Map<string, Digest>;
  files: Map<string, BundleFile>;
  signatures: BundleSignatures[];
  childrenNotCached: number;
}

/**
 * Walks the manifest `root` linked in `name` (children that are cached,
 * configs, layers, schema1 signatures); throws ERR_NOT_CACHED for anything
 * it needs that storage lacks. Manifests in `known` are not walked again.
 */
async function collect(storage: LocalStorage, name: RepositoryName, root: Digest, known: ReadonlySet<string>): Promise<Collected> {
  const out: Collected = { manifests: [], blobs: new Map(), files: new Map(), signatures: [], childrenNotCached: 0 };
  const file = async (digest: Digest, what: string): Promise<void> => {
    if (out.files.has(digest.value)) return;
    const stat = await storage.blobs.stat(digest);
    if (stat === undefined) throw notCached(`${what} ${digest.value} of ${name} is not cached`);
    out.files.set(digest.value, { path: blobPath(digest), digest, size: stat.size });
  };
  const walk = async (digest: Digest): Promise<void> => {
    if (known.has(digest.value) || out.manifests.some((d) => d.value === digest.value)) return;
    if (!(await storage.revisions.has(name, digest))) throw notCached(`manifest ${digest.value} is not cached in ${name}`);
    await file(digest, 'manifest');
    out.manifests.push(digest);
    const { mediaType, payload } = await storage.readManifest(digest);
    const parsed = parseManifest(payload, mediaType);
    for (const child of parsed.manifests) {
      // A prefetch limited to some platforms leaves the other children out: so does the bundle.
      if ((await storage.revisions.has(name, child.digest)) && (await storage.blobs.stat(child.digest)) !== undefined) await walk(child.digest);
      else out.childrenNotCached += 1;
    }
    for (const blob of parsed.blobs) {
      await file(blob.digest, 'blob');
      out.blobs.set(blob.digest.value, blob.digest);
    }
    const signatures: Digest[] = [];
    for (const signature of await storage.signatures.digests(name, digest)) {
      if ((await storage.blobs.stat(signature)) === undefined) continue;
      await file(signature, 'schema1 signature');
      signatures.push(signature);
    }
    if (signatures.length > 0) out.signatures.push({ revision: digest, signatures });
  };
  await walk(root);
  return out;
}

/** One image's part of the bundle, before its ref name is known. */
type PlannedImage = Omit<BundleImage, 'refName'> & { childrenNotCached: number };

class Planner {
  /** Every file of the bundle's blobs, by digest. */
  readonly files = new Map<string, BundleFile>();

  constructor(private readonly options: ExportOptions) {}

  private merge(into: PlannedImage, part: Collected, as: 'manifests' | 'referrers'): void {
    into[as].push(...part.manifests);
    for (const [key, digest] of part.blobs) if (!into.blobs.some((d) => d.value === key)) into.blobs.push(digest);
    for (const [key, file] of part.files) this.files.set(key, file);
    into.signatures.push(...part.signatures);
    into.childrenNotCached += part.childrenNotCached;
  }

  async image(input: string): Promise<PlannedImage> {
    const { storage, routing } = this.options;
    const ref = parseImageReference(input);
    const { name } = storageScope(routing, ref);
    const digest = ref.digest ?? (ref.tag === undefined ? undefined : await storage.tags.resolve(name, ref.tag));
    if (digest === undefined) throw notCached(`not cached: ${name} has no tag ${ref.tag ?? ''}`);
    const image: PlannedImage = {
      reference: ref.input,
      repository: name,
      ...(ref.tag === undefined ? {} : { tag: ref.tag }),
      digest,
      manifests: [],
      blobs: [],
      signatures: [],
      referrers: [],
      tags: [],
      childrenNotCached: 0,
    };
    this.merge(image, await collect(storage, name, digest, new Set()), 'manifests');
    if (this.options.referrers) await this.attached(image);
    return image;
  }

  /** Manifests stored here that refer to the image's (or to each other), and the tags that attach them. */
  private async attached(image: PlannedImage): Promise<void> {
    const { storage, log } = this.options;
    const name = image.repository;
    const known = (): Set<string> => new Set([...image.manifests, ...image.referrers].map((d) => d.value));
    const subjects = [...image.manifests];
    for (let i = 0; i < subjects.length; i++) {
      const subject = subjects[i] as Digest;
      const candidates: { digest: Digest; tag?: Tag }[] = [];
      for (const descriptor of await localReferrers(storage, name, subject)) {
        const digest = tryParseDigest(descriptor.digest);
        if (digest !== undefined) candidates.push({ digest });
      }
      for (const tag of attachedTags(subject)) {
        const digest = await storage.tags.resolve(name, tag);
        if (digest !== undefined) candidates.push({ digest, tag });
      }
      for (const { digest, tag } of candidates) {
        if (!known().has(digest.value)) {
          let part: Collected;
          try {
            part = await collect(storage, name, digest, known());
          } catch (err) {
            if (!(err instanceof TransferError)) throw err;
            log.warn({ repository: name, digest: digest.value, reason: err.message }, 'a referrer is not cached whole; exported without it');
            continue;
          }
          this.merge(image, part, 'referrers');
          subjects.push(...part.manifests);
        }
        if (tag !== undefined && !image.tags.some((t) => t.tag === tag)) image.tags.push({ tag, digest });
      }
    }
  }
}

/** index.json names: the tag where no other image has it, else `<repository>:<tag>`; `<repository>@<digest>` without a tag. */
export function refNames(images: readonly { repository: string; tag?: string; digest: Digest }[]): string[] {
  const count = new Map<string, number>();
  for (const image of images) if (image.tag !== undefined) count.set(image.tag, (count.get(image.tag) ?? 0) + 1);
  return images.map((image) => {
    if (image.tag === undefined) return `${image.repository}@${image.digest.value}`;
    return count.get(image.tag) === 1 ? image.tag : `${image.repository}:${image.tag}`;
  });
}

/** The tar's entries in order: the bundle index, the layout files, then the blobs by digest. */
async function* bundleBytes(storage: LocalStorage, head: readonly [string, Buffer][], blobs: readonly BundleFile[]): AsyncGenerator<Buffer> {
  for (const [path, content] of head) {
    yield fileHeader(path, content.byteLength);
    yield content;
    yield padding(content.byteLength);
  }
  for (const file of blobs) {
    yield fileHeader(file.path, file.size);
    const digester = new Digester(file.digest.algorithm);
    for await (const chunk of (await storage.blobs.reader(file.digest)) as AsyncIterable<Buffer>) {
      digester.update(chunk);
      if (digester.size > file.size) break;
      yield chunk;
    }
    const actual = digester.digest();
    if (actual.value !== file.digest.value || digester.size !== file.size) {
      throw new TransferError('ERR_BUNDLE_DIGEST', `stored blob ${file.digest.value} does not hash to its digest (${actual.value}, ${digester.size} bytes): the cache is damaged; nothing was exported`);
    }
    yield padding(file.size);
  }
  yield END_OF_ARCHIVE;
}

export async function exportBundle(options: ExportOptions): Promise<ExportResult> {
  const planner = new Planner(options);
  const planned: PlannedImage[] = [];
  const failures: string[] = [];
  for (const input of options.images) {
    try {
      const image = await planner.image(input);
      // The same image named twice (a tag and its digest, say) is exported once.
      if (!planned.some((p) => p.repository === image.repository && p.tag === image.tag && p.digest.value === image.digest.value)) planned.push(image);
    } catch (err) {
      if (!(err instanceof TransferError || isRegistryError(err))) throw err;
      failures.push(`${input}: ${err.message}`);
    }
  }
  if (failures.length > 0) throw notCached(`nothing was exported:\n  ${failures.join('\n  ')}`);

  const names = refNames(planned);
  const images: BundleImage[] = planned.map(({ childrenNotCached: _, ...image }, i) => ({ ...image, refName: names[i] as string }));
  const descriptors = [];
  for (const image of images) {
    const { mediaType, payload } = await options.storage.readManifest(image.digest);
    descriptors.push({
      mediaType,
      digest: image.digest.value,
      size: payload.byteLength,
      annotations: { [ANNOTATION_REF_NAME]: image.refName, [ANNOTATION_REPOSITORY]: image.repository, [ANNOTATION_REFERENCE]: image.reference },
    });
  }
  const layout = Buffer.from(JSON.stringify(OCI_LAYOUT));
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: descriptors }));
  const blobs = [...planner.files.values()].sort((a, b) => (a.digest.value < b.digest.value ? -1 : 1));
  const files: BundleFile[] = [
    { path: OCI_LAYOUT_PATH, digest: digestOf(layout), size: layout.byteLength },
    { path: OCI_INDEX_PATH, digest: digestOf(index), size: index.byteLength },
    ...blobs,
  ];
  const bundleIndex = serializeBundleIndex({ format: BUNDLE_FORMAT, files, images });

  const temp = join(dirname(options.output), `.${basename(options.output)}.${randomBytes(6).toString('hex')}.partial`);
  try {
    const head: [string, Buffer][] = [
      [BUNDLE_INDEX_PATH, bundleIndex],
      [OCI_LAYOUT_PATH, layout],
      [OCI_INDEX_PATH, index],
    ];
    await pipeline(bundleBytes(options.storage, head, blobs), createWriteStream(temp, { flags: 'wx' }));
    await rename(temp, options.output);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
  return {
    images: planned.map((image, i) => ({
      reference: image.reference,
      repository: image.repository,
      digest: image.digest.value,
      refName: names[i] as string,
      manifests: image.manifests.length,
      blobs: image.blobs.length,
      signatures: image.signatures.reduce((n, s) => n + s.signatures.length, 0),
      referrers: image.referrers.length,
      childrenNotCached: image.childrenNotCached,
    })),
    files: files.length,
    bytes: files.reduce((n, f) => n + f.size, 0),
  };
}
