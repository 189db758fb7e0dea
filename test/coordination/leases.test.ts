// Leases shared by replicas (src/coordination/): compare-and-set on a real
// Redis (a private redis-server, so it can be stopped) and on the machine's
// PostgreSQL. Two Leases objects stand for two replicas.
import { randomBytes } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { Leases, type LeaseStore } from '../../src/coordination/leases.js'
import { PostgresLeaseStore, RedisLeaseStore } from '../../src/coordination/lease-store.js'
import { startRedis } from '../helpers/redis.js'

const PG_URL = process.env.STEVEDORE_TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/test'
const log = pino({ level: 'silent' })

type Open = () => Promise<LeaseStore>

/** A store whose calls fail while `frozen`: a holder that cannot renew (a stalled process, a cut link). */
function freezable(store: LeaseStore): LeaseStore & { frozen: boolean } {
  const wrapped = {
    frozen: false,
    kind: store.kind,
    setIfFree: store.setIfFree.bind(store),
    renew: (...args: Parameters<LeaseStore['renew']>) => (wrapped.frozen ? Promise.reject(new Error('frozen')) : store.renew(...args)),
    release: store.release.bind(store),
    read: store.read.bind(store),
    close: store.close.bind(store),
  }
  return wrapped
}

async function contract(t: Test, open: Open): Promise<void> {
  const ns = randomBytes(4).toString('hex')
  const store = freezable(await open())
  const a = new Leases(store, { log, ttlMs: 600 })
  const b = new Leases(await open(), { log, ttlMs: 600 })
  t.teardown(async () => {
    await a.close()
    await b.close()
  })
  const key = `fill/${ns}`

  const first = await a.acquire(key, 'fill')
  t.equal(first.state, 'held', 'a free key is taken')
  const second = await b.acquire(key, 'fill')
  t.equal(second.state, 'busy', 'a held key is busy for everyone else')
  t.equal(second.state === 'busy' ? second.info.purpose : undefined, 'fill', 'with what the holder is doing')
  if (first.state !== 'held') return

  let bytes = 0
  first.lease.track(() => bytes)
  bytes = 4096
  await delay(450) // more than two renewals (every ttl/3), and past the ttl of the first set
  const seen = await b.read(key)
  t.equal(seen?.progress, 4096, 'the holder publishes its progress with each renewal')
  t.equal((await b.acquire(key, 'fill')).state, 'busy', 'renewals keep it past its ttl')
  t.notOk(first.lease.isLost())

  await first.lease.release()
  const after = await b.acquire(key, 'fill')
  t.equal(after.state, 'held', 'once released, the next one takes it')
  if (after.state === 'held') await after.lease.release()

  // A holder that stops renewing (it died) loses the key after the ttl, and learns it if it comes back.
  const stalled = await a.acquire(`${key}/2`, 'sweep', 300)
  t.equal(stalled.state, 'held')
  if (stalled.state !== 'held') return
  const takeover = async (): Promise<string> => {
    for (let i = 0; i < 50; i++) {
      const got = await b.acquire(`${key}/2`, 'sweep', 5_000)
      if (got.state === 'held') return 'held'
      await delay(100)
    }
    return 'never'
  }
  store.frozen = true // its renewals fail from now on, as a stalled holder's would
  t.equal(await takeover(), 'held', 'an expired lease is taken over')
  t.notOk(stalled.lease.isLost(), 'the stalled holder cannot know yet')
  store.frozen = false
  await delay(250) // its next renewal (every ttl/3 = 100 ms) finds the key taken
  t.ok(stalled.lease.isLost(), 'the old holder finds out at its next renewal')
  await stalled.lease.release()
  t.equal((await a.acquire(`${key}/2`, 'sweep')).state, 'busy', "its release did not free the new holder's lease")
}

t.test('redis', async t => {
  const redis = await startRedis(t)
  await contract(t, () => RedisLeaseStore.open(redis.url, 'stevedore-test'))
})

t.test('postgres', async t => {
  const probe = await PostgresLeaseStore.open(PG_URL, 'probe')
  const reachable = await probe.read('x').then(() => true, (err: Error) => err.message)
  await probe.close()
  if (reachable !== true) {
    t.fail(`PostgreSQL at ${PG_URL} is not reachable (${reachable}): set STEVEDORE_TEST_PG_URL`)
    return
  }
  await contract(t, () => PostgresLeaseStore.open(PG_URL, 'stevedore-test'))
})

t.test('redis going away: unavailable at once, healthy again when it is back', async t => {
  const redis = await startRedis(t)
  const leases = new Leases(await RedisLeaseStore.open(redis.url, 'stevedore-test'), { log, ttlMs: 1_000, timeoutMs: 1_000 })
  t.teardown(() => leases.close())
  const held = await leases.acquire('fill/x', 'fill')
  t.equal(held.state, 'held')
  t.same(leases.health(), { kind: 'redis', healthy: true })
  await redis.stop()
  const started = Date.now()
  const down = await leases.acquire('fill/y', 'fill')
  t.equal(down.state, 'unavailable', 'no lease while Redis is away: the caller goes on alone')
  t.ok(Date.now() - started < 1_500, `answered within the call timeout (${Date.now() - started} ms), not held until Redis is back`)
  t.equal(leases.health()?.healthy, false, 'and the health says so')
  if (held.state === 'held') await held.lease.release() // must not hang either
  await redis.start()
  let back = 'unavailable'
  for (let i = 0; i < 60 && back !== 'held'; i++) {
    back = (await leases.acquire('fill/z', 'fill')).state
    if (back !== 'held') await delay(100)
  }
  t.equal(back, 'held', 'leases work again once Redis answers')
  t.equal(leases.health()?.healthy, true)
})

t.test('without a store every lease is held at once (one replica)', async t => {
  const leases = new Leases(undefined, { log })
  t.equal(leases.shared, false)
  t.equal(leases.health(), undefined)
  const a = await leases.acquire('k', 'fill')
  const b = await leases.acquire('k', 'fill')
  t.equal(a.state, 'held')
  t.equal(b.state, 'held', 'nothing to coordinate with: single flight is the process’s own')
})
