// Hosted repositories beside pull-through ones: a Stevedore proxying a real
// Distribution with `hosted: ["site/**", "ci/*"]` takes pushes to site/… and serves
// them without ever asking the upstream about those names (the upstream holds
// other content under the same names, which must not leak through); a push to
// a proxied name is 405 UNSUPPORTED; proxied images still pull beside hosted
// ones; and neither proxy.ttl's expiry nor a storage.quota eviction pass
// removes hosted content.
import { join } from 'node:path'
import t from 'tap'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { fromStevedore, settle } from '../helpers/access-log.js'
import { startDistribution } from '../helpers/distribution.js'
import { distributionPaths } from '../helpers/distribution-paths.js'
import { seededBytes } from '../helpers/files.js'
import { OCI_MANIFEST, writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { startRestartable } from '../helpers/restartable.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { call, describe, exists, startUpload } from '../helpers/uploads.js'

const HOUR = 3_600_000

t.test('hosted site/** beside a proxied upstream', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const base = await writeOciImage(join(dir, 'base'), { tag: 'v1', seed: 'push-hosted/base', layerSizes: [1800, 50_000] })
  const decoy = await writeOciImage(join(dir, 'decoy'), { tag: 'v1', seed: 'push-hosted/decoy', layerSizes: [1900] })
  const app = await writeOciImage(join(dir, 'app'), { tag: 'v1', seed: 'push-hosted/app', layerSizes: [2100, 70_000] })
  await pushLayout(join(dir, 'base'), 'v1', `${upstream.host}/library/base:v1`)
  // The upstream has content under hosted names too: none of it may be served.
  await pushLayout(join(dir, 'decoy'), 'v1', `${upstream.host}/site/app:upstream`)
  await pushLayout(join(dir, 'decoy'), 'v1', `${upstream.host}/site/upstream-only:v1`)

  let clock = Date.now()
  const root = join(dir, 'cache')
  const stevedore = await startInProcess(
    t,
    root,
    { proxy: { remoteurl: upstream.url, ttl: '24h', tagttl: '1m' }, hosted: ['site/**', 'ci/*'] },
    { now: () => clock, sweep: false },
  )
  const { url, host } = stevedore
  const hostedRequests = async (): Promise<string[]> =>
    (await settle(upstream)).map(r => `${r.method} ${r.path}`).filter(line => /^\S+ \/v2\/site\//.test(line))

  await t.test('a push to a hosted name is stored and served', async t => {
    await pushLayout(join(dir, 'app'), 'v1', `${host}/site/app:v1`)
    const head = await call(`${url}/v2/site/app/manifests/v1`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } })
    t.equal(head.status, 200, `the pushed tag: ${describe(head)}`)
    t.equal(head.headers.get('docker-content-digest'), app.manifestDigest, 'the pushed manifest')
    await pullToLayout(`${host}/site/app:v1`, join(dir, 'pulled-app'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'app'), join(dir, 'pulled-app')), [], 'pulled back byte-identical')
    t.ok(await exists(distributionPaths.manifestRevisionLink(root, 'site/app', app.manifestDigest)), 'stored in the Distribution layout')

    const tags = await call(`${url}/v2/site/app/tags/list`)
    t.same((JSON.parse(tags.body.toString('utf8')) as { tags: string[] }).tags, ['v1'], "tags/list: the pushed tag only, not the upstream's")
    const upstreamTag = await call(`${url}/v2/site/app/manifests/upstream`, { headers: { Accept: OCI_MANIFEST } })
    t.equal(upstreamTag.status, 404, "the upstream's tag under the hosted name is not served")
    t.equal(upstreamTag.code, 'MANIFEST_UNKNOWN')
    const upstreamOnly = await call(`${url}/v2/site/upstream-only/manifests/v1`, { headers: { Accept: OCI_MANIFEST } })
    t.equal(upstreamOnly.status, 404, 'a hosted name only the upstream has is unknown')
    t.match(upstreamOnly.code, /^(MANIFEST_UNKNOWN|NAME_UNKNOWN)$/)
    const decoyBlob = await call(`${url}/v2/site/upstream-only/blobs/${decoy.blobs[0]?.digest}`)
    t.equal(decoyBlob.status, 404, "nor is a blob of the upstream's")
    t.equal(decoyBlob.code, 'BLOB_UNKNOWN')
    t.same(await hostedRequests(), [], 'the upstream was never asked about a site/ name')
  })

  await t.test('a push to a proxied name is 405 UNSUPPORTED', async t => {
    const upload = await startUpload(url, 'library/x')
    t.equal(upload.status, 405, `POST of an upload: ${describe(upload)}`)
    t.equal(upload.code, 'UNSUPPORTED')
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: base.manifests[0]?.config, layers: [] }))
    const put = await call(`${url}/v2/library/x/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'Content-Type': OCI_MANIFEST } })
    t.equal(put.status, 405, `PUT of a manifest: ${describe(put)}`)
    t.equal(put.code, 'UNSUPPORTED')
    const blob = await call(`${url}/v2/library/base/blobs/uploads/?digest=sha256:${'0'.repeat(64)}`, { method: 'POST', body: seededBytes('push-hosted/x', 10) })
    t.equal(blob.status, 405, `a monolithic POST to a proxied name that exists upstream: ${describe(blob)}`)
    t.equal(blob.code, 'UNSUPPORTED')
    await t.rejects(pushLayout(join(dir, 'app'), 'v1', `${host}/library/x:v1`), 'skopeo cannot push there')
    t.notOk(await exists(join(distributionPaths.repository(root, 'library/x'), '_manifests')), 'nothing stored under library/x')
  })

  await t.test("patterns: '*' stays within one component, '**' crosses them", async t => {
    for (const [repo, status] of [['ci/cache', 202], ['ci/cache/deep', 405], ['site/a/b/c', 202], ['ci', 405], ['other/site/app', 405]] as const) {
      const res = await startUpload(url, repo)
      t.equal(res.status, status, `${repo}: ${describe(res)}`)
      if (status === 405) t.equal(res.code, 'UNSUPPORTED')
    }
    t.same(await hostedRequests(), [], 'no site/ request upstream')
  })

  await t.test('proxied names still pull through, beside hosted ones', async t => {
    const before = fromStevedore(upstream).length
    await pullToLayout(`${host}/library/base:v1`, join(dir, 'pulled-base'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'base'), join(dir, 'pulled-base')), [], 'the proxied image byte-identical')
    const fetched = (await settle(upstream)).slice(before)
    t.ok(fetched.some(r => r.path.startsWith('/v2/library/base/')), 'fetched from the upstream')
    await pullToLayout(`${host}/site/app:v1`, join(dir, 'pulled-app-again'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'app'), join(dir, 'pulled-app-again')), [], 'and the hosted image beside it')
    t.same(await hostedRequests(), [], 'still nothing about site/ upstream')
  })

  await t.test('expiry removes proxied content, never hosted content', async t => {
    const sweeper = stevedore.app.sweeper
    if (sweeper === undefined) throw new Error('proxy.ttl 24h must give a sweeper')
    // Two sweeps a day apart, each past the ttl: content the sweeper first sees
    // has its clock started by the first and would expire at the second.
    clock += 25 * HOUR
    const first = await sweeper.sweep()
    clock += 25 * HOUR
    const second = await sweeper.sweep()
    t.ok(first.manifestsExpired + second.manifestsExpired >= 1, 'the proxied image expired')
    const proxied = await call(`${url}/v2/library/base/manifests/${base.manifestDigest}`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } })
    t.equal(proxied.status, 200, 'and would be fetched again on demand')
    t.notOk(await exists(distributionPaths.blobData(root, (base.manifests[0]?.layers[1] ?? base.blobs[0])?.digest ?? '')), "the proxied image's layer was deleted")

    for (const digest of [app.manifestDigest, ...app.blobs.map(b => b.digest)]) {
      t.ok(await exists(distributionPaths.blobData(root, digest)), `hosted ${digest.slice(0, 19)} kept`)
    }
    t.ok(await exists(distributionPaths.tagCurrentLink(root, 'site/app', 'v1')), 'the hosted tag kept')
    await pullToLayout(`${host}/site/app:v1`, join(dir, 'after-expiry'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'app'), join(dir, 'after-expiry')), [], 'the hosted image still pulls, byte-identical')
    t.same(await hostedRequests(), [], 'without asking the upstream')
  })
})

t.test('a quota eviction pass takes proxied images, never hosted ones', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const base = await writeOciImage(join(dir, 'base'), { tag: 'v1', seed: 'push-hosted/quota-base', layerSizes: [1700, 40_000] })
  const app = await writeOciImage(join(dir, 'app'), { tag: 'v1', seed: 'push-hosted/quota-app', layerSizes: [2200, 60_000] })
  await pushLayout(join(dir, 'base'), 'v1', `${upstream.host}/library/base:v1`)
  const root = join(dir, 'cache')
  const config = {
    proxy: { remoteurl: upstream.url, tagttl: '1h' },
    hosted: ['site/**'],
    // Far above what the test stores: passes run only when the test asks for one.
    storage: { filesystem: { rootdirectory: root }, quota: { maxsize: 1024 * 1024 * 1024 } },
  }
  const options = { sweep: false, quota: { lease: { settleMs: 20 }, flushIntervalMs: 200 } }
  const stevedore = await startRestartable(t, root, config, options)
  const quota = stevedore.app.quota
  if (quota === undefined) throw new Error('storage.quota must give a keeper')
  await quota.ready
  await pushLayout(join(dir, 'app'), 'v1', `${stevedore.host}/site/app:v1`)
  await pullToLayout(`${stevedore.host}/library/base:v1`, join(dir, 'pulled-base'), 'v1')
  await pullToLayout(`${stevedore.host}/site/app:v1`, join(dir, 'pulled-app'), 'v1')
  await quota.idle()

  // Down to nothing: every image the quota may take goes.
  const report = await quota.evict(0)
  t.equal(report?.imagesEvicted, 1, `one image evicted: ${JSON.stringify(report)}`)
  t.notOk(await exists(distributionPaths.manifestRevisionLink(root, 'library/base', base.manifestDigest)), 'the proxied one')
  for (const digest of [app.manifestDigest, ...app.blobs.map(b => b.digest)]) {
    t.ok(await exists(distributionPaths.blobData(root, digest)), `hosted ${digest.slice(0, 19)} kept`)
  }
  t.ok(await exists(distributionPaths.tagCurrentLink(root, 'site/app', 'v1')), 'the hosted tag kept')
  await pullToLayout(`${stevedore.host}/site/app:v1`, join(dir, 'after-eviction'), 'v1')
  t.same(await compareLayoutBlobs(join(dir, 'app'), join(dir, 'after-eviction')), [], 'the hosted image still pulls, byte-identical')

  // After a restart the keeper counts storage by a walk, which gives every stored manifest a pull time.
  await stevedore.close()
  const again = await startInProcess(t, root, config, options)
  const keeper = again.app.quota
  if (keeper === undefined) throw new Error('storage.quota must give a keeper')
  await keeper.ready
  await pullToLayout(`${again.host}/library/base:v1`, join(dir, 'pulled-base-again'), 'v1')
  await keeper.idle()
  const second = await keeper.evict(0)
  t.equal(second?.imagesEvicted, 1, `after the restart, again only the proxied image: ${JSON.stringify(second)}`)
  for (const digest of [app.manifestDigest, ...app.blobs.map(b => b.digest)]) {
    t.ok(await exists(distributionPaths.blobData(root, digest)), `hosted ${digest.slice(0, 19)} still kept`)
  }
  await pullToLayout(`${again.host}/site/app:v1`, join(dir, 'after-restart'), 'v1')
  t.same(await compareLayoutBlobs(join(dir, 'app'), join(dir, 'after-restart')), [], 'and pulls')
})
