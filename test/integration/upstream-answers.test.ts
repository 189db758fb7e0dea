// What a client sees for each kind of upstream answer, through manifests,
// blobs and the referrers API, against a fake upstream that speaks the
// protocol: refusals become DENIED, odd statuses and unreadable bodies a bad
// gateway, and nothing of a bad answer is stored. Also: two repositories
// asking for one blob at once share one download and both get it linked, and
// a blob whose data went missing under its link is fetched again.
import { readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { blob, sha256, startFakeUpstream, type FakeAnswer, type FakeUpstream } from '../helpers/fake-upstream.js'
import { distributionPaths } from '../helpers/distribution-paths.js'
import { listFiles, seededBytes } from '../helpers/files.js'
import { rawGet } from '../helpers/http.js'
import { startInProcess, type InProcess } from '../helpers/inprocess.js'

const REPO = 'team/app'
const SECOND = 'team/second'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

interface ErrorBody {
  errors: { code: string; message: string }[]
}

const errorCode = async (reply: Response): Promise<string | undefined> => ((await reply.json()) as ErrorBody).errors[0]?.code

async function until(what: string, check: () => Promise<boolean>, deadlineMs = 10_000): Promise<void> {
  const end = Date.now() + deadlineMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)

async function setup(t: Test): Promise<{ upstream: FakeUpstream; proxy: InProcess }> {
  const upstream = await startFakeUpstream(REPO, { alsoServe: [SECOND] })
  t.teardown(() => upstream.close())
  const proxy = await startInProcess(t, t.testdir(), {
    proxy: { remoteurl: upstream.url, timeouts: { connect: '2s', headers: '2s', body: '2s' } },
  })
  return { upstream, proxy }
}

/** Files of the storage tree that a cached manifest or blob would leave: revisions, tags, layer links, blob data, spools. */
async function storedContent(root: string): Promise<string[]> {
  return (await listFiles(root)).filter(f => f.includes('/_manifests/') || f.includes('/_layers/') || f.includes('/blobs/') || f.includes('/_uploads/'))
}

const ociManifest = (note: string): Buffer =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(`config ${note}`), size: 2 },
      layers: [],
      annotations: { note },
    }),
  )

const errorAnswer = (status: number, code: string): FakeAnswer => ({
  status,
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ errors: [{ code, message: code.toLowerCase() }] }),
})

t.test('upstream answers mapped to client errors', async t => {
  const { upstream, proxy } = await setup(t)
  const layer = blob(seededBytes('answers-layer', 40_000))
  upstream.blobs.set(layer.digest, layer)
  const manifest = ociManifest('answers')
  const digest = sha256(manifest)
  upstream.manifests.set('v1', { payload: manifest, mediaType: OCI_MANIFEST, digest })
  upstream.manifests.set(digest, { payload: manifest, mediaType: OCI_MANIFEST, digest })

  const cases: Array<[string, FakeAnswer, number, string]> = [
    ['401 (no challenge to answer)', errorAnswer(401, 'UNAUTHORIZED'), 403, 'DENIED'],
    ['403', errorAnswer(403, 'DENIED'), 403, 'DENIED'],
    ['418', { status: 418, body: "I'm a teapot" }, 502, 'UPSTREAM_ERROR'],
  ]
  for (const [what, answer, status, code] of cases) {
    upstream.answers.manifests = answer
    upstream.answers.blobs = answer
    for (const path of [`manifests/v1`, `manifests/${digest}`, `blobs/${layer.digest}`]) {
      const get = await fetch(`${proxy.url}/v2/${REPO}/${path}`, { headers: { Accept: OCI_MANIFEST } })
      t.equal(get.status, status, `upstream ${what}, GET ${path.slice(0, 20)}: ${status}`)
      t.equal(await errorCode(get), code)
    }
    const head = await fetch(`${proxy.url}/v2/${REPO}/blobs/${layer.digest}`, { method: 'HEAD' })
    t.equal(head.status, status, `upstream ${what}, blob HEAD: ${status}`)
  }
  upstream.answers = {}
  t.same(await storedContent(proxy.root), [], 'none of those answers left anything in storage')

  const healthy = await fetch(`${proxy.url}/v2/${REPO}/manifests/v1`, { headers: { Accept: OCI_MANIFEST } })
  t.equal(healthy.status, 200, 'the refusals did not take the upstream offline')
  t.same(Buffer.from(await healthy.arrayBuffer()), manifest)
})

t.test('a manifest GET by digest answered 404: 404 MANIFEST_UNKNOWN', async t => {
  const { upstream, proxy } = await setup(t)
  const missing = sha256(ociManifest('never published'))
  const reply = await fetch(`${proxy.url}/v2/${REPO}/manifests/${missing}`)
  t.equal(reply.status, 404)
  t.equal(await errorCode(reply), 'MANIFEST_UNKNOWN')
  t.equal(upstream.count('GET', `/manifests/${missing}`), 1, 'the upstream was asked')
  const head = await fetch(`${proxy.url}/v2/${REPO}/manifests/${missing}`, { method: 'HEAD' })
  t.equal(head.status, 404, 'a HEAD too')
})

t.test('an unparsable manifest: 502 and nothing stored', async t => {
  const { upstream, proxy } = await setup(t)
  const bodies = ['this is not JSON', JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: 'not an array' })]
  for (const body of bodies) {
    const digest = sha256(body)
    upstream.answers.manifests = { status: 200, headers: { 'Content-Type': OCI_MANIFEST, 'Docker-Content-Digest': digest }, body }
    for (const reference of ['v1', digest]) {
      const reply = await fetch(`${proxy.url}/v2/${REPO}/manifests/${reference}`)
      t.equal(reply.status, 502, `${body.slice(0, 16)}… by ${reference.slice(0, 12)}: a bad gateway`)
      t.equal(await errorCode(reply), 'UPSTREAM_ERROR')
    }
    t.notOk(await exists(distributionPaths.blobData(proxy.root, digest)), 'its bytes were not stored')
  }
  t.same(await storedContent(proxy.root), [], 'no revision, tag or blob stored')
})

t.test('a blob answered 200 without Content-Length (chunked): 502 and nothing stored', async t => {
  const { upstream, proxy } = await setup(t)
  const layer = blob(seededBytes('chunked-layer', 70_000))
  upstream.answers.blobs = {
    status: 200,
    headers: { 'Content-Type': 'application/octet-stream', 'Docker-Content-Digest': layer.digest },
    body: layer.content,
    chunked: true,
  }
  const reply = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${layer.digest}`)
  t.equal(reply.status, 502, 'a bad gateway, before any byte went out')
  t.equal(JSON.parse(reply.body.toString()).errors[0]?.code, 'UPSTREAM_ERROR')
  t.ok(upstream.count('GET', `/blobs/${layer.digest}`) >= 1, 'the upstream was asked')
  t.same(await storedContent(proxy.root), [], 'no blob, link or spool left')
})

t.test('a blob HEAD answered 200 without Content-Length: an error, not a wrong size', async t => {
  const { upstream, proxy } = await setup(t)
  const layer = blob(seededBytes('head-layer', 5_000))
  upstream.answers.blobs = { status: 200, headers: { 'Docker-Content-Digest': layer.digest }, chunked: true }
  const head = await fetch(`${proxy.url}/v2/${REPO}/blobs/${layer.digest}`, { method: 'HEAD' })
  t.equal(upstream.count('HEAD', `/blobs/${layer.digest}`), 1, 'the upstream was asked with a HEAD')
  t.equal(head.status, 502, 'a bad gateway')
  t.equal(head.headers.get('docker-content-digest'), null, 'no blob headers, so no size a client could trust')
  t.not(head.headers.get('content-type'), 'application/octet-stream')
})

t.test('two repositories asking for one blob at once: one upstream GET, both linked', async t => {
  const { upstream, proxy } = await setup(t)
  const layer = blob(seededBytes('shared-layer', 2 * 1024 * 1024 + 11))
  upstream.blobs.set(layer.digest, layer)
  let release = (): void => undefined
  upstream.blobGate = new Promise<void>(resolve => {
    release = resolve
  })

  const first = rawGet(`${proxy.url}/v2/${REPO}/blobs/${layer.digest}`, {}, false)
  await until('the first GET reached the upstream', async () => upstream.count('GET', `/v2/${REPO}/blobs/`) === 1)
  const second = rawGet(`${proxy.url}/v2/${SECOND}/blobs/${layer.digest}`, {}, false)
  // A blob is shared across repositories only once the upstream vouched for the second one too
  // (a HEAD today): release the held download when the upstream has heard about it.
  await until('the upstream was asked about the blob in the second repository', async () =>
    upstream.log.some(l => l.includes(`/v2/${SECOND}/blobs/${layer.digest}`)),
  )
  release()
  const [a, b] = await Promise.all([first, second])
  for (const [name, reply] of [[REPO, a], [SECOND, b]] as const) {
    t.equal(reply.status, 200, `${name}: 200`)
    t.ok(reply.complete, `${name}: the whole body`)
    t.equal(reply.sha256, layer.digest, `${name}: the exact bytes`)
  }
  t.equal(upstream.count('GET', '/blobs/'), 1, 'exactly one upstream GET for the blob')

  for (const name of [REPO, SECOND]) {
    const link = distributionPaths.layerLink(proxy.root, name, layer.digest)
    await until(`the blob is linked in ${name}`, () => exists(link))
    t.equal(await readFile(link, 'utf8'), layer.digest, `${name}: _layers/sha256/<hex>/link names the digest`)
  }
  t.equal(sha256(await readFile(distributionPaths.blobData(proxy.root, layer.digest))), layer.digest, 'the stored blob verifies')
  const warm = await rawGet(`${proxy.url}/v2/${SECOND}/blobs/${layer.digest}`, {}, false)
  t.equal(warm.sha256, layer.digest, 'served warm to the second repository')
  t.equal(upstream.count('GET', '/blobs/'), 1, 'without another upstream GET')
})

t.test('a blob whose link exists but whose data was deleted is fetched again', async t => {
  const { upstream, proxy } = await setup(t)
  const layer = blob(seededBytes('deleted-data', 300_000))
  upstream.blobs.set(layer.digest, layer)
  const data = distributionPaths.blobData(proxy.root, layer.digest)
  const link = distributionPaths.layerLink(proxy.root, REPO, layer.digest)

  t.equal((await rawGet(`${proxy.url}/v2/${REPO}/blobs/${layer.digest}`, {}, false)).sha256, layer.digest)
  await until('the blob is committed and linked', async () => (await exists(data)) && (await exists(link)))
  const warm = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${layer.digest}`, {}, false)
  t.equal(warm.sha256, layer.digest, 'served warm')
  t.equal(upstream.count('GET', '/blobs/'), 1, 'from storage')

  await rm(join(data, '..'), { recursive: true })
  t.ok(await exists(link), 'the link stays, the data is gone')
  const again = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${layer.digest}`, {}, false)
  t.equal(again.status, 200)
  t.ok(again.complete, 'the whole body')
  t.equal(again.sha256, layer.digest, 'the exact bytes')
  t.equal(upstream.count('GET', '/blobs/'), 2, 'fetched from the upstream again')
  await until('the blob is stored again', () => exists(data))
  t.equal(sha256(await readFile(data)), layer.digest, 'and the stored copy verifies')
  const head = await fetch(`${proxy.url}/v2/${REPO}/blobs/${layer.digest}`, { method: 'HEAD' })
  t.equal(head.headers.get('content-length'), String(layer.content.length), 'a HEAD gives its size')
})

t.test('referrers API errors through the proxy', async t => {
  const { upstream, proxy } = await setup(t)
  const subject = sha256(ociManifest('subject'))

  upstream.answers.referrers = errorAnswer(500, 'UNKNOWN')
  const failed = await fetch(`${proxy.url}/v2/${REPO}/referrers/${subject}`)
  t.not(failed.status, 200, 'not an empty 200 that would hide the referrers')
  t.equal(failed.status, 502, 'a bad gateway')
  t.equal(await errorCode(failed), 'UPSTREAM_ERROR')

  upstream.answers.referrers = { status: 200, headers: { 'Content-Type': OCI_INDEX }, body: '<html>not an index</html>' }
  const garbled = await fetch(`${proxy.url}/v2/${REPO}/referrers/${subject}`)
  t.equal(garbled.status, 502, 'an answer that is not JSON: a bad gateway')
  t.equal(await errorCode(garbled), 'UPSTREAM_ERROR')
})

t.test('referrers cached earlier are served, with a warning, while the upstream answers 500', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  let clock = Date.now()
  const proxy = await startInProcess(t, t.testdir(), { proxy: { remoteurl: upstream.url, tagttl: '1m' } }, { now: () => clock })
  const subject = sha256(ociManifest('signed subject'))
  const signature = { mediaType: OCI_MANIFEST, digest: sha256('a signature'), size: 11, artifactType: 'application/vnd.example.sig' }
  upstream.referrers.set(subject, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [signature] })))

  const fresh = await fetch(`${proxy.url}/v2/${REPO}/referrers/${subject}`)
  t.equal(fresh.status, 200)
  t.same(((await fresh.json()) as { manifests: unknown[] }).manifests, [signature])

  clock += 2 * 60_000 // past the tag TTL: the upstream is asked again
  upstream.answers.referrers = errorAnswer(500, 'UNKNOWN')
  const stale = await fetch(`${proxy.url}/v2/${REPO}/referrers/${subject}`)
  t.equal(stale.status, 200, 'the cached answer')
  t.same(((await stale.json()) as { manifests: unknown[] }).manifests, [signature])
  t.match(stale.headers.get('warning') ?? '', /^299 - .*referrers served from cache/, 'with a Warning saying so')
  t.equal(upstream.count('GET', `/referrers/${subject}`), 3, 'after asking the upstream (once, then once more)')
})
