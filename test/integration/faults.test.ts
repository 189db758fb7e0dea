// Upstream faults a real registry cannot produce, from a fake upstream that
// speaks the protocol: a wrong byte, a connection cut halfway, a stall. The
// client sees an error, nothing is committed, no temp file is left, and the
// next request against a healthy upstream succeeds.
import { readFile, stat } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { blob, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { listFiles, seededBytes } from '../helpers/files.js'
import { rawGet } from '../helpers/http.js'
import { startInProcess, type InProcess } from '../helpers/inprocess.js'

const REPO = 'faulty/repo'
const SIZE = 3 * 1024 * 1024 + 17

const content = (seed: string): Buffer => seededBytes(seed, SIZE)
const walk = listFiles

const blobPath = (root: string, digest: string): string =>
  join(root, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')

async function assertNothingCommitted(t: Test, proxy: InProcess, digest: string): Promise<void> {
  await t.rejects(stat(blobPath(proxy.root, digest)), { code: 'ENOENT' }, 'no blob committed')
  const files = await walk(proxy.root)
  t.same(files.filter(f => f.includes('_uploads') || f.includes('.tmp-')), [], 'no upload or temp file left behind')
  t.same(files.filter(f => f.endsWith(`_layers/sha256/${digest.slice(7)}/link`)), [], 'no link to the blob')
}

async function setup(t: Test, seed: string): Promise<{ upstream: FakeUpstream; proxy: InProcess; digest: string; data: Buffer }> {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const data = content(seed)
  const b = blob(data)
  upstream.blobs.set(b.digest, b)
  const proxy = await startInProcess(t, t.testdir(), {
    proxy: { remoteurl: upstream.url, timeouts: { connect: '2s', headers: '2s', body: '1s' } },
  })
  return { upstream, proxy, digest: b.digest, data }
}

async function healthyAfterwards(t: Test, upstream: FakeUpstream, proxy: InProcess, digest: string): Promise<void> {
  upstream.fault = 'none'
  upstream.faultResumes = false
  const reply = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${digest}`, {}, false)
  t.equal(reply.status, 200)
  t.ok(reply.complete, 'the next request succeeds')
  t.equal(reply.sha256, digest, 'with the right bytes')
  // The last byte goes out once the digest is verified; the commit (fsync, rename) follows.
  const deadline = Date.now() + 10_000
  while (!(await stat(blobPath(proxy.root, digest)).then(() => true, () => false)) && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  const stored = createHash('sha256').update(await readFile(blobPath(proxy.root, digest))).digest('hex')
  t.equal(`sha256:${stored}`, digest, 'and the committed blob verifies')
}

t.test('a wrong byte: the client is cut short, nothing is stored', async t => {
  const { upstream, proxy, digest } = await setup(t, 'wrong-byte')
  upstream.fault = 'wrong-byte'
  const reply = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${digest}`, {}, false)
  t.equal(reply.status, 200, 'headers were sent before the digest could be known')
  t.notOk(reply.complete, 'the body is cut, never complete-looking')
  t.ok(reply.received < SIZE, `received ${reply.received} of ${SIZE} bytes`)
  await assertNothingCommitted(t, proxy, digest)
  await healthyAfterwards(t, upstream, proxy, digest)
})

t.test('a connection cut halfway is resumed with a Range request', async t => {
  const { upstream, proxy, digest } = await setup(t, 'cut-resumable')
  upstream.fault = 'cut'
  const reply = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${digest}`, {}, false)
  t.ok(reply.complete, 'the client never noticed')
  t.equal(reply.sha256, digest)
  t.equal(upstream.log.filter(l => l.startsWith('GET') && l.includes('/blobs/')).length, 2, 'one GET and one resume')
})

t.test('a cut that cannot be resumed: the client sees an error, nothing is stored', async t => {
  const { upstream, proxy, digest } = await setup(t, 'cut-final')
  upstream.fault = 'cut'
  upstream.faultResumes = true
  const reply = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${digest}`, {}, false)
  t.notOk(reply.complete, 'the client sees a broken response')
  await assertNothingCommitted(t, proxy, digest)
  await healthyAfterwards(t, upstream, proxy, digest)
})

t.test('a stalled upstream times out: the client sees an error, nothing is stored', async t => {
  const { upstream, proxy, digest } = await setup(t, 'stall')
  upstream.fault = 'stall'
  upstream.faultResumes = true
  const reply = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${digest}`, {}, false)
  t.notOk(reply.complete, 'the client sees a broken response')
  await assertNothingCommitted(t, proxy, digest)
  await healthyAfterwards(t, upstream, proxy, digest)
})

t.test('a Range request during a cold fill is served from the spool', async t => {
  const { proxy, digest, data } = await setup(t, 'range-cold')
  const reply = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${digest}`, { Range: 'bytes=1000-1999' })
  t.equal(reply.status, 206)
  t.equal(reply.headers['content-range'], `bytes 1000-1999/${SIZE}`)
  t.same(reply.body, data.subarray(1000, 2000))
})

t.test('a manifest that does not match its digest is refused with 502 and not stored', async t => {
  const { upstream, proxy } = await setup(t, 'bad-manifest')
  const genuine = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 2 }, layers: [] }))
  const digest = `sha256:${createHash('sha256').update(genuine).digest('hex')}`
  const lie = Buffer.from(genuine.toString().replace('"size":2', '"size":3'))
  upstream.manifests.set(digest, { payload: lie, mediaType: 'application/vnd.oci.image.manifest.v1+json', digest })
  upstream.manifests.set('v1', { payload: lie, mediaType: 'application/vnd.oci.image.manifest.v1+json', digest })
  for (const reference of [digest, 'v1']) {
    const reply = await fetch(`${proxy.url}/v2/${REPO}/manifests/${reference}`)
    t.equal(reply.status, 502, `by ${reference.slice(0, 12)}: a bad gateway, not a client error`)
    t.equal(((await reply.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UPSTREAM_ERROR')
  }
  t.same((await walk(proxy.root)).filter(f => f.includes('_manifests') || f.includes('/blobs/')), [], 'nothing stored or linked')
})
