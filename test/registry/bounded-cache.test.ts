// Caches bounded by entries, and by bytes where entries vary, without lru-cache's up-front arrays.
import t from 'tap'
import { boundedCache } from '../../src/registry/bounded-cache.js'

t.test('bounded by entries: the oldest goes first', async t => {
  const cache = boundedCache<string, number>({ entries: 3 })
  for (let i = 0; i < 5; i++) cache.set(`k${i}`, i)
  t.equal(cache.size, 3)
  t.same([...cache.keys()].sort(), ['k2', 'k3', 'k4'])
  cache.get('k2')
  cache.set('k5', 5)
  t.ok(cache.has('k2'), 'a recent get keeps an entry')
  t.notOk(cache.has('k3'))
})

t.test('bounded by bytes and by entries at once', async t => {
  const cache = boundedCache<string, Buffer>({ entries: 10, bytes: 1000, sizeOf: b => b.length })
  for (let i = 0; i < 20; i++) cache.set(`small${i}`, Buffer.alloc(1))
  t.equal(cache.size, 10, 'tiny entries: the entry bound holds')
  cache.clear()
  for (let i = 0; i < 5; i++) cache.set(`big${i}`, Buffer.alloc(300))
  t.equal(cache.size, 3, 'large entries: the byte bound holds')
  t.ok([...cache.values()].reduce((n, b) => n + b.length, 0) <= 1000)
  cache.set('huge', Buffer.alloc(1001))
  t.notOk(cache.has('huge'), 'an entry larger than the whole bound is not kept')
})

t.test('options pass through: a TTL', async t => {
  let now = 1000
  const cache = boundedCache<string, string>({ entries: 5 }, { ttl: 100, ttlResolution: 0, perf: { now: () => now } })
  cache.set('a', 'x')
  t.equal(cache.get('a'), 'x')
  now += 101
  t.equal(cache.get('a'), undefined)
})

t.test('an empty cache of 100,000 entries holds no memory for them', async t => {
  const before = process.memoryUsage().heapUsed
  const caches = Array.from({ length: 20 }, () => boundedCache<string, number>({ entries: 100_000 }))
  const grown = process.memoryUsage().heapUsed - before
  t.ok(grown < 4 * 1024 * 1024, `20 empty caches grew the heap by ${(grown / 1048576).toFixed(1)} MiB (lru-cache's max would reserve ~50)`)
  t.equal(caches.length, 20)
})
