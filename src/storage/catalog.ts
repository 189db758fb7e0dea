/**
 * Repository enumeration, as Distribution's catalog does it: walk
 * `repositories/`; a directory holding `_manifests` is a repository, and
 * directories whose name starts with `_` are never descended into.
 * Depth-first order is not lexical order ("a-b" sorts before "a/b"), so the
 * names are gathered, sorted and then paged.
 */
import { isPathNotFound, type StorageDriver } from './driver.js';
import { pathFor } from './paths.js';
import { MAX_NAME_LENGTH } from '../registry/names.js';

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
  const found: string[] = [];
  await walk(driver, pathFor({ kind: 'repositoriesRoot' }), '', found, markers, onInvalid);
  found.sort();
  const start = last === undefined ? 0 : found.findIndex((name) => name > last);
  return start < 0 ? [] : found.slice(start, start + limit);
}

/** A repository name component (the OCI grammar): no directory named otherwise can hold a repository. */
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;

async function walk(
  driver: StorageDriver,
  dir: string,
  prefix: string,
  found: string[],
  markers: readonly string[],
  onInvalid: (path: string) => void,
): Promise<void> {
  let children: string[];
  try {
    children = await driver.list(dir);
  } catch (err) {
    if (isPathNotFound(err)) return;
    throw err;
  }
  if (prefix !== '' && markers.some((marker) => children.includes(marker))) found.push(prefix);
  for (const child of children) {
    if (child.startsWith('_') || child.startsWith('.')) continue;
    const name = prefix === '' ? child : `${prefix}/${child}`;
    // Checked before the stat: a name outside the grammar may not even be a valid storage path.
    if (!COMPONENT.test(child) || name.length > MAX_NAME_LENGTH) {
      onInvalid(`${dir}/${child}`);
      continue;
    }
    if ((await driver.stat(`${dir}/${child}`))?.isDir !== true) continue;
    await walk(driver, `${dir}/${child}`, name, found, markers, onInvalid);
  }
}
