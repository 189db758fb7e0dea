/**
 * What a pushed manifest must be before anything is stored: a document of a
 * manifest media type, the one its `Content-Type` names (a `mediaType`
 * field that disagrees with the header is refused), of the schema version
 * that type has, with well-formed descriptors. Whether what it references
 * exists is the storage's question (storage/hosted.ts).
 */
import { RegistryError } from './errors.js';
import { isManifestMediaType, MediaType, type ManifestMediaType } from './mediatypes.js';
import { parseManifest, type Descriptor, type ParsedManifest } from './manifest.js';

const invalid = (message: string): RegistryError => new RegistryError('MANIFEST_INVALID', `manifest invalid: ${message}`);

/** The media type of a `Content-Type` header, without parameters, lower-cased; undefined when absent. */
export function contentTypeOf(header: string | undefined): string | undefined {
  const type = header?.split(';')[0]?.trim().toLowerCase();
  return type === undefined || type === '' ? undefined : type;
}

/**
 * Layers a registry need not hold: a non-distributable (foreign) layer whose
 * bytes are at its `urls`. Without `urls` its bytes are nowhere else, so it
 * must be pushed like any other (Distribution refuses it otherwise too).
 */
export const isForeignLayer = (descriptor: Descriptor): boolean =>
  (descriptor.mediaType === 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip' ||
    descriptor.mediaType.startsWith('application/vnd.oci.image.layer.nondistributable.')) &&
  (descriptor.urls?.length ?? 0) > 0;

/**
 * Parses a pushed manifest against its `Content-Type`. Throws
 * MANIFEST_INVALID for anything that is not a manifest of the type it claims.
 */
export function parsePushedManifest(payload: Buffer, contentTypeHeader: string | undefined, maxBytes: number): ParsedManifest {
  const contentType = contentTypeOf(contentTypeHeader);
  const declared = contentType !== undefined && isManifestMediaType(contentType) ? contentType : undefined;
  if (payload.byteLength === 0) throw invalid('the body is empty');
  const parsed = parseManifest(payload, declared, maxBytes);
  // parseManifest read it as JSON already; these checks need the fields themselves.
  const json = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  const field = typeof json.mediaType === 'string' && json.mediaType !== '' ? json.mediaType : undefined;
  if (declared !== undefined && !sameType(declared, parsed.mediaType)) {
    throw invalid(`Content-Type ${declared} does not match the manifest's mediaType ${field ?? parsed.mediaType}`);
  }
  if (declared === undefined && contentType !== undefined && contentType !== 'application/json' && contentType !== MediaType.OctetStream) {
    throw invalid(`Content-Type ${contentType.slice(0, 100)} is not a manifest media type`);
  }
  checkShape(parsed.mediaType, json);
  return parsed;
}

/** Schema1 signed and unsigned name the same documents. */
function sameType(declared: ManifestMediaType, actual: ManifestMediaType): boolean {
  if (declared === actual) return true;
  const schema1 = (t: string): boolean => t === MediaType.DockerSchema1 || t === MediaType.DockerSchema1Signed;
  return schema1(declared) && schema1(actual);
}

function checkShape(mediaType: ManifestMediaType, json: Record<string, unknown>): void {
  const version = json.schemaVersion;
  switch (mediaType) {
    case MediaType.DockerSchema1:
    case MediaType.DockerSchema1Signed:
      if (version !== 1) throw invalid(`schemaVersion must be 1 for ${mediaType}`);
      return;
    case MediaType.OciManifest:
    case MediaType.DockerManifest:
      if (version !== 2) throw invalid(`schemaVersion must be 2 for ${mediaType}`);
      if (json.config === undefined) throw invalid('config is required');
      if (json.layers !== undefined && !Array.isArray(json.layers)) throw invalid('layers is not an array');
      if (mediaType === MediaType.DockerManifest && !Array.isArray(json.layers)) throw invalid('layers is required');
      return;
    case MediaType.OciIndex:
    case MediaType.DockerManifestList:
      if (version !== 2) throw invalid(`schemaVersion must be 2 for ${mediaType}`);
      if (!Array.isArray(json.manifests)) throw invalid('manifests is required');
      return;
  }
}
