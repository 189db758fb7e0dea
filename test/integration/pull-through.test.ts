// Pull-through against a real Distribution upstream, with skopeo as the client:
// byte-identical images, each blob crossing the upstream once, warm pulls that
// ask the upstream nothing, and a cache directory Distribution itself can serve.
import { join } from 'node:path'
import t from 'tap'
import { settle } from '../helpers/access-log.js'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage, writeOciIndex } from '../helpers/images.js'
import { rawGet } from '../helpers/http.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { startStevedore } from '../helpers/stevedore.js'

t.test('skopeo pulls through Stevedore; warm pulls stay local', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  await writeOciImage(join(dir, 'single'), { tag: 'v1', seed: 'pt-single', layerSizes: [1200, 250_000, 40_000] })
  const multi = await writeOciIndex(join(dir, 'multi'), {
    tag: 'multi',
    seed: 'pt-index',
    platforms: [
      { os: 'linux', architecture: 'amd64', layerSizes: [5000, 60_000] },
      { os: 'linux', architecture: 'arm64', variant: 'v8', layerSizes: [9000] },
    ],
  })
  await pushLayout(join(dir, 'single'), 'v1', `${upstream.host}/team/single:v1`)
  await pushLayout(join(dir, 'multi'), 'multi', `${upstream.host}/team/multi:multi`, { all: true })

  const cache = join(dir, 'cache')
  const stevedore = await startStevedore(t, {
    config: { storage: { filesystem: { rootdirectory: cache } }, proxy: { remoteurl: upstream.url, tagttl: '5m' } },
  })

  await pullToLayout(`${stevedore.host}/team/single:v1`, join(dir, 'cold-single'), 'v1')
  t.same(await compareLayoutBlobs(join(dir, 'single'), join(dir, 'cold-single')), [], 'cold pull byte-identical')
  await pullToLayout(`${stevedore.host}/team/multi:multi`, join(dir, 'cold-multi'), 'multi', { all: true })
  t.same(await compareLayoutBlobs(join(dir, 'multi'), join(dir, 'cold-multi')), [], 'cold pull of every platform byte-identical')

  const cold = await settle(upstream)
  const blobGets = cold.filter(r => r.method === 'GET' && r.path.includes('/blobs/')).map(r => r.path)
  t.equal(new Set(blobGets).size, blobGets.length, 'every blob crossed the upstream once')
  t.ok(blobGets.length > 0, `the cold pulls fetched ${blobGets.length} blobs`)

  await pullToLayout(`${stevedore.host}/team/single:v1`, join(dir, 'warm-single'), 'v1')
  await pullToLayout(`${stevedore.host}/team/multi:multi`, join(dir, 'warm-multi'), 'multi', { all: true })
  t.same(await compareLayoutBlobs(join(dir, 'single'), join(dir, 'warm-single')), [], 'warm pull byte-identical')
  t.same(await compareLayoutBlobs(join(dir, 'multi'), join(dir, 'warm-multi')), [], 'warm pull of every platform byte-identical')
  const warm = (await settle(upstream)).slice(cold.length)
  t.same(
    warm.filter(r => !(r.method === 'HEAD' && /\/manifests\/[^:]+$/.test(r.path))),
    [],
    'the warm pulls asked the upstream for nothing but (at most) a tag HEAD',
  )

  t.test('the cache directory is a Distribution storage tree', async t => {
    await stevedore.stop()
    const plain = await startDistribution(t, { root: cache })
    await pullToLayout(`${plain.host}/team/multi:multi`, join(dir, 'from-distribution'), 'multi', { all: true })
    t.same(await compareLayoutBlobs(join(dir, 'multi'), join(dir, 'from-distribution')), [], 'Distribution serves what Stevedore cached')
    const head = await fetch(`${plain.url}/v2/team/multi/manifests/multi`, { method: 'HEAD', headers: { Accept: multi.index?.mediaType ?? '' } })
    t.equal(head.headers.get('docker-content-digest'), multi.indexDigest, 'with the tag Stevedore recorded')
  })
})

t.test('the cache keeps serving when the upstream is gone', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'pt-offline', layerSizes: [3000, 80_000] })
  await pushLayout(join(dir, 'image'), 'v1', `${upstream.host}/team/offline:v1`)
  const stevedore = await startStevedore(t, { config: { proxy: { remoteurl: upstream.url } } })
  await pullToLayout(`${stevedore.host}/team/offline:v1`, join(dir, 'first'), 'v1')
  await upstream.stop()
  await pullToLayout(`${stevedore.host}/team/offline:v1`, join(dir, 'second'), 'v1')
  t.same(await compareLayoutBlobs(join(dir, 'image'), join(dir, 'second')), [], 'the same pull succeeds from cache alone')
  const missing = await fetch(`${stevedore.url}/v2/team/offline/manifests/never-pulled`)
  t.equal(missing.status, 503, 'content never cached: 503')
  t.equal(((await missing.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UNAVAILABLE')
})

t.test('16 concurrent cold GETs of one 50 MiB blob share one upstream fetch', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const image = await writeOciImage(join(dir, 'big'), { tag: 'big', seed: 'pt-big', layerSizes: [50 * 1024 * 1024] })
  await pushLayout(join(dir, 'big'), 'big', `${upstream.host}/team/big:big`)
  // skopeo gzips uncompressed layers on push: ask the upstream what it stores.
  const pushed = (await (
    await fetch(`${upstream.url}/v2/team/big/manifests/big`, { headers: { Accept: image.manifests[0]?.mediaType ?? '' } })
  ).json()) as { layers: { digest: string; size: number }[] }
  const layer = pushed.layers[0]
  if (layer === undefined || layer.size < 50 * 1024 * 1024) throw new Error('no 50 MiB layer upstream')
  const stevedore = await startStevedore(t, { config: { proxy: { remoteurl: upstream.url } } })
  const url = `${stevedore.url}/v2/team/big/blobs/${layer.digest}`
  const replies = await Promise.all(Array.from({ length: 16 }, () => rawGet(url, {}, false)))
  t.same(
    replies.map(r => [r.status, r.complete, r.sha256]),
    replies.map(() => [200, true, layer.digest]),
    'all 16 clients got every correct byte',
  )
  const gets = (await settle(upstream)).filter(r => r.method === 'GET' && r.path.endsWith(`/blobs/${layer.digest}`))
  t.equal(gets.length, 1, 'exactly one upstream blob GET')
})
