// Deletes on hosted repositories (storage.delete.enabled): a manifest by
// digest (202; the tags pointing at it go too), a tag (202), a blob (202),
// all soft: links go, data stays in blobs/ until `stevedore gc`, whose dry
// run lists exactly that data, as Distribution's garbage-collect does on the
// same storage, and whose real run removes it. A tag moved to another
// manifest keeps the old one (until `gc -m`, which takes it as Distribution's
// `garbage-collect -m` would). With delete disabled every DELETE is 405
// UNSUPPORTED and nothing goes.
import { utimesSync, readdirSync } from 'node:fs'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { bareEnv, runCommand } from '../helpers/command.js'
import { writeYaml } from '../helpers/config.js'
import { defaultDistributionConfig, DISTRIBUTION_BIN } from '../helpers/distribution.js'
import { distributionPaths } from '../helpers/distribution-paths.js'
import { seededBytes } from '../helpers/files.js'
import { OCI_MANIFEST, writeOciImage, type ImageDescription } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pushBlob } from '../helpers/push.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { REPO_ROOT, stevedoreCommand } from '../helpers/stevedore.js'
import { call, committedBlobs, describe, exists } from '../helpers/uploads.js'

const HOUR = 3_600_000
const eligible = (stdout: string): string[] => [...stdout.matchAll(/^blob eligible for deletion: (\S+)$/gm)].map(m => m[1] as string).sort()

function stevedore(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const { command, args: argv, env } = stevedoreCommand(args, process.env)
  return runCommand(command, argv, { env, cwd: REPO_ROOT, timeoutMs: 60_000 })
}

/** Every file under `root`, relative to it. */
function files(root: string): string[] {
  return (readdirSync(root, { recursive: true, withFileTypes: true }) as { name: string; parentPath: string; isFile(): boolean }[])
    .filter(e => e.isFile())
    .map(e => join(e.parentPath, e.name).slice(root.length + 1))
}

/** The manifest, config and layer digests of a single-platform image. */
function imageBlobs(image: ImageDescription): string[] {
  const manifest = image.manifests[0]
  if (manifest === undefined) throw new Error('no manifest')
  return [image.manifestDigest, manifest.config.digest, ...manifest.layers.map(l => l.digest)]
}

const manifest = (url: string, repo: string, reference: string, method = 'GET') =>
  call(`${url}/v2/${repo}/manifests/${reference}`, { method, headers: { Accept: OCI_MANIFEST } })

async function tagsOf(url: string, repo: string): Promise<string[]> {
  const res = await call(`${url}/v2/${repo}/tags/list`)
  if (res.status !== 200) throw new Error(`tags/list ${repo}: ${describe(res)}`)
  return ((JSON.parse(res.body.toString('utf8')) as { tags: string[] | null }).tags ?? []).sort()
}

t.test('delete enabled: soft deletes, then gc', async t => {
  const dir = t.testdir()
  const root = join(dir, 'storage')
  const storage = { filesystem: { rootdirectory: root }, delete: { enabled: true } }
  const server = await startInProcess(t, root, { storage })
  const { url, host } = server

  const a = await writeOciImage(join(dir, 'a'), { tag: 'v1', seed: 'push-deletes/a', layerSizes: [1200, 30_000] })
  const b = await writeOciImage(join(dir, 'b'), { tag: 'v1', seed: 'push-deletes/b', layerSizes: [1300] })
  const c = await writeOciImage(join(dir, 'c'), { tag: 'v1', seed: 'push-deletes/c', layerSizes: [1400] })
  for (const tag of ['a1', 'a2']) await pushLayout(join(dir, 'a'), 'v1', `${host}/deletes/app:${tag}`)
  await pushLayout(join(dir, 'b'), 'v1', `${host}/deletes/app:b`)
  for (const tag of ['t1', 't2']) await pushLayout(join(dir, 'c'), 'v1', `${host}/deletes/tagged:${tag}`)
  const loose = seededBytes('push-deletes/loose-blob', 5000)
  const { digest: x } = await pushBlob(url, 'deletes/blobs', loose)
  t.same(await tagsOf(url, 'deletes/app'), ['a1', 'a2', 'b'])

  await t.test('a manifest by digest', async t => {
    const deleted = await call(`${url}/v2/deletes/app/manifests/${a.manifestDigest}`, { method: 'DELETE' })
    t.equal(deleted.status, 202, `DELETE by digest: ${describe(deleted)}`)
    for (const method of ['GET', 'HEAD']) {
      const gone = await manifest(url, 'deletes/app', a.manifestDigest, method)
      t.equal(gone.status, 404, `${method} by digest afterwards`)
    }
    t.equal((await manifest(url, 'deletes/app', a.manifestDigest)).code, 'MANIFEST_UNKNOWN')
    for (const tag of ['a1', 'a2']) {
      const byTag = await manifest(url, 'deletes/app', tag)
      t.equal(byTag.status, 404, `tag ${tag}, which pointed at it, is gone`)
      t.equal(byTag.code, 'MANIFEST_UNKNOWN')
      t.notOk(await exists(join(distributionPaths.repository(root, 'deletes/app'), '_manifests/tags', tag)), `_manifests/tags/${tag} removed`)
    }
    t.same(await tagsOf(url, 'deletes/app'), ['b'], 'tags/list keeps only the other tag')
    t.notOk(await exists(distributionPaths.manifestRevisionLink(root, 'deletes/app', a.manifestDigest)), 'the revision link is gone')
    for (const digest of imageBlobs(a)) t.ok(await exists(distributionPaths.blobData(root, digest)), `${digest.slice(0, 19)} still in blobs/`)
    await pullToLayout(`${host}/deletes/app:b`, join(dir, 'pulled-b'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'b'), join(dir, 'pulled-b')), [], 'the other image still pulls')
  })

  await t.test('a tag', async t => {
    const deleted = await call(`${url}/v2/deletes/tagged/manifests/t1`, { method: 'DELETE' })
    t.equal(deleted.status, 202, `DELETE of a tag: ${describe(deleted)}`)
    const byTag = await manifest(url, 'deletes/tagged', 't1')
    t.equal(byTag.status, 404, 'the tag is gone')
    t.equal(byTag.code, 'MANIFEST_UNKNOWN')
    t.same(await tagsOf(url, 'deletes/tagged'), ['t2'], 'tags/list')
    t.equal((await manifest(url, 'deletes/tagged', c.manifestDigest)).status, 200, 'the manifest stays, by digest')
    t.equal((await manifest(url, 'deletes/tagged', 't2')).status, 200, 'and by its other tag')
  })

  await t.test('a blob', async t => {
    const deleted = await call(`${url}/v2/deletes/blobs/blobs/${x}`, { method: 'DELETE' })
    t.equal(deleted.status, 202, `DELETE of a blob: ${describe(deleted)}`)
    const gone = await call(`${url}/v2/deletes/blobs/blobs/${x}`)
    t.equal(gone.status, 404, 'no longer served in that repository')
    t.equal(gone.code, 'BLOB_UNKNOWN')
    t.notOk(await exists(distributionPaths.layerLink(root, 'deletes/blobs', x)), 'its _layers link is gone')
    t.ok(await exists(distributionPaths.blobData(root, x)), 'its data stays in blobs/')
  })

  await t.test('gc: the dry run lists what the deletes left, Distribution agrees, the real run removes it', async t => {
    const garbage = [...imageBlobs(a), x].sort()
    // As if the pushes were two hours ago: older than gc's grace period.
    const past = new Date(Date.now() - 2 * HOUR)
    for (const file of files(root)) utimesSync(join(root, file), past, past)
    const gcConfig = join(dir, 'gc.yml')
    await writeYaml(gcConfig, { version: '0.1', log: { level: 'warn' }, storage: { filesystem: { rootdirectory: root } } })
    const before = await committedBlobs(root)

    const dry = await stevedore(['gc', '--dry-run', gcConfig])
    t.same(eligible(dry.stdout), garbage, "the dry run lists the deleted manifest's blobs and the deleted blob")
    t.same(await committedBlobs(root), before, 'and removes nothing')

    const distConfig = join(dir, 'distribution-gc.yml')
    await writeYaml(distConfig, defaultDistributionConfig(root, 5000))
    const theirs = await runCommand(DISTRIBUTION_BIN, ['garbage-collect', '--dry-run', distConfig], { env: bareEnv({}), timeoutMs: 60_000 })
    t.same(eligible(theirs.stdout), garbage, "Distribution's garbage-collect --dry-run on the same storage agrees")

    const real = await stevedore(['gc', gcConfig])
    t.same(eligible(real.stdout), garbage, 'the real run removes the same')
    const after = await committedBlobs(root)
    t.same(before.filter(d => !after.includes(d)), garbage, 'those blobs are gone from blobs/, and nothing else')
    for (const digest of [...imageBlobs(b), ...imageBlobs(c)]) t.ok(after.includes(digest), `${digest.slice(0, 19)} kept`)
    await pullToLayout(`${host}/deletes/app:b`, join(dir, 'after-gc-b'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'b'), join(dir, 'after-gc-b')), [], 'what is still tagged pulls after gc')
    await pullToLayout(`${host}/deletes/tagged:t2`, join(dir, 'after-gc-c'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'c'), join(dir, 'after-gc-c')), [], 'so does the image whose other tag was deleted')
  })
})

t.test('delete disabled: every DELETE is 405 UNSUPPORTED; a tag update keeps the old manifest', async t => {
  const dir = t.testdir()
  const root = join(dir, 'storage')
  const server = await startInProcess(t, root, {})
  const { url, host } = server
  const a = await writeOciImage(join(dir, 'a'), { tag: 'v1', seed: 'push-deletes/update-a', layerSizes: [1500] })
  const b = await writeOciImage(join(dir, 'b'), { tag: 'v1', seed: 'push-deletes/update-b', layerSizes: [1600] })

  await pushLayout(join(dir, 'a'), 'v1', `${host}/deletes/moving:t`)
  t.equal((await manifest(url, 'deletes/moving', 't')).headers.get('docker-content-digest'), a.manifestDigest, 't → A')
  await pushLayout(join(dir, 'b'), 'v1', `${host}/deletes/moving:t`)
  t.equal((await manifest(url, 'deletes/moving', 't')).headers.get('docker-content-digest'), b.manifestDigest, 't → B')
  const old = await manifest(url, 'deletes/moving', a.manifestDigest)
  t.equal(old.status, 200, 'A is still served by digest')
  t.ok(old.body.equals(await readFile(join(dir, 'a/blobs/sha256', a.manifestDigest.slice(7)))), 'byte-identical')
  const index = join(distributionPaths.repository(root, 'deletes/moving'), '_manifests/tags/t/index/sha256')
  t.same((await readdir(index)).sort(), [a.manifestDigest.slice(7), b.manifestDigest.slice(7)].sort(), '_manifests/tags/t/index/ holds both')
  for (const digest of [a.manifestDigest, b.manifestDigest]) {
    t.equal(await readFile(distributionPaths.tagIndexLink(root, 'deletes/moving', 't', digest), 'utf8'), digest, `index link ${digest.slice(0, 19)}`)
  }
  t.equal(await readFile(distributionPaths.tagCurrentLink(root, 'deletes/moving', 't'), 'utf8'), b.manifestDigest, 'current/link → B')

  await t.test('gc -m: the manifest the tag no longer points at is untagged garbage, as Distribution says', async t => {
    const past = new Date(Date.now() - 2 * HOUR)
    for (const file of files(root)) utimesSync(join(root, file), past, past)
    const gcConfig = join(dir, 'gc.yml')
    await writeYaml(gcConfig, { version: '0.1', log: { level: 'warn' }, storage: { filesystem: { rootdirectory: root } } })
    const distConfig = join(dir, 'distribution-gc.yml')
    await writeYaml(distConfig, defaultDistributionConfig(root, 5000))
    const distributionGc = (args: string[]) => runCommand(DISTRIBUTION_BIN, ['garbage-collect', ...args, distConfig], { env: bareEnv({}), timeoutMs: 60_000 })

    t.same(eligible((await stevedore(['gc', '--dry-run', gcConfig])).stdout), [], 'without -m nothing: A is still a linked revision')
    t.same(eligible((await distributionGc(['--dry-run'])).stdout), [], 'nor for Distribution')
    const untagged = imageBlobs(a).sort()
    const ours = await stevedore(['gc', '--dry-run', '-m', gcConfig])
    t.same(eligible(ours.stdout), untagged, "gc --dry-run -m: A's manifest, config and layer")
    t.match(ours.stdout, new RegExp(`^manifest eligible for deletion: ${a.manifestDigest}$`, 'm'), 'A listed as an untagged manifest')
    t.same(eligible((await distributionGc(['--dry-run', '-m'])).stdout), untagged, "Distribution's garbage-collect --dry-run -m agrees")

    const before = await committedBlobs(root)
    await stevedore(['gc', '--delete-untagged', gcConfig])
    const after = await committedBlobs(root)
    t.same(before.filter(d => !after.includes(d)), untagged, 'the real run removes those blobs and nothing else')
    t.notOk(await exists(distributionPaths.manifestRevisionLink(root, 'deletes/moving', a.manifestDigest)), "and A's revision")
    t.equal(await readFile(distributionPaths.tagCurrentLink(root, 'deletes/moving', 't'), 'utf8'), b.manifestDigest, 't still → B')
  })

  const layer = b.manifests[0]?.layers[0]?.digest ?? ''
  const attempts = [
    ['a manifest by digest', `/v2/deletes/moving/manifests/${b.manifestDigest}`],
    ['a tag', '/v2/deletes/moving/manifests/t'],
    ['a blob', `/v2/deletes/moving/blobs/${layer}`],
  ] as const
  for (const [what, path] of attempts) {
    const res = await call(`${url}${path}`, { method: 'DELETE' })
    t.equal(res.status, 405, `DELETE of ${what}: ${describe(res)}`)
    t.equal(res.code, 'UNSUPPORTED', `${what}: UNSUPPORTED`)
  }
  t.equal((await manifest(url, 'deletes/moving', 't')).headers.get('docker-content-digest'), b.manifestDigest, 'the tag is still there')
  t.equal((await manifest(url, 'deletes/moving', b.manifestDigest)).status, 200, 'so is the manifest')
  t.equal((await call(`${url}/v2/deletes/moving/blobs/${layer}`)).status, 200, 'and the blob')
})
