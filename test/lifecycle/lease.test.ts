// The storage lease gc and quota eviction take turns with: one holder at a
// time, a dead holder's record taken over after it expires, a holder that
// lost a race told so, and release leaving the way free.
import t from 'tap'
import { acquireLease, LeaseHeld } from '../../src/lifecycle/lease.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { pathFor } from '../../src/storage/paths.js'

const path = pathFor({ kind: 'lease', name: 'sweep' })

t.test('one holder at a time; release frees it', async t => {
  const driver = new FilesystemDriver(t.testdir())
  const first = await acquireLease(driver, 'sweep', 'gc', { settleMs: 1 })
  const record = JSON.parse((await driver.getContent(path)).toString()) as { holder: string; purpose: string; expires: number }
  t.equal(record.purpose, 'gc', 'the record says what the holder is doing')
  t.ok(record.expires > Date.now(), 'and until when')
  const refused = await acquireLease(driver, 'sweep', 'eviction', { settleMs: 1 }).then(
    () => undefined,
    (err: unknown) => err,
  )
  t.type(refused, LeaseHeld, 'a second taker is refused')
  t.match((refused as LeaseHeld).message, /sweep lease is held by .* \(gc\) until/)
  t.equal(first.isLost(), false)
  await first.release()
  t.equal(await driver.stat(path), undefined, 'release removes the record')
  const second = await acquireLease(driver, 'sweep', 'eviction', { settleMs: 1 })
  await second.release()
  await second.release()
  t.pass('release twice is harmless')
})

t.test("an expired record is a dead holder's: it is taken over", async t => {
  const driver = new FilesystemDriver(t.testdir())
  let now = 1_000_000
  await driver.putContent(path, JSON.stringify({ holder: 'dead-host-1', purpose: 'gc', expires: now - 1 }))
  const lease = await acquireLease(driver, 'sweep', 'eviction', { settleMs: 1, now: () => now })
  t.equal(lease.isLost(), false)
  await lease.release()
  await driver.putContent(path, JSON.stringify({ holder: 'live-host-1', purpose: 'gc', expires: now + 60_000 }))
  await t.rejects(acquireLease(driver, 'sweep', 'eviction', { settleMs: 1, now: () => now }), /sweep lease is held by live-host-1 \(gc\)/, 'an unexpired one is not')
  now += 61_000
  const later = await acquireLease(driver, 'sweep', 'eviction', { settleMs: 1, now: () => now })
  await later.release()
  t.pass('taken once it expired')
})

t.test('a garbled record counts as free', async t => {
  const driver = new FilesystemDriver(t.testdir())
  await driver.putContent(path, '{not json')
  const lease = await acquireLease(driver, 'sweep', 'gc', { settleMs: 1 })
  await lease.release()
  t.pass()
})

t.test('losing the race at the read-back, and losing the lease later', async t => {
  const driver = new FilesystemDriver(t.testdir())
  // Another process writes its record while we settle: we read it back and back off.
  const racing = acquireLease(driver, 'sweep', 'gc', { settleMs: 2000 })
  // Written once our record is there (within the settle), however loaded the machine is.
  const writtenBy = Date.now() + 1500
  while (!(await driver.stat(path)) && Date.now() < writtenBy) await new Promise(resolve => setTimeout(resolve, 5))
  await driver.putContent(path, JSON.stringify({ holder: 'other-host-1', purpose: 'eviction', expires: Date.now() + 60_000 }))
  await t.rejects(racing, /sweep lease is held by other-host-1 \(eviction\)/, 'the later writer wins')

  await driver.delete(path)
  // ttl 600 ms: the first renewal (a read, then a write) is due in 200 ms, so none is in flight
  // while the takeover is written (one that were could write its record back over it: the
  // driver has no compare-and-swap, see lease.ts).
  const lease = await acquireLease(driver, 'sweep', 'gc', { settleMs: 1, ttlMs: 600 })
  // Someone took it over (e.g. after a stall longer than the ttl): the next renewal notices.
  await driver.putContent(path, JSON.stringify({ holder: 'other-host-2', purpose: 'gc', expires: Date.now() + 60_000 }))
  // (the renewal timer is unref'd: a ref'd deadline keeps this test process alive meanwhile)
  let deadline: NodeJS.Timeout | undefined
  await Promise.race([lease.lost, new Promise(resolve => (deadline = setTimeout(resolve, 5000)))])
  clearTimeout(deadline)
  t.equal(lease.isLost(), true, 'the holder learns it lost the lease')
  await lease.release()
  t.match((await driver.getContent(path)).toString(), /other-host-2/, "release leaves the new holder's record alone")
})
