// `stevedore gc` in process, on trees written by hand: what is marked, what is
// swept, and what must never be (young blobs, live fill spools, content
// linked while it runs); Distribution's output lines; the sweep lease.
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import t from 'tap'
import { gcCommand, gcLine, totalsLine } from '../../src/cli/gc.js'
import { parseConfig } from '../../src/config/load.js'
import { collectGarbage, type GcEvent, type GcOptions } from '../../src/lifecycle/gc.js'
import { acquireLease, LeaseHeld } from '../../src/lifecycle/lease.js'
import type { StorageDriver } from '../../src/storage/driver.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { LocalStorage } from '../../src/storage/local.js'
import { OWNER } from '../../src/storage/owner.js'

const log = pino({ level: 'silent' })
const HOUR = 3_600_000
const V2 = 'docker/registry/v2'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)
const sha = (data: string | Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

interface Image {
  manifest: string
  config: string
  layers: string[]
  size: number
}

/** A Distribution-layout tree; every file is written `age` ago (2 h unless told), older than the grace. */
class Tree {
  constructor(readonly root: string) {}

  private write(path: string, content: string | Buffer, ageMs = 2 * HOUR): void {
    const full = join(this.root, path)
    mkdirSync(join(full, '..'), { recursive: true })
    writeFileSync(full, content)
    const when = new Date(Date.now() - ageMs)
    utimesSync(full, when, when)
  }

  blobPath(digest: string): string {
    const hex = digest.slice(7)
    return join(this.root, V2, 'blobs/sha256', hex.slice(0, 2), hex, 'data')
  }

  repo(name: string): string {
    return join(this.root, V2, 'repositories', name)
  }

  blob(content: string | Buffer, ageMs?: number): string {
    const digest = sha(content)
    const hex = digest.slice(7)
    this.write(join(V2, 'blobs/sha256', hex.slice(0, 2), hex, 'data'), content, ageMs)
    return digest
  }

  json(value: unknown, ageMs?: number): { digest: string; size: number } {
    const bytes = Buffer.from(JSON.stringify(value))
    return { digest: this.blob(bytes, ageMs), size: bytes.length }
  }

  /** An OCI image: config and layers as blobs (`shared` layers given by digest), its manifest. */
  image(seed: string, shared: string[] = [], extra: Record<string, unknown> = {}): Image {
    const config = this.blob(`config ${seed}`)
    const layers = [...shared, this.blob(`layer ${seed}`)]
    const desc = (digest: string) => ({ mediaType: 'application/octet-stream', digest, size: 1 })
    const manifest = this.json({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc(config), layers: layers.map(desc), ...extra })
    return { manifest: manifest.digest, config, layers, size: manifest.size }
  }

  /** Links a revision, its config and layers in `repo` (as a pull through leaves them). */
  pulled(repo: string, image: Image, tag?: string): void {
    this.revision(repo, image.manifest)
    for (const blob of [image.config, ...image.layers]) this.layer(repo, blob)
    if (tag !== undefined) this.tag(repo, tag, image.manifest)
  }

  revision(repo: string, digest: string, ageMs?: number): void {
    this.write(join(V2, 'repositories', repo, '_manifests/revisions/sha256', digest.slice(7), 'link'), digest, ageMs)
  }

  layer(repo: string, digest: string, ageMs?: number): void {
    this.write(join(V2, 'repositories', repo, '_layers/sha256', digest.slice(7), 'link'), digest, ageMs)
  }

  tag(repo: string, tag: string, digest: string): void {
    const base = join(V2, 'repositories', repo, '_manifests/tags', tag)
    this.write(join(base, 'current/link'), digest)
    this.write(join(base, 'index/sha256', digest.slice(7), 'link'), digest)
  }

  signature(repo: string, revision: string, signature: string): void {
    this.write(join(V2, 'repositories', repo, '_manifests/revisions/sha256', revision.slice(7), 'signatures/sha256', signature.slice(7), 'link'), signature)
  }

  upload(repo: string, id: string, startedAgoMs: number, dataAgoMs: number): string {
    const dir = join(V2, 'repositories', repo, '_uploads', id)
    this.write(join(dir, 'startedat'), new Date(Date.now() - startedAgoMs).toISOString(), startedAgoMs)
    this.write(join(dir, 'data'), 'partial bytes', dataAgoMs)
    return join(this.root, dir)
  }

  /** Every file under the root, for "nothing changed" checks. */
  files(): string[] {
    return (readdirSync(this.root, { recursive: true, withFileTypes: true }) as { name: string; parentPath: string; isFile(): boolean }[])
      .filter(e => e.isFile())
      .map(e => join(e.parentPath, e.name).slice(this.root.length))
      .sort()
  }
}

async function gc(root: string, options: Partial<GcOptions> = {}, driver?: StorageDriver) {
  const events: GcEvent[] = []
  const report = await collectGarbage(new LocalStorage(driver ?? new FilesystemDriver(root)), {
    dryRun: false,
    deleteUntagged: false,
    graceMs: HOUR,
    log,
    lease: { settleMs: 1 },
    emit: event => events.push(event),
    ...options,
  })
  const of = <K extends GcEvent['kind']>(kind: K) => events.filter((e): e is Extract<GcEvent, { kind: K }> => e.kind === kind)
  return { report, events, eligible: of('blobEligible').map(e => e.digest).sort(), links: of('linkEligible').map(e => e.path).sort(), of }
}

interface Case {
  name: string
  deleteUntagged?: boolean
  /** Builds the tree; returns the blobs that must go and those that must stay. */
  build(tree: Tree): { gone: string[]; kept: string[] }
}

const cases: Case[] = [
  {
    name: 'an unreferenced blob goes, the blobs of a linked revision stay',
    build(tree) {
      const image = tree.image('one')
      tree.pulled('team/app', image, 'v1')
      return { gone: [tree.blob('orphan')], kept: [image.manifest, image.config, ...image.layers] }
    },
  },
  {
    name: 'an untagged revision is kept without --delete-untagged (Distribution marks revisions)',
    build(tree) {
      const old = tree.image('old')
      const current = tree.image('new')
      tree.pulled('team/app', old)
      tree.pulled('team/app', current, 'v1')
      return { gone: [], kept: [old.manifest, old.config, ...old.layers, current.manifest] }
    },
  },
  {
    name: 'a moved tag with --delete-untagged: the old image goes, the layer it shares stays',
    deleteUntagged: true,
    build(tree) {
      const base = tree.blob('base layer')
      const old = tree.image('old', [base])
      const current = tree.image('new', [base])
      tree.pulled('team/app', old)
      tree.pulled('team/app', current, 'v1')
      return { gone: [old.manifest, old.config, old.layers[1] as string], kept: [base, current.manifest, current.config, ...current.layers] }
    },
  },
  {
    name: 'a tagged index keeps its untagged children; an unlisted untagged manifest goes',
    deleteUntagged: true,
    build(tree) {
      const amd = tree.image('amd64')
      const arm = tree.image('arm64')
      const stray = tree.image('stray')
      const desc = (image: Image) => ({ mediaType: OCI_MANIFEST, digest: image.manifest, size: image.size })
      const index = tree.json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [desc(amd), desc(arm)] }).digest
      for (const image of [amd, arm, stray]) tree.pulled('team/multi', image)
      tree.revision('team/multi', index)
      tree.tag('team/multi', 'v1', index)
      return { gone: [stray.manifest, stray.config, ...stray.layers], kept: [index, amd.manifest, arm.manifest, ...amd.layers, ...arm.layers, arm.config] }
    },
  },
  {
    name: 'a layer shared between repositories stays while one of them references it',
    deleteUntagged: true,
    build(tree) {
      const shared = tree.blob('shared layer')
      const untagged = tree.image('a-old', [shared])
      const tagged = tree.image('b-current', [shared])
      tree.pulled('team/a', untagged)
      tree.pulled('team/b', tagged, 'latest')
      return { gone: [untagged.manifest, untagged.config, untagged.layers[1] as string], kept: [shared, tagged.manifest] }
    },
  },
  {
    name: 'schema1 signatures stay with their revision; a signature blob nothing links goes',
    build(tree) {
      const layer = tree.blob('schema1 layer')
      const payload = tree.json({ schemaVersion: 1, name: 'team/legacy', tag: 'v1', architecture: 'amd64', fsLayers: [{ blobSum: layer }, { blobSum: layer }], history: [] }).digest
      const signature = tree.blob('{"header":{"alg":"ES256"},"signature":"one","protected":"x"}')
      const unlinked = tree.blob('{"header":{"alg":"ES256"},"signature":"two","protected":"x"}')
      tree.revision('team/legacy', payload)
      tree.layer('team/legacy', layer)
      tree.signature('team/legacy', payload, signature)
      tree.tag('team/legacy', 'v1', payload)
      return { gone: [unlinked], kept: [payload, layer, signature] }
    },
  },
  {
    name: 'referrers of a kept manifest stay with it; those of a removed one go with it',
    deleteUntagged: true,
    build(tree) {
      const kept = tree.image('kept')
      const removed = tree.image('removed')
      const subject = (image: Image) => ({ subject: { mediaType: OCI_MANIFEST, digest: image.manifest, size: image.size }, artifactType: 'application/example.sig' })
      const signature = tree.image('sig-of-kept', [], subject(kept))
      const orphanSignature = tree.image('sig-of-removed', [], subject(removed))
      tree.pulled('team/app', kept, 'v1')
      for (const image of [removed, signature, orphanSignature]) tree.pulled('team/app', image)
      return {
        gone: [removed.manifest, removed.config, ...removed.layers, orphanSignature.manifest, orphanSignature.config, ...orphanSignature.layers],
        kept: [signature.manifest, signature.config, ...signature.layers, kept.manifest],
      }
    },
  },
  {
    name: 'an unreferenced blob younger than the grace period is kept',
    build(tree) {
      return { gone: [], kept: [tree.blob('just committed by a fill', 10 * 60_000)] }
    },
  },
]

for (const c of cases) {
  t.test(c.name, async t => {
    const tree = new Tree(t.testdir())
    const { gone, kept } = c.build(tree)
    const before = tree.files()
    const dry = await gc(tree.root, { dryRun: true, deleteUntagged: c.deleteUntagged === true })
    t.same(dry.eligible, [...gone].sort(), 'the dry run lists exactly the unreferenced blobs')
    t.same(tree.files(), before, 'and removes nothing')

    const real = await gc(tree.root, { deleteUntagged: c.deleteUntagged === true })
    t.same(real.eligible, [...gone].sort(), 'the real run finds the same')
    t.equal(real.report.blobsDeleted, gone.length)
    for (const digest of gone) t.notOk(await exists(tree.blobPath(digest)), `${digest.slice(0, 19)} deleted`)
    for (const digest of kept) t.ok(await exists(tree.blobPath(digest)), `${digest.slice(0, 19)} kept`)
    const again = await gc(tree.root, { deleteUntagged: c.deleteUntagged === true })
    t.same([again.eligible, again.report.manifests, again.report.links], [[], 0, 0], 'a second run finds nothing more')
  })
}

t.test("Distribution's lines, then ours", async t => {
  const tree = new Tree(t.testdir())
  const base = tree.blob('base layer')
  const old = tree.image('old', [base])
  const current = tree.image('new', [base])
  tree.pulled('a/x', old, 'latest')
  tree.pulled('a/x', current, 'latest') // the tag moved: both are in its index
  const orphan = tree.blob('orphan')
  const dry = await gc(tree.root, { dryRun: true })
  const [first, second] = [old, current].sort((a, b) => (a.manifest < b.manifest ? -1 : 1)) as [Image, Image]
  const marking = (image: Image) => [
    `a/x: marking manifest ${image.manifest} `,
    ...[image.config, ...image.layers].map(d => `a/x: marking blob ${d}`),
  ]
  t.same(dry.events.map(gcLine), [
    'a/x',
    ...marking(first),
    ...marking(second),
    '\n7 blobs marked, 1 blobs and 0 manifests eligible for deletion',
    `blob eligible for deletion: ${orphan}`,
  ], 'a dry run prints what Distribution prints (the trailing space of "marking manifest" too)')
  t.equal(totalsLine(dry.report, HOUR), 'totals: 1 blobs (6 bytes), 0 manifests, 0 links and 0 uploads (0 bytes) eligible for deletion; 0 unreferenced blobs (0 bytes) younger than the grace period (1h) kept')

  const real = await gc(tree.root, { deleteUntagged: true })
  const lines = real.events.map(gcLine)
  const hex = (d: string) => d.slice(7)
  const repo = '/docker/registry/v2/repositories/a/x'
  t.same(lines.filter(l => l.startsWith('manifest eligible')), [`manifest eligible for deletion: ${old.manifest}`])
  t.same(lines.filter(l => l.startsWith('deleting ')), [
    `deleting manifest tag reference: ${repo}/_manifests/tags/latest/index/sha256/${hex(old.manifest)}`,
    `deleting manifest: ${repo}/_manifests/revisions/sha256/${hex(old.manifest)}`,
  ], 'the old revision goes, with its entry in the tag index, as Distribution removes it')
  const goneBlobs = [old.manifest, old.config, old.layers[1] as string, orphan].sort()
  t.same(lines.filter(l => l.startsWith('Deleting blob: ')), goneBlobs.map(d => `Deleting blob: /docker/registry/v2/blobs/sha256/${hex(d).slice(0, 2)}/${hex(d)}`))
  t.same(lines.filter(l => l.startsWith('Deleting link: ')).sort(), [old.config, old.layers[1] as string].sort().map(d => `Deleting link: ${repo}/_layers/sha256/${hex(d)}`), "the old image's layer links go with their blobs")
  t.match(totalsLine(real.report, HOUR), /^totals: 4 blobs \(\d+ bytes\), 1 manifests, 2 links and 0 uploads \(0 bytes\) deleted; /)
})

t.test('links to blobs that are gone are removed; links in use or just written stay', async t => {
  const tree = new Tree(t.testdir())
  const image = tree.image('kept')
  tree.pulled('team/app', image, 'v1')
  const absent = sha('never stored')
  tree.layer('team/app', absent)
  const fresh = sha('linked a moment ago')
  tree.layer('team/app', fresh, 60_000)
  const missingRevision = sha('a manifest whose blob is gone')
  tree.revision('team/app', missingRevision)
  const links = (name: string) => join(tree.repo('team/app'), name)
  const dry = await gc(tree.root, { dryRun: true })
  t.same(dry.links, [
    `/${V2}/repositories/team/app/_layers/sha256/${absent.slice(7)}`,
    `/${V2}/repositories/team/app/_manifests/revisions/sha256/${missingRevision.slice(7)}`,
  ])
  t.notOk(dry.events.some(e => e.kind === 'markManifest' && e.digest === missingRevision), 'a revision without its blob is not marked, as in Distribution')
  await gc(tree.root)
  t.notOk(await exists(links(`_layers/sha256/${absent.slice(7)}`)))
  t.notOk(await exists(links(`_manifests/revisions/sha256/${missingRevision.slice(7)}`)))
  t.ok(await exists(links(`_layers/sha256/${fresh.slice(7)}/link`)), 'a link younger than the grace stays')
  for (const blob of [image.config, ...image.layers]) t.ok(await exists(links(`_layers/sha256/${blob.slice(7)}/link`)))
})

t.test('abandoned fill spools are removed; live ones and client uploads are not', async t => {
  const tree = new Tree(t.testdir())
  const dead = `${createHash('sha256').update(hostname()).digest('hex').slice(0, 8)}-${(2 ** 22 + 7).toString(36)}-abcdef`
  const stale = tree.upload('team/app', '0c6a6b8e-2d2b-4b8f-9f3e-5d1f3f0e7a11', 3 * HOUR, 2 * HOUR)
  const active = tree.upload('team/app', '1c6a6b8e-2d2b-4b8f-9f3e-5d1f3f0e7a11', 3 * HOUR, 60_000)
  const live = tree.upload('team/app', `fill-${OWNER}-0123456789abcdef`, 3 * HOUR, 90 * 60_000)
  const deadFill = tree.upload('team/app', `fill-${dead}-0123456789abcdef`, 60_000, 1000)
  const elsewhere = 'fill-ffffffff-1a-abcdef-'
  const abandoned = tree.upload('team/app', `${elsewhere}0123456789abcdef`, 3 * HOUR, 2 * HOUR)
  const elsewhereLive = tree.upload('team/app', `${elsewhere}fedcba9876543210`, 3 * HOUR, 30 * 60_000)
  mkdirSync(join(tree.root, 'stevedore/v1/fills'), { recursive: true })
  writeFileSync(join(tree.root, 'stevedore/v1/fills', `fill-${dead}-0123456789abcdef`), 'team/app')
  const dry = await gc(tree.root, { dryRun: true })
  t.same(dry.of('uploadEligible').map(e => e.path).sort(), [deadFill, abandoned].map(p => p.slice(tree.root.length)).sort())
  t.equal(dry.report.uploadBytes, 2 * 'partial bytes'.length)
  const real = await gc(tree.root)
  t.equal(real.report.uploads, 2)
  t.notOk(await exists(abandoned), "another host's fill nobody wrote to for longer than an hour")
  t.ok(await exists(elsewhereLive), "another host's fill written to half an hour ago stays")
  t.ok(await exists(stale), 'a client upload idle for longer than the grace stays: it is resumable, and upload purging (by age) removes it')
  t.notOk(await exists(deadFill), "the spool of a fill whose process is over, however young")
  t.notOk(await exists(join(tree.root, 'stevedore/v1/fills', `fill-${dead}-0123456789abcdef`)), 'with its journal entry')
  t.ok(await exists(active), 'an upload still written to stays')
  t.ok(await exists(live), "a fill of a live process of this host stays, however long since its last write")
})

t.test('the grace period follows the clock it is given', async t => {
  const tree = new Tree(t.testdir())
  const orphan = tree.blob('young orphan', 0)
  const now = { ms: Date.now() }
  const early = await gc(tree.root, { dryRun: true, now: () => now.ms })
  t.same([early.eligible, early.report.youngBlobs, early.report.youngBytes], [[], 1, 'young orphan'.length])
  now.ms += HOUR + 1000
  const later = await gc(tree.root, { now: () => now.ms })
  t.same(later.eligible, [orphan], 'an hour on, it goes')
})

t.test('content linked while gc runs keeps what it references, however old', async t => {
  const tree = new Tree(t.testdir())
  tree.pulled('team/app', tree.image('current'), 'v1')
  const late = tree.image('late') // old blobs nothing references yet
  const child = tree.image('late child')
  const index = tree.json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: child.manifest, size: child.size }] }).digest
  const adopted = tree.blob('adopted by a pull')
  const orphan = tree.blob('orphan')
  const real = new FilesystemDriver(tree.root)
  let linked = false
  // The moment gc walks the blobs (its mark is over), a server links a manifest and a blob.
  const driver = Object.assign(Object.create(real) as StorageDriver, {
    list: async (path: string) => {
      if (!linked && path.startsWith(`/${V2}/blobs/sha256/`)) {
        linked = true
        tree.revision('team/other', late.manifest, 0)
        tree.layer('team/other', adopted, 0)
        tree.revision('team/other', index, 0)
        tree.revision('team/other', child.manifest, 0)
      }
      return real.list(path)
    },
  })
  const run = await gc(tree.root, {}, driver)
  t.same(run.eligible, [orphan], 'only the orphan went')
  const spared = [late.manifest, late.config, ...late.layers, adopted, index, child.manifest, child.config, ...child.layers]
  for (const digest of spared) t.ok(await exists(tree.blobPath(digest)), `${digest.slice(0, 19)} kept`)
  t.equal(run.report.youngBlobs, spared.length, 'spared blobs are counted with the young ones')
})

t.test('the sweep lease: held by another, gc is refused; lost, gc stops deleting', async t => {
  const tree = new Tree(t.testdir())
  const orphans = ['a', 'b', 'c'].map(n => tree.blob(`orphan ${n}`))
  const driver = new FilesystemDriver(tree.root)
  const other = await acquireLease(driver, 'sweep', 'quota eviction', { settleMs: 1 })
  await t.rejects(gc(tree.root), LeaseHeld, 'a real run is refused')
  const dry = await gc(tree.root, { dryRun: true })
  t.equal(dry.eligible.length, 3, 'a dry run deletes nothing and takes no lease')
  await other.release()

  const real = new FilesystemDriver(tree.root)
  let taken = false
  const stealing = Object.assign(Object.create(real) as StorageDriver, {
    delete: async (path: string) => {
      await real.delete(path)
      if (!taken && path.includes('/blobs/')) {
        taken = true
        await real.putContent('/stevedore/v1/leases/sweep', JSON.stringify({ holder: 'another-host', purpose: 'quota eviction', expires: Date.now() + 60_000 }))
        await sleep(150) // past a renewal: it sees the other holder
      }
    },
  })
  const run = await gc(tree.root, { lease: { settleMs: 1, ttlMs: 90 } }, stealing)
  t.equal(run.report.blobsDeleted, 1, 'the blob being deleted when the lease went is the last')
  t.match(run.report.interrupted, /taken over/)
  t.equal(orphans.filter(d => tree.files().includes(tree.blobPath(d).slice(tree.root.length))).length, 2)
})

t.test('the command: Distribution lines on stdout, exit codes', async t => {
  const tree = new Tree(t.testdir())
  tree.pulled('team/app', tree.image('kept'), 'v1')
  const orphan = tree.blob('orphan')
  const { config } = parseConfig(`version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${tree.root}\n`, {}, 'test')
  const capture = async (run: () => Promise<number>) => {
    const out: string[] = []
    const err: string[] = []
    const write = (sink: string[]) => ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      sink.push(String(chunk))
      const done = rest.find(r => typeof r === 'function') as (() => void) | undefined
      done?.()
      return true
    }) as typeof process.stdout.write
    const [o, e] = [process.stdout.write, process.stderr.write]
    process.stdout.write = write(out)
    process.stderr.write = write(err)
    try {
      return { code: await run(), stdout: out.join(''), stderr: err.join('') }
    } finally {
      process.stdout.write = o
      process.stderr.write = e
    }
  }
  const dry = await capture(() => gcCommand({ kind: 'gc', dryRun: true, deleteUntagged: false }, config, log))
  t.equal(dry.code, 0)
  t.match(dry.stdout, /^team\/app\nteam\/app: marking manifest sha256:[0-9a-f]{64} \n/)
  t.match(dry.stdout, new RegExp(`\n\n3 blobs marked, 1 blobs and 0 manifests eligible for deletion\nblob eligible for deletion: ${orphan}\ntotals: 1 blobs \\(6 bytes\\)`))

  const other = await acquireLease(new FilesystemDriver(tree.root), 'sweep', 'quota eviction', { settleMs: 1 })
  const refused = await capture(() => gcCommand({ kind: 'gc', dryRun: false, deleteUntagged: false }, config, log))
  await other.release()
  t.equal(refused.code, 1, 'refused while another process sweeps')
  t.match(refused.stderr, /another process is sweeping this storage: the sweep lease is held by .* \(quota eviction\)/)
  t.ok(await exists(tree.blobPath(orphan)), 'nothing deleted')

  const real = await capture(() => gcCommand({ kind: 'gc', dryRun: false, deleteUntagged: false }, config, log))
  t.equal(real.code, 0)
  t.match(real.stdout, `Deleting blob: /docker/registry/v2/blobs/sha256/${orphan.slice(7, 9)}/${orphan.slice(7)}\n`)
  t.notOk(await exists(tree.blobPath(orphan)))
})
