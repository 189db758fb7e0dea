// The in-memory metadata store is bounded by bytes, and a failing store is
// reported in the log (rate-limited), never silently swallowed.
import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { boundedMemoryStore } from '../../src/metadata/backend.js'
import { MetadataStore } from '../../src/metadata/store.js'

t.test('the memory store forgets the least recently used entries beyond its size', async t => {
  const metadata = new MetadataStore({ store: boundedMemoryStore(16 * 1024) })
  for (let i = 0; i < 1000; i++) await metadata.setReferrers('up', 'team/app', `sha256:${String(i).padStart(64, '0')}`, { manifests: [], found: true, checkedAt: i })
  t.equal(await metadata.getReferrers('up', 'team/app', `sha256:${'0'.repeat(64)}`), undefined, 'the oldest subject is gone')
  t.same(await metadata.getReferrers('up', 'team/app', `sha256:${'999'.padStart(64, '0')}`), { manifests: [], found: true, checkedAt: 999 }, 'the newest is kept')
  await metadata.setTag('up', 'team/app', 'v1', 'sha256:abc')
  t.equal((await metadata.getTag('up', 'team/app', 'v1'))?.digest, 'sha256:abc')
})

t.test('store failures are logged, at most one line per interval', async t => {
  const lines: string[] = []
  const log = pino({ level: 'warn' }, new Writable({ write: (chunk: Buffer, _e, done) => { lines.push(chunk.toString()); done() } }))
  const failing = {
    get: async () => { throw new Error('connection refused') },
    set: async () => { throw new Error('connection refused') },
    delete: async () => { throw new Error('connection refused') },
    clear: async () => undefined,
    on: () => failing,
  }
  const metadata = new MetadataStore({ store: failing as never, log })
  for (let i = 0; i < 5; i++) {
    await metadata.getTag('up', 'team/app', 'v1').catch(() => undefined)
    await metadata.touch('sha256:x').catch(() => undefined)
  }
  const warnings = lines.map(l => JSON.parse(l) as { msg: string; err?: { message?: string } }).filter(l => l.msg.startsWith('metadata store failed'))
  t.equal(warnings.length, 1, 'one line for a burst of failures')
  t.match(warnings[0]?.err?.message, /connection refused/)
})
