// log.formatter: json is pino's own line; text is pino-pretty's, over records already redacted.
import { Writable } from 'node:stream'
import t from 'tap'
import { createLogger } from '../../src/observability/logger.js'

function sink() {
  const chunks: string[] = []
  const out = new Writable({ write: (c: Buffer, _e, done) => (chunks.push(c.toString()), done()) })
  return { out, text: () => chunks.join('') }
}

const secret = { requestId: 'r-1', authorization: 'Bearer hunter2', headers: { authorization: 'Basic aHVudGVyMg==' }, config: { proxy: { password: 'hunter2' } } }

t.test('json: one pino record a line, credentials redacted', async t => {
  const { out, text } = sink()
  createLogger({ level: 'info', formatter: 'json', destination: out }).info(secret, 'pulled')
  await new Promise(setImmediate)
  const record = JSON.parse(text()) as Record<string, unknown>
  t.match(record, { level: 30, service: 'stevedore', msg: 'pulled', requestId: 'r-1', authorization: '[redacted]', headers: { authorization: '[redacted]' } })
  t.notMatch(text(), /hunter2|aHVudGVyMg/)
})

t.test('text: pino-pretty, one line an event, as each is logged, credentials redacted', async t => {
  const { out, text } = sink()
  const log = createLogger({ level: 'debug', formatter: 'text', destination: out })
  log.child({ requestId: 'r-2' }).warn({ upstream: 'hub' }, 'upstream offline')
  t.match(text(), /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] WARN: upstream offline \{"requestId":"r-2","upstream":"hub"\}\n$/, 'written at once')
  t.notMatch(text(), /\x1b\[/, 'no colours when not on a terminal')
  t.notMatch(text(), /"pid"|"hostname"|"service"/, 'what is the same on every line is left out')
  log.info(secret, 'pulled')
  log.debug('quiet')
  log.trace('not at this level')
  const lines = text().trimEnd().split('\n')
  t.equal(lines.length, 3)
  t.match(lines[1], /INFO: pulled .*"authorization":"\[redacted\]"/)
  t.match(lines[2], /DEBUG: quiet$/)
  t.notMatch(text(), /hunter2|aHVudGVyMg/)
})
