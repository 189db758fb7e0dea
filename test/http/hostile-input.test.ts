// Hostile input over raw sockets, against a real Stevedore proxying a real
// Distribution with one small image: every case gets a well-formed HTTP answer
// (an OCI error body with the status its code is registered with, or Node's
// own bodiless 400/431 before closing) or a closed connection; the server
// stays up and serves a normal pull right after each case; smuggled requests
// are never executed; slow clients are cut while others are served; and
// nothing is written outside the storage root, nor anything odd inside it.
import { createHash } from 'node:crypto'
import { lstat, readdir, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import t, { type Test } from 'tap'
import { ERROR_CODES } from '../../src/http/errcode.js'
import { runCommand } from '../helpers/command.js'
import { startDistribution } from '../helpers/distribution.js'
import { rawGet, send } from '../helpers/http.js'
import { OCI_CONFIG, OCI_MANIFEST } from '../helpers/images.js'
import { pushBlob, pushManifest, sha256 } from '../helpers/push.js'
import { startStevedore, type StevedoreProc } from '../helpers/stevedore.js'


// ---- a raw HTTP/1.1 client: exact bytes out, responses parsed by hand ----

interface RawResponse {
  statusLine: string
  status: number
  headers: Map<string, string[]>
  body: Buffer
}

interface Outcome {
  responses: RawResponse[]
  /** The server closed (or reset) the connection. */
  closed: boolean
  /** Neither enough responses nor a close before the deadline. */
  timedOut: boolean
  /** Bytes after the last complete response. */
  rest: Buffer
}

const header = (res: RawResponse, name: string): string | undefined => res.headers.get(name)?.join(', ')

/** The complete responses at the start of `buf`; 1xx interim answers are skipped. */
function parseResponses(buf: Buffer, head: boolean, closed: boolean): { responses: RawResponse[]; rest: Buffer } {
  const responses: RawResponse[] = []
  let at = 0
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', at, 'latin1')
    if (end < 0) break
    const [statusLine = '', ...lines] = buf.subarray(at, end).toString('latin1').split('\r\n')
    const headers = new Map<string, string[]>()
    for (const line of lines) {
      const colon = line.indexOf(':')
      const name = line.slice(0, colon).toLowerCase()
      headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()])
    }
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? Number.NaN)
    const res: RawResponse = { statusLine, status, headers, body: Buffer.alloc(0) }
    let next = end + 4
    const length = header(res, 'content-length')
    if (status < 200) {
      at = next
      continue
    } else if (head || status === 204 || status === 304) {
      // no body
    } else if (length !== undefined) {
      if (buf.length < next + Number(length)) break
      res.body = buf.subarray(next, next + Number(length))
      next += Number(length)
    } else if (header(res, 'transfer-encoding') === 'chunked') {
      const chunks: Buffer[] = []
      let pos = next
      let done = false
      for (;;) {
        const lineEnd = buf.indexOf('\r\n', pos, 'latin1')
        if (lineEnd < 0) break
        const size = Number.parseInt(buf.subarray(pos, lineEnd).toString('latin1'), 16)
        if (size === 0) {
          if (buf.length < lineEnd + 4) break
          pos = lineEnd + 4
          done = true
          break
        }
        if (buf.length < lineEnd + 2 + size + 2) break
        chunks.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size))
        pos = lineEnd + 2 + size + 2
      }
      if (!done) break
      res.body = Buffer.concat(chunks)
      next = pos
    } else {
      // Delimited by the close.
      if (!closed) break
      res.body = buf.subarray(next)
      next = buf.length
    }
    responses.push(res)
    at = next
  }
  return { responses, rest: buf.subarray(at) }
}

interface ExchangeOptions {
  head?: boolean
  /** Stop reading after this many responses (default 1)… */
  responses?: number
  /** …unless lingering this long for more (smuggling cases count them). */
  lingerMs?: number
  deadlineMs?: number
}

/** Writes `data` on a fresh connection and reads until enough responses, a close, or the deadline. */
function exchange(port: number, data: Buffer | Buffer[], opts: ExchangeOptions = {}): Promise<Outcome> {
  const want = opts.responses ?? 1
  return new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    let buf = Buffer.alloc(0)
    let settled = false
    let lingering: NodeJS.Timeout | undefined
    const finish = (closed: boolean, timedOut: boolean): void => {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      clearTimeout(lingering)
      socket.destroy()
      resolve({ ...parseResponses(buf, opts.head ?? false, closed), closed, timedOut })
    }
    const deadline = setTimeout(() => finish(false, true), opts.deadlineMs ?? 5_000)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      const { responses } = parseResponses(buf, opts.head ?? false, false)
      if (responses.length < want || lingering !== undefined) return
      // An answer that says it closes: wait for the close, to see that it does.
      if (responses.at(-1)?.headers.get('connection')?.includes('close') === true) return
      if (opts.lingerMs === undefined) finish(false, false)
      else lingering = setTimeout(() => finish(false, false), opts.lingerMs)
    })
    // A reset after the server refused the rest of a large body is a close too.
    socket.on('error', () => undefined)
    socket.on('close', () => finish(true, false))
    for (const piece of Array.isArray(data) ? data : [data]) socket.write(piece)
  })
}

// ---- what every answer must look like ----

/** Answers Node's own parser gives, without a body: malformed request, headers too large, timeout, bad Expect. */
const NODE_ANSWERS = new Set([400, 408, 417, 431])

interface Case {
  name: string
  request: string | Buffer | Buffer[]
  /** Statuses allowed; an empty list: the server must close without an answer. */
  status: number[]
  /** Codes allowed in an OCI error body. */
  codes?: string[]
  /** A close without an answer is fine too. */
  mayClose?: boolean
  head?: boolean
  /** For smuggling: read on this long and count the answers; at most `status.length === 0 ? 0 : 1` may come. */
  lingerMs?: number
  /** A request path that must never show in the access log. */
  hidden?: string
  check?: (t: Test, res: RawResponse) => void
}

function assertWellFormed(t: Test, c: Case, outcome: Outcome): void {
  t.notOk(outcome.timedOut, 'answered or closed before the deadline')
  const [res] = outcome.responses
  if (res === undefined) {
    t.ok(outcome.closed, 'the connection was closed')
    t.ok(c.status.length === 0 || c.mayClose === true, 'a close without an answer is expected here')
    t.equal(outcome.rest.length, 0, 'no partial answer')
    return
  }
  if (c.lingerMs !== undefined) t.equal(outcome.responses.length, 1, 'exactly one answer: nothing smuggled behind it')
  t.match(res.statusLine, /^HTTP\/1\.1 \d{3} [\x20-\x7e]*$/, 'a status line')
  t.ok(c.status.includes(res.status), `status ${res.status} is one of ${c.status.join(', ') || 'none'}`)
  if (res.status < 400) {
    if (c.check) c.check(t, res)
    return
  }
  if (res.body.length === 0 && !c.head) {
    t.ok(NODE_ANSWERS.has(res.status), `a bodiless ${res.status} is Node's own answer`)
    if (res.status !== 417) {
      t.equal(header(res, 'connection'), 'close', "Node's refusal says it closes")
      t.ok(outcome.closed, 'and closes')
    }
    return
  }
  if (c.head) {
    t.equal(res.body.length, 0, 'no body for HEAD')
    return
  }
  t.match(header(res, 'content-type'), /^application\/json/, 'a JSON error body')
  let body: { errors?: { code?: unknown; message?: unknown }[] } = {}
  t.doesNotThrow(() => (body = JSON.parse(res.body.toString('utf8')) as typeof body), 'that parses')
  const errors = body.errors ?? []
  t.ok(errors.length > 0, 'with errors')
  for (const error of errors) {
    const code = String(error.code)
    t.ok(Object.hasOwn(ERROR_CODES, code), `code ${code} is registered`)
    t.equal(ERROR_CODES[code as keyof typeof ERROR_CODES]?.status, res.status, `${code} has status ${res.status}`)
    t.type(error.message, 'string', 'and a message')
    if (c.codes) t.ok(c.codes.includes(code), `code ${code} is one of ${c.codes.join(', ')}`)
  }
  if (c.check) c.check(t, res)
}

// ---- the image, the servers, a normal pull ----

interface Image {
  repo: string
  tag: string
  manifestDigest: string
  layer: Buffer
  layerDigest: string
}

async function pushImage(registry: string): Promise<Image> {
  const repo = 'hostile/app'
  const layer = Buffer.alloc(20_000)
  for (let i = 0; i < layer.length; i++) layer[i] = (i * 31 + 7) % 251
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }))
  const configBlob = await pushBlob(registry, repo, config)
  const layerBlob = await pushBlob(registry, repo, layer)
  const manifest = await pushManifest(
    registry,
    repo,
    'v1',
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, ...configBlob },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layerBlob }],
    },
    OCI_MANIFEST,
  )
  return { repo, tag: 'v1', manifestDigest: manifest.digest, layer, layerDigest: layerBlob.digest }
}

async function assertPull(t: Test, stevedore: StevedoreProc, image: Image, headers: Record<string, string> = {}): Promise<void> {
  const manifest = await rawGet(`${stevedore.url}/v2/${image.repo}/manifests/${image.tag}`, { Accept: OCI_MANIFEST, ...headers })
  t.equal(manifest.status, 200, 'then a normal manifest GET is served')
  t.equal(manifest.sha256, image.manifestDigest, 'with the pushed manifest')
  t.equal(manifest.headers['docker-content-digest'], image.manifestDigest)
  const blob = await rawGet(`${stevedore.url}/v2/${image.repo}/blobs/${image.layerDigest}`, headers)
  t.equal(blob.status, 200, 'and a normal blob GET')
  t.equal(blob.sha256, image.layerDigest, 'with the pushed layer')
}

async function runCases(t: Test, stevedore: StevedoreProc, image: Image, cases: Case[], pullHeaders: Record<string, string> = {}): Promise<void> {
  for (const c of cases) {
    await t.test(c.name, async t => {
      const data = typeof c.request === 'string' ? Buffer.from(c.request, 'latin1') : c.request
      const outcome = await exchange(stevedore.port, data, { head: c.head ?? false, ...(c.lingerMs === undefined ? {} : { lingerMs: c.lingerMs }) })
      assertWellFormed(t, c, outcome)
      await assertPull(t, stevedore, image, pullHeaders)
    })
  }
}

interface SlowResult {
  closedAt: number
  answer: string
  bytesSent: number
}

/**
 * A client that sends `data` a byte every `intervalMs` (all at once and then
 * nothing, for 0) and never finishes; resolves when the server cuts it, or
 * after `deadlineMs`.
 */
function slowClient(port: number, data: Buffer, intervalMs: number, deadlineMs: number): Promise<SlowResult> {
  return new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    let sent = 0
    let answer = ''
    if (intervalMs === 0) {
      socket.write(data)
      sent = data.length
    }
    const timer = setInterval(() => {
      if (intervalMs > 0 && sent < data.length && !socket.destroyed) socket.write(data.subarray(sent, ++sent))
    }, Math.max(intervalMs, 50))
    const deadline = setTimeout(() => socket.destroy(), deadlineMs)
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')))
    socket.on('error', () => undefined)
    socket.on('close', () => {
      clearInterval(timer)
      clearTimeout(deadline)
      resolve({ closedAt: Date.now(), answer, bytesSent: sent })
    })
  })
}

/** Every path under `dir` (relative), directories with a trailing slash; what vanishes meanwhile (a fill's spool being committed) is skipped. */
async function walk(dir: string, base = dir): Promise<string[]> {
  const out: string[] = []
  const gone = (err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  for (const entry of (await readdir(dir).catch(gone)) ?? []) {
    const path = join(dir, entry)
    const rel = relative(base, path)
    const info = await lstat(path).catch(gone)
    if (info === undefined) continue
    if (info.isDirectory()) out.push(`${rel}/`, ...(await walk(path, base)))
    else out.push(rel)
  }
  return out
}

// ---- the cases ----

const HOST = 'Host: stevedore.test\r\n'
const req = (target: string, headers: string[] = [], method = 'GET', body = ''): string =>
  `${method} ${target} HTTP/1.1\r\n${HOST}${headers.map(h => `${h}\r\n`).join('')}\r\n${body}`
const many = (n: number, make: (i: number) => string): string[] => Array.from({ length: n }, (_, i) => make(i))
const b64 = (text: string): string => Buffer.from(text, 'latin1').toString('base64')

const NAME = { status: [400], codes: ['NAME_INVALID'] }
const TAG = { status: [400], codes: ['TAG_INVALID'] }
const DIGEST = { status: [400], codes: ['DIGEST_INVALID'] }
/** Refused by Node's parser (400 and a close), or by the router. */
const PARSER = { status: [400] }
const RANGE = { status: [416], codes: ['RANGE_INVALID'] }
const PAGE = { status: [400], codes: ['PAGINATION_NUMBER_INVALID'] }

function cases(image: Image): Record<string, Case[]> {
  const m = `/v2/${image.repo}/manifests/${image.tag}`
  const blob = `/v2/${image.repo}/blobs/${image.layerDigest}`
  const hex = image.layerDigest.slice('sha256:'.length)
  const size = image.layer.length
  const ranged = (start: number, end: number) => (t: Test, res: RawResponse) => {
    t.equal(header(res, 'content-range'), `bytes ${start}-${end}/${size}`)
    t.same(res.body, image.layer.subarray(start, end + 1), 'the bytes asked for')
  }
  const whole = (t: Test, res: RawResponse) => t.equal(createHash('sha256').update(res.body).digest('hex'), hex, 'the whole blob')
  const json = (check: (t: Test, body: { tags?: string[]; repositories?: string[] }) => void) => (t: Test, res: RawResponse) =>
    check(t, JSON.parse(res.body.toString('utf8')) as { tags?: string[]; repositories?: string[] })
  const smuggled = (path: string) => `GET ${path} HTTP/1.1\r\n${HOST}\r\n`
  return {
    'traversal in names': [
      { name: 'dot segments', request: req('/v2/../../../../../tmp/pwn3d/manifests/v1'), ...NAME },
      { name: 'dot segments after a valid name', request: req(`/v2/${image.repo}/../../pwn3d/manifests/v1`), ...NAME },
      { name: 'percent-encoded dots', request: req('/v2/%2e%2e/%2e%2e/pwn3d/manifests/v1'), ...NAME },
      { name: 'percent-encoded dots and slashes', request: req('/v2/%2E%2E%2F%2E%2E%2Fpwn3d/manifests/v1'), ...NAME },
      { name: 'double-encoded dots', request: req('/v2/%252e%252e/pwn3d/tags/list'), ...NAME },
      { name: 'an encoded slash inside a name', request: req('/v2/hostile%2fapp/manifests/v1'), ...NAME },
      { name: 'backslashes', request: req('/v2/..\\..\\pwn3d/manifests/v1'), ...NAME },
      { name: 'a single-dot segment', request: req(`/v2/./${image.repo}/manifests/v1`), ...NAME },
      { name: 'an empty segment', request: req('/v2/hostile//app/manifests/v1'), ...NAME },
      { name: 'upper case', request: req('/v2/Hostile/App/manifests/v1'), ...NAME },
      { name: "a component starting with '_' (storage's own)", request: req('/v2/hostile/_manifests/manifests/v1'), ...NAME },
      { name: 'traversal in a blob path', request: req(`/v2/../pwn3d/blobs/${image.layerDigest}`), ...NAME },
      { name: 'traversal in a tag list path', request: req('/v2/hostile/app/../../../pwn3d/tags/list'), ...NAME },
      { name: 'traversal in a referrers path', request: req(`/v2/%2e%2e/referrers/${image.layerDigest}`), ...NAME },
      { name: 'UTF-8 bytes in a name', request: req('/v2/h\xc3\xa9/manifests/v1'), ...PARSER, codes: ['NAME_INVALID'] },
      { name: 'HEAD with dot segments', request: req('/v2/../../pwn3d/manifests/v1', [], 'HEAD'), ...NAME, head: true },
      { name: 'HEAD of a blob with encoded dots', request: req(`/v2/%2e%2e/blobs/${image.layerDigest}`, [], 'HEAD'), ...NAME, head: true },
    ],
    'traversal in tags and digests': [
      { name: 'tag ..', request: req(`/v2/${image.repo}/manifests/..`), ...TAG },
      { name: 'tag %2e%2e', request: req(`/v2/${image.repo}/manifests/%2e%2e`), ...TAG },
      { name: 'tag with encoded slashes', request: req(`/v2/${image.repo}/manifests/..%2f..%2fpwn3d`), ...TAG },
      { name: 'tag with an encoded NUL', request: req(`/v2/${image.repo}/manifests/v1%00`), ...TAG },
      { name: 'tag starting with a dot', request: req(`/v2/${image.repo}/manifests/.pwn3d`), ...TAG },
      { name: 'tag of 129 characters', request: req(`/v2/${image.repo}/manifests/${'a'.repeat(129)}`), ...TAG },
      { name: 'slashes after the reference', request: req(`${m}/../../pwn3d`), status: [404], codes: ['NOT_FOUND'] },
      { name: 'digest with slashes', request: req(`/v2/${image.repo}/blobs/sha256:../../../../pwn3d`), status: [404], codes: ['NOT_FOUND'] },
      { name: 'digest with encoded slashes', request: req(`/v2/${image.repo}/blobs/sha256:..%2f..%2fpwn3d`), ...DIGEST },
      { name: 'digest with an encoded colon', request: req(`/v2/${image.repo}/blobs/sha256%3a${hex}`), ...DIGEST },
      { name: 'digest in upper case', request: req(`/v2/${image.repo}/blobs/sha256:${hex.toUpperCase()}`), ...DIGEST },
      { name: 'digest one character short', request: req(`/v2/${image.repo}/blobs/sha256:${hex.slice(1)}`), ...DIGEST },
      { name: 'digest of an unsupported algorithm', request: req(`/v2/${image.repo}/blobs/md5:${hex.slice(0, 32)}`), ...DIGEST },
      { name: 'digest with an encoded NUL', request: req(`/v2/${image.repo}/blobs/sha256:${hex}%00`), ...DIGEST },
      { name: 'manifest digest with traversal', request: req(`/v2/${image.repo}/manifests/sha256:%2e%2e%2f%2e%2e`), ...DIGEST },
      { name: 'referrers digest with traversal', request: req(`/v2/${image.repo}/referrers/sha256:..%2fpwn3d`), ...DIGEST },
      { name: 'a 4 KiB digest', request: req(`/v2/${image.repo}/blobs/sha256:${'a'.repeat(4096)}`), status: [404], codes: ['NOT_FOUND'] },
    ],
    'NUL and control bytes': [
      { name: 'NUL in the path', request: req('/v2/hostile\x00/app/manifests/v1'), ...PARSER },
      { name: 'a control byte in the path', request: req('/v2/hostile\x01app/manifests/v1'), ...PARSER },
      { name: 'DEL in the path', request: req('/v2/hostile\x7fapp/manifests/v1'), ...PARSER },
      { name: 'a lone CR in the request line', request: req('/v2/\rpwn3d'), ...PARSER },
      { name: 'NUL in a header value', request: req(m, ['X-Test: a\x00b']), ...PARSER },
      { name: 'ESC in a header value', request: req(m, ['Accept: \x1b[31m']), ...PARSER },
      { name: 'NUL in a header name', request: req(m, ['X-Te\x00st: a']), ...PARSER },
      { name: 'bare LF line endings', request: `GET ${m} HTTP/1.1\n${HOST.trim()}\n\n`, ...PARSER },
      { name: 'a folded header line', request: req(m, ['X-Test: a', ' folded']), ...PARSER },
      { name: 'a space before the colon', request: req(m, ['Accept : */*']), ...PARSER },
      { name: 'a control byte in X-Request-Id', request: req('/v2/', ['X-Request-Id: a\x07b']), ...PARSER },
      { name: 'high bytes in X-Request-Id', request: req('/v2/', ['X-Request-Id: \xff\xfe\x80']), status: [200] },
    ],
    'over-long names, paths and headers': [
      { name: 'a 256-character name', request: req(`/v2/${'a'.repeat(256)}/manifests/v1`), ...NAME },
      { name: 'a name of 1,000 components', request: req(`/v2/${'a/'.repeat(1000)}b/manifests/v1`), ...NAME },
      { name: 'a path past 2 KiB', request: req(`/v2/${'a/'.repeat(1100)}b/manifests/v1`), status: [404], codes: ['NOT_FOUND'] },
      { name: 'a 20 KiB request target', request: req(`/v2/${'a'.repeat(20_000)}/manifests/v1`), status: [431] },
      { name: 'a 20 KiB header', request: req(m, [`X-Big: ${'a'.repeat(20_000)}`]), status: [431] },
      { name: 'a 12 KiB header name', request: req('/v2/', [`${'X'.repeat(12_000)}: a`]), status: [200] },
      { name: '3,000 headers (past the byte limit)', request: req(m, many(3_000, i => `X-H${i}: v`)), status: [431] },
      // Node keeps the first maxHeadersCount and drops the rest: answered, never a crash.
      { name: '1,000 small headers (past the count limit)', request: req(m, many(1_000, i => `X${i}: v`)), status: [200, 431] },
      { name: 'a 16 KiB query', request: req(`/v2/_catalog?last=${'a'.repeat(16_500)}`), status: [431] },
    ],
    Range: [
      { name: 'one range', request: req(blob, ['Range: bytes=0-9']), status: [206], check: ranged(0, 9) },
      { name: 'an open range', request: req(blob, [`Range: bytes=${size - 10}-`]), status: [206], check: ranged(size - 10, size - 1) },
      { name: 'a suffix', request: req(blob, ['Range: bytes=-10']), status: [206], check: ranged(size - 10, size - 1) },
      { name: 'a suffix longer than the blob', request: req(blob, ['Range: bytes=-99999999']), status: [206], check: ranged(0, size - 1) },
      { name: 'an end past the blob', request: req(blob, ['Range: bytes=0-999999999999999']), status: [206], check: ranged(0, size - 1) },
      { name: 'two ranges: served whole (RFC 9110 lets a server ignore Range)', request: req(blob, ['Range: bytes=0-1,5-6']), status: [200], check: whole },
      { name: '1,000 ranges: served whole', request: req(blob, [`Range: bytes=${many(1_000, i => `${i}-${i}`).join(',')}`]), status: [200], check: whole },
      { name: 'one valid range and a broken one', request: req(blob, ['Range: bytes=0-1,pwn3d']), ...RANGE },
      { name: 'two Range headers', request: req(blob, ['Range: bytes=0-1', 'Range: bytes=2-3']), ...RANGE },
      { name: 'a trailing empty list element', request: req(blob, ['Range: bytes=0-9,']), status: [206], check: ranged(0, 9) },
      { name: 'garbage', request: req(blob, ['Range: bytes=abc']), ...RANGE },
      { name: 'end before start', request: req(blob, ['Range: bytes=5-1']), ...RANGE },
      { name: 'an empty suffix', request: req(blob, ['Range: bytes=-0']), ...RANGE },
      { name: 'just a dash', request: req(blob, ['Range: bytes=-']), ...RANGE },
      { name: 'a 20-digit start', request: req(blob, ['Range: bytes=99999999999999999999-']), ...RANGE },
      { name: 'hex numbers', request: req(blob, ['Range: bytes=0x10-0x20']), ...RANGE },
      { name: 'a negative start', request: req(blob, ['Range: bytes=-5-10']), ...RANGE },
      {
        name: 'a start at the size: unsatisfiable, with the size',
        request: req(blob, [`Range: bytes=${size}-`]),
        ...RANGE,
        check: (t, res) => t.equal(header(res, 'content-range'), `bytes */${size}`),
      },
      { name: "no '='", request: req(blob, ['Range: bytes 0-1']), ...RANGE },
      { name: 'an unknown unit: ignored', request: req(blob, ['Range: pages=0-1']), status: [200], check: whole },
      { name: 'on a manifest: ignored', request: req(m, ['Range: bytes=0-1', `Accept: ${OCI_MANIFEST}`]), status: [200] },
      { name: 'on a HEAD', request: req(blob, ['Range: bytes=abc'], 'HEAD'), status: [200], head: true },
    ],
    'pagination and query parameters': [
      { name: 'n=-1', request: req(`/v2/${image.repo}/tags/list?n=-1`), ...PAGE },
      { name: 'n=1e400', request: req(`/v2/${image.repo}/tags/list?n=1e400`), ...PAGE },
      { name: 'n of 20 digits', request: req('/v2/_catalog?n=99999999999999999999'), ...PAGE },
      { name: 'n=abc', request: req('/v2/_catalog?n=abc'), ...PAGE },
      { name: 'n empty', request: req(`/v2/${image.repo}/tags/list?n=`), ...PAGE },
      { name: 'n=+5 (encoded)', request: req('/v2/_catalog?n=%2B5'), ...PAGE },
      { name: 'n=0x10', request: req(`/v2/${image.repo}/tags/list?n=0x10`), ...PAGE },
      { name: 'n=5.5', request: req('/v2/_catalog?n=5.5'), ...PAGE },
      { name: 'n with a broken percent escape', request: req('/v2/_catalog?n=%zz'), ...PAGE },
      { name: 'n of full-width digits', request: req('/v2/_catalog?n=%EF%BC%91'), ...PAGE },
      { name: 'n=999999999: capped', request: req(`/v2/${image.repo}/tags/list?n=999999999`), status: [200], check: json((t, b) => t.same(b.tags, ['v1'])) },
      { name: 'n=0', request: req(`/v2/${image.repo}/tags/list?n=0`), status: [200], check: json((t, b) => t.same(b.tags, [])) },
      { name: 'last of 8 KiB', request: req(`/v2/_catalog?last=${'z'.repeat(8_000)}`), status: [200], check: json((t, b) => t.same(b.repositories, [])) },
      { name: 'last with traversal', request: req('/v2/_catalog?last=..%2F..%2F..%2Fpwn3d'), status: [200] },
      { name: 'last with NUL and control bytes', request: req(`/v2/${image.repo}/tags/list?last=%00%01%1b`), status: [200], check: json((t, b) => t.same(b.tags, ['v1'])) },
      { name: 'ns with traversal', request: req(`${m}?ns=..%2F..%2Fpwn3d`), status: [404], codes: ['NAME_UNKNOWN'] },
      { name: 'ns of 8 KiB', request: req(`${m}?ns=${'a'.repeat(8_000)}`), status: [404], codes: ['NAME_UNKNOWN'] },
      { name: 'artifactType of 8 KiB', request: req(`/v2/${image.repo}/referrers/${image.manifestDigest}?artifactType=${'a'.repeat(8_000)}`), status: [200, 404] },
      { name: 'a thousand parameters', request: req(`/v2/_catalog?${many(1_000, i => `p${i}=x`).join('&')}`), status: [200] },
    ],
    Authorization: [
      { name: 'an unknown scheme', request: req(m, ['Authorization: Pwn3d abc']), status: [200] },
      { name: 'Basic with bad base64', request: req(m, ['Authorization: Basic !!!not*base64!!!']), status: [200] },
      { name: 'Basic without a colon', request: req(m, [`Authorization: Basic ${b64('nocolon')}`]), status: [200] },
      { name: 'Basic with control bytes', request: req(m, [`Authorization: Basic ${b64('a\x00b:\x01\x02')}`]), status: [200] },
      { name: 'Bearer garbage', request: req(m, ['Authorization: Bearer a.b']), status: [200] },
      { name: 'an empty Authorization', request: req(m, ['Authorization: ']), status: [200] },
      { name: 'a 12 KiB Basic value', request: req(m, [`Authorization: Basic ${'QUFB'.repeat(3_000)}`]), status: [200] },
      { name: 'two Authorization headers', request: req(m, ['Authorization: Basic Og==', 'Authorization: Bearer x']), status: [200] },
      { name: 'high bytes in Authorization', request: req(m, ['Authorization: Basic \xff\xfe']), status: [200] },
    ],
    'bodies: oversized and malformed JSON': [
      { name: 'malformed JSON in a manifest PUT', request: req(m, [`Content-Type: ${OCI_MANIFEST}`, 'Content-Length: 9'], 'PUT', '{"a":[}}}'), status: [405], codes: ['UNSUPPORTED'] },
      {
        name: 'a 5 MiB manifest PUT',
        request: [Buffer.from(req(m, [`Content-Type: ${OCI_MANIFEST}`, `Content-Length: ${5 * 1024 * 1024}`], 'PUT'), 'latin1'), Buffer.alloc(5 * 1024 * 1024, '[')],
        status: [405],
        codes: ['UNSUPPORTED'],
        // Answered and closed without reading the body: a client still writing may see the reset before the answer.
        mayClose: true,
      },
      { name: 'a PUT announcing 10 GB', request: req(m, ['Content-Length: 10000000000'], 'PUT', '{"a":'), status: [405], codes: ['UNSUPPORTED'] },
      { name: 'a chunked upload with a broken chunk size', request: req(`/v2/${image.repo}/blobs/uploads/`, ['Transfer-Encoding: chunked'], 'POST', 'zz\r\n{}\r\n0\r\n\r\n'), status: [400, 405], mayClose: true },
      { name: 'a JSON body on a GET: ignored', request: req(m, [`Accept: ${OCI_MANIFEST}`, 'Content-Length: 13'], 'GET', '{"pwn3d":"x"}'), status: [200] },
      { name: 'a DELETE', request: req(m, [], 'DELETE'), status: [405], codes: ['UNSUPPORTED'] },
    ],
    'methods and protocol': [
      { name: 'an unknown method', request: req('/v2/', [], 'PWN3D'), ...PARSER },
      { name: 'a lower-case method', request: req('/v2/', [], 'get'), ...PARSER },
      { name: 'TRACE', request: req('/v2/', [], 'TRACE'), status: [405], codes: ['UNSUPPORTED'] },
      { name: 'CONNECT', request: req('evil.example:443', [], 'CONNECT'), status: [] },
      { name: 'OPTIONS *', request: req('*', [], 'OPTIONS'), status: [404, 405] },
      { name: 'an absolute-form target', request: req('http://evil.example/v2/'), status: [200, 404] },
      { name: 'no Host on HTTP/1.1', request: `GET ${m} HTTP/1.1\r\n\r\n`, ...PARSER },
      { name: 'HTTP/9.9', request: `GET /v2/ HTTP/9.9\r\n${HOST}\r\n`, status: [400, 505] },
      { name: 'the HTTP/2 preface', request: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', ...PARSER },
      { name: 'HTTP/1.0 without Host', request: `GET ${m} HTTP/1.0\r\nAccept: ${OCI_MANIFEST}\r\n\r\n`, status: [200] },
      { name: 'Expect: 100-continue', request: req('/v2/', ['Expect: 100-continue']), status: [200] },
      { name: 'an unknown Expect', request: req('/v2/', ['Expect: pwn3d']), status: [417] },
    ],
    'request smuggling': [
      { name: 'Content-Length and Transfer-Encoding', request: req('/v2/', ['Content-Length: 5', 'Transfer-Encoding: chunked'], 'GET', '0\r\n\r\n'), ...PARSER },
      { name: 'Transfer-Encoding and Content-Length', request: req('/v2/', ['Transfer-Encoding: chunked', 'Content-Length: 5'], 'GET', '0\r\n\r\n'), ...PARSER },
      { name: 'two different Content-Lengths', request: req('/v2/', ['Content-Length: 5', 'Content-Length: 6'], 'GET', 'abcdef'), ...PARSER },
      { name: 'two equal Content-Lengths', request: req('/v2/', ['Content-Length: 5', 'Content-Length: 5'], 'GET', 'abcde'), ...PARSER },
      { name: 'a listed Content-Length', request: req('/v2/', ['Content-Length: 5, 5'], 'GET', 'abcde'), ...PARSER },
      { name: 'a negative Content-Length', request: req('/v2/', ['Content-Length: -1']), ...PARSER },
      { name: 'a signed Content-Length', request: req('/v2/', ['Content-Length: +1'], 'GET', 'a'), ...PARSER },
      { name: 'Transfer-Encoding with extra spaces and Content-Length', request: req('/v2/', ['Transfer-Encoding:  chunked', 'Content-Length: 3'], 'GET', '0\r\n\r\n'), ...PARSER },
      { name: 'Transfer-Encoding: chunked, identity', request: req('/v2/', ['Transfer-Encoding: chunked, identity'], 'GET', '0\r\n\r\n'), ...PARSER },
      { name: 'two Transfer-Encodings', request: req('/v2/', ['Transfer-Encoding: chunked', 'Transfer-Encoding: identity'], 'GET', '0\r\n\r\n'), ...PARSER },
      { name: 'a folded Transfer-Encoding', request: req('/v2/', ['Transfer-Encoding:', ' chunked'], 'GET', '0\r\n\r\n'), ...PARSER },
      { name: 'Transfer-Encoding with a space before the colon', request: req('/v2/', ['Transfer-Encoding : chunked'], 'GET', '0\r\n\r\n'), ...PARSER },
      {
        name: 'Transfer-Encoding: xchunked hiding a request',
        request: req('/v2/', ['Transfer-Encoding: xchunked'], 'GET', smuggled('/v2/smuggled/xchunked/manifests/v1')),
        status: [200, 400],
        lingerMs: 500,
        hidden: '/v2/smuggled/xchunked/manifests/v1',
      },
      {
        name: 'a request hidden in a Content-Length body',
        request: (() => {
          const hidden = smuggled('/v2/smuggled/body/manifests/v1')
          return req('/v2/', [`Content-Length: ${hidden.length}`], 'GET', hidden)
        })(),
        status: [200],
        lingerMs: 500,
        hidden: '/v2/smuggled/body/manifests/v1',
      },
      {
        name: 'a request hidden in a chunked body',
        request: (() => {
          const hidden = smuggled('/v2/smuggled/chunk/manifests/v1')
          return req('/v2/', ['Transfer-Encoding: chunked'], 'GET', `${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`)
        })(),
        status: [200],
        lingerMs: 500,
        hidden: '/v2/smuggled/chunk/manifests/v1',
      },
      {
        name: 'CL and TE disagreeing, hiding a request',
        request: req('/v2/', ['Content-Length: 4', 'Transfer-Encoding: chunked'], 'GET', `0\r\n\r\n${smuggled('/v2/smuggled/clte/manifests/v1')}`),
        ...PARSER,
        lingerMs: 500,
        hidden: '/v2/smuggled/clte/manifests/v1',
      },
      { name: 'a chunk size overflowing 64 bits', request: req('/v2/', ['Transfer-Encoding: chunked'], 'GET', 'ffffffffffffffffffff\r\n'), status: [200, 400], mayClose: true },
      { name: 'a chunk extension with NUL', request: req('/v2/', ['Transfer-Encoding: chunked'], 'GET', '1;\x00\r\na\r\n0\r\n\r\n'), status: [200, 400], mayClose: true },
    ],
  }
}

// ---- the suite ----

/** http.timeouts.headers of the server under test. */
const HEADERS_TIMEOUT_MS = 1_000
/**
 * Node checks for expired headers on a timer (`connectionsCheckingInterval`),
 * not as bytes arrive; createServer sets it to a quarter of the headers
 * timeout (at least 250 ms): a slow client is cut within about that much after it.
 */
const NODE_CHECK_INTERVAL_MS = 1_000
const SLOW_CUT_MS = HEADERS_TIMEOUT_MS + NODE_CHECK_INTERVAL_MS + 3_000

t.test('hostile input over raw sockets', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const image = await pushImage(upstream.url)
  const root = join(dir, 'deep', 'down', 'storage')
  const stevedore = await startStevedore(t, {
    config: {
      log: { level: 'info' },
      storage: { filesystem: { rootdirectory: root } },
      proxy: { remoteurl: upstream.url },
      // trusted: the test's own X-Request-Id marks where the access log has caught up
      http: { timeouts: { headers: `${HEADERS_TIMEOUT_MS}ms`, request: '5s' }, trustedproxies: ['127.0.0.1'] },
    },
  })
  const ownDir = dirname(stevedore.configPath)
  await assertPull(t, stevedore, image)
  const before = (await walk(dir)).filter(p => !p.startsWith('deep/down/storage/'))

  // Slow clients, started first: they hold their connections while every case below is served.
  const slowStarted = Date.now()
  const dribbled = Buffer.from(req('/v2/', [`X-Slow: ${'a'.repeat(400)}`]), 'latin1')
  const dribbler = slowClient(stevedore.port, dribbled, 150, SLOW_CUT_MS + 10_000)
  const silent = slowClient(stevedore.port, Buffer.from(`GET /v2/ HTTP/1.1\r\n${HOST}X-Partial`, 'latin1'), 0, SLOW_CUT_MS + 10_000)

  let total = 0
  for (const [group, list] of Object.entries(cases(image))) {
    total += list.length
    await t.test(group, async t => runCases(t, stevedore, image, list))
  }
  t.ok(total >= 60, `${total} cases`)

  t.test('smuggled requests never ran', async t => {
    const hidden = Object.values(cases(image))
      .flat()
      .flatMap(c => (c.hidden === undefined ? [] : [c.hidden]))
    t.ok(hidden.length >= 4)
    // A request of our own after them, to know the access log has caught up.
    await rawGet(`${stevedore.url}/v2/`, { 'X-Request-Id': 'after-smuggling' })
    const deadline = Date.now() + 5_000
    while (!stevedore.logRecords().some(r => r.requestId === 'after-smuggling') && Date.now() < deadline) await new Promise(r => setTimeout(r, 20))
    const paths = stevedore.logRecords().flatMap(r => (typeof r.path === 'string' ? [r.path] : []))
    t.ok(paths.includes(`/v2/${image.repo}/manifests/v1`), 'the access log lists what ran')
    for (const path of hidden) t.notOk(paths.includes(path), `${path} was never executed`)
    t.notMatch(upstream.logs(), /smuggled/, 'nor asked of the upstream')
  })

  t.test('slow clients are cut; others are served meanwhile', async t => {
    let cut = false
    const both = Promise.all([dribbler, silent]).finally(() => (cut = true))
    let served = 0
    while (!cut && Date.now() - slowStarted < SLOW_CUT_MS + 10_000) {
      await assertPull(t, stevedore, image)
      served++
      await new Promise(r => setTimeout(r, 100))
    }
    const [slow, quiet] = await both
    t.ok(served > 0, `${served} more normal pulls served while the slow clients held on (besides every case above)`)
    t.ok(slow.bytesSent < dribbled.length, `the dribbler was cut after ${slow.bytesSent} of ${dribbled.length} bytes`)
    for (const [what, result] of [['dribbling', slow], ['silent', quiet]] as const) {
      const after = result.closedAt - slowStarted
      t.ok(after < SLOW_CUT_MS, `the ${what} client was cut after ${after} ms`)
      t.match(result.answer, /^(HTTP\/1\.1 408 Request Timeout\r\n|$)/, `the ${what} one got a 408 or nothing`)
    }
    await assertPull(t, stevedore, image)
  })

  t.test('nothing was written outside the storage root, nothing odd inside it', async t => {
    const after = await walk(dir)
    t.same(
      after.filter(p => !p.startsWith('deep/down/storage/')),
      before,
      'the test directory outside the storage root is unchanged',
    )
    const own = await walk(ownDir)
    t.same(own.filter(p => p !== 'config.yml' && p !== 'storage/'), [], "Stevedore's own directory holds its config only")
    const inside = after.filter(p => p.startsWith('deep/down/storage/')).map(p => p.slice('deep/down/storage/'.length))
    for (const path of inside) {
      t.ok(
        path.split('/').every(part => part === '' || (/^[A-Za-z0-9._-]+$/.test(part) && part !== '..' && part !== '.')),
        `${JSON.stringify(path)}: plain components only`,
      )
    }
    t.notOk(inside.some(p => /pwn3d|smuggled|%/i.test(p)), 'no trace of the payloads')
    const repos = inside.filter(p => p.endsWith('/_manifests/')).map(p => p.replace(/^docker\/registry\/v2\/repositories\//, '').replace(/\/_manifests\/$/, ''))
    t.same(repos, [image.repo], 'the one repository pulled, no other')
    t.notOk((await readdir(tmpdir())).some(name => /pwn3d/.test(name)), 'nothing named after a payload in the temp dir')
    t.notOk((await walk(dirname(root))).some(p => /pwn3d/.test(p)), 'nor next to the storage root')
  })

  t.test('the process is still up', async t => {
    t.doesNotThrow(() => process.kill(stevedore.pid, 0))
    t.notMatch(stevedore.stderr(), /uncaught|unhandled|TypeError|RangeError/i, 'no crash on stderr')
    t.notOk(stevedore.logRecords().some(r => r.level === 50 && r.msg === 'internal error'), 'no internal error logged')
  })
})

// ---- Authorization against a server that checks it ----

t.test('bogus Authorization against auth.htpasswd: 401 UNAUTHORIZED with a challenge', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const image = await pushImage(upstream.url)
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, (await runCommand('htpasswd', ['-nbBC', '4', 'alice', 'alice-pw'], { env: process.env })).stdout.trim() + '\n')
  const stevedore = await startStevedore(t, {
    config: {
      storage: { filesystem: { rootdirectory: join(dir, 'storage') } },
      proxy: { remoteurl: upstream.url },
      // Every case fails a login from this address: no lockout of the good one afterwards.
      auth: { htpasswd: { realm: 'hostile', path: htpasswd }, lockout: { attempts: 1000, window: '1m' } },
      access: [{ repositories: ['hostile/**'], users: ['alice'], actions: ['pull'] }],
    },
  })
  const good = { Authorization: `Basic ${b64('alice:alice-pw')}` }
  await assertPull(t, stevedore, image, good)
  const m = `/v2/${image.repo}/manifests/${image.tag}`
  const unauthorized = {
    status: [401],
    codes: ['UNAUTHORIZED'],
    check: (t: Test, res: RawResponse) => t.equal(header(res, 'www-authenticate'), 'Basic realm="hostile"', 'a Basic challenge'),
  }
  const list: Case[] = [
    { name: 'no Authorization', request: req(m), ...unauthorized },
    { name: 'an unknown scheme', request: req(m, ['Authorization: Pwn3d abc']), ...unauthorized },
    { name: 'Digest', request: req(m, ['Authorization: Digest username="alice"']), ...unauthorized },
    { name: 'Basic with bad base64', request: req(m, ['Authorization: Basic !!!not*base64!!!']), ...unauthorized },
    { name: 'Basic without a colon', request: req(m, [`Authorization: Basic ${b64('alice')}`]), ...unauthorized },
    { name: 'Basic with a wrong password', request: req(m, [`Authorization: Basic ${b64('alice:pwn3d')}`]), ...unauthorized },
    { name: 'Basic with control bytes', request: req(m, [`Authorization: Basic ${b64('al\x00ice:\x01')}`]), ...unauthorized },
    { name: 'Basic with a 2 KiB user name', request: req(m, [`Authorization: Basic ${b64(`${'a'.repeat(2048)}:x`)}`]), ...unauthorized },
    { name: 'Basic with a 10 KiB password', request: req(m, [`Authorization: Basic ${b64(`alice:${'p'.repeat(10_000)}`)}`]), ...unauthorized },
    { name: 'a 12 KiB Basic value', request: req(m, [`Authorization: Basic ${'QUFB'.repeat(3_000)}`]), ...unauthorized },
    { name: 'Bearer garbage', request: req(m, ['Authorization: Bearer a.b.c']), ...unauthorized },
    { name: 'high bytes', request: req(m, ['Authorization: Basic \xff\xfe']), ...unauthorized },
    { name: 'the base, with a wrong password', request: req('/v2/', [`Authorization: Basic ${b64('alice:nope')}`]), ...unauthorized },
    { name: 'HEAD with a wrong password', request: req(m, [`Authorization: Basic ${b64('alice:nope')}`], 'HEAD'), ...unauthorized, head: true },
  ]
  await runCases(t, stevedore, image, list, good)
  t.doesNotThrow(() => process.kill(stevedore.pid, 0), 'still up')
  t.notMatch(stevedore.logs(), /alice-pw|pwn3d/, 'no password in the log')
})
