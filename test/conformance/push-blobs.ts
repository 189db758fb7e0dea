/**
 * Category 2, Push, the blob half (§Pushing blobs, §Mounting a blob): POST
 * then PUT, single POST, streamed and chunked PATCHes, the upload status
 * GET, digest mismatches, cancelled and unknown sessions, and mounts. The
 * order follows the Go suite's 02_push_test.go ("Blob Upload Streamed",
 * "Blob Upload Monolithic", "Blob Upload Chunked", "Cross-Repository Blob
 * Mount").
 */
import { randomUUID } from 'node:crypto'
import type { Test } from 'tap'
import {
  absentDigest,
  assertErrorBody,
  call,
  location,
  optionalHeader,
  pushBlob,
  seen,
  sha256,
  uniqueBytes,
  withQuery,
  type Answer,
  type Target,
} from './http.js'

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i
const OCTETS = { 'Content-Type': 'application/octet-stream' }

/** POST /v2/<name>/blobs/uploads/ with an empty body, as §Pushing a blob in chunks asks ("MUST include ... `Content-Length: 0`"). */
const startUpload = (target: Target): Promise<Answer> =>
  call(`${target.url}/v2/${target.repo}/blobs/uploads/`, { method: 'POST', body: Buffer.alloc(0) })

/** A session's answer: the status, and the Location the spec makes a MUST with it. */
function assertSession(t: Test, target: Target, a: Answer, status: number, label: string): URL | undefined {
  t.equal(a.status, status, `${label}: ${status}`, { found: seen(a) })
  const loc = location(target.url, a)
  t.ok(loc, `${label}: has a Location`)
  return loc
}

/** A finished upload: "MUST have code `201 Created` and MUST have the following header: Location: <blob-location>", a pullable URL. */
async function assertCreated(t: Test, target: Target, a: Answer, data: Buffer, label: string): Promise<void> {
  t.equal(a.status, 201, `${label}: 201`, { found: seen(a) })
  optionalHeader(t, a, 'docker-content-digest', sha256(data), label)
  const loc = location(target.url, a)
  t.ok(loc, `${label}: has a Location`)
  if (loc === undefined) return
  const get = await call(loc)
  t.equal(get.status, 200, `${label}: the Location is a pullable blob URL`, { found: seen(get) })
  t.ok(get.body.equals(data), `${label}: the Location serves the blob`)
}

export async function pushBlobs(t: Test, target: Target): Promise<void> {
  const { url, repo } = target

  await t.test('POST starts a session: 202, a Location with a UUID, one per session', async t => {
    // "Upon success, the response MUST have a code of `202 Accepted`, and MUST include the following header: Location"
    // "The `<location>` MUST contain a UUID representing a unique session ID for the upload to follow."
    const a = await startUpload(target)
    const b = await startUpload(target)
    const locA = assertSession(t, target, a, 202, 'first POST')
    const locB = assertSession(t, target, b, 202, 'second POST')
    t.match(locA?.href ?? '', UUID, 'the Location contains a UUID')
    t.not(locA?.href, locB?.href, 'two sessions have two Locations')
  })

  await t.test('streamed: PATCH without Content-Range, then PUT ?digest=', async t => {
    // The Go suite's "PATCH request with blob in body should yield 202 response", then the closing PUT without a body.
    const data = uniqueBytes('streamed', 3000)
    const loc = assertSession(t, target, await startUpload(target), 202, 'POST')
    if (loc === undefined) return
    const patch = await call(loc, { method: 'PATCH', body: data, headers: OCTETS })
    const next = assertSession(t, target, patch, 202, 'PATCH')
    if (next === undefined) return
    const put = await call(withQuery(next, { digest: sha256(data) }), { method: 'PUT', headers: OCTETS, body: Buffer.alloc(0) })
    await assertCreated(t, target, put, data, 'PUT')
  })

  await t.test('monolithic: POST then PUT with the blob', async t => {
    const data = uniqueBytes('post-put', 2048)
    const loc = assertSession(t, target, await startUpload(target), 202, 'POST')
    if (loc === undefined) return
    const put = await call(withQuery(loc, { digest: sha256(data) }), { method: 'PUT', body: data, headers: OCTETS })
    await assertCreated(t, target, put, data, 'PUT')
  })

  await t.test('monolithic: a single POST ?digest= with the blob', async t => {
    // "Registries MAY support pushing blobs using a single POST request." / "Registries that do not support single
    // request monolithic uploads SHOULD return a `202 Accepted` status code and `Location` header"
    const data = uniqueBytes('single-post', 1500)
    const post = await call(`${url}/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, { method: 'POST', body: data, headers: OCTETS })
    if (post.status === 202) {
      t.comment('single-POST uploads are not supported: 202, the client goes on with PUT (allowed)')
      const loc = assertSession(t, target, post, 202, 'POST')
      if (loc === undefined) return
      const put = await call(withQuery(loc, { digest: sha256(data) }), { method: 'PUT', body: data, headers: OCTETS })
      await assertCreated(t, target, put, data, 'PUT after the 202')
      return
    }
    // "Successful completion of the request MUST return a `201 Created` and MUST include the following header: Location"
    await assertCreated(t, target, post, data, 'POST')
  })

  await t.test('chunked: out of order, in order, status, retry, final PUT', async t => {
    const post = await startUpload(target)
    // "If the registry has a minimum chunk size, the `POST` response SHOULD include ... `OCI-Chunk-Min-Length: <size>`"
    const min = Number(post.headers.get('oci-chunk-min-length') ?? '0')
    const chunkSize = Math.max(1024, Number.isSafeInteger(min) ? min : 0)
    const data = uniqueBytes('chunked', chunkSize * 2 + 100)
    const [first, second] = [data.subarray(0, chunkSize), data.subarray(chunkSize)]
    const patch = (loc: URL, chunk: Buffer, start: number): Promise<Answer> =>
      call(loc, { method: 'PATCH', body: chunk, headers: { ...OCTETS, 'Content-Range': `${start}-${start + chunk.length - 1}` } })

    // "If a chunk is uploaded out of order, the registry MUST respond with a `416 Requested Range Not Satisfiable` code."
    const stray = assertSession(t, target, post, 202, 'POST of the out-of-order session')
    if (stray !== undefined) {
      const res = await patch(stray, second, chunkSize)
      t.equal(res.status, 416, `a first chunk that does not start at 0 answers 416: ${seen(res)}`)
      // The spec names no code for a 416; a JSON body must still use one of its codes.
      assertErrorBody(t, res, undefined, 'the out-of-order 416')
    }

    const start = assertSession(t, target, await startUpload(target), 202, 'POST')
    if (start === undefined) return
    // "Each successful chunk upload MUST have a `202 Accepted` response code, and MUST have the following headers: Location, Range: 0-<end-of-range>"
    const one = await patch(start, first, 0)
    const afterOne = assertSession(t, target, one, 202, 'PATCH of the first chunk')
    t.equal(one.headers.get('range'), `0-${chunkSize - 1}`, 'PATCH: Range is 0-<end of the first chunk>')

    // The Go suite's "Retry previous blob chunk should return 416": the session's offset has moved past it.
    const retry = await patch(start, first, 0)
    t.equal(retry.status, 416, `the first chunk again answers 416: ${seen(retry)}`)
    assertErrorBody(t, retry, undefined, 'the retried chunk\'s 416')

    // "The response to an active upload `<location>` MUST be a `204 No Content` response code, and MUST have the
    // following headers: Location, Range: 0-<end-of-range>"
    const status = await call(afterOne ?? start)
    const fromStatus = assertSession(t, target, status, 204, 'GET of the session')
    t.equal(status.headers.get('range'), `0-${chunkSize - 1}`, 'GET: Range is 0-<end of the first chunk>')

    const two = await patch(fromStatus ?? afterOne ?? start, second, chunkSize)
    const afterTwo = assertSession(t, target, two, 202, 'PATCH of the second chunk')
    t.equal(two.headers.get('range'), `0-${data.length - 1}`, 'PATCH: Range is 0-<end of the blob>')
    if (afterTwo === undefined) return
    // "The closing `PUT` request MUST include the `<digest>` of the whole blob (not the final chunk) as a query parameter."
    const put = await call(withQuery(afterTwo, { digest: sha256(data) }), { method: 'PUT', headers: OCTETS, body: Buffer.alloc(0) })
    await assertCreated(t, target, put, data, 'closing PUT')
  })

  await t.test('chunked: the final chunk in the closing PUT', async t => {
    // "The final chunk MAY be uploaded using a `PATCH` request or it MAY be uploaded in the closing `PUT` request."
    const data = uniqueBytes('chunked-put', 4000)
    const [first, last] = [data.subarray(0, 2500), data.subarray(2500)]
    const loc = assertSession(t, target, await startUpload(target), 202, 'POST')
    if (loc === undefined) return
    const one = await call(loc, { method: 'PATCH', body: first, headers: { ...OCTETS, 'Content-Range': `0-${first.length - 1}` } })
    const next = assertSession(t, target, one, 202, 'PATCH')
    if (next === undefined) return
    const put = await call(withQuery(next, { digest: sha256(data) }), {
      method: 'PUT',
      body: last,
      headers: { ...OCTETS, 'Content-Range': `${first.length}-${data.length - 1}` },
    })
    await assertCreated(t, target, put, data, 'PUT with the last chunk')
  })

  await t.test('a digest that does not match the bytes: 400 DIGEST_INVALID, nothing stored', async t => {
    // §Endpoints end-6 (PUT upload): failure `404`/`400`; §Error Codes code-4 DIGEST_INVALID:
    // "provided digest did not match uploaded content".
    const data = uniqueBytes('mismatch', 500)
    const claimed = absentDigest()
    const loc = assertSession(t, target, await startUpload(target), 202, 'POST')
    if (loc !== undefined) {
      const put = await call(withQuery(loc, { digest: claimed }), { method: 'PUT', body: data, headers: OCTETS })
      t.equal(put.status, 400, `PUT: 400 ${seen(put)}`)
      assertErrorBody(t, put, 'DIGEST_INVALID', 'PUT')
    }
    const single = await call(`${url}/v2/${repo}/blobs/uploads/?digest=${claimed}`, { method: 'POST', body: data, headers: OCTETS })
    if (single.status === 202) t.comment('single POST not supported: the mismatch is not seen until a PUT')
    else {
      // end-4b (POST ?digest=): failure `404`/`400`.
      t.equal(single.status, 400, `single POST: 400 ${seen(single)}`)
      assertErrorBody(t, single, 'DIGEST_INVALID', 'single POST')
    }
    // The rewritten Go suite's "bad digest chunked" and "bad digest stream": the closing PUT names the wrong digest.
    for (const [label, range] of [['chunked', `0-${data.length - 1}`], ['streamed', undefined]] as const) {
      const start = assertSession(t, target, await startUpload(target), 202, `${label} POST`)
      if (start === undefined) continue
      const patch = await call(start, { method: 'PATCH', body: data, headers: range === undefined ? OCTETS : { ...OCTETS, 'Content-Range': range } })
      const next = assertSession(t, target, patch, 202, `${label} PATCH`)
      if (next === undefined) continue
      const put = await call(withQuery(next, { digest: claimed }), { method: 'PUT', headers: OCTETS, body: Buffer.alloc(0) })
      t.equal(put.status, 400, `${label} closing PUT: 400 ${seen(put)}`)
      assertErrorBody(t, put, 'DIGEST_INVALID', `${label} closing PUT`)
    }
    for (const digest of [claimed, sha256(data)]) {
      const head = await call(`${url}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })
      t.equal(head.status, 404, `no blob stored under ${digest === claimed ? 'the claimed' : 'the real'} digest`)
    }
  })

  await t.test('a nonexistent upload: GET, PATCH and PUT answer 404 BLOB_UPLOAD_UNKNOWN', async t => {
    // §Endpoints end-13 (GET upload status), end-5 (PATCH), end-6 (PUT): failure `404`; code-3 BLOB_UPLOAD_UNKNOWN
    // "blob upload unknown to registry". The Go suite's "GET nonexistent upload".
    const session = `${url}/v2/${repo}/blobs/uploads/${randomUUID()}`
    const data = uniqueBytes('no-session', 100)
    const answers = [
      ['GET', await call(session)],
      ['PATCH', await call(session, { method: 'PATCH', body: data, headers: { ...OCTETS, 'Content-Range': `0-${data.length - 1}` } })],
      ['PUT', await call(`${session}?digest=${sha256(data)}`, { method: 'PUT', body: data, headers: OCTETS })],
    ] as const
    for (const [label, res] of answers) {
      t.equal(res.status, 404, `${label}: 404 ${seen(res)}`)
      assertErrorBody(t, res, 'BLOB_UPLOAD_UNKNOWN', label)
    }
  })

  await t.test('a finished upload is no longer an active session', async t => {
    const data = uniqueBytes('finished', 400)
    const loc = assertSession(t, target, await startUpload(target), 202, 'POST')
    if (loc === undefined) return
    const put = await call(withQuery(loc, { digest: sha256(data) }), { method: 'PUT', body: data, headers: OCTETS })
    t.equal(put.status, 201, 'PUT: 201')
    // end-13 answers 204 only for "an active upload"; after the closing PUT the session is gone.
    const status = await call(loc)
    t.equal(status.status, 404, `GET of the finished session: 404 ${seen(status)}`)
    assertErrorBody(t, status, 'BLOB_UPLOAD_UNKNOWN', 'GET of the finished session')
  })

  await t.test('cancel an upload: DELETE the session, then it is unknown', async t => {
    // Not in v1.1; spec.md on main (§Cancel a blob upload, end-14): "If successful, the response SHOULD be a
    // `204 No Content` response code." The rewritten Go suite runs it as "post cancel".
    const loc = assertSession(t, target, await startUpload(target), 202, 'POST')
    if (loc === undefined) return
    const patch = await call(loc, { method: 'PATCH', body: uniqueBytes('cancelled', 700), headers: { ...OCTETS, 'Content-Range': '0-699' } })
    const next = assertSession(t, target, patch, 202, 'PATCH')
    const del = await call(next ?? loc, { method: 'DELETE', body: Buffer.alloc(0) })
    if (del.status !== 204) t.comment(`DELETE of the session answered ${del.status}, not 204 (SHOULD): ${seen(del)}`)
    t.ok(del.status >= 200 && del.status < 300, `DELETE of the session succeeds: ${seen(del)}`)
    const status = await call(next ?? loc)
    t.equal(status.status, 404, `GET of the cancelled session: 404 ${seen(status)}`)
    assertErrorBody(t, status, 'BLOB_UPLOAD_UNKNOWN', 'GET after DELETE')
  })

  await t.test('the empty descriptor blob `{}`', async t => {
    const data = Buffer.from('{}')
    t.equal(sha256(data), 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', 'the empty JSON digest')
    const loc = assertSession(t, target, await startUpload(target), 202, 'POST')
    if (loc === undefined) return
    const put = await call(withQuery(loc, { digest: sha256(data) }), { method: 'PUT', body: data, headers: OCTETS })
    await assertCreated(t, target, put, data, 'PUT')
    const head = await call(`${url}/v2/${repo}/blobs/${sha256(data)}`, { method: 'HEAD' })
    t.equal(head.status, 200, 'HEAD: 200')
    optionalHeader(t, head, 'content-length', '2', 'HEAD')
  })

  await t.test('cross-repository mount', async t => {
    const data = uniqueBytes('mounted', 1800)
    const digest = await pushBlob(t, url, target.crossRepo, data, 'the blob in the other repository')
    // "If the blob is not found in the repository, the response code MUST be `404 Not Found`": blobs are per repository.
    const before = await call(`${url}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })
    t.equal(before.status, 404, 'before the mount, the blob is not in the target repository')
    const mount = await call(`${url}/v2/${repo}/blobs/uploads/?mount=${digest}&from=${target.crossRepo}`, { method: 'POST', body: Buffer.alloc(0) })
    if (mount.status === 202) {
      // "if a registry does not support cross-repository mounting or is unable to mount the requested blob, it SHOULD return a `202`."
      t.comment('the mount was not made: 202 and an upload session (SHOULD-level)')
      assertSession(t, target, mount, 202, 'mount POST')
    } else {
      // "The response to a successful mount MUST be `201 Created`, and MUST contain the following header: Location"
      await assertCreated(t, target, mount, data, 'mount POST')
      // The Go suite wants the Location to be exactly /v2/<name>/blobs/<digest>; the spec only asks for a pullable URL.
      const path = location(url, mount)?.pathname
      if (path !== `/v2/${repo}/blobs/${digest}`) t.comment(`the mount's Location is ${String(path)}, not /v2/${repo}/blobs/${digest} (the Go suite's expectation)`)
      const head = await call(`${url}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })
      t.equal(head.status, 200, 'the blob is now in the target repository')
    }

    // The Go suite's "Cross-mounting of nonexistent blob should yield session id": SHOULD 202 in the spec; never a 201.
    const missing = absentDigest()
    const absent = await call(`${url}/v2/${repo}/blobs/uploads/?mount=${missing}&from=${target.crossRepo}`, { method: 'POST', body: Buffer.alloc(0) })
    t.not(absent.status, 201, `mounting a blob that is nowhere does not claim success: ${seen(absent)}`)
    if (absent.status === 202) t.ok(location(url, absent), 'the 202 carries an upload Location')
    else t.comment(`mounting a missing blob answered ${absent.status}, not 202 (SHOULD): ${seen(absent)}`)

    // The Go suite's "Cross-mounting of a blob without the from argument should yield session id".
    const noFrom = await call(`${url}/v2/${repo}/blobs/uploads/?mount=${missing}`, { method: 'POST', body: Buffer.alloc(0) })
    t.not(noFrom.status, 201, `a mount without from of a missing blob does not claim success: ${seen(noFrom)}`)
    if (noFrom.status === 202) t.ok(location(url, noFrom), 'the 202 carries an upload Location')
    else t.comment(`mount without from answered ${noFrom.status}, not 202 (SHOULD): ${seen(noFrom)}`)
  })
}
