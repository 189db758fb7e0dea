// storage.quota against a real Distribution upstream, with skopeo: a quota
// that holds three of four images. After pulling three and pulling the first
// again, the fourth evicts the least recently pulled image that is not pinned
// (the second is pinned), keeps the layer that image shared with a kept one,
// keeps blob bytes under maxsize, and every image still cached pulls
// byte-identical with the upstream stopped. Pulls running for as long as a
// pass runs all succeed.
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startDistribution } from '../helpers/distribution.js'
import { listFiles } from '../helpers/files.js'
import { type ImageDescription, writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'

const V2 = 'docker/registry/v2'
const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)
const blobPath = (root: string, digest: string): string => join(root, V2, 'blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')

async function blobBytes(root: string): Promise<number> {
  let total = 0
  for (const file of await listFiles(join(root, V2, 'blobs'))) total += (await stat(join(root, V2, 'blobs', file)).catch(() => ({ size: 0 }))).size
  return total
}

/** Every blob of an image as the registry stores it: config, layers and the manifest. */
const digestsOf = (image: ImageDescription): string[] => [image.manifestDigest, ...image.blobs.map(b => b.digest)]
const bytesOf = (image: ImageDescription, except: ReadonlySet<string> = new Set()): number =>
  (image.manifests[0]?.size ?? 0) + image.blobs.filter(b => !except.has(b.digest)).reduce((n, b) => n + b.size, 0)

t.test('a bounded cache evicts the least recently pulled unpinned image, and serves the rest', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  // one and three share their first layer (same seed, same size); three has a large layer of its own.
  const one = await writeOciImage(join(dir, 'one'), { tag: 'v1', seed: 'quota-shared', layerSizes: [150_000, 100_000] })
  const two = await writeOciImage(join(dir, 'two'), { tag: 'v1', seed: 'quota-two', layerSizes: [150_000, 100_000] })
  const three = await writeOciImage(join(dir, 'three'), { tag: 'v1', seed: 'quota-shared', layerSizes: [150_000, 300_000] })
  const four = await writeOciImage(join(dir, 'four'), { tag: 'v1', seed: 'quota-four', layerSizes: [150_000, 100_000] })
  const shared = one.blobs.find(b => three.blobs.some(c => c.digest === b.digest))?.digest
  t.ok(shared, 'one and three share a layer')
  for (const [name, layout] of [['one', one], ['two', two], ['three', three], ['four', four]] as const) {
    await pushLayout(join(dir, name), layout.tag, `${upstream.host}/team/${name}:v1`)
  }

  const sharedSet = new Set([shared as string])
  const firstThree = bytesOf(one) + bytesOf(two) + bytesOf(three, sharedSet)
  const all = firstThree + bytesOf(four)
  const maxSize = firstThree + Math.floor(bytesOf(four) / 2)
  t.ok(all - bytesOf(three, sharedSet) <= Math.floor(maxSize * 0.9), 'evicting three is enough to get under lowwater')
  t.ok(firstThree + bytesOf(four) > maxSize && firstThree < maxSize, 'the quota holds three of the images, not four')

  const cache = join(dir, 'cache')
  const proxy = await startInProcess(
    t,
    cache,
    {
      proxy: { remoteurl: upstream.url, tagttl: '1h' },
      storage: { filesystem: { rootdirectory: cache }, quota: { maxsize: maxSize, lowwater: '90%', pin: ['team/two:v*'] } },
    },
    { sweep: false, quota: { lease: { settleMs: 20 }, flushIntervalMs: 500 } },
  )
  const quota = proxy.app.quota
  if (quota === undefined) throw new Error('storage.quota must give a keeper')
  await quota.ready

  for (const name of ['one', 'two', 'three']) await pullToLayout(`${proxy.host}/team/${name}:v1`, join(dir, `p-${name}`), 'v1')
  // A fill is committed (and counted) just after its client has the last byte.
  const settle = Date.now() + 10_000
  while ((quota.total !== firstThree || (await blobBytes(cache)) !== firstThree) && Date.now() < settle) await new Promise(resolve => setTimeout(resolve, 20))
  await quota.idle()
  t.equal(quota.lastReport, undefined, 'three images fit: nothing evicted')
  t.equal(await blobBytes(cache), firstThree, 'what the three images hold is on disk')
  t.equal(quota.total, firstThree, 'and is what the keeper counts')
  // The first again: now the second (pinned) and then the third are the least recently pulled.
  await pullToLayout(`${proxy.host}/team/one:v1`, join(dir, 'p-one-again'), 'v1')

  // The fourth, with two pulls of cached images running at the same time.
  await Promise.all(
    [['four', 'p-four'], ['one', 'p-one-during'], ['two', 'p-two-during']].map(([name, out]) =>
      pullToLayout(`${proxy.host}/team/${name}:v1`, join(dir, out as string), 'v1'),
    ),
  )
  // Room was made before the fourth's blobs downloaded: under maxsize the moment the pull is done, not only after a pass.
  const rightAfter = await blobBytes(cache)
  t.ok(rightAfter <= maxSize, `blob bytes on disk right after the pull (${rightAfter}) are under maxsize (${maxSize})`)
  const expected = all - bytesOf(three, sharedSet)
  const deadline = Date.now() + 20_000
  while ((quota.lastReport === undefined || quota.total !== expected || (await blobBytes(cache)) !== expected) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  await quota.idle()
  const report = quota.lastReport
  t.ok(report, 'an eviction pass ran')
  t.equal(report?.imagesEvicted, 1, 'one image evicted')
  t.same(await compareLayoutBlobs(join(dir, 'four'), join(dir, 'p-four')), [], 'the fourth pulled whole')
  t.same(await compareLayoutBlobs(join(dir, 'one'), join(dir, 'p-one-during')), [], 'pulls of cached images beside it succeeded')
  t.same(await compareLayoutBlobs(join(dir, 'two'), join(dir, 'p-two-during')), [])

  const onDisk = await blobBytes(cache)
  t.ok(onDisk <= maxSize, `blob bytes on disk (${onDisk}) stay under maxsize (${maxSize})`)
  t.equal(onDisk, expected, 'all but the evicted image\'s own blobs')
  t.equal(quota.total, onDisk, 'and are what the keeper counts')
  for (const digest of digestsOf(three).filter(d => d !== shared)) t.notOk(await exists(blobPath(cache, digest)), `three's ${digest.slice(7, 19)} is gone`)
  t.ok(await exists(blobPath(cache, shared as string)), 'the layer three shared with one stays')
  const threeRepo = join(cache, V2, 'repositories/team/three')
  t.same(await readdir(join(threeRepo, '_manifests/revisions/sha256')).catch(() => []), [], 'three\'s revision is gone')
  t.same(await readdir(join(threeRepo, '_manifests/tags')).catch(() => []), [], 'with its tag')
  t.same(await readdir(join(threeRepo, '_layers/sha256')).catch(() => []), [], 'and its blob links')
  for (const image of [one, two, four]) for (const digest of digestsOf(image)) t.ok(await exists(blobPath(cache, digest)))

  // Pulls running for as long as a pass runs: each one whole, whether it was served from
  // the cache, skipped as in use or fetched again after its image went.
  const passDone = { at: 0 }
  const loopStarted = Date.now()
  const pass = quota.evict(quota.total - 1).finally(() => (passDone.at = Date.now()))
  let round = 0
  do {
    round += 1
    for (const name of ['one', 'four']) {
      const out = join(dir, `loop-${name}-${round}`)
      await pullToLayout(`${proxy.host}/team/${name}:v1`, out, 'v1')
      t.same(await compareLayoutBlobs(join(dir, name), out), [], `${name} pulled whole during the pass (round ${round})`)
    }
  } while (passDone.at === 0)
  const during = await pass
  t.ok(during !== undefined && during.startedAt >= loopStarted, 'the pass ran after the pulls began, and they went on until it was over')
  t.ok((during?.imagesEvicted ?? 0) + (during?.skippedInUse ?? 0) >= 1, 'it evicted an image, or left one being read')
  for (const name of ['one', 'four']) await pullToLayout(`${proxy.host}/team/${name}:v1`, join(dir, `again-${name}`), 'v1')
  await quota.idle()

  // Served from the cache alone.
  await upstream.stop()
  for (const [name, layout] of [['one', 'one'], ['two', 'two'], ['four', 'four']]) {
    await pullToLayout(`${proxy.host}/team/${name}:v1`, join(dir, `offline-${name}`), 'v1')
    t.same(await compareLayoutBlobs(join(dir, layout as string), join(dir, `offline-${name}`)), [], `${name} pulls byte-identical with the upstream stopped`)
  }
  await t.rejects(pullToLayout(`${proxy.host}/team/three:v1`, join(dir, 'offline-three'), 'v1', { timeoutMs: 30_000 }), 'the evicted image is not served from the cache')
})
