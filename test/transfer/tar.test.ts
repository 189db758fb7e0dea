// The tar layer: headers written with node-tar's encoder (a pax header for a
// long name), read back entry by entry; damage and truncation are errors
// with the bundle's codes; leaving early stops reading.
import { Readable } from 'node:stream'
import t from 'tap'
import { END_OF_ARCHIVE, fileHeader, padding, tarEntries } from '../../src/transfer/tar.js'

const entry = (path: string, content: Buffer): Buffer => Buffer.concat([fileHeader(path, content.length), content, padding(content.length)])
const LONG = `blobs/sha512/${'c'.repeat(128)}`

/** Reads every entry whole: [path, type, content]. */
async function readAll(bytes: Buffer, chunk = 100): Promise<[string, string, string][]> {
  const chunks: Buffer[] = []
  for (let i = 0; i < bytes.length; i += chunk) chunks.push(bytes.subarray(i, i + chunk))
  const out: [string, string, string][] = []
  for await (const e of tarEntries(Readable.from(chunks))) {
    const parts: Buffer[] = []
    for await (const c of e as AsyncIterable<Buffer>) parts.push(c)
    out.push([e.path, e.type, Buffer.concat(parts).toString()])
  }
  return out
}

t.test('written and read back, long names included', async t => {
  const big = Buffer.alloc(300_000, 'x')
  const tar = Buffer.concat([entry('a.json', Buffer.from('{"a":1}')), entry(LONG, Buffer.from('long')), entry('empty', Buffer.alloc(0)), entry('big', big), END_OF_ARCHIVE])
  t.equal(tar.length % 512, 0, 'whole blocks')
  const got = await readAll(tar)
  t.same(got.map(([path, type]) => [path, type]), [['a.json', 'File'], [LONG, 'File'], ['empty', 'File'], ['big', 'File']])
  t.equal(got[0]?.[2], '{"a":1}')
  t.equal(got[1]?.[2], 'long', 'a pax header carries the long name')
  t.equal(got[3]?.[2].length, big.length, 'a large entry streamed through in small chunks')
  t.same(padding(512).length, 0)
  t.same(padding(1).length, 511)
})

t.test('damaged, cut short, or not a tar: refused with a reason', async t => {
  const tar = Buffer.concat([entry('a', Buffer.alloc(2000, 'a')), entry('b', Buffer.alloc(3000, 'b')), END_OF_ARCHIVE])
  const damaged = Buffer.from(tar)
  damaged[148] = (damaged[148] as number) ^ 0x01 // the first header's checksum field
  await t.rejects(readAll(damaged), { code: 'ERR_BUNDLE_TRUNCATED', message: /checksum/ })
  await t.rejects(readAll(tar.subarray(0, 3000)), { code: 'ERR_BUNDLE_TRUNCATED', message: /truncated/ })
  await t.rejects(readAll(Buffer.from('not a tar at all')), { code: 'ERR_BUNDLE_TRUNCATED' })
  const failing = new Readable({ read() { this.destroy(new Error('disk on fire')) } })
  await t.rejects((async () => { for await (const e of tarEntries(failing)) e.resume() })(), { code: 'ERR_BUNDLE_TRUNCATED', message: /reading the bundle failed: disk on fire/ })
})

t.test('leaving the loop early stops reading', async t => {
  const tar = Buffer.concat([entry('a', Buffer.alloc(2000, 'a')), entry('b', Buffer.alloc(200_000, 'b')), END_OF_ARCHIVE])
  const source = Readable.from([tar.subarray(0, 1024), tar.subarray(1024)])
  for await (const e of tarEntries(source)) {
    t.equal(e.path, 'a')
    break
  }
  t.ok(source.destroyed, 'the source is destroyed')
})
