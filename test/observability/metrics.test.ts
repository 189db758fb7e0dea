// The metrics registry on its own: names, labels bounded to fixed sets, and
// the scrape-time gauges read from the objects they watch.
import t from 'tap'
import { Metrics, outcomeOf } from '../../src/observability/metrics.js'
import { routeKind } from '../../src/http/server.js'

/** The value of one sample in Prometheus text, or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = (m[2] ?? '').split(',').filter(s => s !== '').sort()
    if (have.length === wanted.length && have.every((s, i) => s === wanted[i])) return Number(m[3])
  }
  return undefined
}

t.test('counters by kind, outcome and source', async t => {
  const m = new Metrics()
  m.cache('manifest', 'miss')
  m.cache('blob', 'miss')
  m.cache('blob', 'miss')
  m.cache('blob', 'hit')
  m.bytes('upstream', 1000)
  m.bytes('cache', 400)
  m.bytes('cache', 0)
  m.follower()
  m.evicted(2)
  const text = await m.render()
  t.equal(sample(text, 'stevedore_cache_misses_total', { kind: 'manifest' }), 1)
  t.equal(sample(text, 'stevedore_cache_misses_total', { kind: 'blob' }), 2)
  t.equal(sample(text, 'stevedore_cache_hits_total', { kind: 'blob' }), 1)
  t.equal(sample(text, 'stevedore_cache_hits_total', { kind: 'manifest' }), undefined, 'no series before the first hit')
  t.equal(sample(text, 'stevedore_upstream_bytes_total'), 1000)
  t.equal(sample(text, 'stevedore_bytes_saved_total'), 400)
  t.equal(sample(text, 'stevedore_fill_followers_total'), 1)
  t.equal(sample(text, 'stevedore_evicted_images_total'), 2)
  t.match(m.contentType, /^text\/plain/)
})

t.test('requests: kind, method and status labels from fixed sets', async t => {
  const m = new Metrics()
  m.request('manifest', 'HEAD', 200, 0.0004)
  m.request('manifest', 'HEAD', 200, 0.002)
  m.request('blob', 'DELETE', 405, 0.001)
  m.request('other', 'GET', 999, 0.001)
  const text = await m.render()
  t.equal(sample(text, 'stevedore_http_requests_total', { kind: 'manifest', method: 'HEAD', status: '200' }), 2)
  t.equal(sample(text, 'stevedore_http_requests_total', { kind: 'blob', method: 'other', status: '405' }), 1, 'unknown methods share a label')
  t.equal(sample(text, 'stevedore_http_requests_total', { kind: 'other', method: 'GET', status: 'other' }), 1, 'out-of-range statuses share a label')
  t.equal(sample(text, 'stevedore_http_request_duration_seconds_count', { kind: 'manifest' }), 2)
  t.equal(sample(text, 'stevedore_http_request_duration_seconds_bucket', { kind: 'manifest', le: '0.0005' }), 1)
})

t.test('upstream requests by upstream, kind and outcome', async t => {
  const m = new Metrics()
  const hub = m.upstream('hub')
  hub('manifests', outcomeOf(200), 0.1)
  hub('blobs', outcomeOf(404), 0.2)
  hub('blobs', outcomeOf(503), 0.2)
  hub('base', 'error', 1)
  hub('manifests', 'refused', 0)
  const text = await m.render()
  t.equal(sample(text, 'stevedore_upstream_requests_total', { upstream: 'hub', kind: 'manifests', outcome: '2xx' }), 1)
  t.equal(sample(text, 'stevedore_upstream_requests_total', { upstream: 'hub', kind: 'blobs', outcome: '4xx' }), 1)
  t.equal(sample(text, 'stevedore_upstream_requests_total', { upstream: 'hub', kind: 'blobs', outcome: '5xx' }), 1)
  t.equal(sample(text, 'stevedore_upstream_requests_total', { upstream: 'hub', kind: 'other', outcome: 'error' }), 1)
  t.equal(sample(text, 'stevedore_upstream_requests_total', { upstream: 'hub', kind: 'manifests', outcome: 'refused' }), 1)
  t.equal(sample(text, 'stevedore_upstream_request_duration_seconds_count', { upstream: 'hub', kind: 'blobs' }), 2)
  t.equal(outcomeOf(302), '3xx')
})

t.test('gauges read the watched objects at scrape time', async t => {
  const m = new Metrics()
  let text = await m.render()
  t.equal(sample(text, 'stevedore_fills_in_flight'), 0, 'nothing watched yet')
  t.equal(sample(text, 'stevedore_cache_size_bytes'), undefined, 'no quota, no cache size')
  const hub = { name: 'hub', breakerState: 'closed' as 'closed' | 'open' | 'half-open', rateLimitState: { remaining: 76 } as { remaining?: number } }
  const ghcr = { name: 'ghcr', breakerState: 'open' as const, rateLimitState: {} }
  const fills = { active: 3 }
  m.watch({ upstreams: [hub, ghcr], fills, quota: { total: 123_456 } })
  text = await m.render()
  t.equal(sample(text, 'stevedore_upstream_breaker_state', { upstream: 'hub' }), 0)
  t.equal(sample(text, 'stevedore_upstream_breaker_state', { upstream: 'ghcr' }), 2)
  t.equal(sample(text, 'stevedore_upstream_ratelimit_remaining', { upstream: 'hub' }), 76)
  t.equal(sample(text, 'stevedore_upstream_ratelimit_remaining', { upstream: 'ghcr' }), undefined, 'no header seen, no sample')
  t.equal(sample(text, 'stevedore_fills_in_flight'), 3)
  t.equal(sample(text, 'stevedore_cache_size_bytes'), 123_456)
  hub.breakerState = 'half-open'
  fills.active = 0
  text = await m.render()
  t.equal(sample(text, 'stevedore_upstream_breaker_state', { upstream: 'hub' }), 1, 'read again on every scrape')
  t.equal(sample(text, 'stevedore_fills_in_flight'), 0)
})

t.test('route kinds from paths', async t => {
  const table: [string, string][] = [
    ['/v2/', 'base'],
    ['/v2', 'base'],
    ['/v2/_catalog', 'catalog'],
    ['/v2/library/alpine/tags/list', 'tags'],
    ['/v2/library/alpine/manifests/3.19', 'manifest'],
    ['/v2/a/b/blobs/sha256:00', 'blob'],
    ['/v2/a/blobs/uploads/', 'upload'],
    ['/v2/a/referrers/sha256:00', 'referrers'],
    ['/v2/a/other', 'other'],
    ['/auth/token', 'token'],
    ['/metrics', 'operations'],
    ['/healthz', 'operations'],
    ['/ui/', 'operations'],
    ['/api/v1/status', 'operations'],
    ['/favicon.ico', 'other'],
  ]
  for (const [path, kind] of table) t.equal(routeKind(path), kind, path)
})
