/**
 * The OCI 1.1 referrers answer: an image index listing the manifests whose
 * `subject` is a given digest. Pure helpers: the descriptor a referrer gets,
 * merging lists without duplicates, filtering by artifactType.
 */
import type { Digest } from './digest.js';
import type { ParsedManifest } from './manifest.js';
import { MediaType } from './mediatypes.js';

export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ReferrersIndex {
  schemaVersion: 2;
  mediaType: typeof MediaType.OciIndex;
  manifests: ReferrerDescriptor[];
}

/** The descriptor of a referrer manifest, per the spec: artifactType, else the config's media type. */
export function referrerDescriptor(digest: Digest, size: number, parsed: ParsedManifest): ReferrerDescriptor {
  const descriptor: ReferrerDescriptor = { mediaType: parsed.mediaType, digest: digest.value, size };
  const artifactType = parsed.artifactType ?? parsed.config?.mediaType;
  if (artifactType !== undefined) descriptor.artifactType = artifactType;
  if (parsed.annotations !== undefined && Object.keys(parsed.annotations).length > 0) descriptor.annotations = parsed.annotations;
  return descriptor;
}

/** Concatenates lists, keeping the first descriptor seen for each digest. */
export function mergeReferrers(...lists: readonly (readonly ReferrerDescriptor[])[]): ReferrerDescriptor[] {
  const seen = new Set<string>();
  const out: ReferrerDescriptor[] = [];
  for (const list of lists) {
    for (const descriptor of list) {
      if (seen.has(descriptor.digest)) continue;
      seen.add(descriptor.digest);
      out.push(descriptor);
    }
  }
  return out;
}

export function filterReferrers(list: readonly ReferrerDescriptor[], artifactType: string | undefined): ReferrerDescriptor[] {
  return artifactType === undefined ? [...list] : list.filter((d) => d.artifactType === artifactType);
}

export function referrersIndex(manifests: ReferrerDescriptor[]): ReferrersIndex {
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
}

/** Reads descriptors out of an index someone else wrote (upstream answer, fallback tag). */
export function descriptorsOfIndex(json: unknown): ReferrerDescriptor[] {
  if (typeof json !== 'object' || json === null) return [];
  const manifests = (json as { manifests?: unknown }).manifests;
  if (!Array.isArray(manifests)) return [];
  const out: ReferrerDescriptor[] = [];
  for (const item of manifests) {
    if (typeof item !== 'object' || item === null) continue;
    const { mediaType, digest, size, artifactType, annotations } = item as Record<string, unknown>;
    if (typeof mediaType !== 'string' || typeof digest !== 'string' || typeof size !== 'number') continue;
    const descriptor: ReferrerDescriptor = { mediaType, digest, size };
    if (typeof artifactType === 'string') descriptor.artifactType = artifactType;
    if (typeof annotations === 'object' && annotations !== null) descriptor.annotations = annotations as Record<string, string>;
    out.push(descriptor);
  }
  return out;
}

/** The tag-schema fallback tag for a subject: `sha256-<hex>`. */
export const fallbackTag = (subject: Digest): string => `${subject.algorithm}-${subject.hex}`;
