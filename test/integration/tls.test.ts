// TLS on the inbound port (http.tls): skopeo pulls over HTTPS with only the
// CA it is given, client certificates in both clientauth modes, plain HTTP
// answered with a clean 400, certificates reloaded on SIGHUP, on request and
// when their files change without dropping open connections (and bad files
// never replacing good ones), and minimumtls.
import { X509Certificate } from 'node:crypto'
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import type { IncomingHttpHeaders } from 'node:http'
import { Agent, request } from 'node:https'
import { connect } from 'node:net'
import { join } from 'node:path'
import { once } from 'node:events'
import { setTimeout as delay } from 'node:timers/promises'
import type { SecureVersion, TLSSocket } from 'node:tls'
import { pino } from 'pino'
import t from 'tap'
import { stringify } from 'yaml'
import { startApp, type App } from '../../src/app.js'
import { parseConfig } from '../../src/config/load.js'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { bareEnv, runCommand } from '../helpers/command.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { pushLayout, skopeo } from '../helpers/skopeo.js'
import { startStevedore } from '../helpers/stevedore.js'
import { tempDir, type Teardown } from '../helpers/tmp.js'

// ---- certificates, made with openssl once for the whole file (tests copy what they serve) ----

const openssl = (dir: string, args: string[]): Promise<unknown> => runCommand('openssl', args, { env: bareEnv({}), cwd: dir })
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, ['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`])
}

async function makeLeaf(dir: string, name: string, ca: string, cn: string, extensions: string): Promise<void> {
  await openssl(dir, ['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`])
  await writeFile(join(dir, `${name}.ext`), extensions)
  const sign = ['-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial']
  await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, ...sign, '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`])
}

const SERVER_EXT = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
const CLIENT_EXT = 'extendedKeyUsage=clientAuth\n'

const pkiDir = await tempDir(t, 'tls-pki')
await makeCa(pkiDir, 'ca') // signs the server certificates
await makeCa(pkiDir, 'clientca') // signs the client certificate Stevedore trusts
await makeCa(pkiDir, 'otherca') // signs one it does not
await makeLeaf(pkiDir, 'server', 'ca', 'stevedore-one', SERVER_EXT)
await makeLeaf(pkiDir, 'server2', 'ca', 'stevedore-two', SERVER_EXT)
await makeLeaf(pkiDir, 'client', 'clientca', 'alice', CLIENT_EXT)
await makeLeaf(pkiDir, 'bad', 'otherca', 'mallory', CLIENT_EXT)

const pem = (name: string): Promise<Buffer> => readFile(join(pkiDir, name))
const CA = await pem('ca.crt')
const CLIENT = { cert: await pem('client.crt'), key: await pem('client.key') }
const BAD = { cert: await pem('bad.crt'), key: await pem('bad.key') }
const fingerprintOf = async (name: string): Promise<string> => new X509Certificate(await pem(name)).fingerprint256
const FP1 = await fingerprintOf('server.crt')
const FP2 = await fingerprintOf('server2.crt')

/** server.crt/.key copied into `dir` as the files Stevedore serves (reload tests overwrite them). */
async function servedFiles(dir: string): Promise<{ certificate: string; key: string }> {
  const certificate = join(dir, 'tls.crt')
  const key = join(dir, 'tls.key')
  await copyFile(join(pkiDir, 'server.crt'), certificate)
  await copyFile(join(pkiDir, 'server.key'), key)
  return { certificate, key }
}

async function serve(files: { certificate: string; key: string }, pair: 'server2' | 'mismatched'): Promise<void> {
  const cert = pair === 'server2' ? 'server2.crt' : 'server.crt'
  const key = 'server2.key'
  await copyFile(join(pkiDir, cert), files.certificate)
  await copyFile(join(pkiDir, key), files.key)
}

// ---- clients ----

interface TlsReply {
  status: number
  headers: IncomingHttpHeaders
  body: string
  socket: TLSSocket
  /** SHA-256 fingerprint of the certificate the server presented on this connection. */
  fingerprint: string
  protocol: string | null
}

interface GetOptions {
  cert?: Buffer
  key?: Buffer
  /** Default: a connection of its own. */
  agent?: Agent
  maxVersion?: SecureVersion
  path?: string
}

function get(port: number, opts: GetOptions = {}): Promise<TlsReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: opts.path ?? '/v2/',
        ca: CA,
        agent: opts.agent ?? false,
        ...(opts.cert === undefined ? {} : { cert: opts.cert, key: opts.key }),
        ...(opts.maxVersion === undefined ? {} : { maxVersion: opts.maxVersion }),
      },
      res => {
        const socket = res.socket as TLSSocket
        const fingerprint = socket.getPeerCertificate().fingerprint256
        const protocol = socket.getProtocol()
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', reject)
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), socket, fingerprint, protocol }),
        )
      },
    )
    req.on('error', reject)
    req.end()
  })
}

/** What a request that should fail failed with: its error code and message, or 'succeeded'. */
async function failure(reply: Promise<TlsReply>): Promise<string> {
  try {
    const { status } = await reply
    return `succeeded with ${status}`
  } catch (err) {
    return `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`
  }
}

/** Sends `text` on a plain TCP connection and collects everything until the server closes it. */
function plainExchange(port: number, text: string): Promise<{ data: string; endedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text))
    const chunks: Buffer[] = []
    let endedByServer = false
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => (endedByServer = true))
    socket.on('error', reject)
    socket.on('close', () => resolve({ data: Buffer.concat(chunks).toString('utf8'), endedByServer }))
  })
}

/** Polls `check` every 50 ms until it returns a value other than undefined, or fails after `ms`. */
async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  for (const end = Date.now() + ms; ; await delay(50)) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
  }
}

// ---- Stevedore in this process, its log records kept ----

type LogRecord = Record<string, unknown>

interface TlsApp {
  app: App
  port: number
  logs: LogRecord[]
  close(): Promise<void>
}

async function startTlsApp(t: Teardown, dir: string, tls: Record<string, unknown>, http: Record<string, unknown> = {}): Promise<TlsApp> {
  const root = join(dir, 'storage')
  await mkdir(root, { recursive: true })
  const yaml = stringify({
    version: '0.1',
    log: { level: 'info' },
    http: { addr: '127.0.0.1:0', ...http, tls },
    storage: { filesystem: { rootdirectory: root } },
  })
  const { config } = parseConfig(yaml, {}, 'tls.test')
  const logs: LogRecord[] = []
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogRecord) })
  const app = await startApp(config, log)
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => (closing ??= app.close())
  t.teardown(close)
  return { app, port: app.address.port, logs, close }
}

const reloaded = (logs: LogRecord[]): LogRecord[] => logs.filter(r => r.msg === 'TLS certificate reloaded')
const reloadFailed = (logs: LogRecord[]): LogRecord[] => logs.filter(r => r.msg === 'TLS reload failed: still serving the previous certificate')
const fingerprintIn = (record: LogRecord | undefined): unknown => (record?.certificate as { fingerprint?: unknown } | undefined)?.fingerprint

// ---- the tests ----

t.test('skopeo over HTTPS through Stevedore, proxying a local Distribution', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'tls-image', layerSizes: [2000, 90_000] })
  await pushLayout(join(dir, 'image'), 'v1', `${upstream.host}/team/app:v1`)

  /** A --src-cert-dir for skopeo: `ca.crt`, and the client pair as `client.cert`/`client.key` when given. */
  const certDir = async (name: string, client?: { cert: Buffer; key: Buffer }): Promise<string> => {
    const path = join(dir, name)
    await mkdir(path)
    await writeFile(join(path, 'ca.crt'), CA)
    if (client !== undefined) {
      await writeFile(join(path, 'client.cert'), client.cert)
      await writeFile(join(path, 'client.key'), client.key)
    }
    return path
  }
  const pull = (host: string, out: string, certs?: string): Promise<unknown> =>
    skopeo([
      '--insecure-policy',
      'copy',
      '--src-tls-verify=true',
      ...(certs === undefined ? [] : ['--src-cert-dir', certs]),
      `docker://${host}/team/app:v1`,
      `oci:${join(dir, out)}:v1`,
    ])

  t.test('with the CA, tls-verify on; SIGHUP reloads the certificate', async t => {
    const files = await servedFiles(t.testdir())
    const stevedore = await startStevedore(t, { config: { proxy: { remoteurl: upstream.url }, http: { tls: files } } })
    const withCa = await certDir('ca-only')
    await pull(stevedore.host, 'pulled', withCa)
    t.same(await compareLayoutBlobs(join(dir, 'image'), join(dir, 'pulled')), [], 'the image arrives byte-identical over HTTPS')
    await t.rejects(pull(stevedore.host, 'no-ca'), /x509|certificate/, 'without the CA skopeo refuses the certificate')

    const before = await get(stevedore.port)
    t.equal(before.fingerprint, FP1, 'serving the first certificate')
    await serve(files, 'server2')
    process.kill(stevedore.pid, 'SIGHUP')
    const record = await eventually('the SIGHUP reload log line', () => reloaded(stevedore.logRecords()).find(r => r.trigger === 'SIGHUP'))
    t.equal(fingerprintIn(record), FP2, 'the log line names the new certificate by fingerprint')
    t.match(record.certificate, { subject: 'CN=stevedore-two', notAfter: String }, 'and by subject and expiry')
    const after = await get(stevedore.port)
    t.equal(after.fingerprint, FP2, 'a new connection after SIGHUP gets the new certificate')
    t.equal(after.status, 200, 'and the process, still running, answers')
    await pull(stevedore.host, 'pulled-after', withCa)
    t.same(await compareLayoutBlobs(join(dir, 'image'), join(dir, 'pulled-after')), [], 'skopeo pulls with the new certificate')
  })

  t.test('clientcas, require-and-verify-client-cert', async t => {
    const files = await servedFiles(t.testdir())
    const stevedore = await startStevedore(t, {
      config: { proxy: { remoteurl: upstream.url }, http: { tls: { ...files, clientcas: [join(pkiDir, 'clientca.crt')] } } },
    })
    // TLS 1.3 ends the client's side of the handshake before the server has
    // seen its certificate: the refusal arrives as an alert on the first read.
    t.match(await failure(get(stevedore.port)), /certificate required/, 'no client certificate: TLS 1.3 alert "certificate required"')
    const tls12 = await failure(get(stevedore.port, { maxVersion: 'TLSv1.2' }))
    t.match(tls12, /handshake failure/, 'no client certificate over TLS 1.2: the handshake fails')
    t.notMatch(await failure(get(stevedore.port, BAD)), /^succeeded/, 'a certificate from another CA is refused')
    t.equal((await get(stevedore.port, CLIENT)).status, 200, 'a certificate from a client CA is accepted')
    await t.rejects(pull(stevedore.host, 'no-client-cert', await certDir('no-client')), 'skopeo without a client certificate fails')
    await pull(stevedore.host, 'with-client-cert', await certDir('with-client', CLIENT))
    t.same(await compareLayoutBlobs(join(dir, 'image'), join(dir, 'with-client-cert')), [], 'skopeo with the client certificate pulls')
  })
})

t.test('clientcas, verify-client-cert-if-given', async t => {
  const dir = t.testdir()
  const { port } = await startTlsApp(t, dir, {
    ...(await servedFiles(dir)),
    clientcas: [join(pkiDir, 'clientca.crt')],
    clientauth: 'verify-client-cert-if-given',
  })
  t.equal((await get(port)).status, 200, 'no certificate: served')
  t.equal((await get(port, CLIENT)).status, 200, 'a verified certificate: served')
  const bad = await get(port, BAD)
  t.equal(bad.status, 403, 'a certificate that does not verify: 403')
  const body = JSON.parse(bad.body) as { errors: { code: string; message: string }[] }
  t.equal(body.errors[0]?.code, 'DENIED', 'as an OCI DENIED error')
  t.match(body.errors[0]?.message, /^client certificate not verified: UNABLE_TO_VERIFY_LEAF_SIGNATURE/, 'saying why')
  t.equal(bad.headers.connection, 'close', 'and the connection is closed')
})

t.test('plain HTTP on the TLS port: a clean 400, then the connection closes', async t => {
  const dir = t.testdir()
  // Headers (and handshakes) may take ten minutes here: nothing below may wait for that.
  const tlsApp = await startTlsApp(t, dir, await servedFiles(dir), { timeouts: { headers: '10m', request: '20m' } })
  const { port } = tlsApp
  const raw = await plainExchange(port, 'GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  t.match(raw.data, /^HTTP\/1\.1 400 Bad Request\r\n/, 'status line 400')
  t.match(raw.data, /\r\n\r\nClient sent an HTTP request to an HTTPS server\.\n$/, "Go's text as the body")
  t.ok(raw.endedByServer, 'the server ends the connection')
  const res = await fetch(`http://127.0.0.1:${port}/v2/`)
  t.equal(res.status, 400, 'fetch over http:// gets the 400')
  t.equal(await res.text(), 'Client sent an HTTP request to an HTTPS server.\n')
  t.equal((await get(port)).status, 200, 'HTTPS on the same port is served')
  const quiet = connect(port, '127.0.0.1', () => quiet.end())
  const [endedByServer] = await Promise.race([once(quiet, 'end').then(() => [true]), once(quiet, 'close').then(() => [false])])
  t.ok(endedByServer, 'a connection closed before its first byte is closed by the server too')

  t.test('a connection that never sends a byte does not hold up the drain', async t => {
    const silent = connect(port, '127.0.0.1')
    silent.on('error', () => {})
    const closed = new Promise(resolve => silent.once('close', resolve))
    await eventually('the server to see the connection', () =>
      new Promise<true | undefined>(resolve => tlsApp.app.server.getConnections((_err, n) => resolve(n > 0 ? true : undefined))),
    )
    await tlsApp.close()
    await closed
    t.pass('close() finished and the silent connection was closed')
  })
})

t.test('reload: open connections keep working, new ones get the new certificate, bad files change nothing', async t => {
  const dir = t.testdir()
  const files = await servedFiles(dir)
  const { app, port, logs } = await startTlsApp(t, dir, files)
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())

  const first = await get(port, { agent })
  t.equal(first.fingerprint, FP1, 'the keep-alive connection got the first certificate')

  await serve(files, 'server2')
  t.equal(await app.reloadTls('test'), true, 'reloadTls() loads the second pair')
  t.equal(fingerprintIn(reloaded(logs).find(r => r.trigger === 'test')), FP2, 'and logs its fingerprint')
  const reused = await get(port, { agent })
  t.equal(reused.status, 200, 'the connection opened before the reload still answers')
  t.equal(reused.socket, first.socket, 'on the same socket')
  t.equal(reused.socket.localPort, first.socket.localPort, 'same local port')
  t.equal(reused.fingerprint, FP1, 'which keeps the certificate it was opened with')
  t.equal((await get(port)).fingerprint, FP2, 'a new connection sees the new certificate')

  const failedBefore = reloadFailed(logs).length
  await writeFile(files.certificate, 'not a certificate\n')
  t.equal(await app.reloadTls('test'), false, 'a certificate file that is not PEM: reload refused')
  await serve(files, 'mismatched')
  t.equal(await app.reloadTls('test'), false, 'a key that does not match the certificate: reload refused')
  await rm(files.key)
  t.equal(await app.reloadTls('test'), false, 'a key file that is gone: reload refused')
  const errors = reloadFailed(logs).slice(failedBefore)
  t.ok(errors.some(r => /not a PEM certificate/.test(String(r.err))), 'the log says the certificate is not PEM')
  t.ok(errors.some(r => /does not match the certificate/.test(String(r.err))), 'that the key does not match')
  t.ok(errors.some(r => String(r.err).startsWith(`${files.key}: ENOENT`)), 'and which file is missing')
  t.equal((await get(port)).fingerprint, FP2, 'new connections still get the last good certificate')
  const still = await get(port, { agent })
  t.equal(still.socket, first.socket, 'the old connection is still open')
  t.equal(still.status, 200, 'and still answers')

  // The key first, then the certificate as a chain (leaf and CA, as certbot's
  // fullchain.pem): a size no earlier version of the file had, so the stat
  // poll sees the change even within one tick of the filesystem clock.
  await copyFile(join(pkiDir, 'server.key'), files.key)
  await writeFile(files.certificate, Buffer.concat([await pem('server.crt'), CA]))
  const seen = await eventually('a file change to be picked up', async () => {
    const reply = await get(port)
    return reply.fingerprint === FP1 ? reply : undefined
  })
  t.equal(seen.fingerprint, FP1, 'changed files are loaded without a signal')
  t.ok(reloaded(logs).some(r => r.trigger === 'file change' && fingerprintIn(r) === FP1), 'the log says a file change did it')
})

t.test('minimumtls tls1.3: a TLS 1.2 client is refused, also after a reload', async t => {
  const dir = t.testdir()
  const { app, port } = await startTlsApp(t, dir, { ...(await servedFiles(dir)), minimumtls: 'tls1.3' })
  const ok = await get(port)
  t.equal(ok.protocol, 'TLSv1.3', 'a default client speaks TLS 1.3')
  t.match(await failure(get(port, { maxVersion: 'TLSv1.2' })), /protocol version/, 'a TLS 1.2-only client is refused')
  t.equal(await app.reloadTls('test'), true)
  t.match(await failure(get(port, { maxVersion: 'TLSv1.2' })), /protocol version/, 'the reloaded context keeps the minimum')
})

t.test('unusable files at startup: the server does not start, and the error names the file', async t => {
  const dir = t.testdir()
  const files = await servedFiles(dir)
  const start = (tls: Record<string, unknown>): Promise<TlsApp> => startTlsApp(t, dir, { ...files, ...tls })
  await t.rejects(start({ certificate: join(dir, 'missing.crt') }), { message: `${join(dir, 'missing.crt')}: ENOENT: no such file or directory, open '${join(dir, 'missing.crt')}'` })
  await writeFile(join(dir, 'garbage.pem'), 'not PEM\n')
  await t.rejects(start({ key: join(dir, 'garbage.pem') }), { message: new RegExp(`^${join(dir, 'garbage.pem')}: not a PEM private key`) })
  // createSecureContext would ignore a CA file without a certificate in it, and trust nobody
  await t.rejects(start({ clientcas: [join(dir, 'garbage.pem')] }), { message: new RegExp(`^${join(dir, 'garbage.pem')}: not a PEM certificate`) })
})

t.test('without TLS, reloadTls() is a no-op', async t => {
  const root = join(t.testdir(), 'storage')
  await mkdir(root)
  const { config } = parseConfig(stringify({ version: '0.1', http: { addr: '127.0.0.1:0' }, storage: { filesystem: { rootdirectory: root } } }), {}, 'tls.test')
  const app = await startApp(config, pino({ level: 'silent' }))
  t.teardown(() => app.close())
  t.equal(await app.reloadTls(), false)
})
