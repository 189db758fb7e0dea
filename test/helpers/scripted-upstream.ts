/**
 * An Upstream (the interface src/proxy talks to) scripted by the test, and a
 * proxy assembled around it on a temp directory: for driving the proxy's
 * tricky states directly (a fill joined by a second repository, a failing
 * disk, shutdown mid-fill) without a network in between.
 */
import { createHash } from 'node:crypto'
import { PassThrough, Readable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { MetadataStore } from '../../src/metadata/store.js'
import { ProxyCaches, ProxyContext } from '../../src/proxy/context.js'
import { FillRegistry, type BlobFill, type FillOptions } from '../../src/proxy/fill.js'
import { ProxyRegistry } from '../../src/proxy/registry.js'
import type { UpstreamRequest, UpstreamResponse } from '../../src/upstream/client.js'
import { RemoteRegistry, type UpstreamTransport } from '../../src/upstream/remote.js'
import { parseDigest, type Digest } from '../../src/registry/digest.js'
import type { RepositoryName } from '../../src/registry/names.js'
import type { BlobStore } from '../../src/storage/blobs.js'
import type { StorageDriver } from '../../src/storage/driver.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { LocalRegistry } from '../../src/storage/local.js'
import { seededBytes } from './files.js'
import type { Teardown } from './tmp.js'

export type Script = (req: UpstreamRequest, n: number) => Promise<UpstreamResponse> | UpstreamResponse

export class ScriptedUpstream implements UpstreamTransport {
  readonly name = 'scripted'
  readonly requests: UpstreamRequest[] = []
  constructor(public script: Script) {}
  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    this.requests.push(req)
    return this.script(req, this.requests.length)
  }
  count(method: string, kind: UpstreamRequest['kind']): number {
    return this.requests.filter(r => r.method === method && r.kind === kind).length
  }
  async close(): Promise<void> {}
}

export function reply(status: number, headers: Record<string, string> = {}, body: Readable | Buffer | string = ''): UpstreamResponse {
  const stream = body instanceof Readable ? body : Readable.from(body === '' ? [] : [Buffer.from(body)])
  return { status, headers, body: stream, url: 'http://scripted.invalid/' }
}

export function blobReply(content: Buffer, body: Readable = Readable.from([content])): UpstreamResponse {
  return reply(200, { 'content-length': String(content.length) }, body)
}

/** A body that sends `head`, then nothing until `rest()`, or an error with `fail()`. */
export function heldBody(head: Buffer): { body: PassThrough; rest(data: Buffer): void; fail(err: Error): void } {
  const body = new PassThrough()
  body.write(head)
  return { body, rest: data => body.end(data), fail: err => body.destroy(err) }
}

export function digestOf(content: Buffer): Digest {
  return parseDigest(`sha256:${createHash('sha256').update(content).digest('hex')}`)
}

/** Deterministic bytes. */
export const bytes = seededBytes

export interface ProxyFixture {
  root: string
  driver: StorageDriver
  local: LocalRegistry
  fills: FillRegistry
  ctx: ProxyContext
  registry: ProxyRegistry
  remote: RemoteRegistry
  log: Logger
  /** Starts (or joins) a fill of `digest` for `repository`, as ProxyBlobs does. */
  startFill(repository: RepositoryName, digest: Digest): Promise<BlobFill | undefined>
}

export interface FixtureOptions {
  fill?: Partial<Omit<FillOptions, 'log'>>
  tagTtlMs?: number
  /** Replaces the storage driver (to inject failures); given the real one. */
  driver?: (real: FilesystemDriver) => StorageDriver
  /** Replaces the blob store the fills write through; given the real one. */
  blobs?: (real: BlobStore) => BlobStore
  now?: () => number
  /** A metadata store shared with another fixture (two replicas); default a fresh one. */
  metadata?: MetadataStore
}

export function proxyFixture(t: Teardown, root: string, upstream: UpstreamTransport, options: FixtureOptions = {}): ProxyFixture {
  const real = new FilesystemDriver(root)
  const driver = options.driver?.(real) ?? real
  const local = new LocalRegistry(driver)
  const log = pino({ level: process.env.STEVEDORE_TEST_LOG ?? 'silent' })
  const fills = new FillRegistry(driver, options.blobs?.(local.storage.blobs) ?? local.storage.blobs, {
    maxResumes: 3,
    resumeBudgetMs: 5_000,
    followerWaitMs: 5_000,
    ...options.fill,
    log,
  })
  const metadata = options.metadata ?? new MetadataStore(options.now === undefined ? {} : { now: options.now })
  const remote = new RemoteRegistry(upstream)
  const ctx = new ProxyContext(
    local,
    remote,
    '',
    metadata,
    fills,
    { tagTtlMs: options.tagTtlMs ?? 60_000, blobConfirmTtlMs: 60_000 },
    log,
    new ProxyCaches({ manifests: 100, manifestBytes: 1024 * 1024, descriptors: 1000 }, 60_000),
  )
  t.teardown(() => fills.close())
  const startFill = (repository: RepositoryName, digest: Digest): Promise<BlobFill | undefined> =>
    fills.start(remote.repository(repository).blobs, upstream.name, repository, digest, async () => undefined)
  return { root, driver, local, fills, ctx, registry: new ProxyRegistry(ctx), remote, log, startFill }
}

/** Reads a whole BlobContent's file (or stream) into memory. */
export async function readAll(content: { file?: { read(b: Buffer, l: number, p: number): Promise<number>; close(): Promise<void> }; stream?: Readable; descriptor: { size: number } }): Promise<Buffer> {
  if (content.stream !== undefined) {
    const chunks: Buffer[] = []
    for await (const chunk of content.stream) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks)
  }
  const file = content.file
  if (file === undefined) throw new Error('no body')
  const out = Buffer.alloc(content.descriptor.size)
  let position = 0
  try {
    while (position < out.length) {
      const n = await file.read(out.subarray(position), out.length - position, position)
      if (n === 0) break
      position += n
    }
  } finally {
    await file.close()
  }
  return out.subarray(0, position)
}
