// The storage driver contract: every driver (filesystem now, object stores later) must pass this suite.
import type { Test } from 'tap'
import { Readable } from 'node:stream'
import { InvalidPathError, isPathNotFound, type StorageDriver } from '../../src/storage/driver.js'

const bytes = async (stream: Readable): Promise<Buffer> => {
  const chunks: Buffer[] = []
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk)
  return Buffer.concat(chunks)
}
const text = async (stream: Readable): Promise<string> => (await bytes(stream)).toString()

const MiB = 1024 * 1024

/** `size` bytes of xorshift noise: the same for the same seed, no two parts alike. */
function noise(size: number, seed: number): Buffer {
  const words = new Uint32Array(Math.ceil(size / 4))
  let x = seed | 1
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    words[i] = x >>> 0
  }
  return Buffer.from(words.buffer, 0, size)
}

/** Writes `content` through a writer in uneven chunks (1 MiB + 7 bytes), each write awaited, and commits. */
async function writeAll(d: StorageDriver, path: string, content: Buffer, append: boolean): Promise<void> {
  const w = await d.writer(path, append)
  for (let at = 0; at < content.length; at += MiB + 7) await w.write(content.subarray(at, at + MiB + 7))
  await w.commit()
}

async function notFound(t: Test, promise: Promise<unknown>, what: string): Promise<void> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  t.ok(isPathNotFound(err), `${what}: PathNotFoundError`)
}

export function driverContract(t: Test, make: (t: Test) => Promise<StorageDriver>): void {
  t.test('put, get, stat, overwrite', async t => {
    const d = await make(t)
    t.equal(await d.stat('/a/b/c'), undefined, 'nothing there yet')
    await d.putContent('/a/b/c', 'hello')
    t.equal((await d.getContent('/a/b/c')).toString(), 'hello')
    const info = await d.stat('/a/b/c')
    t.match(info, { path: '/a/b/c', size: 5, isDir: false })
    t.equal((await d.stat('/a/b'))?.isDir, true, 'parents are directories')
    await d.putContent('/a/b/c', 'bye')
    t.equal((await d.getContent('/a/b/c')).toString(), 'bye', 'overwritten whole')
  })

  t.test('readers: whole and inclusive ranges', async t => {
    const d = await make(t)
    await d.putContent('/r/data', '0123456789')
    t.equal(await text(await d.reader('/r/data')), '0123456789')
    t.equal(await text(await d.reader('/r/data', { start: 2, end: 4 })), '234')
    t.equal(await text(await d.reader('/r/data', { start: 9, end: 9 })), '9')
  })

  t.test('writers write in place and report what readers can see', async t => {
    const d = await make(t)
    const w = await d.writer('/w/data')
    await w.write(Buffer.from('abc'))
    await w.write(Buffer.from('def'))
    t.equal(w.size, 6)
    await w.commit()
    t.equal(w.flushed, 6, 'everything flushed after commit')
    t.equal((await d.getContent('/w/data')).toString(), 'abcdef')
    const c = await d.writer('/w/cancelled')
    await c.write(Buffer.from('x'))
    await c.cancel()
    await c.cancel()
    t.equal(await d.stat('/w/cancelled'), undefined, 'cancel leaves nothing')
  })

  t.test('list, move, delete', async t => {
    const d = await make(t)
    await d.putContent('/l/b', '1')
    await d.putContent('/l/a', '2')
    await d.putContent('/l/sub/x', '3')
    t.same(await d.list('/l'), ['a', 'b', 'sub'], 'sorted children')
    await d.move('/l/a', '/m/moved')
    t.equal((await d.getContent('/m/moved')).toString(), '2')
    t.equal(await d.stat('/l/a'), undefined, 'moved away')
    await d.putContent('/m/target', 'old')
    await d.move('/l/b', '/m/target')
    t.equal((await d.getContent('/m/target')).toString(), '1', 'move replaces the destination')
    await d.delete('/l')
    t.equal(await d.stat('/l/sub/x'), undefined, 'delete removes a tree')
  })

  t.test('missing paths are typed errors', async t => {
    const d = await make(t)
    for (const op of [() => d.getContent('/none'), () => d.reader('/none'), () => d.list('/none'), () => d.delete('/none'), () => d.move('/none', '/x')]) {
      const err = await op().then(() => undefined, (e: unknown) => e)
      t.ok(isPathNotFound(err), 'PathNotFoundError')
    }
  })

  t.test('paths that could escape are refused before any I/O', async t => {
    const d = await make(t)
    for (const bad of ['relative', '/a/../b', '/a/./b', '/a//b', '/a/b\u0000c', '/a/%2e%2e', '/../etc/passwd', `/${'x'.repeat(5000)}`]) {
      await t.rejects(d.getContent(bad), InvalidPathError, JSON.stringify(bad.slice(0, 30)))
      await t.rejects(d.putContent(bad, 'x'), InvalidPathError)
    }
  })

  t.test('appending writers add to a file; a cancelled one leaves it as it was', async t => {
    const d = await make(t)
    const a = await d.writer('/ap/data', true)
    await a.write(Buffer.from('abc'))
    await a.commit()
    t.equal((await d.getContent('/ap/data')).toString(), 'abc', 'an append to nothing starts the file')
    const b = await d.writer('/ap/data', true)
    await b.write(Buffer.from('def'))
    t.equal(b.size, 3, "size counts this writer's bytes")
    await b.commit()
    t.equal(b.flushed, 3)
    t.equal((await d.getContent('/ap/data')).toString(), 'abcdef', 'appended')
    const c = await d.writer('/ap/data', true)
    await c.write(Buffer.from('ghi'))
    await c.cancel()
    await c.cancel()
    t.equal((await d.getContent('/ap/data')).toString(), 'abcdef', 'a cancelled append leaves the file as it was')
    t.equal((await d.stat('/ap/data'))?.size, 6)
    const empty = await d.writer('/ap/empty')
    await empty.commit()
    t.match(await d.stat('/ap/empty'), { size: 0, isDir: false }, 'a writer with no bytes commits an empty file')
    await t.rejects(empty.write(Buffer.from('x')), 'no writes after commit')
    await t.rejects(empty.commit(), 'no second commit')
  })

  t.test('large writes span several parts, appended to, cancelled, ranged and moved', async t => {
    const d = await make(t)
    const first = noise(12 * MiB + 123, 1)
    let flushes = 0
    const w = await d.writer('/big/data')
    w.onFlush = () => flushes++
    for (let at = 0; at < first.length; at += MiB + 7) await w.write(first.subarray(at, at + MiB + 7))
    t.equal(w.size, first.length)
    await w.commit()
    t.equal(w.flushed, first.length, 'all flushed after commit')
    t.ok(flushes > 0, 'onFlush called')
    t.equal((await d.stat('/big/data'))?.size, first.length)
    t.ok((await bytes(await d.reader('/big/data'))).equals(first), 'read back whole')
    const edge = { start: 5 * MiB - 10, end: 10 * MiB + 10 }
    t.ok((await bytes(await d.reader('/big/data', edge))).equals(first.subarray(edge.start, edge.end + 1)), 'a range across part boundaries')

    const more = noise(3 * MiB + 5, 2)
    await writeAll(d, '/big/data', more, true)
    const whole = Buffer.concat([first, more])
    t.equal((await d.stat('/big/data'))?.size, whole.length, 'append to a large file')
    t.ok((await bytes(await d.reader('/big/data'))).equals(whole), 'old bytes, then the new ones')

    const c = await d.writer('/big/data', true)
    await c.write(noise(6 * MiB, 3))
    await c.cancel()
    t.ok((await bytes(await d.reader('/big/data'))).equals(whole), 'a cancelled large append leaves the file as it was')

    await d.move('/big/data', '/big/moved')
    t.equal(await d.stat('/big/data'), undefined, 'moved away')
    t.ok((await bytes(await d.reader('/big/moved'))).equals(whole), 'a large file moves whole')
    const tail = { start: whole.length - 3, end: whole.length + 100 }
    t.equal((await bytes(await d.reader('/big/moved', { start: whole.length - 3, end: whole.length - 1 }))).length, 3, 'the last bytes')
    t.equal((await bytes(await d.reader('/big/moved', tail))).length, 3, 'a range past the end stops at the end')
  })

  t.test('stat: files, directories, and prefixes that are neither', async t => {
    const d = await make(t)
    await d.putContent('/s/t/u', 'file')
    await d.putContent('/s/ab', 'sibling')
    t.match(await d.stat('/s'), { path: '/s', isDir: true })
    t.match(await d.stat('/s/t'), { path: '/s/t', isDir: true })
    t.match(await d.stat('/s/t/u'), { path: '/s/t/u', isDir: false, size: 4 })
    t.ok((await d.stat('/s/t'))?.modTime instanceof Date, 'a directory has a time')
    t.equal(await d.stat('/s/a'), undefined, 'a name prefix of a sibling is nothing')
    t.equal(await d.stat('/s/t/u/v'), undefined, 'nothing under a file')
    await notFound(t, d.getContent('/s/t'), 'getContent of a directory')
    await notFound(t, d.reader('/s/t'), 'reader of a directory')
    await notFound(t, d.list('/s/t/u'), 'list of a file')
    await notFound(t, d.list('/s/a'), 'list of a name prefix')
    t.equal(await text(await d.reader('/s/t/u', { start: 10, end: 20 })), '', 'a range past the end reads nothing')
  })

  t.test('delete removes a subtree, and nothing beside it', async t => {
    const d = await make(t)
    for (const path of ['/d/a/x', '/d/a/y/z', '/d/ab', '/d/a-b']) await d.putContent(path, path)
    await d.delete('/d/a')
    t.equal(await d.stat('/d/a'), undefined, 'the directory is gone')
    t.equal(await d.stat('/d/a/y/z'), undefined, 'and everything under it')
    t.same(await d.list('/d'), ['a-b', 'ab'], 'siblings sharing its name as a prefix stay')
    await d.delete('/d/ab')
    t.same(await d.list('/d'), ['a-b'], 'a file deleted')
    await d.delete('/d/a-b')
    // A disk keeps the emptied directory (it lists nothing); an object store has no directory left (not found).
    const left = await d.list('/d').catch((e: unknown) => (isPathNotFound(e) ? [] : e))
    t.same(left, [], 'an emptied directory lists nothing, or is gone')
  })

  t.test('list pages through more than a thousand children', async t => {
    const d = await make(t)
    const names = Array.from({ length: 1010 }, (_, i) => `f-${String(i).padStart(4, '0')}`)
    const queue = [...names]
    await Promise.all(Array.from({ length: 32 }, async () => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) await d.putContent(`/many/${name}`, name)
    }))
    await d.putContent('/many/sub/x', 'x')
    t.same(await d.list('/many'), [...names, 'sub'], 'every child once, sorted')
    await d.delete('/many')
    t.equal(await d.stat('/many'), undefined, 'a large tree deleted')
  })

  t.test('move replaces the destination atomically', async t => {
    const d = await make(t)
    const old = 'old '.repeat(4096)
    const fresh = 'new '.repeat(8192)
    await d.putContent('/mv/dst', old)
    await d.putContent('/mv/src', fresh)
    let moved = false
    const seen = new Set<string>()
    const reading = (async () => {
      while (!moved) {
        const content = (await d.getContent('/mv/dst')).toString()
        seen.add(content === old ? 'old' : content === fresh ? 'new' : `torn (${content.length} bytes)`)
      }
    })()
    await d.move('/mv/src', '/mv/dst')
    moved = true
    await reading
    t.same([...seen].filter(s => s !== 'old' && s !== 'new'), [], 'readers saw the old file or the new one, never part of one')
    t.equal((await d.getContent('/mv/dst')).toString(), fresh)
    t.equal(await d.stat('/mv/src'), undefined, 'the source is gone')
    await d.move('/mv/dst', '/mv/dst')
    t.equal((await d.getContent('/mv/dst')).toString(), fresh, 'a move onto itself keeps the file')
  })

  t.test('atomic writers: nothing shows before commit, and a cancel leaves what was there', async t => {
    const d = await make(t)
    if (d.atomicWriters !== true) {
      t.pass(`${d.name} writes in place`)
      return
    }
    await d.putContent('/at/blob', 'before')
    const w = await d.writer('/at/blob')
    await w.write(Buffer.from('after, in part'))
    t.equal((await d.getContent('/at/blob')).toString(), 'before', 'the old content until commit')
    await w.cancel()
    t.equal((await d.getContent('/at/blob')).toString(), 'before', 'a cancelled writer leaves it')
    const n = await d.writer('/at/new')
    await n.write(Buffer.from('new'))
    t.equal(await d.stat('/at/new'), undefined, 'a new file is not there before commit')
    await n.commit()
    t.equal((await d.getContent('/at/new')).toString(), 'new')
  })

  t.test('walk: every file under a directory with its size, one prefix walk', async t => {
    const d = await make(t)
    if (d.walk === undefined) {
      t.pass(`${d.name} has no walk: storedBlobs() lists and stats`)
      return
    }
    await d.putContent('/w/a/one', '1')
    await d.putContent('/w/a/b/two', '22')
    await d.putContent('/w/three', '333')
    await d.putContent('/wx/outside', 'not under /w')
    const found: { path: string; size: number; isDir: boolean }[] = []
    for await (const f of d.walk('/w')) found.push({ path: f.path, size: f.size, isDir: f.isDir })
    t.same(found.sort((x, y) => (x.path < y.path ? -1 : 1)), [
      { path: '/w/a/b/two', size: 2, isDir: false },
      { path: '/w/a/one', size: 1, isDir: false },
      { path: '/w/three', size: 3, isDir: false },
    ], 'files only, with driver paths and sizes, and nothing from a sibling prefix')
    const none: unknown[] = []
    for await (const f of d.walk('/nothing/here')) none.push(f)
    t.same(none, [], 'nothing under the path: nothing yielded')
  })
}
