// The S3 driver against a real S3 (a one-node Ceph radosgw of this file's own): the driver
// contract, the key layout Distribution reads (checked with a raw client and with Distribution
// itself on the same bucket), no multipart upload left open, and recover().
import t, { type Test } from 'tap'
import { createServer, type Socket } from 'node:net'
import {
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { isPathNotFound } from '../../src/storage/driver.js'
import { partRanges, S3Driver, type S3DriverOptions, s3Key, S3OptionsError, S3RequestError } from '../../src/storage/s3.js'
import { startCeph } from '../helpers/ceph.js'
import { driverContract } from '../helpers/driver-contract.js'
import { startDistribution } from '../helpers/distribution.js'

const MiB = 1024 * 1024
const started = Date.now()
const ceph = await startCeph(t)
t.comment(`ceph up in ${Date.now() - started} ms at ${ceph.endpoint} (${ceph.dir})`)
t.comment(readFileSync(`${ceph.dir}/log/start.log`, "utf8"))

let buckets = 0
const used: string[] = []
/** A driver on a fresh bucket, with the smallest parts S3 allows so that the large-file tests cross several. */
async function driver(t: Test, options: Partial<S3DriverOptions> = {}): Promise<S3Driver> {
  const bucket = options.bucket ?? (await ceph.bucket(`b${++buckets}-${process.pid}`))
  used.push(bucket)
  const d = new S3Driver({
    region: 'us-east-1',
    bucket,
    regionendpoint: ceph.endpoint,
    accesskey: ceph.accessKey,
    secretkey: ceph.secretKey,
    forcepathstyle: true,
    rootdirectory: '/stevedore/',
    chunksize: 5 * MiB,
    multipartcopythresholdsize: 5 * MiB,
    multipartcopychunksize: 5 * MiB,
    ...options,
  })
  t.teardown(() => d.destroy())
  return d
}

const openUploads = async (bucket: string): Promise<string[]> =>
  ((await ceph.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).map(u => u.Key ?? '')

t.test('driver contract', async t => driverContract(t, t => driver(t)))

t.test('the contract left no multipart upload open', async t => {
  for (const bucket of used) t.same(await openUploads(bucket), [], bucket)
})

t.test('keys are where Distribution puts them (s3Path)', async t => {
  const table: [string, string, string][] = [
    ['', '/docker/registry/v2/x', 'docker/registry/v2/x'],
    ['/', '/docker/registry/v2/x', 'docker/registry/v2/x'],
    ['/reg/', '/docker/registry/v2/x', 'reg/docker/registry/v2/x'],
    ['reg', '/docker/registry/v2/x', 'reg/docker/registry/v2/x'],
    ['//a/b//', '/docker/registry/v2/x', 'a/b/docker/registry/v2/x'],
    ['/reg', '/', 'reg/'],
    ['', '/', ''],
  ]
  for (const [root, path, key] of table) t.equal(s3Key(root, path), key, `${JSON.stringify(root)} + ${path}`)

  const blob = `/docker/registry/v2/blobs/sha256/ab/ab${'0'.repeat(62)}/data`
  for (const root of ['', '/reg/']) {
    // secure: false and an endpoint without a scheme, as Distribution's config writes it
    const d = await driver(t, { rootdirectory: root, regionendpoint: ceph.endpoint.replace('http://', ''), secure: false })
    const w = await d.writer(blob)
    await w.write(Buffer.from('layer'))
    await w.commit()
    const key = `${root === '' ? '' : 'reg/'}docker/registry/v2/blobs/sha256/ab/ab${'0'.repeat(62)}/data`
    const head = await ceph.client.send(new HeadObjectCommand({ Bucket: d.bucket, Key: key }))
    t.equal(head.ContentLength, 5, `root ${JSON.stringify(root)}: the object is at ${key}`)
    await ceph.client.send(new PutObjectCommand({ Bucket: d.bucket, Key: key.replace(/data$/, 'link'), Body: 'written by another' }))
    t.equal((await d.getContent(blob.replace(/data$/, 'link'))).toString(), 'written by another', 'and the driver reads what others put there')
    t.same(await d.list('/docker/registry/v2/blobs/sha256/ab'), [`ab${'0'.repeat(62)}`])
  }
})

t.test('Distribution serves what the driver wrote, and the driver reads what Distribution wrote', async t => {
  const d = await driver(t, { rootdirectory: '/shared' })
  const s3 = {
    region: 'us-east-1',
    bucket: d.bucket,
    regionendpoint: ceph.endpoint,
    accesskey: ceph.accessKey,
    secretkey: ceph.secretKey,
    forcepathstyle: true,
    secure: false,
    rootdirectory: '/shared',
  }
  // Distribution 2.8's S3 driver panics at startup with AWS_CA_BUNDLE set (FIELD-NOTES); this process's SDK does not read it.
  const bundle = process.env.AWS_CA_BUNDLE
  delete process.env.AWS_CA_BUNDLE
  let registry
  try {
    registry = await startDistribution(t, { config: { storage: { filesystem: undefined, s3, redirect: { disable: true } } } })
  } finally {
    if (bundle !== undefined) process.env.AWS_CA_BUNDLE = bundle
  }
  const content = Buffer.from('a layer pushed to Distribution')
  const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`
  const start = await fetch(`${registry.url}/v2/shared/test/blobs/uploads/`, { method: 'POST' })
  t.equal(start.status, 202, 'upload started')
  const location = new URL(start.headers.get('location') ?? '', registry.url)
  location.searchParams.set('digest', digest)
  const put = await fetch(location, { method: 'PUT', body: content, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(put.status, 201, 'blob pushed')
  const hex = digest.slice('sha256:'.length)
  t.ok((await d.getContent(`/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`)).equals(content), 'the driver reads the blob Distribution wrote')
  t.same(await d.list('/docker/registry/v2/repositories/shared/test/_layers/sha256'), [hex], 'and its layer link')

  const ours = Buffer.from('a layer the driver wrote')
  const ourHex = createHash('sha256').update(ours).digest('hex')
  const w = await d.writer(`/docker/registry/v2/blobs/sha256/${ourHex.slice(0, 2)}/${ourHex}/data`)
  await w.write(ours)
  await w.commit()
  await d.putContent(`/docker/registry/v2/repositories/shared/test/_layers/sha256/${ourHex}/link`, `sha256:${ourHex}`)
  const got = await fetch(`${registry.url}/v2/shared/test/blobs/sha256:${ourHex}`)
  t.equal(got.status, 200, 'Distribution serves the blob the driver wrote')
  t.ok(Buffer.from(await got.arrayBuffer()).equals(ours))
})

t.test('writers leave no multipart upload open: commit, cancel, appending cancel', async t => {
  const d = await driver(t)
  const part = Buffer.alloc(5 * MiB + 1, 7)
  const committed = await d.writer('/u/committed')
  await committed.write(part)
  await committed.write(part)
  t.same(await openUploads(d.bucket), ['stevedore/u/committed'], 'an upload is open while parts are written')
  await committed.commit()
  t.equal((await d.stat('/u/committed'))?.size, part.length * 2)
  const cancelled = await d.writer('/u/cancelled')
  await cancelled.write(part)
  await cancelled.write(part)
  await cancelled.cancel()
  const appending = await d.writer('/u/committed', true)
  t.same(await openUploads(d.bucket), ['stevedore/u/committed'], 'an append to a large file copies it into a new upload at once')
  await appending.write(part)
  await appending.cancel()
  t.same(await openUploads(d.bucket), [], 'none left')
  t.equal(await d.stat('/u/cancelled'), undefined)
  t.equal((await d.stat('/u/committed'))?.size, part.length * 2, 'the appended-to file is as it was')
})

t.test('a failed part or completion fails the writer and leaves no upload open', async t => {
  const d = await driver(t)
  const part = Buffer.alloc(5 * MiB, 3)
  const upload = d.uploadPart.bind(d)
  let parts = 0
  d.uploadPart = async (...args) => {
    if (++parts === 2) throw new Error('injected part failure')
    return upload(...args)
  }
  const w = await d.writer('/f/part')
  const failed = await (async () => {
    for (let i = 0; i < 4; i++) await w.write(part)
  })().catch((e: unknown) => e)
  t.match(failed, { message: 'injected part failure' }, 'a later write reports the failed part')
  await t.rejects(w.commit(), { message: 'injected part failure' }, 'and so does the commit')
  t.same(await openUploads(d.bucket), [], 'the failed commit aborted the upload')
  await w.cancel()
  d.uploadPart = upload

  const complete = d.completeUpload.bind(d)
  d.completeUpload = async () => {
    throw new Error('injected completion failure')
  }
  const c = await d.writer('/f/complete')
  await c.write(part)
  await c.write(part)
  await t.rejects(c.commit(), { message: 'injected completion failure' })
  t.same(await openUploads(d.bucket), [], 'aborted without a cancel')
  await c.cancel()
  d.completeUpload = complete
  t.equal(await d.stat('/f/complete'), undefined, 'nothing written')
  t.equal(await d.abortUpload('stevedore/f/none', 'no-such-upload-id'), false, 'an upload already gone')
})

t.test('recover aborts uploads older than an hour under the root, and only those', async t => {
  let now = Date.now()
  const d = await driver(t, { now: () => now })
  const open = async (key: string): Promise<void> => {
    const { UploadId } = await ceph.client.send(new CreateMultipartUploadCommand({ Bucket: d.bucket, Key: key }))
    await ceph.client.send(new UploadPartCommand({ Bucket: d.bucket, Key: key, UploadId, PartNumber: 1, Body: Buffer.alloc(1000) }))
  }
  await open('stevedore/docker/registry/v2/repositories/r/_uploads/x/data')
  await open('elsewhere/data')
  t.same(await d.recover(), { files: 0, bytes: 0 }, 'a young upload is left alone')
  now += 2 * 60 * 60 * 1000
  t.same(await d.recover(), { files: 1, bytes: 1000 }, 'an old one is aborted')
  t.same(await openUploads(d.bucket), ['elsewhere/data'], 'what is outside the root is not ours')
})

t.test('errors: a missing key is PathNotFoundError, anything else names the request', async t => {
  const d = await driver(t)
  const err = await d.getContent('/none').catch((e: unknown) => e)
  t.ok(isPathNotFound(err))
  const noBucket = new S3Driver({ region: 'us-east-1', bucket: 'no-such-bucket', regionendpoint: ceph.endpoint, accesskey: ceph.accessKey, secretkey: ceph.secretKey, forcepathstyle: true })
  t.teardown(() => noBucket.destroy())
  const missing = await noBucket.getContent('/x').catch((e: unknown) => e)
  t.ok(missing instanceof S3RequestError, 'a missing bucket is not a missing path')
  t.match(missing, { code: 'ERR_STORAGE_S3_REQUEST', operation: 'GetObject', s3Code: 'NoSuchBucket', status: 404 })

  // A server that accepts connections and never answers.
  const sockets = new Set<Socket>()
  const silent = createServer(socket => sockets.add(socket))
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    silent.close()
  })
  const address = silent.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const stalled = new S3Driver({ region: 'us-east-1', bucket: 'b', regionendpoint: `http://127.0.0.1:${port}`, accesskey: 'a', secretkey: 'b', forcepathstyle: true, requesttimeout: 300 })
  t.teardown(() => stalled.destroy())
  const began = Date.now()
  const timedOut = await stalled.stat('/x').catch((e: unknown) => e)
  t.ok(timedOut instanceof S3RequestError, 'a request that gets no answer fails')
  t.match((timedOut as Error).message, /HeadObject .*timed out after 300 ms/)
  t.ok(Date.now() - began < 5000, 'within its timeout, not after retries')

  t.throws(() => new S3Driver({ region: 'us-east-1', bucket: 'b', chunksize: MiB }), S3OptionsError, 'parts under 5 MiB')
  t.throws(() => new S3Driver({ region: 'us-east-1', bucket: '' }), S3OptionsError, 'no bucket')
  t.throws(() => new S3Driver({ region: 'us-east-1', bucket: 'b', accesskey: 'a' }), S3OptionsError, 'a key without its secret')
})

t.test('part ranges are even, cover the file, and none is under the minimum', async t => {
  for (const [size, chunk] of [[5 * MiB, 5 * MiB], [12 * MiB + 1, 5 * MiB], [33 * MiB, 32 * MiB], [64 * MiB, 32 * MiB], [11 * 1024 * MiB, 5 * 1024 * MiB]] as const) {
    const ranges = partRanges(size, chunk)
    t.equal(ranges[0]?.start, 0)
    t.equal(ranges.at(-1)?.end, size - 1)
    for (let i = 1; i < ranges.length; i++) t.equal(ranges[i]?.start, (ranges[i - 1]?.end ?? 0) + 1)
    const sizes = ranges.map(r => r.end - r.start + 1)
    t.ok(sizes.every(n => n >= 5 * MiB && n <= 5 * 1024 * MiB), `${size}/${chunk}: ${ranges.length} parts of 5 MiB to 5 GiB`)
    t.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, 'even')
  }
})

t.test('a reader outlives the request timeout: the body streams for as long as it moves', async t => {
  const d = await driver(t, { requesttimeout: 300 })
  const content = Buffer.alloc(MiB, 1)
  await d.putContent('/slow/data', content)
  const began = Date.now()
  const stream = await d.reader('/slow/data')
  let size = 0
  // A slow client: a pause after every chunk (64 KiB at most), so the body takes well past the request's 300 ms.
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  t.equal(size, content.length, 'read whole')
  t.ok(Date.now() - began > 600, `took ${Date.now() - began} ms`)
})
