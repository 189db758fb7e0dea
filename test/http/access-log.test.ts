// The access log reports the body bytes that went out, not the announced
// Content-Length: a cut transfer shows as short and incomplete.
import { createHash } from 'node:crypto'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { stringify } from 'yaml'
import { startApp } from '../../src/app.js'
import { parseConfig } from '../../src/config/load.js'
import { blob, startFakeUpstream } from '../helpers/fake-upstream.js'
import { rawGet } from '../helpers/http.js'

const REPO = 'logged/app'

t.test('bytes and completeness of each response in the access log', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const data = Buffer.alloc(3 * 1024 * 1024 + 11)
  let block = createHash('sha256').update('access-log').digest()
  for (let i = 0; i < data.length; i += block.length) {
    block.copy(data, i)
    block = createHash('sha256').update(block).digest()
  }
  const b = blob(data)
  upstream.blobs.set(b.digest, b)
  const records: Record<string, unknown>[] = []
  const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, done) => { records.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } }))
  const { config } = parseConfig(stringify({
    version: '0.1',
    http: { addr: '127.0.0.1:0' },
    storage: { filesystem: { rootdirectory: t.testdir() } },
    proxy: { remoteurl: upstream.url, timeouts: { body: '1s' } },
  }), {}, 'test')
  const app = await startApp(config, log)
  t.teardown(() => app.close())
  const url = `http://127.0.0.1:${app.address.port}/v2/${REPO}/blobs/${b.digest}`
  const requestLines = async (n: number): Promise<Record<string, unknown>[]> => {
    const deadline = Date.now() + 5_000
    while (records.filter(r => r.msg === 'request').length < n && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    return records.filter(r => r.msg === 'request')
  }

  upstream.fault = 'cut'
  upstream.faultResumes = true
  const cut = await rawGet(url, {}, false)
  t.notOk(cut.complete)
  const [cutLine] = await requestLines(1)
  t.equal(cutLine?.complete, false, 'logged as incomplete')
  t.ok(Number(cutLine?.bytes) < data.length, `logged ${String(cutLine?.bytes)} bytes, not the announced ${data.length}`)
  t.ok(Number(cutLine?.bytes) <= cut.received + 1024 * 1024, 'about what the client got')

  upstream.fault = 'none'
  upstream.faultResumes = false
  const whole = await rawGet(url, {}, false)
  t.ok(whole.complete)
  const wholeLine = (await requestLines(2))[1]
  t.match(wholeLine, { status: 200, bytes: data.length, complete: true })

  await fetch(url, { method: 'HEAD' })
  const headLine = (await requestLines(3))[2]
  t.match(headLine, { method: 'HEAD', status: 200, bytes: 0 }, 'a HEAD sends no body')
})
