// proxy.ttl counts from the last pull, and expiry never removes a blob that a
// still-cached manifest references. Injected clock; real Distribution upstream.
import { join } from 'node:path'
import { stat } from 'node:fs/promises'
import t from 'tap'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'

const HOUR = 3_600_000
const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)
const blobPath = (root: string, digest: string): string =>
  join(root, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')

t.test('expiry after the last pull', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const kept = await writeOciImage(join(dir, 'kept'), { tag: 'kept', seed: 'expiry-kept', layerSizes: [1111, 2222] })
  const gone = await writeOciImage(join(dir, 'gone'), { tag: 'gone', seed: 'expiry-gone', layerSizes: [3333] })
  await pushLayout(join(dir, 'kept'), 'kept', `${upstream.host}/team/kept:kept`)
  await pushLayout(join(dir, 'gone'), 'gone', `${upstream.host}/team/gone:gone`)

  let clock = Date.now()
  const cache = join(dir, 'cache')
  const proxy = await startInProcess(t, cache, { proxy: { remoteurl: upstream.url, ttl: '24h', tagttl: '1m' } }, { now: () => clock, sweep: false })
  const sweeper = proxy.app.sweeper
  if (sweeper === undefined) throw new Error('a ttl of 24h must give a sweeper')

  await pullToLayout(`${proxy.host}/team/kept:kept`, join(dir, 'p1'), 'kept')
  await pullToLayout(`${proxy.host}/team/gone:gone`, join(dir, 'p2'), 'gone')
  const early = await sweeper.sweep()
  t.same([early.manifestsExpired, early.blobLinksRemoved, early.blobsDeleted], [0, 0, 0], 'nothing expires early')

  // 20 hours later only the kept image's manifest is asked for (a HEAD, as a
  // client checking for updates does); its layers are not pulled again.
  clock += 20 * HOUR
  const head = await fetch(`${proxy.url}/v2/team/kept/manifests/kept`, { method: 'HEAD', headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(head.status, 200)

  clock += 5 * HOUR
  const report = await sweeper.sweep()
  t.equal(report.manifestsExpired, 1, 'the image not pulled for 25 hours expired')
  t.equal(report.tagsRemoved, 1, 'with its tag')
  t.equal(report.blobsDeleted, gone.blobs.length + 1, 'its config, layer and manifest blobs were deleted')
  for (const blob of gone.blobs) t.notOk(await exists(blobPath(cache, blob.digest)), `${blob.digest} deleted`)
  for (const blob of kept.blobs) {
    t.ok(await exists(blobPath(cache, blob.digest)), `${blob.digest} kept: a cached manifest references it`)
  }
  t.ok(await exists(blobPath(cache, kept.manifestDigest)), 'the pulled manifest kept')

  const again = await sweeper.sweep()
  t.same([again.manifestsExpired, again.blobsDeleted], [0, 0], 'a second sweep finds nothing more')

  await pullToLayout(`${proxy.host}/team/gone:gone`, join(dir, 'p3'), 'gone')
  t.same(await compareLayoutBlobs(join(dir, 'gone'), join(dir, 'p3')), [], 'expired content is fetched again on the next pull')
  await pullToLayout(`${proxy.host}/team/kept:kept`, join(dir, 'p4'), 'kept')
  t.same(await compareLayoutBlobs(join(dir, 'kept'), join(dir, 'p4')), [], 'kept content still served')
})
