// Blob upload sessions over the filesystem driver: chunks appended in order,
// the running hash recomputed when it is missing or stale, RANGE_INVALID /
// SIZE_INVALID / DIGEST_INVALID, one writer at a time, UUID ids only, and a
// commit that lands in Distribution's layout. Also the driver's appending
// writer that a failed chunk is rolled back with.
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { digestOf, type Digest } from '../../src/registry/digest.js'
import { parseRepositoryName } from '../../src/registry/names.js'
import type { UploadChunk } from '../../src/registry/services.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { LocalRegistry } from '../../src/storage/local.js'
import { UploadSessions, type UploadHooks } from '../../src/hosted/uploads.js'
import { distributionPaths } from '../helpers/distribution-paths.js'
import { uploadDir } from '../helpers/uploads.js'
import { errorCode } from '../helpers/errors.js'

const repo = parseRepositoryName('team/app')
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const setup = (t: Test, hooks: UploadHooks = {}) => {
  const root = t.testdir()
  const local = new LocalRegistry(new FilesystemDriver(root))
  return { root, local, sessions: new UploadSessions(local.storage, hooks) }
}

const body = (...parts: (Buffer | string)[]): UploadChunk['body'] => Readable.from(parts.map(p => Buffer.from(p)))
const chunk = (data: Buffer | string, over: Partial<UploadChunk> = {}): UploadChunk => ({ body: body(data), ...over })

/** A body that yields `before`, then fails as a cut connection does. */
async function* cut(before: Buffer | string): AsyncGenerator<Buffer> {
  yield Buffer.from(before)
  throw new Error('connection reset')
}

const code = errorCode

const dataOf = (root: string, id: string): Buffer => readFileSync(join(uploadDir(root, repo, id), 'data'))
const sha = (data: Buffer | string, algorithm: Digest['algorithm'] = 'sha256'): Digest => digestOf(Buffer.from(data), algorithm)

t.test('create lays the session out as Distribution does', async t => {
  const { root, sessions } = setup(t)
  const before = Date.now()
  const status = await sessions.create(repo)
  t.match(status.id, UUID, 'ids are UUIDs')
  t.equal(status.size, 0)
  const dir = uploadDir(root, repo, status.id)
  t.equal(statSync(join(dir, 'data')).size, 0, 'an empty data file')
  const started = Date.parse(readFileSync(join(dir, 'startedat'), 'utf8'))
  t.ok(started >= before - 1000 && started <= Date.now() + 1000, 'startedat is an RFC 3339 time of now')
  t.not((await sessions.create(repo)).id, status.id, 'each session its own id')
  t.same(await sessions.status(repo, status.id), { id: status.id, size: 0 })
})

t.test('chunks append in order and the commit lands in blobs/ and _layers', async t => {
  const committed: [string, number][] = []
  const { root, sessions, local } = setup(t, { committed: (d: Digest, size: number) => committed.push([d.value, size]) })
  const { id } = await sessions.create(repo)
  t.same(await sessions.append(repo, id, chunk('hello ', { start: 0, length: 6 })), { id, size: 6 })
  t.same(await sessions.append(repo, id, { body: body('wor', 'ld'), start: 6 }), { id, size: 11 }, 'a body of several buffers')
  t.same(await sessions.status(repo, id), { id, size: 11 })
  t.equal(dataOf(root, id).toString(), 'hello world', 'the data file holds both chunks')
  const digest = sha('hello world!')
  const descriptor = await sessions.finish(repo, id, digest, chunk('!', { start: 11, length: 1 }))
  t.same(descriptor, { digest, size: 12, mediaType: 'application/octet-stream' })
  t.equal(readFileSync(distributionPaths.blobData(root, digest.value), 'utf8'), 'hello world!', 'the blob is at blobs/sha256/<xx>/<hex>/data')
  t.equal(readFileSync(distributionPaths.layerLink(root, repo, digest.value), 'utf8'), digest.value, 'linked in the repository')
  t.notOk(existsSync(uploadDir(root, repo, id)), '_uploads/<id> is gone')
  t.same(committed, [[digest.value, 12]], 'the committed hook saw it once')
  t.same(await local.repository(repo).blobs.stat(digest), descriptor, 'the repository serves it')
  t.equal(await code(sessions.status(repo, id)), 'BLOB_UPLOAD_UNKNOWN', 'the session is over')
})

t.test('a monolithic finish, an empty blob, and a blob that exists already', async t => {
  const committed: string[] = []
  const { root, sessions } = setup(t, { committed: (d: Digest) => committed.push(d.value) })
  const other = parseRepositoryName('other/app')

  const first = await sessions.create(repo)
  const digest = sha('content')
  await sessions.finish(repo, first.id, digest, chunk('content', { length: 7 }))
  const second = await sessions.create(other)
  t.same(await sessions.finish(other, second.id, digest, chunk('content')), { digest, size: 7, mediaType: 'application/octet-stream' })
  t.same(committed, [digest.value], 'the second commit of the same content adds no blob')
  t.equal(readFileSync(distributionPaths.layerLink(root, other, digest.value), 'utf8'), digest.value, 'but links it in the second repository')
  t.notOk(existsSync(uploadDir(root, other, second.id)), 'and removes its session')

  const empty = await sessions.create(repo)
  const none = sha('')
  t.same(await sessions.finish(repo, empty.id, none), { digest: none, size: 0, mediaType: 'application/octet-stream' })
  t.equal(statSync(distributionPaths.blobData(root, none.value)).size, 0, 'an empty blob is a blob')
})

t.test('sha512 digests are verified by reading the data back', async t => {
  const { root, sessions } = setup(t)
  const { id } = await sessions.create(repo)
  await sessions.append(repo, id, chunk('abc'))
  t.equal(await code(sessions.finish(repo, id, sha('abd', 'sha512'))), 'DIGEST_INVALID')
  const again = await sessions.create(repo)
  await sessions.append(repo, again.id, chunk('abc'))
  const digest = sha('abcdef', 'sha512')
  t.same(await sessions.finish(repo, again.id, digest, chunk('def')), { digest, size: 6, mediaType: 'application/octet-stream' })
  t.equal(readFileSync(distributionPaths.blobData(root, digest.value), 'utf8'), 'abcdef', 'under blobs/sha512/')
})

t.test('a chunk that does not start at the current size is RANGE_INVALID and changes nothing', async t => {
  const { root, sessions } = setup(t)
  const { id } = await sessions.create(repo)
  await sessions.append(repo, id, chunk('12345', { start: 0 }))
  t.equal(await code(sessions.append(repo, id, chunk('678', { start: 4 }))), 'RANGE_INVALID', 'overlapping')
  t.equal(await code(sessions.append(repo, id, chunk('678', { start: 6 }))), 'RANGE_INVALID', 'leaving a gap')
  t.equal(await code(sessions.append(repo, id, chunk('678', { start: 0 }))), 'RANGE_INVALID', 'from the start again')
  t.equal(await code(sessions.finish(repo, id, sha('12345678'), chunk('678', { start: 3 }))), 'RANGE_INVALID', 'the final chunk too')
  t.equal(dataOf(root, id).toString(), '12345')
  const err = await sessions.append(repo, id, chunk('x', { start: 9 })).catch((e: unknown) => e)
  t.match(err, { code: 'RANGE_INVALID', detail: { offset: 5 } }, 'the detail says where to resume')
  t.same(await sessions.append(repo, id, chunk('678', { start: 5 })), { id, size: 8 }, 'resuming at the size works')
  t.same((await sessions.finish(repo, id, sha('12345678'))).size, 8, 'and the failed final chunk left the session usable')
})

t.test('a body of another length than it declared is SIZE_INVALID and rolled back', async t => {
  const { root, sessions } = setup(t)
  const { id } = await sessions.create(repo)
  await sessions.append(repo, id, chunk('base'))
  t.equal(await code(sessions.append(repo, id, chunk('abc', { length: 5 }))), 'SIZE_INVALID', 'fewer bytes')
  t.equal(dataOf(root, id).toString(), 'base', 'nothing of the short chunk stays')
  t.equal(await code(sessions.append(repo, id, { body: body('abc', 'def', 'ghi'), length: 4 })), 'SIZE_INVALID', 'more bytes')
  t.equal(dataOf(root, id).toString(), 'base', 'nothing of the long chunk stays')
  t.same(await sessions.status(repo, id), { id, size: 4 })
  t.equal(await code(sessions.finish(repo, id, sha('base++'), chunk('++', { length: 3 }))), 'SIZE_INVALID', 'at finish too')
  t.ok(existsSync(uploadDir(root, repo, id)), 'a failed final chunk leaves the session (as Distribution does)')
  t.same(await sessions.append(repo, id, chunk('tail', { length: 4 })), { id, size: 8 })
  const digest = sha('basetail')
  t.same((await sessions.finish(repo, id, digest)).digest, digest, 'the running hash saw none of the refused bytes')
  t.equal(readFileSync(distributionPaths.blobData(root, digest.value), 'utf8'), 'basetail')
})

t.test('a cut body leaves the upload as it was, and the hash is recomputed', async t => {
  const { root, sessions } = setup(t)
  const { id } = await sessions.create(repo)
  await sessions.append(repo, id, chunk('first-'))
  const err = await sessions.append(repo, id, { body: cut('half of a chunk') }).catch((e: unknown) => e)
  t.match(err, { message: 'connection reset' }, 'the body error reaches the caller')
  t.equal(dataOf(root, id).toString(), 'first-', 'the data is cut back')
  t.same(await sessions.status(repo, id), { id, size: 6 })
  await sessions.append(repo, id, chunk('second', { start: 6 }))
  const digest = sha('first-second')
  t.same((await sessions.finish(repo, id, digest)).size, 12, 'the digest matches the data, not what the cut chunk fed the hash')

  const cutFinal = await sessions.create(repo)
  await sessions.append(repo, cutFinal.id, chunk('abc'))
  t.match(await sessions.finish(repo, cutFinal.id, sha('abcdef'), { body: cut('de') }).catch((e: unknown) => e), { message: 'connection reset' })
  t.equal(dataOf(root, cutFinal.id).toString(), 'abc', 'a cut final chunk leaves the session as it was')
  t.same((await sessions.finish(repo, cutFinal.id, sha('abcdef'), chunk('def'))).size, 6)
})

t.test('the running hash is recomputed when it is missing or stale', async t => {
  const { root, local, sessions } = setup(t)
  const { id } = await sessions.create(repo)
  await sessions.append(repo, id, chunk('one,'))

  // A restart (or another replica): no hash in memory.
  const restarted = new UploadSessions(local.storage)
  t.same(await restarted.append(repo, id, chunk('two,', { start: 4 })), { id, size: 8 })

  // Back in the first process, whose hash covers 4 bytes only: stale.
  t.same(await sessions.append(repo, id, chunk('three,', { start: 8 })), { id, size: 14 })

  // Another process appended behind our back.
  appendFileSync(join(uploadDir(root, repo, id), 'data'), 'four')
  t.same(await sessions.status(repo, id), { id, size: 18 })
  const digest = sha('one,two,three,four')
  t.same(await sessions.finish(repo, id, digest), { digest, size: 18, mediaType: 'application/octet-stream' })
  t.equal(readFileSync(distributionPaths.blobData(root, digest.value), 'utf8'), 'one,two,three,four')

  const fresh = await sessions.create(repo)
  await sessions.append(repo, fresh.id, chunk('abc'))
  t.same((await restarted.finish(repo, fresh.id, sha('abc'))).size, 3, 'finish in another process reads the data back')
})

t.test('a digest mismatch at finish ends the session and stores nothing', async t => {
  const committed: string[] = []
  const { root, sessions } = setup(t, { committed: (d: Digest) => committed.push(d.value) })
  const { id } = await sessions.create(repo)
  await sessions.append(repo, id, chunk('payload'))
  const wrong = sha('another payload')
  const err = await sessions.finish(repo, id, wrong).catch((e: unknown) => e)
  t.match(err, { code: 'DIGEST_INVALID' })
  t.match((err as Error).message, sha('payload').value, 'the message names what it hashes to')
  t.notOk(existsSync(uploadDir(root, repo, id)), 'the session directory is removed')
  t.equal(await code(sessions.status(repo, id)), 'BLOB_UPLOAD_UNKNOWN')
  t.equal(await code(sessions.append(repo, id, chunk('x'))), 'BLOB_UPLOAD_UNKNOWN')
  t.notOk(existsSync(distributionPaths.blobData(root, wrong.value)), 'no blob under the claimed digest')
  t.notOk(existsSync(distributionPaths.blobData(root, sha('payload').value)), 'nor under the real one')
  t.notOk(existsSync(distributionPaths.layerLink(root, repo, wrong.value)), 'nothing linked')
  t.same(committed, [])
})

t.test('one writer at a time', async t => {
  const { root, sessions } = setup(t)
  const { id } = await sessions.create(repo)
  let release = (): void => undefined
  const gate = new Promise<void>(resolve => {
    release = resolve
  })
  let started = (): void => undefined
  const writing = new Promise<void>(resolve => {
    started = resolve
  })
  async function* slow(): AsyncGenerator<Buffer> {
    yield Buffer.from('aaa')
    started()
    await gate
    yield Buffer.from('bbb')
  }
  const first = sessions.append(repo, id, { body: slow() })
  await writing
  t.equal(await code(sessions.append(repo, id, chunk('zzz'))), 'BLOB_UPLOAD_INVALID', 'a second append is refused')
  t.equal(await code(sessions.finish(repo, id, sha('aaabbb'))), 'BLOB_UPLOAD_INVALID', 'so is a finish')
  t.equal(await code(sessions.cancel(repo, id)), 'BLOB_UPLOAD_INVALID', 'and a cancel')
  const other = await sessions.create(repo)
  t.same(await sessions.append(repo, other.id, chunk('ok')), { id: other.id, size: 2 }, 'other sessions are not held up')
  // The first bytes reach the file when the stream flushes them: poll, with a deadline.
  const deadline = Date.now() + 5000
  let seen = await sessions.status(repo, id)
  while (seen.size < 3 && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 5))
    seen = await sessions.status(repo, id)
  }
  t.same(seen, { id, size: 3 }, 'status reads while a chunk is written')
  release()
  t.same(await first, { id, size: 6 })
  t.equal(dataOf(root, id).toString(), 'aaabbb', 'nothing of the refused chunk got in')
  t.same(await sessions.append(repo, id, chunk('ccc')), { id, size: 9 }, 'the next chunk is taken once the first is through')
  t.same((await sessions.finish(repo, id, sha('aaabbbccc'))).size, 9)
})

t.test('session ids are UUIDs: fill spools and other names are unknown', async t => {
  const { root, sessions } = setup(t)
  const fill = uploadDir(root, repo, 'fill-0123456789abcdef')
  mkdirSync(fill, { recursive: true })
  writeFileSync(join(fill, 'data'), 'a fill in progress')
  writeFileSync(join(fill, 'startedat'), new Date().toISOString())
  const uuidUpper = '01234567-89AB-CDEF-0123-456789ABCDEF'
  mkdirSync(uploadDir(root, repo, uuidUpper), { recursive: true })
  writeFileSync(join(uploadDir(root, repo, uuidUpper), 'data'), 'x')
  for (const id of ['fill-0123456789abcdef', uuidUpper, 'not-a-uuid', '', '../../x', '00000000-0000-0000-0000-000000000000']) {
    t.equal(await code(sessions.status(repo, id)), 'BLOB_UPLOAD_UNKNOWN', `status ${JSON.stringify(id)}`)
    t.equal(await code(sessions.append(repo, id, chunk('evil'))), 'BLOB_UPLOAD_UNKNOWN', `append ${JSON.stringify(id)}`)
    t.equal(await code(sessions.finish(repo, id, sha('a fill in progress'))), 'BLOB_UPLOAD_UNKNOWN', `finish ${JSON.stringify(id)}`)
    t.equal(await code(sessions.cancel(repo, id)), 'BLOB_UPLOAD_UNKNOWN', `cancel ${JSON.stringify(id)}`)
  }
  t.equal(readFileSync(join(fill, 'data'), 'utf8'), 'a fill in progress', 'the fill spool is untouched')
  t.notOk(existsSync(distributionPaths.blobData(root, sha('a fill in progress').value)), 'and was not committed')
})

t.test('sessions belong to their repository', async t => {
  const { sessions } = setup(t)
  const { id } = await sessions.create(repo)
  const other = parseRepositoryName('team/other')
  t.equal(await code(sessions.status(other, id)), 'BLOB_UPLOAD_UNKNOWN')
  t.equal(await code(sessions.append(other, id, chunk('x'))), 'BLOB_UPLOAD_UNKNOWN')
  const service = sessions.service(repo)
  t.same(await service.append(id, chunk('abc')), { id, size: 3 }, 'the per-repository service reaches it')
  t.same(await service.status(id), { id, size: 3 })
  t.same((await service.finish(id, sha('abc'))).size, 3)
  const next = await service.create()
  await service.cancel(next.id)
  t.equal(await code(service.status(next.id)), 'BLOB_UPLOAD_UNKNOWN')
})

t.test('cancel removes the session', async t => {
  const { root, sessions } = setup(t)
  const { id } = await sessions.create(repo)
  await sessions.append(repo, id, chunk('data'))
  await sessions.cancel(repo, id)
  t.notOk(existsSync(uploadDir(root, repo, id)), '_uploads/<id> is gone')
  t.equal(await code(sessions.cancel(repo, id)), 'BLOB_UPLOAD_UNKNOWN', 'a second cancel')
  t.equal(await code(sessions.finish(repo, id, sha('data'))), 'BLOB_UPLOAD_UNKNOWN', 'a finish after it')
  t.notOk(existsSync(distributionPaths.blobData(root, sha('data').value)))
})

t.test("the filesystem driver's appending writer", async t => {
  const root = t.testdir({ file: 'before' })
  const driver = new FilesystemDriver(root)
  const full = join(root, 'file')

  const appending = await driver.writer('/file', true)
  await appending.write(Buffer.from('+more'))
  await appending.commit()
  t.equal(readFileSync(full, 'utf8'), 'before+more', 'append adds to the file')
  t.equal(appending.size, 5, 'size counts what this writer took')

  const failing = await driver.writer('/file', true)
  await failing.write(Buffer.from('x'.repeat(3 * 1024 * 1024)))
  await failing.cancel()
  t.equal(readFileSync(full, 'utf8'), 'before+more', 'cancel cuts back to the size before')
  await failing.cancel()
  t.equal(readFileSync(full, 'utf8'), 'before+more', 'a second cancel changes nothing')
  await t.rejects(failing.write(Buffer.from('y')), /after commit or cancel/, 'no write after cancel')

  const replacing = await driver.writer('/file')
  await replacing.write(Buffer.from('new'))
  await replacing.commit()
  t.equal(readFileSync(full, 'utf8'), 'new', 'without append the file is replaced')
  await t.rejects(replacing.commit(), /after commit or cancel/, 'one commit')

  const dropped = await driver.writer('/other/file')
  await dropped.write(Buffer.from('gone'))
  await dropped.cancel()
  t.notOk(existsSync(join(root, 'other/file')), 'cancel of a fresh writer removes its file')
})

// FileWriter.cancel (driver.ts): "an appending writer leaves the file as it was
// before". Before, there was no file; FilesystemWriter truncates to 0 instead.
t.test('a cancelled appending writer to a missing file leaves no file', async t => {
  const root = t.testdir()
  const driver = new FilesystemDriver(root)
  const absent = await driver.writer('/absent', true)
  await absent.write(Buffer.from('zz'))
  await absent.cancel()
  t.notOk(existsSync(join(root, 'absent')), 'the file was missing before, so it is missing after')
})
