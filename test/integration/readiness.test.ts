// /healthz and /readyz against real failures: a storage root remounted
// read-only, a private redis-server stopped, an upstream that is not there.
//
// Tests run as root, and root ignores file modes (chmod a-w changes nothing
// for it), so read-only storage is made the way it happens in production:
// the storage root is bind-mounted onto itself and remounted `ro`, and every
// write under it fails with EROFS until it is unmounted. That needs
// CAP_SYS_ADMIN; without it the case is skipped, saying so.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer, connect } from 'node:net'
import t from 'tap'
import { startInProcess } from '../helpers/inprocess.js'

interface Ready {
  status: string
  ready: boolean
  failed: string[]
  checks: Record<string, { ok: boolean; error?: string }>
  upstreams: Record<string, { state: string }>
}

async function readyz(url: string): Promise<{ status: number; body: Ready }> {
  const res = await fetch(`${url}/readyz`)
  return { status: res.status, body: (await res.json()) as Ready }
}

/** Polls /readyz (reports are cached about a second) until `want` holds, or the deadline. */
async function readyzUntil(url: string, want: (r: { status: number; body: Ready }) => boolean, deadlineMs = 8_000) {
  const deadline = Date.now() + deadlineMs
  let last = await readyz(url)
  while (!want(last) && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 100))
    last = await readyz(url)
  }
  return last
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise(resolve => server.close(resolve))
  return port
}

const accepts = (port: number): Promise<boolean> =>
  new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => (socket.destroy(), resolve(true)))
    socket.once('error', () => resolve(false))
  })

function remountReadOnly(dir: string): boolean {
  try {
    execFileSync('mount', ['--bind', dir, dir], { stdio: 'ignore' })
  } catch {
    return false
  }
  try {
    execFileSync('mount', ['-o', 'remount,bind,ro', dir], { stdio: 'ignore' })
    return true
  } catch {
    execFileSync('umount', [dir], { stdio: 'ignore' })
    return false
  }
}

t.test('healthz, readyz, read-only storage and an upstream that is down', async t => {
  const root = t.testdir()
  // Nothing listens there: every pull fails, and one failure takes the upstream offline.
  const gone = await freePort()
  const stevedore = await startInProcess(t, root, {
    proxy: { remoteurl: `http://127.0.0.1:${gone}`, breaker: { maxfails: 1 } },
  })

  const health = await fetch(`${stevedore.url}/healthz`)
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok' })

  const first = await readyz(stevedore.url)
  t.equal(first.status, 200)
  t.match(first.body, { status: 'ready', ready: true, failed: [], checks: { storage: { ok: true }, metadata: { ok: true } } })
  t.same(Object.values(first.body.upstreams), [{ state: 'online' }], 'the upstream is reported')

  t.test('an upstream that is down is reported, and readiness stays', async t => {
    const pull = await fetch(`${stevedore.url}/v2/library/alpine/manifests/latest`)
    t.equal(pull.status, 503, 'the pull fails')
    const offline = await readyzUntil(stevedore.url, r => Object.values(r.body.upstreams)[0]?.state === 'offline')
    t.equal(offline.status, 200, 'still ready: what is cached is served')
    t.same(Object.values(offline.body.upstreams), [{ state: 'offline' }])
  })

  t.test('storage remounted read-only: unready, then ready again', async t => {
    if (!remountReadOnly(root)) {
      t.plan(0, 'skipped: bind mounts need root with CAP_SYS_ADMIN')
      return
    }
    let mounted = true
    const unmount = () => {
      if (mounted) execFileSync('umount', [root], { stdio: 'ignore' })
      mounted = false
    }
    t.teardown(unmount)
    const unready = await readyzUntil(stevedore.url, r => r.status === 503)
    t.equal(unready.status, 503)
    t.match(unready.body, { status: 'unready', ready: false, failed: ['storage'], checks: { storage: { ok: false, error: 'EROFS' }, metadata: { ok: true } } })
    t.notMatch(JSON.stringify(unready.body), root, 'no path reaches an unauthenticated caller')
    unmount()
    const again = await readyzUntil(stevedore.url, r => r.status === 200)
    t.equal(again.status, 200)
    t.match(again.body, { ready: true, failed: [], checks: { storage: { ok: true } } })
  })
})

t.test('a stopped Redis metadata store shows in readyz', async t => {
  const port = await freePort()
  // A private redis-server, stopped by its PID; started again on the same port to show recovery.
  let redis: ChildProcess | undefined
  const start = async () => {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    redis = child
    child.once('exit', () => {
      if (redis === child) redis = undefined
    })
    const deadline = Date.now() + 5_000
    while (!(await accepts(port)) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  }
  const stop = async () => {
    const child = redis
    if (child === undefined) return
    const exited = once(child, 'exit')
    process.kill(child.pid as number, 'SIGTERM')
    await exited
  }
  t.teardown(stop)
  await start()

  const gone = await freePort()
  const stevedore = await startInProcess(t, t.testdir(), {
    proxy: { remoteurl: `http://127.0.0.1:${gone}` },
    metadata: { store: 'redis', url: `redis://127.0.0.1:${port}` },
  })
  const ready = await readyz(stevedore.url)
  t.equal(ready.status, 200)
  t.match(ready.body, { ready: true, checks: { storage: { ok: true }, metadata: { ok: true } } })

  await stop()
  const unready = await readyzUntil(stevedore.url, r => r.status === 503)
  t.equal(unready.status, 503)
  t.match(unready.body, { ready: false, failed: ['metadata'], checks: { storage: { ok: true }, metadata: { ok: false } } })
  t.notMatch(JSON.stringify(unready.body), /redis:\/\//, 'the store address stays out of the body')

  // Also what lets the app close in teardown: with Redis gone, the client's QUIT would wait for it.
  await start()
  const again = await readyzUntil(stevedore.url, r => r.status === 200, 15_000)
  t.equal(again.status, 200, 'ready again once Redis is back')
  t.match(again.body, { failed: [], checks: { metadata: { ok: true } } })
})
