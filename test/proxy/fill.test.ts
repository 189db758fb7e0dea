// The blob fill's tricky states, driven directly against a scripted upstream
// and a real filesystem store: a second repository joining before the first
// one's headers, a disk that fails, resumes that fail, a stalled upstream,
// shutdown mid-fill, and a fill that committed while another request looked.
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import t, { type Test } from 'tap'
import type { RepositoryName } from '../../src/registry/names.js'
import { RegistryError } from '../../src/registry/errors.js'
import { BlobStore } from '../../src/storage/blobs.js'
import type { FileWriter, StorageDriver } from '../../src/storage/driver.js'
import { listFiles } from '../helpers/files.js'
import {
  blobReply,
  bytes,
  digestOf,
  heldBody,
  proxyFixture,
  readAll,
  reply,
  ScriptedUpstream,
} from '../helpers/scripted-upstream.js'

const A = 'team/a' as RepositoryName
const B = 'team/b' as RepositoryName
const SIZE = 256 * 1024 + 7


async function noSpoolLeft(t: Test, root: string): Promise<void> {
  t.same((await listFiles(root)).filter(f => f.includes('_uploads')), [], 'no upload session left behind')
}

const blobPath = (root: string, hex: string): string => join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data')

/** A body that sends `head`, then breaks. */
function breaksAfter(head: Buffer, message: string): Readable {
  return Readable.from(
    (async function* () {
      yield head
      throw new Error(message)
    })(),
  )
}

const caught = async (p: Promise<unknown>): Promise<RegistryError> => {
  try {
    await p
  } catch (err) {
    if (err instanceof RegistryError) return err
    throw err
  }
  throw new Error('expected a RegistryError')
}

t.test('repository B joining A\'s fill before A\'s headers does not get A\'s error', async t => {
  const content = bytes('join', SIZE)
  const digest = digestOf(content)
  let releaseA!: () => void
  const aAnswered = new Promise<void>(resolve => (releaseA = resolve))
  const upstream = new ScriptedUpstream(async req => {
    if (req.repository === A) {
      await aAnswered
      return reply(404, {}, '{"errors":[{"code":"BLOB_UNKNOWN"}]}')
    }
    if (req.method === 'HEAD') return reply(200, { 'content-length': String(SIZE) })
    return blobReply(content)
  })
  const fx = proxyFixture(t, t.testdir(), upstream)
  const first = fx.registry.repository(A).blobs.open(digest)
  first.catch(() => undefined)
  const deadline = Date.now() + 5_000
  while (fx.fills.current('scripted', digest) === undefined && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 2))
  t.equal(fx.fills.current('scripted', digest)?.repository, A, 'A\'s fill is registered, its headers not yet in')
  const second = fx.registry.repository(B).blobs.open(digest)
  await new Promise(resolve => setTimeout(resolve, 20))
  releaseA()
  const errA = await caught(first)
  t.equal(errA.code, 'BLOB_UNKNOWN', 'A gets its own answer')
  const got = await second
  t.same(await readAll(got), content, 'B gets the blob from a fill of its own')
  t.equal(upstream.count('HEAD', 'blobs'), 1, 'B confirmed its own access first')
  t.same(upstream.requests.filter(r => r.method === 'GET').map(r => r.repository), [A, B])
  const link = join(fx.root, 'docker/registry/v2/repositories/team/b/_layers/sha256', digest.hex, 'link')
  await fx.fills.close()
  t.ok(await stat(link), 'B links the blob')
})

t.test('a fill that committed while a request looked is not downloaded again', async t => {
  const content = bytes('committed', SIZE)
  const digest = digestOf(content)
  const upstream = new ScriptedUpstream(() => blobReply(content))
  const fx = proxyFixture(t, t.testdir(), upstream)
  const first = await fx.startFill(A, digest)
  t.ok(first)
  await first?.done
  await new Promise(resolve => setImmediate(resolve)) // the fill has left the registry
  // The window: the caller saw nothing in storage a moment before this commit, then asks for a fill.
  const second = await fx.startFill(A, digest)
  t.equal(second, undefined, 'start answers "stored already" instead of fetching')
  t.equal(upstream.count('GET', 'blobs'), 1, 'one upstream GET in all')
})

t.test('when storage cannot begin the fill: the upstream body is given up, the error is clear, nothing is left', async t => {
  const content = bytes('begin-fails', SIZE)
  const digest = digestOf(content)
  const body = new PassThrough()
  body.write(content.subarray(0, 1000))
  const upstream = new ScriptedUpstream(() => blobReply(content, body))
  const fx = proxyFixture(t, t.testdir(), upstream, {
    blobs: real =>
      Object.assign(Object.create(real) as BlobStore, {
        begin: async () => {
          throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })
        },
      }),
  })
  const err = await caught(fx.registry.repository(A).blobs.open(digest))
  t.equal(err.code, 'UNAVAILABLE')
  t.match(err.message, /cannot store blob .*ENOSPC/)
  t.ok(body.destroyed, 'the upstream body was destroyed, so its connection is not held')
  t.equal(fx.fills.active, 0)
  await noSpoolLeft(t, fx.root)
})

t.test('a disk write error does not make pointless upstream resumes', async t => {
  const content = bytes('write-fails', SIZE)
  const digest = digestOf(content)
  const upstream = new ScriptedUpstream(() => blobReply(content, Readable.from([content.subarray(0, 1000), content.subarray(1000)])))
  const fx = proxyFixture(t, t.testdir(), upstream, {
    driver: real =>
      Object.assign(Object.create(real) as StorageDriver, {
        writer: async (path: string): Promise<FileWriter> => {
          const writer = await real.writer(path)
          let writes = 0
          return Object.assign(Object.create(writer) as FileWriter, {
            write: async (chunk: Uint8Array) => {
              if (++writes > 1) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' })
              return writer.write(chunk)
            },
            commit: () => writer.commit(),
            cancel: () => writer.cancel(),
          })
        },
      }),
  })
  const fill = await fx.startFill(A, digest)
  const err = await caught(fill?.done ?? Promise.resolve())
  t.equal(err.code, 'UNAVAILABLE')
  t.match(err.message, /cannot store blob .*EIO/)
  t.equal(upstream.count('GET', 'blobs'), 1, 'no Range resume for a local failure')
  await noSpoolLeft(t, fx.root)
})

t.test('a commit that fails on the disk is a storage failure, and leaves nothing', async t => {
  const content = bytes('commit-fails', SIZE)
  const digest = digestOf(content)
  const upstream = new ScriptedUpstream(() => blobReply(content))
  const fx = proxyFixture(t, t.testdir(), upstream, {
    driver: real =>
      Object.assign(Object.create(real) as StorageDriver, {
        move: async () => {
          throw Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' })
        },
      }),
  })
  const fill = await fx.startFill(A, digest)
  const err = await caught(fill?.done ?? Promise.resolve())
  t.equal(err.code, 'UNAVAILABLE', 'not blamed on the upstream')
  t.match(err.message, /cannot store blob .*EIO/)
  t.equal(upstream.count('GET', 'blobs'), 1, 'and not fetched again')
  await noSpoolLeft(t, fx.root)
  await t.rejects(stat(blobPath(fx.root, digest.hex)), { code: 'ENOENT' })
})

t.test('a failed resume request does not end the fill while resumes are left', async t => {
  const content = bytes('resume-retry', SIZE)
  const digest = digestOf(content)
  const half = Math.floor(SIZE / 2)
  const upstream = new ScriptedUpstream((req, n) => {
    if (n === 1) return blobReply(content, breaksAfter(content.subarray(0, half), 'other side closed'))
    if (n === 2) throw new RegistryError('UNAVAILABLE', 'upstream scripted unreachable: ECONNRESET')
    const offset = Number(/bytes=(\d+)-/.exec(req.headers?.Range ?? '')?.[1])
    return reply(206, { 'content-range': `bytes ${offset}-${SIZE - 1}/${SIZE}` }, content.subarray(offset))
  })
  const fx = proxyFixture(t, t.testdir(), upstream)
  const fill = await fx.startFill(A, digest)
  const follower = readAll({ file: await fill!.openFile(), descriptor: { size: SIZE } })
  await fill?.done
  t.same(await follower, content, 'the follower got every byte')
  t.same(upstream.requests.map(r => r.headers?.Range ?? 'full'), ['full', `bytes=${half}-`, `bytes=${half}-`], 'a failed resume is tried again')
  t.ok(await stat(blobPath(fx.root, digest.hex)), 'committed')
})

t.test('resuming stops at the time budget', async t => {
  const content = bytes('budget', SIZE)
  const digest = digestOf(content)
  const upstream = new ScriptedUpstream(n => {
    if (upstream.requests.length === 1) return blobReply(content, breaksAfter(content.subarray(0, 100), 'reset'))
    throw new RegistryError('UNAVAILABLE', `attempt ${String(n)} failed`)
  })
  const fx = proxyFixture(t, t.testdir(), upstream, { fill: { maxResumes: 50, resumeBudgetMs: 300 } })
  const fill = await fx.startFill(A, digest)
  const err = await caught(fill?.done ?? Promise.resolve())
  t.match(err.message, /gave up after \d+ resume attempts/)
  t.ok(upstream.requests.length - 1 < 50, `the budget ended it after ${upstream.requests.length - 1} attempts, not the count`)
  await noSpoolLeft(t, fx.root)
})

t.test('a follower of a stalled fill is cut after fillwait; the fill goes on and commits', async t => {
  const content = bytes('stalled', SIZE)
  const digest = digestOf(content)
  const held = heldBody(content.subarray(0, 1000))
  const upstream = new ScriptedUpstream(() => blobReply(content, held.body))
  const fx = proxyFixture(t, t.testdir(), upstream, { fill: { followerWaitMs: 150 } })
  const fill = await fx.startFill(A, digest)
  const err = await caught(readAll({ file: await fill!.openFile(), descriptor: { size: SIZE } }))
  t.equal(err.code, 'UNAVAILABLE')
  t.match(err.message, /sent nothing of blob .* for 0 s; the download goes on/)
  t.equal(fill?.state, 'filling', 'the fill itself is still waiting for the upstream')
  held.rest(content.subarray(1000))
  await fill?.done
  t.equal(fill?.state, 'committed')
  t.same(await readAll({ file: await fill!.openFile(), descriptor: { size: SIZE } }), content, 'a later client gets the whole blob')
})

t.test('shutdown during a fill stops it and cleans up', async t => {
  const content = bytes('shutdown', SIZE)
  const digest = digestOf(content)
  const held = heldBody(content.subarray(0, 1000))
  const upstream = new ScriptedUpstream(req => {
    req.signal?.addEventListener('abort', () => held.fail(new Error('aborted')))
    return blobReply(content, held.body)
  })
  const fx = proxyFixture(t, t.testdir(), upstream)
  const fill = await fx.startFill(A, digest)
  const follower = readAll({ file: await fill!.openFile(), descriptor: { size: SIZE } })
  follower.catch(() => undefined)
  await fx.fills.close()
  t.equal(fill?.state, 'failed')
  await t.rejects(follower, 'the follower is cut')
  await t.rejects(fx.startFill(A, digest), { code: 'UNAVAILABLE' }, 'no new fill once closing')
  await noSpoolLeft(t, fx.root)
  await t.rejects(stat(blobPath(fx.root, digest.hex)), { code: 'ENOENT' })
})

t.test('fill spools are named as fills, apart from client upload sessions', async t => {
  const content = bytes('named', SIZE)
  const digest = digestOf(content)
  const held = heldBody(content.subarray(0, 1000))
  const upstream = new ScriptedUpstream(() => blobReply(content, held.body))
  const fx = proxyFixture(t, t.testdir(), upstream)
  const fill = await fx.startFill(A, digest)
  const sessions = await readdir(join(fx.root, 'docker/registry/v2/repositories/team/a/_uploads'))
  t.equal(sessions.length, 1)
  t.match(sessions[0], /^fill-[0-9a-f]{8}-[0-9a-z]+-[0-9a-f]{6}-[0-9a-f]{16}$/)
  const journal = join(fx.root, 'stevedore/v1/fills')
  t.same(await readdir(journal), sessions, 'the fill is journalled while it runs')
  t.equal(await readFile(join(journal, sessions[0] ?? ''), 'utf8'), A, 'with its repository')
  held.rest(content.subarray(1000))
  await fill?.done
  await noSpoolLeft(t, fx.root)
  const deadline = Date.now() + 5_000
  while ((await readdir(journal)).length > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
  t.same(await readdir(journal), [], 'and leaves the journal when it ends')
})
