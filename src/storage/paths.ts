/**
 * The one place that knows the on-disk layout. It is CNCF Distribution's
 * (registry/storage/paths.go), byte for byte, so a directory written by
 * either program is served by the other:
 *
 *   <root>/docker/registry/v2/
 *     blobs/
 *       <algorithm>/<first two hex>/<hex>/data         blob content (manifests too)
 *     repositories/
 *       <name>/                                        name may hold slashes: library/alpine
 *         _uploads/<id>/data                           upload (and proxy fill) in progress
 *         _uploads/<id>/startedat                      RFC 3339 time the upload began
 *         _uploads/<id>/hashstates/<algorithm>/<offset>
 *         _layers/<algorithm>/<hex>/link               blob visible in this repository
 *         _manifests/
 *           revisions/<algorithm>/<hex>/link           manifest revision
 *           revisions/<algorithm>/<hex>/signatures/<algorithm>/<hex>/link
 *           tags/<tag>/current/link                    what the tag points at now
 *           tags/<tag>/index/<algorithm>/<hex>/link    every revision the tag has pointed at
 *
 * Beside the layout, outside what Distribution reads:
 *
 *   <root>/stevedore/v1/fills/<upload id>              a fill under way: its repository name
 *   <root>/stevedore/v1/leases/<name>                  who holds a lease (sweep), until when
 *   <root>/stevedore/v1/health/<instance>              /readyz's probe: written and deleted again
 *
 * so a restart finds interrupted fills without walking the repositories.
 * A link file holds the digest string (`sha256:…`), no newline.
 * Inputs are validated domain types, so no path can escape the root.
 */
import type { Digest } from '../registry/digest.js';
import type { RepositoryName, Tag } from '../registry/names.js';

export const STORAGE_PREFIX = '/docker/registry/v2';
/** Stevedore's own files beside the layout. */
export const STEVEDORE_PREFIX = '/stevedore/v1';
const REPOSITORIES = `${STORAGE_PREFIX}/repositories`;

export type PathSpec =
  | { kind: 'blobData'; digest: Digest }
  | { kind: 'blobDir'; digest: Digest }
  | { kind: 'blobsRoot' }
  | { kind: 'repositoriesRoot' }
  | { kind: 'repository'; name: RepositoryName }
  | { kind: 'layerLink'; name: RepositoryName; digest: Digest }
  | { kind: 'layerDir'; name: RepositoryName; digest: Digest }
  | { kind: 'layersRoot'; name: RepositoryName }
  | { kind: 'revisionLink'; name: RepositoryName; digest: Digest }
  | { kind: 'revisionDir'; name: RepositoryName; digest: Digest }
  | { kind: 'revisionsRoot'; name: RepositoryName }
  | { kind: 'signaturesRoot'; name: RepositoryName; revision: Digest }
  | { kind: 'signatureLink'; name: RepositoryName; revision: Digest; signature: Digest }
  | { kind: 'tagsRoot'; name: RepositoryName }
  | { kind: 'tag'; name: RepositoryName; tag: Tag }
  | { kind: 'tagCurrentLink'; name: RepositoryName; tag: Tag }
  | { kind: 'tagIndexRoot'; name: RepositoryName; tag: Tag }
  | { kind: 'tagIndexLink'; name: RepositoryName; tag: Tag; digest: Digest }
  | { kind: 'tagIndexEntryDir'; name: RepositoryName; tag: Tag; digest: Digest }
  | { kind: 'uploadsRoot'; name: RepositoryName }
  | { kind: 'uploadData'; name: RepositoryName; id: string }
  | { kind: 'uploadStartedAt'; name: RepositoryName; id: string }
  | { kind: 'uploadDir'; name: RepositoryName; id: string }
  | { kind: 'fillsJournal' }
  | { kind: 'fillJournalEntry'; id: string }
  | { kind: 'lease'; name: string }
  | { kind: 'healthProbe'; instance: string };

const digestPath = (d: Digest): string => `${d.algorithm}/${d.hex}`;
const UPLOAD_ID = /^[A-Za-z0-9-]{1,64}$/;

function uploadId(id: string): string {
  if (!UPLOAD_ID.test(id)) throw new Error(`invalid upload id ${JSON.stringify(id.slice(0, 80))}`);
  return id;
}

export function pathFor(spec: PathSpec): string {
  switch (spec.kind) {
    case 'blobsRoot':
      return `${STORAGE_PREFIX}/blobs`;
    case 'blobDir':
      return `${STORAGE_PREFIX}/blobs/${spec.digest.algorithm}/${spec.digest.hex.slice(0, 2)}/${spec.digest.hex}`;
    case 'blobData':
      return `${pathFor({ kind: 'blobDir', digest: spec.digest })}/data`;
    case 'repositoriesRoot':
      return REPOSITORIES;
    case 'repository':
      return `${REPOSITORIES}/${spec.name}`;
    case 'layersRoot':
      return `${REPOSITORIES}/${spec.name}/_layers`;
    case 'layerDir':
      return `${REPOSITORIES}/${spec.name}/_layers/${digestPath(spec.digest)}`;
    case 'layerLink':
      return `${REPOSITORIES}/${spec.name}/_layers/${digestPath(spec.digest)}/link`;
    case 'revisionsRoot':
      return `${REPOSITORIES}/${spec.name}/_manifests/revisions`;
    case 'revisionDir':
      return `${REPOSITORIES}/${spec.name}/_manifests/revisions/${digestPath(spec.digest)}`;
    case 'revisionLink':
      return `${REPOSITORIES}/${spec.name}/_manifests/revisions/${digestPath(spec.digest)}/link`;
    case 'signaturesRoot':
      return `${REPOSITORIES}/${spec.name}/_manifests/revisions/${digestPath(spec.revision)}/signatures`;
    case 'signatureLink':
      return `${pathFor({ kind: 'signaturesRoot', name: spec.name, revision: spec.revision })}/${digestPath(spec.signature)}/link`;
    case 'tagsRoot':
      return `${REPOSITORIES}/${spec.name}/_manifests/tags`;
    case 'tag':
      return `${REPOSITORIES}/${spec.name}/_manifests/tags/${spec.tag}`;
    case 'tagCurrentLink':
      return `${REPOSITORIES}/${spec.name}/_manifests/tags/${spec.tag}/current/link`;
    case 'tagIndexRoot':
      return `${REPOSITORIES}/${spec.name}/_manifests/tags/${spec.tag}/index`;
    case 'tagIndexEntryDir':
      return `${REPOSITORIES}/${spec.name}/_manifests/tags/${spec.tag}/index/${digestPath(spec.digest)}`;
    case 'tagIndexLink':
      return `${REPOSITORIES}/${spec.name}/_manifests/tags/${spec.tag}/index/${digestPath(spec.digest)}/link`;
    case 'uploadsRoot':
      return `${REPOSITORIES}/${spec.name}/_uploads`;
    case 'uploadDir':
      return `${REPOSITORIES}/${spec.name}/_uploads/${uploadId(spec.id)}`;
    case 'uploadData':
      return `${REPOSITORIES}/${spec.name}/_uploads/${uploadId(spec.id)}/data`;
    case 'uploadStartedAt':
      return `${REPOSITORIES}/${spec.name}/_uploads/${uploadId(spec.id)}/startedat`;
    case 'fillsJournal':
      return `${STEVEDORE_PREFIX}/fills`;
    case 'fillJournalEntry':
      return `${STEVEDORE_PREFIX}/fills/${uploadId(spec.id)}`;
    case 'lease':
      return `${STEVEDORE_PREFIX}/leases/${uploadId(spec.name)}`;
    case 'healthProbe':
      return `${STEVEDORE_PREFIX}/health/${uploadId(spec.instance)}`;
  }
}
