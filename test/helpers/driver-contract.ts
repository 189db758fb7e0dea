// The storage driver contract: every driver (filesystem now, object stores later) must pass this suite.
import type { Test } from 'tap'
import { Readable } from 'node:stream'
import { InvalidPathError, isPathNotFound, type StorageDriver } from '../../src/storage/driver.js'

const text = async (stream: Readable): Promise<string> => {
  const chunks: Buffer[] = []
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk)
  return Buffer.concat(chunks).toString()
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
}
