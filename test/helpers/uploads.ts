/**
 * Raw pieces of the OCI push API (blob upload sessions, manifest PUTs,
 * deletes) and of the storage tree they write, for tests that look at each
 * step rather than at what skopeo makes of it.
 */
import { request } from 'node:http'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { distributionPaths } from './distribution-paths.js'

export const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)

export interface Answer {
  status: number
  headers: Headers
  body: Buffer
  /** errors[0].code of an OCI error body. */
  code?: string
  /** Every errors[].code of an OCI error body. */
  codes: string[]
}

/** A fetch whose answer is read whole, with the OCI error code when the body is one. */
export async function call(url: string | URL, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, init)
  const body = Buffer.from(await res.arrayBuffer())
  let codes: string[] = []
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown }[] }
    codes = (parsed.errors ?? []).map(e => String(e.code))
  } catch {
    // not JSON: a blob, or nothing
  }
  return { status: res.status, headers: res.headers, body, codes, ...(codes[0] === undefined ? {} : { code: codes[0] }) }
}

/** An error's code and message for an assertion's label. */
export const describe = (answer: Answer): string => `${answer.status} ${answer.body.toString('utf8').slice(0, 300)}`

/** The Location of an upload answer, resolved against the registry's URL. */
export function locationOf(registry: string, answer: Answer): URL {
  const location = answer.headers.get('location')
  if (location === null) throw new Error(`no Location in the answer: ${describe(answer)}`)
  return new URL(location, registry)
}

/** The session id: the last path segment of an upload Location (Distribution's upload UUID). */
export function uploadIdOf(location: URL): string {
  const id = location.pathname.split('/').pop()
  if (id === undefined || id === '') throw new Error(`no upload id in ${location.href}`)
  return id
}

/** `<root>/docker/registry/v2/repositories/<repo>/_uploads/<id>`. */
export const uploadDir = (root: string, repo: string, id: string): string => join(distributionPaths.repository(root, repo), '_uploads', id)

/** The same path and query on another base URL: a session's Location after the server moved to a new port. */
export const onBase = (location: URL, base: string): URL => new URL(`${location.pathname}${location.search}`, base)

/** The Location with `digest` added: where a session is finished with PUT. */
export function withDigest(location: URL, digest: string): URL {
  const url = new URL(location.href)
  url.searchParams.set('digest', digest)
  return url
}

export const startUpload = (registry: string, repo: string, query = ''): Promise<Answer> =>
  call(`${registry}/v2/${repo}/blobs/uploads/${query}`, { method: 'POST' })

/** PATCH of one chunk with `Content-Range: <start>-<end>` (inclusive), as the OCI spec's chunked upload. */
export const patchChunk = (location: URL, chunk: Buffer, start: number): Promise<Answer> =>
  call(location, {
    method: 'PATCH',
    body: chunk,
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${start + chunk.length - 1}` },
  })

/** Every blob digest committed under `<root>/docker/registry/v2/blobs/`. */
export async function committedBlobs(root: string): Promise<string[]> {
  const out: string[] = []
  const base = join(root, 'docker/registry/v2/blobs')
  for (const algorithm of await readdir(base).catch(() => [])) {
    for (const prefix of await readdir(join(base, algorithm)).catch(() => [])) {
      for (const hex of await readdir(join(base, algorithm, prefix)).catch(() => [])) {
        if (await exists(join(base, algorithm, prefix, hex, 'data'))) out.push(`${algorithm}:${hex}`)
      }
    }
  }
  return out.sort()
}

export interface CutResult {
  /** Bytes written before the request was destroyed. */
  sent: number
  /** The status, when the server answered before the cut (it should not have). */
  status?: number
}

/**
 * A PATCH announcing `body.length` bytes that sends only the first `sendBytes`
 * and then destroys the socket: a client that went away mid-upload.
 */
export function cutPatch(location: URL, body: Buffer, sendBytes: number): Promise<CutResult> {
  return new Promise((resolve, reject) => {
    let status: number | undefined
    const req = request(location, {
      method: 'PATCH',
      agent: false,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(body.length) },
    }, res => {
      status = res.statusCode
      res.resume()
    })
    req.on('error', () => resolve(status === undefined ? { sent: sendBytes } : { sent: sendBytes, status }))
    req.write(body.subarray(0, sendBytes), err => {
      if (err) {
        reject(err)
        return
      }
      // Give the bytes time to reach the server's handler before the cut.
      setTimeout(() => {
        req.destroy()
        resolve(status === undefined ? { sent: sendBytes } : { sent: sendBytes, status })
      }, 200)
    })
  })
}
