// Docker Hub's pull rate limit, from a fake upstream that announces it the way
// Docker Hub does (`ratelimit-limit: 100;w=21600`, `ratelimit-remaining`,
// 429 with Retry-After), with an injected clock: cached tags are served stale,
// uncached ones get a clear 429, and Stevedore stops asking until allowed.
import t from 'tap'
import { blob, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { seededBytes } from '../helpers/files.js'
import { rawGet, type RawReply } from '../helpers/http.js'
import { OCI_CONFIG, OCI_MANIFEST } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'

const REPO = 'library/app'
const LIMIT = '100;w=21600'
const ACCEPT = { Accept: OCI_MANIFEST }

/** An image (config, one layer, manifest) served by `upstream` under `tags` and its digest; its layer. */
function serveImage(upstream: FakeUpstream, seed: string, tags: string[]): { digest: string; layer: string } {
  const config = blob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', seed })))
  const layer = blob(seededBytes(`rate-limit/${seed}`, 5000))
  for (const b of [config, layer]) upstream.blobs.set(b.digest, b)
  const payload = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.content.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer.digest, size: layer.content.length }],
    }),
  )
  const manifest = { payload, mediaType: OCI_MANIFEST, digest: sha256(payload) }
  for (const reference of [...tags, manifest.digest]) upstream.manifests.set(reference, manifest)
  return { digest: manifest.digest, layer: layer.digest }
}

/** The first OCI error code of a reply; undefined when its body is none. */
function errorCode(reply: RawReply): string | undefined {
  try {
    return (JSON.parse(reply.body.toString('utf8')) as { errors?: { code?: string }[] }).errors?.[0]?.code
  } catch {
    return undefined
  }
}

/** The upstream's manifest requests so far. */
const manifestRequests = (upstream: FakeUpstream): string[] => upstream.log.filter(line => line.includes('/manifests/'))

t.test('a 429 with Retry-After: stale tags served, nothing asked until it has passed', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const cached = serveImage(upstream, 'cached', ['cached'])
  const uncached = serveImage(upstream, 'uncached', ['uncached'])
  let clock = 1_000_000
  const proxy = await startInProcess(t, t.testdir(), { proxy: { remoteurl: upstream.url, tagttl: '1s' } }, { now: () => clock })
  const get = (path: string, headers: Record<string, string> = ACCEPT): Promise<RawReply> => rawGet(`${proxy.url}/v2/${REPO}${path}`, headers)

  const first = await get('/manifests/cached')
  t.equal(first.status, 200, 'cached while the upstream answers normally')
  t.equal(first.headers['docker-content-digest'], cached.digest)

  upstream.manifestOverride = {
    status: 429,
    headers: { 'ratelimit-limit': LIMIT, 'ratelimit-remaining': '0;w=21600', 'Retry-After': '30' },
  }
  clock += 2_000 // past the tag TTL
  const asked = manifestRequests(upstream).length
  const stale = await get('/manifests/cached')
  t.equal(stale.status, 200, 'the cached tag is still served')
  t.equal(stale.headers['docker-content-digest'], cached.digest)
  t.match(stale.headers.warning, /^299 - ".*TOOMANYREQUESTS/, 'stale, with a Warning')
  t.same(manifestRequests(upstream).slice(asked), ['HEAD /v2/library/app/manifests/cached'], 'after one question, answered 429')

  const refused = await get('/manifests/uncached')
  t.equal(refused.status, 429, 'an uncached tag: 429')
  t.equal(errorCode(refused), 'TOOMANYREQUESTS')
  t.equal(refused.headers['retry-after'], '30', 'with Retry-After')
  const head = await fetch(`${proxy.url}/v2/${REPO}/manifests/uncached`, { method: 'HEAD', headers: ACCEPT })
  t.equal(head.status, 429, 'a HEAD too')
  t.equal((await get(`/manifests/${uncached.digest}`)).status, 429, 'and an uncached digest')
  const again = await get('/manifests/cached')
  t.equal(again.status, 200, 'the cached tag, again: served')
  t.match(again.headers.warning, /TOOMANYREQUESTS/)
  t.equal((await get(`/manifests/${cached.digest}`)).status, 200, 'a cached digest: served')
  t.equal(manifestRequests(upstream).length, asked + 1, 'and the upstream was asked nothing more about manifests')

  const blobReply = await get(`/blobs/${uncached.layer}`, {})
  t.equal(blobReply.status, 200, 'blobs are not rate-limited: an uncached one is fetched')
  t.equal(blobReply.sha256, uncached.layer)
  t.equal(upstream.count('GET', `/blobs/${uncached.layer}`), 1)

  clock += 29_000
  const almost = await get('/manifests/uncached')
  t.equal(almost.status, 429, 'a second before the Retry-After has passed: still refused here')
  t.equal(almost.headers['retry-after'], '1', 'with what is left of it')
  t.equal(manifestRequests(upstream).length, asked + 1, 'without asking')

  upstream.manifestOverride = undefined
  clock += 1_000
  const after = await get('/manifests/uncached')
  t.equal(after.status, 200, 'once it has passed, the upstream is asked again')
  t.equal(after.headers['docker-content-digest'], uncached.digest)
  t.same(
    manifestRequests(upstream).slice(asked + 1),
    ['HEAD /v2/library/app/manifests/uncached', 'GET /v2/library/app/manifests/uncached'],
    'a HEAD and a GET',
  )
  const fresh = await get('/manifests/cached')
  t.equal(fresh.headers.warning, undefined, 'and the stale tag is refreshed without a warning')
})

t.test('ratelimit-remaining: 0 stops manifest GETs; HEADs and blobs still go out; a HEAD with pulls left lifts it', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const first = serveImage(upstream, 'first', ['first'])
  const second = serveImage(upstream, 'second', ['second'])
  let clock = 1_000_000
  const proxy = await startInProcess(t, t.testdir(), { proxy: { remoteurl: upstream.url, tagttl: '1s' } }, { now: () => clock })
  const get = (path: string, headers: Record<string, string> = ACCEPT): Promise<RawReply> => rawGet(`${proxy.url}/v2/${REPO}${path}`, headers)

  upstream.manifestHeaders = { GET: { 'ratelimit-limit': LIMIT, 'ratelimit-remaining': '0;w=21600' } }
  const last = await get('/manifests/first')
  t.equal(last.status, 200, 'the last pull of the window is served')
  t.equal(last.headers['docker-content-digest'], first.digest)

  const asked = manifestRequests(upstream).length
  const refused = await get('/manifests/second')
  t.equal(refused.status, 429, 'the next uncached manifest GET: 429')
  t.equal(errorCode(refused), 'TOOMANYREQUESTS')
  t.equal(refused.headers['retry-after'], '21600', 'Retry-After: the window')
  t.same(manifestRequests(upstream).slice(asked), ['HEAD /v2/library/app/manifests/second'], 'the free HEAD went out, the GET did not')

  clock += 2_000 // the tag of the last pull goes stale: its refresh is a HEAD, which goes out
  const refreshed = await fetch(`${proxy.url}/v2/${REPO}/manifests/first`, { method: 'HEAD', headers: ACCEPT })
  t.equal(refreshed.status, 200, 'a stale tag whose digest is stored: refreshed by HEAD')
  t.equal(refreshed.headers.get('warning'), null, 'without a warning: the upstream answered')
  t.same(manifestRequests(upstream).slice(asked + 1), ['HEAD /v2/library/app/manifests/first'])

  // The tag moves upstream while pulls are exhausted: the HEAD sees it, the GET waits, the old digest is served stale.
  const moved = serveImage(upstream, 'moved', ['first'])
  clock += 2_000
  const stale = await get('/manifests/first')
  t.equal(stale.status, 200, 'a tag that moved upstream meanwhile: the cached digest')
  t.equal(stale.headers['docker-content-digest'], first.digest)
  t.match(stale.headers.warning, /^299 - ".*TOOMANYREQUESTS/, 'stale, with a Warning')
  t.same(manifestRequests(upstream).slice(asked + 2), ['HEAD /v2/library/app/manifests/first'], 'the HEAD went out, the GET did not')

  const blobReply = await get(`/blobs/${second.layer}`, {})
  t.equal(blobReply.status, 200, 'an uncached blob GET still goes out')
  t.equal(blobReply.sha256, second.layer)
  t.equal(upstream.count('GET', `/blobs/${second.layer}`), 1)
  t.equal((await get('/manifests/second')).status, 429, 'manifest GETs still wait')

  upstream.manifestHeaders = {
    HEAD: { 'ratelimit-limit': LIMIT, 'ratelimit-remaining': '5;w=21600' },
    GET: { 'ratelimit-limit': LIMIT, 'ratelimit-remaining': '4;w=21600' },
  }
  const before = manifestRequests(upstream).length
  const lifted = await get('/manifests/second')
  t.equal(lifted.status, 200, 'a HEAD reporting ratelimit-remaining: 5 lifts it, with the clock unmoved')
  t.equal(lifted.headers['docker-content-digest'], second.digest)
  t.same(
    manifestRequests(upstream).slice(before),
    ['HEAD /v2/library/app/manifests/second', 'GET /v2/library/app/manifests/second'],
    'and the GET goes out',
  )
  clock += 2_000
  const caughtUp = await get('/manifests/first')
  t.equal(caughtUp.headers['docker-content-digest'], moved.digest, 'the moved tag is fetched now too')
  t.equal(caughtUp.headers.warning, undefined)
})
