// Request bodies: Content-Range of a blob chunk (<start>-<end>, bytes=…),
// refused when malformed or when it disagrees with Content-Length; a manifest
// body read whole up to a bound, refused early when it says it is larger.
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import t from 'tap'
import { RegistryError } from '../../src/registry/errors.js'
import { chunkOf, hasBody, readBody } from '../../src/http/body.js'

/** A request as the handlers see it: headers, and a body to iterate. */
const message = (headers: IncomingHttpHeaders, body: AsyncIterable<Buffer> = Readable.from([])): IncomingMessage =>
  // Not wrapped in a Readable: one would read ahead, and the tests count what is pulled.
  ({ headers, [Symbol.asyncIterator]: () => body[Symbol.asyncIterator]() }) as unknown as IncomingMessage

const chunkOutcome = (headers: IncomingHttpHeaders): { start?: number; length?: number } | string => {
  try {
    const chunk = chunkOf(message(headers))
    return { ...(chunk.start === undefined ? {} : { start: chunk.start }), ...(chunk.length === undefined ? {} : { length: chunk.length }) }
  } catch (err) {
    if (err instanceof RegistryError) return err.code
    throw err
  }
}

t.test('Content-Range table', async t => {
  const table: [string | undefined, string | undefined, { start?: number; length?: number } | string][] = [
    [undefined, undefined, {}],
    [undefined, '10', { length: 10 }],
    ['0-9', '10', { start: 0, length: 10 }],
    ['0-9', undefined, { start: 0 }],
    ['100-199', '100', { start: 100, length: 100 }],
    ['7-7', '1', { start: 7, length: 1 }],
    ['bytes=0-9', '10', { start: 0, length: 10 }],
    ['bytes 0-9', '10', { start: 0, length: 10 }],
    ['  5-9  ', '5', { start: 5, length: 5 }],
    ['999999999999999-999999999999999', '1', { start: 999999999999999, length: 1 }],
    ['9-0', undefined, 'RANGE_INVALID'],
    ['10-9', '0', 'RANGE_INVALID'],
    ['0-', undefined, 'RANGE_INVALID'],
    ['-9', undefined, 'RANGE_INVALID'],
    ['a-b', undefined, 'RANGE_INVALID'],
    ['', undefined, 'RANGE_INVALID'],
    ['0-9,10-19', undefined, 'RANGE_INVALID'],
    ['bytes=0-9/100', undefined, 'RANGE_INVALID'],
    ['items=0-9', undefined, 'RANGE_INVALID'],
    ['1234567890123456-1234567890123457', undefined, 'RANGE_INVALID'],
    ['0-9', '9', 'SIZE_INVALID'],
    ['0-9', '11', 'SIZE_INVALID'],
    ['bytes=10-19', '0', 'SIZE_INVALID'],
  ]
  for (const [range, length, expected] of table) {
    const headers: IncomingHttpHeaders = {}
    if (range !== undefined) headers['content-range'] = range
    if (length !== undefined) headers['content-length'] = length
    t.same(chunkOutcome(headers), expected, `Content-Range ${JSON.stringify(range)}, Content-Length ${String(length)}`)
  }
})

t.test('a chunk hands the body on as it is', async t => {
  const req = message({ 'content-range': '0-2', 'content-length': '3' }, Readable.from([Buffer.from('abc')]))
  const chunk = chunkOf(req)
  t.equal(chunk.body, req, 'the request itself, unread')
  const parts: Buffer[] = []
  for await (const part of chunk.body) parts.push(Buffer.from(part))
  t.equal(Buffer.concat(parts).toString(), 'abc')
  const err = (() => {
    try {
      chunkOf(message({ 'content-range': `${'x'.repeat(200)}` }))
    } catch (e) {
      return e
    }
  })()
  t.match(err, { code: 'RANGE_INVALID' })
  t.equal(((err as RegistryError).detail as { range: string }).range.length, 64, 'the detail quotes at most 64 characters of the header')
})

t.test('hasBody', async t => {
  t.equal(hasBody(message({})), false, 'no length, not chunked')
  t.equal(hasBody(message({ 'content-length': '0' })), false)
  t.equal(hasBody(message({ 'content-length': '5' })), true)
  t.equal(hasBody(message({ 'transfer-encoding': 'chunked' })), true)
})

t.test('readBody', async t => {
  let pulled = 0
  async function* parts(n: number, size: number): AsyncGenerator<Buffer> {
    for (let i = 0; i < n; i++) {
      pulled += 1
      yield Buffer.alloc(size, 0x61 + i)
    }
  }
  t.equal((await readBody(message({ 'content-length': '6' }, parts(3, 2)), 6, 'manifest')).toString(), 'aabbcc', 'exactly the bound')
  t.equal((await readBody(message({}, parts(2, 3)), 10, 'manifest')).toString(), 'aaabbb', 'chunked, under the bound')
  t.equal((await readBody(message({}, parts(0, 1)), 10, 'manifest')).length, 0, 'empty')

  pulled = 0
  const declared = await readBody(message({ 'content-length': '11' }, parts(3, 2)), 10, 'manifest').catch((e: unknown) => e)
  t.match(declared, { code: 'MANIFEST_INVALID', detail: { limit: 10 }, message: /manifest invalid: larger than 10 bytes/ })
  t.equal(pulled, 0, 'a body that says it is too large is not read')

  pulled = 0
  const streamed = await readBody(message({}, parts(100, 4)), 10, 'referrer').catch((e: unknown) => e)
  t.match(streamed, { code: 'MANIFEST_INVALID', message: /^referrer invalid/ })
  t.equal(pulled, 3, 'a body without a length is refused as soon as it passes the bound')
})

t.test('readBody on a real request', async t => {
  const answers: string[] = []
  const server = createServer((req, res) => {
    readBody(req, 8, 'manifest').then(
      body => res.end(`ok ${body.toString()}`),
      (err: unknown) => res.end(err instanceof RegistryError ? err.code : 'other'),
    )
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  const { port } = server.address() as AddressInfo
  const post = (body: string, chunked: boolean): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = request({ port, host: '127.0.0.1', method: 'PUT', path: '/', headers: chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': Buffer.byteLength(body) } }, res => {
        const parts: Buffer[] = []
        res.on('data', (part: Buffer) => parts.push(part))
        res.on('end', () => resolve(Buffer.concat(parts).toString()))
      })
      req.on('error', reject)
      if (chunked) for (const c of body) req.write(c)
      req.end(chunked ? undefined : body)
    })
  answers.push(await post('12345678', false), await post('123456789', false), await post('1234', true), await post('123456789', true))
  t.same(answers, ['ok 12345678', 'MANIFEST_INVALID', 'ok 1234', 'MANIFEST_INVALID'])
})
