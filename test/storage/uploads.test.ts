// Upload purging removes uploads older than the age (Distribution's startedat), keeps younger ones.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { pino } from 'pino'
import { purgeUploads } from '../../src/lifecycle/uploads.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'

t.test('purging abandoned uploads', async t => {
  const root = t.testdir()
  const now = Date.parse('2026-11-23T12:00:00Z')
  const upload = (repo: string, id: string, started: string): string => {
    const dir = join(root, 'docker/registry/v2/repositories', repo, '_uploads', id)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'startedat'), started)
    writeFileSync(join(dir, 'data'), 'partial')
    return dir
  }
  upload('team/app', 'old-1', '2026-11-10T12:00:00Z')
  upload('team/app', 'young-1', '2026-11-23T11:00:00Z')
  upload('other', 'old-2', '2026-01-01T00:00:00.000Z')
  const driver = new FilesystemDriver(root)
  const log = pino({ level: 'silent' })

  const dry = await purgeUploads(driver, { ageMs: 7 * 24 * 3_600_000, dryRun: true, now: () => now }, log)
  t.same(dry, { uploadsRemoved: 2, dryRun: true }, 'a dry run counts')
  t.same(await driver.list('/docker/registry/v2/repositories/team/app/_uploads'), ['old-1', 'young-1'], 'and removes nothing')

  const real = await purgeUploads(driver, { ageMs: 7 * 24 * 3_600_000, dryRun: false, now: () => now }, log)
  t.equal(real.uploadsRemoved, 2)
  t.same(await driver.list('/docker/registry/v2/repositories/team/app/_uploads'), ['young-1'], 'the young upload stays')
  t.same(await driver.list('/docker/registry/v2/repositories/other/_uploads'), [], 'old ones are gone')
})
