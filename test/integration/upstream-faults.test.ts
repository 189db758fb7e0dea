// Upstream faults that must end in a served blob or a prompt error, against a
// fake upstream that speaks the registry protocol (the faults a real
// Distribution cannot produce): a burst of 5xx on blobs, an upstream that
// stalls for good, and a kill -9 of a real Stevedore in the middle of a fill.
import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { blob, startFakeUpstream, type FakeBlob } from '../helpers/fake-upstream.js'
import { listFiles, seededBytes } from '../helpers/files.js'
import { rawGet } from '../helpers/http.js'
import { until } from '../helpers/until.js'
import { startInProcess } from '../helpers/inprocess.js'
import { startStevedore } from '../helpers/stevedore.js'

const REPO = 'faulty/app'

const content = seededBytes
const walk = listFiles

/** Every stored blob hashes to its name. */
async function everyBlobVerifies(t: Test, root: string): Promise<number> {
  const blobs = (await walk(join(root, 'docker/registry/v2/blobs'))).filter(f => f.endsWith('/data'))
  for (const file of blobs) {
    const [algorithm, , hex] = file.split('/')
    const actual = createHash(algorithm ?? 'sha256').update(await readFile(join(root, 'docker/registry/v2/blobs', file))).digest('hex')
    t.equal(actual, hex, `${file} hashes to its name`)
  }
  return blobs.length
}

const uploadsLeft = async (root: string): Promise<string[]> =>
  (await walk(root)).filter(f => f.includes('_uploads/') || f.startsWith('.stevedore/tmp/') || f.startsWith('stevedore/v1/fills/'))

t.test('a burst of blob 5xx is those blobs\' failure: the next pull succeeds at once', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const blobs: FakeBlob[] = Array.from({ length: 7 }, (_, i) => blob(content(`burst-${i}`, 64 * 1024 + i)))
  for (const b of blobs) upstream.blobs.set(b.digest, b)
  const proxy = await startInProcess(t, t.testdir(), { proxy: { remoteurl: upstream.url } })

  upstream.blobStatus = 500
  for (const b of blobs) {
    const reply = await fetch(`${proxy.url}/v2/${REPO}/blobs/${b.digest}`)
    t.equal(reply.status, 502, 'the upstream\'s 5xx is passed on as a bad gateway')
    t.equal(((await reply.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UPSTREAM_ERROR')
  }
  const gets = upstream.log.filter(l => l.startsWith('GET') && l.includes('/blobs/')).length
  t.equal(gets, 14, 'each blob was tried twice (once more after a short backoff)')
  t.ok(upstream.count('GET', '/v2/') >= 1, 'and the registry base was looked at')

  upstream.blobStatus = undefined
  for (const b of blobs) {
    const reply = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${b.digest}`, {}, false)
    t.equal(reply.status, 200, 'an immediate retry after the fault is served: the upstream was never taken offline')
    t.ok(reply.complete)
    t.equal(reply.sha256, b.digest)
  }
  // The last byte goes out once the digest is verified; the commit (fsync, rename) follows.
  const stored = async (): Promise<number> => (await walk(join(proxy.root, 'docker/registry/v2/blobs'))).filter(f => f.endsWith('/data')).length
  await until('the last fill committed', async () => (await stored()) === 7)
  t.equal(await everyBlobVerifies(t, proxy.root), 7, 'all 7 blobs cached')
})

t.test('a stalled upstream: every client ends within the bound, the fill ends in the background', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const stalled = blob(content('stalled', 2 * 1024 * 1024 + 3))
  upstream.blobs.set(stalled.digest, stalled)
  const proxy = await startInProcess(t, t.testdir(), {
    proxy: { remoteurl: upstream.url, timeouts: { connect: '2s', headers: '2s', body: '2s', resume: '3s', fillwait: '3s' } },
  })
  upstream.fault = 'stall-always'
  const started = Date.now()
  const clients = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const reply = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${stalled.digest}`, {}, false)
      return { reply, seconds: (Date.now() - started) / 1000 }
    }),
  )
  for (const { reply, seconds } of clients) {
    t.equal(reply.status, 200, 'headers went out before the stall')
    t.notOk(reply.complete, 'the body is cut, never complete-looking')
    // A liveness bound, not a speed figure: fillwait (3 s) with ample slack for a loaded machine,
    // and below the 8 s the fill itself takes to give up (4 silences of 2 s).
    t.ok(seconds < 7.5, `the client ended after ${seconds.toFixed(1)} s, cut by fillwait while the fill went on`)
  }
  await until('the fill gave up and cleaned up', async () => (await uploadsLeft(proxy.root)).length === 0)
  const resumes = upstream.log.filter(l => l.startsWith('GET') && l.includes('/blobs/')).length - 1
  t.ok(resumes >= 1 && resumes <= 3, `the fill resumed ${resumes} times, within its bound of 3`)
  await t.rejects(stat(join(proxy.root, 'docker/registry/v2/blobs/sha256', stalled.digest.slice(7, 9), stalled.digest.slice(7), 'data')), { code: 'ENOENT' }, 'nothing committed')

  upstream.fault = 'none'
  const healthy = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${stalled.digest}`, {}, false)
  t.ok(healthy.complete, 'once the upstream recovers the blob is served')
  t.equal(healthy.sha256, stalled.digest)
})

t.test('kill -9 mid-fill: the restart removes the spool, and the pull then succeeds', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const big = blob(content('killed', 6 * 1024 * 1024 + 5))
  const small = blob(content('small', 10_000))
  upstream.blobs.set(big.digest, big)
  upstream.blobs.set(small.digest, small)
  const first = await startStevedore(t, { config: { log: { level: 'info' }, proxy: { remoteurl: upstream.url, timeouts: { body: '60s' } } } })
  const root = (first.config.storage as { filesystem: { rootdirectory: string } }).filesystem.rootdirectory
  t.equal((await rawGet(`${first.url}/v2/${REPO}/blobs/${small.digest}`, {}, false)).sha256, small.digest, 'a blob cached before the kill')

  upstream.fault = 'stall'
  const pending = rawGet(`${first.url}/v2/${REPO}/blobs/${big.digest}`, {}, false).catch(() => undefined)
  const spoolData = async (): Promise<string | undefined> => (await walk(root)).find(f => /_uploads\/fill-[^/]+\/data$/.test(f))
  await until('the fill is half-way', async () => {
    const data = await spoolData()
    // (the small blob's spool may still be there, being committed away, when the walk sees it)
    const size = data === undefined ? 0 : ((await stat(join(root, data)).catch(() => undefined))?.size ?? 0)
    return size >= Math.floor(big.content.length / 2)
  })
  process.kill(first.pid, 'SIGKILL')
  await first.stop()
  await pending
  t.ok(await spoolData(), 'the killed run left its spool behind')

  upstream.fault = 'none'
  const second = await startStevedore(t, { configPath: first.configPath })
  const recovered = () => second.logRecords().find(r => r.msg === 'removed what an interrupted run left behind: fill spools and temp files')
  // The line is logged after the removal, and reaches us through a pipe: wait for both.
  await until('the restart removed the spool', async () => (await uploadsLeft(root)).length === 0 && recovered() !== undefined)
  const recovery = recovered()
  t.match(recovery, { spools: 1 }, 'the restart says what it removed')
  t.ok(Number(recovery?.bytes) >= Math.floor(big.content.length / 2), `and how many bytes (${String(recovery?.bytes)})`)

  const pulled = await rawGet(`${second.url}/v2/${REPO}/blobs/${big.digest}`, {}, false)
  t.ok(pulled.complete, 'the pull succeeds after the restart')
  t.equal(pulled.sha256, big.digest)
  const again = await rawGet(`${second.url}/v2/${REPO}/blobs/${small.digest}`, {}, false)
  t.equal(again.sha256, small.digest, 'the blob cached before the kill is still served')
  await until('the fill committed', async () => (await uploadsLeft(root)).length === 0)
  t.equal(await everyBlobVerifies(t, root), 2, 'every stored blob hashes to its name')
  t.same(await uploadsLeft(root), [], 'nothing left under _uploads or in the scratch directory')
})
