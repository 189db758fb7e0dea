// What the proxy does with blobs beyond filling them: a HEAD does not fill, a
// fill goes on when its client leaves, a blob cached for one repository is not
// served to another the upstream does not vouch for, and a rate-limited
// upstream's Retry-After reaches the client.
import { request } from 'node:http'
import { stat } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'
import { blob, startFakeUpstream } from '../helpers/fake-upstream.js'
import { rawGet } from '../helpers/http.js'
import { startInProcess } from '../helpers/inprocess.js'

const REPO = 'team/app'
const content = (seed: string, size: number): Buffer => {
  const out = Buffer.alloc(size)
  let block = createHash('sha256').update(seed).digest()
  for (let o = 0; o < size; o += 32) {
    block.copy(out, o)
    block = createHash('sha256').update(block).digest()
  }
  return out
}
const blobPath = (root: string, digest: string): string => join(root, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')
const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)

async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  return check()
}

t.test('blob policy', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const small = blob(content('small', 100_000))
  const large = blob(content('large', 8 * 1024 * 1024))
  upstream.blobs.set(small.digest, small)
  upstream.blobs.set(large.digest, large)
  const root = t.testdir()
  const proxy = await startInProcess(t, root, { proxy: { remoteurl: upstream.url } })

  t.test('a HEAD on a missing blob asks the upstream and does not fill', async t => {
    const head = await fetch(`${proxy.url}/v2/${REPO}/blobs/${small.digest}`, { method: 'HEAD' })
    t.equal(head.status, 200)
    t.equal(head.headers.get('content-length'), String(small.content.length))
    t.equal(upstream.count('HEAD', small.digest), 1)
    t.equal(upstream.count('GET', small.digest), 0, 'no GET upstream')
    t.notOk(await exists(blobPath(root, small.digest)), 'nothing stored')
  })

  t.test('the fill goes on when the client that started it leaves', async t => {
    await new Promise<void>((resolve, reject) => {
      const req = request(`${proxy.url}/v2/${REPO}/blobs/${large.digest}`, res => {
        res.once('data', () => {
          req.destroy()
          resolve()
        })
      })
      req.on('error', err => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err)))
      req.end()
    })
    t.ok(await eventually(() => exists(blobPath(root, large.digest))), 'the blob was committed anyway')
    const again = await rawGet(`${proxy.url}/v2/${REPO}/blobs/${large.digest}`, {}, false)
    t.equal(again.sha256, large.digest, 'and is served whole')
    t.equal(upstream.count('GET', large.digest), 1, 'from one upstream download')
  })

  t.test('a blob cached for one repository is not served to another', async t => {
    const other = await fetch(`${proxy.url}/v2/other/repo/blobs/${large.digest}`)
    t.equal(other.status, 404, 'the upstream does not vouch for other/repo')
    t.equal(((await other.json()) as { errors: { code: string }[] }).errors[0]?.code, 'BLOB_UNKNOWN')
    t.equal(upstream.count('HEAD', `/v2/other/repo/blobs/${large.digest}`), 1, 'it asked the upstream about that repository')
    t.notOk(await exists(join(root, 'docker/registry/v2/repositories/other/repo/_layers')), 'and linked nothing there')
  })

  t.test("a rate-limited upstream's Retry-After reaches the client", async t => {
    upstream.manifestOverride = { status: 429, headers: { 'Retry-After': '42' } }
    const reply = await fetch(`${proxy.url}/v2/${REPO}/manifests/never-cached`)
    t.equal(reply.status, 429)
    t.equal(reply.headers.get('retry-after'), '42')
    t.equal(((await reply.json()) as { errors: { code: string }[] }).errors[0]?.code, 'TOOMANYREQUESTS')
    upstream.manifestOverride = undefined
  })
})
