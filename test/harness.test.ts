import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { compareLayoutBlobs, fileDigest, listLayoutBlobs } from './helpers/blobs.js'
import { distributionPaths as paths } from './helpers/distribution-paths.js'
import { startDistribution, type Distribution } from './helpers/distribution.js'
import { writeOciImage, writeOciIndex, type Descriptor, type ImageDescription } from './helpers/images.js'
import { pullToLayout, pushLayout } from './helpers/skopeo.js'

/** Every manifest and blob the image wrote is in Distribution's blob store, byte for byte. */
async function assertStored(t: Test, registry: Distribution, repo: string, image: ImageDescription): Promise<void> {
  const link = await readFile(paths.tagCurrentLink(registry.root, repo, image.tag), 'utf8')
  t.equal(link, image.manifestDigest, `tag ${image.tag} links to the pushed manifest`)
  const descriptors: Descriptor[] = [...(image.index ? [image.index] : []), ...image.manifests, ...image.blobs]
  for (const d of descriptors) {
    const data = paths.blobData(registry.root, d.digest)
    t.equal((await stat(data)).size, d.size, `${d.mediaType} ${d.digest} stored with its size`)
    t.equal(await fileDigest(data), d.digest, `${d.digest} stored byte-identical`)
  }
  for (const m of image.manifests) {
    const revision = await readFile(paths.manifestRevisionLink(registry.root, repo, m.digest), 'utf8')
    t.equal(revision, m.digest, `manifest ${m.digest} is a revision of ${repo}`)
  }
  for (const blob of image.blobs) {
    const layerLink = await readFile(paths.layerLink(registry.root, repo, blob.digest), 'utf8')
    t.equal(layerLink, blob.digest, `${blob.digest} is linked into ${repo}`)
  }
}

async function assertRoundTrip(t: Test, source: string, pulled: string, image: ImageDescription): Promise<void> {
  t.same(await compareLayoutBlobs(source, pulled), [], 'every pushed blob came back byte-identical')
  const index = JSON.parse(await readFile(join(pulled, 'index.json'), 'utf8')) as { manifests: Descriptor[] }
  t.same(
    index.manifests.map(m => m.digest),
    [image.manifestDigest],
    'the pulled layout tags the pushed manifest digest',
  )
}

t.test('generated layouts are deterministic', async t => {
  const dir = t.testdir()
  const options = { tag: 'v1', seed: 'determinism', layerSizes: [0, 1, 511, 512, 513, 70_000] }
  const first = await writeOciImage(join(dir, 'a'), options)
  const second = await writeOciImage(join(dir, 'b'), options)
  t.same(second, first, 'same options, same digests')
  t.same(await compareLayoutBlobs(join(dir, 'a'), join(dir, 'b')), [], 'same bytes')
  const other = await writeOciImage(join(dir, 'c'), { ...options, seed: 'other' })
  t.not(other.manifestDigest, first.manifestDigest, 'another seed gives another image')
  const listed = (await listLayoutBlobs(join(dir, 'a'))).map(blob => blob.digest)
  const described = [first.manifestDigest, ...first.blobs.map(blob => blob.digest)].sort()
  t.same(listed, described, 'the description lists every blob written')

  const big = await writeOciImage(join(dir, 'big'), { tag: 'big', seed: 'big', layerSizes: [9 * 1024 * 1024] })
  t.equal(big.blobs[1]?.mediaType, 'application/vnd.oci.image.layer.v1.tar', 'big layers are plain tar by default')
  t.equal(big.blobs[1]?.size, 512 + 9 * 1024 * 1024 + 1024, 'header, content and end-of-archive blocks')
})

t.test('a single-platform image round-trips through Distribution', async t => {
  const dir = t.testdir()
  const registry = await startDistribution(t)
  const source = join(dir, 'source')
  const image = await writeOciImage(source, { tag: 'v1', seed: 'harness-single', layerSizes: [1024, 300_000, 0] })
  t.equal(image.blobs.length, 4, 'a config and three layers')

  await pushLayout(source, 'v1', `${registry.host}/harness/single:v1`)
  await assertStored(t, registry, 'harness/single', image)

  const pulled = join(dir, 'pulled')
  await pullToLayout(`${registry.host}/harness/single:v1`, pulled, 'v1')
  await assertRoundTrip(t, source, pulled, image)
})

t.test('a two-platform index round-trips through Distribution', async t => {
  const dir = t.testdir()
  const registry = await startDistribution(t)
  const source = join(dir, 'source')
  const image = await writeOciIndex(source, {
    tag: 'multi',
    seed: 'harness-index',
    platforms: [
      { os: 'linux', architecture: 'amd64', layerSizes: [2048, 100_000] },
      { os: 'linux', architecture: 'arm64', variant: 'v8', layerSizes: [4096] },
    ],
  })
  t.equal(image.manifests.length, 2, 'one manifest per platform')
  t.equal(image.manifestDigest, image.indexDigest, 'the tag points at the index')

  await pushLayout(source, 'multi', `${registry.host}/harness/index:multi`, { all: true })
  await assertStored(t, registry, 'harness/index', image)

  const pulled = join(dir, 'pulled')
  await pullToLayout(`${registry.host}/harness/index:multi`, pulled, 'multi', { all: true })
  await assertRoundTrip(t, source, pulled, image)
})
