// storage.quota in process, over generated trees and an injected clock:
// eviction order by last pull, pins, shared blobs, index children, the size
// total through fills and evictions (walked for a memory store, restored from
// a file store), the too-large refusal, batched pull writes, blobs being read,
// the sweep lease; and proxy.ttl on per-(repository, manifest) pull times.
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { KeyvFile } from 'keyv-file'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { ExpirySweeper } from '../../src/lifecycle/expiry.js'
import { acquireLease } from '../../src/lifecycle/lease.js'
import { QuotaKeeper, type QuotaOptions } from '../../src/lifecycle/quota.js'
import { AccessIndex } from '../../src/metadata/access.js'
import { MetadataStore } from '../../src/metadata/store.js'
import { ProxyCaches, ProxyContext } from '../../src/proxy/context.js'
import { FillRegistry } from '../../src/proxy/fill.js'
import { ProxyRegistry } from '../../src/proxy/registry.js'
import { type Digest, parseDigest } from '../../src/registry/digest.js'
import { RegistryError } from '../../src/registry/errors.js'
import type { RepositoryName, Tag } from '../../src/registry/names.js'
import { parseReference } from '../../src/registry/reference.js'
import type { StorageDriver } from '../../src/storage/driver.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { LocalRegistry, LocalStorage } from '../../src/storage/local.js'
import { RemoteRegistry } from '../../src/upstream/remote.js'
import { listFiles } from '../helpers/files.js'
import { blobReply, bytes, digestOf, readAll, reply, ScriptedUpstream } from '../helpers/scripted-upstream.js'

const log = pino({ level: process.env.STEVEDORE_TEST_LOG ?? 'silent' })
const V2 = 'docker/registry/v2'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const HOUR = 3_600_000

const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)
const blobPath = (root: string, d: Digest): string => join(root, V2, 'blobs', d.algorithm, d.hex.slice(0, 2), d.hex, 'data')
const revisionPath = (root: string, repo: string, d: Digest): string => join(root, V2, 'repositories', repo, '_manifests/revisions', d.algorithm, d.hex)

/** Blob bytes on disk: every file under blobs/ (one an eviction removes while this looks counts 0). */
async function blobBytes(root: string): Promise<number> {
  let total = 0
  for (const file of await listFiles(join(root, V2, 'blobs'))) total += (await stat(join(root, V2, 'blobs', file)).catch(() => ({ size: 0 }))).size
  return total
}

interface Image {
  repo: string
  manifest: Digest
  /** Config and layers. */
  blobs: Digest[]
  payload: Buffer
  /** Bytes only this image holds: its manifest, config and unshared layers. */
  own: number
}

/** Writes an image straight into storage: blobs linked in the repository, the manifest a revision, tagged. */
async function putImage(storage: LocalStorage, repo: string, tag: string | undefined, seed: string, layerSizes: number[], shared: Buffer[] = []): Promise<Image> {
  const name = repo as RepositoryName
  const config = Buffer.from(JSON.stringify({ seed }))
  const own = [config, ...layerSizes.map((size, i) => bytes(`${seed}/layer/${i}`, size))]
  const descriptors = []
  for (const content of [...own, ...shared]) {
    const d = await storage.blobs.put(content)
    await storage.layers.link(name, d.digest)
    descriptors.push(d)
  }
  const [first, ...layers] = descriptors
  const payload = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: first?.digest.value, size: first?.size },
    layers: layers.map(d => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: d.digest.value, size: d.size })),
  }))
  const m = await storage.blobs.put(payload)
  await storage.revisions.link(name, m.digest)
  if (tag !== undefined) await storage.tags.tag(name, tag as Tag, m.digest)
  return { repo, manifest: m.digest, blobs: descriptors.map(d => d.digest), payload, own: payload.length + own.reduce((n, b) => n + b.length, 0) }
}

async function putIndex(storage: LocalStorage, repo: string, tag: string, children: Image[]): Promise<Digest> {
  const payload = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: children.map((c, i) => ({ mediaType: OCI_MANIFEST, digest: c.manifest.value, size: c.payload.length, platform: { os: 'linux', architecture: `arch${i}` } })),
  }))
  const d = await storage.blobs.put(payload)
  await storage.revisions.link(repo as RepositoryName, d.digest)
  await storage.tags.tag(repo as RepositoryName, tag as Tag, d.digest)
  return d.digest
}

type KeeperOptions = Partial<QuotaOptions> & Pick<QuotaOptions, 'maxSize' | 'lowWater'>

function keeperFor(t: Test, storage: LocalStorage, access: AccessIndex, options: KeeperOptions, onRemoved?: () => void): QuotaKeeper {
  const keeper = new QuotaKeeper(storage, access, { pin: [], persistent: false, auto: false, lease: { settleMs: 1 }, flushIntervalMs: 60_000, ...options }, log, onRemoved)
  t.teardown(() => keeper.close())
  return keeper
}

t.test('least recently pulled first; pinned repositories and tags stay; a blob another kept image links stays', async t => {
  const root = t.testdir()
  const storage = new LocalStorage(new FilesystemDriver(root))
  const shared = bytes('shared base layer', 20_000)
  const pinnedRepo = await putImage(storage, 'keep/app', 'v1', 'keep', [10_000])
  const pinnedTag = await putImage(storage, 'lib/pg', '16.1', 'pg', [10_000])
  const one = await putImage(storage, 'lib/one', 'v1', 'one', [10_000], [shared])
  const two = await putImage(storage, 'lib/two', 'v1', 'two', [10_000], [shared])
  const three = await putImage(storage, 'lib/three', 'v1', 'three', [10_000])
  const clock = 1_000_000
  const access = new AccessIndex({ now: () => clock })
  const all = await blobBytes(root)
  const keeper = keeperFor(t, storage, access, { maxSize: all - 1, lowWater: all - one.own - three.own, pin: ['keep/**', 'lib/pg:16*'] })
  const started = await keeper.start()
  t.same([started.source, started.bytes, started.manifestsSeeded], ['walk', all, 5], 'a memory store: counted by one walk, every manifest seeded')

  // Pull order: keep/app, lib/pg, lib/one, lib/three, lib/two (newest).
  for (const [i, image] of [pinnedRepo, pinnedTag, one, three, two].entries()) access.record(image.repo, image.manifest.value, clock + (i + 1) * 1000)
  const report = await keeper.evict()
  t.ok(report)
  t.equal(report?.imagesEvicted, 2, 'two images evicted')
  t.equal(report?.skippedPinned, 2, 'the two older pinned images were skipped')
  t.notOk(await exists(revisionPath(root, 'lib/one', one.manifest)), 'lib/one (least recently pulled, unpinned) is gone')
  t.notOk(await exists(revisionPath(root, 'lib/three', three.manifest)), 'then lib/three')
  t.ok(await exists(revisionPath(root, 'lib/two', two.manifest)), 'lib/two, pulled last, stays')
  t.notOk(await exists(join(root, V2, 'repositories/lib/one/_manifests/tags/v1')), 'the evicted tag went with its manifest')
  t.notOk(await exists(join(root, V2, 'repositories/lib/one/_layers', 'sha256', digestOf(shared).hex)), 'lib/one\'s link to the shared layer went')
  t.ok(await exists(blobPath(root, digestOf(shared))), 'the shared layer\'s data stays: lib/two links it')
  for (const d of [one.manifest, ...one.blobs.slice(0, 2), three.manifest, ...three.blobs]) t.notOk(await exists(blobPath(root, d)), `${d.hex.slice(0, 12)} deleted`)
  for (const image of [pinnedRepo, pinnedTag, two]) for (const d of [image.manifest, ...image.blobs]) t.ok(await exists(blobPath(root, d)))
  t.equal(keeper.total, await blobBytes(root), 'the total follows the deletions')
  t.ok(keeper.total <= all - one.own - three.own)
  t.equal(report?.stopped, 'target')
})

t.test('an index goes with its children, a child listed by a kept index stays, a child pulled later keeps its index', async t => {
  const root = t.testdir()
  const storage = new LocalStorage(new FilesystemDriver(root))
  const c1 = await putImage(storage, 'lib/multi', undefined, 'c1', [5000])
  const c2 = await putImage(storage, 'lib/multi', undefined, 'c2', [5000])
  const c3 = await putImage(storage, 'lib/multi', undefined, 'c3', [5000])
  const i1 = await putIndex(storage, 'lib/multi', 'v1', [c1, c2])
  const i2 = await putIndex(storage, 'lib/multi', 'v2', [c2, c3])
  const solo = await putImage(storage, 'lib/solo', 'v1', 'solo', [5000])
  const clock = 5_000_000
  const access = new AccessIndex({ now: () => clock })
  const all = await blobBytes(root)
  const keeper = keeperFor(t, storage, access, { maxSize: all, lowWater: all - 1 })
  await keeper.start()
  access.record('lib/multi', c1.manifest.value, clock + 1000) // the child pulled with its index, a moment earlier
  access.record('lib/multi', i1.value, clock + 1001)
  access.record('lib/multi', i2.value, clock + 1500)
  access.record('lib/multi', c3.manifest.value, clock + 1500)
  access.record('lib/solo', solo.manifest.value, clock + 2000)

  const report = await keeper.evict()
  t.equal(report?.imagesEvicted, 1)
  t.notOk(await exists(revisionPath(root, 'lib/multi', i1)), 'the old index went')
  t.notOk(await exists(revisionPath(root, 'lib/multi', c1.manifest)), 'with its child')
  for (const d of c1.blobs) t.notOk(await exists(blobPath(root, d)), 'and the child\'s blobs')
  t.ok(await exists(revisionPath(root, 'lib/multi', c2.manifest)), 'a child the kept index lists stays')
  for (const d of c2.blobs) t.ok(await exists(blobPath(root, d)))
  t.notOk(await exists(join(root, V2, 'repositories/lib/multi/_manifests/tags/v1')), 'the old index\'s tag went')
  t.ok(await exists(join(root, V2, 'repositories/lib/multi/_manifests/tags/v2')))
  t.ok(await exists(revisionPath(root, 'lib/solo', solo.manifest)), 'not evicted beyond the target')

  // Now the kept index is the oldest by its own pull, but its child was pulled since: solo goes first.
  t.ok(await exists(revisionPath(root, 'lib/multi', i2)))
  access.record('lib/multi', c3.manifest.value, clock + 9000)
  const next = await keeper.evict(keeper.total - 1)
  t.equal(next?.imagesEvicted, 1)
  t.ok(await exists(revisionPath(root, 'lib/multi', i2)), 'the index whose child was pulled later stays')
  t.notOk(await exists(revisionPath(root, 'lib/solo', solo.manifest)), 'the image pulled longer ago went instead')
  t.equal(keeper.total, await blobBytes(root))
})

interface World {
  tags: Map<string, string>
  manifests: Map<string, Buffer>
  blobs: Map<string, Buffer>
}

/** An upstream serving images (OCI manifests by tag or digest, blobs by digest) from memory. */
function worldUpstream(world: Map<string, World>): ScriptedUpstream {
  return new ScriptedUpstream(req => {
    const repo = world.get(req.repository)
    if (repo === undefined) return reply(404, {}, '{"errors":[{"code":"NAME_UNKNOWN"}]}')
    if (req.kind === 'manifests') {
      const digest = repo.tags.get(req.reference) ?? req.reference
      const payload = repo.manifests.get(digest)
      if (payload === undefined) return reply(404, {}, '{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
      const headers = { 'content-type': OCI_MANIFEST, 'docker-content-digest': digest, 'content-length': String(payload.length) }
      return reply(200, headers, req.method === 'HEAD' ? '' : payload)
    }
    const blob = repo.blobs.get(req.reference)
    if (blob === undefined) return reply(404, {}, '{"errors":[{"code":"BLOB_UNKNOWN"}]}')
    return req.method === 'HEAD' ? reply(200, { 'content-length': String(blob.length) }) : blobReply(blob)
  })
}

function addImage(world: Map<string, World>, repo: string, tag: string, seed: string, layerSizes: number[]): { manifest: Digest; blobs: Digest[]; bytes: number } {
  const entry = world.get(repo) ?? { tags: new Map(), manifests: new Map(), blobs: new Map() }
  world.set(repo, entry)
  const config = Buffer.from(JSON.stringify({ seed }))
  const layers = layerSizes.map((size, i) => bytes(`${seed}/${i}`, size))
  for (const b of [config, ...layers]) entry.blobs.set(digestOf(b).value, b)
  const payload = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config).value, size: config.length },
    layers: layers.map(l => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(l).value, size: l.length })),
  }))
  const manifest = digestOf(payload)
  entry.manifests.set(manifest.value, payload)
  entry.tags.set(tag, manifest.value)
  return { manifest, blobs: [config, ...layers].map(digestOf), bytes: payload.length + config.length + layers.reduce((n, l) => n + l.length, 0) }
}

interface Fixture {
  root: string
  registry: ProxyRegistry
  keeper: QuotaKeeper
  access: AccessIndex
  upstream: ScriptedUpstream
  pull(repo: string, tag: string): Promise<void>
}

/** The proxy wired as app.ts wires it, around a scripted upstream, with storage.quota. */
function quotaProxy(t: Test, upstream: ScriptedUpstream, options: KeeperOptions & { now?: () => number; accessStore?: Map<string, unknown> }): Fixture {
  const root = t.testdir()
  const driver = new FilesystemDriver(root)
  const local = new LocalRegistry(driver)
  const now = options.now ?? Date.now
  const access = new AccessIndex({ now, ...(options.accessStore === undefined ? {} : { store: options.accessStore }) })
  const caches = new ProxyCaches({ manifests: 100, manifestBytes: 1024 * 1024, descriptors: 1000 }, 60_000)
  const keeper = keeperFor(t, local.storage, access, options, () => caches.clear())
  const fills = new FillRegistry(driver, local.storage.blobs, { maxResumes: 3, resumeBudgetMs: 5_000, followerWaitMs: 5_000, log, quota: keeper })
  t.teardown(() => fills.close())
  const ctx = new ProxyContext(local, new RemoteRegistry(upstream), '', new MetadataStore({ now }), fills, { tagTtlMs: 60_000, blobConfirmTtlMs: 60_000 }, log, caches, {
    access,
    quota: keeper,
  })
  const registry = new ProxyRegistry(ctx)
  const pull = async (repo: string, tag: string): Promise<void> => {
    const repository = registry.repository(repo as RepositoryName)
    const m = await repository.manifests.get(parseReference(tag), { accept: [] })
    const parsed = JSON.parse(m.payload.toString('utf8')) as { config: { digest: string }; layers: { digest: string }[] }
    for (const d of [parsed.config, ...parsed.layers]) await readAll(await repository.blobs.open(parseDigest(d.digest)))
    // A fill tells the quota of its commit just after its last byte is out: wait until the count has it.
    const deadline = Date.now() + 5_000
    while ((fills.active > 0 || keeper.total !== (await blobBytes(root))) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    await keeper.idle()
  }
  return { root, registry, keeper, access, upstream, pull }
}

t.test('the total follows fills and evictions; passing maxsize after a commit evicts down to lowwater', async t => {
  const world = new Map<string, World>()
  const images = [1, 2, 3].map(i => addImage(world, `lib/x${i}`, 'v1', `x${i}`, [30_000, 20_000]))
  const size = images[0]?.bytes ?? 0
  let clock = 10_000_000
  const fx = quotaProxy(t, worldUpstream(world), { maxSize: Math.floor(size * 2.5), lowWater: Math.floor(size * 2.2), auto: true, now: () => clock })
  await fx.keeper.start()
  t.equal(fx.keeper.total, 0)
  for (const i of [1, 2]) {
    clock += 1000
    await fx.pull(`lib/x${i}`, 'v1')
    await fx.keeper.idle()
    t.equal(fx.keeper.total, await blobBytes(fx.root), `after image ${i}: the total is what is on disk`)
  }
  t.equal(fx.keeper.total, 2 * size)
  t.equal(fx.keeper.lastReport, undefined, 'no pass under maxsize')
  clock += 1000
  await fx.pull('lib/x3', 'v1')
  await fx.keeper.idle()
  t.equal(fx.keeper.lastReport?.imagesEvicted, 1, 'passing maxsize evicted one image')
  t.equal(fx.keeper.total, await blobBytes(fx.root), 'the total is what is on disk')
  t.ok(fx.keeper.total <= Math.floor(size * 2.2), 'down to lowwater')
  t.notOk(await exists(revisionPath(fx.root, 'lib/x1', images[0]?.manifest as Digest)), 'the least recently pulled image went')
  const before = fx.upstream.count('GET', 'blobs')
  clock += 1000
  await fx.pull('lib/x2', 'v1')
  t.equal(fx.upstream.count('GET', 'blobs'), before, 'a kept image is served from the cache')
  clock += 1000
  await fx.pull('lib/x1', 'v1')
  await fx.keeper.idle()
  t.equal(fx.upstream.count('GET', 'blobs'), before + 3, 'the evicted one is fetched again')
  t.notOk(await exists(revisionPath(fx.root, 'lib/x3', images[2]?.manifest as Digest)), 'and evicts the least recently pulled one now: x3 (x2 was pulled since)')
  t.equal(fx.keeper.total, await blobBytes(fx.root))
})

t.test('a blob larger than maxsize is refused on its announced size, before anything is written', async t => {
  const content = bytes('too large', 50_000)
  const digest = digestOf(content)
  const body = new PassThrough()
  body.write(content.subarray(0, 1000))
  const upstream = new ScriptedUpstream(() => blobReply(content, body))
  const fx = quotaProxy(t, upstream, { maxSize: 40_000, lowWater: 36_000, auto: true })
  await fx.keeper.start()
  const err = await fx.registry.repository('lib/big' as RepositoryName).blobs.open(digest).catch((e: unknown) => e)
  t.ok(err instanceof RegistryError)
  t.equal((err as RegistryError).code, 'DENIED')
  t.match((err as RegistryError).message, /storage\.quota\.maxsize: 40000 bytes/)
  t.match((err as RegistryError).message, /50000 bytes/)
  t.ok(body.destroyed, 'the upstream body was given up unread')
  t.same((await listFiles(fx.root)).filter(f => !f.startsWith('.stevedore/')), [], 'nothing written: no spool, no journal entry, no blob')
  t.equal(fx.keeper.total, 0)
  t.equal(fx.keeper.lastReport, undefined, 'and no eviction')
})

class CountingMap extends Map<string, unknown> {
  writes = 0
  override set(key: string, value: unknown): this {
    this.writes += 1
    return super.set(key, value)
  }

  override delete(key: string): boolean {
    this.writes += 1
    return super.delete(key)
  }
}

t.test('pulls are written in batches: a handful of writes for a hundred pulls', async t => {
  const world = new Map<string, World>()
  for (const i of [1, 2, 3]) addImage(world, `lib/b${i}`, 'v1', `b${i}`, [100])
  const store = new CountingMap()
  const clock = 20_000_000
  const fx = quotaProxy(t, worldUpstream(world), { maxSize: 10_000_000, lowWater: 9_000_000, now: () => clock, accessStore: store })
  await fx.keeper.start()
  const before = store.writes
  for (let n = 0; n < 100; n++) {
    const repo = fx.registry.repository(`lib/b${(n % 3) + 1}` as RepositoryName)
    await repo.manifests.get(parseReference('v1'), { accept: [] })
  }
  t.equal(store.writes, before, 'nothing written on the request path')
  await fx.access.flush()
  const writes = store.writes - before
  // Each entry's time, the index records it joins (one per entry at most), the list of records.
  t.ok(writes <= 3 + 3 + 1, `one write per pulled (repository, manifest) and per index record: ${writes} for 100 pulls`)
  for (const i of [1, 2, 3]) {
    const digest = world.get(`lib/b${i}`)?.tags.get('v1') as string
    t.equal(await fx.access.lastPulled(`lib/b${i}`, digest), clock, 'each pull time is there')
  }
  await fx.access.flush()
  t.equal(store.writes - before, writes, 'a flush with nothing new writes nothing')
})

t.test('a blob being read is not removed; it goes in a later pass', async t => {
  const world = new Map<string, World>()
  const old = addImage(world, 'lib/old', 'v1', 'old', [40_000])
  addImage(world, 'lib/new', 'v1', 'new', [40_000])
  let clock = 30_000_000
  const fx = quotaProxy(t, worldUpstream(world), { maxSize: 10_000_000, lowWater: 9_000_000, now: () => clock })
  await fx.keeper.start()
  await fx.pull('lib/old', 'v1')
  clock += 1000
  await fx.pull('lib/new', 'v1')
  const layer = old.blobs[1] as Digest
  const reading = await fx.registry.repository('lib/old' as RepositoryName).blobs.open(layer)
  const report = await fx.keeper.evict(fx.keeper.total - 1)
  t.equal(report?.skippedInUse, 1, 'the image whose layer is being read was left this round')
  t.equal(report?.imagesEvicted, 1, 'the next one went instead')
  t.ok(await exists(blobPath(fx.root, layer)), 'the layer being read is there')
  t.same(await readAll(reading), world.get('lib/old')?.blobs.get(layer.value), 'and reads whole')
  const later = await fx.keeper.evict(fx.keeper.total - 1)
  t.equal(later?.imagesEvicted, 1, 'once closed, the image goes')
  t.notOk(await exists(blobPath(fx.root, layer)))
  t.equal(fx.keeper.total, await blobBytes(fx.root))
})

t.test('restored from a file store across a restart, without walking', async t => {
  const root = t.testdir()
  const filename = join(root, 'metadata.json')
  const driver = new FilesystemDriver(root)
  const images = [await putImage(new LocalStorage(driver), 'lib/a', 'v1', 'a', [8000]), await putImage(new LocalStorage(driver), 'lib/b', 'v1', 'b', [8000])]
  const clock = 40_000_000
  const firstAccess = new AccessIndex({ store: new KeyvFile({ filename, writeDelay: 5 }) as never, now: () => clock })
  const first = new QuotaKeeper(new LocalStorage(driver), firstAccess, { maxSize: 1e9, lowWater: 1e9, pin: [], persistent: true, auto: false }, log)
  t.equal((await first.start()).source, 'walk', 'no total stored yet: counted')
  const extra = await new LocalStorage(driver).blobs.put(bytes('committed later', 3000))
  first.committed(extra.digest, extra.size)
  firstAccess.record('lib/b', images[1]?.manifest.value as string, clock + 1000)
  firstAccess.record('lib/a', images[0]?.manifest.value as string, clock + 2000)
  await first.close()
  await firstAccess.close()

  let blobListings = 0
  const counting = Object.assign(Object.create(driver) as StorageDriver, {
    list: async (path: string) => {
      if (path.startsWith(`/${V2}/blobs`) || path.startsWith(`/${V2}/repositories`)) blobListings += 1
      return driver.list(path)
    },
  })
  const secondAccess = new AccessIndex({ store: new KeyvFile({ filename, writeDelay: 5 }) as never, now: () => clock })
  const second = keeperFor(t, new LocalStorage(counting), secondAccess, { maxSize: 1e9, lowWater: 1e9, persistent: true })
  t.teardown(() => secondAccess.close())
  const started = await second.start()
  t.equal(started.source, 'metadata')
  t.equal(second.total, await blobBytes(root), 'the total is restored, commits included')
  t.equal(blobListings, 0, 'without listing storage')
  t.equal(await secondAccess.lastPulled('lib/a', images[0]?.manifest.value as string), clock + 2000, 'pull times are restored')
  const report = await second.evict(second.total - 1)
  t.equal(report?.imagesEvicted, 1)
  t.notOk(await exists(revisionPath(root, 'lib/b', images[1]?.manifest as Digest)), 'and order evictions: lib/b was pulled before lib/a')
  t.ok(await exists(revisionPath(root, 'lib/a', images[0]?.manifest as Digest)))
})

t.test('while the sweep lease is held elsewhere, eviction is postponed and retried', async t => {
  const root = t.testdir()
  const driver = new FilesystemDriver(root)
  const storage = new LocalStorage(driver)
  const image = await putImage(storage, 'lib/a', 'v1', 'a', [8000])
  const lease = await acquireLease(driver, 'sweep', 'stevedore gc', { settleMs: 1 })
  const access = new AccessIndex()
  const keeper = keeperFor(t, storage, access, { maxSize: 100, lowWater: 50, auto: true, retryMs: 50 })
  await keeper.start()
  t.equal(await keeper.evict(), undefined, 'postponed while gc holds the lease')
  t.ok(await exists(revisionPath(root, 'lib/a', image.manifest)), 'nothing removed')
  await lease.release()
  const deadline = Date.now() + 5_000
  while ((await exists(revisionPath(root, 'lib/a', image.manifest))) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  await keeper.idle()
  t.notOk(await exists(revisionPath(root, 'lib/a', image.manifest)), 'retried once the lease was free')
  t.equal(keeper.total, await blobBytes(root))
})

t.test('proxy.ttl times a manifest by its pulls in each repository', async t => {
  const root = t.testdir()
  const storage = new LocalStorage(new FilesystemDriver(root))
  const a = await putImage(storage, 'lib/a', 'v1', 'same', [4000])
  const b = await putImage(storage, 'lib/b', 'v1', 'same', [4000])
  t.equal(a.manifest.value, b.manifest.value, 'one manifest in two repositories')
  let clock = 50_000_000
  const access = new AccessIndex({ now: () => clock })
  const sweeper = new ExpirySweeper(storage, new MetadataStore({ now: () => clock }), { ttlMs: 24 * HOUR, graceMs: 0, pulls: access }, log)
  const first = await sweeper.sweep()
  t.equal(first.manifestsExpired, 0, 'unknown pull times start now')
  clock += 20 * HOUR
  access.record('lib/a', a.manifest.value)
  clock += 5 * HOUR
  const report = await sweeper.sweep()
  t.equal(report.manifestsExpired, 1, 'the repository that did not pull it lost it')
  t.notOk(await exists(revisionPath(root, 'lib/b', b.manifest)))
  t.ok(await exists(revisionPath(root, 'lib/a', a.manifest)), 'the one that did keeps it')
  t.equal(report.blobsDeleted, 0, 'its blobs stay: lib/a references them')
  t.equal(await access.lastPulled('lib/b', b.manifest.value), undefined, 'the expired entry is forgotten')
})

t.test('an image\'s referrers go with it; with nothing more to evict, storage is counted again', async t => {
  const root = t.testdir()
  const storage = new LocalStorage(new FilesystemDriver(root))
  const image = await putImage(storage, 'lib/a', 'v1', 'a', [6000])
  const signature = bytes('signature', 500)
  const sig = await storage.blobs.put(signature)
  await storage.layers.link('lib/a' as RepositoryName, sig.digest)
  const referrer = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: 'application/vnd.dev.cosign.simplesigning.v1+json',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sig.digest.value, size: sig.size },
    layers: [],
    subject: { mediaType: OCI_MANIFEST, digest: image.manifest.value, size: image.payload.length },
  }))
  const r = await storage.blobs.put(referrer)
  await storage.revisions.link('lib/a' as RepositoryName, r.digest)
  const pinned = await putImage(storage, 'keep/b', 'v1', 'b', [6000])
  const stray = await storage.blobs.put(bytes('stray', 7000)) // linked nowhere: nothing evicts it
  const access = new AccessIndex({ now: () => 1000 })
  const keeper = keeperFor(t, storage, access, { maxSize: 1000, lowWater: 900, pin: ['keep/**'] })
  await keeper.start()
  access.record('lib/a', image.manifest.value, 2000)
  access.record('lib/a', r.digest.value, 3000)
  access.record('keep/b', pinned.manifest.value, 1500)
  // Deleted behind the keeper's back (as gc would): its count is too high until storage is counted again.
  const { rm } = await import('node:fs/promises')
  await rm(blobPath(root, stray.digest))
  t.equal(keeper.total, (await blobBytes(root)) + stray.size)
  const report = await keeper.evict()
  t.equal(report?.imagesEvicted, 1)
  t.equal(report?.manifestsRemoved, 2, 'the image and the signature about it')
  t.notOk(await exists(blobPath(root, sig.digest)), 'the signature blob went too')
  t.equal(report?.stopped, 'exhausted', 'the pinned image is all there is left')
  t.equal(keeper.total, await blobBytes(root), 'counted again: the count is right')
  t.ok(await exists(revisionPath(root, 'keep/b', pinned.manifest)))
})

t.test('commits while the startup walk runs are counted once; openQuotaKeeper times a pass over a tree', async t => {
  const root = t.testdir()
  const storage = new LocalStorage(new FilesystemDriver(root))
  const images = []
  for (let i = 0; i < 6; i++) images.push(await putImage(storage, `gen/r${i % 2}`, `t${i}`, `gen${i}`, [3000, 2000]))
  const before = await blobBytes(root)
  const access = new AccessIndex()
  const keeper = keeperFor(t, new LocalStorage(new FilesystemDriver(root)), access, { maxSize: 1e9, lowWater: 1e9 })
  const starting = keeper.start()
  const present = images[0]?.blobs[1] as Digest
  keeper.committed(present, 3000) // on disk already: the walk counts it
  keeper.committed(digestOf(bytes('not on disk yet', 10)), 100) // after the walk passed it
  await starting
  t.equal(keeper.total, before + 100)

  const { openQuotaKeeper } = await import('../../src/lifecycle/quota.js')
  const { keeper: timed, start, close } = await openQuotaKeeper(root, { maxSize: 1, lowWater: 1, pin: [], lease: { settleMs: 0 } }, log, () => 5000)
  t.teardown(close)
  t.same([start.source, start.bytes, start.blobs, start.manifestsSeeded], ['walk', before, images.length * 4, images.length])
  for (const [i, image] of images.entries()) timed.access.record(image.repo, image.manifest.value, 10_000 - i)
  await timed.access.flush()
  const report = await timed.evict(Math.floor(before / 2))
  t.ok(report !== undefined && report.durationMs >= 0 && report.imagesEvicted >= 3)
  t.notOk(await exists(revisionPath(root, 'gen/r1', images[5]?.manifest as Digest)), 'the least recently pulled first')
  t.ok(await exists(revisionPath(root, 'gen/r0', images[0]?.manifest as Digest)), 'the most recently pulled stays')
  t.equal(timed.total, await blobBytes(root))
})
