/** A manifest reference from a URL: either a tag or a digest. */
import { tagInvalid } from './errors.js';
import { type Digest, parseDigest } from './digest.js';
import { isTag, type Tag } from './names.js';

export type Reference = { kind: 'tag'; tag: Tag; value: string } | { kind: 'digest'; digest: Digest; value: string };

export function parseReference(reference: string): Reference {
  if (reference.includes(':')) {
    const digest = parseDigest(reference);
    return { kind: 'digest', digest, value: digest.value };
  }
  if (isTag(reference)) return { kind: 'tag', tag: reference as Tag, value: reference };
  throw tagInvalid(reference);
}
