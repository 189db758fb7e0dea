// Temp files of atomic writes live outside the layout, so no legitimate name
// is ever hidden from a listing (a tag "v1.tmp-x" is a valid tag), and
// nothing of a write is left in the tree.
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { parseDigest } from '../../src/registry/digest.js'
import type { RepositoryName, Tag } from '../../src/registry/names.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { TagStore } from '../../src/storage/tags.js'

t.test('tags that look like temp names are listed', async t => {
  const root = t.testdir()
  const tags = new TagStore(new FilesystemDriver(root))
  const digest = parseDigest(`sha256:${'a'.repeat(64)}`)
  const repo = 'team/app' as RepositoryName
  for (const tag of ['v1', 'v1.tmp-x', 'data.tmp-123-abc']) await tags.tag(repo, tag as Tag, digest)
  t.same(await tags.list(repo), ['data.tmp-123-abc', 'v1', 'v1.tmp-x'])
  const current = await readdir(join(root, 'docker/registry/v2/repositories/team/app/_manifests/tags/v1.tmp-x/current'))
  t.same(current, ['link'], 'only the link file beside it: the temp file was renamed from the scratch directory')
  t.same(await readdir(join(root, '.stevedore/tmp')), [], 'and nothing is left in the scratch directory')
})
