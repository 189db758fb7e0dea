/**
 * Category 2, Push, the manifest half (§Pushing Manifests, §Pushing Manifests
 * with Subject): PUT by tag and by digest, exact bytes, manifests that name
 * missing blobs, `subject` and `OCI-Subject`, indexes after their children.
 * Mirrors the Go suite's "Manifest Upload" context of 02_push_test.go.
 */
import type { Test } from 'tap'
import { ANNOTATION, EMPTY_JSON, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, descriptorOf, imageIndex, imageManifest, uploadImage } from './fixtures.js'
import {
  absentDigest,
  assertErrorBody,
  call,
  location,
  optionalHeader,
  pushBlob,
  putManifest,
  seen,
  sha256,
  uniqueBytes,
  type Answer,
  type Pushed,
  type Target,
} from './http.js'

const ACCEPT = { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` }

/**
 * "Upon a successful upload, the registry MUST return response code `201 Created`, and MUST have the following header:
 * Location" ... "The `<location>` is a pullable manifest URL." ... "The Docker-Content-Digest header returns the
 * canonical digest of the uploaded blob, and MUST be equal to the client provided digest." (The header itself is
 * OPTIONAL, §Legacy Docker support HTTP headers.)
 */
async function assertManifestCreated(t: Test, target: Target, put: Answer, m: Pushed, label: string): Promise<void> {
  t.equal(put.status, 201, `${label}: 201`, { found: seen(put) })
  optionalHeader(t, put, 'docker-content-digest', m.digest, label)
  const loc = location(target.url, put)
  t.ok(loc, `${label}: has a Location`)
  if (loc === undefined) return
  const get = await call(loc, { headers: ACCEPT })
  t.equal(get.status, 200, `${label}: the Location is a pullable manifest URL`, { found: seen(get) })
  // "The registry MUST store the manifest in the exact byte representation provided by the client."
  t.ok(get.body.equals(m.bytes), `${label}: the Location serves the exact bytes pushed`)
}

/**
 * §Push: "A registry MAY reject a manifest uploaded to the manifest endpoint with descriptors in other fields that
 * reference a manifest or blob that does not exist in the registry. When a manifest is rejected for this reason, it
 * MUST result in one or more `MANIFEST_BLOB_UNKNOWN` errors." No status is named (Distribution answers 400; the
 * end-7 row lists `404`/`413`), so any 4xx is taken and the code is what must hold.
 */
async function assertMissingReference(t: Test, target: Target, m: Pushed, label: string): Promise<void> {
  const put = await putManifest(target.url, target.repo, m.digest, m)
  if (put.status === 201) {
    t.comment(`${label}: accepted (the spec lets a registry accept it)`)
    return
  }
  t.ok(put.status >= 400 && put.status < 500, `${label}: rejected with a 4xx: ${seen(put)}`)
  if (put.status !== 400) t.comment(`${label}: rejected with ${put.status} (Distribution answers 400)`)
  t.ok(put.json !== undefined, `${label}: the rejection is an OCI error body (MANIFEST_BLOB_UNKNOWN must be in it)`)
  assertErrorBody(t, put, 'MANIFEST_BLOB_UNKNOWN', label)
  const get = await call(`${target.url}/v2/${target.repo}/manifests/${m.digest}`, { method: 'HEAD', headers: ACCEPT })
  t.equal(get.status, 404, `${label}: a rejected manifest is not stored`)
}

export async function pushManifests(t: Test, target: Target): Promise<void> {
  const { url, repo } = target
  const image = await uploadImage(t, url, repo, 'push', 1)
  const m = image.manifest

  await t.test('GET of a manifest not yet pushed: 404', async t => {
    const res = await call(`${url}/v2/${repo}/manifests/${m.digest}`, { headers: ACCEPT })
    t.equal(res.status, 404, seen(res))
  })

  await t.test('PUT by tag, four tags: 201 each', async t => {
    for (const tag of ['test0', 'test1', 'test2', 'test3']) {
      await assertManifestCreated(t, target, await putManifest(url, repo, tag, m), m, `PUT ${tag}`)
    }
    const get = await call(`${url}/v2/${repo}/manifests/test2`, { headers: ACCEPT })
    t.ok(get.body.equals(m.bytes), 'the tag resolves to the exact bytes')
    // A tag is "a custom, human-readable pointer to a manifest": a PUT of another manifest moves it.
    const moved = imageManifest({ config: { mediaType: image.config.mediaType, digest: image.config.digest, size: image.config.size }, layers: [], annotations: { [ANNOTATION]: 'moved tag' } })
    await assertManifestCreated(t, target, await putManifest(url, repo, 'test3', moved), moved, 'PUT test3 again, another manifest')
    const now = await call(`${url}/v2/${repo}/manifests/test3`, { headers: ACCEPT })
    t.ok(now.body.equals(moved.bytes), 'the tag now resolves to the new manifest')
    t.equal((await call(`${url}/v2/${repo}/manifests/${m.digest}`, { method: 'HEAD', headers: ACCEPT })).status, 200, 'the old manifest is still there by digest')
  })

  await t.test('PUT by digest: 201', async t => {
    const other = await uploadImage(t, url, repo, 'push-by-digest', 1)
    await assertManifestCreated(t, target, await putManifest(url, repo, other.manifest.digest, other.manifest), other.manifest, 'PUT by digest')
    const get = await call(`${url}/v2/${repo}/manifests/${other.manifest.digest}`, { headers: ACCEPT })
    t.equal(get.status, 200, 'GET by digest: 200')
    t.equal(get.headers.get('content-type'), OCI_MANIFEST, 'GET: the Content-Type it was pushed with')
  })

  await t.test('PUT by a digest that is not the body\'s: refused', async t => {
    // "The Docker-Content-Digest header ... MUST be equal to the client provided digest": no 201 under another digest.
    const other = imageManifest({ annotations: { [ANNOTATION]: 'wrong-digest' } })
    const wrong = absentDigest()
    const put = await putManifest(url, repo, wrong, other)
    t.ok(put.status >= 400 && put.status < 500, `a 4xx: ${seen(put)}`)
    assertErrorBody(t, put, put.status === 400 ? ['DIGEST_INVALID', 'MANIFEST_INVALID'] : undefined, 'PUT')
    const head = await call(`${url}/v2/${repo}/manifests/${wrong}`, { method: 'HEAD', headers: ACCEPT })
    t.equal(head.status, 404, 'nothing stored under the claimed digest')
  })

  await t.test('a manifest with no layers', async t => {
    // The Go suite's "Registry should accept a manifest upload with no layers" only warns when it is refused.
    const bare = imageManifest({ config: { mediaType: image.config.mediaType, digest: image.config.digest, size: image.config.size }, layers: [] })
    const put = await putManifest(url, repo, 'no-layers', bare)
    if (put.status === 201) await assertManifestCreated(t, target, put, bare, 'PUT')
    else t.comment(`an image manifest with no layers is not supported: ${seen(put)}`)
  })

  await t.test('artifacts: custom config media type, and artifactType over the empty config', async t => {
    // The Go suite's "[OCI-Image v1.1]" uploads: both must be accepted (2xx).
    await pushBlob(t, url, repo, EMPTY_JSON, 'the empty JSON blob')
    const configBytes = uniqueBytes('artifact-config', 120)
    await pushBlob(t, url, repo, configBytes, 'artifact config')
    const layer = uniqueBytes('artifact-layer', 300)
    await pushBlob(t, url, repo, layer, 'artifact layer')
    const layers = [{ mediaType: 'application/vnd.example.data.v1', digest: sha256(layer), size: layer.length }]
    const byConfig = imageManifest({ config: { mediaType: 'application/vnd.example.config.v1+json', digest: sha256(configBytes), size: configBytes.length }, layers })
    const byType = imageManifest({ artifactType: 'application/vnd.example.artifact.v1', layers })
    for (const [label, doc] of [['config media type', byConfig], ['artifactType', byType]] as const) {
      await assertManifestCreated(t, target, await putManifest(url, repo, doc.digest, doc), doc, `artifact by ${label}`)
    }
  })

  await t.test('a manifest of almost 4 MB', async t => {
    // "Client and registry implementations SHOULD expect to be able to support manifest pushes of at least 4
    // megabytes." and "A registry that enforces this limit SHOULD respond ... with a response code `413 Payload Too
    // Large`." A refusal is a comment; an accepted one must come back byte for byte.
    const annotations: Record<string, string> = {}
    for (let i = 0; i < 390; i++) annotations[`org.example.large.${i}`] = 'A'.repeat(10_000)
    const large = imageManifest({ config: { mediaType: image.config.mediaType, digest: image.config.digest, size: image.config.size }, annotations })
    t.ok(large.size > 3_900_000 && large.size < 4_000_000, `the manifest is ${large.size} bytes`)
    const put = await putManifest(url, repo, 'large', large)
    if (put.status === 201) await assertManifestCreated(t, target, put, large, 'PUT of the large manifest')
    else t.comment(`a ${large.size}-byte manifest was refused: ${put.status} (SHOULD accept 4 MB; 413 SHOULD be the refusal)`)
  })

  await t.test('a manifest naming a blob that was never pushed', async t => {
    const ghost = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: absentDigest(), size: 1234 }
    const doc = imageManifest({ config: { mediaType: image.config.mediaType, digest: image.config.digest, size: image.config.size }, layers: [ghost] })
    await assertMissingReference(t, target, doc, 'missing layer')
    const noConfig = imageManifest({ config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: absentDigest(), size: 99 }, layers: [] })
    await assertMissingReference(t, target, noConfig, 'missing config')
  })

  await t.test('an index naming a manifest that was never pushed', async t => {
    const index = imageIndex([{ mediaType: OCI_MANIFEST, digest: absentDigest(), size: 500 }])
    await assertMissingReference(t, target, index, 'missing child')
  })

  await t.test('an image index pushed after its children, and an index of that index', async t => {
    const a = await uploadImage(t, url, repo, 'index-child-a', 1)
    const b = await uploadImage(t, url, repo, 'index-child-b', 1)
    for (const child of [a, b]) {
      await assertManifestCreated(t, target, await putManifest(url, repo, child.manifest.digest, child.manifest), child.manifest, 'child by digest')
    }
    const index = imageIndex([
      { ...descriptorOf(a.manifest), platform: { os: 'linux', architecture: 'amd64' } },
      { ...descriptorOf(b.manifest), platform: { os: 'linux', architecture: 'arm64' } },
    ], { annotations: { [ANNOTATION]: 'index' } })
    await assertManifestCreated(t, target, await putManifest(url, repo, 'multi', index), index, 'index by tag')
    const get = await call(`${url}/v2/${repo}/manifests/multi`, { headers: ACCEPT })
    t.equal(get.headers.get('content-type'), OCI_INDEX, 'GET: Content-Type is the index media type')
    // The Go suite's "Registry should accept a manifest upload with nested image index [OCI-Image v1.1]".
    const nested = imageIndex([descriptorOf(index)], { artifactType: 'application/vnd.example.nested.v1' })
    await assertManifestCreated(t, target, await putManifest(url, repo, nested.digest, nested), nested, 'nested index')
  })

  await t.test('a manifest with subject: OCI-Subject on the PUT, also when the subject does not exist', async t => {
    await pushBlob(t, url, repo, EMPTY_JSON, 'the empty JSON blob')
    const subject = await uploadImage(t, url, repo, 'subject', 1)
    await putManifest(url, repo, subject.manifest.digest, subject.manifest)
    const layer = uniqueBytes('signature', 200)
    await pushBlob(t, url, repo, layer, 'referrer layer')
    const layers = [{ mediaType: 'application/vnd.example.signature.v1', digest: sha256(layer), size: layer.length }]
    const cases: [string, { mediaType: string; digest: string; size: number }][] = [
      ['an existing subject', descriptorOf(subject.manifest)],
      // §Push: "A registry MUST initially accept an otherwise valid manifest with a `subject` field that references a
      // manifest that does not exist in the repository" (the Go suite's "Dangling subject").
      ['a dangling subject', { mediaType: OCI_MANIFEST, digest: absentDigest(), size: 321 }],
    ]
    for (const [label, subj] of cases) {
      const referrer = imageManifest({ artifactType: 'application/vnd.example.signature.v1', layers, subject: subj, config: { mediaType: OCI_EMPTY, digest: sha256(EMPTY_JSON), size: 2 } })
      const put = await putManifest(url, repo, referrer.digest, referrer)
      await assertManifestCreated(t, target, put, referrer, `referrer of ${label}`)
      // "a registry implementation that supports the referrers API MUST respond with the response header
      // `OCI-Subject: <subject digest>`"
      t.equal(put.headers.get('oci-subject'), subj.digest, `referrer of ${label}: OCI-Subject is the subject digest`)
    }
  })
}
