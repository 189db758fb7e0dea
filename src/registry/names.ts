/**
 * Repository names and tags, by the OCI distribution-spec grammar.
 * A validated name can never contain `..`, `%`, a leading `/`, a NUL byte or
 * a component starting with `_`, so it is safe to use as a storage path.
 */
import { nameInvalid, tagInvalid } from './errors.js';
import { memoize } from './memo.js';

export const MAX_NAME_LENGTH = 255;

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_GRAMMAR = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_GRAMMAR = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Validated repository name, e.g. `library/alpine`. */
export type RepositoryName = string & { readonly __brand: 'RepositoryName' };
export type Tag = string & { readonly __brand: 'Tag' };

/** Validates a repository name; the grammar runs once per distinct name, not once per request. */
export const parseRepositoryName: (name: string) => RepositoryName = memoize(4096, (name) => {
  checkName(name);
  return name as RepositoryName;
});

function checkName(name: string): void {
  if (name.length === 0) throw nameInvalid(name, 'empty');
  if (name.length > MAX_NAME_LENGTH) throw nameInvalid(name, `longer than ${MAX_NAME_LENGTH} characters`);
  if (!NAME_GRAMMAR.test(name)) {
    throw nameInvalid(name, 'must match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((.|_|__|-+)[a-z0-9]+)*)*');
  }
}

export function isTag(reference: string): boolean {
  return TAG_GRAMMAR.test(reference);
}

export function parseTag(tag: string): Tag {
  if (!TAG_GRAMMAR.test(tag)) throw tagInvalid(tag);
  return tag as Tag;
}
