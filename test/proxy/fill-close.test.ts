// FillRegistry.close(), the last step of a graceful shutdown: a fill still
// downloading is abandoned (even from an upstream body that ignores the abort
// signal) and its spool and journal entry are gone when close() resolves; a
// fill whose digest is verified is committed; a fill whose upstream has not
// answered yet ends as UNAVAILABLE; nothing starts afterwards.
import { createHash } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { RegistryError } from '../../src/registry/errors.js'
import type { RepositoryName } from '../../src/registry/names.js'
import type { StorageDriver } from '../../src/storage/driver.js'
import { listFiles } from '../helpers/files.js'
import { blobReply, bytes, digestOf, heldBody, proxyFixture, readAll, ScriptedUpstream } from '../helpers/scripted-upstream.js'

const A = 'team/a' as RepositoryName
const SIZE = 256 * 1024 + 11

const blobPath = (root: string, hex: string): string => join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data')
const journal = (root: string): Promise<string[]> => readdir(join(root, 'stevedore/v1/fills')).catch(() => [])

/** Checked right after close() resolved, without waiting: close() waits for the cleanup itself. */
async function nothingLeft(t: Test, root: string): Promise<void> {
  t.same((await listFiles(root)).filter(f => f.includes('/_uploads/') || f.startsWith('.stevedore/tmp/')), [], 'no spool or temp file')
  t.same(await journal(root), [], 'no journal entry')
}

t.test('a fill still downloading is abandoned: its body is cut even if the upstream ignores the signal', async t => {
  const content = bytes('close-mid', SIZE)
  const digest = digestOf(content)
  const held = heldBody(content.subarray(0, 4096))
  const fx = proxyFixture(t, t.testdir(), new ScriptedUpstream(() => blobReply(content, held.body)))
  const fill = await fx.startFill(A, digest)
  t.equal((await journal(fx.root)).length, 1, 'journalled while it runs')
  const follower = readAll({ file: await fill!.openFile(), descriptor: { size: SIZE } })
  follower.catch(() => undefined)

  await fx.fills.close()
  t.ok(held.body.destroyed, 'the upstream body was destroyed by the fill itself')
  t.equal(fill?.state, 'failed')
  t.equal((fill?.error as RegistryError | undefined)?.code, 'UNAVAILABLE', 'followers learn the service is going away, not that the upstream failed')
  await t.rejects(follower, 'the follower is cut, never handed a short body as whole')
  await nothingLeft(t, fx.root)
  await t.rejects(stat(blobPath(fx.root, digest.hex)), { code: 'ENOENT' }, 'nothing committed')
  await t.rejects(fx.startFill(A, digest), { code: 'UNAVAILABLE' }, 'no fill starts once closed')
})

t.test('a fill whose digest is verified is committed, not thrown away', async t => {
  const content = bytes('close-verified', SIZE)
  const digest = digestOf(content)
  let reached!: () => void
  const moving = new Promise<void>(resolve => (reached = resolve))
  let release!: () => void
  const gate = new Promise<void>(resolve => (release = resolve))
  const fx = proxyFixture(t, t.testdir(), new ScriptedUpstream(() => blobReply(content)), {
    // The commit's rename waits: the fill is held in its 'verified' state.
    driver: real =>
      Object.assign(Object.create(real) as StorageDriver, {
        move: async (source: string, destination: string) => {
          reached()
          await gate
          return real.move(source, destination)
        },
      }),
  })
  const fill = await fx.startFill(A, digest)
  await moving
  t.equal(fill?.state, 'verified', 'every byte is in and the digest checked out')
  const closing = fx.fills.close()
  release()
  await closing
  t.equal(fill?.state, 'committed')
  const stored = await readFile(blobPath(fx.root, digest.hex))
  t.equal(`sha256:${createHash('sha256').update(stored).digest('hex')}`, digest.value, 'the blob is in place and whole')
  await nothingLeft(t, fx.root)
})

t.test('a fill whose upstream has not answered yet ends as UNAVAILABLE; nothing is written', async t => {
  const content = bytes('close-unanswered', SIZE)
  const digest = digestOf(content)
  let asked!: () => void
  const askedUpstream = new Promise<void>(resolve => (asked = resolve))
  const upstream = new ScriptedUpstream(
    req =>
      new Promise((_, reject) => {
        asked()
        req.signal?.addEventListener('abort', () => reject(new DOMException('This operation was aborted', 'AbortError')))
      }),
  )
  const fx = proxyFixture(t, t.testdir(), upstream)
  const started = fx.startFill(A, digest)
  started.catch(() => undefined)
  await askedUpstream
  await fx.fills.close()
  await t.rejects(started, { code: 'UNAVAILABLE', message: /shutting down/ })
  t.equal(fx.fills.active, 0)
  t.equal(fx.fills.admitted, 0, 'its admission slot was given back')
  await nothingLeft(t, fx.root)
})
