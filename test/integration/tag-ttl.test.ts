// Tag freshness, with an injected clock: within the tag TTL a moved upstream
// tag is not seen (and not asked for); after it, the new digest is served;
// with the upstream down, the cached tag is served stale with a Warning.
import { join } from 'node:path'
import t from 'tap'
import { settle } from '../helpers/access-log.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pushLayout } from '../helpers/skopeo.js'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'

t.test('tag TTL, moved tags and stale tags', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const first = await writeOciImage(join(dir, 'first'), { tag: 'v1', seed: 'ttl-first', layerSizes: [1000] })
  const second = await writeOciImage(join(dir, 'second'), { tag: 'v1', seed: 'ttl-second', layerSizes: [2000] })
  await pushLayout(join(dir, 'first'), 'v1', `${upstream.host}/team/moving:v1`)

  let clock = 1_000_000
  const proxy = await startInProcess(t, join(dir, 'cache'), { proxy: { remoteurl: upstream.url, tagttl: '1m' } }, { now: () => clock })
  const head = async (): Promise<Response> =>
    fetch(`${proxy.url}/v2/team/moving/manifests/v1`, { method: 'HEAD', headers: { Accept: ACCEPT } })

  t.equal((await head()).headers.get('docker-content-digest'), first.manifestDigest, 'first pull caches v1')
  const afterFirst = (await settle(upstream)).length

  await pushLayout(join(dir, 'second'), 'v1', `${upstream.host}/team/moving:v1`)
  clock += 30_000
  t.equal((await head()).headers.get('docker-content-digest'), first.manifestDigest, 'within the TTL: the cached digest')
  t.equal((await settle(upstream)).length, afterFirst, 'and the upstream was not asked')

  clock += 31_000
  const moved = await head()
  t.equal(moved.headers.get('docker-content-digest'), second.manifestDigest, 'after the TTL: the new digest')
  const refresh = (await settle(upstream)).slice(afterFirst)
  t.same(
    refresh.map(r => `${r.method} ${r.path}`),
    ['HEAD /v2/team/moving/manifests/v1', `GET /v2/team/moving/manifests/v1`],
    'a HEAD to learn the digest, a GET for the new manifest',
  )

  // Back to a digest already stored: only the tag link moves, no GET.
  await pushLayout(join(dir, 'first'), 'v1', `${upstream.host}/team/moving:v1`)
  clock += 61_000
  const back = await head()
  t.equal(back.headers.get('docker-content-digest'), first.manifestDigest)
  const again = (await settle(upstream)).slice(afterFirst + refresh.length)
  t.same(again.map(r => r.method), ['HEAD'], 'a known digest costs one HEAD')

  await upstream.stop()
  clock += 61_000
  const stale = await fetch(`${proxy.url}/v2/team/moving/manifests/v1`, { headers: { Accept: ACCEPT } })
  t.equal(stale.status, 200, 'the upstream is down: the stale tag is served')
  t.equal(stale.headers.get('docker-content-digest'), first.manifestDigest)
  t.match(stale.headers.get('warning') ?? '', /^299 - ".*unavailable/, 'with a Warning: 299 header')
  const byDigest = await fetch(`${proxy.url}/v2/team/moving/manifests/${second.manifestDigest}`, { headers: { Accept: ACCEPT } })
  t.equal(byDigest.status, 200, 'digests stay servable from cache')
  t.equal(byDigest.headers.get('warning'), null, 'without a warning: digests are immutable')
})
