// The tags list and the catalog in proxy mode, against a fake upstream that
// speaks the protocol: the upstream's tags merged with the cached ones, the
// cached ones alone while the upstream is down or failing, and the errors a
// client sees when nothing is cached or the upstream answers something odd.
import t, { type Test } from 'tap'
import { sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { startInProcess, type InProcess } from '../helpers/inprocess.js'

const REPO = 'team/app'
const OTHER = 'team/other'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

interface ErrorBody {
  errors: { code: string; message: string }[]
}

const errorCode = async (reply: Response): Promise<string | undefined> => ((await reply.json()) as ErrorBody).errors[0]?.code

/** A small OCI manifest, different for every seed, served by the upstream under `tag` and its digest. */
function publish(upstream: FakeUpstream, tag: string): string {
  const payload = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(`config of ${tag}`), size: 2 },
      layers: [],
      annotations: { tag },
    }),
  )
  const entry = { payload, mediaType: OCI_MANIFEST, digest: sha256(payload) }
  upstream.manifests.set(tag, entry)
  upstream.manifests.set(entry.digest, entry)
  return entry.digest
}

async function setup(t: Test): Promise<{ upstream: FakeUpstream; proxy: InProcess }> {
  const upstream = await startFakeUpstream(REPO, { alsoServe: [OTHER, 'team/never-pulled'] })
  t.teardown(() => upstream.close())
  const proxy = await startInProcess(t, t.testdir(), {
    proxy: { remoteurl: upstream.url, timeouts: { connect: '2s', headers: '2s', body: '2s' } },
  })
  return { upstream, proxy }
}

/** Pulls `repo:tag` through the proxy, which caches it and records the tag. */
async function pull(t: Test, proxy: InProcess, repo: string, tag: string): Promise<void> {
  const reply = await fetch(`${proxy.url}/v2/${repo}/manifests/${tag}`, { headers: { Accept: OCI_MANIFEST } })
  t.equal(reply.status, 200, `${repo}:${tag} pulled through`)
  await reply.arrayBuffer()
}

const tagsList = (proxy: InProcess, repo: string, query = ''): Promise<Response> => fetch(`${proxy.url}/v2/${repo}/tags/list${query}`)

t.test('upstream tags and cached tags are merged, sorted, each once', async t => {
  const { upstream, proxy } = await setup(t)
  for (const tag of ['a', 'z']) publish(upstream, tag)
  await pull(t, proxy, REPO, 'a')
  await pull(t, proxy, REPO, 'z')
  // The upstream lists 'a' too (a duplicate) and no longer lists 'z' (only cached here).
  upstream.tags = ['c', 'a', 'b']

  const reply = await tagsList(proxy, REPO)
  t.equal(reply.status, 200)
  t.equal(reply.headers.get('content-type'), 'application/json; charset=utf-8')
  t.same(await reply.json(), { name: REPO, tags: ['a', 'b', 'c', 'z'] }, 'one sorted list, no duplicates')
  t.equal(upstream.count('GET', `/v2/${REPO}/tags/list`), 1, 'the upstream was asked for its tags')

  const page = await tagsList(proxy, REPO, '?n=2')
  t.same(((await page.json()) as { tags: string[] }).tags, ['a', 'b'], 'the merged list paginates')
  t.equal(page.headers.get('link'), `</v2/${REPO}/tags/list?n=2&last=b>; rel="next"`)
  const rest = await tagsList(proxy, REPO, '?n=2&last=b')
  t.same(((await rest.json()) as { tags: string[] }).tags, ['c', 'z'])

  upstream.tags = []
  t.same(((await (await tagsList(proxy, REPO)).json()) as { tags: string[] }).tags, ['a', 'z'], 'an empty upstream list leaves the cached tags')
})

t.test('upstream down: the cached tags; nothing cached: 503 UNAVAILABLE', async t => {
  const { upstream, proxy } = await setup(t)
  for (const tag of ['v2', 'v1']) publish(upstream, tag)
  await pull(t, proxy, REPO, 'v2')
  await pull(t, proxy, REPO, 'v1')
  upstream.tags = ['v1', 'v2', 'v3']
  t.same(((await (await tagsList(proxy, REPO)).json()) as { tags: string[] }).tags, ['v1', 'v2', 'v3'], 'while online, the upstream list')

  await upstream.close()
  const cached = await tagsList(proxy, REPO)
  t.equal(cached.status, 200, 'a closed upstream does not fail the list')
  t.same(await cached.json(), { name: REPO, tags: ['v1', 'v2'] }, 'the tags cached here, sorted')

  const none = await tagsList(proxy, OTHER)
  t.equal(none.status, 503, 'nothing cached: the outage is the answer')
  t.equal(await errorCode(none), 'UNAVAILABLE')
})

t.test('upstream 5xx: the cached tags; nothing cached: 502 UPSTREAM_ERROR', async t => {
  const { upstream, proxy } = await setup(t)
  publish(upstream, 'stable')
  await pull(t, proxy, REPO, 'stable')
  upstream.answers.tags = {
    status: 503,
    headers: { 'Content-Type': 'application/json' },
    body: '{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}',
  }

  const cached = await tagsList(proxy, REPO)
  t.equal(cached.status, 200)
  t.same(await cached.json(), { name: REPO, tags: ['stable'] }, 'the cached tag, not the 503')
  t.ok(upstream.count('GET', `/v2/${REPO}/tags/list`) >= 1, 'after asking the upstream')

  const none = await tagsList(proxy, OTHER)
  t.equal(none.status, 502, 'nothing cached: a bad gateway')
  t.equal(await errorCode(none), 'UPSTREAM_ERROR')
})

t.test('upstream 404: 404 NAME_UNKNOWN', async t => {
  const { proxy } = await setup(t)
  const reply = await tagsList(proxy, 'nobody/here')
  t.equal(reply.status, 404)
  t.equal(await errorCode(reply), 'NAME_UNKNOWN')
})

t.test('an unreadable tag list from the upstream: 502 UPSTREAM_ERROR', async t => {
  const { upstream, proxy } = await setup(t)
  for (const body of ['{"name":"team/app","tags":["a",', 'not json at all']) {
    upstream.answers.tags = { status: 200, headers: { 'Content-Type': 'application/json' }, body }
    const reply = await tagsList(proxy, REPO)
    t.equal(reply.status, 502, `${JSON.stringify(body)}: a bad gateway`)
    t.equal(await errorCode(reply), 'UPSTREAM_ERROR')
  }
})

t.test('the catalog lists the repositories cached here, never the upstream\'s', async t => {
  const { upstream, proxy } = await setup(t)
  publish(upstream, 'one')
  const empty = await fetch(`${proxy.url}/v2/_catalog`)
  t.equal(empty.status, 200)
  t.same(await empty.json(), { repositories: [] }, 'nothing cached, nothing listed')

  await pull(t, proxy, OTHER, 'one')
  await pull(t, proxy, REPO, 'one')
  const reply = await fetch(`${proxy.url}/v2/_catalog`)
  t.equal(reply.status, 200)
  t.same(await reply.json(), { repositories: [REPO, OTHER] }, 'the two pulled repositories, sorted; not team/never-pulled')
  t.equal(upstream.log.filter(l => l.includes('_catalog')).length, 0, 'the upstream was never asked for its catalog')
})
