// Admission of upstream fills through the HTTP API (limits.fills and
// limits.fillsperclient): a miss beyond the overall limit is a 503, beyond a
// client's share a 429, both with Retry-After and an OCI body, before anything
// is asked of the upstream or written; joining a download under way is always
// served; slots come back when fills end. Clients are told apart by their
// address: requests are sent from 127.0.0.2 and 127.0.0.3 (all of 127/8 is
// loopback on Linux).
import { createHash } from 'node:crypto'
import { request } from 'node:http'
import t, { type Test } from 'tap'
import { blob, startFakeUpstream, type FakeBlob, type FakeUpstream } from '../helpers/fake-upstream.js'
import { listFiles, seededBytes } from '../helpers/files.js'
import { startInProcess, type InProcess } from '../helpers/inprocess.js'
import { FillAdmission, FILL_RETRY_AFTER_SECONDS } from '../../src/proxy/admission.js'
import type { FillRegistry } from '../../src/proxy/fill.js'
import type { ProxyRegistry } from '../../src/proxy/registry.js'
import type { RepositoryName } from '../../src/registry/names.js'

const REPO = 'limits/app'

interface Answer {
  status: number
  headers: import('node:http').IncomingHttpHeaders
  body: Buffer
  sha256: string
  complete: boolean
}

/** A GET or HEAD from `localAddress`, on a connection of its own. */
function send(url: string, localAddress: string, method: 'GET' | 'HEAD' = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false, localAddress }, res => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', reject)
      res.on('end', () => {
        const body = Buffer.concat(chunks)
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          sha256: `sha256:${createHash('sha256').update(body).digest('hex')}`,
          complete: res.complete && (method === 'HEAD' || body.length === Number(res.headers['content-length'])),
        })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

async function until(what: string, check: () => Promise<boolean> | boolean, deadlineMs = 20_000): Promise<void> {
  const end = Date.now() + deadlineMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** A gate the fake upstream holds blob GETs at (headers not sent yet): the fills stay under way. */
function hold(upstream: FakeUpstream): () => void {
  let open!: () => void
  upstream.blobGate = new Promise<void>(resolve => (open = resolve))
  return () => {
    upstream.blobGate = undefined
    open()
  }
}

/**
 * The proxy's fill registry, with a count of the requests that joined a fill
 * under way (seen from outside: a joining request sends nothing upstream).
 */
function spyOnFills(proxy: InProcess): { fills: FillRegistry; joins: () => number } {
  const fills = (proxy.app.routing.resolve(REPO as RepositoryName, null).registry as ProxyRegistry).ctx.fills
  const start = fills.start.bind(fills)
  let joins = 0
  fills.start = (remote, upstream, repository, digest, ...rest) => {
    if (fills.current(upstream, digest) !== undefined) joins += 1
    return start(remote, upstream, repository, digest, ...rest)
  }
  return { fills, joins: () => joins }
}

const blobUrl = (proxy: InProcess, b: FakeBlob): string => `${proxy.url}/v2/${REPO}/blobs/${b.digest}`
const upstreamGets = (upstream: FakeUpstream, b: FakeBlob): number => upstream.count('GET', `/blobs/${b.digest}`)

/** Fill spools, journal entries and temp files: what a fill leaves while it runs. */
const leftovers = async (root: string): Promise<string[]> =>
  (await listFiles(root)).filter(f => f.includes('/_uploads/') || f.startsWith('stevedore/v1/fills/') || f.startsWith('.stevedore/tmp/'))

function refused(t: Test, answer: Answer, status: number, code: string): void {
  t.equal(answer.status, status, `refused with ${status}`)
  t.match(answer.headers['retry-after'], /^\d+$/, 'with a Retry-After in seconds')
  t.match(answer.headers['content-type'], /^application\/json/)
  const body = JSON.parse(answer.body.toString('utf8')) as { errors: { code: string; message: string }[] }
  t.equal(body.errors.length, 1, 'an OCI error body')
  t.equal(body.errors[0]?.code, code)
}

t.test('limits.fills: a third new download is refused with 503; joining one under way is served', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const [one, two, three] = ['one', 'two', 'three'].map(seed => blob(seededBytes(`limits-${seed}`, 512 * 1024 + 3))) as [FakeBlob, FakeBlob, FakeBlob]
  for (const b of [one, two, three]) upstream.blobs.set(b.digest, b)
  const proxy = await startInProcess(t, t.testdir(), { proxy: { remoteurl: upstream.url }, limits: { fills: 2, fillsperclient: 10 } })
  const { fills, joins } = spyOnFills(proxy)

  const release = hold(upstream)
  const first = send(blobUrl(proxy, one), '127.0.0.2')
  const second = send(blobUrl(proxy, two), '127.0.0.3')
  await until('both downloads reached the upstream', () => upstreamGets(upstream, one) === 1 && upstreamGets(upstream, two) === 1)

  const third = await send(blobUrl(proxy, three), '127.0.0.4')
  refused(t, third, 503, 'UNAVAILABLE')
  t.equal(upstreamGets(upstream, three), 0, 'the refused blob was not asked of the upstream')
  // The held fills write nothing before the upstream's headers: whatever is on disk would be the refused one's.
  t.same(await leftovers(proxy.root), [], 'and nothing was written for it')

  const head = await send(blobUrl(proxy, three), '127.0.0.4', 'HEAD')
  t.equal(head.status, 200, 'a HEAD starts no download, so it is never refused')

  const joiner = send(blobUrl(proxy, one), '127.0.0.4')
  await until('the request for a blob under way joined its fill', () => joins() === 1)
  t.equal(fills.admitted, 2, 'joining took no slot')
  release()
  for (const [name, answer, b] of [['first', await first, one], ['second', await second, two], ['joining', await joiner, one]] as const) {
    t.equal(answer.status, 200, `${name}: served`)
    t.ok(answer.complete, `${name}: whole`)
    t.equal(answer.sha256, b.digest, `${name}: the right bytes`)
  }
  t.equal(upstreamGets(upstream, one), 1, 'the joining client did not start a download of its own')

  await until('the two fills are over', async () => fills.admitted === 0 && (await leftovers(proxy.root)).length === 0)
  const later = await send(blobUrl(proxy, three), '127.0.0.4')
  t.equal(later.status, 200, 'once the fills ended, a new one is admitted')
  t.equal(later.sha256, three.digest)
  await until('the last fill is over', async () => (await leftovers(proxy.root)).length === 0)
  t.same(await leftovers(proxy.root), [], 'no spool, journal entry or temp file left')
})

t.test('limits.fillsperclient: one client beyond its share gets 429; others and joins are served', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const [one, two, three] = ['a', 'b', 'c'].map(seed => blob(seededBytes(`per-client-${seed}`, 300 * 1024 + 1))) as [FakeBlob, FakeBlob, FakeBlob]
  for (const b of [one, two, three]) upstream.blobs.set(b.digest, b)
  const proxy = await startInProcess(t, t.testdir(), { proxy: { remoteurl: upstream.url }, limits: { fills: 10, fillsperclient: 1 } })
  const { fills, joins } = spyOnFills(proxy)
  const A = '127.0.0.2'
  const B = '127.0.0.3'

  const release = hold(upstream)
  const mine = send(blobUrl(proxy, one), A)
  await until('A\'s download reached the upstream', () => upstreamGets(upstream, one) === 1)

  const again = await send(blobUrl(proxy, two), A)
  refused(t, again, 429, 'TOOMANYREQUESTS')
  t.equal(upstreamGets(upstream, two), 0, 'the refused blob was not asked of the upstream')

  const other = send(blobUrl(proxy, two), B)
  await until('B\'s download reached the upstream', () => upstreamGets(upstream, two) === 1)
  const joining = send(blobUrl(proxy, one), A)
  const joiningOther = send(blobUrl(proxy, two), A)
  await until('A\'s two requests for blobs under way joined their fills', () => joins() === 2)
  t.equal(fills.admitted, 2, 'joining took no slot')
  release()
  for (const [name, answer, b] of [
    ['A', await mine, one],
    ['B', await other, two],
    ['A joining its own download', await joining, one],
    ['A joining B\'s download', await joiningOther, two],
  ] as const) {
    t.equal(answer.status, 200, `${name}: served`)
    t.ok(answer.complete, `${name}: whole`)
    t.equal(answer.sha256, b.digest, `${name}: the right bytes`)
  }
  t.equal(upstreamGets(upstream, one) + upstreamGets(upstream, two), 2, 'one download per blob')

  await until('the fills are over', async () => fills.admitted === 0 && (await leftovers(proxy.root)).length === 0)
  const next = await send(blobUrl(proxy, three), A)
  t.equal(next.status, 200, 'A may start a new download once its own is over')
  t.equal(next.sha256, three.digest)
  await until('the last fill is over', async () => (await leftovers(proxy.root)).length === 0)
  t.same(await leftovers(proxy.root), [], 'nothing left behind')
})

t.test('the admission counter: per client and overall, slots given back once', async t => {
  const admission = new FillAdmission({ fills: 3, fillsPerClient: 2 })
  const a1 = admission.admit('10.0.0.1')
  const a2 = admission.admit('10.0.0.1')
  t.throws(() => admission.admit('10.0.0.1'), { code: 'TOOMANYREQUESTS', retryAfter: String(FILL_RETRY_AFTER_SECONDS) }, 'a client beyond its share')
  const internal = admission.admit(undefined)
  t.equal(admission.active, 3)
  t.throws(() => admission.admit('10.0.0.2'), { code: 'UNAVAILABLE', retryAfter: String(FILL_RETRY_AFTER_SECONDS) }, 'anyone beyond the overall limit')
  a1()
  a1()
  t.equal(admission.active, 2, 'a release counts once')
  t.equal(admission.activeFor('10.0.0.1'), 1)
  const b = admission.admit('10.0.0.2')
  a2()
  internal()
  b()
  t.equal(admission.active, 0)
  t.equal(admission.activeFor('10.0.0.1'), 0)
  t.equal(admission.activeFor('10.0.0.2'), 0)
})
