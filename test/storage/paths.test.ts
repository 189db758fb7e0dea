// The path mapper against Distribution's layout, one row per path kind.
// Expected strings are written out by hand from distribution/registry/storage/paths.go.
import t from 'tap';
import { parseDigest } from '../../src/registry/digest.js';
import { parseRepositoryName, parseTag } from '../../src/registry/names.js';
import { pathFor, type PathSpec } from '../../src/storage/paths.js';

const name = parseRepositoryName('library/alpine');
const tag = parseTag('3.19');
const hex = 'a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';
const sig = 'b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c';
const digest = parseDigest(`sha256:${hex}`);
const signature = parseDigest(`sha256:${sig}`);
const sha512 = parseDigest(`sha512:${'ab'.repeat(64)}`);
const id = '8a1c1f7e-4d2b-4c5a-9e0f-1a2b3c4d5e6f';
const repo = '/docker/registry/v2/repositories/library/alpine';

const table: [PathSpec, string][] = [
  [{ kind: 'blobsRoot' }, '/docker/registry/v2/blobs'],
  [{ kind: 'blobDir', digest }, `/docker/registry/v2/blobs/sha256/a3/${hex}`],
  [{ kind: 'blobData', digest }, `/docker/registry/v2/blobs/sha256/a3/${hex}/data`],
  [{ kind: 'blobData', digest: sha512 }, `/docker/registry/v2/blobs/sha512/ab/${'ab'.repeat(64)}/data`],
  [{ kind: 'repositoriesRoot' }, '/docker/registry/v2/repositories'],
  [{ kind: 'repository', name }, repo],
  [{ kind: 'layersRoot', name }, `${repo}/_layers`],
  [{ kind: 'layerLink', name, digest }, `${repo}/_layers/sha256/${hex}/link`],
  [{ kind: 'layerDir', name, digest }, `${repo}/_layers/sha256/${hex}`],
  [{ kind: 'revisionsRoot', name }, `${repo}/_manifests/revisions`],
  [{ kind: 'revisionLink', name, digest }, `${repo}/_manifests/revisions/sha256/${hex}/link`],
  [{ kind: 'revisionDir', name, digest }, `${repo}/_manifests/revisions/sha256/${hex}`],
  [{ kind: 'signaturesRoot', name, revision: digest }, `${repo}/_manifests/revisions/sha256/${hex}/signatures`],
  [
    { kind: 'signatureLink', name, revision: digest, signature },
    `${repo}/_manifests/revisions/sha256/${hex}/signatures/sha256/${sig}/link`,
  ],
  [{ kind: 'tagsRoot', name }, `${repo}/_manifests/tags`],
  [{ kind: 'tag', name, tag }, `${repo}/_manifests/tags/3.19`],
  [{ kind: 'tagCurrentLink', name, tag }, `${repo}/_manifests/tags/3.19/current/link`],
  [{ kind: 'tagIndexRoot', name, tag }, `${repo}/_manifests/tags/3.19/index`],
  [{ kind: 'tagIndexLink', name, tag, digest }, `${repo}/_manifests/tags/3.19/index/sha256/${hex}/link`],
  [{ kind: 'tagIndexEntryDir', name, tag, digest }, `${repo}/_manifests/tags/3.19/index/sha256/${hex}`],
  [{ kind: 'uploadsRoot', name }, `${repo}/_uploads`],
  [{ kind: 'uploadDir', name, id }, `${repo}/_uploads/${id}`],
  [{ kind: 'uploadData', name, id }, `${repo}/_uploads/${id}/data`],
  [{ kind: 'uploadStartedAt', name, id }, `${repo}/_uploads/${id}/startedat`],
  [{ kind: 'fillsJournal' }, '/stevedore/v1/fills'],
  [{ kind: 'fillJournalEntry', id }, `/stevedore/v1/fills/${id}`],
  [{ kind: 'lease', name: 'sweep' }, '/stevedore/v1/leases/sweep'],
  [{ kind: 'healthProbe', instance: 'a1b2c3d4-42' }, '/stevedore/v1/health/a1b2c3d4-42'],
];

t.test('every path kind matches Distribution', async (t) => {
  for (const [spec, expected] of table) t.equal(pathFor(spec), expected, spec.kind);
  const kinds = new Set(table.map(([spec]) => spec.kind));
  t.equal(kinds.size, 27, 'the table covers every kind of PathSpec');
});

t.test('upload ids cannot smuggle path components', async (t) => {
  for (const bad of ['../x', 'a/b', '', '.', 'x'.repeat(65)]) {
    t.throws(() => pathFor({ kind: 'uploadData', name, id: bad }), JSON.stringify(bad));
  }
});
