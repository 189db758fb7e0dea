// Blob downloads share a buffer budget: large buffers for a few, smaller ones for many.
import t from 'tap'
import { chunkSize } from '../../src/http/sendfile.js'

t.test('buffer size by downloads under way', async t => {
  t.equal(chunkSize(0), 512 * 1024)
  t.equal(chunkSize(1), 512 * 1024)
  t.equal(chunkSize(16), 512 * 1024)
  t.equal(chunkSize(17), 256 * 1024)
  t.equal(chunkSize(64), 128 * 1024)
  t.equal(chunkSize(65), 64 * 1024)
  t.equal(chunkSize(10_000), 64 * 1024, 'never below 64 KiB')
  for (const n of [1, 8, 16, 32, 48, 64, 100, 128]) t.ok(chunkSize(n) * n <= 8 * 1024 * 1024, `${n} downloads stay within 8 MiB`)
})
