// The readiness checks on their own: fakes for storage, metadata and upstreams,
// an injected clock for the report cache, short real timeouts.
import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { Readiness } from '../../src/lifecycle/readiness.js'
import type { StorageDriver } from '../../src/storage/driver.js'
import type { BreakerState } from '../../src/upstream/breaker.js'

interface FakeDriver {
  driver: StorageDriver
  calls: string[]
  /** What the next puts do: succeed, fail with an fs error, or never settle. */
  mode: 'ok' | 'erofs' | 'hang'
}

function fakeDriver(): FakeDriver {
  const fake: FakeDriver = {
    calls: [],
    mode: 'ok',
    driver: {
      putContent: async (path: string) => {
        fake.calls.push(`put ${path}`)
        if (fake.mode === 'hang') return new Promise<void>(() => {})
        if (fake.mode === 'erofs') throw Object.assign(new Error(`EROFS: read-only file system, open '/srv${path}'`), { code: 'EROFS' })
      },
      delete: async (path: string) => void fake.calls.push(`delete ${path}`),
      stat: async (path: string) => (fake.calls.push(`stat ${path}`), undefined),
    } as unknown as StorageDriver,
  }
  return fake
}

function capture() {
  const records: Record<string, unknown>[] = []
  const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, done) => (records.push(JSON.parse(c.toString()) as Record<string, unknown>), done()) }))
  return { log, records }
}

t.test('writes and deletes one probe file per report; reports are cached', async t => {
  const fake = fakeDriver()
  let clock = 1_000
  const upstream: { name: string; breakerState: BreakerState } = { name: 'hub', breakerState: 'closed' }
  const readiness = new Readiness({ driver: fake.driver, upstreams: [upstream], log: pino({ level: 'silent' }), now: () => clock })
  const [a, b] = await Promise.all([readiness.ready(), readiness.ready()])
  t.equal(a, b, 'concurrent probes share one report')
  t.match(a, { ready: true, failed: [], checks: { storage: { ok: true } }, upstreams: { hub: { state: 'online' } } })
  t.notOk('metadata' in a.checks, 'no metadata check without a store')
  t.equal(fake.calls.length, 2)
  t.match(fake.calls[0], /^put \/stevedore\/v1\/health\/[0-9a-f]{8}-\d+$/)
  t.equal(fake.calls[1], fake.calls[0]?.replace('put', 'delete'), 'the probe is deleted again')

  clock += 999
  await readiness.ready()
  t.equal(fake.calls.length, 2, 'within a second: the cached report')
  clock += 1
  upstream.breakerState = 'open'
  t.match(await readiness.ready(), { ready: true, upstreams: { hub: { state: 'offline' } } }, 'an offline upstream never fails readiness')
  t.equal(fake.calls.length, 4)
  clock += 1_000
  upstream.breakerState = 'half-open'
  t.match(await readiness.ready(), { upstreams: { hub: { state: 'probing' } } })
})

t.test('a failing storage names its check and its error code, never its path', async t => {
  const fake = fakeDriver()
  const { log, records } = capture()
  let clock = 0
  const readiness = new Readiness({ driver: fake.driver, log, now: () => clock })
  fake.mode = 'erofs'
  const report = await readiness.ready()
  t.match(report, { ready: false, failed: ['storage'], checks: { storage: { ok: false, error: 'EROFS' } } })
  t.notMatch(JSON.stringify(report), '/srv')
  t.match(records, [{ level: 40, msg: 'not ready', failed: ['storage'], errors: { storage: /EROFS.*\/srv/ } }], 'the log has the whole error')
  clock += 1_000
  await readiness.ready()
  t.equal(records.length, 1, 'logged once, when readiness changes')
  fake.mode = 'ok'
  clock += 1_000
  t.match(await readiness.ready(), { ready: true })
  t.match(records[1], { level: 30, msg: 'ready again' })
})

t.test('checks are bounded by a timeout, and a hung one is not started again', async t => {
  const fake = fakeDriver()
  let clock = 0
  let pinged = 0
  const metadata = { ping: async () => (pinged++, pinged === 1) }
  const readiness = new Readiness({ driver: fake.driver, metadata, log: pino({ level: 'silent' }), timeoutMs: 50, now: () => clock })
  fake.mode = 'hang'
  const started = Date.now()
  const report = await readiness.ready()
  t.ok(Date.now() - started < 1_000, 'answered at the timeout')
  t.match(report, { ready: false, failed: ['storage'], checks: { storage: { ok: false, error: 'timeout' }, metadata: { ok: true } } })
  clock += 1_000
  const next = await readiness.ready()
  t.match(next, { failed: ['storage', 'metadata'], checks: { storage: { error: 'timeout' }, metadata: { ok: false, error: 'no round trip' } } })
  t.equal(fake.calls.filter(c => c.startsWith('put')).length, 1, 'the hung write is not joined by another')
})

t.test('read-only storage (storage.maintenance.readonly) is only read', async t => {
  const fake = fakeDriver()
  const readiness = new Readiness({ driver: fake.driver, writable: false, log: pino({ level: 'silent' }) })
  t.match(await readiness.ready(), { ready: true })
  t.same(fake.calls, ['stat /docker/registry/v2'])
})
