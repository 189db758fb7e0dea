/**
 * Maps a request line to a route of the OCI distribution API. The raw path is
 * matched without percent-decoding: no valid name, tag or digest contains `%`,
 * so an encoded slash or dot can never turn into a path separator.
 */
import { RegistryError, truncate } from '../registry/errors.js';
import { parseRepositoryName, type RepositoryName } from '../registry/names.js';

export type Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'tags'; name: RepositoryName }
  | { kind: 'manifest'; name: RepositoryName; reference: string }
  | { kind: 'blob'; name: RepositoryName; digest: string }
  /** `/blobs/uploads/` (id '') or an upload session `/blobs/uploads/<id>`. */
  | { kind: 'upload'; name: RepositoryName; id: string }
  | { kind: 'referrers'; name: RepositoryName; digest: string };

const MAX_PATH = 2048;
const TAGS = /^\/v2\/(.+)\/tags\/list$/;
const MANIFEST = /^\/v2\/(.+)\/manifests\/([^/]+)$/;
const UPLOAD = /^\/v2\/(.+)\/blobs\/uploads(?:\/([^/]*))?$/;
const BLOB = /^\/v2\/(.+)\/blobs\/([^/]+)$/;
const REFERRERS = /^\/v2\/(.+)\/referrers\/([^/]+)$/;

export const notFound = (path: string): RegistryError =>
  new RegistryError('NOT_FOUND', 'no such endpoint in the registry API', { detail: { path: truncate(path, 200) } });

export function route(path: string): Route {
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  if (path.length > MAX_PATH || !path.startsWith('/v2/')) throw notFound(path);
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  // Each pattern only where its literal part occurs: the warm manifest and blob paths run one regex.
  let match = path.endsWith('/tags/list') ? TAGS.exec(path) : null;
  if (match) return { kind: 'tags', name: parseRepositoryName(match[1] ?? '') };
  match = path.includes('/manifests/') ? MANIFEST.exec(path) : null;
  if (match) return { kind: 'manifest', name: parseRepositoryName(match[1] ?? ''), reference: match[2] ?? '' };
  const blobs = path.includes('/blobs/');
  match = blobs && path.includes('/blobs/uploads') ? UPLOAD.exec(path) : null;
  if (match) return { kind: 'upload', name: parseRepositoryName(match[1] ?? ''), id: match[2] ?? '' };
  match = path.includes('/referrers/') ? REFERRERS.exec(path) : null;
  if (match) return { kind: 'referrers', name: parseRepositoryName(match[1] ?? ''), digest: match[2] ?? '' };
  match = blobs ? BLOB.exec(path) : null;
  if (match) return { kind: 'blob', name: parseRepositoryName(match[1] ?? ''), digest: match[2] ?? '' };
  throw notFound(path);
}
