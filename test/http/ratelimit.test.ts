// The per-client token bucket (limits.requestrate / limits.requestburst) on an
// injected clock, and one HTTP-level check: a burst over the limit gets 429
// TOOMANYREQUESTS with Retry-After and a well-formed OCI body.
import t from 'tap'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { ERROR_CODES } from '../../src/http/errcode.js'
import { clientKey, RequestRateLimiter } from '../../src/http/ratelimit.js'
import { createServer } from '../../src/http/server.js'
import { Routing } from '../../src/routing/routes.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { LocalRegistry } from '../../src/storage/local.js'

const clock = (): { now: () => number; advance(ms: number): void } => {
  let ms = 1_000_000
  return { now: () => ms, advance: (by: number) => void (ms += by) }
}

t.test('a rested client may make burst requests at once, then one per 1/rate seconds', async t => {
  const c = clock()
  const limiter = new RequestRateLimiter({ rate: 2, burst: 5, now: c.now })
  for (let i = 0; i < 5; i++) t.equal(limiter.take('10.0.0.1'), 0, `request ${i + 1} of the burst`)
  t.equal(limiter.take('10.0.0.1'), 1, 'the sixth waits: Retry-After 1 s (half a second, rounded up)')
  t.equal(limiter.take('10.0.0.2'), 0, 'another client has its own bucket')
  c.advance(499)
  t.equal(limiter.take('10.0.0.1'), 1, 'not yet a whole token back')
  c.advance(1)
  t.equal(limiter.take('10.0.0.1'), 0, 'one token back after 1/rate seconds')
  t.equal(limiter.take('10.0.0.1'), 1)
  c.advance(60_000)
  for (let i = 0; i < 5; i++) t.equal(limiter.take('10.0.0.1'), 0, 'refilled, but never past the burst')
  t.not(limiter.take('10.0.0.1'), 0)
})

t.test('Retry-After is the whole seconds until one token is back, at least 1', async t => {
  const c = clock()
  const slow = new RequestRateLimiter({ rate: 0.1, burst: 1, now: c.now })
  t.equal(slow.take('a'), 0)
  t.equal(slow.take('a'), 10, 'a rate of one per 10 s: 10 s')
  c.advance(2_500)
  t.equal(slow.take('a'), 8, '7.5 s left: 8')
  const fast = new RequestRateLimiter({ rate: 1000, burst: 1, now: c.now })
  t.equal(fast.take('a'), 0)
  t.equal(fast.take('a'), 1, 'a millisecond away is still 1 s: Retry-After has whole seconds')
})

t.test('refused requests do not take tokens; a clock stepping back adds none', async t => {
  const c = clock()
  const limiter = new RequestRateLimiter({ rate: 1, burst: 1, now: c.now })
  t.equal(limiter.take('a'), 0)
  for (let i = 0; i < 100; i++) limiter.take('a')
  c.advance(1_000)
  t.equal(limiter.take('a'), 0, 'hammering while refused does not push the next token away')
  c.advance(-10_000)
  t.equal(limiter.take('a'), 1, 'a step back gives nothing')
})

t.test('refuse() is TOOMANYREQUESTS with Retry-After', async t => {
  const c = clock()
  const limiter = new RequestRateLimiter({ rate: 1, burst: 2, now: c.now })
  t.equal(limiter.refuse('a'), undefined)
  t.equal(limiter.refuse('a'), undefined)
  const refusal = limiter.refuse('a')
  t.equal(refusal?.code, 'TOOMANYREQUESTS')
  t.equal(refusal?.retryAfter, '1')
})

t.test('memory is bounded: the least recently seen clients are dropped', async t => {
  const c = clock()
  const limiter = new RequestRateLimiter({ rate: 1, burst: 1, maxClients: 100, now: c.now })
  for (let i = 0; i < 1000; i++) limiter.take(`10.0.${i >> 8}.${i & 255}`)
  t.equal(limiter.size, 100)
  t.equal(limiter.take('10.0.3.231'), 1, 'a client still held keeps its empty bucket')
  t.equal(limiter.take('10.0.0.0'), 0, 'a dropped one comes back rested')
})

t.test('IPv6 clients are counted by their /64', async t => {
  t.equal(clientKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  t.equal(clientKey('2001:DB8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64')
  t.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(clientKey('::1'), '0:0:0:0::/64')
  t.equal(clientKey('fe80:0001:0:0::1'), 'fe80:1:0:0::/64', 'leading zeros do not make another key')
  t.equal(clientKey('10.1.2.3'), '10.1.2.3')
  t.equal(clientKey(''), '')
  const c = clock()
  const limiter = new RequestRateLimiter({ rate: 1, burst: 1, now: c.now })
  t.equal(limiter.take('2001:db8:1:2::1'), 0)
  t.equal(limiter.take('2001:db8:1:2::2'), 1, 'another address of the same /64 shares the bucket')
  t.equal(limiter.take('2001:db8:1:3::1'), 0, 'the next /64 does not')
})

t.test('a nonsensical rate is refused at construction', async t => {
  t.throws(() => new RequestRateLimiter({ rate: 0, burst: 1 }), RangeError)
  t.throws(() => new RequestRateLimiter({ rate: 1, burst: 0 }), RangeError)
  t.throws(() => new RequestRateLimiter({ rate: Number.NaN, burst: 1 }), RangeError)
})

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function get(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('over HTTP: a burst over the limit gets 429 with Retry-After and an OCI body', async t => {
  const root = t.testdir()
  const routing = new Routing({ upstreams: [], local: new LocalRegistry(new FilesystemDriver(root)), unknownNs: 'reject' })
  // A rate so low that no token comes back while the test runs.
  const server = createServer({ routing, log: pino({ level: 'silent' }), accessLog: false, requestRate: { rate: 0.01, burst: 3 } })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  const { port } = server.address() as AddressInfo

  for (let i = 0; i < 3; i++) t.equal((await get(port, '/v2/')).status, 200, `request ${i + 1} of the burst`)
  const refused = await get(port, '/v2/_catalog')
  t.equal(refused.status, 429)
  t.equal(ERROR_CODES.TOOMANYREQUESTS.status, 429)
  t.match(refused.headers['content-type'], /^application\/json/)
  const retryAfter = Number(refused.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${String(refused.headers['retry-after'])} is whole seconds, at least 1`)
  const body = JSON.parse(refused.body) as { errors: { code: string; message: string }[] }
  t.equal(body.errors[0]?.code, 'TOOMANYREQUESTS')
  t.type(body.errors[0]?.message, 'string')
  const head = await get(port, '/v2/', 'HEAD')
  t.equal(head.status, 429, 'HEAD too')
  t.equal(head.body, '', 'without a body')
})

t.test('over HTTP: rate 0 is no limit', async t => {
  const root = t.testdir()
  const routing = new Routing({ upstreams: [], local: new LocalRegistry(new FilesystemDriver(root)), unknownNs: 'reject' })
  const server = createServer({ routing, log: pino({ level: 'silent' }), accessLog: false, requestRate: { rate: 0, burst: 1 } })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  const { port } = server.address() as AddressInfo
  for (let i = 0; i < 5; i++) t.equal((await get(port, '/v2/')).status, 200)
})
