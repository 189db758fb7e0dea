// X-Request-Id: taken from a trusted proxy when it is a short plain token,
// else our own; returned on the response and written on the access line.
import t from 'tap'
import { startInProcess } from '../helpers/inprocess.js'

const OWN = /^[0-9a-f]{8}-[0-9a-z]+$/

async function idFor(url: string, given?: string): Promise<string> {
  const res = await fetch(`${url}/v2/`, given === undefined ? {} : { headers: { 'X-Request-Id': given } })
  await res.arrayBuffer()
  return res.headers.get('x-request-id') ?? ''
}

t.test('from a client that is not a trusted proxy: always our own', async t => {
  const stevedore = await startInProcess(t, t.testdir(), {})
  t.match(await idFor(stevedore.url), OWN)
  t.match(await idFor(stevedore.url, 'chosen-by-client'), OWN, 'a client cannot pick its id')
})

t.test('from a trusted proxy: its id, when it is a plain token', async t => {
  const stevedore = await startInProcess(t, t.testdir(), { log: { level: 'info' }, http: { addr: '127.0.0.1:0', trustedproxies: ['127.0.0.1'] } }, {}, { capture: 'info' })
  t.equal(await idFor(stevedore.url, 'edge-42.a:b_C'), 'edge-42.a:b_C')
  const uuid = '0f8fad5b-d9cb-469f-a165-70867728950e'
  t.equal(await idFor(stevedore.url, uuid), uuid)
  for (const bad of ['two words', 'x'.repeat(65), '"quoted"', 'a\\b', '{"level":60}']) {
    t.match(await idFor(stevedore.url, bad), OWN, `refused: ${bad.slice(0, 20)}`)
  }
  const deadline = Date.now() + 5_000
  while (!stevedore.logRecords().some(r => r.requestId === uuid) && Date.now() < deadline) await new Promise(r => setTimeout(r, 20))
  t.match(stevedore.logRecords().find(r => r.requestId === uuid), { msg: 'request', path: '/v2/', requestId: uuid }, 'on the access line')
})
