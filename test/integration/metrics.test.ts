// /metrics after real pulls: a Distribution upstream with one image pushed by
// skopeo, Stevedore in this process, skopeo pulling cold then warm. The
// expected counts come from the image description and Stevedore's access log.
import { join } from 'node:path'
import t from 'tap'
import { settle } from '../helpers/access-log.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess, type InProcess } from '../helpers/inprocess.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'

/** The value of one sample in Prometheus text; 0 when the series does not exist yet. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = (m[2] ?? '').split(',').filter(s => s !== '').sort()
    if (have.length === wanted.length && have.every((s, i) => s === wanted[i])) return Number(m[3])
  }
  return 0
}

interface Served {
  manifests: number
  blobGets: number
  blobHeads: number
  /** GET /blobs/ answered 200, by path. */
  blobPaths: string[]
}

/** What the registry API answered since record `from` (Stevedore's access log). */
function served(stevedore: InProcess, from: number): Served {
  const lines = stevedore
    .logRecords()
    .filter(r => r.msg === 'request')
    .slice(from) as { method: string; path: string; status: number }[]
  const manifests = lines.filter(r => r.path.includes('/manifests/'))
  const blobs = lines.filter(r => r.path.includes('/blobs/') && !r.path.includes('/uploads'))
  return {
    manifests: manifests.length,
    blobGets: blobs.filter(r => r.method === 'GET').length,
    blobHeads: blobs.filter(r => r.method === 'HEAD').length,
    blobPaths: blobs.filter(r => r.method === 'GET' && r.status === 200).map(r => r.path),
  }
}

const requestCount = (stevedore: InProcess): number => stevedore.logRecords().filter(r => r.msg === 'request').length

async function scrape(url: string): Promise<string> {
  const res = await fetch(url)
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`)
  return res.text()
}

t.test('cold and warm pulls: exact hit, miss and byte counts', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const image = await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'metrics-single', layerSizes: [1500, 120_000, 30_000] })
  await pushLayout(join(dir, 'image'), 'v1', `${upstream.host}/team/app:v1`)
  const stevedore = await startInProcess(
    t,
    join(dir, 'cache'),
    { proxy: { remoteurl: upstream.url, tagttl: '5m' }, http: { addr: '127.0.0.1:0', debug: { addr: '127.0.0.1:0', prometheus: { enabled: true, path: '/debug/metrics' } } } },
    {},
    { capture: 'info' },
  )
  const imageBytes = image.blobs.reduce((sum, b) => sum + b.size, 0)
  const sizeOf = new Map(image.blobs.map(b => [b.digest, b.size]))
  const bytesOf = (paths: string[]): number => paths.reduce((sum, p) => sum + (sizeOf.get(p.slice(p.lastIndexOf('/') + 1)) ?? NaN), 0)

  await pullToLayout(`${stevedore.host}/team/app:v1`, join(dir, 'cold'), 'v1')
  const cold = served(stevedore, 0)
  t.equal(new Set(cold.blobPaths).size, image.blobs.length, 'the cold pull fetched every blob of the image')
  t.equal(bytesOf(cold.blobPaths), imageBytes * (cold.blobPaths.length / image.blobs.length), 'and each blob as often as it was asked for')
  const upstreamLog = await settle(upstream)
  const upstreamBlobGets = upstreamLog.filter(r => r.method === 'GET' && r.path.includes('/blobs/')).length
  t.equal(upstreamBlobGets, image.blobs.length, 'each blob crossed the upstream once')

  let text = await scrape(`${stevedore.url}/metrics`)
  // One manifest fetched; every blob GET after a blob's first is served from what the first stored.
  t.equal(sample(text, 'stevedore_cache_misses_total', { kind: 'manifest' }), 1, 'cold: one manifest miss')
  t.equal(sample(text, 'stevedore_cache_hits_total', { kind: 'manifest' }), cold.manifests - 1, 'cold: any further manifest request a hit')
  t.equal(sample(text, 'stevedore_cache_misses_total', { kind: 'blob' }), image.blobs.length + cold.blobHeads, 'cold: a miss per blob')
  t.equal(sample(text, 'stevedore_cache_hits_total', { kind: 'blob' }), cold.blobGets - image.blobs.length, 'cold: repeated blob GETs hit')
  t.equal(sample(text, 'stevedore_upstream_bytes_total'), imageBytes, 'cold: upstream bytes = the image size')
  t.equal(sample(text, 'stevedore_bytes_saved_total'), bytesOf(cold.blobPaths) - imageBytes, 'cold: nothing saved but repeats')
  t.equal(sample(text, 'stevedore_http_requests_total', { kind: 'blob', method: 'GET', status: '200' }), cold.blobPaths.length, 'blob GETs by status')
  t.equal(sample(text, 'stevedore_upstream_requests_total', { upstream: 'default', kind: 'blobs', outcome: '2xx' }) >= image.blobs.length, true, 'upstream blob requests counted')
  t.equal(sample(text, 'stevedore_upstream_breaker_state', { upstream: 'default' }), 0, 'breaker closed')
  t.equal(sample(text, 'stevedore_fills_in_flight'), 0, 'no fill under way')
  t.notMatch(text, /team\/app|sha256:/, 'no repository names or digests in labels')

  const before = requestCount(stevedore)
  const coldUpstream = sample(text, 'stevedore_upstream_bytes_total')
  await pullToLayout(`${stevedore.host}/team/app:v1`, join(dir, 'warm'), 'v1')
  const warm = served(stevedore, before)
  t.equal((await settle(upstream)).length, upstreamLog.length, 'the warm pull asked the upstream nothing')
  const coldHits = { manifest: cold.manifests - 1, blob: cold.blobGets - image.blobs.length }
  const coldSaved = bytesOf(cold.blobPaths) - imageBytes
  text = await scrape(`${stevedore.url}/metrics`)
  t.equal(sample(text, 'stevedore_cache_misses_total', { kind: 'manifest' }), 1, 'warm: no new manifest miss')
  t.equal(sample(text, 'stevedore_cache_hits_total', { kind: 'manifest' }), coldHits.manifest + warm.manifests, 'warm: every manifest request a hit')
  t.equal(sample(text, 'stevedore_cache_misses_total', { kind: 'blob' }), image.blobs.length + cold.blobHeads, 'warm: no new blob miss')
  t.equal(sample(text, 'stevedore_cache_hits_total', { kind: 'blob' }), coldHits.blob + warm.blobGets + warm.blobHeads, 'warm: every blob request a hit')
  t.equal(bytesOf(warm.blobPaths), imageBytes, 'the warm pull read each blob once')
  t.equal(sample(text, 'stevedore_bytes_saved_total'), coldSaved + imageBytes, 'warm: cache bytes = the image size')
  t.equal(sample(text, 'stevedore_upstream_bytes_total'), coldUpstream, 'warm: upstream bytes unchanged')

  const debug = stevedore.app.debugAddress
  t.ok(debug, 'the debug listener is up')
  const debugText = await scrape(`http://127.0.0.1:${debug?.port}/debug/metrics`)
  t.equal(sample(debugText, 'stevedore_upstream_bytes_total'), imageBytes, 'the debug address serves the same registry')
  const other = await fetch(`http://127.0.0.1:${debug?.port}/v2/team/app/manifests/v1`)
  t.equal(other.status, 404, 'and nothing else')
  t.equal(((await other.json()) as { errors: { code: string }[] }).errors[0]?.code, 'NOT_FOUND')
})

t.test('metrics.enabled: false → /metrics is 404; the debug address still serves them', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const stevedore = await startInProcess(t, join(dir, 'cache'), {
    proxy: { remoteurl: upstream.url },
    metrics: { enabled: false },
    http: { addr: '127.0.0.1:0', debug: { addr: '127.0.0.1:0', prometheus: { enabled: true } } },
  })
  t.equal((await fetch(`${stevedore.url}/metrics`)).status, 404, 'not on the main port')
  const debug = stevedore.app.debugAddress
  t.match(await scrape(`http://127.0.0.1:${debug?.port}/metrics`), /stevedore_cache_hits_total/, 'on the debug address, at the default path')
})

t.test('without the debug prometheus section the debug address serves nothing', async t => {
  const dir = t.testdir()
  const stevedore = await startInProcess(t, join(dir, 'cache'), {
    metrics: { enabled: false },
    http: { addr: '127.0.0.1:0', debug: { addr: '127.0.0.1:0' } },
  })
  t.equal((await fetch(`${stevedore.url}/metrics`)).status, 404)
  t.equal((await fetch(`http://127.0.0.1:${stevedore.app.debugAddress?.port}/metrics`)).status, 404)
})

t.test('a debug address in use stops startup (EADDRINUSE), as the main one does', async t => {
  const dir = t.testdir()
  const { createServer } = await import('node:net')
  const taken = createServer()
  await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => taken.close(() => resolve())))
  const port = (taken.address() as { port: number }).port
  await t.rejects(
    startInProcess(t, join(dir, 'cache'), { http: { addr: '127.0.0.1:0', debug: { addr: `127.0.0.1:${port}`, prometheus: { enabled: true } } } }),
    { code: 'EADDRINUSE' },
  )
})
