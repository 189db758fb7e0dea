// The bundle index: what a valid one holds, why an invalid one is refused,
// which tar entries an import takes (and why it refuses the others).
import t from 'tap'
import { digestOf } from '../../src/registry/digest.js'
import { BUNDLE_FORMAT, BundleEntries, blobPath, escapes, parseBundleIndex, serializeBundleIndex, type BundleIndex } from '../../src/transfer/bundle.js'
import { refNames } from '../../src/transfer/export.js'
import type { RepositoryName, Tag } from '../../src/registry/names.js'

/** What `fn` throws (undefined when it returns). */
const caught = (fn: () => unknown): unknown => {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

const manifest = digestOf('manifest')
const layer = digestOf('layer')
const signature = digestOf('signature')
const referrer = digestOf('referrer')
const layout = digestOf('{"imageLayoutVersion":"1.0.0"}')
const indexJson = digestOf('{}')

const valid = (): BundleIndex => ({
  format: BUNDLE_FORMAT,
  files: [
    { path: 'oci-layout', digest: layout, size: 30 },
    { path: 'index.json', digest: indexJson, size: 2 },
    ...[manifest, layer, signature, referrer].map(digest => ({ path: blobPath(digest), digest, size: 10 })),
  ],
  images: [
    {
      reference: 'docker.io/team/app:v1',
      repository: 'team/app' as RepositoryName,
      tag: 'v1' as Tag,
      digest: manifest,
      refName: 'v1',
      manifests: [manifest],
      blobs: [layer],
      signatures: [{ revision: manifest, signatures: [signature] }],
      referrers: [referrer],
      tags: [{ tag: `sha256-${manifest.hex}.sig` as Tag, digest: referrer }],
    },
  ],
})

/** The serialized index with `edit` applied to its JSON. */
const edited = (edit: (json: any) => void): Buffer => {
  const json = JSON.parse(serializeBundleIndex(valid()).toString())
  edit(json)
  return Buffer.from(JSON.stringify(json))
}

t.test('an index survives serialization', async t => {
  const parsed = parseBundleIndex(serializeBundleIndex(valid()))
  t.same(JSON.parse(serializeBundleIndex(parsed).toString()), JSON.parse(serializeBundleIndex(valid()).toString()))
  t.equal(parsed.images[0]?.signatures[0]?.signatures[0]?.value, signature.value)
})

t.test('invalid indexes are refused, saying why', async t => {
  const cases: [string, Buffer, RegExp][] = [
    ['not JSON', Buffer.from('{'), /not JSON/],
    ['an array', Buffer.from('[]'), /not a JSON object/],
    ['another format', edited(j => (j.format = 'other/v9')), /format is "other\/v9"/],
    ['a path that is not its digest', edited(j => (j.files[2].path = blobPath(layer))), /is not blobs\/sha256\/.*the layout's path/],
    ['a path escaping', edited(j => (j.files[2].path = '../../etc/passwd')), /is not blobs/],
    ['a file twice', edited(j => j.files.push(j.files[2])), /listed twice/],
    ['no index.json', edited(j => j.files.splice(1, 1)), /index.json is not listed/],
    ['a negative size', edited(j => (j.files[2].size = -1)), /size is not a size/],
    ['a bad digest', edited(j => (j.files[2].digest = 'sha256:xyz')), /digest/],
    ['no images', edited(j => (j.images = [])), /at least one image/],
    ['a bad repository', edited(j => (j.images[0].repository = '../x')), /repository/],
    ['a bad tag', edited(j => (j.images[0].tag = 'a/b')), /not a valid tag/],
    ['a blob the bundle lacks', edited(j => j.images[0].blobs.push(digestOf('elsewhere').value)), /not among the bundle's files/],
    ['manifests not led by the digest', edited(j => (j.images[0].manifests = [layer.value])), /does not start with the image's digest/],
    ['signatures of a non-manifest', edited(j => (j.images[0].signatures[0].revision = layer.value)), /not one of its manifests/],
    ['a tag at a non-manifest', edited(j => (j.images[0].tags[0].digest = layer.value)), /points at .*not one of its manifests/],
    ['signatures not a list', edited(j => (j.images[0].signatures = {})), /signatures is not a list/],
  ]
  for (const [label, bytes, message] of cases) {
    t.match(caught(() => parseBundleIndex(bytes)), { name: 'TransferError', code: 'ERR_BUNDLE_INDEX', message }, label)
  }
})

t.test('entries: only the listed files, regular, of their size, once', async t => {
  const entries = new BundleEntries(valid())
  const refused = (entry: { path: string; type?: string; size?: number }, code: string, message: RegExp, label: string) =>
    t.match(caught(() => entries.check({ type: 'File', size: 10, ...entry })), { name: 'TransferError', code, message }, label)
  t.equal(entries.check({ path: blobPath(layer), type: 'File', size: 10 }).digest.value, layer.value)
  refused({ path: blobPath(layer) }, 'ERR_BUNDLE_PATH', /appears twice/, 'a second entry for one file')
  refused({ path: '../escape' }, 'ERR_BUNDLE_PATH', /escapes the bundle's layout/, '..')
  refused({ path: '/etc/passwd' }, 'ERR_BUNDLE_PATH', /escapes/, 'absolute')
  refused({ path: `blobs/sha256/../../${manifest.hex}` }, 'ERR_BUNDLE_PATH', /escapes/, 'a .. inside')
  refused({ path: 'blobs/sha256/extra' }, 'ERR_BUNDLE_PATH', /not a file of the bundle/, 'unlisted')
  refused({ path: `./${blobPath(manifest)}` }, 'ERR_BUNDLE_PATH', /not a file of the bundle/, 'not exactly the name')
  refused({ path: blobPath(manifest), type: 'SymbolicLink' }, 'ERR_BUNDLE_ENTRY', /symbolic link/, 'symlink')
  refused({ path: blobPath(manifest), type: 'Link' }, 'ERR_BUNDLE_ENTRY', /hard link/, 'hard link')
  refused({ path: blobPath(manifest), type: 'CharacterDevice' }, 'ERR_BUNDLE_ENTRY', /CharacterDevice/, 'device')
  refused({ path: blobPath(manifest), size: 11 }, 'ERR_BUNDLE_DIGEST', /11 bytes/, 'another size')
  t.same(entries.missing().map(f => f.path).sort(), ['index.json', 'oci-layout', blobPath(manifest), blobPath(signature), blobPath(referrer)].sort())
  for (const path of ['../a', 'a/../../b', '/a', 'C:/x', 'a\\..\\b']) t.ok(escapes(path), path)
  for (const path of ['a', 'blobs/sha256/ab', 'a..b']) t.notOk(escapes(path), path)
})

t.test('index.json names: the tag, unless two images share it', async t => {
  t.same(
    refNames([
      { repository: 'team/a', tag: 'v1', digest: manifest },
      { repository: 'ghcr.io/team/a', tag: 'v1', digest: manifest },
      { repository: 'team/b', tag: 'v2', digest: manifest },
      { repository: 'team/c', digest: layer },
    ]),
    ['team/a:v1', 'ghcr.io/team/a:v1', 'v2', `team/c@${layer.value}`],
  )
})
