// The access line: pino's shape, built directly, batched one write per turn on
// the server's stdout, escaped where a client wrote it, flushed on exit.
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import tap from 'tap'
const t = tap
import { AccessLog, type AccessEntry } from '../../src/observability/access-log.js'
import { createLogger } from '../../src/observability/logger.js'
import type { RepositoryName } from '../../src/registry/names.js'
import { REPO_ROOT } from '../helpers/stevedore.js'

const entry = (over: Partial<AccessEntry> = {}): AccessEntry => ({
  requestId: 'abc-1',
  method: 'GET',
  path: '/v2/library/alpine/manifests/3.20',
  status: 200,
  bytes: 1234,
  durationMs: 0.52,
  client: '127.0.0.1',
  complete: true,
  fields: { repository: 'library/alpine' as RepositoryName, upstream: 'hub' },
  ...over,
})

function sink() {
  const writes: string[] = []
  return { out: new Writable({ write: (c: Buffer, _e, done) => (writes.push(c.toString()), done()) }), writes }
}

t.test('a line per request, in the shape of every pino line, one write per line on a plain stream', async t => {
  const { out, writes } = sink()
  const access = AccessLog.of(pino({ level: 'info', base: { service: 'stevedore' } }, out))
  t.ok(access)
  access?.record(entry())
  access?.record(entry({ requestId: 'abc-2', status: 404, fields: {} }))
  await new Promise(setImmediate)
  t.equal(writes.length, 2, 'not batched: a Writable takes one record per chunk')
  const [first, second] = writes.map(w => JSON.parse(w) as Record<string, unknown>)
  t.match(first, { level: 30, service: 'stevedore', requestId: 'abc-1', method: 'GET', path: '/v2/library/alpine/manifests/3.20', status: 200, bytes: 1234, durationMs: 0.52, client: '127.0.0.1', complete: true, repository: 'library/alpine', upstream: 'hub', msg: 'request' })
  t.type(first?.time, 'number')
  t.notOk('repository' in (second ?? {}), 'absent fields are left out')
  t.ok(writes.every(w => w.endsWith('}\n') && w.split('\n').length === 2))
})

t.test('what a client wrote is escaped; a long path is cut', async t => {
  const { out, writes } = sink()
  const access = AccessLog.of(pino({ level: 'info' }, out))
  const hostile = '/v2/a"b\\c\n{"level":60}\u2028é'
  access?.record(entry({ path: hostile, fields: { user: 'mal"lory\r\n', ns: 'x"y' } }))
  access?.record(entry({ path: `/v2/${'a'.repeat(600)}` }))
  t.equal(writes.length, 2)
  const [a, b] = writes.map(w => JSON.parse(w) as Record<string, unknown>)
  t.equal(a?.path, hostile, 'round-trips exactly')
  t.equal(a?.user, 'mal"lory\r\n')
  t.equal(a?.ns, 'x"y')
  t.equal(writes[0]?.split('\n').length, 2, 'still one line')
  t.equal(String(b?.path).length, 513)
  t.ok(String(b?.path).endsWith('…'))
})

t.test('nothing below info', async t => {
  const { out } = sink()
  t.equal(AccessLog.of(pino({ level: 'warn' }, out)), undefined)
})

t.test('on sonic-boom: the lines of one turn go out in one write', async t => {
  const file = join(t.testdir(), 'log')
  const dest = pino.destination({ dest: file, sync: true })
  const writes: string[] = []
  const write = dest.write.bind(dest)
  dest.write = (chunk: string) => (writes.push(chunk), write(chunk))
  const access = AccessLog.of(pino({ level: 'info' }, dest))
  for (let i = 0; i < 50; i++) access?.record(entry({ requestId: `r-${i}` }))
  t.equal(writes.length, 0, 'held until the end of the turn')
  await new Promise(setImmediate)
  t.equal(writes.length, 1)
  t.equal(writes[0]?.trimEnd().split('\n').map(l => (JSON.parse(l) as { requestId: string }).requestId).join(','), Array.from({ length: 50 }, (_, i) => `r-${i}`).join(','), 'in order')
})

// The server's stdout logger (dist/, built by pretest), in a process of its own: all lines arrive, also when it exits right after them.
const child = (t: Parameters<Parameters<typeof tap.test>[0]>[0], body: string): { stdout: string; status: number | null } => {
  const script = join(t.testdir(), 'child.mjs')
  writeFileSync(script, `
import { createLogger } from ${JSON.stringify(join(REPO_ROOT, 'dist/observability/logger.js'))}
import { AccessLog } from ${JSON.stringify(join(REPO_ROOT, 'dist/observability/access-log.js'))}
const log = createLogger({ level: 'info', formatter: 'json' })
const access = AccessLog.of(log)
${body}
`)
  const run = spawnSync(process.execPath, [script], { cwd: REPO_ROOT, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 60_000 })
  return { stdout: run.stdout, status: run.status }
}

t.test('stdout: 200,000 lines in 500 turns, none dropped, all flushed on exit', async t => {
  const { stdout, status } = child(t, `
for (let turn = 0; turn < 500; turn++) {
  for (let i = 0; i < 400; i++) access.record({ requestId: 'r-' + (turn * 400 + i), method: 'HEAD', path: '/v2/a/manifests/b', status: 200, bytes: 0, durationMs: 0.01, client: '127.0.0.1', complete: true, fields: {} })
  await new Promise(r => setImmediate(r))
}
for (let i = 0; i < 5; i++) access.record({ requestId: 'last-' + i, method: 'GET', path: '/v2/', status: 200, bytes: 2, durationMs: 0.01, client: '127.0.0.1', complete: true, fields: {} })
log.info('exiting')
process.exit(3)
`)
  t.equal(status, 3)
  const lines = stdout.trimEnd().split('\n')
  t.equal(lines.length, 200_006, 'every line, none dropped')
  t.equal(new Set(lines.map(l => (JSON.parse(l) as { requestId?: string }).requestId)).size, 200_006)
  t.ok(lines.slice(-6).some(l => l.includes('"last-4"')), 'the lines of the last turn, handed over at exit')
  t.ok(lines.some(l => l.includes('"msg":"exiting"')))
})

t.test('stdout: an uncaught exception still flushes what was logged', async t => {
  const { stdout, status } = child(t, `
log.info({ n: 1 }, 'before')
access.record({ requestId: 'r-crash', method: 'GET', path: '/v2/', status: 200, bytes: 2, durationMs: 0.01, client: '127.0.0.1', complete: true, fields: {} })
setImmediate(() => { throw new Error('boom') })
`)
  t.not(status, 0)
  t.match(stdout, /"msg":"before"/)
  t.match(stdout, /"requestId":"r-crash"/)
})
