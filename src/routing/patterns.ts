/**
 * Repository patterns of `allow`/`deny`: `*` matches within one path
 * component, `**` across components (`myorg/**` is every repository under
 * myorg/, `team/app-*` the repositories of team/ named app-…).
 */
export type RepositoryMatcher = (name: string) => boolean;

export function repositoryPattern(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    if (c === '*' && pattern[i + 1] === '*') {
      // `a/**` also matches `a` itself; `**` anywhere else spans components.
      if (pattern[i + 2] === undefined && source.endsWith('/')) source = `${source.slice(0, -1)}(?:/.*)?`;
      else source += '.*';
      i++;
    } else if (c === '*') source += '[^/]*';
    else source += c.replace(/[.+?^${}()|[\]\\-]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/** True when `name` may be served: it matches an allow pattern (or there are none) and no deny pattern. */
export function accessMatcher(allow: readonly string[], deny: readonly string[]): RepositoryMatcher {
  const allowed = allow.map(repositoryPattern);
  const denied = deny.map(repositoryPattern);
  return (name) => (allowed.length === 0 || allowed.some((p) => p.test(name))) && !denied.some((p) => p.test(name));
}
