// SIGTERM of a real Stevedore process in front of a real Distribution holding
// a 100 MiB blob: a slow warm download, a slow cold fill (the upstream behind
// a throttling TCP relay), and a fast cold download with a generous drain.
// Each time the client gets the whole blob with the right digest or sees an
// error (never a short body that looks complete), the process exits 0 within
// http.draintimeout and its margin, and nothing is left in the scratch
// directory, under _uploads or in the fills journal. After a cold shutdown,
// a restart on the same root serves the blob correctly.
import { spawn } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import { mkdir, readFile, stat } from 'node:fs/promises'
import { request, type IncomingMessage } from 'node:http'
import { connect, createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { shutdownDeadlineMs } from '../../src/app.js'
import { withHttpAddr, writeYaml, type ConfigObject } from '../helpers/config.js'
import { startDistribution } from '../helpers/distribution.js'
import { listFiles } from '../helpers/files.js'
import { rawGet } from '../helpers/http.js'
import { freePort } from '../helpers/ports.js'
import { pushBlob } from '../helpers/push.js'
import { REPO_ROOT, stevedoreCommand } from '../helpers/stevedore.js'
import { tempDir } from '../helpers/tmp.js'

const REPO = 'shutdown/big'
const SIZE = 100 * 1024 * 1024
const DRAIN_MS = 2_000
/** The CLI exits 1 past shutdownDeadlineMs; a little more for the signal and the exit to travel. */
const EXIT_BOUND_MS = shutdownDeadlineMs(DRAIN_MS) + 2_000

/** Deterministic pseudo-random bytes (AES-256-CTR keystream of a seed), fast enough for 100 MiB. */
function seededRandom(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(seed).digest()
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size))
}

async function until(what: string, check: () => Promise<boolean> | boolean, deadlineMs = 60_000): Promise<void> {
  const end = Date.now() + deadlineMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  at: number
}

/** A Stevedore process we started ourselves, so its exit code can be read. */
interface Proc {
  url: string
  pid: number
  exited: Promise<Exit>
  logs(): string
  records(): Record<string, unknown>[]
}

/**
 * Runs `bin/stevedore serve` (dist/) with `config` (written to `configPath`,
 * `http.addr` set to a free port), waits for `GET /v2/` to answer, and
 * kills it by PID on teardown if it is still running.
 */
async function launch(t: Test, configPath: string, config: ConfigObject): Promise<Proc> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    await writeYaml(configPath, withHttpAddr(config, `127.0.0.1:${port}`))
    const command = stevedoreCommand(['serve', configPath], { ...process.env })
    const child = spawn(command.command, command.args, { cwd: REPO_ROOT, env: command.env, stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => out.push(chunk))
    let gone: Exit | undefined
    const exited = new Promise<Exit>(resolve =>
      child.once('exit', (code, signal) => {
        gone = { code, signal, at: Date.now() }
        resolve(gone)
      }),
    )
    const pid = child.pid
    if (pid === undefined) throw new Error('cannot start stevedore')
    t.teardown(async () => {
      if (gone !== undefined) return
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // exited meanwhile
      }
      await exited
    })
    const logs = (): string => Buffer.concat(out).toString('utf8')
    const url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 20_000
    for (;;) {
      if (gone !== undefined) break
      const answered = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2000) }).then(
        async res => (await res.body?.cancel(), true),
        () => false,
      )
      if (answered) break
      if (Date.now() > deadline) throw new Error(`stevedore did not start:\n${logs()}`)
      await new Promise(resolve => setTimeout(resolve, 25))
    }
    if (gone !== undefined) {
      if (attempt < 3 && /EADDRINUSE/.test(logs())) continue
      throw new Error(`stevedore exited at startup:\n${logs()}`)
    }
    const records = (): Record<string, unknown>[] =>
      logs()
        .split('\n')
        .filter(line => line.startsWith('{'))
        .flatMap(line => {
          try {
            return [JSON.parse(line) as Record<string, unknown>]
          } catch {
            return []
          }
        })
    return { url, pid, exited, logs, records }
  }
}

/** A TCP relay in front of `port` whose downstream direction is throttled to `rate` bytes/s (0: not at all). */
async function startRelay(t: Test, port: number): Promise<{ url: string; rate: number }> {
  const state = { url: '', rate: 0 }
  const sockets = new Set<Socket>()
  const server = createServer(client => {
    const upstream = connect(port, '127.0.0.1')
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.on('data', (chunk: Buffer) => {
      const more = client.write(chunk)
      if (state.rate > 0) {
        upstream.pause()
        setTimeout(() => upstream.resume(), (chunk.length / state.rate) * 1000)
      } else if (!more) {
        upstream.pause()
        client.once('drain', () => upstream.resume())
      }
    })
    upstream.on('end', () => client.end())
    upstream.on('close', () => {
      if (!client.writableEnded) client.destroy()
    })
    client.on('close', () => upstream.destroy())
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('relay has no port')
  state.url = `http://127.0.0.1:${address.port}`
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  return state
}

interface Download {
  /** Resolves once `bytes` of the body arrived. */
  received(bytes: number): Promise<void>
  pause(): void
  resume(): void
  /** Whole and matching its Content-Length, or not; with the sha256 of what arrived. */
  result: Promise<{ status: number; complete: boolean; received: number; sha256: string; error?: string }>
}

/** A GET that can be paused: the transfer stays in flight while the client does not read. */
function download(url: string): Download {
  let response: IncomingMessage | undefined
  let got = 0
  const waiters: { bytes: number; resolve: () => void }[] = []
  const result = new Promise<Awaited<Download['result']>>((resolve, reject) => {
    const req = request(url, { agent: false }, res => {
      response = res
      const hash = createHash('sha256')
      let settled = false
      const finish = (error?: string): void => {
        if (settled) return
        settled = true
        for (const waiter of waiters.splice(0)) waiter.resolve()
        const complete = error === undefined && res.complete && got === Number(res.headers['content-length'])
        resolve({ status: res.statusCode ?? 0, complete, received: got, sha256: `sha256:${hash.digest('hex')}`, ...(error === undefined ? {} : { error }) })
      }
      res.on('data', (chunk: Buffer) => {
        got += chunk.length
        hash.update(chunk)
        for (const waiter of waiters.filter(w => got >= w.bytes)) {
          waiters.splice(waiters.indexOf(waiter), 1)
          waiter.resolve()
        }
      })
      res.on('end', () => finish())
      res.on('error', err => finish(err.message))
      res.on('aborted', () => finish('aborted'))
      res.on('close', () => finish(res.complete ? undefined : 'closed early'))
    })
    req.on('error', reject)
    req.end()
  })
  result.catch(() => undefined)
  return {
    received: bytes => (got >= bytes ? Promise.resolve() : new Promise(resolve => waiters.push({ bytes, resolve }))),
    pause: () => response?.pause(),
    resume: () => response?.resume(),
    result,
  }
}

const blobFile = (root: string, digest: string): string => join(root, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')
const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)
const sha256File = async (path: string): Promise<string> => `sha256:${createHash('sha256').update(await readFile(path)).digest('hex')}`

/** Temp files, fill spools (any upload session) and fills journal entries. */
const leftovers = async (root: string): Promise<string[]> =>
  (await listFiles(root)).filter(f => f.startsWith('.stevedore/tmp/') || f.includes('/_uploads/') || f.startsWith('stevedore/v1/fills/'))
const spoolSize = async (root: string): Promise<number> => {
  const data = (await listFiles(root)).find(f => /_uploads\/fill-[^/]+\/data$/.test(f))
  return data === undefined ? 0 : (await stat(join(root, data)).catch(() => ({ size: 0 }))).size
}

/** SIGTERM, then the exit: code 0, within the drain timeout and its margin. */
async function terminate(t: Test, proc: Proc, boundMs: number): Promise<void> {
  const sent = Date.now()
  process.kill(proc.pid, 'SIGTERM')
  const exit = await proc.exited
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, 'the process exits 0')
  // A liveness bound (the CLI's own deadline plus slack), not a speed figure.
  t.ok(exit.at - sent < boundMs, `and within the deadline (${exit.at - sent} ms of at most ${boundMs})`)
}

/** Either the whole blob with the right digest, or a transfer the client can tell was cut. */
function wholeOrError(t: Test, reply: Awaited<Download['result']>, digest: string): void {
  if (reply.complete) {
    t.equal(reply.received, SIZE, 'the client got every byte')
    t.equal(reply.sha256, digest, 'with the right digest')
  } else {
    t.ok(reply.received < SIZE || reply.error !== undefined, `the client sees the transfer cut (${reply.received} bytes, ${reply.error ?? 'short'})`)
  }
}

t.test('SIGTERM during 100 MiB blob transfers', async t => {
  const content = seededRandom('shutdown-100MiB', SIZE)
  const upstream = await startDistribution(t)
  const { digest } = await pushBlob(upstream.url, REPO, content)
  const blobPath = `/v2/${REPO}/blobs/${digest}`

  t.test('warm: a slow download is cut at the drain deadline; exit 0, nothing left', async t => {
    const dir = await tempDir(t, 'shutdown-warm')
    const root = join(dir, 'storage')
    await mkdir(root)
    const config = { version: '0.1', log: { level: 'info' }, storage: { filesystem: { rootdirectory: root } }, proxy: { remoteurl: upstream.url }, http: { draintimeout: `${DRAIN_MS}ms` } }
    const proc = await launch(t, join(dir, 'config.yml'), config)
    const first = await rawGet(`${proc.url}${blobPath}`, {}, false)
    t.equal(first.sha256, digest, 'the blob is cached by a first pull')
    await until('the fill committed', async () => (await exists(blobFile(root, digest))) && (await leftovers(root)).length === 0)

    const slow = download(`${proc.url}${blobPath}`)
    await slow.received(1024 * 1024)
    slow.pause()
    await terminate(t, proc, EXIT_BOUND_MS)
    slow.resume()
    const reply = await slow.result
    t.equal(reply.status, 200)
    wholeOrError(t, reply, digest)
    t.ok(proc.records().some(r => r.msg === 'drain timeout reached: cutting responses still in flight'), 'the drain cut the response it could not finish')
    t.same(await leftovers(root), [], 'no temp file, fill spool or journal entry')
    t.equal(await sha256File(blobFile(root, digest)), digest, 'the cached blob is intact')
  })

  t.test('cold: SIGTERM mid-fill from a slow upstream; the spool goes, a restart serves the blob', async t => {
    const relay = await startRelay(t, upstream.port)
    relay.rate = 4 * 1024 * 1024
    const dir = await tempDir(t, 'shutdown-cold')
    const root = join(dir, 'storage')
    await mkdir(root)
    const configPath = join(dir, 'config.yml')
    const config = { version: '0.1', log: { level: 'info' }, storage: { filesystem: { rootdirectory: root } }, proxy: { remoteurl: relay.url }, http: { draintimeout: `${DRAIN_MS}ms` } }
    const proc = await launch(t, configPath, config)

    const client = download(`${proc.url}${blobPath}`)
    await until('the fill is under way', async () => (await spoolSize(root)) >= 2 * 1024 * 1024)
    await terminate(t, proc, EXIT_BOUND_MS)
    const reply = await client.result
    wholeOrError(t, reply, digest)
    t.same(await leftovers(root), [], 'no temp file, fill spool or journal entry')
    const kept = await exists(blobFile(root, digest))
    if (kept) t.equal(await sha256File(blobFile(root, digest)), digest, 'the blob was committed whole before the exit')
    else t.ok(proc.records().some(r => r.msg === 'blob fill abandoned at shutdown; its spool was removed'), 'the fill was abandoned and said so')

    relay.rate = 0
    const again = await launch(t, configPath, config)
    const pulled = await rawGet(`${again.url}${blobPath}`, {}, false)
    t.ok(pulled.complete, `after the restart the blob is served whole (${kept ? 'from the cache' : 'fetched again'})`)
    t.equal(pulled.sha256, digest)
    await until('the fill committed', async () => (await exists(blobFile(root, digest))) && (await leftovers(root)).length === 0)
    t.equal(await sha256File(blobFile(root, digest)), digest, 'the stored blob hashes to its name')
    await terminate(t, again, EXIT_BOUND_MS)
    t.same(await leftovers(root), [], 'and nothing is left after the second shutdown either')
  })

  t.test('a fast download in flight at SIGTERM with a generous drain finishes whole', async t => {
    const dir = await tempDir(t, 'shutdown-fast')
    const root = join(dir, 'storage')
    await mkdir(root)
    const drainMs = 60_000
    const config = { version: '0.1', log: { level: 'info' }, storage: { filesystem: { rootdirectory: root } }, proxy: { remoteurl: upstream.url }, http: { draintimeout: `${drainMs}ms` } }
    const proc = await launch(t, join(dir, 'config.yml'), config)

    const client = download(`${proc.url}${blobPath}`)
    await client.received(1)
    client.pause()
    const sent = Date.now()
    process.kill(proc.pid, 'SIGTERM')
    await until('the process is shutting down', () => proc.records().some(r => r.msg === 'shutting down'))
    const port = Number(new URL(proc.url).port)
    await until('new connections are refused', () =>
      new Promise<boolean>(resolve => {
        const socket = connect(port, '127.0.0.1')
        socket.once('connect', () => {
          socket.destroy()
          resolve(false)
        })
        socket.once('error', () => resolve(true))
      }),
    )
    client.resume()
    const reply = await client.result
    t.ok(reply.complete, 'the download in flight finished')
    t.equal(reply.received, SIZE)
    t.equal(reply.sha256, digest, 'with the right digest')
    const exit = await proc.exited
    t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, 'the process exits 0')
    t.ok(exit.at - sent < shutdownDeadlineMs(drainMs), 'before its deadline')
    // The last byte went out only once the digest was verified: such a fill is committed, never thrown away.
    t.equal(await sha256File(blobFile(root, digest)), digest, 'the filled blob is in place and whole')
    t.same(await leftovers(root), [], 'no temp file, fill spool or journal entry')
  })
})
