/**
 * The conformance suite's view of HTTP: plain fetch with redirects left to
 * the caller, every answer read whole, and the checks every category makes
 * of an OCI error body. Only the spec's wording decides what fails here; the
 * quoted sentences are from distribution-spec v1.1 spec.md.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Test } from 'tap'

/** The registry and the repositories a run may write. */
export interface Target {
  /** http://host:port, no trailing slash. */
  url: string
  /** A repository the suite may push to; it is written by every category. */
  repo: string
  /** A second pushable repository, the `from` of cross-repository mounts. */
  crossRepo: string
  /** Whether DELETE of manifests, tags and blobs is enabled. */
  deleteEnabled: boolean
}

export interface Answer {
  status: number
  headers: Headers
  body: Buffer
  /** The body parsed as JSON, when it is JSON. */
  json?: unknown
  /** errors[].code of an OCI error body (empty when it is not one). */
  codes: string[]
}

/** §Error Codes: "The `code` field MUST be one of the following". */
export const ERROR_CODES = new Set([
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS',
  // §Legacy Docker support error codes: "The client MAY encounter error codes targeting Docker schema1 manifests, such as `TAG_INVALID`, or `MANIFEST_UNVERIFIED`."
  'TAG_INVALID',
  'MANIFEST_UNVERIFIED',
])

export const sha256 = (data: Buffer | string): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

/** Bytes no other run or category shares, so digests never collide across steps. */
export const uniqueBytes = (label: string, size = 64): Buffer => {
  const head = Buffer.from(`${label}:`)
  return Buffer.concat([head, randomBytes(Math.max(0, size - head.length))]).subarray(0, size)
}

/** A sha256 digest of content that was never pushed. */
export const absentDigest = (): string => sha256(randomBytes(32))

/** A request whose answer is read whole; a connection the server breaks is status 0, so checks fail instead of throwing. */
export async function call(url: string | URL, init: RequestInit = {}): Promise<Answer> {
  let res: Response
  let body: Buffer
  try {
    res = await fetch(url, { redirect: 'manual', ...init })
    body = Buffer.from(await res.arrayBuffer())
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause
    return { status: 0, headers: new Headers(), body: Buffer.from(`${String(error)} (${String(cause)})`), codes: [] }
  }
  let json: unknown
  try {
    json = body.length > 0 ? JSON.parse(body.toString('utf8')) : undefined
  } catch {
    json = undefined
  }
  const errors = (json as { errors?: unknown } | undefined)?.errors
  const codes = Array.isArray(errors) ? errors.map(e => String((e as { code?: unknown }).code)) : []
  return { status: res.status, headers: res.headers, body, codes, ...(json === undefined ? {} : { json }) }
}

/** One line for an assertion's diagnostics: what came back. */
export const seen = (a: Answer): string => `${a.status} ${a.body.toString('utf8').slice(0, 300)}`

/** A Location header resolved against the registry (the spec allows relative and absolute ones). */
export function location(base: string, a: Answer): URL | undefined {
  const value = a.headers.get('location')
  return value === null || value === '' ? undefined : new URL(value, base)
}

export function withQuery(url: URL, query: Record<string, string>): URL {
  const out = new URL(url.href)
  for (const [k, v] of Object.entries(query)) out.searchParams.set(k, v)
  return out
}

/**
 * §Error Codes: "A `4XX` response code from the registry MAY return a body in
 * any format. If the response body is in JSON format, it MUST have the
 * following format" — so a JSON body is held to the format and to the code
 * that names the condition; a body in another format only earns a comment.
 */
export function assertErrorBody(t: Test, a: Answer, expected: string | string[] | undefined, label: string): void {
  const wanted = expected === undefined ? [] : Array.isArray(expected) ? expected : [expected]
  if (a.json === undefined) {
    t.comment(`${label}: the ${a.status} body is not JSON (the spec allows any format): ${JSON.stringify(a.body.toString('utf8').slice(0, 120))}`)
    return
  }
  const errors = (a.json as { errors?: unknown }).errors
  if (!Array.isArray(errors) || errors.length === 0) {
    t.fail(`${label}: a JSON error body has a non-empty "errors" array`, { found: a.json })
    return
  }
  for (const e of errors as { code?: unknown; message?: unknown }[]) {
    t.match(e.code, /^[A-Z_]+$/, `${label}: code is uppercase letters and underscores`)
    t.ok(ERROR_CODES.has(String(e.code)), `${label}: code ${String(e.code)} is one of the spec's codes`)
    if (e.message !== undefined) t.type(e.message, 'string', `${label}: message is a string`)
  }
  if (wanted.length > 0) t.ok(a.codes.some(c => wanted.includes(c)), `${label}: errors name ${wanted.join(' or ')}`, { found: a.codes })
}

/**
 * A header the spec calls OPTIONAL or SHOULD: when present it MUST hold the
 * value (Docker-Content-Digest, Content-Length); when absent, a comment.
 */
export function optionalHeader(t: Test, a: Answer, name: string, value: string, label: string): void {
  const got = a.headers.get(name)
  if (got === null) t.comment(`${label}: no ${name} header (SHOULD)`)
  else t.equal(got, value, `${label}: ${name} is ${value}`)
}

/** POST then PUT, the monolithic upload every category's setup uses; asserts each step. */
export async function pushBlob(t: Test, base: string, repo: string, data: Buffer, label = 'blob'): Promise<string> {
  const digest = sha256(data)
  const post = await call(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST', body: Buffer.alloc(0) })
  const loc = location(base, post)
  if (post.status !== 202 || loc === undefined) {
    t.fail(`setup: POST upload for ${label} answers 202 with a Location`, { found: seen(post) })
    return digest
  }
  const put = await call(withQuery(loc, { digest }), {
    method: 'PUT',
    body: data,
    headers: { 'Content-Type': 'application/octet-stream' },
  })
  if (put.status !== 201) t.fail(`setup: PUT of ${label} answers 201`, { found: seen(put) })
  return digest
}

export interface Pushed {
  digest: string
  size: number
  bytes: Buffer
  mediaType: string
}

/** Serializes with tabs, as the Go suite does, so a registry that re-encodes is caught by the byte checks. */
export function encode(doc: unknown, mediaType: string): Pushed {
  const bytes = Buffer.from(JSON.stringify(doc, null, '\t'))
  return { digest: sha256(bytes), size: bytes.length, bytes, mediaType }
}

export const putManifest = (base: string, repo: string, reference: string, m: Pushed): Promise<Answer> =>
  call(`${base}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    body: m.bytes,
    headers: { 'Content-Type': m.mediaType },
  })

export async function pushManifest(t: Test, base: string, repo: string, reference: string, m: Pushed, label: string): Promise<Answer> {
  const put = await putManifest(base, repo, reference, m)
  if (put.status !== 201) t.fail(`setup: PUT manifest ${label} answers 201`, { found: seen(put) })
  return put
}
