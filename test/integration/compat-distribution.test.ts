// Drop-in compatibility with CNCF Distribution: a storage directory written by
// a real Distribution is served by Stevedore started with the same config.yml
// (only http.addr changed), and every image comes back byte-identical.
import { join } from 'node:path'
import t from 'tap'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage, writeOciIndex } from '../helpers/images.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { startStevedore } from '../helpers/stevedore.js'

t.test('Stevedore serves what Distribution stored', async t => {
  const dir = t.testdir()
  const distribution = await startDistribution(t)
  const single = await writeOciImage(join(dir, 'single'), { tag: 'v1', seed: 'compat-single', layerSizes: [1500, 200_000] })
  const multi = await writeOciIndex(join(dir, 'multi'), {
    tag: 'multi',
    seed: 'compat-index',
    platforms: [
      { os: 'linux', architecture: 'amd64', layerSizes: [3000, 50_000] },
      { os: 'linux', architecture: 'arm64', variant: 'v8', layerSizes: [7000] },
    ],
  })
  await pushLayout(join(dir, 'single'), 'v1', `${distribution.host}/compat/single:v1`)
  await pushLayout(join(dir, 'single'), 'v1', `${distribution.host}/compat/single:also`)
  await pushLayout(join(dir, 'multi'), 'multi', `${distribution.host}/compat/deep/multi:multi`, { all: true })
  // Distribution is gone: Stevedore alone serves its directory.
  await distribution.stop()

  const stevedore = await startStevedore(t, { configPath: distribution.configPath })
  t.equal((stevedore.config.storage as { filesystem: { rootdirectory: string } }).filesystem.rootdirectory, distribution.root, 'the same storage')

  await pullToLayout(`${stevedore.host}/compat/single:v1`, join(dir, 'pulled-single'), 'v1')
  t.same(await compareLayoutBlobs(join(dir, 'single'), join(dir, 'pulled-single')), [], 'single-platform image byte-identical')

  await pullToLayout(`${stevedore.host}/compat/deep/multi:multi`, join(dir, 'pulled-multi'), 'multi', { all: true })
  t.same(await compareLayoutBlobs(join(dir, 'multi'), join(dir, 'pulled-multi')), [], 'every platform of the index byte-identical')

  const tags = (await (await fetch(`${stevedore.url}/v2/compat/single/tags/list`)).json()) as { tags: string[] }
  t.same(tags.tags, ['also', 'v1'], 'tags listed')
  const catalog = (await (await fetch(`${stevedore.url}/v2/_catalog`)).json()) as { repositories: string[] }
  t.same(catalog.repositories, ['compat/deep/multi', 'compat/single'], 'catalog lists both repositories')

  const manifest = await fetch(`${stevedore.url}/v2/compat/deep/multi/manifests/multi`, {
    method: 'HEAD',
    headers: { Accept: 'application/vnd.oci.image.index.v1+json' },
  })
  t.equal(manifest.headers.get('docker-content-digest'), multi.indexDigest, 'the tag resolves to the pushed index')
  t.equal(manifest.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json')
  const byDigest = await fetch(`${stevedore.url}/v2/compat/single/manifests/${single.manifestDigest}`, {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  })
  t.equal(byDigest.status, 200, 'the single-platform manifest is served by digest')
})
