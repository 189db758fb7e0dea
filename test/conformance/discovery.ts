/**
 * Category 3, Content Discovery (§Listing Tags, §Listing Referrers): the tag
 * list with `n`, `last` and `Link`, and the referrers index with its
 * artifactType filter. The referrer set mirrors the Go suite's
 * 03_discovery_test.go "References setup": a manifest typed by its config, one
 * by `artifactType` over the empty config, an index, and a referrer of a
 * subject that does not exist.
 */
import type { Test } from 'tap'
import { ANNOTATION, EMPTY_JSON, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, descriptorOf, imageIndex, imageManifest, uploadImage, type Descriptor } from './fixtures.js'
import { absentDigest, assertErrorBody, call, pushBlob, putManifest, seen, sha256, uniqueBytes, type Answer, type Pushed, type Target } from './http.js'

const TYPE_A = 'application/vnd.example.conformance.a'
const TYPE_B = 'application/vnd.example.conformance.b'
const TYPE_INDEX = 'application/vnd.example.conformance.index'
const TAGS = ['disc-a', 'disc-b', 'disc-c', 'disc-d', 'disc-e', 'disc-f']

interface TagList {
  name: string
  tags: string[]
}

interface Index {
  schemaVersion: number
  mediaType: string
  manifests: Descriptor[]
}

const tagsOf = (a: Answer): string[] => ((a.json as TagList | undefined)?.tags ?? []).slice()

/** RFC 5988 `<url>; rel="next"`, resolved against the registry. */
function nextLink(base: string, a: Answer): URL | undefined {
  const link = a.headers.get('link')
  const match = link === null ? null : /<([^>]+)>\s*;\s*rel="?next"?/.exec(link)
  return match?.[1] === undefined ? undefined : new URL(match[1], base)
}

async function tagLists(t: Test, target: Target): Promise<void> {
  const { url, repo } = target
  const all = await call(`${url}/v2/${repo}/tags/list`)
  // "Assuming a repository is found, this request MUST return a `200 OK` response code."
  t.equal(all.status, 200, 'GET tags/list: 200')
  // "Upon success, the response MUST be a json body in the following format: {"name": "<name>", "tags": [...]}"
  t.match(all.json, { name: repo, tags: Array }, 'the body is {name, tags}')
  const full = tagsOf(all)
  for (const tag of TAGS) t.ok(full.includes(tag), `the list has ${tag}`)
  // "If the list is not empty, the tags MUST be in lexical order (i.e. case-insensitive alphanumeric order)."
  t.same(full, full.slice().sort(), 'the tags are in lexical order')
  const half = Math.max(1, Math.floor(full.length / 2))

  const limited = await call(`${url}/v2/${repo}/tags/list?n=${half}`)
  t.equal(limited.status, 200, `?n=${half}: 200`)
  // "The response to such a request MAY return fewer than `<int>` results, but only when the total number of tags
  // attached to the repository is less than `<int>` or a `Link` header is provided. Otherwise, the response MUST
  // include `<int>` results."
  const page = tagsOf(limited)
  const link = nextLink(url, limited)
  if (link === undefined) t.equal(page.length, half, `?n=${half}: exactly ${half} tags without a Link`)
  t.ok(page.length <= half, `?n=${half}: no more than ${half} tags`)
  t.same(page, full.slice(0, page.length), `?n=${half}: the first tags of the list`)
  if (limited.headers.get('link') === null) t.comment('no Link header while more tags remain (MAY)')
  else {
    // "If included, the `Link` header MUST be set according to RFC5988 with the Relation Type `rel="next"`."
    t.ok(link, `the Link header is rel="next": ${limited.headers.get('link')}`)
    if (link !== undefined) {
      const next = await call(link)
      t.equal(next.status, 200, 'following the Link: 200')
      const rest = tagsOf(next)
      t.same(rest, full.slice(page.length, page.length + rest.length), 'the next page goes on where the first stopped')
      t.ok(rest.length > 0, 'the next page is not empty')
    }
  }

  // "When `n` is zero, this endpoint MUST return an empty list, and MUST NOT include a `Link` header."
  const zero = await call(`${url}/v2/${repo}/tags/list?n=0`)
  t.equal(zero.status, 200, '?n=0: 200')
  t.same(tagsOf(zero), [], '?n=0: an empty list')
  t.equal(zero.headers.get('link'), null, '?n=0: no Link header')

  // "A request of this sort will return up to `<int>` tags, beginning non-inclusively with `<tagname>`."
  const lastTag = full[1] ?? ''
  const after = await call(`${url}/v2/${repo}/tags/list?n=2&last=${lastTag}`)
  t.equal(after.status, 200, `?n=2&last=${lastTag}: 200`)
  const afterTags = tagsOf(after)
  t.ok(afterTags.length <= 2, 'no more than n tags')
  t.same(afterTags, full.slice(2, 2 + afterTags.length), 'the tags after last, in order, last itself excluded')
  if (nextLink(url, after) === undefined) t.equal(afterTags.length, Math.min(2, full.length - 2), 'n tags when that many remain and no Link')
  // "When using the `last` query parameter, the `n` parameter is OPTIONAL."
  const onlyLast = await call(`${url}/v2/${repo}/tags/list?last=${lastTag}`)
  t.equal(onlyLast.status, 200, `?last=${lastTag}: 200`)
  const onlyLastTags = tagsOf(onlyLast)
  t.same(onlyLastTags, full.slice(2, 2 + onlyLastTags.length), '?last= alone: the tags after last')
  t.ok(onlyLastTags.length > 0, '?last= alone: not empty')

  // §Endpoints end-8a: failure `404` ("Assuming a repository is found").
  const unknown = await call(`${url}/v2/${repo}/never-pushed/tags/list`)
  t.equal(unknown.status, 404, `an unknown repository: 404 ${seen(unknown)}`)
  assertErrorBody(t, unknown, 'NAME_UNKNOWN', 'tags/list of an unknown repository')
}

/** "The `Content-Type` header MUST be set to `application/vnd.oci.image.index.v1+json`", and the body is an image index. */
function assertIndex(t: Test, a: Answer, label: string): Index {
  t.equal(a.status, 200, `${label}: 200`, { found: seen(a) })
  t.equal(a.headers.get('content-type'), OCI_INDEX, `${label}: Content-Type is the OCI index media type`)
  const index = (a.json ?? {}) as Index
  t.equal(index.schemaVersion, 2, `${label}: schemaVersion 2`)
  t.equal(index.mediaType, OCI_INDEX, `${label}: mediaType is the OCI index`)
  t.ok(Array.isArray(index.manifests), `${label}: manifests is an array`)
  return { ...index, manifests: Array.isArray(index.manifests) ? index.manifests : [] }
}

async function referrers(t: Test, target: Target): Promise<void> {
  const { url, repo } = target
  await pushBlob(t, url, repo, EMPTY_JSON, 'the empty JSON blob')
  const subject = await uploadImage(t, url, repo, 'referred', 1)
  await putManifest(url, repo, 'referred', subject.manifest)
  const subj = descriptorOf(subject.manifest)
  const layer = uniqueBytes('referrer-layer', 256)
  await pushBlob(t, url, repo, layer, 'referrer layer')
  const configA = uniqueBytes('config-typed', 80)
  await pushBlob(t, url, repo, configA, 'typed config')
  const emptyConfig = { mediaType: OCI_EMPTY, digest: sha256(EMPTY_JSON), size: 2 }
  const layers = [{ mediaType: TYPE_A, digest: sha256(layer), size: layer.length }]

  // Each expected descriptor: "The descriptors MUST include an `artifactType` field that is set to the value of the
  // `artifactType` in the image manifest or index, if present. If the `artifactType` is empty or missing in the image
  // manifest, the value of `artifactType` MUST be set to the config descriptor `mediaType` value. If the
  // `artifactType` is empty or missing in an index, the `artifactType` MUST be omitted. The descriptors MUST include
  // annotations from the image manifest or index."
  const made: { doc: Pushed; artifactType: string | undefined; note: string }[] = []
  const add = async (doc: Pushed, artifactType: string | undefined, note: string): Promise<void> => {
    const put = await putManifest(url, repo, doc.digest, doc)
    t.equal(put.status, 201, `setup: PUT referrer ${note}: 201`, { found: seen(put) })
    // "When processing a request for an image manifest with the `subject` field, a registry implementation that
    // supports the referrers API MUST respond with the response header `OCI-Subject: <subject digest>`". The Go
    // suite asks it of indexes too; the sentence names image manifests, so for an index it is only a comment.
    if (doc.mediaType === OCI_MANIFEST) t.equal(put.headers.get('oci-subject'), subj.digest, `setup: ${note}: OCI-Subject`)
    else if (put.headers.get('oci-subject') !== subj.digest) t.comment(`${note}: no OCI-Subject on an index PUT (the Go suite expects one)`)
    made.push({ doc, artifactType, note })
  }
  await add(imageManifest({ config: { mediaType: TYPE_A, digest: sha256(configA), size: configA.length }, layers, subject: subj, annotations: { [ANNOTATION]: 'typed by config' } }), TYPE_A, 'typed by its config')
  await add(imageManifest({ artifactType: TYPE_A, config: emptyConfig, layers, subject: subj, annotations: { [ANNOTATION]: 'artifactType a' } }), TYPE_A, 'with artifactType a')
  await add(imageManifest({ artifactType: TYPE_B, config: emptyConfig, layers, subject: subj, annotations: { [ANNOTATION]: 'artifactType b' } }), TYPE_B, 'with artifactType b')
  await add(imageIndex([subj], { artifactType: TYPE_INDEX, subject: subj, annotations: { [ANNOTATION]: 'typed index' } }), TYPE_INDEX, 'an index with artifactType')
  await add(imageIndex([subj], { subject: subj, annotations: { [ANNOTATION]: 'untyped index' } }), undefined, 'an index without artifactType')

  await t.test('referrers of the subject', async t => {
    const index = assertIndex(t, await call(`${url}/v2/${repo}/referrers/${subj.digest}`), 'GET referrers')
    t.same(index.manifests.map(d => d.digest).sort(), made.map(m => m.doc.digest).sort(), 'every referrer, once')
    for (const { doc, artifactType, note } of made) {
      const d = index.manifests.find(x => x.digest === doc.digest)
      if (d === undefined) continue
      t.equal(d.mediaType, doc.mediaType, `${note}: mediaType`)
      t.equal(d.size, doc.size, `${note}: size`)
      if (artifactType === undefined) t.notOk('artifactType' in d, `${note}: artifactType omitted`)
      else t.equal(d.artifactType, artifactType, `${note}: artifactType ${artifactType}`)
      t.same(d.annotations, JSON.parse(doc.bytes.toString()).annotations, `${note}: the annotations of the manifest`)
    }
  })

  await t.test('referrers filtered by artifactType', async t => {
    // "The registry SHOULD support filtering on `artifactType`." ... "If filtering is requested and applied, the
    // response MUST include a header `OCI-Filters-Applied: artifactType`". As in the Go suite, an unfiltered answer
    // without the header is allowed and must then list everything.
    const res = await call(`${url}/v2/${repo}/referrers/${subj.digest}?artifactType=${encodeURIComponent(TYPE_A)}`)
    const index = assertIndex(t, res, 'GET ?artifactType=')
    const applied = res.headers.get('oci-filters-applied')
    if (applied === null) {
      t.comment('artifactType filtering is not applied (SHOULD)')
      t.equal(index.manifests.length, made.length, 'unfiltered: every referrer')
      return
    }
    t.equal(applied, 'artifactType', 'OCI-Filters-Applied: artifactType')
    t.same(index.manifests.map(d => d.digest).sort(), made.filter(m => m.artifactType === TYPE_A).map(m => m.doc.digest).sort(), 'only the referrers of that type')
    const none = await call(`${url}/v2/${repo}/referrers/${subj.digest}?artifactType=${encodeURIComponent('application/vnd.example.nothing')}`)
    const empty = assertIndex(t, none, 'GET ?artifactType= of a type no referrer has')
    t.equal(none.headers.get('oci-filters-applied'), 'artifactType', 'announced again')
    t.same(empty.manifests, [], 'an empty list')
  })

  await t.test('referrers of a subject that was never pushed', async t => {
    const missing = { mediaType: OCI_MANIFEST, digest: absentDigest(), size: 77 }
    const doc = imageManifest({ artifactType: TYPE_B, config: emptyConfig, layers, subject: missing, annotations: { [ANNOTATION]: 'dangling' } })
    const put = await putManifest(url, repo, doc.digest, doc)
    t.equal(put.status, 201, 'a referrer of a missing subject is accepted')
    t.equal(put.headers.get('oci-subject'), missing.digest, 'OCI-Subject names the missing subject')
    // The Go suite's "GET request to missing manifest should yield 200": the one referrer.
    const index = assertIndex(t, await call(`${url}/v2/${repo}/referrers/${missing.digest}`), 'GET referrers of the missing subject')
    t.same(index.manifests.map(d => d.digest), [doc.digest], 'its one referrer')
  })

  await t.test('a digest nothing refers to: 200 and an empty index', async t => {
    // "If the registry supports the referrers API, the registry MUST NOT return a `404 Not Found` to a referrers API
    // requests." ... "If a query results in no matching referrers, an empty manifest list MUST be returned."
    const index = assertIndex(t, await call(`${url}/v2/${repo}/referrers/${absentDigest()}`), 'GET referrers')
    t.same(index.manifests, [], 'no descriptors')
  })

  await t.test('an invalid digest: 400', async t => {
    // "If the request is invalid, such as a `<digest>` with an invalid syntax, a `400 Bad Request` MUST be returned."
    const res = await call(`${url}/v2/${repo}/referrers/sha256:not-hex`)
    t.equal(res.status, 400, seen(res))
    assertErrorBody(t, res, undefined, 'the 400')
  })
}

export async function discovery(t: Test, target: Target): Promise<void> {
  const image = await uploadImage(t, target.url, target.repo, 'discovery', 1)
  for (const tag of TAGS) {
    const put = await putManifest(target.url, target.repo, tag, image.manifest)
    if (put.status !== 201) t.fail(`setup: PUT tag ${tag}: 201`, { found: seen(put) })
  }
  await t.test('tags list', t => tagLists(t, target))
  await t.test('referrers', t => referrers(t, target))
}
