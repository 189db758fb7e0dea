// `stevedore gc` on a real cache: a tag moved upstream and refreshed through
// Stevedore leaves exactly the old image's own blobs unreferenced; the dry run
// lists them, the real run removes them and nothing else while pulls go on,
// every remaining image still pulls, and Distribution's own garbage-collect
// finds nothing more but schema1 signature blobs (2.8 no longer knows them).
// Then the sweep lease refuses a second sweeper, and a read-only server
// serves what is cached and refuses to store anything new.
import { readdirSync, utimesSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { acquireLease } from '../../src/lifecycle/lease.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { bareEnv, CommandError, runCommand } from '../helpers/command.js'
import { writeYaml } from '../helpers/config.js'
import { defaultDistributionConfig, DISTRIBUTION_BIN, startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { REPO_ROOT, stevedoreCommand } from '../helpers/stevedore.js'

const HOUR = 3_600_000
const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false)
const blobDir = (digest: string): string => `/docker/registry/v2/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`
const eligible = (stdout: string): string[] => [...stdout.matchAll(/^blob eligible for deletion: (\S+)$/gm)].map(m => m[1] as string).sort()

/** Every file under `root`, relative to it. */
function files(root: string): string[] {
  return (readdirSync(root, { recursive: true, withFileTypes: true }) as { name: string; parentPath: string; isFile(): boolean }[])
    .filter(e => e.isFile())
    .map(e => join(e.parentPath, e.name).slice(root.length))
    .sort()
}

const blobsIn = (root: string): string[] =>
  files(root).flatMap(f => {
    const m = /^\/docker\/registry\/v2\/blobs\/sha256\/[0-9a-f]{2}\/([0-9a-f]{64})\/data$/.exec(f)
    return m === null ? [] : [`sha256:${m[1]}`]
  })

function stevedore(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const { command, args: argv, env } = stevedoreCommand(args, process.env)
  return runCommand(command, argv, { env, cwd: REPO_ROOT, timeoutMs: 60_000 })
}

t.test('gc after a tag moved upstream, beside a running server', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t, { config: { compatibility: { schema1: { enabled: true } } } })
  // The same seed and first layer size: the two images share layer 0, not layer 1 nor the config.
  const old = await writeOciImage(join(dir, 'old'), { tag: 'v1', seed: 'gc-app', layerSizes: [1500, 2500] })
  const current = await writeOciImage(join(dir, 'new'), { tag: 'v1', seed: 'gc-app', layerSizes: [1500, 3500] })
  await writeOciImage(join(dir, 'late'), { tag: 'v1', seed: 'gc-late', layerSizes: [1200] })
  const never = await writeOciImage(join(dir, 'never'), { tag: 'v1', seed: 'gc-never', layerSizes: [1300] })
  await writeOciImage(join(dir, 'legacy'), { tag: 'v1', seed: 'gc-legacy', layerSizes: [1100] })
  await pushLayout(join(dir, 'old'), 'v1', `${upstream.host}/team/app:v1`)
  await pushLayout(join(dir, 'legacy'), 'v1', `${upstream.host}/team/legacy:v1`, { format: 'v2s1' })
  await pushLayout(join(dir, 'late'), 'v1', `${upstream.host}/team/late:v1`)
  await pushLayout(join(dir, 'never'), 'v1', `${upstream.host}/team/never:v1`)

  const cache = join(dir, 'cache')
  const proxyConfig = { remoteurl: upstream.url, tagttl: '0s' }
  const proxy = await startInProcess(t, cache, { proxy: proxyConfig }, { sweep: false })
  await pullToLayout(`${proxy.host}/team/app:v1`, join(dir, 'pull-old'), 'v1')
  await pullToLayout(`${proxy.host}/team/legacy:v1`, join(dir, 'pull-legacy'), 'v1')
  await pushLayout(join(dir, 'new'), 'v1', `${upstream.host}/team/app:v1`) // the tag moves upstream…
  await pullToLayout(`${proxy.host}/team/app:v1`, join(dir, 'pull-new'), 'v1') // …and is refreshed through Stevedore
  t.same(await compareLayoutBlobs(join(dir, 'new'), join(dir, 'pull-new')), [], 'the moved tag is served')

  const oldImage = old.manifests[0]
  if (oldImage === undefined) throw new Error('no manifest')
  const garbage = [old.manifestDigest, oldImage.config.digest, (oldImage.layers[1] ?? oldImage.config).digest].sort()
  t.equal(oldImage.layers[0]?.digest, current.manifests[0]?.layers[0]?.digest, 'layer 0 is shared')

  // As if the pulls were two hours ago: older than the grace period (1h).
  const past = new Date(Date.now() - 2 * HOUR)
  for (const file of files(cache)) utimesSync(join(cache, file), past, past)
  const gcConfig = join(dir, 'gc.yml')
  await writeYaml(gcConfig, { version: '0.1', log: { level: 'warn' }, storage: { filesystem: { rootdirectory: cache } } })
  const before = blobsIn(cache)

  const dry = await stevedore(['gc', '--dry-run', '--delete-untagged', gcConfig])
  t.same(eligible(dry.stdout), garbage, "the dry run lists exactly the old image's own blobs: manifest, config, unshared layer")
  t.match(dry.stdout, new RegExp(`^manifest eligible for deletion: ${old.manifestDigest}$`, 'm'))
  t.match(dry.stdout, /^\n?\d+ blobs marked, 3 blobs and 1 manifests eligible for deletion$/m, "Distribution's summary line")
  t.match(dry.stdout, /^totals: 3 blobs \(\d+ bytes\), 1 manifests, 2 links and 0 uploads \(0 bytes\) eligible for deletion; /m)
  t.same(blobsIn(cache), before, 'a dry run removes nothing')

  // The real run, with pulls going on: the current image (cached) and one never pulled (filled now).
  const [real] = await Promise.all([
    stevedore(['gc', '--delete-untagged', gcConfig]),
    pullToLayout(`${proxy.host}/team/late:v1`, join(dir, 'pull-late'), 'v1'),
    pullToLayout(`${proxy.host}/team/app:v1`, join(dir, 'pull-during'), 'v1'),
  ])
  t.same(eligible(real.stdout), garbage, 'the real run removes the same')
  t.same([...real.stdout.matchAll(/^Deleting blob: (\S+)$/gm)].map(m => m[1]), garbage.map(blobDir), 'as Deleting blob lines')
  for (const digest of garbage) t.notOk(await exists(join(cache, blobDir(digest))), `${digest.slice(0, 19)} is gone`)
  const after = new Set(blobsIn(cache))
  t.same(before.filter(d => !after.has(d)), garbage, 'and nothing else')
  t.same(await compareLayoutBlobs(join(dir, 'late'), join(dir, 'pull-late')), [], 'the pull that filled during gc succeeded')
  t.same(await compareLayoutBlobs(join(dir, 'new'), join(dir, 'pull-during')), [], 'so did the cached one')

  // Every remaining image pulls, byte for byte.
  for (const [repo, layout] of [['team/app', 'new'], ['team/late', 'late']] as const) {
    await pullToLayout(`${proxy.host}/${repo}:v1`, join(dir, `again-${layout}`), 'v1')
    t.same(await compareLayoutBlobs(join(dir, layout), join(dir, `again-${layout}`)), [], `${repo} pulls after gc`)
  }
  await pullToLayout(`${proxy.host}/team/legacy:v1`, join(dir, 'again-legacy'), 'v1')
  t.same(await compareLayoutBlobs(join(dir, 'pull-legacy'), join(dir, 'again-legacy')), [], 'the schema1 image pulls after gc')

  // Distribution's garbage-collect on the same root: nothing but the schema1 signature blobs.
  const distConfig = join(dir, 'distribution-gc.yml')
  await writeYaml(distConfig, defaultDistributionConfig(cache, 5000))
  const theirs = await runCommand(DISTRIBUTION_BIN, ['garbage-collect', '--dry-run', distConfig], { env: bareEnv({}), timeoutMs: 60_000 })
  const signatures = files(cache)
    .flatMap(f => {
      const m = /\/_manifests\/revisions\/sha256\/[0-9a-f]{64}\/signatures\/sha256\/([0-9a-f]{64})\/link$/.exec(f)
      return m === null ? [] : [`sha256:${m[1]}`]
    })
    .sort()
  t.ok(signatures.length > 0, 'the schema1 image brought a signature')
  t.same(eligible(theirs.stdout), signatures, "Distribution's garbage-collect finds only the signature blobs it no longer knows")
  t.match(theirs.stdout, /blobs and 0 manifests eligible for deletion/)
  const again = await stevedore(['gc', '--dry-run', gcConfig])
  t.same(eligible(again.stdout), [], 'and a second Stevedore gc nothing at all')

  // Another process sweeping: gc is refused, exit 1, nothing deleted.
  const held = await acquireLease(new FilesystemDriver(cache), 'sweep', 'quota eviction (test)', { settleMs: 1 })
  const refused = await stevedore(['gc', gcConfig]).then(() => undefined, (err: unknown) => err)
  await held.release()
  t.ok(refused instanceof CommandError && refused.exitCode === 1, 'exit code 1')
  t.match((refused as CommandError).stderr, /another process is sweeping this storage: the sweep lease is held by .* \(quota eviction \(test\)\)/)

  // storage.maintenance.readonly: cached content is served, nothing new is stored.
  const stored = files(cache)
  const readonly = await startInProcess(
    t,
    cache,
    { proxy: proxyConfig, storage: { filesystem: { rootdirectory: cache }, maintenance: { readonly: { enabled: true } } } },
    { sweep: false },
  )
  await pullToLayout(`${readonly.host}/team/app:v1`, join(dir, 'readonly-app'), 'v1')
  t.same(await compareLayoutBlobs(join(dir, 'new'), join(dir, 'readonly-app')), [], 'a read-only server serves what is cached')
  const missManifest = await fetch(`${readonly.url}/v2/team/never/manifests/v1`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })
  const missBlob = await fetch(`${readonly.url}/v2/team/never/blobs/${never.manifests[0]?.layers[0]?.digest}`)
  for (const [what, res] of [['manifest', missManifest], ['blob', missBlob]] as const) {
    t.equal(res.status, 503, `an uncached ${what} is refused`)
    const body = (await res.json()) as { errors: { code: string; message: string }[] }
    t.equal(body.errors[0]?.code, 'UNAVAILABLE')
    t.match(body.errors[0]?.message, /storage\.maintenance\.readonly\.enabled/, 'naming the key')
  }
  await pushLayout(join(dir, 'old'), 'v1', `${upstream.host}/team/app:v1`) // the tag moves back upstream
  const moved = await fetch(`${readonly.url}/v2/team/app/manifests/v1`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(moved.status, 200, 'a tag the upstream moved to content not cached…')
  t.equal(moved.headers.get('docker-content-digest'), current.manifestDigest, '…is served as cached')
  t.match(moved.headers.get('warning') ?? '', /served from cache/, 'stale, with a warning')
  t.same(files(cache), stored, 'and nothing was written to storage')
})
