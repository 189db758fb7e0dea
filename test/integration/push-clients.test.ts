// skopeo pushes into a plain Stevedore (no proxy, no upstreams: every
// repository hosted) and pulls back byte for byte: a single image, an index
// with --all, and a schema1 image (--format v2s1). Pushed twice, the schema1
// image keeps both signatures apart from its payload and serves them merged
// in one document under the same digest.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { verifySignatures, parseSignedManifest } from '../../src/registry/schema1.js'
import { compareLayoutBlobs, listLayoutBlobs } from '../helpers/blobs.js'
import { distributionPaths } from '../helpers/distribution-paths.js'
import { OCI_INDEX, OCI_MANIFEST, writeOciImage, writeOciIndex } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { SCHEMA1_SIGNED } from '../helpers/media-types.js'
import { sha256 } from '../helpers/push.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { call, exists } from '../helpers/uploads.js'

/** The digest index.json of a pulled layout points `tag` at. */
async function layoutTarget(layoutDir: string): Promise<string | undefined> {
  const index = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] }
  return index.manifests[0]?.digest
}

t.test('a single image and an index, pushed and pulled back byte-identical', async t => {
  const dir = t.testdir()
  const stevedore = await startInProcess(t, join(dir, 'storage'), {})
  const single = await writeOciImage(join(dir, 'single'), { tag: 'v1', seed: 'push-clients/single', layerSizes: [1500, 300_000] })
  const multi = await writeOciIndex(join(dir, 'multi'), {
    tag: 'multi',
    seed: 'push-clients/index',
    platforms: [
      { os: 'linux', architecture: 'amd64', layerSizes: [3000, 60_000] },
      { os: 'linux', architecture: 'arm64', variant: 'v8', layerSizes: [7000] },
    ],
  })

  await pushLayout(join(dir, 'single'), 'v1', `${stevedore.host}/clients/single:v1`)
  const head = await call(`${stevedore.url}/v2/clients/single/manifests/v1`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } })
  t.equal(head.status, 200, 'the pushed tag is served')
  t.equal(head.headers.get('docker-content-digest'), single.manifestDigest, 'under the digest skopeo pushed')
  t.equal(head.headers.get('content-type'), OCI_MANIFEST)
  await pullToLayout(`${stevedore.host}/clients/single:v1`, join(dir, 'pulled-single'), 'v1')
  t.same(await compareLayoutBlobs(join(dir, 'single'), join(dir, 'pulled-single')), [], 'manifest, config and layers byte-identical')
  t.equal(await layoutTarget(join(dir, 'pulled-single')), single.manifestDigest, 'the pulled manifest digest is the pushed one')

  await pushLayout(join(dir, 'multi'), 'multi', `${stevedore.host}/clients/deep/multi:multi`, { all: true })
  const index = await call(`${stevedore.url}/v2/clients/deep/multi/manifests/multi`, { headers: { Accept: OCI_INDEX } })
  t.equal(index.status, 200, 'the pushed index is served')
  t.equal(index.headers.get('docker-content-digest'), multi.indexDigest)
  t.equal(index.headers.get('content-type'), OCI_INDEX)
  t.equal(sha256(index.body), multi.indexDigest, 'its bytes are the pushed ones')
  for (const child of multi.manifests) {
    const got = await call(`${stevedore.url}/v2/clients/deep/multi/manifests/${child.digest}`, { headers: { Accept: OCI_MANIFEST } })
    t.equal(got.status, 200, `${child.platform.architecture} manifest served by digest`)
    t.equal(sha256(got.body), child.digest, 'byte-identical')
  }
  await pullToLayout(`${stevedore.host}/clients/deep/multi:multi`, join(dir, 'pulled-multi'), 'multi', { all: true })
  t.same(await compareLayoutBlobs(join(dir, 'multi'), join(dir, 'pulled-multi')), [], 'every platform byte-identical')
  t.equal(await layoutTarget(join(dir, 'pulled-multi')), multi.indexDigest, 'the pulled index digest is the pushed one')

  const tags = (await (await fetch(`${stevedore.url}/v2/clients/single/tags/list`)).json()) as { tags: string[] }
  t.same(tags.tags, ['v1'], 'tags/list')
  const catalog = (await (await fetch(`${stevedore.url}/v2/_catalog`)).json()) as { repositories: string[] }
  t.same(catalog.repositories, ['clients/deep/multi', 'clients/single'], '_catalog')
})

t.test('a schema1 image pushed twice: two signatures stored, both served in one GET', async t => {
  const dir = t.testdir()
  const root = join(dir, 'storage')
  const stevedore = await startInProcess(t, root, {})
  const image = await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'push-clients/schema1', layerSizes: [2500, 40_000] })
  const layers = image.manifests[0]?.layers ?? []
  const get = (): Promise<Awaited<ReturnType<typeof call>>> =>
    call(`${stevedore.url}/v2/clients/legacy/manifests/v1`, { headers: { Accept: SCHEMA1_SIGNED } })

  await pushLayout(join(dir, 'image'), 'v1', `${stevedore.host}/clients/legacy:v1`, { format: 'v2s1' })
  const one = await get()
  t.equal(one.status, 200, 'the schema1 manifest is served')
  t.equal(one.headers.get('content-type'), SCHEMA1_SIGNED)
  const digest = one.headers.get('docker-content-digest') ?? ''
  const first = parseSignedManifest(one.body)
  t.equal(first.digest.value, digest, 'the digest is the payload digest')
  t.equal(first.signatures.length, 1, 'one push, one signature')
  await t.resolves(verifySignatures(first), 'it verifies')

  await pullToLayout(`${stevedore.host}/clients/legacy:v1`, join(dir, 'pulled'), 'v1')
  const pulled = new Set((await listLayoutBlobs(join(dir, 'pulled'))).map(b => b.digest))
  for (const layer of layers) t.ok(pulled.has(layer.digest), `layer ${layer.digest.slice(0, 19)} pulled`)
  const differences = await compareLayoutBlobs(join(dir, 'image'), join(dir, 'pulled'))
  t.same(
    differences.filter(d => layers.some(l => l.digest === d.digest)),
    [],
    'the layers byte-identical (config and manifest are skopeo conversions of the schema1 document)',
  )

  await pushLayout(join(dir, 'image'), 'v1', `${stevedore.host}/clients/legacy:v1`, { format: 'v2s1' })
  const two = await get()
  t.equal(two.status, 200)
  t.equal(two.headers.get('docker-content-digest'), digest, 'the payload digest is unchanged')
  const merged = parseSignedManifest(two.body)
  t.equal(merged.signatures.length, 2, 'one document carries both signatures')
  t.not(merged.signatures[0]?.signature, merged.signatures[1]?.signature, 'two different signatures')
  t.ok(merged.canonical.equals(first.canonical), 'over the same payload')
  await t.resolves(verifySignatures(merged), 'both verify')

  const revision = join(distributionPaths.repository(root, 'clients/legacy'), '_manifests/revisions/sha256', digest.slice(7))
  t.equal(await readFile(join(revision, 'link'), 'utf8'), digest, 'the revision link')
  const payload = await readFile(distributionPaths.blobData(root, digest))
  t.ok(payload.equals(first.canonical), 'the revision blob is the payload alone, without signatures')
  const stored = (await readdir(join(revision, 'signatures/sha256'))).sort()
  t.equal(stored.length, 2, 'each signature linked apart under the revision')
  t.same(stored, merged.signatures.map(s => sha256(s.raw).slice(7)).sort(), 'named by the digests of the served signatures')
  for (const hex of stored) {
    t.equal(await readFile(join(revision, 'signatures/sha256', hex, 'link'), 'utf8'), `sha256:${hex}`, `signature link ${hex.slice(0, 12)}`)
    t.ok(await exists(distributionPaths.blobData(root, `sha256:${hex}`)), 'its blob stored')
  }
  const byDigest = await call(`${stevedore.url}/v2/clients/legacy/manifests/${digest}`, { headers: { Accept: SCHEMA1_SIGNED } })
  t.equal(parseSignedManifest(byDigest.body).signatures.length, 2, 'by digest too')
})
