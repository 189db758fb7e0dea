// Hosted repositories over the filesystem driver: a manifest is stored only
// when everything it references is in the repository (subject aside) and a
// digest reference matches; tag updates keep history; deletes unlink (and are
// UNSUPPORTED when disabled); read-only refuses every write; mounts link only
// what the source links.
import { generateKeyPairSync } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import type { JWK } from 'jose'
import { digestOf, type Digest } from '../../src/registry/digest.js'
import { RegistryError } from '../../src/registry/errors.js'
import { MediaType } from '../../src/registry/mediatypes.js'
import { parseRepositoryName, parseTag } from '../../src/registry/names.js'
import { parseReference } from '../../src/registry/reference.js'
import { buildPrettySignature, signCanonical } from '../../src/registry/schema1.js'
import type { RepositoryWriter } from '../../src/registry/services.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { HostedRegistry, type HostedOptions } from '../../src/hosted/registry.js'
import { isWritable } from '../../src/registry/services.js'
import { LocalRegistry } from '../../src/storage/local.js'
import { distributionPaths } from '../helpers/distribution-paths.js'
import { errorCode } from '../helpers/errors.js'

const repo = parseRepositoryName('site/app')
const other = parseRepositoryName('site/other')

const setup = (t: Test, options: Partial<HostedOptions> = {}) => {
  const root = t.testdir()
  const local = new LocalRegistry(new FilesystemDriver(root))
  const hosted = new HostedRegistry(local, { deletes: true, readonly: false, maxManifestBytes: 4 << 20, ...options })
  return { root, local, hosted, writer: hosted.writer(repo) }
}

const code = errorCode

/** Pushes a blob through an upload session of `writer`'s repository. */
async function pushBlob(writer: RepositoryWriter, content: string): Promise<{ digest: Digest; size: number }> {
  const data = Buffer.from(content)
  const digest = digestOf(data)
  const { id } = await writer.uploads.create()
  await writer.uploads.finish(id, digest, { body: Readable.from([data]), length: data.length })
  return { digest, size: data.length }
}

const descriptor = (blob: { digest: Digest; size: number }, mediaType: string) => ({ mediaType, digest: blob.digest.value, size: blob.size })

const imageManifest = (config: { digest: Digest; size: number }, layers: { digest: Digest; size: number }[], extra: object = {}): Buffer =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: descriptor(config, 'application/vnd.oci.image.config.v1+json'),
      layers: layers.map(l => descriptor(l, 'application/vnd.oci.image.layer.v1.tar+gzip')),
      ...extra,
    }),
  )

const index = (children: { digest: Digest; size: number }[]): Buffer =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: children.map(c => ({ ...descriptor(c, MediaType.OciManifest), platform: { os: 'linux', architecture: 'amd64' } })),
    }),
  )

const ref = (value: string) => parseReference(value)
const read = (path: string): string => readFileSync(path, 'utf8')
const revisionDir = (root: string, name: string, digest: Digest): string => join(distributionPaths.repository(root, name), '_manifests/revisions', digest.algorithm, digest.hex)
const tagDir = (root: string, name: string, tag: string): string => join(distributionPaths.repository(root, name), '_manifests/tags', tag)

/** A repository with a config and a layer pushed, and an image manifest of them. */
async function withImage(writer: RepositoryWriter, seed = 'a') {
  const config = await pushBlob(writer, `{"config":"${seed}"}`)
  const layer = await pushBlob(writer, `layer ${seed}`)
  const payload = imageManifest(config, [layer])
  return { config, layer, payload, digest: digestOf(payload) }
}

t.test('a manifest push by tag, laid out as Distribution lays it out', async t => {
  const { root, hosted, writer } = setup(t)
  t.ok(isWritable(hosted), 'the hosted registry has a write side')
  const { payload, digest } = await withImage(writer)
  t.same(await writer.putManifest(ref('v1'), payload, MediaType.OciManifest), { digest })
  t.same(readFileSync(distributionPaths.blobData(root, digest.value)), payload, 'the payload is a blob')
  t.equal(read(distributionPaths.manifestRevisionLink(root, repo, digest.value)), digest.value, 'a revision link')
  t.equal(read(distributionPaths.tagCurrentLink(root, repo, 'v1')), digest.value, 'the tag points at it')
  t.equal(read(distributionPaths.tagIndexLink(root, repo, 'v1', digest.value)), digest.value, "and the tag's index records it")
  const served = await hosted.repository(repo).manifests.get(ref('v1'), { accept: [] })
  t.same({ digest: served.digest.value, mediaType: served.mediaType, payload: served.payload }, { digest: digest.value, mediaType: MediaType.OciManifest, payload })
  t.same(await hosted.repository(repo).tags.list(), ['v1'])
  t.same(await hosted.catalog(10), ['site/app'])
})

t.test('a push by digest must match the payload', async t => {
  const { root, hosted, writer } = setup(t)
  const { payload, digest } = await withImage(writer)
  const wrong = digestOf('something else')
  const err = await writer.putManifest(ref(wrong.value), payload, MediaType.OciManifest).catch((e: unknown) => e)
  t.match(err, { code: 'DIGEST_INVALID', detail: { digest: wrong.value } })
  t.notOk(existsSync(distributionPaths.blobData(root, digest.value)), 'no blob stored')
  t.notOk(existsSync(revisionDir(root, repo, digest)), 'no revision')
  t.notOk(existsSync(revisionDir(root, repo, wrong)), 'nothing under the claimed digest either')

  t.same(await writer.putManifest(ref(digest.value), payload, MediaType.OciManifest), { digest })
  t.equal(read(distributionPaths.manifestRevisionLink(root, repo, digest.value)), digest.value)
  t.notOk(existsSync(join(distributionPaths.repository(root, repo), '_manifests/tags')), 'a digest push tags nothing')

  const sha512 = digestOf(payload, 'sha512')
  t.same(await writer.putManifest(ref(sha512.value), payload, MediaType.OciManifest), { digest: sha512 }, 'a sha512 reference hashes with sha512')
  t.same(readFileSync(distributionPaths.blobData(root, sha512.value)), payload, 'stored under blobs/sha512/')
  t.equal(read(distributionPaths.manifestRevisionLink(root, repo, sha512.value)), sha512.value)
  t.same((await hosted.repository(repo).manifests.get(ref(sha512.value), { accept: [] })).payload, payload, 'and served by it')
})

t.test('every blob must be linked in the repository, with the size the manifest says', async t => {
  const { root, hosted, writer } = setup(t)
  const config = await pushBlob(writer, '{}')
  const layer = await pushBlob(writer, 'layer bytes')
  // In blobs/ and linked in another repository only.
  const elsewhere = await pushBlob(hosted.writer(other), 'elsewhere')
  const missing = { digest: digestOf('never pushed'), size: 12 }

  const cases: [string, Buffer, string][] = [
    ['a layer linked only in another repository', imageManifest(config, [layer, elsewhere]), 'MANIFEST_BLOB_UNKNOWN'],
    ['a layer nowhere', imageManifest(config, [missing]), 'MANIFEST_BLOB_UNKNOWN'],
    ['a config nowhere', imageManifest(missing, [layer]), 'MANIFEST_BLOB_UNKNOWN'],
    ['a layer of another size', imageManifest(config, [{ ...layer, size: layer.size + 1 }]), 'MANIFEST_INVALID'],
    ['a config of another size', imageManifest({ ...config, size: 0 }, [layer]), 'MANIFEST_INVALID'],
  ]
  for (const [what, payload, expected] of cases) {
    const err = await writer.putManifest(ref('latest'), payload, MediaType.OciManifest).catch((e: unknown) => e)
    t.equal(err instanceof RegistryError ? err.code : err, expected, what)
    const digest = digestOf(payload)
    t.notOk(existsSync(distributionPaths.blobData(root, digest.value)), `${what}: no payload stored`)
    t.notOk(existsSync(revisionDir(root, repo, digest)), `${what}: no revision`)
  }
  const unknown = await writer.putManifest(ref('latest'), imageManifest(config, [missing]), MediaType.OciManifest).catch((e: unknown) => e)
  t.match(unknown, { detail: { digest: missing.digest.value } }, 'the detail names the missing blob')
  t.notOk(existsSync(tagDir(root, repo, 'latest')), 'no tag was written')

  // A blob whose link is there but whose data went (a sweep, a partial copy).
  rmSync(join(root, 'docker/registry/v2/blobs', layer.digest.algorithm, layer.digest.hex.slice(0, 2)), { recursive: true })
  t.equal(await code(writer.putManifest(ref('latest'), imageManifest(config, [layer]), MediaType.OciManifest)), 'MANIFEST_BLOB_UNKNOWN', 'a link without data is not the blob')

  const foreign = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: descriptor(config, 'application/vnd.docker.container.image.v1+json'),
      layers: [
        { ...descriptor(missing, 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'), urls: ['https://example.com/layer'] },
        { ...descriptor(missing, 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'), urls: ['https://example.com/other'] },
      ],
    }),
  )
  t.same(await writer.putManifest(ref('foreign'), foreign, MediaType.DockerManifest), { digest: digestOf(foreign) }, 'foreign layers need not be pushed')

  const schema1 = Buffer.from(
    JSON.stringify({ schemaVersion: 1, name: repo, tag: 'old', architecture: 'amd64', fsLayers: [{ blobSum: missing.digest.value }], history: [{ v1Compatibility: '{}' }], signatures: [] }),
  )
  t.equal(await code(writer.putManifest(ref('old'), schema1, MediaType.DockerSchema1Signed)), 'MANIFEST_BLOB_UNKNOWN', 'schema1 fsLayers are checked too')
  t.notOk(existsSync(tagDir(root, repo, 'old')))
})

// Distribution refuses a foreign (non-distributable) layer that has no `urls`
// (errMissingURL, answered as MANIFEST_INVALID + MANIFEST_BLOB_UNKNOWN): its
// bytes are then nowhere, and no client can pull the image. isForeignLayer
// skips the check on the media type alone.
t.test('a foreign layer without urls is refused, as Distribution refuses it', async t => {
  const { root, writer } = setup(t)
  const config = await pushBlob(writer, '{}')
  const missing = { digest: digestOf('never pushed'), size: 12 }
  for (const [what, mediaType, layerType] of [
    ['a Docker foreign layer', MediaType.DockerManifest, 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'],
    ['an OCI non-distributable layer', MediaType.OciManifest, 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'],
  ] as const) {
    const payload = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, config: descriptor(config, 'application/vnd.oci.image.config.v1+json'), layers: [descriptor(missing, layerType)] }))
    const refused = await code(writer.putManifest(ref('foreign'), payload, mediaType))
    t.ok(refused === 'MANIFEST_BLOB_UNKNOWN' || refused === 'MANIFEST_INVALID', `${what}: refused (got ${refused})`)
    t.notOk(existsSync(distributionPaths.manifestRevisionLink(root, repo, digestOf(payload).value)), `${what}: not stored`)
  }
})

t.test("an index's children must be revisions in the repository", async t => {
  const { root, hosted, writer } = setup(t)
  const image = await withImage(writer)
  const child = { digest: image.digest, size: image.payload.length }
  const list = index([child])
  t.equal(await code(writer.putManifest(ref('multi'), list, MediaType.OciIndex)), 'MANIFEST_BLOB_UNKNOWN', 'the child is not pushed yet')

  // The same bytes pushed as a blob (a _layers link) are not a manifest of the repository.
  const asBlob = await pushBlob(writer, image.payload.toString())
  t.same(asBlob.digest, image.digest)
  t.equal(await code(writer.putManifest(ref('multi'), list, MediaType.OciIndex)), 'MANIFEST_BLOB_UNKNOWN', 'a child linked as a blob only')

  const otherWriter = hosted.writer(other)
  await withImage(otherWriter)
  await otherWriter.putManifest(ref(image.digest.value), image.payload, MediaType.OciManifest)
  t.equal(await code(writer.putManifest(ref('multi'), list, MediaType.OciIndex)), 'MANIFEST_BLOB_UNKNOWN', 'a child that is a revision of another repository')
  t.notOk(existsSync(revisionDir(root, repo, digestOf(list))))

  await writer.putManifest(ref(image.digest.value), image.payload, MediaType.OciManifest)
  t.same(await writer.putManifest(ref('multi'), list, MediaType.OciIndex), { digest: digestOf(list) }, 'once the child is a revision here')
  t.equal(read(distributionPaths.tagCurrentLink(root, repo, 'multi')), digestOf(list).value)
})

t.test('a signed schema1 manifest: payload and signatures apart, layers checked without sizes', async t => {
  const { root, hosted, writer } = setup(t)
  const layer = await pushBlob(writer, 'schema1 layer')
  const canonical = Buffer.from(
    JSON.stringify({ schemaVersion: 1, name: repo, tag: 'old', architecture: 'amd64', fsLayers: [{ blobSum: layer.digest.value }], history: [{ v1Compatibility: '{"id":"x"}' }] }, null, 3),
  )
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const key = { privateJwk: pair.privateKey.export({ format: 'jwk' }) as JWK, publicJwk: pair.publicKey.export({ format: 'jwk' }) as JWK }
  const signed = buildPrettySignature(canonical, [await signCanonical(canonical, key)])
  const digest = digestOf(canonical)
  t.equal(await code(writer.putManifest(ref(digestOf(signed).value), signed, MediaType.DockerSchema1Signed)), 'DIGEST_INVALID', 'the digest is of the payload, not the signed document')
  t.same(await writer.putManifest(ref('old'), signed, MediaType.DockerSchema1Signed), { digest })
  t.same(readFileSync(distributionPaths.blobData(root, digest.value)), canonical, 'the revision blob is the canonical payload')
  t.equal(read(distributionPaths.tagCurrentLink(root, repo, 'old')), digest.value)
  t.equal(readdirSync(join(revisionDir(root, repo, digest), 'signatures/sha256')).length, 1, 'one signature linked beside the revision')
  const served = await hosted.repository(repo).manifests.get(ref('old'), { accept: [MediaType.DockerSchema1Signed] })
  t.same(served.payload, signed, 'served signed, as pushed')
  t.same(await writer.putManifest(ref(digest.value), signed, MediaType.DockerSchema1Signed), { digest }, 'by the payload digest')
})

t.test('a subject need not exist', async t => {
  const { root, writer } = setup(t)
  const config = await pushBlob(writer, '{}')
  const subject = { mediaType: MediaType.OciManifest, digest: digestOf('a subject not pushed yet').value, size: 1234 }
  const payload = imageManifest(config, [], { artifactType: 'application/vnd.example.sbom', subject })
  const pushed = await writer.putManifest(ref(digestOf(payload).value), payload, MediaType.OciManifest)
  t.same(pushed, { digest: digestOf(payload), subject: digestOf('a subject not pushed yet') }, 'the subject is reported (OCI-Subject)')
  t.ok(existsSync(distributionPaths.manifestRevisionLink(root, repo, digestOf(payload).value)))
})

t.test('a manifest that does not parse as its Content-Type is refused before anything is stored', async t => {
  const { root, writer } = setup(t, { maxManifestBytes: 1000 })
  const { payload } = await withImage(writer)
  t.equal(await code(writer.putManifest(ref('x'), payload, MediaType.DockerManifest)), 'MANIFEST_INVALID', 'Content-Type and mediaType disagree')
  const big = imageManifest((await withImage(writer, 'b')).config, [], { annotations: { pad: 'x'.repeat(1000) } })
  t.equal(await code(writer.putManifest(ref('x'), big, MediaType.OciManifest)), 'MANIFEST_INVALID', 'larger than maxManifestBytes')
  t.equal(await code(writer.putManifest(ref('x'), Buffer.alloc(0), MediaType.OciManifest)), 'MANIFEST_INVALID', 'empty')
  t.notOk(existsSync(tagDir(root, repo, 'x')))
  t.notOk(existsSync(join(distributionPaths.repository(root, repo), '_manifests')), 'no _manifests at all')
})

t.test('a tag update keeps the old revision and the history', async t => {
  const { root, hosted, writer } = setup(t)
  const first = await withImage(writer, 'one')
  const second = await withImage(writer, 'two')
  await writer.putManifest(ref('latest'), first.payload, MediaType.OciManifest)
  await writer.putManifest(ref('latest'), second.payload, MediaType.OciManifest)
  t.equal(read(distributionPaths.tagCurrentLink(root, repo, 'latest')), second.digest.value, 'the tag moved')
  t.same(readdirSync(join(tagDir(root, repo, 'latest'), 'index/sha256')).sort(), [first.digest.hex, second.digest.hex].sort(), 'index/ has both')
  t.equal(read(distributionPaths.manifestRevisionLink(root, repo, first.digest.value)), first.digest.value, 'the old revision stays')
  const old = await hosted.repository(repo).manifests.get(ref(first.digest.value), { accept: [] })
  t.same(old.payload, first.payload, 'and is served by digest')
})

t.test('deleteManifest unlinks the revision and every tag on it', async t => {
  const { root, hosted, writer } = setup(t)
  const first = await withImage(writer, 'one')
  const second = await withImage(writer, 'two')
  await writer.putManifest(ref('a'), first.payload, MediaType.OciManifest)
  await writer.putManifest(ref('b'), first.payload, MediaType.OciManifest)
  await writer.putManifest(ref('c'), second.payload, MediaType.OciManifest)
  await writer.putManifest(ref('moved'), first.payload, MediaType.OciManifest)
  await writer.putManifest(ref('moved'), second.payload, MediaType.OciManifest)
  await hosted.repository(repo).manifests.get(ref(first.digest.value), { accept: [] })

  await writer.deleteManifest(first.digest)
  t.notOk(existsSync(distributionPaths.manifestRevisionLink(root, repo, first.digest.value)), 'the revision link is gone (the link file, as Distribution deletes it)')
  t.notOk(existsSync(tagDir(root, repo, 'a')), 'tag a, pointing at it, is gone whole')
  t.notOk(existsSync(tagDir(root, repo, 'b')), 'so is tag b')
  t.equal(read(distributionPaths.tagCurrentLink(root, repo, 'c')), second.digest.value, 'a tag on another revision stays')
  t.equal(read(distributionPaths.tagCurrentLink(root, repo, 'moved')), second.digest.value, 'a tag that pointed at it once and moved on stays')
  t.ok(existsSync(distributionPaths.blobData(root, first.digest.value)), 'the data stays for gc (soft delete)')
  t.ok(existsSync(distributionPaths.layerLink(root, repo, first.layer.digest.value)), 'its blobs stay linked')
  t.equal(await code(hosted.repository(repo).manifests.get(ref(first.digest.value), { accept: [] })), 'MANIFEST_UNKNOWN', 'no longer served, cached or not')
  t.same(await hosted.repository(repo).tags.list(), ['c', 'moved'])

  t.equal(await code(writer.deleteManifest(first.digest)), 'MANIFEST_UNKNOWN', 'a second delete')
  t.equal(await code(writer.deleteManifest(first.layer.digest)), 'MANIFEST_UNKNOWN', 'a blob is not a manifest')
  t.equal(await code(hosted.writer(other).deleteManifest(second.digest)), 'MANIFEST_UNKNOWN', 'nor is a revision of another repository')
  t.ok(existsSync(distributionPaths.manifestRevisionLink(root, repo, second.digest.value)))
})

t.test('deleteTag removes the tag, not the revision', async t => {
  const { root, hosted, writer } = setup(t)
  const image = await withImage(writer)
  await writer.putManifest(ref('v1'), image.payload, MediaType.OciManifest)
  await writer.putManifest(ref('v2'), image.payload, MediaType.OciManifest)
  await writer.deleteTag(parseTag('v1'))
  t.notOk(existsSync(tagDir(root, repo, 'v1')), 'the tag directory is gone, its index too')
  t.equal(read(distributionPaths.tagCurrentLink(root, repo, 'v2')), image.digest.value)
  t.equal(read(distributionPaths.manifestRevisionLink(root, repo, image.digest.value)), image.digest.value, 'the revision stays')
  t.equal(await code(hosted.repository(repo).manifests.get(ref('v1'), { accept: [] })), 'MANIFEST_UNKNOWN')
  t.equal(await code(writer.deleteTag(parseTag('v1'))), 'MANIFEST_UNKNOWN', 'a second delete')
  t.equal(await code(writer.deleteTag(parseTag('never'))), 'MANIFEST_UNKNOWN')
})

t.test('deleteBlob unlinks _layers only', async t => {
  const { root, hosted, writer } = setup(t)
  const blob = await pushBlob(writer, 'blob')
  await pushBlob(hosted.writer(other), 'blob')
  await writer.deleteBlob(blob.digest)
  t.notOk(existsSync(distributionPaths.layerLink(root, repo, blob.digest.value)), 'the link is gone')
  t.ok(existsSync(distributionPaths.blobData(root, blob.digest.value)), 'the data stays')
  t.ok(existsSync(distributionPaths.layerLink(root, other, blob.digest.value)), 'other repositories keep theirs')
  t.equal(await code(hosted.repository(repo).blobs.stat(blob.digest)), 'BLOB_UNKNOWN')
  t.equal(await code(writer.deleteBlob(blob.digest)), 'BLOB_UNKNOWN', 'a second delete')
  t.equal(await code(writer.deleteBlob(digestOf('never'))), 'BLOB_UNKNOWN')
})

t.test('with deletes disabled every delete is UNSUPPORTED and changes nothing', async t => {
  const { root, writer } = setup(t, { deletes: false })
  const image = await withImage(writer)
  await writer.putManifest(ref('v1'), image.payload, MediaType.OciManifest)
  t.equal(await code(writer.deleteManifest(image.digest)), 'UNSUPPORTED')
  t.equal(await code(writer.deleteTag(parseTag('v1'))), 'UNSUPPORTED')
  t.equal(await code(writer.deleteBlob(image.layer.digest)), 'UNSUPPORTED')
  t.equal(await code(writer.deleteManifest(digestOf('unknown'))), 'UNSUPPORTED', 'before looking anything up')
  t.ok(existsSync(distributionPaths.manifestRevisionLink(root, repo, image.digest.value)))
  t.ok(existsSync(distributionPaths.tagCurrentLink(root, repo, 'v1')))
  t.ok(existsSync(distributionPaths.layerLink(root, repo, image.layer.digest.value)))
})

t.test('read-only storage refuses every write', async t => {
  const root = t.testdir()
  const local = new LocalRegistry(new FilesystemDriver(root))
  const writable = new HostedRegistry(local, { deletes: true, readonly: false, maxManifestBytes: 4 << 20 }).writer(repo)
  const image = await withImage(writable)
  await writable.putManifest(ref('v1'), image.payload, MediaType.OciManifest)
  const open = await writable.uploads.create()
  await writable.uploads.append(open.id, { body: Readable.from([Buffer.from('abc')]) })

  const writer = new HostedRegistry(local, { deletes: true, readonly: true, maxManifestBytes: 4 << 20 }).writer(repo)
  const refusals: [string, Promise<unknown>][] = [
    ['putManifest', writer.putManifest(ref('v2'), image.payload, MediaType.OciManifest)],
    ['mount', writer.mount(image.layer.digest, repo)],
    ['deleteManifest', writer.deleteManifest(image.digest)],
    ['deleteTag', writer.deleteTag(parseTag('v1'))],
    ['deleteBlob', writer.deleteBlob(image.layer.digest)],
    ['uploads.create', writer.uploads.create()],
    ['uploads.append', writer.uploads.append(open.id, { body: Readable.from([Buffer.from('def')]) })],
    ['uploads.finish', writer.uploads.finish(open.id, digestOf('abc'))],
  ]
  for (const [what, work] of refusals) t.equal(await code(work), 'UNSUPPORTED', what)
  t.notOk(existsSync(tagDir(root, repo, 'v2')))
  t.ok(existsSync(distributionPaths.tagCurrentLink(root, repo, 'v1')))
  t.ok(existsSync(distributionPaths.manifestRevisionLink(root, repo, image.digest.value)))
  t.ok(existsSync(distributionPaths.layerLink(root, repo, image.layer.digest.value)))
  t.notOk(existsSync(distributionPaths.blobData(root, digestOf('abc').value)))
  t.same(await writer.uploads.status(open.id), { id: open.id, size: 3 }, 'status still works, the append added nothing')
  await writer.uploads.cancel(open.id)
  t.equal(await code(writer.uploads.status(open.id)), 'BLOB_UPLOAD_UNKNOWN', 'cancel still works')
})

t.test('mount links a blob only when the source repository links it', async t => {
  const { root, hosted, writer } = setup(t)
  const source = hosted.writer(other)
  const blob = await pushBlob(source, 'shared layer')
  const target = parseRepositoryName('site/target')
  const mounting = hosted.writer(target)
  t.same(await mounting.mount(blob.digest, other), { digest: blob.digest, size: blob.size, mediaType: 'application/octet-stream' })
  t.equal(read(distributionPaths.layerLink(root, target, blob.digest.value)), blob.digest.value, 'linked in the target')

  // In blobs/ (via `other`), but not linked in `repo`.
  const third = parseRepositoryName('site/third')
  t.equal(await hosted.writer(third).mount(blob.digest, repo), undefined, 'a source that does not link it')
  t.notOk(existsSync(distributionPaths.layerLink(root, third, blob.digest.value)), 'nothing linked')
  t.equal(await writer.mount(digestOf('nowhere'), other), undefined, 'a digest nobody has')

  rmSync(distributionPaths.blobData(root, blob.digest.value))
  t.equal(await hosted.writer(third).mount(blob.digest, other), undefined, 'a link whose data is gone')
  t.notOk(existsSync(distributionPaths.layerLink(root, third, blob.digest.value)))
})
