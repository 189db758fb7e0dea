/**
 * Category 4, Content Management (§Deleting tags, §Deleting Manifests,
 * §Deleting Blobs), in the order of the Go suite's 04_management_test.go:
 * the tag, then the manifest by digest (and with it every tag on it), then
 * blobs. With deletion disabled, every DELETE must be refused and nothing
 * removed.
 */
import type { Test } from 'tap'
import { ANNOTATION, EMPTY_JSON, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, descriptorOf, imageManifest, uploadImage, type Image } from './fixtures.js'
import { absentDigest, assertErrorBody, call, pushBlob, putManifest, seen, sha256, type Answer, type Target } from './http.js'

const ACCEPT = { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` }

const del = (url: string): Promise<Answer> => call(url, { method: 'DELETE' })
const tagsOf = async (target: Target): Promise<string[]> =>
  (((await call(`${target.url}/v2/${target.repo}/tags/list`)).json as { tags?: string[] } | undefined)?.tags ?? [])

async function seed(t: Test, target: Target, label: string, tags: string[]): Promise<Image> {
  const image = await uploadImage(t, target.url, target.repo, label, 1)
  for (const tag of tags) {
    const put = await putManifest(target.url, target.repo, tag, image.manifest)
    if (put.status !== 201) t.fail(`setup: PUT ${tag}: 201`, { found: seen(put) })
  }
  return image
}

export async function management(t: Test, target: Target): Promise<void> {
  const { url, repo } = target
  const m = (ref: string): string => `${url}/v2/${repo}/manifests/${ref}`
  const b = (digest: string): string => `${url}/v2/${repo}/blobs/${digest}`

  await t.test('delete a tag, then the manifest by digest', async t => {
    const image = await seed(t, target, 'managed', ['mgmt-keep', 'mgmt-drop'])
    const digest = image.manifest.digest
    const before = await tagsOf(target)

    // "Upon success, the registry MUST respond with a `202 Accepted` code."
    const tag = await del(m('mgmt-drop'))
    t.equal(tag.status, 202, `DELETE of a tag: 202 ${seen(tag)}`)
    // "Once deleted, a `GET` to `/v2/<name>/manifests/<tag>` will return a 404."
    t.equal((await call(m('mgmt-drop'), { headers: ACCEPT })).status, 404, 'the deleted tag: 404')
    t.equal((await call(m(digest), { headers: ACCEPT })).status, 200, 'the manifest stays: deleting a tag is not deleting the manifest')
    t.equal((await call(m('mgmt-keep'), { headers: ACCEPT })).status, 200, 'its other tag stays')
    const afterTag = await tagsOf(target)
    t.notOk(afterTag.includes('mgmt-drop'), 'the tags list has lost the tag')
    t.equal(afterTag.length, before.length - 1, 'and only that tag')

    const manifest = await del(m(digest))
    t.equal(manifest.status, 202, `DELETE of the manifest by digest: 202 ${seen(manifest)}`)
    // "Once deleted, a `GET` to `/v2/<name>/manifests/<digest>` and any tag pointing to that digest will return a 404."
    const gone = await call(m(digest), { headers: ACCEPT })
    t.equal(gone.status, 404, 'GET by digest: 404')
    assertErrorBody(t, gone, 'MANIFEST_UNKNOWN', 'GET by digest after DELETE')
    t.equal((await call(m(digest), { method: 'HEAD', headers: ACCEPT })).status, 404, 'HEAD by digest: 404')
    t.equal((await call(m('mgmt-keep'), { headers: ACCEPT })).status, 404, 'the tag that pointed at it: 404')
    // The Go suite's "GET request to tags list should reflect manifest deletion".
    t.notOk((await tagsOf(target)).includes('mgmt-keep'), 'the tags list has lost the tag that pointed at it')

    // The Go suite takes 202 or 404 for a manifest already deleted.
    const again = await del(m(digest))
    t.ok(again.status === 202 || again.status === 404, `DELETE of it again: 202 or 404 ${seen(again)}`)
  })

  await t.test('DELETE of a manifest in a repository that does not exist: 404', async t => {
    // "If the repository does not exist, the response MUST return `404 Not Found`."
    const res = await del(`${url}/v2/${repo}/never-pushed/manifests/${absentDigest()}`)
    t.equal(res.status, 404, seen(res))
  })

  await t.test('delete blobs', async t => {
    const image = await seed(t, target, 'managed-blobs', [])
    for (const [label, digest] of [['config', image.config.digest], ['layer', image.layers[0]?.digest ?? '']] as const) {
      // "Upon success, the registry MUST respond with code `202 Accepted`."
      const res = await del(b(digest))
      t.equal(res.status, 202, `DELETE of the ${label} blob: 202 ${seen(res)}`)
      t.equal((await call(b(digest), { method: 'HEAD' })).status, 404, `HEAD of the ${label} blob: 404`)
      const get = await call(b(digest))
      t.equal(get.status, 404, `GET of the ${label} blob: 404`)
      assertErrorBody(t, get, 'BLOB_UNKNOWN', `GET of the deleted ${label} blob`)
    }
    // "If the blob is not found, a `404 Not Found` code MUST be returned."
    const absent = await del(b(absentDigest()))
    t.equal(absent.status, 404, `DELETE of a blob that was never pushed: 404 ${seen(absent)}`)
    assertErrorBody(t, absent, 'BLOB_UNKNOWN', 'DELETE of a missing blob')
  })

  await t.test('a deleted referrer leaves the referrers list', async t => {
    // §Listing Referrers: "Each descriptor is of an image manifest or index in the same `<name>` namespace with a
    // `subject` field that specifies the value of `<digest>`" — a deleted manifest is no longer one.
    await pushBlob(t, url, repo, EMPTY_JSON, 'the empty JSON blob')
    const subject = await seed(t, target, 'managed-subject', ['mgmt-subject'])
    const referrer = imageManifest({
      artifactType: 'application/vnd.example.conformance.delete',
      config: { mediaType: OCI_EMPTY, digest: sha256(EMPTY_JSON), size: 2 },
      subject: descriptorOf(subject.manifest),
      annotations: { [ANNOTATION]: 'to be deleted' },
    })
    const put = await putManifest(url, repo, referrer.digest, referrer)
    t.equal(put.status, 201, 'setup: the referrer is pushed')
    const list = async (): Promise<string[]> =>
      (((await call(`${url}/v2/${repo}/referrers/${subject.manifest.digest}`)).json as { manifests?: { digest: string }[] } | undefined)?.manifests ?? []).map(d => d.digest)
    t.ok((await list()).includes(referrer.digest), 'listed before the DELETE')
    const res = await del(m(referrer.digest))
    t.equal(res.status, 202, `DELETE of the referrer: 202 ${seen(res)}`)
    t.notOk((await list()).includes(referrer.digest), 'not listed after it')
  })
}

export interface Refusal {
  /** A status the registry promises, narrower than the spec's 400-or-405. */
  status?: number
  /** The error code it promises. */
  code?: string
}

/**
 * "If tag deletion is disabled, the registry MUST respond with either a `400 Bad Request` or a `405 Method Not
 * Allowed`." (and the same sentence for manifests and blobs). The Go suite wants UNSUPPORTED in a 400's body.
 */
export async function managementDisabled(t: Test, target: Target, promise: Refusal = {}): Promise<void> {
  const { url, repo } = target
  const image = await seed(t, target, 'undeletable', ['no-delete'])
  const cases: [string, string][] = [
    ['a tag', `${url}/v2/${repo}/manifests/no-delete`],
    ['a manifest by digest', `${url}/v2/${repo}/manifests/${image.manifest.digest}`],
    ['a blob', `${url}/v2/${repo}/blobs/${image.config.digest}`],
  ]
  for (const [label, target] of cases) {
    await t.test(`DELETE of ${label} is refused`, async t => {
      const res = await del(target)
      t.ok(res.status === 400 || res.status === 405, `400 or 405: ${seen(res)}`)
      assertErrorBody(t, res, res.status === 400 ? 'UNSUPPORTED' : undefined, `the ${res.status}`)
      if (promise.status !== undefined) t.equal(res.status, promise.status, `the promised ${promise.status}`)
      if (promise.code !== undefined) t.same(res.codes, [promise.code], `the promised ${promise.code}`)
    })
  }
  await t.test('nothing was deleted', async t => {
    t.equal((await call(`${url}/v2/${repo}/manifests/no-delete`, { headers: ACCEPT })).status, 200, 'the tag resolves')
    t.equal((await call(`${url}/v2/${repo}/manifests/${image.manifest.digest}`, { headers: ACCEPT })).status, 200, 'the manifest is there')
    t.equal((await call(`${url}/v2/${repo}/blobs/${image.config.digest}`, { method: 'HEAD' })).status, 200, 'the blob is there')
  })
}
