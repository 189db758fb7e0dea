// /healthz and /readyz as HTTP endpoints: open, uncached, JSON, HEAD without a body.
import t from 'tap'
import { startInProcess } from '../helpers/inprocess.js'

t.test('healthz and readyz of a registry with no upstream', async t => {
  const stevedore = await startInProcess(t, t.testdir(), {})
  for (const path of ['/healthz', '/readyz']) {
    const res = await fetch(`${stevedore.url}${path}`)
    t.equal(res.status, 200, path)
    t.equal(res.headers.get('content-type'), 'application/json; charset=utf-8')
    t.equal(res.headers.get('cache-control'), 'no-store', 'probes always see the current state')
    t.ok(res.headers.get('x-request-id'), 'a request id, as on every response')
    const body = (await res.json()) as Record<string, unknown>
    if (path === '/healthz') t.same(body, { status: 'ok' })
    else t.match(body, { status: 'ready', ready: true, failed: [], checks: { storage: { ok: true } }, upstreams: {} })
    const head = await fetch(`${stevedore.url}${path}`, { method: 'HEAD' })
    t.equal(head.status, 200)
    t.equal((await head.arrayBuffer()).byteLength, 0, `HEAD ${path} has no body`)
  }
  const body = (await (await fetch(`${stevedore.url}/readyz`)).json()) as { checks: Record<string, unknown> }
  t.same(Object.keys(body.checks), ['storage'], 'nothing proxied: no metadata store to check')
})
