// Maintenance that must not lose or keep the wrong thing: a blob linked again
// while a sweep runs survives however old its data is; a directory outside
// the name grammar is skipped, not fatal; kept schema1 revisions keep their
// signatures; restart recovery removes only what dead runs of this host left.
import { createHash } from 'node:crypto'
import { mkdirSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import t from 'tap'
import { ExpirySweeper } from '../../src/lifecycle/expiry.js'
import { purgeUploads, recoverInterrupted } from '../../src/lifecycle/uploads.js'
import { MetadataStore } from '../../src/metadata/store.js'
import { parseDigest } from '../../src/registry/digest.js'
import type { RepositoryName } from '../../src/registry/names.js'
import type { StorageDriver } from '../../src/storage/driver.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { LocalRegistry } from '../../src/storage/local.js'
import { OWNER } from '../../src/storage/owner.js'

const log = pino({ level: 'silent' })
const HOUR = 3_600_000
const V2 = 'docker/registry/v2'
const sha = (data: string): string => createHash('sha256').update(data).digest('hex')
const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)

function oldBlob(root: string, content: string): { hex: string; path: string } {
  const hex = sha(content)
  const dir = join(root, V2, 'blobs/sha256', hex.slice(0, 2), hex)
  mkdirSync(dir, { recursive: true })
  const path = join(dir, 'data')
  writeFileSync(path, content)
  const past = new Date(Date.now() - 48 * HOUR)
  utimesSync(path, past, past)
  return { hex, path }
}

t.test('a blob linked again while a sweep runs is not deleted, however old its data', async t => {
  const root = t.testdir()
  const blob = oldBlob(root, 'layer bytes')
  const repo = 'team/app' as RepositoryName
  mkdirSync(join(root, V2, 'repositories/team/app/_layers'), { recursive: true })
  const real = new FilesystemDriver(root)
  let local: LocalRegistry | undefined
  // The moment the sweep starts looking at blob data (its mark phase is over), a pull links the blob again.
  const driver = Object.assign(Object.create(real) as StorageDriver, {
    list: async (path: string) => {
      if (path === `/${V2}/blobs/sha256/${blob.hex.slice(0, 2)}` && local !== undefined) {
        await local.storage.layers.link(repo, parseDigest(`sha256:${blob.hex}`))
      }
      return real.list(path)
    },
  })
  local = new LocalRegistry(driver)
  const sweeper = new ExpirySweeper(local.storage, new MetadataStore(), { ttlMs: HOUR }, log)
  const report = await sweeper.sweep()
  t.equal(report.blobsDeleted, 0, 'nothing deleted')
  t.ok(await exists(blob.path), 'the re-linked blob keeps its data')
  t.ok(await exists(join(root, V2, 'repositories/team/app/_layers/sha256', blob.hex, 'link')), 'and its new link')

  const later = await new ExpirySweeper(new LocalRegistry(real).storage, new MetadataStore(), { ttlMs: HOUR }, log).sweep()
  t.equal(later.blobsDeleted, 0, 'a later sweep sees the link and keeps it too')
})

t.test('a directory outside the name grammar neither aborts the sweep nor the purge', async t => {
  const root = t.testdir()
  for (const bad of ['Upper Case/_manifests', 'has space/_uploads/x', 'ok/Bad!/_layers', '.hidden/_manifests']) {
    mkdirSync(join(root, V2, 'repositories', bad), { recursive: true })
  }
  const orphan = oldBlob(root, 'orphan')
  const upload = join(root, V2, 'repositories/team/app/_uploads/0c6a6b8e-2d2b-4b8f-9f3e-5d1f3f0e7a11')
  mkdirSync(upload, { recursive: true })
  writeFileSync(join(upload, 'startedat'), '2020-01-01T00:00:00Z')
  const driver = new FilesystemDriver(root)
  const sweeper = new ExpirySweeper(new LocalRegistry(driver).storage, new MetadataStore(), { ttlMs: HOUR }, log)
  const report = await sweeper.sweep()
  t.equal(report.failedRepositories, 0)
  t.equal(report.blobsDeleted, 1, 'the sweep went on to the blobs')
  t.notOk(await exists(orphan.path))
  const purged = await purgeUploads(driver, { ageMs: HOUR, dryRun: false }, log)
  t.equal(purged.uploadsRemoved, 1, 'the purge went on to the valid repository')
  t.notOk(await exists(upload))
})

t.test('a kept schema1 revision keeps its signature blobs', async t => {
  const root = t.testdir()
  const signature = oldBlob(root, '{"header":{},"signature":"x","protected":"y"}')
  const payload = JSON.stringify({ schemaVersion: 1, name: 'team/app', tag: 'v1', architecture: 'amd64', fsLayers: [], history: [] })
  const revision = oldBlob(root, payload)
  const revDir = join(root, V2, 'repositories/team/app/_manifests/revisions/sha256', revision.hex)
  mkdirSync(join(revDir, 'signatures/sha256', signature.hex), { recursive: true })
  writeFileSync(join(revDir, 'link'), `sha256:${revision.hex}`)
  writeFileSync(join(revDir, 'signatures/sha256', signature.hex, 'link'), `sha256:${signature.hex}`)
  const metadata = new MetadataStore()
  await metadata.touch(`sha256:${revision.hex}`)
  const report = await new ExpirySweeper(new LocalRegistry(new FilesystemDriver(root)).storage, metadata, { ttlMs: HOUR }, log).sweep()
  t.equal(report.manifestsExpired, 0)
  t.equal(report.blobsDeleted, 0, 'no blob deleted')
  t.ok(await exists(signature.path), 'the signature blob stays with its revision')
})

t.test('restart recovery removes the journalled spools and temp files of dead runs of this host only', async t => {
  const root = t.testdir()
  const hostTag = sha(hostname()).slice(0, 8)
  const dead = `${hostTag}-${(2 ** 22 + 12345).toString(36)}-abcdef` // a pid above Linux's pid_max
  const uploads = join(root, V2, 'repositories/team/app/_uploads')
  const journal = join(root, 'stevedore/v1/fills')
  mkdirSync(journal, { recursive: true })
  const session = (id: string, bytes: number, journalled = true): string => {
    mkdirSync(join(uploads, id), { recursive: true })
    writeFileSync(join(uploads, id, 'startedat'), new Date().toISOString())
    writeFileSync(join(uploads, id, 'data'), Buffer.alloc(bytes))
    if (journalled) writeFileSync(join(journal, id), 'team/app')
    return id
  }
  session(`fill-${dead}-0123456789abcdef`, 1000)
  session(`fill-${dead}-fedcba9876543210`, 10, false) // not journalled: left to purging, no walk at startup
  session(`fill-${OWNER}-0123456789abcdef`, 10) // this run: live
  session(`fill-ffffffff-1a-abcdef-0123456789abcdef`, 10) // another host: not judged here
  session('0c6a6b8e-2d2b-4b8f-9f3e-5d1f3f0e7a11', 10, false) // a client upload
  writeFileSync(join(journal, `fill-${dead}-aaaaaaaaaaaaaaaa`), 'team/gone') // its spool never got written
  const scratch = join(root, '.stevedore/tmp')
  mkdirSync(scratch, { recursive: true })
  writeFileSync(join(scratch, `${dead}-00112233`), Buffer.alloc(500))
  writeFileSync(join(scratch, `${OWNER}-00112233`), 'live')
  const report = await recoverInterrupted(new FilesystemDriver(root), log)
  t.same(report, { spools: 1, scratchFiles: 1, bytes: 1500 })
  t.same(
    (await readdir(uploads)).sort(),
    [`fill-${dead}-fedcba9876543210`, `fill-${OWNER}-0123456789abcdef`, 'fill-ffffffff-1a-abcdef-0123456789abcdef', '0c6a6b8e-2d2b-4b8f-9f3e-5d1f3f0e7a11'].sort(),
  )
  t.same((await readdir(journal)).sort(), [`fill-${OWNER}-0123456789abcdef`, 'fill-ffffffff-1a-abcdef-0123456789abcdef'].sort(), 'the dead entries left the journal')
  t.same(await readdir(scratch), [`${OWNER}-00112233`])
  t.ok(statSync(join(uploads, '0c6a6b8e-2d2b-4b8f-9f3e-5d1f3f0e7a11')).isDirectory(), 'client uploads are left to purging')
})

t.test('a fill spool nobody wrote to for an hour is purged whoever owned it', async t => {
  const root = t.testdir()
  const dir = join(root, V2, 'repositories/team/app/_uploads/fill-ffffffff-1a-abcdef-0123456789abcdef')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'startedat'), new Date(Date.now() - 2 * HOUR).toISOString())
  writeFileSync(join(dir, 'data'), 'partial')
  const past = new Date(Date.now() - 2 * HOUR)
  utimesSync(join(dir, 'data'), past, past)
  const report = await purgeUploads(new FilesystemDriver(root), { ageMs: 168 * HOUR, dryRun: false }, log)
  t.equal(report.uploadsRemoved, 1)
  t.notOk(await exists(dir))
})
