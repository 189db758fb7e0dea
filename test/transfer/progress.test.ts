// What prefetch prints: JSON lines when not on a terminal, cli-progress bars
// (and a line per image) on one; and the bounded concurrency it fetches with.
import { Writable } from 'node:stream'
import t from 'tap'
import { BarReporter, formatBytes, JsonLinesReporter } from '../../src/transfer/progress.js'
import { forEachLimit, type PrefetchedImage } from '../../src/transfer/prefetch.js'

const result = (over: Partial<PrefetchedImage> = {}): PrefetchedImage => ({
  reference: 'alpine:3.20',
  repository: 'library/alpine',
  digest: `sha256:${'a'.repeat(64)}`,
  manifests: 2,
  blobs: 3,
  referrers: 0,
  bytes: 3 * 1024 * 1024,
  missingPlatforms: [],
  ...over,
})

/** A stream that keeps what is written; `tty` makes it look like a terminal. */
function sink(tty: boolean): { stream: Writable & { isTTY?: boolean; columns?: number }; text: () => string } {
  const chunks: string[] = []
  const stream = new Writable({ write: (chunk, _, done) => (chunks.push(String(chunk)), done()) }) as Writable & { isTTY?: boolean; columns?: number }
  if (tty) Object.assign(stream, { isTTY: true, columns: 120 })
  return { stream, text: () => chunks.join('') }
}

t.test('JSON lines: one per image, then the summary', async t => {
  const out = sink(false)
  const reporter = new JsonLinesReporter(out.stream)
  const one = reporter.image('alpine:3.20')
  one.total(10)
  one.advance(10)
  one.done(result())
  reporter.image('team/arm:1').done(result({ reference: 'team/arm:1', missingPlatforms: ['linux/s390x'] }))
  reporter.image('team/nothere:1').failed('MANIFEST_UNKNOWN: manifest unknown')
  reporter.end({ images: 3, done: 2, failed: 1, bytes: 6, failedImages: ['team/nothere:1'] })
  const lines = out.text().trim().split('\n').map(l => JSON.parse(l))
  t.same(lines[0], { image: 'alpine:3.20', status: 'done', repository: 'library/alpine', digest: `sha256:${'a'.repeat(64)}`, manifests: 2, blobs: 3, referrers: 0, bytes: 3145728 })
  t.same(lines[1].missingPlatforms, ['linux/s390x'], 'platforms the index lacks are named')
  t.same(lines[2], { image: 'team/nothere:1', status: 'failed', error: 'MANIFEST_UNKNOWN: manifest unknown' })
  t.same(lines[3], { status: 'summary', images: 3, done: 2, failed: 1, bytes: 6, failedImages: ['team/nothere:1'] })
})

t.test('bars on a terminal, a line per image, a summary', async t => {
  const out = sink(true)
  const reporter = new BarReporter(out.stream, 2)
  const one = reporter.image('alpine:3.20')
  one.total(2048)
  one.advance(1024)
  one.advance(1024)
  one.done(result({ missingPlatforms: ['linux/s390x'] }))
  reporter.image('team/nothere:1').failed('MANIFEST_UNKNOWN: manifest unknown')
  reporter.end({ images: 2, done: 1, failed: 1, bytes: 2048, failedImages: ['team/nothere:1'] })
  const text = out.text()
  t.match(text, /done {4}alpine:3\.20: 2 manifests, 3 blobs, 3\.0 MiB; no linux\/s390x/)
  t.match(text, /failed {2}team\/nothere:1: MANIFEST_UNKNOWN/)
  t.match(text, /1 of 2 images prefetched, 2\.0 KiB; 1 failed\n$/)
  t.equal(formatBytes(512), '512 B')
  t.equal(formatBytes(5 * 1024 ** 3), '5.0 GiB')
})

t.test('forEachLimit: at most `limit` at once, every item, the first failure after all settled', async t => {
  let running = 0
  let most = 0
  const seen: number[] = []
  await forEachLimit([1, 2, 3, 4, 5, 6, 7], 3, async n => {
    running += 1
    most = Math.max(most, running)
    await new Promise(resolve => setImmediate(resolve))
    seen.push(n)
    running -= 1
  })
  t.equal(most, 3)
  t.same(seen.sort(), [1, 2, 3, 4, 5, 6, 7])
  await t.rejects(forEachLimit([1, 2, 3], 2, async n => {
    if (n === 2) throw new Error('two')
  }), /two/)
  await forEachLimit([], 4, async () => void t.fail('nothing to run'))
})
