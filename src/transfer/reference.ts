/**
 * Image references as clients write them, parsed the way Docker does:
 *
 *   alpine                              no host (the default upstream), tag latest
 *   docker.io/library/alpine:3.20       host docker.io
 *   ghcr.io/myorg/app@sha256:…          by digest
 *   127.0.0.1:5000/team/app:v1          a host with a port
 *   team/app:v1@sha256:…                the digest decides; the tag names it
 *
 * The first path component is a registry host when it holds a `.` or a `:`,
 * or is `localhost`. Which upstream serves a host, and under which name the
 * repository is stored, is the routing's business (storageScope).
 */
import { type Digest, parseDigest } from '../registry/digest.js';
import { isRegistryError } from '../registry/errors.js';
import { parseRepositoryName, parseTag, type RepositoryName, type Tag } from '../registry/names.js';
import type { Reference } from '../registry/reference.js';
import type { RequestScope, Routing } from '../routing/routes.js';
import { TransferError } from './errors.js';

export interface ImageReference {
  /** As written. */
  readonly input: string;
  /** The registry host, lower-cased; undefined: whatever serves names without one (the default upstream). */
  readonly host?: string;
  /** The repository on that registry, as written (`library/` is the routing's to add). */
  readonly path: RepositoryName;
  /** The tag; `latest` when neither a tag nor a digest is written. */
  readonly tag?: Tag;
  readonly digest?: Digest;
}

const HOST = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$/;

const invalid = (input: string, why: string): TransferError =>
  new TransferError('ERR_IMAGE_REFERENCE', `invalid image reference ${JSON.stringify(input.slice(0, 300))}: ${why}`);

export function parseImageReference(input: string): ImageReference {
  const text = input.trim();
  if (text === '') throw invalid(input, 'empty');
  let rest = text;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    try {
      digest = parseDigest(rest.slice(at + 1));
    } catch (err) {
      throw invalid(input, isRegistryError(err) ? err.message : 'bad digest');
    }
    rest = rest.slice(0, at);
  }
  let tag: Tag | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    try {
      tag = parseTag(rest.slice(colon + 1));
    } catch {
      throw invalid(input, `bad tag ${JSON.stringify(rest.slice(colon + 1))}`);
    }
    rest = rest.slice(0, colon);
  }
  let host: string | undefined;
  const slash = rest.indexOf('/');
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      host = first.toLowerCase();
      if (!HOST.test(host)) throw invalid(input, `bad registry host ${JSON.stringify(first)}`);
      rest = rest.slice(slash + 1);
    }
  }
  let path: RepositoryName;
  try {
    path = parseRepositoryName(rest);
  } catch (err) {
    throw invalid(input, isRegistryError(err) ? err.message : 'bad repository name');
  }
  if (tag === undefined && digest === undefined) tag = 'latest' as Tag;
  return {
    input: text,
    ...(host === undefined ? {} : { host }),
    path,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
  };
}

/** The manifest reference to ask for: the digest when there is one (it pins the image), else the tag. */
export function manifestReference(ref: ImageReference): Reference {
  if (ref.digest !== undefined) return { kind: 'digest', digest: ref.digest, value: ref.digest.value };
  const tag = ref.tag ?? ('latest' as Tag);
  return { kind: 'tag', tag, value: tag };
}

/**
 * The scope a client pulling `ref` from this Stevedore would get: the host
 * is passed as containerd's `?ns=` (so `docker.io/alpine` reaches the Docker
 * Hub upstream as `library/alpine`, and a host no upstream stands for is
 * NAME_UNKNOWN), the path as the repository.
 */
export function storageScope(routing: Routing, ref: ImageReference): RequestScope {
  return routing.resolve(ref.path, ref.host ?? null);
}

/** A list file: one reference a line; blank lines and `#` comments skipped. */
export function parseImageList(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const hash = raw.indexOf('#');
    const line = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (line !== '') out.push(line);
  }
  return out;
}
