/**
 * Repository enumeration, as Distribution's catalog does it: walk
 * `repositories/`; a directory holding `_manifests` is a repository, and
 * directories whose name starts with `_` (or `.`) are never descended into.
 *
 * Names come out in lexical order, so a page stops after `limit` names and
 * `last` seeks: a subtree whose names all sort before `last` is not listed.
 * Depth-first order is not lexical order ("a-b" sorts before "a/b"), so the
 * walk keeps its frontier in a min-heap of full names: the smallest pending
 * name is always the next in order, and a directory's children, which all
 * extend its name with "/", are pushed only when it is reached. A page costs
 * about `limit` directory listings (plus the directories on the way), not a
 * walk of the whole tree.
 */
import { MAX_NAME_LENGTH } from '../registry/names.js';
import { isPathNotFound, type StorageDriver } from './driver.js';
import { pathFor } from './paths.js';

/** A repository name component (the OCI grammar): no directory named otherwise can hold a repository. */
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;

/**
 * `markers`: the child directories that make a directory a repository. The
 * catalog wants `_manifests`; maintenance also wants repositories that so far
 * hold only blob links or uploads.
 */
export async function listRepositories(
  driver: StorageDriver,
  limit: number,
  last?: string,
  markers: readonly string[] = ['_manifests'],
  /** Told about each directory skipped because its name cannot be part of a repository name. */
  onInvalid: (path: string) => void = () => undefined,
): Promise<string[]> {
  const root = pathFor({ kind: 'repositoriesRoot' });
  const found: string[] = [];
  const frontier = new MinHeap();
  const push = (parent: string, children: readonly string[]): void => {
    for (const child of children) {
      if (child.startsWith('_') || child.startsWith('.')) continue;
      const name = parent === '' ? child : `${parent}/${child}`;
      // Checked before anything is read: a name outside the grammar may not even be a valid storage path.
      if (!COMPONENT.test(child) || name.length > MAX_NAME_LENGTH) {
        onInvalid(`${root}/${name}`);
        continue;
      }
      // Everything under `name` sorts before `last`: not even listed.
      if (last !== undefined && `${name}/` < last && !last.startsWith(`${name}/`) && name < last) continue;
      frontier.push(name);
    }
  };
  push('', (await children(driver, root)) ?? []);
  while (found.length < limit) {
    const name = frontier.pop();
    if (name === undefined) break;
    const entries = await children(driver, `${root}/${name}`);
    if (entries === undefined) continue; // a file, or gone meanwhile
    if ((last === undefined || name > last) && markers.some((marker) => entries.includes(marker))) found.push(name);
    push(name, entries);
  }
  return found;
}

/** A directory's entries, sorted; undefined when it is not a directory (or is gone). */
async function children(driver: StorageDriver, path: string): Promise<string[] | undefined> {
  try {
    return await driver.list(path);
  } catch (err) {
    if (isPathNotFound(err)) return undefined;
    throw err;
  }
}

/** A binary min-heap of strings (code-unit order, as Distribution sorts names). */
class MinHeap {
  private readonly items: string[] = [];

  push(item: string): void {
    const { items } = this;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((items[parent] as string) <= item) break;
      items[i] = items[parent] as string;
      i = parent;
    }
    items[i] = item;
  }

  pop(): string | undefined {
    const { items } = this;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && (items[right] as string) < (items[left] as string) ? right : left;
      if ((items[child] as string) >= last) break;
      items[i] = items[child] as string;
      i = child;
    }
    items[i] = last;
    return top;
  }
}
