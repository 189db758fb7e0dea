// Every metadata backend keeps tag freshness and access times, and the shared
// ones (file, Redis, PostgreSQL) keep them across instances. Redis and
// PostgreSQL are the local services of this machine (127.0.0.1:6379, :5432).
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { connect } from 'node:net'
import t from 'tap'
import { openMetadataBackend } from '../../src/metadata/backend.js'
import { MetadataStore } from '../../src/metadata/store.js'

const reachable = (port: number): Promise<boolean> =>
  new Promise(resolve => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.setTimeout(1000)
    socket.once('connect', () => (socket.destroy(), resolve(true)))
    socket.once('error', () => resolve(false))
    socket.once('timeout', () => (socket.destroy(), resolve(false)))
  })

type Backend = { store: 'memory' | 'file' | 'redis' | 'postgres'; url?: string; path?: string; port?: number }

const backends = (dir: string): Backend[] => [
  { store: 'memory' },
  { store: 'file', path: join(dir, 'metadata.json') },
  { store: 'redis', url: 'redis://127.0.0.1:6379', port: 6379 },
  { store: 'postgres', url: 'postgresql://postgres@127.0.0.1:5432/test', port: 5432 },
]

for (const backend of backends(t.testdir())) {
  t.test(`metadata in ${backend.store}`, async t => {
    if (backend.port !== undefined && !(await reachable(backend.port))) {
      t.fail(`${backend.store} is not reachable on 127.0.0.1:${backend.port}; start it (see the README's test section)`)
      return
    }
    const namespace = `test-${randomUUID()}`
    const config = { store: backend.store, namespace, ...(backend.url ? { url: backend.url } : {}), ...(backend.path ? { path: backend.path } : {}) }
    let clock = 5000
    const first = new MetadataStore({ store: await openMetadataBackend({ ...config, maxSize: 1024 * 1024 }), namespace, now: () => clock })
    t.equal(await first.getTag('up', 'team/app', 'v1'), undefined, 'unknown tag')
    const state = await first.setTag('up', 'team/app', 'v1', 'sha256:aaa')
    t.same(state, { digest: 'sha256:aaa', checkedAt: 5000 })
    t.same(await first.getTag('up', 'team/app', 'v1'), state, 'tag read back')
    t.equal(await first.getTag('other-upstream', 'team/app', 'v1'), undefined, 'tags are per upstream')
    clock = 9000
    await first.touch('sha256:bbb')
    t.equal(await first.lastAccess('sha256:bbb'), 9000, 'access time read back')
    await first.close()
    if (backend.store === 'memory') return

    const second = new MetadataStore({ store: await openMetadataBackend({ ...config, maxSize: 1024 * 1024 }), namespace })
    t.same(await second.getTag('up', 'team/app', 'v1'), state, 'another instance sees the tag')
    t.equal(await second.lastAccess('sha256:bbb'), 9000, 'and the access time')
    await second.close()
  })
}
