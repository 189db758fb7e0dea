// Pushes are interchangeable with CNCF Distribution 2.8's: a storage directory
// Stevedore was pushed into is served by Distribution, and one Distribution
// was pushed into is served by Stevedore, for OCI, Docker schema2 and schema1
// images, pulled back with skopeo byte for byte; both write the same files
// for the same pushes. A manifest Distribution deleted is garbage to
// Stevedore's gc as to Distribution's. An upload session Distribution began
// is finished by Stevedore started on its storage.
import { readdirSync, readFileSync, utimesSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { parseSignedManifest } from '../../src/registry/schema1.js'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { bareEnv, runCommand } from '../helpers/command.js'
import { writeYaml } from '../helpers/config.js'
import { defaultDistributionConfig, DISTRIBUTION_BIN, startDistribution } from '../helpers/distribution.js'
import { seededBytes } from '../helpers/files.js'
import { writeOciImage, type ImageDescription } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { startRestartable } from '../helpers/restartable.js'
import { DOCKER_MANIFEST, OCI_MANIFEST, SCHEMA1_SIGNED } from '../helpers/media-types.js'
import { sha256 } from '../helpers/push.js'
import { pullToLayout, pushLayout, type ManifestFormat } from '../helpers/skopeo.js'
import { REPO_ROOT, stevedoreCommand } from '../helpers/stevedore.js'
import { call, describe, locationOf, onBase, patchChunk, startUpload, withDigest } from '../helpers/uploads.js'

const SCHEMA1 = { compatibility: { schema1: { enabled: true } } }

interface Pushed {
  repo: string
  format: ManifestFormat
  accept: string
}

/** The three kinds of push, each into its own repository; skopeo converts the OCI layout for v2s2 and v2s1. */
const PUSHES: readonly Pushed[] = [
  { repo: 'compat/oci', format: 'oci', accept: OCI_MANIFEST },
  { repo: 'compat/docker', format: 'v2s2', accept: DOCKER_MANIFEST },
  { repo: 'compat/legacy', format: 'v2s1', accept: SCHEMA1_SIGNED },
]

/** Every file under `root`, relative to it, sorted. */
function files(root: string): string[] {
  return (readdirSync(root, { recursive: true, withFileTypes: true }) as { name: string; parentPath: string; isFile(): boolean }[])
    .filter(e => e.isFile())
    .map(e => join(e.parentPath, e.name).slice(root.length + 1))
    .sort()
}

/** A repository's files (upload sessions aside) with each link's content: what a push leaves behind. */
function repositoryTree(root: string, repo: string): Record<string, string> {
  const base = join(root, 'docker/registry/v2/repositories', repo)
  const tree: Record<string, string> = {}
  for (const file of files(base)) if (!file.startsWith('_uploads/')) tree[file] = readFileSync(join(base, file), 'utf8')
  return tree
}

async function pushAll(host: string, layout: string): Promise<void> {
  for (const { repo, format } of PUSHES) await pushLayout(layout, 'v1', `${host}/${repo}:v1`, { format })
}

/** Pulls every pushed image into `<dir>/<label>-<format>`. */
async function pullAll(host: string, dir: string, label: string): Promise<void> {
  for (const { repo, format } of PUSHES) await pullToLayout(`${host}/${repo}:v1`, join(dir, `${label}-${format}`), 'v1')
}

interface ManifestAnswer {
  digest: string | null
  body: Buffer
}

async function manifests(url: string): Promise<Map<string, ManifestAnswer>> {
  const out = new Map<string, ManifestAnswer>()
  for (const { repo, accept } of PUSHES) {
    const res = await call(`${url}/v2/${repo}/manifests/v1`, { headers: { Accept: accept } })
    if (res.status !== 200) throw new Error(`${repo}: ${describe(res)}`)
    out.set(repo, { digest: res.headers.get('docker-content-digest'), body: res.body })
  }
  return out
}

/** The same images pulled from the writer and from the other server: byte-identical, manifests and configs included. */
async function checkServed(t: Test, image: ImageDescription, dir: string, written: Map<string, ManifestAnswer>, served: Map<string, ManifestAnswer>): Promise<void> {
  t.same(await compareLayoutBlobs(join(dir, 'image'), join(dir, 'other-oci')), [], 'the OCI image byte-identical to what was pushed')
  for (const { format } of PUSHES) {
    t.same(await compareLayoutBlobs(join(dir, `writer-${format}`), join(dir, `other-${format}`)), [], `${format}: the same pull from either server`)
  }
  const layers = image.manifests[0]?.layers ?? []
  for (const { format } of PUSHES) {
    const pulled = await compareLayoutBlobs(join(dir, 'image'), join(dir, `other-${format}`))
    t.same(pulled.filter(d => layers.some(l => l.digest === d.digest)), [], `${format}: the layers are the pushed ones`)
  }
  for (const { repo, format } of PUSHES) {
    const w = written.get(repo)
    const s = served.get(repo)
    t.equal(s?.digest, w?.digest, `${format}: the same manifest digest`)
    if (format === 'v2s1') {
      // Each server signs schema1 documents itself (Distribution 2.8 stores no signatures): the payload is what must match.
      t.ok(parseSignedManifest(s?.body ?? Buffer.alloc(0)).canonical.equals(parseSignedManifest(w?.body ?? Buffer.alloc(0)).canonical), `${format}: the same payload`)
      t.equal(parseSignedManifest(s?.body ?? Buffer.alloc(0)).digest.value, w?.digest, `${format}: the payload digest`)
    } else {
      t.ok(s?.body.equals(w?.body ?? Buffer.alloc(0)), `${format}: the same manifest bytes`)
      t.equal(sha256(s?.body ?? ''), s?.digest, `${format}: which hash to the digest`)
    }
  }
}

t.test('Distribution serves what Stevedore was pushed', async t => {
  const dir = t.testdir()
  const root = join(dir, 'storage')
  const image = await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'push-compat/image', layerSizes: [2000, 90_000] })
  const stevedore = await startRestartable(t, root, {})
  await pushAll(stevedore.host, join(dir, 'image'))
  await pullAll(stevedore.host, dir, 'writer')
  const written = await manifests(stevedore.url)
  await stevedore.close()

  const distribution = await startDistribution(t, { root, config: SCHEMA1 })
  await pullAll(distribution.host, dir, 'other')
  await checkServed(t, image, dir, written, await manifests(distribution.url))
  const tags = (await (await fetch(`${distribution.url}/v2/compat/oci/tags/list`)).json()) as { tags: string[] }
  t.same(tags.tags, ['v1'], "Distribution lists Stevedore's tag")
})

t.test('Stevedore serves what Distribution was pushed', async t => {
  const dir = t.testdir()
  const root = join(dir, 'storage')
  const image = await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'push-compat/image', layerSizes: [2000, 90_000] })
  const distribution = await startDistribution(t, { root, config: SCHEMA1 })
  await pushAll(distribution.host, join(dir, 'image'))
  await pullAll(distribution.host, dir, 'writer')
  const written = await manifests(distribution.url)
  await distribution.stop()

  const stevedore = await startInProcess(t, root, {})
  await pullAll(stevedore.host, dir, 'other')
  await checkServed(t, image, dir, written, await manifests(stevedore.url))

  // Both write the same files for the same pushes (schema1 aside: Stevedore keeps signatures, Distribution 2.8 none).
  const ours = join(dir, 'ours')
  const again = await startInProcess(t, ours, {})
  await pushAll(again.host, join(dir, 'image'))
  for (const repo of ['compat/oci', 'compat/docker']) {
    t.same(repositoryTree(ours, repo), repositoryTree(root, repo), `${repo}: the same links, with the same content, as Distribution's`)
  }
  const blobs = (r: string): string[] => files(r).filter(f => f.startsWith('docker/registry/v2/blobs/'))
  const legacyFree = (r: string): string[] => {
    const signatures = new Set(
      files(r).flatMap(f => {
        const m = /\/signatures\/sha256\/([0-9a-f]{64})\/link$/.exec(f)
        return m === null ? [] : [`docker/registry/v2/blobs/sha256/${(m[1] ?? '').slice(0, 2)}/${m[1]}/data`]
      }),
    )
    return blobs(r).filter(f => !signatures.has(f))
  }
  t.same(legacyFree(ours), blobs(root), 'the same blobs, schema1 signature blobs aside')
})

t.test("a manifest Distribution deleted is garbage to Stevedore's gc as to Distribution's", async t => {
  const dir = t.testdir()
  const root = join(dir, 'storage')
  await writeOciImage(join(dir, 'kept'), { tag: 'v1', seed: 'push-compat/kept', layerSizes: [1100] })
  const gone = await writeOciImage(join(dir, 'gone'), { tag: 'v1', seed: 'push-compat/gone', layerSizes: [1200, 2300] })
  const distribution = await startDistribution(t, { root })
  await pushLayout(join(dir, 'kept'), 'v1', `${distribution.host}/compat/deleted:kept`)
  await pushLayout(join(dir, 'gone'), 'v1', `${distribution.host}/compat/deleted:gone`)
  const deleted = await call(`${distribution.url}/v2/compat/deleted/manifests/${gone.manifestDigest}`, { method: 'DELETE' })
  t.equal(deleted.status, 202, 'Distribution deleted the manifest')
  await distribution.stop()

  const image = gone.manifests[0]
  if (image === undefined) throw new Error('no manifest')
  const garbage = [gone.manifestDigest, image.config.digest, ...image.layers.map(l => l.digest)].sort()
  const past = new Date(Date.now() - 2 * 3_600_000)
  for (const file of files(root)) utimesSync(join(root, file), past, past)
  const eligible = (stdout: string): string[] => [...stdout.matchAll(/^blob eligible for deletion: (\S+)$/gm)].map(m => m[1] as string).sort()

  const distConfig = join(dir, 'distribution.yml')
  await writeYaml(distConfig, defaultDistributionConfig(root, 5000))
  const theirs = await runCommand(DISTRIBUTION_BIN, ['garbage-collect', '--dry-run', distConfig], { env: bareEnv({}), timeoutMs: 60_000 })
  t.same(eligible(theirs.stdout), garbage, "Distribution's garbage-collect: the deleted manifest's blobs")

  const gcConfig = join(dir, 'gc.yml')
  await writeYaml(gcConfig, { version: '0.1', log: { level: 'warn' }, storage: { filesystem: { rootdirectory: root } } })
  const { command, args, env } = stevedoreCommand(['gc', '--dry-run', gcConfig], process.env)
  const ours = await runCommand(command, args, { env, cwd: REPO_ROOT, timeoutMs: 60_000 })
  // Distribution unlinks only `_manifests/revisions/sha256/<hex>/link`: the empty directory is no revision.
  t.same(eligible(ours.stdout), garbage, 'stevedore gc --dry-run: the same')
  t.notMatch(ours.stdout, new RegExp(`marking manifest ${gone.manifestDigest}`), 'the deleted manifest is not marked')
})

t.test('Stevedore finishes an upload session Distribution began', async t => {
  const dir = t.testdir()
  const root = join(dir, 'storage')
  const repo = 'compat/upload'
  const data = seededBytes('push-compat/upload', 200_000)
  const half = 80_000
  const distribution = await startDistribution(t, { root })
  const started = await startUpload(distribution.url, repo)
  const patched = await patchChunk(locationOf(distribution.url, started), data.subarray(0, half), 0)
  t.equal(patched.status, 202, 'Distribution took the first part')
  const location = locationOf(distribution.url, patched)
  await distribution.stop()

  const stevedore = await startInProcess(t, root, {})
  const resumed = onBase(location, stevedore.url)
  const status = await call(resumed)
  t.equal(status.status, 204, `Stevedore knows the session by Distribution's Location: ${describe(status)}`)
  t.equal(status.headers.get('range'), `0-${half - 1}`, 'with what Distribution received')
  const rest = await patchChunk(status.headers.get('location') === null ? resumed : locationOf(stevedore.url, status), data.subarray(half), half)
  t.equal(rest.status, 202, `the rest: ${describe(rest)}`)
  const put = await call(withDigest(rest.headers.get('location') === null ? resumed : locationOf(stevedore.url, rest), sha256(data)), { method: 'PUT' })
  t.equal(put.status, 201, `finished: ${describe(put)}`)
  const got = await call(`${stevedore.url}/v2/${repo}/blobs/${sha256(data)}`)
  t.ok(got.body.equals(data), 'the blob is served byte-identical')
})
