// The catalog walk: lexical order across nesting ("a-b" before "a/b"), pages
// that stop after n, and `last` that seeks without listing what sorts before it.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { listRepositories } from '../../src/storage/catalog.js'
import type { StorageDriver } from '../../src/storage/driver.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'

const NAMES = ['a', 'a-b', 'a.b', 'a/b', 'a/b/c', 'a/c', 'ab', 'b', 'b/a', 'z9']

function tree(root: string): void {
  for (const name of NAMES) mkdirSync(join(root, 'docker/registry/v2/repositories', name, '_manifests'), { recursive: true })
  mkdirSync(join(root, 'docker/registry/v2/repositories/c/only-layers/_layers'), { recursive: true })
}

/** A driver that counts the directories it lists. */
function counting(real: StorageDriver): { driver: StorageDriver; listed: string[] } {
  const listed: string[] = []
  const driver = Object.assign(Object.create(real) as StorageDriver, {
    list: (path: string) => {
      listed.push(path)
      return real.list(path)
    },
  })
  return { driver, listed }
}

t.test('lexical order, pages and seeks', async t => {
  const root = t.testdir()
  tree(root)
  const driver = new FilesystemDriver(root)
  const all = await listRepositories(driver, 1000)
  t.same(all, [...NAMES].sort(), 'every repository, in code-unit order')
  t.same(all, ['a', 'a-b', 'a.b', 'a/b', 'a/b/c', 'a/c', 'ab', 'b', 'b/a', 'z9'])
  t.same(await listRepositories(driver, 3), ['a', 'a-b', 'a.b'])
  t.same(await listRepositories(driver, 3, 'a.b'), ['a/b', 'a/b/c', 'a/c'])
  t.same(await listRepositories(driver, 100, 'a/c'), ['ab', 'b', 'b/a', 'z9'])
  t.same(await listRepositories(driver, 100, 'zz'), [])
  t.same(await listRepositories(driver, 100, undefined, ['_layers']), ['c/only-layers'], 'other markers')
})

t.test('a page lists little more than it returns', async t => {
  const root = t.testdir()
  for (let i = 0; i < 300; i++) mkdirSync(join(root, 'docker/registry/v2/repositories/team', `app-${String(i).padStart(3, '0')}`, '_manifests'), { recursive: true })
  const { driver, listed } = counting(new FilesystemDriver(root))
  const page = await listRepositories(driver, 10)
  t.equal(page.length, 10)
  t.ok(listed.length <= 10 + 3, `listed ${listed.length} directories for a page of 10`)
  listed.length = 0
  const later = await listRepositories(driver, 10, 'team/app-250')
  t.same(later[0], 'team/app-251')
  t.ok(listed.length <= 10 + 3, `and ${listed.length} for a page after team/app-250: what sorts before it is not listed`)
})
