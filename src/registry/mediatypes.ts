/** Manifest media types a registry serves, and Accept-header negotiation. */
import { memoize } from './memo.js';

export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  DockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  OctetStream: 'application/octet-stream',
} as const;

export type ManifestMediaType =
  | typeof MediaType.OciManifest
  | typeof MediaType.OciIndex
  | typeof MediaType.DockerManifest
  | typeof MediaType.DockerManifestList
  | typeof MediaType.DockerSchema1Signed
  | typeof MediaType.DockerSchema1;

export const MANIFEST_MEDIA_TYPES: readonly ManifestMediaType[] = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
  MediaType.DockerSchema1Signed,
  MediaType.DockerSchema1,
];

export const isManifestMediaType = (value: string): value is ManifestMediaType =>
  (MANIFEST_MEDIA_TYPES as readonly string[]).includes(value);

export const isIndexMediaType = (value: string): boolean =>
  value === MediaType.OciIndex || value === MediaType.DockerManifestList;

/** Each distinct Accept header is parsed once. */
const acceptOf = memoize(256, (header: string): readonly string[] => Object.freeze(splitAccept([header])));

/** The media types named in one or more Accept header values, without parameters. */
export function parseAccept(header: string | string[] | undefined): readonly string[] {
  if (header === undefined) return [];
  return typeof header === 'string' ? acceptOf(header) : splitAccept(header);
}

function splitAccept(header: string[]): string[] {
  const types: string[] = [];
  for (const value of header) {
    for (const part of value.split(',')) {
      const type = part.split(';')[0]?.trim().toLowerCase();
      if (type) types.push(type);
    }
  }
  return types;
}

/**
 * Whether a client whose Accept header listed `accepted` can take a manifest
 * of `mediaType`. No Accept header, or a wildcard, accepts anything; schema1
 * signed and unsigned are interchangeable for clients.
 */
export function accepts(accepted: readonly string[], mediaType: string): boolean {
  if (accepted.length === 0) return true;
  for (const type of accepted) {
    if (type === mediaType || type === '*/*' || type === 'application/*') return true;
    if (mediaType === MediaType.DockerSchema1Signed && type === MediaType.DockerSchema1) return true;
    if (mediaType === MediaType.DockerSchema1 && type === MediaType.DockerSchema1Signed) return true;
  }
  return false;
}
