// Manifests through the proxy, driven against a scripted upstream: what is
// checked before anything is stored, sha512 references, single-flight tag
// refreshes, byte-bounded hot caches, and referrer answers that are not kept.
import { createHash } from 'node:crypto'
import t from 'tap'
import { parseDigest } from '../../src/registry/digest.js'
import { RegistryError } from '../../src/registry/errors.js'
import type { RepositoryName } from '../../src/registry/names.js'
import { parseReference } from '../../src/registry/reference.js'
import { MetadataStore } from '../../src/metadata/store.js'
import { listFiles } from '../helpers/files.js'
import { digestOf, proxyFixture, reply, ScriptedUpstream } from '../helpers/scripted-upstream.js'

const REPO = 'team/app' as RepositoryName
const OCI = 'application/vnd.oci.image.manifest.v1+json'
const ALL_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/vnd.docker.distribution.manifest.v1+json',
]

function manifest(seed: string): Buffer {
  const hex = createHash('sha256').update(seed).digest('hex')
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${hex}`, size: 2 }, layers: [] }))
}

const stored = async (root: string): Promise<string[]> => (await listFiles(root)).map(f => `/${f}`)

const get = (fx: ReturnType<typeof proxyFixture>, reference: string, accept: string[] = []) =>
  fx.registry.repository(REPO).manifests.get(parseReference(reference), { accept })

t.test('by digest, an upstream answer without Docker-Content-Digest is checked before it is stored', async t => {
  const genuine = manifest('genuine')
  const asked = digestOf(genuine)
  const upstream = new ScriptedUpstream(() => reply(200, { 'content-type': OCI }, manifest('something else')))
  const fx = proxyFixture(t, t.testdir(), upstream)
  const err = await get(fx, asked.value).catch((e: unknown) => e)
  t.ok(err instanceof RegistryError)
  t.equal((err as RegistryError).code, 'UPSTREAM_ERROR')
  t.match((err as RegistryError).message, /does not match its digest/)
  t.same((await stored(fx.root)).filter(f => f.startsWith('/docker/')), [], 'nothing stored, nothing linked')
})

t.test('a lying Docker-Content-Digest is refused, whatever its algorithm', async t => {
  const payload = manifest('lie')
  const wrong = `sha512:${createHash('sha512').update('other').digest('hex')}`
  const upstream = new ScriptedUpstream(() => reply(200, { 'content-type': OCI, 'docker-content-digest': wrong }, payload))
  const fx = proxyFixture(t, t.testdir(), upstream)
  await t.rejects(get(fx, 'v1'), { code: 'UPSTREAM_ERROR' })
  t.same((await stored(fx.root)).filter(f => f.startsWith('/docker/')), [])
})

t.test('a sha512 manifest reference is fetched, verified with sha512, and stored under it', async t => {
  const payload = manifest('sha512')
  const digest = parseDigest(`sha512:${createHash('sha512').update(payload).digest('hex')}`)
  const upstream = new ScriptedUpstream(() => reply(200, { 'content-type': OCI, 'docker-content-digest': digest.value }, payload))
  const fx = proxyFixture(t, t.testdir(), upstream)
  const got = await get(fx, digest.value)
  t.equal(got.digest.value, digest.value)
  t.same(got.payload, payload)
  const files = await stored(fx.root)
  t.ok(files.includes(`/docker/registry/v2/blobs/sha512/${digest.hex.slice(0, 2)}/${digest.hex}/data`), 'blob under sha512')
  t.ok(files.includes(`/docker/registry/v2/repositories/team/app/_manifests/revisions/sha512/${digest.hex}/link`), 'revision linked under sha512')
  t.same((await get(fx, digest.value)).payload, payload, 'served from storage the second time')
  t.equal(upstream.requests.length, 1)
})

t.test('the upstream is always asked as a fully capable client', async t => {
  const payload = manifest('accept')
  const upstream = new ScriptedUpstream(req =>
    reply(200, { 'content-type': OCI, 'docker-content-digest': digestOf(payload).value }, req.method === 'HEAD' ? '' : payload),
  )
  const fx = proxyFixture(t, t.testdir(), upstream)
  await get(fx, 'v1', ['application/vnd.docker.distribution.manifest.v1+prettyjws']).catch(() => undefined)
  t.ok(upstream.requests.length > 0)
  for (const req of upstream.requests) t.same(req.headers?.Accept?.split(', '), ALL_TYPES, `${req.method} ${req.reference}`)
})

t.test('a burst of requests for a tag past its TTL sends one refresh upstream', async t => {
  const payload = manifest('burst')
  const digest = digestOf(payload).value
  let release!: () => void
  let gate = Promise.resolve()
  const upstream = new ScriptedUpstream(async req => {
    if (req.method === 'HEAD') await gate
    return reply(200, { 'content-type': OCI, 'docker-content-digest': digest }, req.method === 'HEAD' ? '' : payload)
  })
  const clock = { now: 1_000_000 }
  const fx = proxyFixture(t, t.testdir(), upstream, { tagTtlMs: 1000, now: () => clock.now })
  await get(fx, 'latest')
  t.equal(upstream.count('HEAD', 'manifests'), 1)
  clock.now += 5000
  gate = new Promise(resolve => (release = resolve))
  const burst = Array.from({ length: 20 }, () => get(fx, 'latest'))
  await new Promise(resolve => setTimeout(resolve, 50))
  release()
  const answers = await Promise.all(burst)
  t.ok(answers.every(a => a.digest.value === digest))
  t.equal(upstream.count('HEAD', 'manifests'), 2, 'one HEAD for the whole burst')
  t.equal(upstream.count('GET', 'manifests'), 1, 'and no GET: the digest was known')
})

t.test('hot manifests are bounded by bytes, not only by count', async t => {
  const upstream = new ScriptedUpstream(() => reply(404))
  const fx = proxyFixture(t, t.testdir(), upstream)
  const big = Buffer.alloc(300 * 1024, 'x')
  for (let i = 0; i < 10; i++) fx.ctx.caches.hotManifests.set(`r@${i}`, { digest: digestOf(Buffer.from(String(i))), mediaType: OCI, payload: big })
  t.ok(fx.ctx.caches.hotManifests.calculatedSize <= 1024 * 1024, `held ${fx.ctx.caches.hotManifests.calculatedSize} bytes within the 1 MiB bound`)
  t.ok(fx.ctx.caches.hotManifests.size < 10, 'older entries went')
})

t.test('"no referrers API, no fallback tag" is not written to the shared metadata store', async t => {
  const upstream = new ScriptedUpstream(() => reply(404, {}, '{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'))
  const fx = proxyFixture(t, t.testdir(), upstream)
  const subject = digestOf(Buffer.from('subject'))
  await t.rejects(fx.registry.repository(REPO).referrers.list(subject), { code: 'NOT_FOUND' })
  t.equal(await fx.ctx.metadata.getReferrers('scripted', REPO, subject.value), undefined, 'nothing kept in metadata')
  const asked = upstream.requests.length
  await t.rejects(fx.registry.repository(REPO).referrers.list(subject), { code: 'NOT_FOUND' })
  t.equal(upstream.requests.length, asked, 'but remembered in the bounded memory cache for the TTL')
})

t.test('a tag another replica confirmed is kept in memory: the next request asks neither the upstream nor the store', async t => {
  const payload = manifest('shared-tag')
  const digest = digestOf(payload).value
  const upstream = new ScriptedUpstream(req => reply(200, { 'content-type': OCI, 'docker-content-digest': digest }, req.method === 'HEAD' ? '' : payload))
  const root = t.testdir()
  const metadata = new MetadataStore()
  const a = proxyFixture(t, root, upstream, { metadata })
  const b = proxyFixture(t, root, upstream, { metadata })
  t.same((await get(a, 'v1')).payload, payload, 'replica a refreshed the tag')
  const asked = upstream.requests.length
  const onB = b.registry.repository(REPO).manifests
  t.equal(onB.peek?.(parseReference('v1'), { accept: [] }), undefined, 'b has not seen the tag yet')
  t.same((await get(b, 'v1')).payload, payload)
  t.equal(upstream.requests.length, asked, "b took a's record from the store and asked the upstream nothing")
  t.same(onB.peek?.(parseReference('v1'), { accept: [] })?.payload, payload, 'and answers the tag from memory from then on')
})
