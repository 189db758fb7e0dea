/**
 * What a client gets when the manifest a reference names is of a type its
 * Accept header does not list. Manifests are never converted (a conversion
 * changes the digest, and a converted answer must never be recorded as the
 * tag). Instead, as Distribution does for its own content:
 *
 * - by tag, an index or manifest list is answered with its child for the
 *   default platform (linux/amd64 unless configured), when the client accepts
 *   that child's type;
 * - otherwise the client gets MANIFEST_UNKNOWN naming the stored type.
 *
 * By digest there is no choice to make: the client asked for those bytes.
 */
import { RegistryError } from './errors.js';
import { parseManifest, type Descriptor, type Platform } from './manifest.js';
import { accepts, isIndexMediaType } from './mediatypes.js';
import type { Reference } from './reference.js';

export type Negotiated =
  /** Serve what is stored. */
  | { kind: 'stored' }
  /** Serve this child of the stored index instead. */
  | { kind: 'child'; descriptor: Descriptor };

const PLATFORM = /^([a-z0-9_-]+)\/([a-z0-9_-]+)(?:\/([a-z0-9_-]+))?$/;

/** Parses `os/architecture[/variant]`, e.g. `linux/amd64` or `linux/arm64/v8`. */
export function parsePlatform(value: string): Platform {
  const match = PLATFORM.exec(value.trim().toLowerCase());
  if (match === null) throw new Error(`invalid platform ${JSON.stringify(value)}: want os/architecture[/variant], e.g. linux/amd64`);
  const [, os = '', architecture = '', variant] = match;
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export const formatPlatform = (p: Platform): string => (p.variant === undefined ? `${p.os}/${p.architecture}` : `${p.os}/${p.architecture}/${p.variant}`);

/**
 * The child of an index for `platform`: os and architecture must match; a
 * variant, when the platform names one, must match too; without one, a child
 * without a variant is preferred over one with. Undefined when none fits.
 */
export function childForPlatform(children: readonly Descriptor[], platform: Platform): Descriptor | undefined {
  let fallback: Descriptor | undefined;
  for (const child of children) {
    const p = child.platform;
    if (p === undefined || p.os !== platform.os || p.architecture !== platform.architecture) continue;
    if (platform.variant !== undefined) {
      if (p.variant === platform.variant) return child;
      continue;
    }
    if (p.variant === undefined) return child;
    fallback ??= child;
  }
  return fallback;
}

/**
 * An index's children, parsed once per payload: a narrow client asking for a
 * warm tag again and again must not parse the index each time. Payloads are
 * immutable and shared from the hot caches; the entry goes with its buffer.
 */
const parsedChildren = new WeakMap<Buffer, readonly Descriptor[]>();

function childrenOf(payload: Buffer): readonly Descriptor[] {
  let children = parsedChildren.get(payload);
  if (children === undefined) {
    children = parseManifest(payload).manifests;
    parsedChildren.set(payload, children);
  }
  return children;
}

export interface StoredManifest {
  mediaType: string;
  payload: Buffer;
}

/** Decides what to serve for `reference` to a client whose Accept header listed `accept`; throws MANIFEST_UNKNOWN when nothing fits. */
export function negotiate(
  name: string,
  reference: Reference,
  stored: StoredManifest,
  accept: readonly string[],
  platform: Platform,
): Negotiated {
  if (accepts(accept, stored.mediaType)) return { kind: 'stored' };
  if (reference.kind === 'tag' && isIndexMediaType(stored.mediaType)) {
    const child = childForPlatform(childrenOf(stored.payload), platform);
    if (child !== undefined && accepts(accept, child.mediaType)) return { kind: 'child', descriptor: child };
  }
  throw notAcceptable(name, reference, stored.mediaType, accept);
}

/**
 * MANIFEST_UNKNOWN (404, what Distribution answers an OCI-unaware client)
 * naming the stored type, so the reason is visible in the client's error.
 */
export function notAcceptable(name: string, reference: Reference, mediaType: string, accept: readonly string[]): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', `manifest is of type ${mediaType}, which the request's Accept header does not list`, {
    detail: { name, reference: reference.value, mediaType, accepted: accept.slice(0, 16) },
  });
}
