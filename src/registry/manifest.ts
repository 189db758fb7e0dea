/**
 * Manifest parsing: what a stored manifest is and what it references.
 * The bytes are never re-serialised; parsing only reads them to learn the
 * media type and the blobs and child manifests that must exist beside it.
 */
import { RegistryError } from './errors.js';
import { type Digest, parseDigest } from './digest.js';
import { MediaType, type ManifestMediaType, isManifestMediaType } from './mediatypes.js';

/** Distribution refuses manifests larger than 4 MiB; so do we. */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  artifactType?: string;
  platform?: Platform;
  annotations?: Record<string, string>;
  /** Where a non-distributable (foreign) layer's bytes are, when the registry holds none. */
  urls?: string[];
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ParsedManifest {
  mediaType: ManifestMediaType;
  /** Blobs the manifest needs: config and layers (schema1: fsLayers). */
  blobs: Descriptor[];
  /** Child manifests (indexes and manifest lists). */
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  /** The config descriptor of an image manifest. */
  config?: Descriptor;
  annotations?: Record<string, string>;
}

const invalid = (message: string): RegistryError => new RegistryError('MANIFEST_INVALID', `manifest invalid: ${message}`);

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw invalid(`${where} is not an object`);
  const { mediaType, digest, size, platform, artifactType, annotations, urls } = value;
  if (typeof mediaType !== 'string') throw invalid(`${where}.mediaType missing`);
  if (typeof digest !== 'string') throw invalid(`${where}.digest missing`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${where}.size invalid`);
  const descriptor: Descriptor = { mediaType, digest: parseDigest(digest), size };
  if (typeof artifactType === 'string') descriptor.artifactType = artifactType;
  if (isObject(annotations)) descriptor.annotations = stringMap(annotations);
  if (Array.isArray(urls)) descriptor.urls = urls.filter((u): u is string => typeof u === 'string');
  if (isObject(platform) && typeof platform.os === 'string' && typeof platform.architecture === 'string') {
    descriptor.platform = { os: platform.os, architecture: platform.architecture };
    if (typeof platform.variant === 'string') descriptor.platform.variant = platform.variant;
  }
  return descriptor;
}

function descriptors(value: unknown, where: string): Descriptor[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(`${where} is not an array`);
  return value.map((item, i) => parseDescriptor(item, `${where}[${i}]`));
}

/** Determines the media type the way Distribution does: the declared one, else the shape. */
function detectMediaType(json: Json, contentType: string | undefined): ManifestMediaType {
  const declared = json.mediaType;
  if (typeof declared === 'string' && declared !== '') {
    if (!isManifestMediaType(declared)) throw new RegistryError('MANIFEST_INVALID', `unsupported manifest media type ${declared}`);
    return declared;
  }
  if (json.schemaVersion === 1) return Array.isArray(json.signatures) ? MediaType.DockerSchema1Signed : MediaType.DockerSchema1;
  if (contentType && isManifestMediaType(contentType)) return contentType;
  if (Array.isArray(json.manifests)) return MediaType.OciIndex;
  if (isObject(json.config)) return MediaType.OciManifest;
  throw invalid('cannot determine media type');
}

/** `maxBytes`: the largest manifest accepted (limits.manifestbytes for what comes from outside). */
export function parseManifest(payload: Uint8Array, contentType?: string, maxBytes = MAX_MANIFEST_SIZE): ParsedManifest {
  if (payload.byteLength > maxBytes) throw invalid(`larger than ${maxBytes} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch {
    throw invalid('not valid JSON');
  }
  if (!isObject(json)) throw invalid('not a JSON object');
  const mediaType = detectMediaType(json, contentType);
  const parsed: ParsedManifest = { mediaType, blobs: [], manifests: [] };
  switch (mediaType) {
    case MediaType.OciManifest:
    case MediaType.DockerManifest:
      if (json.config !== undefined) {
        parsed.config = parseDescriptor(json.config, 'config');
        parsed.blobs.push(parsed.config);
      }
      parsed.blobs.push(...descriptors(json.layers, 'layers'));
      break;
    case MediaType.OciIndex:
    case MediaType.DockerManifestList:
      parsed.manifests = descriptors(json.manifests, 'manifests');
      break;
    case MediaType.DockerSchema1:
    case MediaType.DockerSchema1Signed:
      parsed.blobs = schema1Layers(json.fsLayers);
      break;
  }
  if (json.subject !== undefined) parsed.subject = parseDescriptor(json.subject, 'subject');
  if (typeof json.artifactType === 'string') parsed.artifactType = json.artifactType;
  if (isObject(json.annotations)) parsed.annotations = stringMap(json.annotations);
  return parsed;
}

function stringMap(value: Json): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) if (typeof entry === 'string') out[key] = entry;
  return out;
}

function schema1Layers(value: unknown): Descriptor[] {
  if (!Array.isArray(value)) throw invalid('fsLayers missing');
  return value.map((layer, i) => {
    if (!isObject(layer) || typeof layer.blobSum !== 'string') throw invalid(`fsLayers[${i}].blobSum missing`);
    return { mediaType: 'application/vnd.docker.container.image.rootfs.diff+x-gtar', digest: parseDigest(layer.blobSum), size: -1 };
  });
}
