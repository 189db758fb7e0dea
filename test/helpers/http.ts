/** A raw HTTP GET that reports whether the body arrived whole, for tests of cut responses. */
import { request } from 'node:http'
import { createHash } from 'node:crypto'

export interface RawReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** Bytes received before the response ended or broke. */
  received: number
  sha256: string
  body: Buffer
  /** True when the response ended normally with every announced byte. */
  complete: boolean
  error?: string
}

export function rawGet(url: string, headers: Record<string, string> = {}, keepBody = true): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, res => {
      const hash = createHash('sha256')
      const chunks: Buffer[] = []
      let received = 0
      let settled = false
      const finish = (error?: string): void => {
        if (settled) return
        settled = true
        const announced = Number(res.headers['content-length'] ?? received)
        const reply: RawReply = {
          status: res.statusCode ?? 0,
          headers: res.headers,
          received,
          sha256: `sha256:${hash.digest('hex')}`,
          body: Buffer.concat(chunks),
          complete: error === undefined && res.complete && received === announced,
        }
        if (error !== undefined) reply.error = error
        resolve(reply)
      }
      res.on('data', (chunk: Buffer) => {
        received += chunk.length
        hash.update(chunk)
        if (keepBody) chunks.push(chunk)
      })
      res.on('end', () => finish())
      res.on('error', err => finish(err.message))
      res.on('aborted', () => finish('aborted'))
      res.on('close', () => finish(res.complete ? undefined : 'closed early'))
    })
    req.on('error', reject)
    req.end()
  })
}

export interface Reply {
  status: number
  headers: import('node:http').IncomingHttpHeaders
  body: Buffer
}

/**
 * A GET or HEAD with exactly the Accept header given (none when undefined):
 * node:http rather than fetch, which adds `Accept: *\/*` of its own.
 */
export function send(method: 'GET' | 'HEAD', url: string, accept: string | undefined): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false, headers: accept === undefined ? {} : { Accept: accept } }, res => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}
