// What a pushed manifest must be before anything is stored: of the type its
// Content-Type names (a mediaType field that disagrees is refused), of that
// type's schemaVersion, with the fields the type requires.
import t from 'tap'
import { digestOf } from '../../src/registry/digest.js'
import { RegistryError } from '../../src/registry/errors.js'
import { MediaType } from '../../src/registry/mediatypes.js'
import { contentTypeOf, isForeignLayer, parsePushedManifest } from '../../src/registry/push.js'

const MAX = 4 << 20
const blob = (seed: string, mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip') => ({ mediaType, digest: digestOf(seed).value, size: seed.length })
const config = blob('config', 'application/vnd.oci.image.config.v1+json')
const layer = blob('layer')
const child = { ...blob('child', MediaType.OciManifest), platform: { os: 'linux', architecture: 'arm64' } }

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value))
const oci = (over: object = {}) => json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer], ...over })
const docker = (over: object = {}) => json({ schemaVersion: 2, mediaType: MediaType.DockerManifest, config, layers: [layer], ...over })
const ociIndex = (over: object = {}) => json({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [child], ...over })
const dockerList = (over: object = {}) => json({ schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [child], ...over })
const schema1 = (over: object = {}) =>
  json({ schemaVersion: 1, name: 'team/app', tag: 'v1', architecture: 'amd64', fsLayers: [{ blobSum: layer.digest }], history: [], signatures: [{}], ...over })

/** The media type it parses as, or the error code. */
const outcome = (payload: Buffer, contentType: string | undefined, max = MAX): string => {
  try {
    return parsePushedManifest(payload, contentType, max).mediaType
  } catch (err) {
    if (err instanceof RegistryError) return err.code
    throw err
  }
}

t.test('Content-Type and the mediaType field must agree', async t => {
  const table: [string, Buffer, string | undefined, string][] = [
    ['OCI manifest as itself', oci(), MediaType.OciManifest, MediaType.OciManifest],
    ['Docker manifest as itself', docker(), MediaType.DockerManifest, MediaType.DockerManifest],
    ['OCI index as itself', ociIndex(), MediaType.OciIndex, MediaType.OciIndex],
    ['Docker list as itself', dockerList(), MediaType.DockerManifestList, MediaType.DockerManifestList],
    ['OCI manifest sent as Docker', oci(), MediaType.DockerManifest, 'MANIFEST_INVALID'],
    ['Docker manifest sent as OCI', docker(), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['an index sent as a manifest', ociIndex(), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['a manifest sent as an index', oci(), MediaType.OciIndex, 'MANIFEST_INVALID'],
    ['OCI index sent as a Docker list', ociIndex(), MediaType.DockerManifestList, 'MANIFEST_INVALID'],
    ['parameters and case are ignored', oci(), 'Application/VND.OCI.Image.Manifest.v1+json; charset=utf-8', MediaType.OciManifest],
    ['no Content-Type: the field decides', docker(), undefined, MediaType.DockerManifest],
    ['an empty Content-Type is none', ociIndex(), '', MediaType.OciIndex],
    ['application/json: the field decides', dockerList(), 'application/json', MediaType.DockerManifestList],
    ['application/octet-stream: the field decides', oci(), 'application/octet-stream', MediaType.OciManifest],
    ['an unknown Content-Type', oci(), 'text/plain', 'MANIFEST_INVALID'],
    ['a layer media type as Content-Type', oci(), 'application/vnd.oci.image.layer.v1.tar+gzip', 'MANIFEST_INVALID'],
    ['an unknown mediaType field', oci({ mediaType: 'application/vnd.example+json' }), MediaType.OciManifest, 'MANIFEST_INVALID'],
    // Without a field, the header names the type, and the type's required fields decide.
    ['no field: the header names a manifest', oci({ mediaType: undefined }), MediaType.OciManifest, MediaType.OciManifest],
    ['no field: an index body under a manifest header', ociIndex({ mediaType: undefined }), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['no field: a manifest body under an index header', oci({ mediaType: undefined }), MediaType.OciIndex, 'MANIFEST_INVALID'],
    ['no field, no header: the shape', ociIndex({ mediaType: undefined }), undefined, MediaType.OciIndex],
    ['schema1 signed as itself', schema1(), MediaType.DockerSchema1Signed, MediaType.DockerSchema1Signed],
    ['schema1 signed under the unsigned type', schema1(), MediaType.DockerSchema1, MediaType.DockerSchema1Signed],
    ['schema1 unsigned under the signed type', schema1({ signatures: undefined }), MediaType.DockerSchema1Signed, MediaType.DockerSchema1],
    ['schema1 sent as OCI', schema1(), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['OCI sent as schema1', oci(), MediaType.DockerSchema1Signed, 'MANIFEST_INVALID'],
  ]
  for (const [what, payload, contentType, expected] of table) t.equal(outcome(payload, contentType), expected, what)
})

t.test('schemaVersion and required fields per type', async t => {
  const table: [string, Buffer, string, string][] = [
    ['OCI manifest v1', oci({ schemaVersion: 1 }), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['OCI manifest without schemaVersion', oci({ schemaVersion: undefined }), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['OCI manifest with "2"', oci({ schemaVersion: '2' }), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['Docker manifest v3', docker({ schemaVersion: 3 }), MediaType.DockerManifest, 'MANIFEST_INVALID'],
    ['OCI index v1', ociIndex({ schemaVersion: 1 }), MediaType.OciIndex, 'MANIFEST_INVALID'],
    ['Docker list without schemaVersion', dockerList({ schemaVersion: undefined }), MediaType.DockerManifestList, 'MANIFEST_INVALID'],
    ['schema1 with version 2', schema1({ schemaVersion: 2 }), MediaType.DockerSchema1Signed, 'MANIFEST_INVALID'],
    ['OCI manifest without config', oci({ config: undefined }), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['Docker manifest without config', docker({ config: undefined }), MediaType.DockerManifest, 'MANIFEST_INVALID'],
    ['OCI manifest without layers (an artifact)', oci({ layers: undefined }), MediaType.OciManifest, MediaType.OciManifest],
    ['OCI manifest with empty layers', oci({ layers: [] }), MediaType.OciManifest, MediaType.OciManifest],
    ['Docker manifest without layers', docker({ layers: undefined }), MediaType.DockerManifest, 'MANIFEST_INVALID'],
    ['layers not an array', oci({ layers: {} }), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['OCI index without manifests', ociIndex({ manifests: undefined }), MediaType.OciIndex, 'MANIFEST_INVALID'],
    ['OCI index with manifests null', ociIndex({ manifests: null }), MediaType.OciIndex, 'MANIFEST_INVALID'],
    ['Docker list without manifests', dockerList({ manifests: undefined }), MediaType.DockerManifestList, 'MANIFEST_INVALID'],
    ['OCI index with no children', ociIndex({ manifests: [] }), MediaType.OciIndex, MediaType.OciIndex],
    ['a descriptor without a digest', oci({ layers: [{ mediaType: layer.mediaType, size: 1 }] }), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['a descriptor with a negative size', oci({ layers: [{ ...layer, size: -1 }] }), MediaType.OciManifest, 'MANIFEST_INVALID'],
    ['a descriptor with a bad digest', oci({ config: { ...config, digest: 'sha256:xyz' } }), MediaType.OciManifest, 'DIGEST_INVALID'],
    ['schema1 without fsLayers', schema1({ fsLayers: undefined }), MediaType.DockerSchema1Signed, 'MANIFEST_INVALID'],
  ]
  for (const [what, payload, contentType, expected] of table) t.equal(outcome(payload, contentType), expected, what)
})

t.test('bodies that are no manifest at all', async t => {
  t.equal(outcome(Buffer.alloc(0), MediaType.OciManifest), 'MANIFEST_INVALID', 'empty')
  t.equal(outcome(Buffer.alloc(0), undefined), 'MANIFEST_INVALID', 'empty without a Content-Type')
  t.equal(outcome(Buffer.from('{"schemaVersion":2,'), MediaType.OciManifest), 'MANIFEST_INVALID', 'not JSON')
  t.equal(outcome(Buffer.from('[1,2]'), MediaType.OciManifest), 'MANIFEST_INVALID', 'a JSON array')
  t.equal(outcome(Buffer.from('"manifest"'), undefined), 'MANIFEST_INVALID', 'a JSON string')
  t.equal(outcome(Buffer.from('{}'), undefined), 'MANIFEST_INVALID', 'an object of no known shape')
  const payload = oci()
  t.equal(outcome(payload, MediaType.OciManifest, payload.length), MediaType.OciManifest, 'exactly the bound')
  t.equal(outcome(payload, MediaType.OciManifest, payload.length - 1), 'MANIFEST_INVALID', 'one byte over it')
  const err = (() => {
    try {
      parsePushedManifest(Buffer.alloc(0), MediaType.OciManifest, MAX)
    } catch (e) {
      return e
    }
  })()
  t.match(err, { message: /empty/ }, 'the message says why')
})

t.test('what the parse returns: blobs, children, subject', async t => {
  const subject = blob('subject', MediaType.OciManifest)
  const parsed = parsePushedManifest(oci({ subject, artifactType: 'application/vnd.example.sig' }), MediaType.OciManifest, MAX)
  t.same(parsed.blobs.map(b => b.digest.value), [config.digest, layer.digest], 'config first, then the layers')
  t.same(parsed.blobs.map(b => b.size), [config.size, layer.size])
  t.equal(parsed.subject?.digest.value, subject.digest)
  t.equal(parsed.artifactType, 'application/vnd.example.sig')
  const list = parsePushedManifest(ociIndex(), MediaType.OciIndex, MAX)
  t.same(list.manifests.map(m => [m.digest.value, m.platform]), [[child.digest, { os: 'linux', architecture: 'arm64' }]])
  t.same(list.blobs, [], 'an index needs no blobs')
})

t.test('contentTypeOf and isForeignLayer', async t => {
  t.equal(contentTypeOf(undefined), undefined)
  t.equal(contentTypeOf(''), undefined)
  t.equal(contentTypeOf('  ; charset=utf-8'), undefined)
  t.equal(contentTypeOf(' Application/JSON ; charset=utf-8'), 'application/json')
  t.equal(contentTypeOf(MediaType.OciIndex), MediaType.OciIndex)
  const foreign = (mediaType: string, urls: string[] = ['https://example.com/layer']) => isForeignLayer({ mediaType, digest: digestOf('x'), size: 1, urls })
  t.equal(foreign('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', []), false, 'without urls its bytes are nowhere else')
  t.equal(isForeignLayer({ mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', digest: digestOf('x'), size: 1 }), false)
  t.equal(foreign('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'), true)
  t.equal(foreign('application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'), true)
  t.equal(foreign('application/vnd.oci.image.layer.nondistributable.v1.tar+zstd'), true)
  t.equal(foreign('application/vnd.oci.image.layer.v1.tar+gzip'), false)
  t.equal(foreign('application/vnd.docker.image.rootfs.diff.tar.gzip'), false)
})
